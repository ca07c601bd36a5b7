"""The second estimate: the kernels a fusing runtime runs for a graph, and their time.

The first estimate (memlint.core.report.summarize) runs every node as its own kernel, as the
graph is written. A fusing runtime (onnxruntime's transformer optimizer, TensorRT,
torch.compile, vLLM, TensorRT-LLM) runs fewer, larger kernels; this module groups the graph's
nodes as they do and times each group on the roofline as one kernel, reading its inputs once and
writing only what leaves it:

- attention: every eager attention block (memlint.analysis.attention: Q @ K^T, scale, mask,
  softmax, P @ V and the ops that prepare its operands), with the layout copies and copies of
  the KV cache that feed it (the past/new Concat, the GQA repeat_kv Expand, Transposes, Casts,
  memlint.analysis.kv_copies): the kernel reads the cache once, unexpanded, and the new tokens;
- the cache is updated in place: a KV-cache graph output (present.*) is written as the tokens it
  appends (its size less the past it extends), as a shared past/present buffer does;
- element-wise chains, norms and decomposed activations (memlint.analysis.fusion.find_chains:
  the ML102 chains, reductions of a norm included) are one kernel each;
- a matrix product or convolution whose result only one chain (or one element-wise op) reads
  runs it as its epilogue (bias, activation, residual: Gemm, FusedConv, BiasGelu, Inductor's
  epilogues; a dynamically quantized MatMulInteger's Cast, scale and bias:
  MatMulIntegerToFloat): its result is never written;
- weight matrix products that read the same activation (Q, K and V projections; gate and up) are
  one kernel that reads the activation once;
- nodes that compute only on tensor shapes (reshape targets from Shape -> Gather -> Concat)
  run on the host or are folded when the runtime builds its engine or captures a CUDA graph:
  no kernel;
- every other node that runs is a kernel of its own, timed as in the first estimate.

A group's FLOPs are its nodes'; its bytes are the distinct tensors it reads from outside (at
their stored width, at their source through views) and the tensors it writes that are read
outside or are graph outputs; its time is the roofline's (memlint.roofline.time_op) for the
unit and dtype of its largest matrix product, and the spec's per-kernel launch cost is counted
once per kernel.
A group with a node whose cost is not modelled is not formed: its nodes stay kernels of their
own, so unmodelled bytes are never hidden.

The plan (the groups) depends on the graph alone and is found once per graph; `estimate` prices
it at the node costs it is given (a what-if's).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from memlint.analysis.attention import attention_block
from memlint.analysis.fusion import chain_of, find_chains, is_fusible, is_view, readers, source
from memlint.analysis.graph_index import GraphIndex
from memlint.analysis.kv_copies import copies
from memlint.costs import ByteCounts, CostStatus, OpCost
from memlint.hardware import HardwareSpec
from memlint.ir import ComputeUnit, Graph, Node, ValueKind, per_graph
from memlint.roofline import Bound, NodeResult, time_op

ATTENTION, CHAIN, EPILOGUE, PROJECTIONS = "attention", "chain", "epilogue", "projections"
KINDS = (ATTENTION, CHAIN, EPILOGUE, PROJECTIONS)  # the kinds of group a plan forms
SHAPES = "shapes"  # what computing on shapes costs as written (the fused estimate runs no kernel)
# Ops that only move the K/V operand of an attention block (layout, GQA expansion, the cache
# append, dtype): the fused kernel reads their source instead.
_OPERAND_OPS = frozenset({"Transpose", "Expand", "Tile", "Concat", "Cast", "Reshape", "Squeeze",
                          "Unsqueeze", "Identity", "Flatten"})
# Matrix products whose second input is the weight (the integer ones of dynamic quantization
# too: onnxruntime runs MatMulInteger with its Cast, scale Mul and bias Add as one
# MatMulIntegerToFloat).
_PROJECTION_OPS = frozenset({"MatMul", "Gemm", "com.microsoft::MatMulNBits",
                             "com.microsoft::FusedMatMul", "MatMulInteger",
                             "com.microsoft::MatMulIntegerToFloat",
                             "com.microsoft::DynamicQuantizeMatMul"})
# Products that run element-wise work on their result before writing it (an epilogue).
_PRODUCTS = _PROJECTION_OPS | {"Conv", "ConvTranspose", "com.microsoft::FusedConv",
                               "ConvInteger"}
_FOLDED_INTO_PRODUCT = frozenset({"BatchNormalization"})  # folded into the weights at load
_WALK_LIMIT = 12  # operand ops walked up from a block


@dataclass(frozen=True)
class Group:
    """Nodes one fused kernel runs (graph order), the tensors it reads once and writes."""

    kind: str  # one of KINDS
    nodes: tuple[str, ...]
    positions: tuple[int, ...]  # the nodes' places in the graph's node list
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    appends: Mapping[str, str]  # a KV-cache output written in place -> the past it extends


@dataclass(frozen=True)
class Plan:
    groups: tuple[Group, ...]
    grouped: frozenset[int]  # the place of every node of a group
    shape_math: frozenset[int]  # places of nodes that compute on shapes alone (no kernel)


@dataclass(frozen=True)
class FusedEstimate:
    """The graph as a fusing runtime runs it: kernels, their FLOPs, bytes and time."""

    kernels: int
    latency_s: float
    flops: int
    bytes_read: ByteCounts
    bytes_written: ByteCounts
    groups: Mapping[str, int]  # kind -> groups of that kind that ran (the rest: single nodes)
    # kind -> what its groups' nodes take as written less what the groups take fused: what
    # keeps the as-written estimate above this one, by the fusion that removes it
    gap_s: Mapping[str, float]

    @property
    def bytes_moved(self) -> int:
        return self.bytes_read.total + self.bytes_written.total


def plan(ctx: GraphIndex) -> Plan:
    """The groups a fusing runtime forms in this graph (found once per graph: the groups
    depend on its nodes and on which of them are modelled, the same at every point)."""
    return _plan(ctx.graph, ctx)


@per_graph
def _plan(graph: Graph, ctx: GraphIndex) -> Plan:
    taken: set[str] = set()
    groups: list[Group] = []
    cached = copies(graph)
    for node in graph.nodes:
        if node.op_type != "Softmax" or node.domain:
            continue
        block = attention_block(ctx, node)
        if block is None or any(n.name in taken for n in block.nodes):
            continue
        members = {n.name: n for n in block.nodes}
        _absorb_operands(ctx, members, cached)
        group = _group(ctx, ATTENTION, members, cached)
        if group is not None:
            groups.append(group)
            taken.update(group.nodes)
    chains = [{n.name: n for n in chain.nodes if n.name not in taken}
              for chain in find_chains(ctx, glue=True)]
    chains = [members for members in chains if members]
    in_chain = {name for members in chains for name in members}
    for node in graph.nodes:  # a single element-wise op may be a product's epilogue too
        if node.name not in taken and node.name not in in_chain and is_fusible(node):
            chains.append({node.name: node})
            in_chain.add(node.name)
    projections = _shared_input_projections(ctx, taken | in_chain)
    owner = {name: members for members in projections for name in members}
    for members in chains:
        found = _epilogue_of(ctx, members, (taken, in_chain))
        if found is None:
            kind = CHAIN
        elif found[-1].name in owner:  # the epilogue of one of a group of projections
            owner[found[-1].name].update(members)
            owner[found[-1].name].update((n.name, n) for n in found)
            continue
        else:
            members.update((n.name, n) for n in found)
            kind = EPILOGUE
        group = _group(ctx, kind, members, cached) if len(members) > 1 else None
        if group is not None:
            groups.append(group)
            taken.update(group.nodes)
    for members in projections:
        group = _group(ctx, PROJECTIONS, members, cached)
        if group is not None:
            groups.append(group)
            taken.update(group.nodes)
    return Plan(tuple(groups), frozenset(i for g in groups for i in g.positions),
                _shape_math(graph))


_SHAPE_SOURCES = frozenset({"Shape", "Size"})


def _shape_math(graph: Graph) -> frozenset[int]:
    """Places of the nodes that compute only on tensor shapes (Shape -> Gather -> Unsqueeze ->
    Concat reshape targets, Range over a length): their inputs are shapes, constants or results
    of such nodes, and one of them at least is a shape. A fusing runtime computes them on the
    host or folds them when it builds the engine or captures the graph: no kernel."""
    derived: set[str] = set()
    found = []
    for i, node in enumerate(graph.nodes):
        if node.op_type in _SHAPE_SOURCES and not node.domain:
            derived.update(node.outputs)
            continue
        if derived.isdisjoint(node.inputs) or node.subgraphs:
            continue
        inputs = [name for name in node.inputs if name]
        if not inputs or not any(name in derived for name in inputs):
            continue
        if all(name in derived or _constant(graph, name) for name in inputs):
            derived.update(o for o in node.outputs if o)
            found.append(i)
    return frozenset(found)


def _constant(graph: Graph, name: str) -> bool:
    value = graph.value(name)
    return value is not None and value.kind is ValueKind.WEIGHT and not value.dtype.is_float


def _epilogue_of(ctx: GraphIndex, members: dict[str, Node],
                 grouped: tuple[Collection[str], ...]) -> list[Node] | None:
    """The matrix product or convolution whose result only `members` read (looked through
    views, and through an inference BatchNormalization, which runtimes fold into the
    convolution), which a runtime runs with the members as its epilogue (bias, activation,
    residual): [folded nodes ..., product], the first in graph order that qualifies; none of
    them in one of `grouped` (names already in a group)."""
    for node in members.values():
        for name in node.inputs:
            found: list[Node] = []  # the walked nodes read by the members or by each other
            folded: set[str] = set()
            while name:
                producer = ctx.producer(source(ctx, name))
                if producer is None or producer.name in members or producer.name in folded \
                        or any(producer.name in names for names in grouped):
                    break
                result = ctx.result(producer.name)
                out = producer.outputs[0]
                if result is None or result.cost.status is not CostStatus.MODELLED \
                        or ctx.is_graph_output(out) \
                        or any(r.name not in members and r.name not in folded
                               for r in readers(ctx, out)):
                    break
                found.append(producer)
                if producer.qualified_op in _PRODUCTS:
                    return found
                if producer.qualified_op not in _FOLDED_INTO_PRODUCT or len(found) > 2:
                    break
                folded.add(producer.name)
                name = producer.inputs[0]
    return None


def _absorb_operands(ctx: GraphIndex, members: dict[str, Node], cached: frozenset[str]) -> None:
    """Add to `members` (an attention block) the ops that only move its operands: walked up
    from the block's inputs through copies of the KV cache (any op that moves data) and
    through layout ops whose result only the block reads."""
    frontier = [name for node in members.values() for name in node.inputs if name]
    walked = 0
    while frontier and walked < _WALK_LIMIT * 3:
        name = frontier.pop()
        node = ctx.producer(name)
        if node is None or node.name in members or node.subgraphs:
            continue
        result = ctx.result(node.name)
        if result is None or not result.cost.is_modelled:
            continue
        is_copy = name in cached
        moves = node.qualified_op in _OPERAND_OPS or is_view(ctx, node)
        if not moves:
            continue
        if not is_copy and any(c.name not in members for c in ctx.consumers(name)):
            continue  # another kernel reads it too: it stays a kernel of its own
        members[node.name] = node
        walked += 1
        frontier.extend(i for i in node.inputs if i)


def _shared_input_projections(ctx: GraphIndex, taken: Collection[str]) -> list[dict[str, Node]]:
    """Weight matrix products that read the same activation (looked through views), two or
    more of them: Q/K/V, gate/up."""
    by_input: dict[str, dict[str, Node]] = {}
    for node in ctx.graph.nodes:
        if node.name in taken or node.qualified_op not in _PROJECTION_OPS or len(node.inputs) < 2:
            continue
        weight = ctx.stored(node.inputs[1])
        data = ctx.value(node.inputs[0])
        if weight is None or weight.kind is not ValueKind.WEIGHT or data is None \
                or data.kind is ValueKind.WEIGHT:
            continue
        by_input.setdefault(source(ctx, node.inputs[0]), {})[node.name] = node
    return [members for members in by_input.values() if len(members) > 1]


def _group(ctx: GraphIndex, kind: str, members: dict[str, Node],
           cached: frozenset[str]) -> Group | None:
    """The group of `members` (None when one of them is not modelled)."""
    for name in members:
        result = ctx.result(name)
        if result is None or not result.cost.is_modelled:
            return None
    place = _places(ctx.graph)
    order = sorted(members.values(), key=lambda n: place[n.name])
    chain = chain_of(ctx, order)
    writes = tuple(v.name for v in chain.outputs)
    reads = tuple(v.name for v in chain.inputs)
    appends = {}
    for name in writes:
        node = ctx.producer(name)
        if ctx.is_graph_output(name) and name in cached and node is not None \
                and node.op_type == "Concat" and not node.domain:
            past = [i for i in node.inputs if i and _is_cache(ctx, i, cached)]
            if past:
                appends[name] = past[0]
    return Group(kind, tuple(n.name for n in order), tuple(place[n.name] for n in order), reads,
                 writes, appends)


@per_graph
def _places(graph: Graph) -> dict[str, int]:
    return {node.name: i for i, node in enumerate(graph.nodes)}


def _is_cache(ctx: GraphIndex, name: str, cached: frozenset[str]) -> bool:
    value = ctx.value(source(ctx, name))
    return value is not None and (value.kind is ValueKind.KV_CACHE or name in cached)


def estimate(
    ctx: GraphIndex,
    spec: HardwareSpec,
    *,
    tf32: bool = False,
    results: Sequence[NodeResult] | None = None,
    exclude: Collection[str] = frozenset(),
) -> FusedEstimate:
    """Price the plan of `ctx`'s graph at its tensor sizes and its own node results, or at
    `results` (the costs of the graph's nodes, in its order or named). Nodes named in
    `exclude` are left out (a group whose nodes are all excluded is no kernel)."""
    found = plan(ctx)
    results = ctx.results if results is None else results
    names = [n.name for n in ctx.graph.nodes]
    if len(results) != len(names):  # some nodes left out (a step without excluded blocks)
        by_name = {r.name: r for r in results}
        results = [by_name.get(name) for name in names]
    nbytes = _own_sizes(ctx)
    kinds = _kinds(ctx)
    cached = copies(ctx.graph)
    kernels, latency, flops = 0, 0.0, 0
    launch = spec.kernel_overhead_s or 0.0
    read, written = [0, 0, 0], [0, 0, 0]
    ran = dict.fromkeys(KINDS, 0)
    gap = dict.fromkeys((*KINDS, SHAPES), 0.0)
    for group in found.groups:
        nodes = [results[i] for i in group.positions
                 if names[i] not in exclude and results[i] is not None]
        if not nodes:
            continue
        cost = _group_cost(group, nodes, nbytes, kinds, cached)
        timing = time_op(cost, spec, tf32=tf32)
        if timing.bound is Bound.NONE:
            continue
        kernels += 1
        ran[group.kind] += 1
        latency += timing.predicted_latency_s
        ran_alone = sum(1 for r in nodes if r.timing.bound is not Bound.NONE)
        gap[group.kind] += sum(r.timing.predicted_latency_s for r in nodes) \
            - timing.predicted_latency_s + launch * (ran_alone - 1)  # one launch, not n
        flops += cost.flops
        _add(read, cost.bytes_read)
        _add(written, cost.bytes_written)
    for i, result in enumerate(results):
        if result is None or i in found.grouped or names[i] in exclude:
            continue
        if result.timing.bound is Bound.NONE:
            continue
        if i in found.shape_math:  # computed on the host: neither its time nor a launch
            gap[SHAPES] += result.timing.predicted_latency_s + launch
            continue
        kernels += 1
        latency += result.timing.predicted_latency_s
        flops += result.cost.flops
        _add(read, result.cost.bytes_read)
        _add(written, result.cost.bytes_written)
    latency += kernels * launch
    return FusedEstimate(kernels, latency, flops, ByteCounts(*read), ByteCounts(*written), ran,
                         gap)


def _add(total: list[int], part: ByteCounts) -> None:
    total[0] += part.weights
    total[1] += part.activations
    total[2] += part.kv_cache


def _own_sizes(ctx: GraphIndex) -> Callable[[str], int | None]:
    def size(name: str) -> int | None:
        value = ctx.stored(name)
        return None if value is None else value.nbytes
    return size


def _kinds(ctx: GraphIndex) -> Callable[[str], int]:
    """Tensor name -> 0 (weights), 1 (activations) or 2 (KV cache) as the costs count them."""
    graph = ctx.graph

    def kind(name: str) -> int:
        value = ctx.stored(name) or graph.value(name)
        if value is None:
            return 1
        if value.kind is ValueKind.WEIGHT:
            return 0
        return 2 if value.kind is ValueKind.KV_CACHE else 1
    return kind


def _group_cost(group: Group, nodes: list[NodeResult], nbytes: Callable[[str], int | None],
                kind: Callable[[str], int], cached: frozenset[str]) -> OpCost:
    read, written = [0, 0, 0], [0, 0, 0]
    for name in group.reads:
        read[kind(name)] += nbytes(name) or 0
    # A kernel reads at most the weight bytes its nodes read as written: a node that reads part
    # of a weight (the experts a step routes to, of experts stacked in one tensor) keeps that
    # part, where the tensor's size would count every expert.
    read[0] = min(read[0], sum(r.cost.bytes_read.weights for r in nodes))
    for name in group.writes:
        size = nbytes(name) or 0
        past = group.appends.get(name)
        if past is not None:  # updated in place: only the appended tokens are written
            written[2] += max(size - (nbytes(past) or 0), 0)
        else:
            written[kind(name)] += size
    main = max(nodes, key=lambda r: (r.cost.flops, r.cost.unit is ComputeUnit.TENSOR))
    return OpCost(
        flops=sum(r.cost.flops for r in nodes),
        bytes_read=ByteCounts(*read),
        bytes_written=ByteCounts(*written),
        status=CostStatus.MODELLED,
        unit=main.cost.unit,
        compute_dtype=main.cost.compute_dtype,
    )


__all__ = ["KINDS", "FusedEstimate", "Group", "Plan", "estimate", "plan"]
