"""Issue 20's cases linted by two or more memlint trees side by side (figures, not a test).

    python bench/ab.py --tree before=/tmp/old-checkout --tree now=
    python bench/ab.py --tree old-mld07=/tmp/old:/tmp/mld07 --tree old=/tmp/old --tree now= --calls
    python bench/ab.py --tree before=/tmp/old --tree now= --case gpt-2 --case llama --rounds 15

Each --tree is NAME=PYTHONPATH: the memlint a child process imports with that PYTHONPATH (empty:
the installed one, this working tree in the dev venv); a PYTHONPATH may name other packages too
(another ml_dtypes installed with `pip install --target`). Each tree's bytecode is written first,
as pip does.

Cases (built as bench/scale.py builds them, kept in --work): the 70B-shaped decode step at its
dims, the same with --sweep batch=1,2,4,8,16,32,64, the Optimum GPT-2 and Llama-GQA exports at
their default decode step, and the 100,000-node element-wise chain (--case picks some of them
by name). Every run is a fresh CLI process; the trees run in interleaved rounds (every case and
tree once per round), so a slow spell of this machine hits all of them alike. Printed: each
tree's minimum wall time per case, and its ratio to the first tree's, measured in this run.

--imports N also times, per tree, the imports of a text lint (`import memlint.cli,
memlint.runner, memlint.report.text, memlint.report.sarif` after `import onnx, numpy`) in N
interleaved fresh processes: the minimum and median, and the minimum's ratio to the first tree.

--calls also counts the Python function calls of one `memlint.lint` of each case under cProfile
(the second lint in a child process): the work done, which does not move with the machine's
speed.

Caveat: with an editable install, `memlint.rules` resolves to the installed tree whatever the
PYTHONPATH (setuptools' finder maps it): the rules of every tree are the installed ones. The
script prints where each tree's memlint and memlint.rules come from.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale  # bench/scale.py: the builders and the child-process measurement

CALLS_CHILD = """
import cProfile, io, json, pstats, sys
from memlint.api import lint
args = json.loads(sys.argv[1])
lint(**args)
profile = cProfile.Profile()
profile.enable()
lint(**args)
profile.disable()
print(pstats.Stats(profile, stream=io.StringIO()).total_calls)
"""

IMPORTS_CHILD = """
import time
import onnx, numpy
start = time.perf_counter()
import memlint.cli, memlint.runner, memlint.report.text, memlint.report.sarif
print(time.perf_counter() - start)
"""

WHERE_CHILD = """
import memlint, memlint.rules, ml_dtypes
print(memlint.__file__, memlint.rules.__path__[0], "ml_dtypes", ml_dtypes.__version__)
"""


def cases(work: Path) -> dict[str, tuple[list[str], dict]]:
    """case -> (CLI arguments after `memlint`, memlint.lint keyword arguments)."""
    llama = Path(scale.build_cached(work, 80)["path"])
    optimum = scale.optimum_in_child(work)
    chain = scale.chain_cached(work, 100_000)["path"]
    dims = dict(d.split("=") for d in scale.DIMS)
    dims = {k: int(v) for k, v in dims.items()}
    lint = {"hw": "h100"}
    return {
        "70B-shaped decoder": ([str(llama), *_dims(scale.DIMS)],
                               {"source": str(llama), "dims": dims, **lint}),
        "same, 7-point batch sweep": (
            [str(llama), *_dims(scale.DIMS), "--sweep", scale.SWEEP],
            {"source": str(llama), "dims": dims, "scenario": {"sweeps": [scale.SWEEP]}, **lint}),
        "Optimum GPT-2 decode step": ([str(optimum["gpt2"])],
                                      {"source": str(optimum["gpt2"]), **lint}),
        "Optimum Llama-GQA": ([str(optimum["llama"])], {"source": str(optimum["llama"]), **lint}),
        "element-wise chain, 100,000 nodes": ([str(chain)], {"source": str(chain), **lint}),
    }


def _dims(dims: tuple[str, ...]) -> list[str]:
    return [a for d in dims for a in ("--dim", d)]


def child(pythonpath: str, argv: list[str]) -> list[str]:
    return ["env", f"PYTHONPATH={pythonpath}", *argv]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PYTHONPATH",
                        help="a memlint to measure (repeatable; the first is the reference)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", action="store_true", help="also count function calls")
    parser.add_argument("--work", type=Path, help="build into (and keep) this folder")
    parser.add_argument("--imports", type=int, default=0, metavar="N",
                        help="also time a text lint's imports in N interleaved rounds")
    parser.add_argument("--case", action="append", metavar="TEXT",
                        help="only the cases whose name holds TEXT (repeatable; any case)")
    args = parser.parse_args()
    if not all("=" in t for t in args.tree):
        parser.error("--tree takes NAME=PYTHONPATH (an empty PYTHONPATH: the installed memlint)")
    trees = dict(t.split("=", 1) for t in args.tree)
    if len(trees) < 2 or not all(trees):
        parser.error("give two or more --tree NAME=PYTHONPATH with distinct names")
    work = args.work or Path(tempfile.mkdtemp(prefix="memlint-ab-"))
    found = {case: how for case, how in cases(work).items()
             if not args.case or any(t.lower() in case.lower() for t in args.case)}
    if not found:
        parser.error(f"no case's name holds {' or '.join(args.case)}")
    for name, path in trees.items():
        compiled = subprocess.run(child(path, [sys.executable, "-c", scale.COMPILE_CODE]),
                                  capture_output=True, text=True, check=False,
                                  cwd=tempfile.gettempdir())
        where = subprocess.run(child(path, [sys.executable, "-c", WHERE_CHILD]),
                               capture_output=True, text=True, check=False,
                               cwd=tempfile.gettempdir())
        print(f"{name}: {where.stdout.strip() or where.stderr.strip()[-300:]} (bytecode: "
              f"{compiled.stdout.strip() or 'FAILED'})")
    commands = {
        f"{case}|{name}": child(path, [*scale.memlint_command(), *argv, "--hw", "h100",
                                       "--fail-on", "never"])
        for case, (argv, _) in found.items() for name, path in trees.items()
    }
    rounds = scale.Rounds()
    rounds.measure(commands, args.rounds)
    first = next(iter(trees))
    print(f"\nwhole CLI processes, min of {args.rounds} interleaved rounds; ratio to {first}")
    print(f"  {'':<36}" + "".join(f" {name:>22}" for name in trees))
    for case in found:
        base = rounds.seconds(f"{case}|{first}")
        cells = [f"{rounds.seconds(f'{case}|{n}'):6.2f} s = {rounds.seconds(f'{case}|{n}') / base:5.2f}x"
                 for n in trees]
        print(f"  {case:<36}" + "".join(f" {c:>22}" for c in cells))
    if args.imports:
        times: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.imports):
            for name, path in trees.items():
                out = subprocess.run(child(path, [sys.executable, "-c", IMPORTS_CHILD]),
                                     capture_output=True, text=True, check=True,
                                     cwd=tempfile.gettempdir())
                times[name].append(float(out.stdout))
        base = min(times[first])
        print(f"\na text lint's imports, {args.imports} interleaved fresh processes "
              f"(min / median; ratio of the mins to {first})")
        for name, seconds in times.items():
            print(f"  {name:<22} {min(seconds) * 1e3:6.1f} / {statistics.median(seconds) * 1e3:6.1f}"
                  f" ms = {min(seconds) / base:4.2f}x")
    if args.calls:
        print("\nPython function calls of one memlint.lint (cProfile, the second lint in a child)")
        print(f"  {'':<36}" + "".join(f" {name:>22}" for name in trees))
        for case, (_, kwargs) in found.items():
            counts = []
            for path in trees.values():
                out = subprocess.run(
                    child(path, [sys.executable, "-c", CALLS_CHILD, json.dumps(kwargs)]),
                    capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
                counts.append(int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0
                              else None)
            base = counts[0]
            cells = [f"{c:,} = {c / base:4.2f}x" if c and base else "FAILED" for c in counts]
            print(f"  {case:<36}" + "".join(f" {c:>22}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
