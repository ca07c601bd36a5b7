"""Eager attention blocks (Q @ K^T -> scale/mask -> Softmax -> P @ V), found from a Softmax.

Shared by ML103 (which reports them) and the rules that must not report their parts again.
"""

from __future__ import annotations

from dataclasses import dataclass

from memlint.analysis.graph_index import GraphIndex
from memlint.costs import CostStatus
from memlint.ir import Node, ValueKind

MATMULS = frozenset({"MatMul", "com.microsoft::FusedMatMul"})
# The Q/DQ pairs of a QDQ graph wrap every op of a block (memlint.costs.quantized folds them).
QDQ = frozenset({"QuantizeLinear", "DequantizeLinear", "com.microsoft::QuantizeLinear",
                 "com.microsoft::DequantizeLinear"})
# Score-sized ops between Q @ K^T and the softmax (scale, mask, softcap, casts, views) ...
BEFORE = frozenset({"Mul", "Div", "Add", "Sub", "Where", "Tanh", "Cast", "Reshape", "Identity",
                    "Squeeze", "Unsqueeze"}) | QDQ
# ... and between the softmax and P @ V (casts, dropout, views, NaN guards, head masks).
AFTER = frozenset({"Cast", "Dropout", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Where",
                   "IsNaN", "Mul"}) | QDQ


@dataclass(frozen=True)
class Block:
    """One attention block: the Softmax first in `nodes`, then the rest in graph order."""

    softmax: Node
    qk: Node  # the Q @ K^T product
    path: tuple[Node, ...]  # from qk up to the softmax input (qk first)
    after: tuple[Node, ...]  # between the softmax and P @ V
    pv: Node  # the P @ V product
    nodes: tuple[Node, ...]


def attention_block(ctx: GraphIndex, softmax: Node) -> Block | None:
    """The eager attention block around `softmax`, or None when it is not one."""
    scores = ctx.value(softmax.outputs[0])
    path = _before(ctx, softmax.inputs[0], scores.numel) if scores and scores.nbytes else None
    found = _after(ctx, softmax) if path else None
    if found is None:
        return None
    qk, (after, pv) = path[0], found
    qk_ops = [*_operand_ops(ctx, qk.inputs[0], False), *_operand_ops(ctx, qk.inputs[1], True)]
    nodes = tuple({n.name: n for n in (softmax, *qk_ops, *path, *after, pv)}.values())
    return Block(softmax, qk, tuple(path), tuple(after), pv, nodes)


def attention_node_names(ctx: GraphIndex) -> frozenset[str]:
    """Every node of every eager attention block of the graph (found once per graph)."""
    return ctx.shared("attention-node-names", lambda: frozenset(
        n.name
        for softmax in ctx.graph.nodes if softmax.op_type == "Softmax" and not softmax.domain
        for block in [attention_block(ctx, softmax)] if block is not None
        for n in block.nodes
    ))


def _is_weight(ctx: GraphIndex, name: str) -> bool:
    value = ctx.value(name)
    return value is None or value.kind is ValueKind.WEIGHT


def _numel(ctx: GraphIndex, name: str) -> int | None:
    value = ctx.value(name)
    return value.numel if value is not None else None


def _before(ctx: GraphIndex, name: str, numel: int, depth: int = 0) -> list[Node] | None:
    """The nodes from the Q @ K^T MatMul to the value `name`, walking up score-sized tensors."""
    node = ctx.producer(name)
    if node is None or depth > 16:
        return None
    if node.qualified_op in MATMULS:
        both = not _is_weight(ctx, node.inputs[0]) and not _is_weight(ctx, node.inputs[1])
        return [node] if both else None
    if node.qualified_op not in BEFORE:
        return None
    for source in node.inputs[:1] if node.op_type == "Reshape" else node.inputs:
        if not _is_weight(ctx, source) and _numel(ctx, source) == numel:
            path = _before(ctx, source, numel, depth + 1)
            if path is not None:
                return [*path, node]
    return None


def _after(ctx: GraphIndex, softmax: Node) -> tuple[list[Node], Node] | None:
    """The ops between the softmax and P @ V, and that MatMul; None if the probabilities are
    used elsewhere too (returned, reduced, ...)."""
    numel = _numel(ctx, softmax.outputs[0])
    chain: list[Node] = []
    matmuls: list[Node] = []
    frontier, seen = [softmax.outputs[0]], {softmax.name}
    while frontier:
        name = frontier.pop(0)
        if ctx.is_graph_output(name):
            return None
        for user in ctx.consumers(name):
            if user.name in seen:
                continue
            seen.add(user.name)
            if user.qualified_op in MATMULS and user.inputs[0] == name:
                if _is_weight(ctx, user.inputs[1]):
                    return None
                matmuls.append(user)
            elif user.qualified_op in AFTER and _numel(ctx, user.outputs[0]) == numel:
                chain.append(user)
                frontier.append(user.outputs[0])
            elif ctx.result(user.name).cost.status is not CostStatus.METADATA:
                return None
    return (chain, matmuls[0]) if len(matmuls) == 1 else None


def _operand_ops(ctx: GraphIndex, name: str, transpose: bool) -> list[Node]:
    """Ops that only prepare a QK operand (scalar scale; for K also the transpose), which a fused
    kernel absorbs: walked up while each result has this one use."""
    ops: list[Node] = []
    while len([n for n in ops if n.qualified_op not in QDQ]) < 3 and (
        len(ctx.consumers(name)) == 1 and not ctx.is_graph_output(name)
    ):
        node = ctx.producer(name)
        if node is None:
            break
        sizes = [_numel(ctx, v) for v in node.inputs]
        if node.qualified_op in QDQ or (node.op_type == "Transpose" and transpose) or (
            node.op_type in ("Mul", "Div") and sizes[1:] == [1]
        ):
            name = node.inputs[0]
        elif node.op_type == "Mul" and len(sizes) == 2 and sizes[0] == 1:  # scale * x
            name = node.inputs[1]
        else:
            break
        ops.insert(0, node)
    return ops
