"""ONNX frontend: model file -> ir.Model, reading graph metadata only.

1. Load the proto without external data; embedded weight payloads are dropped right away,
   so nothing downstream copies or serialises them (a 100 GB model lints in seconds).
2. Bind the symbolic input dims (--dim, --input-shape; unbound ones become 1, recorded).
3. Infer every shape on the weight-free proto (onnx_infer).
4. Build the IR: stable node names, tensor kinds (weights / activations / KV cache),
   subgraphs of If/Loop/Scan with their own inferred shapes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from memlint.dims import DimBinder, dim_names_in, shown
from memlint.errors import DimError, ModelLoadError, ShapeInferenceError
from memlint.frontends.onnx_blocks import Blocks, find_blocks
from memlint.frontends.onnx_control import bind_input_values, decide, dynamic_ifs
from memlint.frontends.onnx_infer import (
    MAX_FOLD_ELEMENTS,
    InferenceResult,
    TensorType,
    collect_types,
    constant_value,
    has_subgraph,
    infer,
    node_attributes,
)
from memlint.frontends.onnx_layout import Layout, Op, op_of, read_ops, utf8_error
from memlint.ir import EMPTY, DType, Graph, Model, Node, Value, ValueKind

log = logging.getLogger(__name__)

KEEP_INITIALIZER_ELEMENTS = MAX_FOLD_ELEMENTS  # smaller ones keep their values for folding
# ONNX sizes are int64: a tensor with more elements than that is a corrupt or hostile model
# (and its byte count would overflow the float arithmetic of the roofline).
MAX_ELEMENTS = 2**63 - 1
MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for one message: a larger .onnx cannot parse
MAX_STATIC_ROUNDS = 4  # If nodes decided before run time, nested ones included
KV_NAME = re.compile(
    r"past_key|past_value|present|kv_cache|key_cache|value_cache|^past[._]|^cache[._]", re.I
)
NON_KV_DTYPES = frozenset({DType.INT64, DType.INT32, DType.BOOL, DType.STRING})
# Ops whose output is (part of) their input's data: a KV-cache input gives a KV-cache output.
KV_PASSTHROUGH = frozenset(
    {
        "Concat", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Cast", "Slice",
        "Gather", "Expand", "Tile", "Split", "Flatten", "Pad", "ScatterND", "ScatterElements",
        "DequantizeLinear", "QuantizeLinear",
    }
)  # fmt: skip

# Element-wise ops that scale a KV tensor by a constant (e.g. K * 1/sqrt(sqrt(d))) keep it KV.
KV_SCALING = frozenset({"Mul", "Div", "Add", "Sub"})
# Views: their output is the KV-cache buffer itself (no bytes move), so it stays KV_CACHE. Every
# other op in KV_PASSTHROUGH / KV_SCALING makes a copy of the cache (GQA Expand, Transpose,
# Concat, Cast, ...): activation traffic, never the cache (docs/cost-model.md, "the KV cache is
# the cache"); memlint.analysis.kv_copies finds those copies again.
KV_VIEWS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten"})

_DTYPES: dict[int, DType] = {}
for _name, _dtype in {
    "FLOAT": DType.FLOAT32, "DOUBLE": DType.FLOAT64, "FLOAT16": DType.FLOAT16,
    "BFLOAT16": DType.BFLOAT16, "FLOAT8E4M3FN": DType.FLOAT8E4M3FN,
    "FLOAT8E4M3FNUZ": DType.FLOAT8E4M3FNUZ, "FLOAT8E5M2": DType.FLOAT8E5M2,
    "FLOAT8E5M2FNUZ": DType.FLOAT8E5M2FNUZ, "FLOAT8E8M0": DType.FLOAT8E8M0,
    "FLOAT4E2M1": DType.FLOAT4E2M1, "INT64": DType.INT64, "INT32": DType.INT32,
    "INT16": DType.INT16, "INT8": DType.INT8, "INT4": DType.INT4, "INT2": DType.INT2,
    "UINT64": DType.UINT64, "UINT32": DType.UINT32, "UINT16": DType.UINT16, "UINT8": DType.UINT8,
    "UINT4": DType.UINT4, "UINT2": DType.UINT2, "BOOL": DType.BOOL,
    "COMPLEX64": DType.COMPLEX64, "COMPLEX128": DType.COMPLEX128, "STRING": DType.STRING,
}.items():  # fmt: skip
    if hasattr(onnx.TensorProto, _name):
        _DTYPES[getattr(onnx.TensorProto, _name)] = _dtype


def dtype_of(elem_type: int) -> DType:
    return _DTYPES.get(elem_type, DType.UNKNOWN)


def resolve_model_path(source: str | os.PathLike[str]) -> Path:
    """The .onnx file to read: the path itself, or the single model in an export directory."""
    path = Path(source)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        candidates = sorted(path.glob("*.onnx"))
        preferred = [p for p in candidates if p.name == "model.onnx"]
        if preferred or len(candidates) == 1:
            return (preferred or candidates)[0]
        if not candidates:
            raise ModelLoadError(f"{path}: a directory with no .onnx file")
        names = ", ".join(p.name for p in candidates[:6])
        raise ModelLoadError(f"{path}: a directory with several models ({names}); name one")
    if not os.access(path, os.R_OK):
        raise ModelLoadError(f"{path}: permission denied")
    return path


def read_proto(path: Path) -> onnx.ModelProto:
    """Parse the model without external data; refuse what is not an ONNX model."""
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{path}: empty file, not an ONNX model")
    if size > MAX_PROTO_BYTES:  # refused before reading gigabytes into memory
        raise ModelLoadError(
            f"{path}: {size / 2**30:.1f} GiB, larger than any protobuf can be (2 GiB); "
            f"{_what_it_is(path) or 'not an ONNX model'} (ONNX keeps large weights in external data)"
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        found = _what_it_is(path)
        if found:
            raise ModelLoadError(f"{path}: not a readable ONNX model: {found}") from None
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, DecodeError) or "Error parsing message" in reason:
            raise ModelLoadError(
                f"{path}: not a readable ONNX model: its bytes do not parse as an ONNX "
                f"ModelProto ({reason}); the file is truncated or damaged (an interrupted "
                "download or copy) or another format: fetch or export it again"
            ) from None
        raise ModelLoadError(f"{path}: not a readable ONNX model ({reason})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelLoadError(f"{path}: not an ONNX model (no graph in the file)")
    if model.ir_version == 0 and not model.opset_import:
        raise ModelLoadError(f"{path}: not an ONNX model (no IR version or opset)")
    return model


def _what_it_is(path: Path) -> str:
    """What a file that is not a model looks like, from its first bytes ("" when unsure)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return ""
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer file, not the model itself (run `git lfs pull`)"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "an HTML or XML page (a download that returned a web page?)"
    if text.startswith((b"{", b"[")):
        return "JSON text"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a .pt2 program or a zipped model?)"
    return ""


@dataclass(frozen=True, eq=False)
class ParsedOnnx(os.PathLike):
    """An ONNX file read once, its weight payloads dropped: loading it again at other dims (an
    LLM scenario, each point of a sweep) skips reading and parsing the file. Each load binds a
    copy of `proto`, which is never changed. It is a path-like (the file's path), so wherever a
    model path goes, this can go instead."""

    path: Path
    proto: onnx.ModelProto
    weights: Mapping[str, TensorType]  # initializers turned into typed inputs
    # What no binding changes, read once and shared by every load (onnx_layout)
    layout: Layout | None = field(default=None, repr=False, compare=False)

    def __fspath__(self) -> str:
        return str(self.path)


def parse_onnx(source: str | os.PathLike[str]) -> ParsedOnnx:
    """Read and check an ONNX file once, without its weights."""
    if isinstance(source, ParsedOnnx):
        return source
    path = resolve_model_path(source)
    proto = read_proto(path)
    layout = _require_text(proto.graph, path)
    weights = _strip_weights(proto.graph, path.parent, path)
    return ParsedOnnx(path, proto, weights, layout)


def declared_input_dims(parsed: ParsedOnnx) -> dict[str, tuple[str | None, ...]]:
    """The symbolic name each graph input (weights excluded) declares per axis, None for a
    fixed or unnamed dim: what a load records as Model.input_dim_names, read before binding."""
    weights = {i.name for i in parsed.proto.graph.initializer} | set(parsed.weights)
    declared: dict[str, tuple[str | None, ...]] = {}
    for value in parsed.proto.graph.input:
        tensor = value.type.tensor_type
        if value.name in weights or not value.type.HasField("tensor_type") \
                or not tensor.HasField("shape"):
            continue
        declared[value.name] = tuple(
            d.dim_param.strip() if d.HasField("dim_param") and d.dim_param.strip() not in
            ("", "?", "-1") else None
            for d in tensor.shape.dim
        )
    return declared


def load_onnx(
    source: str | os.PathLike[str],
    *,
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    strict_dims: bool = False,
    default_dims: Mapping[str, int] | None = None,
    input_values: Mapping[str, object] | None = None,
) -> Model:
    """Load an ONNX file (or a ParsedOnnx, from a copy of its proto) into the IR.

    input_values fixes graph inputs to a value ({"use_cache_branch": True}): each becomes a
    constant, and an If it decides is taken statically (memlint.frontends.onnx_control)."""
    if isinstance(source, ParsedOnnx):
        parsed = source  # never changed: each load binds a copy of the graph's inputs
    else:
        parsed = parse_onnx(source)
    return _bind(parsed, dims=dims, input_shapes=input_shapes, strict_dims=strict_dims,
                 default_dims=default_dims, input_values=input_values)


@dataclass(frozen=True)
class FoldedModel:
    """A load that kept one of a graph's repeated blocks (memlint.frontends.onnx_blocks):
    `model` holds the nodes before the blocks, the first block and the nodes after it. At these
    dims every other block computes what the first does, node for node: the same types, known
    values and kinds in and out (checked: the first block hands on the types, values and kinds
    it received). positions[i]: the index in model.graph.nodes of the node at position i of
    the whole graph's topological order. names: each tensor the left-out blocks make -> the
    first block's tensor at its place (any other tensor is in `model` under its own name)."""

    model: Model
    positions: tuple[int, ...]
    names: Mapping[str, str]


def load_onnx_folded(
    source: ParsedOnnx,
    *,
    dims: Mapping[str, int] | None = None,
    default_dims: Mapping[str, int] | None = None,
    input_values: Mapping[str, object] | None = None,
) -> FoldedModel | None:
    """The FoldedModel of `source` at these dims, or None when its graph has no repeated blocks
    or they do not fold at these dims (load the whole graph then). For many steps of one model
    (an LLM sweep): each costs the inference and IR of one block."""
    if not isinstance(source, ParsedOnnx) or input_values:
        return None
    found = _bind(source, dims=dims, input_shapes=None, strict_dims=False,
                  default_dims=default_dims, input_values=None, reduced=True)
    return found if isinstance(found, FoldedModel) else None


def load_onnx_proto(
    proto: onnx.ModelProto,
    path: Path,
    *,
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    strict_dims: bool = False,
    default_dims: Mapping[str, int] | None = None,
) -> Model:
    """Load a parsed model (modified in place: weight payloads are dropped). `path` names it in
    messages, and its folder is where small external tensors are looked for."""
    layout = _require_text(proto.graph, path)
    weights = _strip_weights(proto.graph, path.parent, path)
    return _bind(ParsedOnnx(path, proto, weights, layout), dims=dims, input_shapes=input_shapes,
                 strict_dims=strict_dims, default_dims=default_dims)


def _bind(
    parsed: ParsedOnnx,
    *,
    dims: Mapping[str, int] | None,
    input_shapes: Mapping[str, tuple[int, ...]] | None,
    strict_dims: bool,
    default_dims: Mapping[str, int] | None,
    input_values: Mapping[str, object] | None = None,
    reduced: bool = False,
) -> Model | FoldedModel | None:
    """Bind the dims of a stripped model, infer, build the IR. The parsed proto is not changed:
    the inputs, outputs and initializers are bound in a copy of their own (`graph`, no nodes).
    reduced: the FoldedModel of load_onnx_folded (None where the graph does not fold)."""
    proto, path, weights = parsed.proto, parsed.path, parsed.weights
    layout = parsed.layout or Layout(read_ops(proto.graph)[0])
    graph = _graph_without_nodes(proto.graph)
    opsets = {(o.domain or ""): o.version for o in proto.opset_import}
    constants: dict[str, np.ndarray] = {
        init.name: _small_array(init, path) for init in graph.initializer
    }
    layout.check_constants(lambda ops: _check_constant_ops(ops, path))
    binder = DimBinder(dims or {}, strict=strict_dims, defaults=default_dims)
    declared_dims = _bind_inputs(graph, weights, binder, dict(input_shapes or {}))
    values = dict(input_values or {})
    constants.update(bind_input_values(graph, values, set(weights)))
    order = layout.order(lambda: _topological_order(layout.ops, path))
    original_nodes: list[Op] = [layout.ops[i] for i in order]
    pristine = True  # the nodes are the file's, in topological order (no branch inlined)
    origin = {name: "an input value bound by the caller" for name in values}
    flow_lines: list[str] = []
    weights = dict(weights)
    for _ in range(MAX_STATIC_ROUNDS):  # a known condition inlines its branch; infer again
        flow = decide(original_nodes, constants, KEEP_INITIALIZER_ELEMENTS, origin) \
            if layout.has_if or not pristine else None
        if flow is None:
            # identical blocks (a decoder's layers) are inferred once, when they may be
            fold = pristine and not layout.has_if and not input_shapes and not values
            if reduced and not fold:
                return None
            result, folded = _infer(proto, graph, original_nodes, layout if pristine else None,
                                    constants, opsets, fold, expand=not reduced,
                                    only_folded=reduced)
            if reduced:
                return None if folded is None else _folded_model(
                    parsed, graph, weights, original_nodes, folded, result, binder,
                    declared_dims, values)
            flow = decide(original_nodes, result.constants, KEEP_INITIALIZER_ELEMENTS, origin) \
                if layout.has_if or not pristine else None
            if flow is None:
                break
        original_nodes = [n if isinstance(n, Op) else op_of(n) for n in flow.nodes]
        pristine = False
        flow_lines += flow.lines
        constants.update(flow.constants)
        graph.initializer.extend(
            numpy_helper.from_array(np.asarray(v), k) for k, v in flow.constants.items()
        )
        graph.input.extend(
            helper.make_tensor_value_info(k, elem, list(d)) for k, (elem, d) in flow.weights.items()
        )
        weights.update(flow.weights)
    else:
        result, _ = _infer(proto, graph, original_nodes, None, constants, opsets, False)
    flow_lines += dynamic_ifs(original_nodes)
    ir_graph, total, resolved = _build_graph(
        graph.name or path.stem,
        original_nodes,
        result.types,
        result.constants,
        graph_inputs=[i.name for i in graph.input if i.name not in weights],
        graph_outputs=[o.name for o in graph.output],
        weights=set(weights) | {i.name for i in graph.initializer},
        inferred_nodes=_Inferred(result.graph),
        parent=None,
        prefix="",
        layout=layout if pristine else None,
    )
    _check_sizes(ir_graph, path)
    return _model(parsed, ir_graph, total, resolved, binder, declared_dims, values, flow_lines)


def _folded_model(parsed: ParsedOnnx, graph: onnx.GraphProto, weights: Mapping[str, TensorType],
                  nodes: list[Op], blocks: Blocks, result: InferenceResult, binder: DimBinder,
                  declared_dims: Mapping[str, tuple[str | None, ...]],
                  values: Mapping[str, object]) -> FoldedModel | None:
    """The FoldedModel of a load whose inference folded `blocks` (its types are the first
    block's): the IR of the nodes outside blocks 1.., None when the kinds do not hand over."""
    layout = parsed.layout
    reduced, _ = layout.reduced
    made = {name for op in reduced for name in op.output if name}
    kept = {i.name for i in graph.input} | {i.name for i in graph.initializer} | made
    ir_graph, total, resolved = _build_graph(
        graph.name or parsed.path.stem,
        reduced,
        result.types,
        result.constants,
        graph_inputs=[i.name for i in graph.input if i.name not in weights],
        graph_outputs=[o.name for o in graph.output if o.name in kept],
        weights=set(weights) | {i.name for i in graph.initializer},
        inferred_nodes=_Inferred(result.graph),
        parent=None,
        prefix="",
    )
    for received, handed in blocks.carries:  # the kinds hand over too (types were checked)
        a, b = ir_graph.values.get(received), ir_graph.values.get(handed)
        if a is None or b is None or a.kind is not b.kind:
            return None
    if layout.folded_positions is None:
        first, end = blocks.start, blocks.end
        positions = list(range(first))
        for k in range(blocks.count):
            positions.extend(range(first, first + blocks.length))
        positions.extend(range(first + blocks.length, first + blocks.length + len(nodes) - end))
        names = {}
        for k in range(1, blocks.count):
            offset = first + k * blocks.length
            for j in range(blocks.length):
                for name, name0 in zip(nodes[offset + j].output, nodes[first + j].output):
                    if name:
                        names[name] = name0
        layout.folded_positions = (tuple(positions), MappingProxyType(names))
    positions, names = layout.folded_positions
    model = _model(parsed, ir_graph, total, resolved, binder, declared_dims, values, [])
    return FoldedModel(model, positions, names)


def _model(parsed: ParsedOnnx, ir_graph: Graph, total: int, resolved: int, binder: DimBinder,
           declared_dims: Mapping[str, tuple[str | None, ...]], values: Mapping[str, object],
           flow_lines: list[str]) -> Model:
    proto, path = parsed.proto, parsed.path
    return Model(
        graph=ir_graph,
        source=str(path),
        format="onnx",
        producer=" ".join(_text(p) for p in (proto.producer_name, proto.producer_version) if p),
        opsets=MappingProxyType({(o.domain or "ai.onnx"): o.version for o in proto.opset_import}),
        dims=binder.bindings,
        tensors_total=total,
        tensors_resolved=resolved,
        metadata=MappingProxyType({_text(p.key): _text(p.value) for p in proto.metadata_props}),
        input_dim_names=MappingProxyType(declared_dims),
        input_values=MappingProxyType({k: str(v) for k, v in values.items()}),
        control_flow=tuple(flow_lines),
    )


def _text(value: str | bytes) -> str:
    """A free-text field (producer, metadata): protobuf hands invalid UTF-8 back as bytes."""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _require_text(graph: onnx.GraphProto, path: Path) -> Layout:
    """Every name memlint reads is UTF-8 text (the ONNX spec requires it); protobuf returns a
    name with invalid UTF-8 as bytes, which is a corrupt file. Returns the graph's Layout (its
    node fields, read in the same pass)."""
    def names(info: onnx.ValueInfoProto) -> list:
        tensor = info.type.tensor_type
        return [info.name, *(d.dim_param for d in tensor.shape.dim)]

    fields = [graph.name]
    for info in (*graph.input, *graph.output, *graph.value_info):
        fields.extend(names(info))
    for init in graph.initializer:
        fields.append(init.name)
        fields.extend(x for entry in init.external_data for x in (entry.key, entry.value))
    ops, node_fields = read_ops(graph)
    for op in ops:
        if op.nested:
            for attr in op.proto.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    _require_text(sub, path)
    error = utf8_error(fields, path) or utf8_error(node_fields, path)
    if error is not None:
        raise error
    return Layout(ops)


def _strip_weights(graph: onnx.GraphProto, base_dir: Path, path: Path) -> dict[str, TensorType]:
    """Turn large initializers into typed graph inputs, freeing their payloads."""
    declared = {i.name for i in graph.input}
    kept, weights = [], {}
    for init in graph.initializer:
        numel = _numel(init, path)
        external = init.data_location == onnx.TensorProto.EXTERNAL
        if external and numel <= KEEP_INITIALIZER_ELEMENTS:
            external = not _read_small_external(init, numel, base_dir)
        if numel <= KEEP_INITIALIZER_ELEMENTS and not external:
            kept.append(init)
            continue
        weights[init.name] = (init.data_type, tuple(init.dims))
    if weights:
        del graph.initializer[:]
        graph.initializer.extend(kept)
        graph.input.extend(
            helper.make_tensor_value_info(name, elem, list(dims))
            for name, (elem, dims) in weights.items()
            if name not in declared
        )
    return weights


def _numel(init: onnx.TensorProto, path: Path) -> int:
    """Elements of an initializer; a negative dim is a corrupt file."""
    if any(d < 0 for d in init.dims):
        raise ModelLoadError(
            f"{path}: initializer {init.name!r} has a negative dim {list(init.dims)}"
        )
    return math.prod(init.dims)


def _check_constant_ops(ops: list[Op], path: Path) -> None:
    """_check_constants on a parsed top graph: only its Constant nodes and the nodes holding
    graphs can fail it."""
    checked: set[tuple] = set()  # the verdict depends on the op and its attributes alone
    for op in ops:
        key = (op.op_type == "Constant", op.attr_key)
        if (op.op_type == "Constant" or op.nested or op.subgraph) and key not in checked:
            _check_constants_of(op.proto, path)
            checked.add(key)


def _check_constants(graph: onnx.GraphProto, path: Path) -> None:
    """Refuse a Constant node whose tensor has a negative dim (a corrupt file: shape inference
    would carry the dim on and make every later size meaningless)."""
    for node in graph.node:
        _check_constants_of(node, path)


def _check_constants_of(node: onnx.NodeProto, path: Path) -> None:
    for attr in node.attribute:
        if node.op_type == "Constant" and attr.name in ("value", "sparse_value"):
            dims = list(attr.t.dims if attr.name == "value" else attr.sparse_tensor.dims)
            if any(d < 0 for d in dims):
                label = node.name or (node.output[0] if node.output else "Constant")
                raise ModelLoadError(
                    f"{path}: Constant node {label!r} holds a tensor "
                    f"with a negative dim {dims}; the file is corrupt: re-export the model"
                )
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
            _check_constants(sub, path)


def _small_array(init: onnx.TensorProto, path: Path) -> np.ndarray:
    """The value of a small embedded initializer; one whose data does not fit its declared
    shape or type is a corrupt file."""
    try:
        return numpy_helper.to_array(init)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValueError, TypeError, KeyError, ...
        reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"{path}: initializer {init.name!r} is corrupt (dims {list(init.dims)}, "
            f"{reason})"
        ) from None


def _read_small_external(init: onnx.TensorProto, numel: int, base_dir: Path) -> bool:
    """Embed a small external tensor (a shape, axes, a trip count) in place when its data file
    is there: a few bytes that shape arithmetic needs, never a weight matrix.

    Only the tensor's own bytes are read (never a whole file, whatever `length` says), and
    only from a regular file inside the model's folder: an absolute location, `..`, or a
    symlink that leads out of the folder leaves the value unknown, as does any mismatch."""
    info = {entry.key: entry.value for entry in init.external_data}
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        offset = int(info.get("offset") or 0)
    except (TypeError, ValueError, KeyError):
        return False
    nbytes = numel * itemsize
    if init.data_type == onnx.TensorProto.STRING or offset < 0 or (
        "length" in info and info["length"].strip() != str(nbytes)
    ):
        return False
    location = info.get("location", "")
    file = _inside(base_dir, location)
    if file is None:
        return False
    try:
        with open(file, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return False
            handle.seek(offset)
            data = handle.read(nbytes)
    except (OSError, ValueError, OverflowError):
        return False
    if len(data) != nbytes:
        return False
    init.raw_data = data
    init.data_location = onnx.TensorProto.DEFAULT
    del init.external_data[:]
    return True


def _inside(base_dir: Path, location: str) -> Path | None:
    """`location` as a regular file inside `base_dir` (symlinks resolved), else None."""
    relative = Path(location)
    if not location or "\0" in location or relative.is_absolute() or ".." in relative.parts:
        return None
    try:
        base = base_dir.resolve()
        file = (base / relative).resolve()
        if not file.is_relative_to(base) or not file.is_file():
            return None
    except (OSError, ValueError, RuntimeError):
        return None
    return file


def _check_sizes(graph: Graph, path: Path) -> None:
    """Refuse tensors with more elements than int64 counts (corrupt dims or hostile bindings)."""
    for value in graph.values.values():
        numel = value.numel
        if numel is not None and numel > MAX_ELEMENTS:
            raise ModelLoadError(
                f"{path}: tensor {value.name!r} would hold more than 2**63 - 1 elements (shape "
                f"{list(value.shape)}), more than any runtime can index; check the model's dims"
            )
    for node in graph.nodes:
        for sub in node.subgraphs.values():
            _check_sizes(sub, path)


def _bind_inputs(
    graph: onnx.GraphProto,
    weights: Mapping[str, TensorType],
    binder: DimBinder,
    input_shapes: dict[str, tuple[int, ...]],
) -> dict[str, tuple[str | None, ...]]:
    """Give every graph-input dim a concrete value, in place; returns the symbolic name each
    input declared per axis (None for a fixed or unnamed dim)."""
    initializers = {i.name for i in graph.initializer} | set(weights)
    inputs = [i for i in graph.input if i.name not in initializers]
    by_name = {i.name: i for i in inputs}
    unknown = sorted(set(input_shapes) - set(by_name))
    if unknown:
        raise DimError(
            f"--input-shape {', '.join(map(shown, unknown))}: no such input "
            f"(inputs: {', '.join(map(shown, by_name))})"
        )
    names: list[str] = []
    unnamed: list[str] = []
    declared: dict[str, tuple[str | None, ...]] = {}
    for value in inputs:
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
            continue
        given = input_shapes.get(value.name)
        if given is not None and len(given) != len(tensor.shape.dim):
            raise DimError(
                f"--input-shape {shown(value.name)}: rank {len(given)} given, the input has rank "
                f"{len(tensor.shape.dim)}"
            )
        declared[value.name] = tuple(
            d.dim_param.strip() if d.HasField("dim_param") and d.dim_param.strip() not in
            ("", "?", "-1") else None
            for d in tensor.shape.dim
        )
        for axis, dim in enumerate(tensor.shape.dim):
            if given is not None:
                dim.dim_value = given[axis]
            elif dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            elif dim.HasField("dim_value") and dim.dim_value < -1:  # -1 is exporters' "unknown"
                raise DimError(
                    f"input {shown(value.name)} axis {axis} has size {dim.dim_value}, "
                    "which no tensor can have; fix the export, or give the input's shape with "
                    f"--input-shape {shown(value.name)}=..."
                )
            elif dim.HasField("dim_param") and dim.dim_param.strip() not in ("", "?", "-1"):
                names.extend(dim_names_in(dim.dim_param))
                dim.dim_value = binder.value_of(dim.dim_param)
            else:
                unnamed.append(value.name)
                dim.dim_value = binder.assume(f"{value.name}[{axis}]")
    binder.check(names, unnamed_inputs=sorted(set(unnamed)))
    for output in graph.output:  # outputs are re-inferred from the bound inputs
        if output.type.HasField("tensor_type"):
            output.type.tensor_type.ClearField("shape")
    return declared


def _topological_order(nodes: list[Op], path: Path) -> list[int]:
    """Node indexes in a stable topological order (file order where it is already valid)."""
    producer: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node.output:
            if name in producer:  # two writers: every later check would misread the graph
                first = nodes[producer[name]]
                raise ModelLoadError(
                    f"{path}: value {name!r} is written by nodes {first.name or first.op_type!r}"
                    f" and {node.name or node.op_type!r}; a value has one producer in ONNX: "
                    "rename one of the outputs"
                )
            if name:
                producer[name] = index
    # Most files list their nodes in a valid order already: every input made by an earlier node
    # (the search below would give that order, in one pass).
    in_order = True
    for index, node in enumerate(nodes):
        reads = _all_inputs(node) if node.subgraph or node.nested else node.input
        if any(producer.get(n, -1) >= index for n in reads):
            in_order = False
            break
    if in_order:
        return list(range(len(nodes)))
    deps = [
        {producer[n] for n in _all_inputs(node) if n in producer}
        for node in nodes
    ]
    for index, node in enumerate(nodes):
        if index in deps[index]:  # a node that reads its own output
            raise ModelLoadError(
                f"{path}: the graph has a cycle through node {node.name or node.op_type!r}"
            )
    done: set[int] = set()
    order: list[int] = []
    visiting: set[int] = set()
    for start in range(len(nodes)):
        stack = [(start, iter(sorted(deps[start])))]
        if start in done:
            continue
        visiting.add(start)
        while stack:
            index, pending = stack[-1]
            nxt = next((d for d in pending if d not in done), None)
            if nxt is None:
                stack.pop()
                visiting.discard(index)
                done.add(index)
                order.append(index)
            elif nxt in visiting:
                node = nodes[nxt]
                raise ModelLoadError(
                    f"{path}: the graph has a cycle through node {node.name or node.op_type!r}"
                )
            else:
                visiting.add(nxt)
                stack.append((nxt, iter(sorted(deps[nxt]))))
    return order


def _all_inputs(node: onnx.NodeProto) -> list[str]:
    """A node's inputs, including outer-scope names its subgraphs capture."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            local = {i.name for i in sub.input} | {i.name for i in sub.initializer}
            for inner in sub.node:
                local.update(inner.output)
            for inner in sub.node:
                names.extend(n for n in _all_inputs(inner) if n and n not in local)
    return names


def _infer(proto: onnx.ModelProto, graph: onnx.GraphProto, nodes: list[Op],
           layout: Layout | None, constants: Mapping[str, np.ndarray], opsets: dict[str, int],
           fold: bool, *, expand: bool = True, only_folded: bool = False,
           ) -> tuple[InferenceResult | None, Blocks | None]:
    """infer() on the bound graph with `nodes`, and the blocks it folded (None: none); with
    `fold`, on the graph without the blocks that repeat its first block
    (memlint.frontends.onnx_blocks), whose results the repeats then take (`expand`), when at
    these dims the first block hands on the types it received. only_folded: (None, None)
    instead of inferring the whole graph."""
    memo = None if layout is None else layout.inference_memo
    blocks = _blocks(proto, layout, nodes) if fold and layout is not None else None
    if blocks is not None:
        if layout.reduced is None:
            reduced = blocks.reduced(nodes)
            layout.reduced = (reduced, _nodes_bytes(reduced))
        reduced, node_bytes = layout.reduced
        made = {name for op in reduced for name in op.output if name}
        inputs = {i.name for i in graph.input} | {i.name for i in graph.initializer}
        kept = onnx.GraphProto()  # graph outputs the blocks left out would have no producer
        kept.CopyFrom(graph)
        del kept.output[:]
        kept.output.extend(o for o in graph.output if o.name in made or o.name in inputs)
        try:
            result = infer(_light_model(proto, kept, reduced, None, node_bytes), dict(constants),
                           ops=reduced, memo=memo, opsets=opsets)
        except ShapeInferenceError:
            result = None  # the whole graph's inference says what is wrong
        if result is not None and blocks.hands_over(result.types, result.constants, _same):
            if expand:
                blocks.expand(nodes, result.types, result.constants)
            return result, blocks
    if only_folded:
        return None, None
    light = _light_model(proto, graph, nodes, layout)
    return infer(light, dict(constants), ops=nodes, memo=memo, opsets=opsets), None


def _blocks(proto: onnx.ModelProto, layout: Layout, nodes: list[Op]) -> Blocks | None:
    """The repeated blocks of the parsed graph's nodes, in topological order (found once per
    parse)."""
    if layout.blocks_known:
        return layout.blocks
    graph = proto.graph
    ports = {i.name for i in graph.input} | {o.name for o in graph.output}
    initializers = {}
    for init in graph.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(init)
        copy.name = ""
        initializers[init.name] = copy.SerializeToString()
    layout.blocks_known = True
    layout.blocks = find_blocks(
        nodes,
        inputs={i.name: i.type.SerializeToString() for i in graph.input},
        initializers=initializers,
        outputs={o.name: o.type.SerializeToString() for o in graph.output},
        port=lambda name: name in ports and KV_NAME.search(name) is not None,
    )
    return layout.blocks


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _graph_without_nodes(graph: onnx.GraphProto) -> onnx.GraphProto:
    """A copy of `graph`'s name, inputs, outputs and initializers (weights are stripped: a few
    MB at most), bound by a load in place of the parsed graph."""
    bound = onnx.GraphProto()
    bound.name = graph.name
    bound.input.extend(graph.input)
    bound.output.extend(graph.output)
    bound.initializer.extend(graph.initializer)
    return bound


def _light_model(proto: onnx.ModelProto, graph: onnx.GraphProto,
                 nodes: list[onnx.NodeProto] | list[Op], layout: Layout | None,
                 node_bytes: bytes | None = None) -> bytes:
    """The serialized model shape inference reads: `graph` (bound inputs, outputs and small
    initializers; no weights, no stale value_info) with `nodes`. The nodes' bytes are written
    straight from each node (no copy of the message); with `layout` (the file's nodes in its
    topological order) they are written once and kept for every load."""
    light = onnx.ModelProto()
    light.ir_version = proto.ir_version
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    if node_bytes is not None:
        pass
    elif layout is not None:
        if layout.nodes_bytes is None:
            layout.nodes_bytes = _nodes_bytes(nodes)
        node_bytes = layout.nodes_bytes
    else:
        node_bytes = _nodes_bytes(nodes)
    graph_bytes = graph.SerializeToString() + node_bytes  # a repeated field may come anywhere
    return light.SerializeToString() + _field(_MODEL_GRAPH, graph_bytes)


_MODEL_GRAPH, _GRAPH_NODE = 7, 1  # field numbers of ModelProto.graph and GraphProto.node


def _nodes_bytes(nodes: list[onnx.NodeProto] | list[Op]) -> bytes:
    return b"".join(_field(_GRAPH_NODE, (n.proto if isinstance(n, Op) else n).SerializeToString())
                    for n in nodes)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field: its key, the payload's length (varint), the payload."""
    size, out = len(payload), bytearray([number << 3 | 2])
    while size > 0x7F:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + payload


def _build_graph(
    name: str,
    nodes: list[onnx.NodeProto] | list[Op],
    types: Mapping[str, TensorType],
    constants: Mapping[str, np.ndarray],
    *,
    graph_inputs: list[str],
    graph_outputs: list[str],
    weights: set[str],
    inferred_nodes: Mapping[str, onnx.NodeProto],
    parent: Mapping[str, Value] | None,
    prefix: str,
    layout: Layout | None = None,
) -> tuple[Graph, int, int]:
    """The IR graph of `nodes` (with `layout`: the file's top-level nodes in its topological
    order, whose names and IR Nodes are made once and shared by every load)."""
    values: dict[str, Value] = dict(parent or {})
    kv_ports = {
        n for n in graph_inputs + graph_outputs if KV_NAME.search(n)
    } if parent is None else set()

    copies: set[str] = set()  # copies of the KV cache made in this graph (not the cache)
    weight, activation, kv_cache = ValueKind.WEIGHT, ValueKind.ACTIVATION, ValueKind.KV_CACHE

    sizes: dict[tuple, bool] = {}  # dims -> every dim a size (most tensors share a few shapes)

    def add(name: str, kind: ValueKind) -> Value:
        elem, dims = types.get(name, (0, None))
        if dims is not None:
            ok = sizes.get(dims)
            if ok is None:
                ok = sizes[dims] = not any(d is not None and d < 0 for d in dims)
            if not ok:  # not a size: unresolved (inference passes a negative
                dims = None  # Expand/Reshape target on)
        dtype = _DTYPES.get(elem, DType.UNKNOWN)
        if name in kv_ports and dtype not in NON_KV_DTYPES and name not in copies:
            kind = kv_cache
        value = Value(name, dims, dtype, kind)
        values[name] = value
        return value

    for tensor in graph_inputs:
        add(tensor, activation)
    for tensor in weights:
        add(tensor, weight)
    for tensor in constants:
        if tensor not in values:
            add(tensor, weight)
    # Only the KV-cache ports (or a KV tensor of the outer graph) start a KV-cache tensor.
    kv_possible = bool(kv_ports) or any(v.kind is kv_cache for v in values.values())

    ir_nodes: list[Node] = []
    shared = layout is not None and prefix == ""
    if shared:
        if layout.names is None or len(layout.names) != len(nodes):
            layout.names = _unique_names(nodes)
            layout.ir_nodes = [None] * len(nodes)
        names, made = layout.names, layout.ir_nodes
    else:
        names = _unique_names(nodes)
    get = values.get
    total = resolved = 0
    for index, node in enumerate(nodes):
        in_values = [get(n) for n in node.input if n]
        nested = node.subgraph if isinstance(node, Op) else has_subgraph(node)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            kind = weight
        elif kv_possible and _carries_kv(node, in_values, types, copies):
            if node.op_type in KV_VIEWS and in_values[0] is not None \
                    and in_values[0].kind is kv_cache:
                kind = kv_cache
            else:  # a copy of the cache (a present made by Concat is one too)
                kind = activation
                copies.update(o for o in node.output if o)
        elif in_values and in_values[0] is not None and in_values[0].kind is weight \
                and all(v is not None and v.kind is weight for v in in_values) and not nested:
            kind = weight
        else:
            kind = activation
        for output in node.output:
            if output:
                shape = add(output, kind).shape
                total += 1
                resolved += shape is not None and None not in shape
        if shared and not nested:
            ir_node = made[index]
            if ir_node is None:
                ir_node = made[index] = Node(
                    name=names[index],
                    op_type=node.op_type,
                    domain="" if node.domain == "ai.onnx" else node.domain,
                    inputs=tuple(node.input),
                    outputs=tuple(node.output),
                    attributes=layout.typed_attributes(node, _typed_attributes),
                    subgraphs=EMPTY,
                )
            ir_nodes.append(ir_node)
            continue
        node_name = prefix + names[index]
        subgraphs = _subgraphs(node, node_name, inferred_nodes, constants, values) \
            if nested else {}
        for sub_total, sub_resolved in (s[1:] for s in subgraphs.values()):
            total += sub_total
            resolved += sub_resolved
        ir_nodes.append(
            Node(
                name=node_name,
                op_type=node.op_type,
                domain="" if node.domain == "ai.onnx" else node.domain,
                inputs=tuple(node.input),
                outputs=tuple(node.output),
                attributes=MappingProxyType(_typed_attributes(node)),
                subgraphs=MappingProxyType({k: s[0] for k, s in subgraphs.items()}),
            )
        )
    for tensor in graph_inputs:
        total += 1
        resolved += values[tensor].is_resolved
    graph = Graph(
        name=name,
        nodes=tuple(ir_nodes),
        values=MappingProxyType(values),
        inputs=tuple(graph_inputs),
        outputs=tuple(graph_outputs),
        constants=MappingProxyType(dict(constants)),
    )
    return graph, total, resolved


class _Inferred(Mapping):
    """{first output: node} of an inferred graph, read only when a node holding a subgraph
    asks (its subgraphs' inferred shapes)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self._graph = graph
        self._nodes: dict[str, onnx.NodeProto] | None = None

    def _table(self) -> dict[str, onnx.NodeProto]:
        if self._nodes is None:
            self._nodes = {n.output[0]: n for n in self._graph.node if n.output}
        return self._nodes

    def __getitem__(self, key: str) -> onnx.NodeProto:
        return self._table()[key]

    def __iter__(self):  # noqa: ANN204
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


_A = onnx.AttributeProto
# Attribute types for ops onnx has no schema for (onnxruntime's com.microsoft ops): the names
# costs, rules and the LLM structure read, typed as onnxruntime's contrib schemas type them.
CONTRIB_ATTRIBUTE_TYPES: Mapping[str, int] = MappingProxyType({
    **dict.fromkeys((
        "num_heads", "kv_num_heads", "q_num_heads", "bits", "block_size", "K", "N",
        "hidden_size", "do_rotary", "past_present_share_buffer", "local_window_size",
        "unidirectional", "interleaved", "rotary_embedding_dim", "accuracy_level", "transA",
        "transB", "transBatchA", "transBatchB", "axis", "keepdims", "group",
    ), _A.INT),
    **dict.fromkeys(("qkv_hidden_sizes", "perm", "axes", "pads", "kernel_shape", "strides",
                     "dilations"), _A.INTS),
    **dict.fromkeys(("epsilon", "alpha", "beta", "scale", "mask_filter_value"), _A.FLOAT),
    **dict.fromkeys(("activation", "direction", "auto_pad", "mode", "equation"), _A.STRING),
})  # fmt: skip


@functools.lru_cache(maxsize=None)
def _attribute_types(op_type: str, domain: str) -> Mapping[str, int]:
    """The attribute types of an op's schema (the contrib table for an op onnx does not know)."""
    try:
        schema = onnx.defs.get_schema(op_type, domain)
    except Exception:  # noqa: BLE001 - SchemaError, or a name onnx cannot take
        return CONTRIB_ATTRIBUTE_TYPES
    return MappingProxyType({name: int(a.type) for name, a in schema.attributes.items()})


def _typed_attributes(node: onnx.NodeProto) -> dict[str, object]:
    """A node's attributes, without those whose type is not the one its schema declares (a
    num_heads written as a string): costs and rules read attributes as their schema types."""
    values = node_attributes(node)
    expected = _attribute_types(node.op_type, "" if node.domain == "ai.onnx" else node.domain)
    for attr in node.attribute:
        want = expected.get(attr.name)
        if want is not None and attr.type != want and attr.name in values:
            log.debug("node %r: attribute %r has type %d, not %d; ignored", node.name,
                      attr.name, attr.type, want)
            del values[attr.name]
    return values


def _carries_kv(
    node: onnx.NodeProto,
    in_values: list[Value | None],
    types: Mapping[str, TensorType],
    copies: set[str] = frozenset(),  # type: ignore[assignment]
) -> bool:
    """Is this node's output (part of) a KV-cache tensor or a copy of one (`copies`)?"""
    def cached(v: Value | None) -> bool:
        return v is not None and (v.kind is ValueKind.KV_CACHE or v.name in copies)

    kv = [v for v in in_values if cached(v)]
    if not kv:
        return False
    if node.op_type in KV_PASSTHROUGH:
        return True
    if node.op_type not in KV_SCALING or not node.output:
        return False
    out_shape = types.get(node.output[0], (0, None))[1]
    others = [v for v in in_values if v is not None and not cached(v)]
    return any(v.shape == out_shape for v in kv) and all(
        v.kind is ValueKind.WEIGHT or v.numel == 1 for v in others
    )


def _unique_names(nodes: list[onnx.NodeProto]) -> list[str]:
    """One name per node, unique within its graph: its own name when no node before it took it,
    else op_type + "_" + index; a made-up name that clashes gets a numeric suffix."""
    given = {n.name for n in nodes if n.name}
    used: set[str] = set()
    names: list[str] = []
    for index, node in enumerate(nodes):
        name = node.name if node.name and node.name not in used else f"{node.op_type}_{index}"
        base, suffix = name, 1
        while name in used or (name != node.name and name in given):
            name, suffix = f"{base}_{suffix}", suffix + 1
        used.add(name)
        names.append(name)
    return names


def _subgraphs(
    node: onnx.NodeProto,
    node_name: str,
    inferred_nodes: Mapping[str, onnx.NodeProto],
    constants: Mapping[str, np.ndarray],
    outer: Mapping[str, Value],
) -> dict[str, tuple[Graph, int, int]]:
    if not has_subgraph(node):
        return {}
    inferred = inferred_nodes.get(node.output[0], node) if node.output else node
    result = {}
    for attr in inferred.attribute:
        if attr.type != onnx.AttributeProto.GRAPH:
            continue
        sub = attr.g
        types = collect_types(sub)
        sub_constants = dict(constants)
        for init in sub.initializer:
            external = init.data_location == onnx.TensorProto.EXTERNAL
            if not external and 0 <= math.prod(init.dims) <= KEEP_INITIALIZER_ELEMENTS:
                with contextlib.suppress(Exception):  # corrupt data: the value stays unknown
                    sub_constants[init.name] = numpy_helper.to_array(init)
        for inner in sub.node:
            if inner.op_type == "Constant" and inner.output:
                value = constant_value(inner)
                if value is not None:
                    sub_constants[inner.output[0]] = value
        outer_types = {k: (0, v.shape) for k, v in outer.items()}
        result[attr.name] = _build_graph(
            sub.name or attr.name,
            list(sub.node),
            {**outer_types, **types},
            sub_constants,
            graph_inputs=[i.name for i in sub.input],
            graph_outputs=[o.name for o in sub.output],
            weights={i.name for i in sub.initializer},
            inferred_nodes={n.output[0]: n for n in sub.node if n.output},
            parent=outer,
            prefix=f"{node_name}/{attr.name}/",
        )
    return result


__all__ = ["load_onnx", "read_proto", "resolve_model_path"]
