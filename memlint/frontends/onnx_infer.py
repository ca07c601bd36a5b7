"""Shape inference for a weight-free ONNX proto with concrete input dims.

Rounds of onnx's C++ inference (without its data propagation: see infer), each followed by folding the shape
arithmetic it could not evaluate (onnx_fold) and giving shapes to onnxruntime contrib ops
(onnx_contrib), until nothing changes or every tensor is resolved. The proto passed in holds
no weight payloads, so each round serialises a few MB at most.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from memlint.errors import ShapeInferenceError
from memlint.frontends.onnx_contrib import CONTRIB_SHAPES
from memlint.frontends.onnx_fold import FOLDERS, MAX_FOLD_ELEMENTS, fold_node
from memlint.frontends.onnx_layout import Op, op_of

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
    seen: dict[bytes, TensorType | None] = {}  # most tensors share a few types: read each once
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        type_proto = info.type
        key = type_proto.SerializeToString()
        found = seen.get(key, _UNREAD)
        if found is _UNREAD:
            found = seen[key] = type_of(type_proto)
        name = info.name
        if found is not None and (name not in types or types[name][1] is None):
            types[name] = found
    return types


_UNREAD: object = object()


def constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    """The value of a Constant node, when small enough to keep."""
    for attr in node.attribute:
        if attr.name == "value":
            numel = math.prod(attr.t.dims)
            if numel > MAX_FOLD_ELEMENTS or attr.t.data_location == onnx.TensorProto.EXTERNAL:
                return None
            return _array(attr.t)
        if attr.name in ("value_int", "value_float", "value_ints", "value_floats"):
            try:
                value = helper.get_attribute_value(attr)
                return np.array(value, dtype=np.int64 if "int" in attr.name else np.float32)
            except (ValueError, TypeError, OverflowError):  # a corrupt attribute: unknown
                return None
    return None


def _array(tensor: onnx.TensorProto) -> np.ndarray | None:
    """A small tensor's value, or None when its data does not fit its shape or type."""
    try:
        return numpy_helper.to_array(tensor)
    except Exception:  # noqa: BLE001 - onnx raises ValueError, TypeError, KeyError, ...
        return None


def node_attributes(node: onnx.NodeProto) -> dict[str, object]:
    """A node's attributes as Python values (small tensors as arrays; graphs left out)."""
    attrs: dict[str, object] = {}
    for attr in node.attribute:
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            continue
        try:
            value = helper.get_attribute_value(attr)
        except (ValueError, TypeError):  # an attribute of an unknown or mismatched type
            continue
        if isinstance(value, onnx.TensorProto):
            small = value.data_location != onnx.TensorProto.EXTERNAL and (
                math.prod(value.dims) <= MAX_FOLD_ELEMENTS
            )
            value = _array(value) if small else None
        elif isinstance(value, (onnx.SparseTensorProto, onnx.TypeProto)):
            value = None  # no plain value (and no op memlint models takes one)
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value)
        attrs[attr.name] = value
    return attrs


def has_subgraph(node: onnx.NodeProto | Op) -> bool:
    if isinstance(node, Op):
        return node.subgraph
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def _shape_value(node: onnx.NodeProto, attrs: dict, types: dict) -> np.ndarray | None:
    if not node.input:
        return None
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


class _NodeInference:
    """What per-node inference needs again and again on a large graph, made once per pass: the
    opset list, each op's schema, the TypeProto of each (dtype, shape) and the TensorProto of
    each known value (a name's value never changes once known)."""

    def __init__(self, opsets: dict, memo: dict | None = None) -> None:
        self.opsets = opsets
        self.opset_imports = [helper.make_opsetid(d, v) for d, v in opsets.items()]
        self._schemas: dict[tuple[str, str], onnx.defs.OpSchema | None] = {}
        self._type_protos: dict[TensorType, onnx.TypeProto] = {}
        self._data: dict[str, onnx.TensorProto] = {}
        # Results by what inference reads (op, attributes, input types and values): shared by
        # every load of one parsed model (its opsets never change), so identical layers infer
        # once. Also each distinct attribute set's Python values.
        self.memo = {} if memo is None else memo

    def constant(self, node: onnx.NodeProto | Op) -> np.ndarray | None:
        """constant_value(node), once per distinct Constant of a parsed model (by its
        attribute bytes); the array is shared, so it is made read-only."""
        if not isinstance(node, Op):
            return constant_value(node)
        key = ("constant", node.attr_key)
        if key in self.memo:
            return self.memo[key]
        value = self.memo[key] = _frozen(constant_value(node))
        return value

    def fold(self, node: onnx.NodeProto | Op, inputs: list, attributes: dict) -> list | None:
        """fold_node for `node`, once per distinct (op, attributes, input values) of a parsed
        model: the shape arithmetic of 80 identical layers is folded once."""
        if not isinstance(node, Op):
            return fold_node(node.op_type, inputs, attributes)
        key = ("fold", node.op_type, node.attr_key,
               tuple(None if x is None else _data_key(x) for x in inputs))
        if key in self.memo:
            return self.memo[key]
        values = fold_node(node.op_type, inputs, attributes)
        if values is not None:
            values = [_frozen(v) for v in values]
        self.memo[key] = values
        return values

    def attributes(self, node: onnx.NodeProto | Op) -> dict[str, object]:
        """node_attributes(node), once per distinct attribute set of a parsed model's nodes."""
        if not isinstance(node, Op):
            return node_attributes(node)
        key = ("attributes", node.attr_key)
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = node_attributes(node)
        return found

    def schema(self, node: onnx.NodeProto) -> onnx.defs.OpSchema | None:
        key = (node.op_type, node.domain)
        if key not in self._schemas:
            try:
                self._schemas[key] = onnx.defs.get_schema(
                    node.op_type, self.opsets.get(node.domain or "", 1), node.domain
                )
            except (onnx.defs.SchemaError, TypeError, ValueError):  # TypeError: opset > int32
                self._schemas[key] = None
        return self._schemas[key]

    def type_proto(self, found: TensorType) -> onnx.TypeProto:
        proto = self._type_protos.get(found)
        if proto is None:
            proto = self._type_protos[found] = _type_proto(found)
        return proto

    def data(self, name: str, value: np.ndarray) -> onnx.TensorProto:
        tensor = self._data.get(name)
        if tensor is None:
            tensor = self._data[name] = numpy_helper.from_array(np.asarray(value), name)
        return tensor


def _infer_node(node: onnx.NodeProto | Op, types: dict, constants: dict,
                inference: _NodeInference) -> None:
    """Per-node onnx inference with the values known now (outputs left unknown by a round).

    The outputs' types depend only on the op, its attributes, and its inputs' types and known
    values: a node of a parsed model that reads the same as one inferred before (the same op in
    another identical layer, or in another load of the model) takes that result."""
    schema = inference.schema(node)
    if schema is None:
        return
    inputs = [n for n in node.input if n]
    if any(n not in types for n in inputs):
        return
    key = None
    if isinstance(node, Op):
        key = (node.op_type, node.domain, node.attr_key, len(node.output), tuple(
            None if not n else (types[n], _data_key(constants[n]) if n in constants else None)
            for n in node.input
        ))  # fmt: skip
        found = inference.memo.get(key)
        if found is not None:
            for name, value in zip(node.output, found):
                if name and value is not None:
                    types[name] = value
            return
    data = {n: inference.data(n, constants[n]) for n in inputs if n in constants}
    try:
        outputs = onnx.shape_inference.infer_node_outputs(
            schema, node.proto if isinstance(node, Op) else node,
            {n: inference.type_proto(types[n]) for n in inputs}, data,
            opset_imports=inference.opset_imports,
        )
    except Exception:  # noqa: BLE001 - onnx raises assorted C++ errors; the tensor stays unknown
        outputs = {}
    inferred: dict[str, TensorType] = {}
    for name, type_proto in outputs.items():
        found = type_of(type_proto)
        if found is not None and _resolved(found):
            types[name] = inferred[name] = found
    if key is not None:
        inference.memo[key] = tuple(inferred.get(name) if name else None for name in node.output)


def _data_key(value: np.ndarray) -> tuple:
    value = np.asarray(value)
    return (value.dtype.str, value.shape, value.tobytes())


def _frozen(value: np.ndarray | None) -> np.ndarray | None:
    """A value shared between tensors (memoized), read-only so that no reader changes it."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    return value


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


def _fold(node: onnx.NodeProto | Op, types: dict, constants: dict,
          inference: _NodeInference | None = None) -> bool:
    values: list[np.ndarray] | None
    attributes = node_attributes if inference is None else inference.attributes
    op_type = node.op_type
    if op_type == "Constant":
        value = constant_value(node) if inference is None else inference.constant(node)
        values = None if value is None else [value]
    elif op_type == "Shape":
        value = _shape_value(node, attributes(node), types)
        values = None if value is None else [value]
    elif op_type in FOLDERS and all(name == "" or name in constants for name in node.input):
        # attributes are read only here: most nodes of a large graph never fold
        inputs = [constants.get(n) for n in node.input]
        values = fold_node(op_type, inputs, attributes(node)) if inference is None \
            else inference.fold(node, inputs, attributes(node))
    else:
        values = None
    if values is None or len(values) < len([o for o in node.output if o]):
        return False
    for name, value in zip(node.output, values):
        if name:
            constants[name] = value
            types[name] = (helper.np_dtype_to_tensor_dtype(value.dtype), tuple(value.shape))
    return True


def _propagate(graph: onnx.GraphProto, types: dict, constants: dict, opsets: dict,
               ops: list[Op] | None = None, memo: dict | None = None) -> tuple[set[int], list]:
    """One pass in topological order: infer what the round left unknown, fold, shape contribs.
    `ops`: graph.node's fields read once (memlint.frontends.onnx_layout), the same nodes.

    Returns the indexes of folded nodes and the value_info made for contrib outputs.
    """
    folded: set[int] = set()
    infos: list[onnx.ValueInfoProto] = []
    inference = _NodeInference(opsets, memo)
    for index, node in enumerate(graph.node if ops is None else ops):
        outputs = [o for o in node.output if o]
        if not outputs:
            continue
        domain = node.domain
        if domain == "" or domain == "ai.onnx":
            if all(o in constants for o in outputs):
                folded.add(index)
                continue
            for o in outputs:
                found = types.get(o)
                if found is None or found[1] is None or None in found[1]:  # not _resolved
                    if not has_subgraph(node):
                        _infer_node(node, types, constants, inference)
                    break
            if _fold(node, types, constants, inference):
                folded.add(index)
        elif domain == "com.microsoft" and node.op_type in CONTRIB_SHAPES:
            infos.extend(_contrib_shapes(node, types, constants))
    return folded, infos


def _all_resolved(graph: onnx.GraphProto, types: dict, ops: list[Op] | None = None) -> bool:
    """Is every top-graph tensor resolved, with no subgraph in the graph?"""
    get = types.get
    for node in graph.node if ops is None else ops:
        if has_subgraph(node):
            return False
        for name in node.output:
            if name:
                found = get(name)
                if found is None or found[1] is None or None in found[1]:
                    return False
    return all(_resolved(types.get(v.name)) for v in graph.output)


# What onnx's C++ shape inference raises when a node's input or output count breaks its schema
# (a Loop with no inputs makes it reserve a negative count): the C++ message names no node.
CXX_ERRORS = frozenset({"vector::reserve", "vector::_M_default_append", "vector::_M_fill_insert",
                        "cannot create std::vector larger than max_size()", "std::bad_alloc",
                        "MemoryError"})
_NO_OPSET = re.compile(r"node name (.*?)\. No opset import for domain (\S*) optype (\S+)")
_NODE_NAMED = re.compile(r"node name: (.*?)\): ")


def explain_failure(graph: onnx.GraphProto, opsets: dict[str, int], reason: str) -> str:
    """A failure of onnx shape inference as what the user can fix. onnx's own messages name the
    symptom ("Input 0 is out of bounds", "vector::reserve"); the cause is most often a node
    whose input or output count its op's schema does not allow, or a node in a domain the
    model does not import. Only the node onnx names is blamed; a C++ error names none, and
    then the first node (subgraphs included) whose counts break its schema is."""
    short = reason if len(reason) <= 200 else reason[:197] + "..."
    found = _NO_OPSET.search(reason)
    if found:
        name, domain, op = found.groups()
        if domain == "ai.onnx" and "" in opsets:
            return (f"node {name!r} ({op}) writes its domain as 'ai.onnx' while the model "
                    "imports the ONNX domain as '', and onnx shape inference does not take one "
                    "for the other: write the node's domain as ''")
        listed = ", ".join(repr(d) if d else "'' (ai.onnx)" for d in sorted(opsets))
        return (f"node {name!r} ({op}) is in domain {domain!r}, which the model's opset_import "
                f"does not list (it lists {listed}): fix the node's domain or import the "
                "domain's opset")
    named = _NODE_NAMED.search(reason)
    if named is None and reason not in CXX_ERRORS:
        return f"onnx shape inference failed: {reason[:300]}"
    for node in _walk(graph):
        if named is not None and node.name != named.group(1):
            continue
        mismatch = _count_mismatch(node, opsets)
        if mismatch:
            return (f"{_label(node)} has {mismatch}; onnx shape inference cannot run on it "
                    f"({short}): fix the node or re-export the model")
    if named is not None:
        return f"onnx shape inference failed: {reason[:300]}"
    return (f"onnx shape inference failed inside its C++ code ({reason}), which names no "
            "node: a node's inputs, outputs or attributes do not fit its op; "
            "onnx.checker.check_model(path, full_check=True) names it")


def _count_mismatch(node: onnx.NodeProto, opsets: dict[str, int]) -> str:
    """'0 inputs, its op takes 2' when the node's input or output count breaks its schema."""
    domain = "" if node.domain == "ai.onnx" else node.domain or ""
    if domain not in opsets:
        return ""
    try:
        schema = onnx.defs.get_schema(node.op_type, opsets[domain], domain)
    except (onnx.defs.SchemaError, TypeError, OverflowError):
        return ""
    for what, count, low, high in (
        ("inputs", len(node.input), schema.min_input, schema.max_input),
        ("outputs", len(node.output), schema.min_output, schema.max_output),
    ):
        if not low <= count <= high:
            wanted = f"{low}" if low == high else f"{low} or more" if high >= 2**31 - 1 \
                else f"{low} to {high}"
            return f"{count} {what}, its op takes {wanted}"
    return ""


def _label(node: onnx.NodeProto) -> str:
    return f"node {node.name!r} ({node.op_type})" if node.name else f"a {node.op_type} node"


def _walk(graph: onnx.GraphProto):  # noqa: ANN202 - every node, subgraph nodes after theirs
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                yield from _walk(sub)


def infer(model: onnx.ModelProto | bytes, constants: dict[str, np.ndarray], *,
          ops: list[Op] | None = None, memo: dict | None = None,
          opsets: dict[str, int] | None = None) -> InferenceResult:
    """Infer every tensor's shape in `model` (weight-free, concrete inputs); mutates `model`.

    model may be serialized (bytes): it is parsed only when a second round or an error needs
    its nodes. ops: its nodes' fields, read once (memlint.frontends.onnx_layout); memo: per-node
    results shared with other loads of the same parsed model (_NodeInference); opsets: its
    {domain: opset version}, read from it when not given."""
    if isinstance(model, bytes):
        data, model = model, None
        if ops is None or opsets is None:
            model = onnx.ModelProto.FromString(data)
    else:
        data = None
    if opsets is None:
        opsets = {(o.domain or ""): o.version for o in model.opset_import}
    ops = [op_of(n) for n in model.graph.node] if ops is None else list(ops)
    memo = {} if memo is None else memo
    rounds = 0
    while True:
        rounds += 1
        try:
            # No data_prop: onnx 1.23's partial data propagation materialises one dimension per
            # element of every 1-D tensor fed to Add/Mul/Gather/Squeeze/... (~70-140 bytes each:
            # a [2**31] input exhausts memory). _propagate folds the same shape arithmetic.
            inferred = shape_inference.infer_shapes(model if data is None else data,
                                                    check_type=False, strict_mode=False, data_prop=False)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError,
                ValueError, IndexError, MemoryError) as exc:  # C++ errors: std::length_error, ...
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if model is None:
                model = onnx.ModelProto.FromString(data)
            raise ShapeInferenceError(explain_failure(model.graph, opsets, reason)) from None
        types = collect_types(inferred.graph)
        known_before = {name for name, t in types.items() if _resolved(t)}
        folded, _ = _propagate(inferred.graph, types, constants, opsets, ops, memo)
        if _all_resolved(inferred.graph, types, ops):
            # Nothing left to learn: another round would re-infer the same shapes (one pass in
            # topological order folds all it can), and on a large graph it costs as much as
            # the first. Subgraph shapes come from the C++ round, so graphs with subgraphs go on.
            log.debug("shape inference: %d rounds, every tensor resolved", rounds)
            return InferenceResult(types, constants, inferred.graph, rounds)
        infos = [
            helper.make_tensor_value_info(name, t[0], list(t[1]))
            for name, t in types.items()
            if name not in known_before and name not in constants and _resolved(t)
        ]
        progress = bool(infos) or any(o not in known_before for o in constants)
        new_initializers = [
            numpy_helper.from_array(np.asarray(constants[o]), o)
            for i in sorted(folded)
            for o in ops[i].output
            if o and o in constants
        ]
        if not progress or rounds >= MAX_ROUNDS:
            log.debug("shape inference: %d rounds", rounds)
            return InferenceResult(types, constants, inferred.graph, rounds)
        if model is None:  # a second round changes the model: parse it now
            model, data = onnx.ModelProto.FromString(data), None
        graph = model.graph
        kept = [n for i, n in enumerate(graph.node) if i not in folded]
        ops = [n for i, n in enumerate(ops) if i not in folded]
        del graph.node[:]
        graph.node.extend(kept)
        existing = {init.name for init in graph.initializer}
        graph.initializer.extend(t for t in new_initializers if t.name not in existing)
        graph.value_info.extend(infos)
