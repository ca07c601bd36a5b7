"""What a measured run found: per-node times next to the prediction, and a verdict per finding.

Plain frozen dataclasses (no onnxruntime here), so that the report and its renderers can hold and
format a Measurement without importing the runtime.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from memlint.findings import Finding, layer_pattern


class Verdict(enum.Enum):
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not confirmed"
    NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class NodeMeasurement:
    """One IR node: its measured kernel time (graph optimisations off) next to its prediction.

    `measured_s` is the median over the profiled runs of the node's kernel time in onnxruntime's
    profiler, less the profiler's own cost per kernel (Measurement.profiler_floor_s).
    `compute_time_s` and `memory_time_s` are the roofline's two terms for the node (FLOPs /
    peak, bytes / bandwidth), so `compute_share` and `memory_share` say what fraction of each
    roof the measured run reached. `optimised_s` is the node's share of the time of the
    optimised run's kernel(s) that replaced it (None when no kernel of that run maps back to it).
    """

    name: str
    op_type: str
    measured_s: float
    predicted_s: float
    flops: int
    bytes_moved: int
    compute_time_s: float
    memory_time_s: float
    optimised_s: float | None = None
    shared: bool = False  # measured_s is this node's share of one kernel that ran several nodes

    @property
    def achieved_flops_per_s(self) -> float:
        return self.flops / self.measured_s if self.measured_s > 0 else 0.0

    @property
    def achieved_bandwidth_bytes_per_s(self) -> float:
        return self.bytes_moved / self.measured_s if self.measured_s > 0 else 0.0

    @property
    def roof_fraction(self) -> float | None:
        """Predicted over measured time: 1.0 runs at the roof, 0.5 takes twice the roofline time."""
        return self.predicted_s / self.measured_s if self.measured_s > 0 else None

    @property
    def compute_share(self) -> float:
        """Achieved FLOP rate over the compute peak the prediction used."""
        return self.compute_time_s / self.measured_s if self.measured_s > 0 else 0.0

    @property
    def memory_share(self) -> float:
        """Achieved bandwidth over the memory bandwidth of the spec."""
        return self.memory_time_s / self.measured_s if self.measured_s > 0 else 0.0


@dataclass(frozen=True)
class OptimisedKernel:
    """A kernel of the run with full graph optimisations, and the IR nodes it replaced.

    `nodes` is empty when it could not be mapped back (a kernel onnxruntime inserted, such as a
    layout reorder or a memory copy, or a fusion whose outputs are new tensors); `note` says why.
    """

    name: str
    op_type: str
    measured_s: float
    nodes: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class FindingCheck:
    """Whether a finding's premise held in the measured run, with the numbers behind it.

    `compute_share` and `memory_share` are over the finding's measured nodes: the roofline's
    compute (memory) time of those nodes over their measured time, i.e. achieved FLOP rate over
    peak and achieved bandwidth over the spec's bandwidth (see docs/confirm.md).
    """

    finding: Finding
    verdict: Verdict
    reason: str
    predicted_s: float | None = None
    measured_s: float | None = None
    optimised_s: float | None = None
    compute_share: float | None = None
    memory_share: float | None = None
    nodes_measured: int = 0

    @property
    def code(self) -> str:
        return self.finding.code


@dataclass(frozen=True)
class Measurement:
    """A measured run of a linted model, joined to the report's nodes and findings.

    onnxruntime (an ONNX file): latencies are medians over the timed runs of one
    `InferenceSession.run` (wall clock, profiler off). `predicted_latency_s` is the report's
    prediction for the graph as written (unfused), so `total_error` compares it with the run
    that has graph optimisations off; `optimised_error` compares it with the run onnxruntime
    optimises as it would in deployment; `fused_error` compares the report's fused estimate
    (`predicted_fused_latency_s`, the kernels a fusing runtime runs) with that optimised run.
    torch (a torch.export graph, memlint.confirm.
    torch_run): the graph as written runs eagerly, op by op; there is no optimised run
    (`optimised_latency_s` None).
    """

    provider: str  # "CPUExecutionProvider", "CUDAExecutionProvider", "eager (cpu)" (torch), ...
    device: str  # "cpu" or "gpu": the spec kind it matches
    hardware: str  # the spec's name the prediction used
    runs: int
    warmup: int
    threads: int  # onnxruntime intra-op threads (0: onnxruntime's default)
    weights: str  # "real", "random" or "real and random"
    predicted_latency_s: float
    unoptimised_latency_s: float
    optimised_latency_s: float | None  # None: no optimised run (torch)
    measured_nodes_s: float  # median over runs of the sum of node kernel times (optimisations off)
    nodes: tuple[NodeMeasurement, ...]  # graph order; nodes that ran a kernel
    not_run: tuple[str, ...]  # IR nodes with no kernel (constants, nodes onnxruntime folded)
    unmapped_s: float  # kernel time of kernels that are no IR node (inserted casts, copies)
    unmapped_kernels: tuple[str, ...]
    kernels: tuple[OptimisedKernel, ...]  # the optimised run's kernels, slowest first
    findings: tuple[FindingCheck, ...]
    onnxruntime_version: str = ""
    profiler_floor_s: float = 0.0  # the profiler's own cost taken off every kernel time
    notes: tuple[str, ...] = ()
    kernel_overhead_s: float | None = None  # the spec's per-kernel overhead the prediction used
    runtime: str = ""  # what ran it: "onnxruntime 1.32.0", "torch 2.13.0"
    # the report's fused estimate (Summary.predicted_latency_fused_s); None: the report has none
    predicted_fused_latency_s: float | None = None

    @property
    def total_error(self) -> float:
        """(predicted - measured) / measured against the unoptimised run's latency."""
        return _error(self.predicted_latency_s, self.unoptimised_latency_s)

    @property
    def optimised_error(self) -> float | None:
        """(predicted - measured) / measured against the optimised run's latency (None: none)."""
        if self.optimised_latency_s is None:
            return None
        return _error(self.predicted_latency_s, self.optimised_latency_s)

    @property
    def fused_error(self) -> float | None:
        """(predicted fused - measured) / measured against the optimised run's latency (None:
        no fused estimate or no optimised run)."""
        if self.predicted_fused_latency_s is None or self.optimised_latency_s is None:
            return None
        return _error(self.predicted_fused_latency_s, self.optimised_latency_s)

    @property
    def nodes_error(self) -> float:
        """(predicted - measured) / measured against the sum of the measured node kernel times."""
        return _error(self.predicted_latency_s, self.measured_nodes_s)

    @property
    def kernels_mapped_fraction(self) -> float:
        """Share of the optimised run's kernel time that maps back to IR nodes."""
        total = sum(k.measured_s for k in self.kernels)
        mapped = sum(k.measured_s for k in self.kernels if k.nodes)
        return mapped / total if total else 1.0

    def node(self, name: str) -> NodeMeasurement | None:
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    def check_for(self, finding: Finding) -> FindingCheck | None:
        for check in self.findings:
            if check.finding is finding or check.finding == finding:
                return check
        return None

    @property
    def small_kernels(self) -> tuple[int, float | None]:
        """(count, median measured seconds) of the kernels with under SMALL_WORK_S of roofline
        work (shape and index ops, views, scalars) that ran on their own (not a share of a
        kernel that ran several nodes): what a kernel costs the runtime beyond its work, next
        to the spec's per-kernel overhead. (0, None) when there are none."""
        times = [n.measured_s for n in self.nodes if not n.shared
                 and max(n.compute_time_s, n.memory_time_s) < SMALL_WORK_S]
        return len(times), statistics.median(times) if times else None

    @property
    def rank_correlation(self) -> RankCorrelation:
        """How well the prediction orders the measured time: see `rank_correlation`."""
        return rank_correlation(self.nodes)


SMALL_WORK_S = 0.5e-6  # roofline work under this: a kernel whose time is the runtime's own
RANK_SHARE = 0.01  # the groups (nodes) the rank correlation covers take at least this share


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rank correlation of predicted and measured times over the groups of nodes
    (or single nodes) that take at least `share` of the measured node time.

    `rho` is None when it is undefined: fewer than three groups pass the share, or either side
    has no spread (every kept group predicted alike).
    """

    rho: float | None
    groups: int  # groups (or nodes) kept
    nodes: int  # nodes in them
    share: float
    grouped: bool


def rank_correlation(
    nodes: Sequence[NodeMeasurement], share: float = RANK_SHARE, *, grouped: bool = True
) -> RankCorrelation:
    """Spearman's rho of predicted vs measured time over the nodes that take >= `share` of the
    measured time of all `nodes`.

    grouped: the same node of identical layers is taken as one (predicted and measured times
    summed): nodes whose names differ only in their numbers (memlint.findings.layer_pattern,
    as findings are grouped), of one op type and one predicted time. A roofline gives identical
    layers one prediction, so ranking them against each other would rank measurement noise, and
    a set of such ties has no rank correlation at all (BERT-base at batch 1: the only nodes over
    1% are its 24 FFN MatMuls, all predicted alike).
    """
    ran = [n for n in nodes if n.measured_s > 0]
    total = sum(n.measured_s for n in ran)
    sums: dict[tuple[str, str, str] | int, list[float]] = {}
    for index, node in enumerate(ran):
        key = ((node.op_type, layer_pattern(node.name), f"{node.predicted_s:.6g}") if grouped
               else index)
        entry = sums.setdefault(key, [0.0, 0.0, 0])
        entry[0] += node.predicted_s
        entry[1] += node.measured_s
        entry[2] += 1
    kept = [entry for entry in sums.values() if entry[1] >= share * total]
    rho = spearman([e[0] for e in kept], [e[1] for e in kept])
    return RankCorrelation(rho, len(kept), int(sum(e[2] for e in kept)), share, grouped)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson's r of the ranks, ties sharing their average rank); None for
    fewer than three pairs or when either side has no spread."""
    if len(xs) != len(ys):
        raise ValueError("spearman needs pairs")
    if len(xs) < 3:
        return None
    try:
        return statistics.correlation(_ranks(xs), _ranks(ys))
    except statistics.StatisticsError:  # either side has no spread
        return None


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1; tied values share the average of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _error(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured if measured > 0 else float("inf")
