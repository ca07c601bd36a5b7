"""What the tests of exported artifacts check each one for: full coverage (every tensor
resolved, every node modelled) and FLOPs against an independent count, torch's FlopCounterMode,
which counts the matrix products only (2*M*N*K each, no bias, no element-wise op), set against
the part of memlint's count that is comparable to it."""

from __future__ import annotations

from memlint.costs import CostStatus

MATMUL_FAMILY = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum"})
# Inputs that add a bias inside a matrix-product node (memlint counts 1 FLOP per output element
# for them, see memlint/costs/matmul.py and conv.py; torch's flop counter counts 2*M*N*K only).
BIAS_INPUT = {"Gemm": 2, "Conv": 2, "ConvTranspose": 2}


def matmul_family_flops(report) -> int:
    """memlint's FLOPs of the matrix-product nodes (ONNX domain), bias adds included."""
    return sum(n.cost.flops for n in report.nodes if not n.domain and n.op_type in MATMUL_FAMILY)


def bias_adds(report) -> int:
    """FLOPs memlint counts for bias inputs of matrix-product nodes: 1 per output element."""
    graph = report.model.graph
    total = 0
    for node in graph.nodes:
        index = BIAS_INPUT.get(node.op_type)
        if node.domain or index is None or len(node.inputs) <= index or not node.inputs[index]:
            continue
        total += graph.value(node.outputs[0]).numel
    return total


def matrix_product_flops(report) -> int:
    """The part of memlint's count that FlopCounterMode counts: the matrix products' 2*M*N*K."""
    return matmul_family_flops(report) - bias_adds(report)


def torch_flops(module, *args, **kwargs) -> tuple[int, dict[str, int]]:
    """FlopCounterMode's total of one `module(*args, **kwargs)` without grad, and its count per
    aten op."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(*args, **kwargs)
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops(), by_op


def assert_fully_modelled(report, what: str, extra: str = "") -> None:
    """Every tensor resolved, no unmodelled and no unresolved node; the message names them."""
    cov = report.coverage
    graph = report.model.graph
    where = f"{what}{'; ' + extra if extra else ''}"
    missing = sorted(name for name, v in graph.values.items() if not v.is_resolved)
    assert cov.tensors_resolved == cov.tensors_total, (
        f"{where}: {cov.tensors_total - cov.tensors_resolved} of {cov.tensors_total} tensors "
        f"unresolved: {missing[:25]}"
    )
    unmodelled = [
        f"{n.name} ({n.domain + '::' if n.domain else ''}{n.op_type})"
        for n in report.nodes
        if n.cost.status is CostStatus.UNMODELLED
    ]
    assert not cov.unmodelled_ops, (
        f"{where}: unmodelled ops {dict(cov.unmodelled_ops)}: {unmodelled[:25]}"
    )
    unresolved = [
        f"{n.name} ({n.op_type}): {n.cost.note}"
        for n in report.nodes
        if n.cost.status is CostStatus.UNRESOLVED
    ]
    assert cov.unresolved_nodes == 0, f"{where}: unresolved nodes {unresolved[:25]}"
