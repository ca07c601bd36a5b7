"""What the measured run feeds and loads: synthesised inputs for the bound dims, and weights.

Inputs (seeded, so runs repeat):
- integer inputs that reach a Gather's indices (through Cast/Reshape/Unsqueeze/... only) get
  values below the size of the table they index: token ids within the vocab, token types
  within the type vocab; `position_ids` count up from the bound past length (clipped to the
  table); any other integer input gets zeros;
- inputs named like a mask (`attention_mask`, ...) and boolean inputs are all ones;
  `padded` makes the same feeds with the last batch row of each mask half padding: at the
  left for a model with a KV cache (batched generation pads prompts at the left), at the right
  for any other (an encoder's batches pad at the right);
- KV-cache inputs (as the frontend classified them) get small random values (normal, std 0.02)
  at the bound past length; other float inputs get standard normal values.

Weights: the model file is parsed without external data and its nodes renamed to the IR's node
names (so the profiler's names are the report's). External tensors whose data file is there are
read by onnxruntime itself from the model's folder; missing ones are filled with random values
(normal, std 0.02, for floats) in memory and handed to onnxruntime with
`SessionOptions.add_external_initializers`. That needs about the model's weight bytes
(onnxruntime's copy) plus the random bytes (memlint's buffers) of free RAM, read from
/proc/meminfo MemAvailable (os.sysconf where there is no /proc); the run is refused when they
would not fit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memlint.dims import shown
from memlint.errors import ConfirmError
from memlint.hardware.machine import available_memory_bytes
from memlint.hardware.ort_profile import SUBGRAPH_PREFIX
from memlint.ir import DType, Graph, Model, Node, ValueKind

SEED = 0
WEIGHT_STD = 0.02
MASK_NAME = re.compile(r"mask", re.I)
POSITION_NAME = re.compile(r"position", re.I)
# Ops an index tensor passes through unchanged in value on its way to a Gather.
INDEX_PASSTHROUGH = frozenset(
    {"Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Expand"}
)
SMALL_INTEGER_ELEMENTS = 1024  # a missing integer tensor this small holds shapes or indices

_NUMPY: Mapping[DType, type] = {
    DType.FLOAT64: np.float64, DType.FLOAT32: np.float32, DType.FLOAT16: np.float16,
    DType.INT64: np.int64, DType.INT32: np.int32, DType.INT16: np.int16, DType.INT8: np.int8,
    DType.UINT64: np.uint64, DType.UINT32: np.uint32, DType.UINT16: np.uint16,
    DType.UINT8: np.uint8, DType.BOOL: np.bool_,
}  # fmt: skip


# --- inputs ---------------------------------------------------------------------------------


def synthesize_inputs(model: Model, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Feeds for the graph inputs `names` (default: every graph input) at the bound dims."""
    graph = model.graph
    bounds = index_bounds(graph)
    past = past_length(model)
    rng = np.random.default_rng(SEED)
    feeds = {}
    for name in names if names is not None else graph.inputs:
        value = graph.value(name)
        if value is None or not value.is_resolved:
            raise ConfirmError(
                f"input {name!r} has no resolved shape; bind its dims with --dim or --input-shape"
            )
        shape = tuple(int(d) for d in value.shape)  # type: ignore[union-attr]
        numpy_type = _NUMPY.get(value.dtype)
        if numpy_type is None:
            raise ConfirmError(
                f"input {name!r} has dtype {value.dtype.label}, which memlint cannot synthesise"
            )
        if value.dtype is DType.BOOL or MASK_NAME.search(name):
            feeds[name] = np.ones(shape, numpy_type)
        elif not value.dtype.is_float:
            feeds[name] = _integers(name, shape, numpy_type, bounds.get(name), past, rng)
        elif value.kind is ValueKind.KV_CACHE:
            feeds[name] = (rng.standard_normal(shape, np.float32) * WEIGHT_STD).astype(numpy_type)
        else:
            feeds[name] = rng.standard_normal(shape, np.float32).astype(numpy_type)
    return feeds


def padded(model: Model, feeds: Mapping[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]] | None:
    """`feeds` with half of the last batch row of every mask input (named like a mask, integer
    or boolean, at least 2 positions on its last axis) set to 0 / False: the first half for a
    model with a KV cache (a decoder: batched generation pads prompts at the left, so in a
    prefill the first query rows of a causal model see no key at all), the last half for any
    other (an encoder: its batches pad at the right). The other rows stay all ones. ("left" or
    "right", the feeds), or None when the model has no such mask input."""
    left = any(v.kind is ValueKind.KV_CACHE for v in model.graph.values.values())
    masked_feeds = dict(feeds)
    for name, array in feeds.items():
        value = model.graph.value(name)
        if (value is None or value.dtype.is_float or not MASK_NAME.search(name)
                or array.size == 0 or array.shape[-1] < 2):
            continue
        masked = array.copy()
        row = masked[-1] if masked.ndim > 1 else masked
        half = array.shape[-1] // 2
        if left:
            row[..., :half] = 0
        else:
            row[..., array.shape[-1] - half:] = 0
        masked_feeds[name] = masked
    if all(masked_feeds[k] is feeds[k] for k in feeds):
        return None
    return ("left" if left else "right"), masked_feeds


def describe_feeds(feeds: Mapping[str, np.ndarray], model: Model) -> str:
    """What was fed, for an error message: 'fed pixel_values float32[1, 1, 32, 32] at dims
    batch_size=1 (assumed), height=32 (config.json image_size), num_channels=1 (bound)': each
    input's shape, then every dim with where its value came from."""
    fed = ", ".join(
        f"{shown(name)} {array.dtype}[{', '.join(map(str, array.shape))}]"
        for name, array in feeds.items()
    )
    dims = ", ".join(
        f"{shown(d.name)}={d.value} ({'assumed' if d.assumed else d.source or 'bound'})"
        for d in model.dims
    )
    line = f"fed {fed or 'no inputs'}" + (f" at dims {dims}" if dims else "")
    if model.assumed_dims:
        line += "; bind assumed dims with --dim NAME=VALUE or --input-shape"
    return line


def _integers(
    name: str, shape: tuple[int, ...], numpy_type: type, bound: int | None, past: int,
    rng: np.random.Generator,
) -> np.ndarray:
    if POSITION_NAME.search(name) and shape:
        positions = past + np.arange(shape[-1])
        if bound is not None:
            positions = np.minimum(positions, bound - 1)
        return np.broadcast_to(positions, shape).astype(numpy_type)
    if bound is not None and bound > 0:
        return rng.integers(0, bound, size=shape).astype(numpy_type)
    return np.zeros(shape, numpy_type)


def index_bounds(graph: Graph) -> dict[str, int]:
    """For each integer graph input that reaches a Gather's indices, the size of the table."""
    consumers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for tensor in node.inputs:
            if tensor:
                consumers.setdefault(tensor, []).append(node)
    bounds: dict[str, int] = {}
    for name in graph.inputs:
        value = graph.value(name)
        if value is None or value.dtype.is_float or value.dtype is DType.BOOL:
            continue
        seen, frontier = {name}, [name]
        while frontier:
            tensor = frontier.pop()
            for node in consumers.get(tensor, ()):
                if node.op_type == "Gather" and node.domain == "" and node.inputs[1:2] == (tensor,):
                    size = _table_size(graph, node)
                    if size is not None:
                        bounds[name] = min(bounds.get(name, size), size)
                elif node.op_type in INDEX_PASSTHROUGH and node.inputs[:1] == (tensor,):
                    for out in node.outputs:
                        if out and out not in seen:
                            seen.add(out)
                            frontier.append(out)
    return bounds


def _table_size(graph: Graph, node: Node) -> int | None:
    table = graph.value(node.inputs[0])
    if table is None or not table.shape:
        return None
    axis = int(node.attributes.get("axis", 0))
    size = table.shape[axis] if -len(table.shape) <= axis < len(table.shape) else None
    return int(size) if isinstance(size, int) and size > 0 else None


def past_length(model: Model) -> int:
    """The bound past (KV-cache) length: the value of a dim named like `past_sequence_length`."""
    for dim in model.dims:
        if "past" in dim.name.lower() and "+" not in dim.name:
            return dim.value
    return 0


# --- weights and the proto onnxruntime loads --------------------------------------------------


@dataclass(frozen=True)
class GraphNode:
    """The structure of one node of a proto (original or optimised): what it reads and writes."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def graph_nodes(proto_graph) -> tuple[GraphNode, ...]:
    """The top-level nodes of an onnx GraphProto as GraphNodes."""
    return tuple(
        GraphNode(n.name, n.op_type, tuple(n.input), tuple(n.output)) for n in proto_graph.node
    )


@dataclass(frozen=True)
class PreparedModel:
    """The serialised model onnxruntime loads, and the weights memlint supplies in memory."""

    proto_bytes: bytes
    folder: Path  # where onnxruntime reads the external data that exists
    nodes: tuple[GraphNode, ...] = ()  # the top-level nodes, renamed to the IR's names
    external: Mapping[str, np.ndarray] = field(default_factory=dict)  # name -> synthesised
    external_types: Mapping[str, int] = field(default_factory=dict)  # name -> TensorProto type
    weights: str = "real"  # "real", "random" or "real and random"
    weight_bytes: int = 0
    random_bytes: int = 0


def prepare_model(model: Model, *, available: int | None = None) -> PreparedModel:
    """Parse `model.source`, rename its nodes to the IR's names and fill missing weights.

    `available` is the free RAM in bytes (default: read from the system); a run whose weights
    would not fit is refused with a ConfirmError naming the sizes.
    """
    import onnx

    path = Path(model.source)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is one line for the user
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ConfirmError(f"{path}: cannot read the model to run it ({reason})") from None
    rename_nodes(proto, model.graph)
    missing, weight_bytes = _missing_external(proto, path.parent)
    random_bytes = sum(_storage_bytes(t) for t in missing)
    if random_bytes:
        free = available_memory_bytes() if available is None else available
        needed = weight_bytes + random_bytes
        if free is not None and needed > free:
            raise ConfirmError(
                f"{path}: the external weights are missing and random ones would need "
                f"{needed / 1e9:.2f} GB of RAM ({weight_bytes / 1e9:.2f} GB for onnxruntime's "
                f"copy of the weights + {random_bytes / 1e9:.2f} GB of random values); "
                f"{free / 1e9:.2f} GB is available"
            )
    rng = np.random.default_rng(SEED)
    external = {t.name: _random_tensor(t, rng) for t in missing}
    if not missing:
        weights = "real"
    elif len(missing) == _count_external(proto) and not _has_embedded_weights(proto):
        weights = "random"
    else:
        weights = "real and random"
    return PreparedModel(
        proto_bytes=proto.SerializeToString(),
        folder=path.parent,
        nodes=graph_nodes(proto.graph),
        external=external,
        external_types={t.name: t.data_type for t in missing},
        weights=weights,
        weight_bytes=weight_bytes,
        random_bytes=random_bytes,
    )


def rename_nodes(proto, graph: Graph) -> None:  # proto: onnx.ModelProto
    """Name every top-level node as the IR names it (matched by its outputs), so profiler names
    are report names; subgraph nodes get SUBGRAPH_PREFIX names (their time is the parent's)."""
    by_output = {out: node.name for node in graph.nodes for out in node.outputs if out}
    used: set[str] = set()
    for index, node in enumerate(proto.graph.node):
        name = next((by_output[o] for o in node.output if o in by_output), None)
        if name is None or name in used:
            name = f"memlint.unmapped/{index}:{node.op_type}"
        used.add(name)
        node.name = name
    counter = 0
    for sub in _subgraphs_of(proto.graph):
        for node in sub.node:
            node.name = f"{SUBGRAPH_PREFIX}{counter}:{node.op_type}"
            counter += 1


def _subgraphs_of(graph) -> Iterator:
    import onnx

    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                yield sub
                yield from _subgraphs_of(sub)


def _all_graphs(graph) -> Iterator:
    yield graph
    yield from _subgraphs_of(graph)


def _missing_external(proto, folder: Path) -> tuple[list, int]:
    """External tensors whose data is absent, and the bytes of every weight in the model."""
    import onnx

    missing, weight_bytes = [], 0
    for graph in _all_graphs(proto.graph):
        for tensor in graph.initializer:
            size = _storage_bytes(tensor)
            weight_bytes += size
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {e.key: e.value for e in tensor.external_data}
            data = folder / info.get("location", "")
            offset = int(info.get("offset", 0) or 0)
            length = int(info.get("length", size) or size)
            present = data.is_file() and data.stat().st_size >= offset + length
            if not info.get("location") or not present:
                missing.append(tensor)
    return missing, weight_bytes


def _count_external(proto) -> int:
    import onnx

    return sum(
        t.data_location == onnx.TensorProto.EXTERNAL
        for g in _all_graphs(proto.graph) for t in g.initializer
    )


def _has_embedded_weights(proto) -> bool:
    import onnx

    return any(
        t.data_location != onnx.TensorProto.EXTERNAL and math.prod(t.dims) > SMALL_INTEGER_ELEMENTS
        for g in _all_graphs(proto.graph) for t in g.initializer
    )


def _storage_bytes(tensor) -> int:
    from onnx import helper

    bits = _BITS.get(tensor.data_type)
    if bits is None:
        try:
            bits = 8 * np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        except Exception:  # noqa: BLE001 - an exotic type: count a byte per element
            bits = 8
    return (math.prod(tensor.dims) * bits + 7) // 8


_BITS = {16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4}  # bf16, float8 variants, uint4/int4


def _random_tensor(tensor, rng: np.random.Generator) -> np.ndarray:
    """Random values of the tensor's type and shape (storage dtype for types numpy lacks)."""
    import onnx

    shape, numel = tuple(tensor.dims), math.prod(tensor.dims)
    kind = onnx.TensorProto.DataType.Name(tensor.data_type)
    TP = onnx.TensorProto
    if tensor.data_type in (TP.FLOAT, TP.DOUBLE, TP.FLOAT16):
        numpy_type = {TP.FLOAT: np.float32, TP.DOUBLE: np.float64, TP.FLOAT16: np.float16}
        values = rng.standard_normal(shape, np.float32) * np.float32(WEIGHT_STD)
        return values.astype(numpy_type[tensor.data_type], copy=False)
    if tensor.data_type == TP.BFLOAT16:
        values = rng.standard_normal(shape, np.float32) * np.float32(WEIGHT_STD)
        return (values.view(np.uint32) >> 16).astype(np.uint16)
    if tensor.data_type in (TP.INT8, TP.UINT8):
        low, high = (-8, 8) if tensor.data_type == TP.INT8 else (0, 16)
        dtype = np.int8 if tensor.data_type == TP.INT8 else np.uint8
        return rng.integers(low, high, size=shape).astype(dtype)
    if tensor.data_type == TP.BOOL:
        return np.ones(shape, np.bool_)
    if tensor.data_type in (TP.INT64, TP.INT32, TP.INT16, TP.UINT16, TP.UINT32, TP.UINT64):
        if numel <= SMALL_INTEGER_ELEMENTS:
            raise ConfirmError(
                f"external tensor {tensor.name!r} ({kind}, {numel} elements) is missing; it holds "
                "shapes or indices that cannot be made up: put its data file next to the model"
            )
        return np.zeros(shape, onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    raise ConfirmError(
        f"external tensor {tensor.name!r} is missing and memlint cannot make up {kind} values; "
        "put its data file next to the model"
    )
