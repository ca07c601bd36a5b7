"""`memlint fix --confirm`: run each stage in onnxruntime (CPU) on the same synthetic inputs
(memlint.confirm.inputs, at the lint's bound dims), compare every output with the stage before
at the tolerance of the transform between them, and time the input and the output.

The error of an output is max |after - before| / max |before| (max |after - before| when the
output is all zeros); integer and boolean outputs must be equal. A stage that diverges names
its transform.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlint.errors import ConfirmError, first_line

WARMUP_RUNS = 2


@dataclass(frozen=True)
class OutputCheck:
    transform: str
    error: float  # the worst output's error (see the module docstring)
    output: str  # the output it was in
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance


@dataclass(frozen=True)
class Confirmation:
    provider: str
    runs: int
    latency_before_s: float  # median of `runs` timed runs
    latency_after_s: float
    checks: tuple[OutputCheck, ...]

    @property
    def diverged(self) -> tuple[OutputCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise ConfirmError(f"{path.name}: onnxruntime could not load it: {first_line(exc)}") from None


def _outputs(session: Any, feeds: Mapping[str, Any], label: str) -> dict[str, Any]:
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    try:
        values = session.run(names, {k: v for k, v in feeds.items() if k in wanted})
    except Exception as exc:  # noqa: BLE001
        raise ConfirmError(f"onnxruntime could not run {label}: {first_line(exc)}") from None
    return dict(zip(names, values))


def _median_s(session: Any, feeds: Mapping[str, Any], runs: int) -> float:
    wanted = {i.name for i in session.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in wanted}
    for _ in range(WARMUP_RUNS):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def error(before: Any, after: Any) -> float:
    import numpy as np

    if before.shape != after.shape:
        return float("inf")
    if before.dtype.kind not in "fc":
        return 0.0 if np.array_equal(before, after) else float("inf")
    diff = float(np.max(np.abs(after.astype(np.float64) - before.astype(np.float64)), initial=0.0))
    scale = float(np.max(np.abs(before.astype(np.float64)), initial=0.0))
    return diff / scale if scale > 0 else diff


def confirm_stages(stages: list[tuple[str, float, Path]], feeds: Mapping[str, Any],
                   runs: int) -> Confirmation:
    """`stages`: (transform name, tolerance, model file) from the input ("", 0, MODEL) on."""
    sessions = [_session(path) for _, _, path in stages]
    outputs = [_outputs(s, feeds, path.name) for s, (_, _, path) in zip(sessions, stages)]
    checks = []
    for (name, tolerance, _), before, after in zip(stages[1:], outputs, outputs[1:]):
        missing = sorted(set(before) - set(after))
        if missing:
            raise ConfirmError(f"{name}: the output lost the model output(s) {', '.join(missing)}")
        worst = max(before, key=lambda k: error(before[k], after[k]))
        checks.append(OutputCheck(name, error(before[worst], after[worst]), worst, tolerance))
    return Confirmation("CPUExecutionProvider", runs, _median_s(sessions[0], feeds, runs),
                        _median_s(sessions[-1], feeds, runs), tuple(checks))
