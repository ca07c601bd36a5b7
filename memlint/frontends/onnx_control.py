"""Control flow decided before run time: an If whose condition is known is replaced by the
branch it takes.

A condition is known when it is a constant (an initializer, a Constant node, a graph input the
caller bound to a value, e.g. Optimum's `use_cache_branch` set by an LLM scenario) or folds to
one during shape inference. The taken branch's nodes are inlined in the If's place (its outputs
renamed to the If's), so the rest of the pipeline sees a flat graph: shapes are inferred as in
any graph, and every node is costed and timed on its own. An If whose condition stays unknown
is kept, and costed through both branches (memlint.costs.control_flow).

Each decision is written as one line for the report (`Model.control_flow`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from memlint.errors import DimError
from memlint.frontends.onnx_infer import TensorType, constant_value

__all__ = ["StaticFlow", "bind_input_values", "decide", "dynamic_ifs"]


@dataclass(frozen=True)
class StaticFlow:
    """What inlining did: the new node list, the branch initializers it brought to the top graph
    (small ones as constants, large ones as typed weights), and one line per If decided."""

    nodes: list[onnx.NodeProto]
    constants: dict[str, np.ndarray]
    weights: dict[str, TensorType]
    lines: list[str]


def bind_input_values(
    graph: onnx.GraphProto, values: Mapping[str, object], skip: set[str]
) -> dict[str, np.ndarray]:
    """Replace the graph inputs named in `values` by initializers holding that value (their
    dims already bound), in place; returns the arrays. A name that is no graph input (or a
    weight, in `skip`) is a DimError."""
    inputs = {i.name: i for i in graph.input if i.name not in skip}
    unknown = sorted(set(values) - set(inputs))
    if unknown:
        raise DimError(
            f"input value for {', '.join(unknown)}: no such input (inputs: {', '.join(inputs)})"
        )
    arrays: dict[str, np.ndarray] = {}
    for name, value in values.items():
        tensor = inputs[name].type.tensor_type
        shape = [d.dim_value for d in tensor.shape.dim] if tensor.HasField("shape") else []
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
            array = np.full(shape, value, dtype=dtype)
        except (TypeError, ValueError, KeyError) as exc:
            raise DimError(f"input value {name}={value!r}: {exc}") from None
        arrays[name] = array
        graph.initializer.append(numpy_helper.from_array(array, name))
    kept = [i for i in graph.input if i.name not in values]
    del graph.input[:]
    graph.input.extend(kept)
    return arrays


def _truth(value: np.ndarray | None) -> bool | None:
    if value is None or value.size != 1 or value.dtype.kind not in "biuf":
        return None
    return bool(value.reshape(-1)[0])


def decide(
    nodes: list[onnx.NodeProto],
    constants: Mapping[str, np.ndarray],
    keep_elements: int,
    origin: Mapping[str, str] | None = None,
) -> StaticFlow | None:
    """Inline every top-level If whose condition is known in `constants` (or is a Constant
    node); None when there is none. `origin` says how a condition input got its value
    ({"use_cache_branch": "bound by the scenario"})."""
    local = dict(constants)
    for node in nodes:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            value = constant_value(node)
            if value is not None:
                local[node.output[0]] = value
    out: list[onnx.NodeProto] = []
    new_constants: dict[str, np.ndarray] = {}
    new_weights: dict[str, TensorType] = {}
    lines: list[str] = []
    for node in nodes:
        truth = None
        if node.op_type == "If" and node.domain in ("", "ai.onnx") and node.input:
            truth = _truth(local.get(node.input[0]))
        if truth is None:
            out.append(node)
            continue
        branch = "then_branch" if truth else "else_branch"
        sub = next((a.g for a in node.attribute if a.name == branch), None)
        if sub is None:
            out.append(node)
            continue
        out.extend(_inline(node, sub, new_constants, new_weights, keep_elements))
        cond = node.input[0]
        how = (origin or {}).get(cond, "a constant before run time")
        lines.append(
            f"If {node.name or node.output[0]!r}: condition {cond} = {truth} ({how}); "
            f"{branch} taken statically ({len(sub.node)} nodes inlined)"
        )
    if not lines:
        return None
    return StaticFlow(out, new_constants, new_weights, lines)


def _inline(
    node: onnx.NodeProto,
    sub: onnx.GraphProto,
    constants: dict[str, np.ndarray],
    weights: dict[str, TensorType],
    keep_elements: int,
) -> list[onnx.NodeProto]:
    """The branch's nodes with its outputs renamed to the If's outputs."""
    rename = {o.name: target for o, target in zip(sub.output, node.output) if target}
    produced = {name for inner in sub.node for name in inner.output if name}
    for init in sub.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL and \
                math.prod(init.dims) <= keep_elements:
            constants[init.name] = numpy_helper.to_array(init)
        else:
            weights[init.name] = (init.data_type, tuple(init.dims))
    inlined = []
    for inner in sub.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(inner)
        for i, name in enumerate(copy.output):
            if name in rename:
                copy.output[i] = rename[name]
        for i, name in enumerate(copy.input):
            if name in rename:
                copy.input[i] = rename[name]
        inlined.append(copy)
    for source, target in rename.items():
        # an outer value or initializer passed straight through (a branch output named as the
        # If's own output needs no copy: an Identity of a value onto itself would be a cycle)
        if source not in produced and source != target:
            inlined.append(helper.make_node("Identity", [source], [target],
                                            name=f"{node.name or 'If'}/{target}"))
    return inlined


def dynamic_ifs(nodes: list[onnx.NodeProto]) -> list[str]:
    """One line per If left to run time (costed through both branches)."""
    return [
        f"If {node.name or node.output[0]!r}: condition {node.input[0]} is decided at run "
        f"time; both branches costed, the more expensive counted (bind the condition to take "
        f"one statically)"
        for node in nodes
        if node.op_type == "If" and node.domain in ("", "ai.onnx") and node.input
    ]
