"""Two versions of a model side by side: per-metric deltas, findings new and fixed, gates.

`memlint diff OLD NEW --max-regression latency=5%` lints both with the same device, dims and
configuration, and fails (exit 1) when a gated metric grew by more than its limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from memlint.baseline import Entry, entries_of
from memlint.core.report import Report
from memlint.errors import ConfigError
from memlint.findings import Finding

# metric key -> (label, unit, how to read it from a report); "higher is worse" for all of them
METRICS: dict[str, tuple[str, str]] = {
    "latency": ("predicted latency", "s"),
    "latency_fused": ("predicted latency, fused", "s"),
    "kernels": ("kernels", ""),
    "kernels_fused": ("kernels, fused", ""),
    "flops": ("FLOPs", "FLOP"),
    "bytes": ("bytes moved", "B"),
    "weights": ("weight bytes moved", "B"),
    "activations": ("activation bytes moved", "B"),
    "kv_cache": ("KV-cache bytes moved", "B"),
    "memory_bound": ("memory-bound share", "fraction"),
    "findings": ("findings", ""),
}


def metric_values(report: Report) -> dict[str, float]:
    summary, kinds = report.summary, report.summary.bytes_by_kind
    return {
        "latency": summary.predicted_latency_s,
        # a summary made without the graph has no fused estimate: as written stands for it
        "latency_fused": _or(summary.predicted_latency_fused_s, summary.predicted_latency_s),
        "kernels": summary.kernels,
        "kernels_fused": _or(summary.kernels_fused, summary.kernels),
        "flops": summary.flops,
        "bytes": summary.bytes_moved,
        "weights": kinds.weights,
        "activations": kinds.activations,
        "kv_cache": kinds.kv_cache,
        "memory_bound": summary.memory_bound_fraction,
        "findings": len(report.findings),
    }


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


@dataclass(frozen=True)
class Delta:
    key: str
    label: str
    unit: str
    old: float
    new: float
    limit: float | None = None  # the allowed relative growth (0.05 = 5%), when gated

    @property
    def change(self) -> float:
        return self.new - self.old

    @property
    def relative(self) -> float | None:
        """(new - old) / old; None when old is 0 (infinite growth unless new is 0 too)."""
        if self.old == 0:
            return 0.0 if self.new == 0 else None
        return self.change / abs(self.old)

    @property
    def breached(self) -> bool:
        if self.limit is None:
            return False
        relative = self.relative
        return relative is None or relative > self.limit


@dataclass(frozen=True)
class ModelDiff:
    old: Report
    new: Report
    deltas: tuple[Delta, ...]
    new_findings: tuple[Finding, ...]  # in NEW, on (code, node) pairs OLD did not have
    fixed: tuple[Entry, ...]  # (code, node) pairs of OLD that NEW no longer has

    @property
    def regressions(self) -> tuple[Delta, ...]:
        return tuple(d for d in self.deltas if d.breached)


def parse_limits(flags: tuple[str, ...]) -> dict[str, float]:
    """("latency=5%", "bytes=0.1") -> {"latency": 0.05, "bytes": 0.1}."""
    limits = {}
    for flag in flags:
        key, sep, text = flag.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in METRICS:
            raise ConfigError(
                f"--max-regression {flag!r}: expected METRIC=LIMIT with METRIC one of "
                f"{', '.join(METRICS)}, e.g. latency=5%"
            )
        text = text.strip()
        try:
            value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ConfigError(f"--max-regression {flag!r}: {text!r} is not a number or a percentage") from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"--max-regression {flag!r}: the limit must be >= 0")
        limits[key] = value
    return limits


def diff(old: Report, new: Report, limits: Mapping[str, float] | None = None) -> ModelDiff:
    limits = dict(limits or {})
    before, after = metric_values(old), metric_values(new)
    deltas = tuple(
        Delta(key, label, unit, before[key], after[key], limits.get(key))
        for key, (label, unit) in METRICS.items()
    )
    # Findings are matched by (code, node): the two files may be named differently.
    old_pairs = {e for f in old.findings for e in entries_of(f, "")}
    new_pairs = {e for f in new.findings for e in entries_of(f, "")}
    new_findings = tuple(
        f for f in new.findings if not all(e in old_pairs for e in entries_of(f, ""))
    )
    fixed = tuple(sorted(old_pairs - new_pairs, key=lambda e: (e.code, e.node)))
    return ModelDiff(old, new, deltas, new_findings, fixed)
