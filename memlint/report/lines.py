"""The short texts the terminal report shares with the HTML and Markdown pages: names made inert,
fixes cut to a clause, identical layers as one row, the fused estimate and the combined saving
on one line. memlint.report.view builds the pages' view model from them too; a terminal, SARIF
or GitHub run imports this module without the view model and its roofline chart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from memlint import units
from memlint.core.report import NodeResult, Report, Summary
from memlint.findings import Finding, Fix
from memlint.report.families import plural

# Characters that never reach a terminal, a CI log or a page raw: C0 and C1 controls (ESC
# starts ANSI escape sequences, BEL ends OSC 8 hyperlinks), DEL, and the invisible format
# characters that hide or reorder text (zero-width marks and bidi overrides, "Trojan Source"),
# the line and paragraph separators U+2028/U+2029 (a line break to JavaScript and some viewers)
# and the Unicode tag characters (invisible text that language models and some tools read).
_INVISIBLE = (
    *range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x180E, *range(0x200B, 0x2010),
    0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2060, 0x2070), 0xFEFF,
    *range(0xE0000, 0xE0080),
)  # fmt: skip


@lru_cache(maxsize=8)
def _inert_table(keep: str) -> dict[int, str]:
    return {c: _escape(c) for c in _INVISIBLE if chr(c) not in keep}


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def inert(text: str, keep: str = "") -> str:
    """`text` with every control and invisible format character written as a visible escape
    (ESC -> "\\x1b"): node names, doc strings and metadata of a model are data, and print as
    data in every report. `keep` lists characters to leave as they are (e.g. "\\n")."""
    return text.translate(_inert_table(keep))


def pct(part: float, whole: float) -> str:
    """`part` as a percentage of `whole` with one decimal ("0.0" of nothing)."""
    return f"{100 * part / whole:.1f}" if whole else "0.0"


def combined_saving(report: Report) -> str:
    """'Together the fixes save up to 212 us of 396 us predicted (53.5%), each node counted
    once' (Report.combined_saving_s), or "" when no finding estimates a saving."""
    saving, total = report.combined_saving_s, report.summary.predicted_latency_s
    if not saving:
        return ""
    return (f"Together the fixes save up to {units.seconds(saving)} of {units.seconds(total)} "
            f"predicted ({pct(saving, total)}%), each node counted once")


_CLAUSE_END = re.compile(r": | \(|; |, so |, or | so that | which ")


def short_fix(text: str, limit: int = 60) -> str:
    """A fix's first clause, for a one-line summary: 'Quantize matmul weights to int4
    weight-only: onnxruntime ...' -> 'Quantize matmul weights to int4 weight-only'; cut at a
    word boundary with '...' when still longer than `limit`."""
    head = _CLAUSE_END.split(text, maxsplit=1)[0].rstrip(" .")
    if len(head) <= limit:
        return head
    return head[: limit - 3].rsplit(" ", 1)[0] + "..."


def best_fix(finding: Finding) -> Fix | None:
    """The fix with the largest estimated saving (the first when none is estimated)."""
    if not finding.fixes:
        return None
    return max(finding.fixes, key=lambda f: f.saving_s or 0.0)


@dataclass(frozen=True)
class LayerGroup:
    """Nodes that are one layer's node repeated (names equal but for their numbers, same op,
    FLOPs and bytes): shown as one row, e.g. 'x12 /transformer/h.*/mlp/c_fc/MatMul'."""

    label: str
    pattern: str  # the members' name with every number as "*"
    members: tuple[NodeResult, ...]  # natural name order

    @property
    def first(self) -> NodeResult:
        return self.members[0]

    @property
    def latency_s(self) -> float:
        return sum(n.timing.predicted_latency_s for n in self.members)


_NUMBER = re.compile(r"\d+")
_NUMBERS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that puts h.2 before h.10."""
    return tuple(int(p) if p.isdigit() else p for p in _NUMBERS.split(name))


def layer_groups(nodes: Iterable[NodeResult]) -> list[LayerGroup]:
    """The nodes that take time, identical layers grouped, slowest group first."""
    groups: dict[tuple, list[NodeResult]] = {}
    for n in nodes:
        if n.timing.predicted_latency_s <= 0:
            continue
        key = (_NUMBER.sub("*", n.name), n.domain, n.op_type, n.cost.flops, n.cost.bytes_moved)
        groups.setdefault(key, []).append(n)
    found = []
    for key, members in groups.items():
        # one pattern: the names differ in their numbers alone, so natural_key's order is
        # the order of those numbers (found faster)
        members.sort(key=lambda n: tuple(map(int, _NUMBER.findall(n.name))))
        label = members[0].name if len(members) == 1 else f"x{len(members)} {key[0]}"
        found.append(LayerGroup(label, key[0], tuple(members)))
    found.sort(key=lambda g: (-g.latency_s, natural_key(g.label)))
    return found


# What each kind of fused group removes, as the gap line names it (memlint.analysis.fused).
_GAP_LABELS = {"attention": "attention (cache read once, in place)",
               "chain": "element-wise chains",
               "epilogue": "product epilogues",
               "projections": "shared-input projections",
               "shapes": "shape arithmetic on the host"}


def memory_bound_of(summary: Summary) -> str:
    """What the memory-bound share is of: the predicted time, or with launch costs in it the
    operators' time (a launch waits on neither roof)."""
    return "the operators' time (launches aside)" if summary.launch_s else "predicted time"


def as_written_text(report: Report) -> str:
    """'2,971 kernels, 2.4 us launch each' (the as-written estimate's detail)."""
    summary, spec = report.summary, report.hardware
    launch = (f", {units.seconds(spec.kernel_overhead_s)} launch each" if spec.kernel_overhead_s
              else ", CUDA graph replay: no launch cost" if report.cuda_graphs
              else ", no launch cost in the spec")
    return f"{plural(summary.kernels, 'kernel')}{launch}"


_GAP_SHORT = {"attention": "attention", "chain": "chains", "epilogue": "epilogues",
              "projections": "projections", "shapes": "shape math"}


def fused_line(report: Report) -> str | None:
    """The fused estimate on one terminal line: '765 us  (202 kernels; as written +987 us:
    attention 517 us, epilogues 463 us, chains 7.21 us)', None when the summary has none."""
    fused = report.summary.fused
    if fused is None:
        return None
    gaps = _gaps(report, _GAP_SHORT, largest_first=True)
    line = f"{units.seconds(fused.latency_s)}  ({plural(fused.kernels, 'kernel')}"
    if gaps:
        line += f"; as written +{gaps[0]}: " + ", ".join(gaps[1])
    return line + ")"


def fused_texts(report: Report) -> tuple[str, str] | None:
    """The fused estimate's value and detail ('1,486 kernels; as written is 1.6 ms more: ...'),
    None when the summary has none."""
    fused = report.summary.fused
    if fused is None:
        return None
    gaps = _gaps(report, _GAP_LABELS, largest_first=False)
    detail = f"{plural(fused.kernels, 'kernel')} as a fusing runtime runs them"
    if gaps:
        detail += f"; as written is {gaps[0]} more: " + ", ".join(gaps[1])
    return units.seconds(fused.latency_s), detail


def _gaps(report: Report, labels: Mapping[str, str],
          largest_first: bool) -> tuple[str, list[str]] | None:
    """How much more the as-written estimate takes and 'label time' per fusion that removes
    some of it (largest first, or in `labels`' order); None when it takes no more."""
    fused = report.summary.fused
    more = report.summary.predicted_latency_s - fused.latency_s
    gaps = [(fused.gap_s[kind], label) for kind, label in labels.items()
            if fused.gap_s.get(kind, 0.0) > 0]
    if more <= 0 or not gaps:
        return None
    if largest_first:
        gaps.sort(reverse=True)
    return units.seconds(more), [f"{label} {units.seconds(t)}" for t, label in gaps]
