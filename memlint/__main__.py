"""`python -m memlint`: the same command as the `memlint` console script."""

from memlint.cli import run

if __name__ == "__main__":
    run()
