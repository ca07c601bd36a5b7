"""Findings: what a rule reports about one node, a group of nodes, or the whole graph."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from memlint.ir import SourceLocation


class Severity(enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls(str(text).lower())
        except ValueError:
            raise ValueError(
                f"unknown severity {text!r} (expected one of: info, warning, error)"
            ) from None


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclass(frozen=True)
class Metric:
    """One measured number behind a finding, with its unit ("FLOP/B", "B", "s", "FLOP", "" ...).

    Fractions use the unit "fraction" (0.25 = 25%). Renderers format the value; rules never do
    in evidence (the message already carries the formatted numbers for people).
    """

    name: str
    value: float
    unit: str = ""


@dataclass(frozen=True)
class Fix:
    """A concrete change and, where it can be estimated, the predicted time it saves."""

    text: str
    saving_s: float | None = None


@dataclass(frozen=True)
class Finding:
    """A memory-wall problem: where, how bad (measured), and what to do about it.

    `time_s` is the predicted time of the nodes concerned (None for findings about the graph as a
    whole, e.g. capacity, which noise control never hides); `share` is that time over the model's
    predicted latency, filled in by the engine. `signature` says what makes two findings of one
    rule "the same on identical layers" (op and shapes); the engine groups findings with equal
    code, signature and node name pattern, and sets `count` and `group`.
    """

    code: str
    name: str
    severity: Severity
    message: str
    nodes: tuple[str, ...] = ()
    evidence: tuple[Metric, ...] = ()
    fixes: tuple[Fix, ...] = ()
    time_s: float | None = None
    share: float | None = None
    signature: str = ""
    count: int = 1
    group: str = ""  # "24 nodes: /h.0/mlp/MatMul ... /h.23/mlp/MatMul" for a grouped finding
    source: SourceLocation | None = None
    # the estimate its saving changes: "both", or "as_written" (the rule's `estimate`)
    estimate: str = "both"

    @property
    def saving_s(self) -> float:
        """The largest estimated saving among the fixes (0 when none is estimated)."""
        return max((f.saving_s or 0.0 for f in self.fixes), default=0.0)

    def metric(self, name: str) -> float | None:
        for metric in self.evidence:
            if metric.name == name:
                return metric.value
        return None


@dataclass(frozen=True)
class Suppressed:
    """A finding hidden by a configured suppression, kept so reports can say what was hidden."""

    finding: Finding
    reason: str
    pattern: str


_DIGITS = re.compile(r"\d+")


def layer_pattern(node_name: str) -> str:
    """The node's name with every run of digits as "#": the same node of identical layers
    (/h.0/mlp/fc/MatMul, /h.1/mlp/fc/MatMul) shares one pattern. Findings on identical layers
    are grouped by it, and so are nodes in the measured rank correlation."""
    return _DIGITS.sub("#", node_name)


@dataclass(frozen=True)
class RuleInfo:
    """What a report says about a rule that ran (its metadata and documentation), so that
    renderers (SARIF rule descriptors) need not load rules themselves."""

    code: str
    name: str
    severity: Severity
    summary: str
    description: str  # the docstring's "What it does" section, as written
    doc: str  # the whole documentation, as `memlint rule CODE` prints it
    origin: str  # "memlint" or the plugin's distribution

