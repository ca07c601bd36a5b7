"""Shape inference for a weight-free ONNX proto with concrete input dims.

Rounds of onnx's C++ inference (with data propagation), each followed by folding the shape
arithmetic it could not evaluate (onnx_fold) and giving shapes to onnxruntime contrib ops
(onnx_contrib), until nothing changes. The proto passed in holds no weight payloads, so
each round serialises a few MB at most.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from memlint.errors import ShapeInferenceError
from memlint.frontends.onnx_contrib import CONTRIB_SHAPES
from memlint.frontends.onnx_fold import MAX_FOLD_ELEMENTS, fold_node

log = logging.getLogger(__name__)

MAX_ROUNDS = 6
TensorType = tuple[int, "tuple[int | None, ...] | None"]  # (elem_type, dims)


@dataclass
class InferenceResult:
    types: dict[str, TensorType]  # top-graph tensor name -> (elem type, dims)
    constants: dict[str, np.ndarray]  # values known before run time
    graph: onnx.GraphProto  # the last inferred graph (subgraphs carry their value_info)
    rounds: int


def type_of(type_proto: onnx.TypeProto) -> TensorType | None:
    if not type_proto.HasField("tensor_type"):
        return None
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return tensor.elem_type, None
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    return tensor.elem_type, dims


def collect_types(graph: onnx.GraphProto) -> dict[str, TensorType]:
    types: dict[str, TensorType] = {}
    for init in graph.initializer:
        types[init.name] = (init.data_type, tuple(init.dims))
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        found = type_of(info.type)
        if found is not None and (info.name not in types or types[info.name][1] is None):
            types[info.name] = found
    return types


def constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    """The value of a Constant node, when small enough to keep."""
    for attr in node.attribute:
        if attr.name == "value":
            numel = int(np.prod(attr.t.dims)) if attr.t.dims else 1
            if numel > MAX_FOLD_ELEMENTS or attr.t.data_location == onnx.TensorProto.EXTERNAL:
                return None
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_int", "value_float"):
            value = helper.get_attribute_value(attr)
            return np.array(value, dtype=np.int64 if attr.name == "value_int" else np.float32)
        if attr.name in ("value_ints", "value_floats"):
            value = helper.get_attribute_value(attr)
            return np.array(value, dtype=np.int64 if attr.name == "value_ints" else np.float32)
    return None


def node_attributes(node: onnx.NodeProto) -> dict[str, object]:
    """A node's attributes as Python values (small tensors as arrays; graphs left out)."""
    attrs: dict[str, object] = {}
    for attr in node.attribute:
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            continue
        value = helper.get_attribute_value(attr)
        if isinstance(value, onnx.TensorProto):
            small = value.data_location != onnx.TensorProto.EXTERNAL and (
                int(np.prod(value.dims)) if value.dims else 1
            ) <= MAX_FOLD_ELEMENTS
            value = numpy_helper.to_array(value) if small else None
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value)
        attrs[attr.name] = value
    return attrs


def has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def _shape_value(node: onnx.NodeProto, attrs: dict, types: dict) -> np.ndarray | None:
    found = types.get(node.input[0])
    if found is None or found[1] is None or any(d is None for d in found[1]):
        return None
    dims = list(found[1])
    start, end = attrs.get("start", 0), attrs.get("end", len(dims))
    return np.array(dims[start:end], dtype=np.int64)


def _resolved(found: TensorType | None) -> bool:
    return found is not None and found[1] is not None and None not in found[1]


def _type_proto(found: TensorType) -> onnx.TypeProto:
    elem, dims = found
    return helper.make_tensor_type_proto(elem, None if dims is None else list(dims))


def _infer_node(node: onnx.NodeProto, types: dict, constants: dict, opsets: dict) -> None:
    """Per-node onnx inference with the values known now (outputs left unknown by a round)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opsets.get(node.domain or "", 1), node.domain)
    except onnx.defs.SchemaError:
        return
    inputs = [n for n in node.input if n]
    if any(n not in types for n in inputs):
        return
    data = {
        n: numpy_helper.from_array(np.asarray(constants[n]), n) for n in inputs if n in constants
    }
    try:
        outputs = onnx.shape_inference.infer_node_outputs(
            schema, node, {n: _type_proto(types[n]) for n in inputs}, data,
            opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        )
    except Exception:  # noqa: BLE001 - onnx raises assorted C++ errors; the tensor stays unknown
        return
    for name, type_proto in outputs.items():
        found = type_of(type_proto)
        if found is not None and _resolved(found):
            types[name] = found


def _contrib_shapes(node: onnx.NodeProto, types: dict, constants: dict) -> list:
    in_types = [types.get(n) if n else None for n in node.input]
    shapes = [t[1] if _resolved(t) else None for t in in_types]
    try:
        results = CONTRIB_SHAPES[node.op_type](
            shapes, node_attributes(node), [constants.get(n) for n in node.input]
        )
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError):
        return []
    infos = []
    for name, result in zip(node.output, results):
        if not name or result is None or _resolved(types.get(name)):
            continue
        shape, dtype_from = result
        source = in_types[dtype_from] if dtype_from < len(in_types) else None
        if source is None:
            continue
        infos.append(helper.make_tensor_value_info(name, source[0], list(shape)))
        types[name] = (source[0], tuple(shape))
    return infos


def _fold(node: onnx.NodeProto, types: dict, constants: dict) -> bool:
    attrs = node_attributes(node)
    values: list[np.ndarray] | None
    if node.op_type == "Constant":
        value = constant_value(node)
        values = None if value is None else [value]
    elif node.op_type == "Shape":
        value = _shape_value(node, attrs, types)
        values = None if value is None else [value]
    elif all(name == "" or name in constants for name in node.input):
        values = fold_node(node.op_type, [constants.get(n) for n in node.input], attrs)
    else:
        values = None
    if values is None or len(values) < len([o for o in node.output if o]):
        return False
    for name, value in zip(node.output, values):
        if name:
            constants[name] = value
            types[name] = (helper.np_dtype_to_tensor_dtype(value.dtype), tuple(value.shape))
    return True


def _propagate(graph: onnx.GraphProto, types: dict, constants: dict, opsets: dict) -> tuple[set[int], list]:
    """One pass in topological order: infer what the round left unknown, fold, shape contribs.

    Returns the indexes of folded nodes and the value_info made for contrib outputs.
    """
    folded: set[int] = set()
    infos: list[onnx.ValueInfoProto] = []
    for index, node in enumerate(graph.node):
        outputs = [o for o in node.output if o]
        if not outputs:
            continue
        if node.domain in ("", "ai.onnx"):
            if all(o in constants for o in outputs):
                folded.add(index)
                continue
            if not all(_resolved(types.get(o)) for o in outputs) and not has_subgraph(node):
                _infer_node(node, types, constants, opsets)
            if _fold(node, types, constants):
                folded.add(index)
        elif node.domain == "com.microsoft" and node.op_type in CONTRIB_SHAPES:
            infos.extend(_contrib_shapes(node, types, constants))
    return folded, infos


def infer(model: onnx.ModelProto, constants: dict[str, np.ndarray]) -> InferenceResult:
    """Infer every tensor's shape in `model` (weight-free, concrete inputs); mutates `model`."""
    graph = model.graph
    opsets = {(o.domain or ""): o.version for o in model.opset_import}
    rounds = 0
    while True:
        rounds += 1
        try:
            inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as exc:
            raise ShapeInferenceError(f"onnx shape inference failed: {str(exc).splitlines()[0]}") from None
        types = collect_types(inferred.graph)
        known_before = {name for name, t in types.items() if _resolved(t)}
        folded, _ = _propagate(graph, types, constants, opsets)
        infos = [
            helper.make_tensor_value_info(name, t[0], list(t[1]))
            for name, t in types.items()
            if name not in known_before and name not in constants and _resolved(t)
        ]
        progress = bool(infos) or any(o not in known_before for o in constants)
        new_initializers = [
            numpy_helper.from_array(np.asarray(constants[o]), o)
            for i in sorted(folded)
            for o in graph.node[i].output
            if o and o in constants
        ]
        if not progress or rounds >= MAX_ROUNDS:
            log.debug("shape inference: %d rounds", rounds)
            return InferenceResult(types, constants, inferred.graph, rounds)
        kept = [n for i, n in enumerate(graph.node) if i not in folded]
        del graph.node[:]
        graph.node.extend(kept)
        existing = {init.name for init in graph.initializer}
        graph.initializer.extend(t for t in new_initializers if t.name not in existing)
        graph.value_info.extend(infos)
