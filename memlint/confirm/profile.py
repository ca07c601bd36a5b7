"""onnxruntime's optimised graph -> the IR nodes each of its fused kernels replaced.

The profiler trace itself (per-run kernel times by node name) is read by
memlint.hardware.ort_profile, which calibration shares.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from memlint.confirm.inputs import GraphNode


def replaced_nodes(
    original: Sequence[GraphNode],
    optimised: Sequence[GraphNode],
    available: Iterable[str],
) -> dict[str, tuple[str, ...]]:
    """For each optimised node, the original nodes it stands for; () when it maps to none.

    A fusion keeps the tensors at its border: it reads what its first nodes read and writes what
    its last node wrote. So walking back from an optimised node's outputs through the original
    graph's producers, and stopping at every tensor that still exists in the optimised graph
    (`available`: its graph inputs, initializers and every optimised node's outputs, these
    excepted), collects the nodes it replaced. An optimised node whose outputs are all new
    tensors (a layout reorder, a memory copy) maps to nothing.
    """
    producer = {out: node for node in original for out in node.outputs if out}
    kept = set(available)
    for node in optimised:
        kept.update(o for o in node.outputs if o)
    result: dict[str, tuple[str, ...]] = {}
    for node in optimised:
        found: list[str] = []
        seen: set[str] = set()
        stack = [o for o in node.outputs if o in producer]
        while stack:
            source = producer[stack.pop()]
            if source.name in seen:
                continue
            seen.add(source.name)
            found.append(source.name)
            for tensor in source.inputs:
                if tensor and tensor in producer and tensor not in kept:
                    stack.append(tensor)
        result[node.name] = tuple(sorted(found))
    return result


def graph_tensors(proto_graph) -> set[str]:
    """Graph inputs and initializer names of an onnx GraphProto."""
    return {i.name for i in proto_graph.input} | {i.name for i in proto_graph.initializer}
