"""onnxruntime's profiler trace -> per-run kernel times by node name.

The trace is a JSON list of Chrome-trace events. Each `InferenceSession.run` is a "Session" event
named "model_run"; each kernel a "Node" event named "<node name>_kernel_time" with `args.op_name`
and `args.provider`, whose `dur` is in microseconds. A node event belongs to the run whose
interval holds its start. The first `skip` runs (the warm-up) are dropped.

Read by calibration (memlint.hardware.calibrate) and by the measured runs (memlint.confirm), whose
fused kernels memlint.confirm.profile maps back to the nodes they replaced.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from memlint.errors import ConfirmError

KERNEL_SUFFIX = "_kernel_time"
# Names memlint gives subgraph nodes (memlint.confirm.inputs.rename_nodes): their kernels run
# inside the If/Loop/Scan node's kernel, whose time holds theirs, so the trace drops them.
SUBGRAPH_PREFIX = "memlint.subgraph/"


@dataclass(frozen=True)
class Trace:
    """Kernel times per timed run: runs[i][node name] = seconds (summed if it ran twice)."""

    runs: tuple[Mapping[str, float], ...]
    op_types: Mapping[str, str]
    providers: Mapping[str, str]

    def median(self, name: str) -> float:
        """Median over runs of one node's time (0 in a run where it did not run)."""
        return statistics.median(run.get(name, 0.0) for run in self.runs) if self.runs else 0.0

    def median_total(self, names: Iterable[str] | None = None) -> float:
        """Median over runs of the summed time of `names` (default: every kernel)."""
        keep = None if names is None else set(names)
        totals = [
            sum(t for n, t in run.items() if keep is None or n in keep) for run in self.runs
        ]
        return statistics.median(totals) if totals else 0.0

    @property
    def names(self) -> tuple[str, ...]:
        """Every kernel name, in first-seen order."""
        return tuple(self.op_types)


def read_trace(path: str | Path, skip: int = 0, floor_s: float = 0.0) -> Trace:
    try:
        events = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfirmError(f"cannot read onnxruntime's profile {path}: {exc}") from None
    return parse_trace(events, skip=skip, floor_s=floor_s)


def parse_trace(events: Sequence[Mapping], skip: int = 0, floor_s: float = 0.0) -> Trace:
    """Group the kernel events of a trace by run, dropping the first `skip` runs.

    `floor_s` is the profiler's own cost per kernel event (see memlint.confirm.run.profiler_floor),
    taken off every event's duration (never below zero).

    Kernels of subgraph nodes (named SUBGRAPH_PREFIX...) are dropped: their time is inside the
    kernel of the If/Loop/Scan node that runs them.
    """
    if isinstance(events, Mapping):  # some versions wrap the list: {"traceEvents": [...]}
        events = events.get("traceEvents", [])
    runs = sorted(
        (e["ts"], e["ts"] + e["dur"])
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run" and "dur" in e
    )
    per_run: list[dict[str, float]] = [{} for _ in runs]
    op_types: dict[str, str] = {}
    providers: dict[str, str] = {}
    starts = [start for start, _ in runs]
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith(KERNEL_SUFFIX) or "dur" not in event:
            continue
        node = name[: -len(KERNEL_SUFFIX)]
        if node.startswith(SUBGRAPH_PREFIX):
            continue
        index = _run_of(event["ts"], starts, runs)
        if index is None:
            continue
        args = event.get("args", {})
        op_types.setdefault(node, str(args.get("op_name", "")))
        providers.setdefault(node, str(args.get("provider", "")))
        times = per_run[index]
        times[node] = times.get(node, 0.0) + max(event["dur"] * 1e-6 - floor_s, 0.0)
    return Trace(
        runs=tuple(MappingProxyType(r) for r in per_run[skip:]),
        op_types=MappingProxyType(op_types),
        providers=MappingProxyType(providers),
    )


def _run_of(ts: float, starts: list[float], runs: list[tuple[float, float]]) -> int | None:
    import bisect

    index = bisect.bisect_right(starts, ts) - 1
    if index < 0 or ts > runs[index][1]:
        return None
    return index
