"""The Report: one data object that every renderer formats (no formatting here)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from memlint.baseline import Entry
from memlint.config import Suppression
from memlint.core.document import CONVENTIONS, SCHEMA_VERSION, document
from memlint.core.llm import LlmSections
from memlint.core.whatif import (
    EMPTY_BLOCKS,
    AsWritten,
    BlockTotals,
    ByteTotals,
    WhatIf,
    block_totals,
)
from memlint.costs import ByteCounts, CostStatus, cost_of
from memlint.costs.registry import cost_keys
from memlint.errors import MemlintError
from memlint.findings import Finding, RuleInfo, Suppressed
from memlint.hardware import HardwareSpec
from memlint.ir import ComputeUnit, Model
from memlint.roofline import Bound, NodeResult, time_op

if TYPE_CHECKING:  # a measured run's type, imported by --confirm alone
    from memlint.analysis.fused import FusedEstimate
    from memlint.core.measurement import Measurement

__all__ = [
    "CONVENTIONS", "SCHEMA_VERSION", "BaselineResult", "Coverage", "NodeResult", "Report",
    "Summary", "analyse", "coverage_of", "summarize",
]  # fmt: skip


@dataclass(frozen=True)
class Coverage:
    nodes_total: int
    nodes_modelled: int
    unmodelled_ops: Mapping[str, int]  # qualified op -> count (no formula)
    unresolved_nodes: int  # nodes whose tensor shapes stayed unknown
    bytes_lower_bound: int  # bytes of unmodelled/unresolved nodes (a lower bound)
    tensors_total: int
    tensors_resolved: int
    unresolved_examples: tuple[str, ...] = ()  # "node (op): why", the first few

    @property
    def node_fraction(self) -> float:
        return self.nodes_modelled / self.nodes_total if self.nodes_total else 1.0

    @property
    def tensor_fraction(self) -> float:
        return self.tensors_resolved / self.tensors_total if self.tensors_total else 1.0


@dataclass(frozen=True)
class Summary(ByteTotals):
    flops: int
    bytes_read: ByteCounts
    bytes_written: ByteCounts
    predicted_latency_s: float
    memory_bound_latency_s: float
    ridge_point: float  # FLOP/B of the peak that bounds most of the model's FLOPs
    ridge_peak_key: str
    kernels: int = 0  # nodes that run a kernel as written (each with the spec's launch cost)
    launch_s: float = 0.0  # kernels x the spec's per-kernel launch cost, in predicted_latency_s
    # The second estimate: the kernels a fusing runtime runs (memlint.analysis.fused); None
    # when the summary was made without the graph.
    fused: FusedEstimate | None = None
    # Per block role (memlint.analysis.blocks), made with the graph; the what-ifs these totals
    # are for and the graph's own totals beside them (memlint.llm.whatif.apply_what_if).
    by_block: Mapping[str, BlockTotals] = field(default_factory=lambda: EMPTY_BLOCKS)
    what_if: WhatIf | None = None
    as_written: AsWritten | None = None

    @property
    def kernels_fused(self) -> int | None:
        return None if self.fused is None else self.fused.kernels

    @property
    def predicted_latency_fused_s(self) -> float | None:
        return None if self.fused is None else self.fused.latency_s

    @property
    def work_latency_s(self) -> float:
        """The operators' roofline time, launch costs aside (what rules compare shares with)."""
        return self.predicted_latency_s - self.launch_s

    @property
    def memory_bound_fraction(self) -> float:
        """Share of the operators' roofline time (launch costs aside) that waits on memory."""
        work = self.work_latency_s
        if not work:
            return 0.0
        return min(self.memory_bound_latency_s / work, 1.0)  # not above 1 by rounding


@dataclass(frozen=True)
class BaselineResult:
    """What a baseline did: `findings` holds the new ones only; these are the rest."""

    path: str
    known: tuple[Finding, ...]  # findings already in the baseline (not failing the gate)
    fixed: tuple[Entry, ...]  # baseline entries no finding has any more


@dataclass(frozen=True)
class Report:
    model: Model
    hardware: HardwareSpec
    nodes: tuple[NodeResult, ...]
    summary: Summary
    coverage: Coverage
    tf32: bool = False
    findings: tuple[Finding, ...] = ()  # sorted by saving (memlint.engine)
    suppressed: tuple[Suppressed, ...] = ()
    unused_suppressions: tuple[Suppression, ...] = ()
    hidden_as_noise: int = 0  # findings below the noise thresholds
    rules: tuple[RuleInfo, ...] = ()  # the rules that ran, with their documentation
    config_files: tuple[str, ...] = ()  # the configuration files applied, and what each gave
    baseline: BaselineResult | None = None  # set when a baseline was given
    llm: LlmSections | None = None  # the LLM sections, for decoders
    measurement: Measurement | None = None  # a measured run (--confirm)
    cuda_graphs: bool = False  # priced as a CUDA graph replay: no per-kernel launch cost

    @property
    def dims(self) -> Mapping[str, int]:
        return {d.name: d.value for d in self.model.dims}

    @property
    def assumed_dims(self) -> tuple[str, ...]:
        return self.model.assumed_dims

    @property
    def combined_saving_s(self) -> float:
        """What the findings' best fixes save together, each node counted once: a node named by
        several findings (the same weights quantized for ML101 and ML106) counts its largest
        share of a finding's saving (a finding's saving split over its nodes by their predicted
        time); findings about the graph as a whole add theirs. Never more than the predicted
        latency."""
        time = {n.name: n.timing.predicted_latency_s for n in self.nodes}
        best: dict[str, float] = {}
        whole = 0.0
        for finding in self.findings:
            spent = sum(time.get(node, 0.0) for node in finding.nodes)
            saving = finding.saving_s
            if not spent:  # about the graph as a whole, or nodes that take no time
                whole += saving
                continue
            for node in finding.nodes:  # the saving falls on each node by its time
                share = saving * time.get(node, 0.0) / spent
                best[node] = max(best.get(node, 0.0), share)
        return min(sum(best.values()) + whole, self.summary.predicted_latency_s)

    @property
    def rules_run(self) -> tuple[str, ...]:
        return tuple(rule.code for rule in self.rules)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's document (docs/json-schema.md): `memlint M --format json` prints
        exactly json.dumps(report.to_dict(), indent=2). A public, versioned API."""
        return document(self)


_COST, _TIMING = attrgetter("cost"), attrgetter("timing")
_BOUND, _LATENCY = attrgetter("bound"), attrgetter("predicted_latency_s")


def summarize(
    nodes: tuple[NodeResult, ...], spec: HardwareSpec, tf32: bool, *, model: Model | None = None,
    exclude: Collection[str] = frozenset(),
) -> Summary:
    """The totals of `nodes` (those named in `exclude` left out). With the `model` they were
    analysed from, the fused estimate (memlint.analysis.fused) and the totals by block role
    too."""
    fused = None
    if model is not None:
        from memlint.analysis.fused import estimate
        from memlint.analysis.graph_index import GraphIndex

        fused = estimate(GraphIndex(model, nodes), spec, tf32=tf32, exclude=exclude)
    if exclude:
        nodes = tuple(n for n in nodes if n.name not in exclude)
    # Integer totals are summed once per distinct cost (nodes of identical layers share one
    # cost and timing); times are summed node by node, in order, as floats add.
    costs, timings = list(map(_COST, nodes)), list(map(_TIMING, nodes))
    cost_of_id = dict(zip(map(id, costs), costs))
    timing_of_id = dict(zip(map(id, timings), timings))
    flops_by_peak: Counter[str] = Counter()
    cost_counts: Counter[int] = Counter()
    for (cost, timing), count in Counter(zip(map(id, costs), map(id, timings))).items():
        cost_counts[cost] += count
        if cost_of_id[cost].flops:
            flops_by_peak[timing_of_id[timing].peak_key] += cost_of_id[cost].flops * count
    if flops_by_peak:
        key, _ = max(flops_by_peak.items(), key=lambda item: (item[1], item[0]))
        ridge = spec.peak_flops_per_s[key] / spec.memory_bandwidth_bytes_per_s
    else:
        peak = spec.peak_for(None, ComputeUnit.VECTOR, tf32=tf32)
        key, ridge = peak.key, peak.flops_per_s / spec.memory_bandwidth_bytes_per_s
    read, written = [0, 0, 0], [0, 0, 0]
    flops = 0
    for ident, count in cost_counts.items():
        cost = cost_of_id[ident]
        flops += cost.flops * count
        for total, part in ((read, cost.bytes_read), (written, cost.bytes_written)):
            total[0] += part.weights * count
            total[1] += part.activations * count
            total[2] += part.kv_cache * count
    memory = Bound.MEMORY
    kernels = len(timings) - list(map(_BOUND, timings)).count(Bound.NONE)
    launch = kernels * (spec.kernel_overhead_s or 0.0)
    return Summary(
        flops=flops,
        bytes_read=ByteCounts(*read),
        bytes_written=ByteCounts(*written),
        predicted_latency_s=sum(map(_LATENCY, timings)) + launch,
        memory_bound_latency_s=sum(
            t.predicted_latency_s for t in timings if t.bound is memory
        ),
        ridge_point=ridge,
        ridge_peak_key=key,
        kernels=kernels,
        launch_s=launch,
        fused=fused,
        by_block=EMPTY_BLOCKS if model is None else block_totals(nodes, model.graph),
    )


def coverage_of(nodes: tuple[NodeResult, ...], model: Model) -> Coverage:
    unmodelled = Counter(
        _qualified(n) for n in nodes if n.cost.status is CostStatus.UNMODELLED
    )
    gaps = [n for n in nodes if not n.cost.is_modelled]
    return Coverage(
        nodes_total=len(nodes),
        nodes_modelled=len(nodes) - len(gaps),
        unmodelled_ops=MappingProxyType(dict(sorted(unmodelled.items()))),
        unresolved_nodes=sum(1 for n in nodes if n.cost.status is CostStatus.UNRESOLVED),
        bytes_lower_bound=sum(n.cost.bytes_moved for n in gaps),
        tensors_total=model.tensors_total,
        tensors_resolved=model.tensors_resolved,
        unresolved_examples=tuple(
            f"{n.name} ({_qualified(n)}): {n.cost.note}"
            for n in nodes
            if n.cost.status is CostStatus.UNRESOLVED
        )[:3],
    )


def _qualified(node: NodeResult) -> str:
    return f"{node.domain}::{node.op_type}" if node.domain else node.op_type


# Outcomes that depend on nothing but the cost key (an unresolved node's note names tensors).
_SHARED = frozenset({CostStatus.MODELLED, CostStatus.METADATA, CostStatus.FOLDED,
                     CostStatus.UNMODELLED})


def analyse(model: Model, spec: HardwareSpec, *, tf32: bool = False,
            detail: bool = True) -> Report:
    """Cost every node, place it on the roofline of `spec`, and total the graph (no rules run:
    memlint.api.check adds the findings). detail=False leaves the fused estimate and the
    totals by block out of the summary (what a sweep point needs of a one-layer load).

    Nodes that read and write the same (memlint.costs.registry.cost_keys: op, attributes,
    shapes, dtypes, kinds, known values) share one cost and timing: the 80 layers of a decoder
    are costed as one."""
    graph = model.graph
    key_of = cost_keys(graph)
    seen: dict[tuple, tuple] = {}
    nodes = []
    for node in graph.nodes:
        key = key_of(node)
        found = seen.get(key) if key is not None else None
        if found is None:
            try:
                cost = cost_of(node, graph)
            except MemlintError:
                raise
            except Exception as exc:  # a formula bug must name the node, not crash anonymously
                raise MemlintError(
                    f"cost formula for {node.qualified_op} failed on node {node.name!r}: {exc}"
                ) from exc
            timing = time_op(cost, spec, tf32=tf32)
            if key is not None and cost.status in _SHARED:
                seen[key] = (cost, timing)
        else:
            cost, timing = found
        nodes.append(NodeResult(node.name, node.op_type, node.domain, cost, timing, node.source))
    results = tuple(nodes)
    return Report(
        model=model,
        hardware=spec,
        nodes=results,
        summary=summarize(results, spec, tf32, model=model if detail else None),
        coverage=coverage_of(results, model),
        tf32=tf32,
    )
