"""Every node test model of the onnx package's backend suite, linted as a user would.

    python bench/backend_models.py            # counts per outcome, then every refusal
    python bench/backend_models.py --all      # also the models that linted, one per line

The onnx wheel ships no data/node models: they are generated from `onnx.backend.test.case.node`
(`collect_testcases`), about 1,900 single-op graphs with fixed shapes, including 99 attention
cases with past and present. Each is linted with no flags through memlint.lint (the CLI's path).
Outcomes: "linted" (a report), "refused" (a MemlintError: one line, exit 2 on the command line)
or "crashed" (any other exception: a bug). Refusals are grouped by their message's first words
so that a reviewer can judge each kind once; a crash is always a bug.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import onnx


def cases() -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return collect_testcases(None)


def kind_of(message: str) -> str:
    """The message with names and numbers blanked: one bucket per kind of refusal."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", message)
    text = re.sub(r"\d+", "N", text)
    return text.split(":", 1)[-1].strip()[:110] if ": " in text else text[:110]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="list the linted models too")
    args = parser.parse_args()
    import memlint
    from memlint.errors import MemlintError

    outcomes: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    start = time.perf_counter()
    found = cases()
    with tempfile.TemporaryDirectory() as folder:
        for case in found:
            path = Path(folder) / f"{case.name}.onnx"
            onnx.save(case.model, str(path))
            try:
                report = memlint.lint(path, hw="a100")
            except MemlintError as exc:
                outcomes["refused"].append((case.name, str(exc)))
            except Exception as exc:  # noqa: BLE001 - a crash is what this bench looks for
                outcomes["crashed"].append((case.name, f"{type(exc).__name__}: {exc}"))
            else:
                c = report.coverage
                outcomes["linted"].append((case.name, f"{c.nodes_modelled}/{c.nodes_total}"))
    elapsed = time.perf_counter() - start
    print(f"{len(found)} backend node models in {elapsed:.1f} s: " + ", ".join(
        f"{len(outcomes[k])} {k}" for k in ("linted", "refused", "crashed")))
    unmodelled = [n for n, cov in outcomes["linted"] if cov.split("/")[0] != cov.split("/")[1]]
    print(f"  linted with every node modelled: {len(outcomes['linted']) - len(unmodelled)}; "
          f"with an unmodelled node (reported as such): {len(unmodelled)}")
    for outcome in ("crashed", "refused"):
        kinds = collections.Counter(kind_of(msg) for _, msg in outcomes[outcome])
        if kinds:
            print(f"\n{outcome}, by kind:")
            for kind, count in kinds.most_common():
                example = next(n for n, m in outcomes[outcome] if kind_of(m) == kind)
                print(f"  {count:4d}  {kind}   (e.g. {example})")
    if args.all:
        print("\nlinted:")
        for name, coverage in outcomes["linted"]:
            print(f"  {name}  {coverage}")
    return 1 if outcomes["crashed"] else 0


if __name__ == "__main__":
    sys.exit(main())
