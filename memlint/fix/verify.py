"""`memlint fix --confirm`: run each stage in onnxruntime (CPU) on the same synthetic inputs
(memlint.confirm.inputs, at the lint's bound dims), compare every output with the stage before
at the tolerance of the transform between them, and time the input and the output.

Feeds: the synthetic inputs (masks all ones) and, when the model has a mask input of at least
2 positions, the same inputs with half of the last batch row's mask padding
(memlint.confirm.inputs.padded): at the left for a decoder (a model with a KV cache), where in
a prefill a causal model's first query rows see no key, so a transform that changes only masked
positions (a fusion that drops a NaN guard) diverges there; at the right for an encoder, as its
batches are padded (onnxruntime's BERT attention fusion turns the mask into key counts, which
holds for right padding only).
Every stage runs on both; each transform's check is its worst output over both feeds. Latency
is timed on the first feed only.

The error of an output is max |after - before| / max |before| over the positions finite in
both (max |after - before| when that is all zeros); integer and boolean outputs must be equal.
A NaN or inf in the same place before and after agrees (the input model may itself give NaN
for a fully masked row); one that appears or disappears is a divergence beyond any tolerance.
A stage that diverges names its transform.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlint.errors import ConfirmError, first_line

WARMUP_RUNS = 2


@dataclass(frozen=True)
class Feed:
    name: str  # how reports name it: "synthetic inputs", "all-ones mask", "left-padded mask",
    # "right-padded mask"
    values: Mapping[str, Any]  # input name -> array


@dataclass(frozen=True)
class Difference:
    """One output of a stage against the same output of the stage before."""

    error: float  # see the module docstring; inf when a NaN / inf appears or disappears
    nonfinite_after: int = 0  # values NaN / inf after where they were finite before
    nonfinite_before: int = 0  # values finite after where they were NaN / inf before

    @property
    def nonfinite(self) -> int:
        return self.nonfinite_after + self.nonfinite_before


@dataclass(frozen=True)
class OutputCheck:
    transform: str
    error: float  # the worst output's error over every feed (see the module docstring)
    output: str  # the output it was in
    tolerance: float
    feed: str = ""  # the feed it was on
    nonfinite_after: int = 0  # that output's NaN / inf values only after (see Difference)
    nonfinite_before: int = 0  # and only before

    @property
    def nonfinite(self) -> int:
        return self.nonfinite_after + self.nonfinite_before

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance and not self.nonfinite

    @property
    def problem(self) -> str:
        """What moved: 'moved by 0.5 of its largest value' or where NaN / inf changed."""
        if not self.nonfinite:
            return f"moved by {self.error:.3g} of its largest value"
        parts = [f"is NaN or inf in {self.nonfinite_after} place(s) where the stage before is "
                 "finite" if self.nonfinite_after else "",
                 f"is finite in {self.nonfinite_before} place(s) where the stage before is NaN "
                 "or inf" if self.nonfinite_before else ""]
        return " and ".join(filter(None, parts))

    @property
    def limit(self) -> str:
        if self.nonfinite:
            return "beyond any tolerance"
        return f"over the transform's tolerance {self.tolerance:g}"


@dataclass(frozen=True)
class Confirmation:
    provider: str
    runs: int
    latency_before_s: float  # median of `runs` timed runs, on the first feed
    latency_after_s: float
    checks: tuple[OutputCheck, ...]
    feeds: tuple[str, ...] = ("synthetic inputs",)  # the feeds the outputs were compared on

    @property
    def diverged(self) -> tuple[OutputCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)


def feeds_for(model: Any) -> tuple[Feed, ...]:
    """The feeds of a memlint.ir Model (see the module docstring)."""
    from memlint.confirm.inputs import padded, synthesize_inputs

    values = synthesize_inputs(model)
    found = padded(model, values)
    if found is None:
        return (Feed("synthetic inputs", values),)
    side, masked = found
    return Feed("all-ones mask", values), Feed(f"{side}-padded mask", masked)


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


def compare(before: Any, after: Any) -> Difference:
    """`after` against `before` (numpy arrays; see the module docstring)."""
    import numpy as np

    if before.shape != after.shape:
        return Difference(float("inf"))
    if before.dtype.kind not in "fc":
        return Difference(0.0 if np.array_equal(before, after) else float("inf"))
    finite_before, finite_after = np.isfinite(before), np.isfinite(after)
    appeared = int(np.count_nonzero(finite_before & ~finite_after))
    vanished = int(np.count_nonzero(~finite_before & finite_after))
    if appeared or vanished:
        return Difference(float("inf"), appeared, vanished)
    both = finite_before & finite_after  # == finite_before: no NaN / inf appeared or vanished
    old, new = before[both].astype(np.float64), after[both].astype(np.float64)
    diff = float(np.max(np.abs(new - old), initial=0.0))
    scale = float(np.max(np.abs(old), initial=0.0))
    return Difference(diff / scale if scale > 0 else diff)


def _worst(name: str, tolerance: float, feed: str, before: Mapping[str, Any],
           after: Mapping[str, Any]) -> OutputCheck:
    missing = sorted(set(before) - set(after))
    if missing:
        raise ConfirmError(f"{name}: the output lost the model output(s) {', '.join(missing)}")
    found = {k: compare(before[k], after[k]) for k in before}
    worst = max(found, key=lambda k: (found[k].error, found[k].nonfinite))
    moved = found[worst]
    return OutputCheck(name, moved.error, worst, tolerance, feed, moved.nonfinite_after,
                       moved.nonfinite_before)


def confirm_stages(stages: list[tuple[str, float, Path]], feeds: Sequence[Feed],
                   runs: int) -> Confirmation:
    """`stages`: (transform name, tolerance, model file) from the input ("", 0, MODEL) on;
    `feeds`: the first is timed (see the module docstring)."""
    sessions = [_session(path) for _, _, path in stages]
    checks = []
    by_feed = []  # per feed: each stage's outputs
    for feed in feeds:
        on = f" on the {feed.name}" if len(feeds) > 1 else ""
        by_feed.append([_outputs(s, feed.values, f"{path.name}{on}")
                        for s, (_, _, path) in zip(sessions, stages)])
    for number, (name, tolerance, _) in enumerate(stages[1:]):
        per_feed = [_worst(name, tolerance, feed.name, outputs[number], outputs[number + 1])
                    for feed, outputs in zip(feeds, by_feed)]
        # the worst feed; on a tie the first (max keeps the first of equals)
        checks.append(max(per_feed, key=lambda c: (c.error, c.nonfinite)))
    timed = feeds[0].values
    return Confirmation("CPUExecutionProvider", runs, _median_s(sessions[0], timed, runs),
                        _median_s(sessions[-1], timed, runs), tuple(checks),
                        tuple(f.name for f in feeds))
