"""The graph intermediate representation that every layer above the frontends sees.

Frozen dataclasses only; this module imports neither onnx nor torch. Frontends build these
objects, the cost model and the rules read them.
"""

from __future__ import annotations

import enum
import functools
import math
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, Union

if TYPE_CHECKING:
    import numpy as np

_T = TypeVar("_T")

EMPTY: Mapping[str, Any] = MappingProxyType({})
# Node attribute a frontend sets (1) on a scatter that updates its data input's buffer in place
# (a torch graph's index_copy_ into a StaticCache): its cost is the updates, not the buffer.
IN_PLACE = "memlint.in_place"


class DType(enum.Enum):
    """Element types, with their width in bits (int4 is 4 bits: half a byte)."""

    FLOAT64 = ("float64", 64, True)
    FLOAT32 = ("float32", 32, True)
    FLOAT16 = ("float16", 16, True)
    BFLOAT16 = ("bfloat16", 16, True)
    FLOAT8E4M3FN = ("float8e4m3fn", 8, True)
    FLOAT8E4M3FNUZ = ("float8e4m3fnuz", 8, True)
    FLOAT8E5M2 = ("float8e5m2", 8, True)
    FLOAT8E5M2FNUZ = ("float8e5m2fnuz", 8, True)
    FLOAT8E8M0 = ("float8e8m0", 8, True)
    FLOAT4E2M1 = ("float4e2m1", 4, True)
    INT64 = ("int64", 64, False)
    INT32 = ("int32", 32, False)
    INT16 = ("int16", 16, False)
    INT8 = ("int8", 8, False)
    INT4 = ("int4", 4, False)
    INT2 = ("int2", 2, False)
    UINT64 = ("uint64", 64, False)
    UINT32 = ("uint32", 32, False)
    UINT16 = ("uint16", 16, False)
    UINT8 = ("uint8", 8, False)
    UINT4 = ("uint4", 4, False)
    UINT2 = ("uint2", 2, False)
    BOOL = ("bool", 8, False)
    COMPLEX64 = ("complex64", 64, True)
    COMPLEX128 = ("complex128", 128, True)
    STRING = ("string", 0, False)
    UNKNOWN = ("unknown", 0, False)

    def __init__(self, label: str, bits: int, is_float: bool) -> None:
        self.label = label
        self.bits = bits
        self.is_float = is_float

    # Members are singletons compared by identity: hash them in C (Enum's own __hash__ is a
    # Python call, and costs keyed by dtype are looked up once per node).
    __hash__ = object.__hash__

    @classmethod
    def from_label(cls, label: str) -> DType:
        for member in cls:
            if member.label == label:
                return member
        raise ValueError(f"unknown dtype {label!r}")


class ComputeUnit(enum.Enum):
    """Which execution unit's peak bounds an op: matrix (tensor) cores or the vector units."""

    TENSOR = "tensor"
    VECTOR = "vector"

    __hash__ = object.__hash__  # see DType


class ValueKind(enum.Enum):
    """What a tensor is, for the split of bytes moved."""

    WEIGHT = "weights"
    ACTIVATION = "activations"
    KV_CACHE = "kv_cache"

    __hash__ = object.__hash__  # see DType


Shape = tuple[Union[int, None], ...]


@dataclass(frozen=True)
class Value:
    """A tensor: its resolved shape (None where unknown), element type and kind."""

    name: str
    shape: Shape | None
    dtype: DType
    kind: ValueKind = ValueKind.ACTIVATION

    # Read for every tensor by several passes: each tests its shape in C (`None in shape`).
    @property
    def is_resolved(self) -> bool:
        shape = self.shape
        return shape is not None and None not in shape

    @property
    def numel(self) -> int | None:
        shape = self.shape
        if shape is None or None in shape:
            return None
        return math.prod(shape)

    @property
    def nbytes(self) -> int | None:
        """Bytes at the dtype's bit width, rounded up to whole bytes (two int4 per byte)."""
        shape = self.shape
        bits = self.dtype.bits
        if shape is None or None in shape or bits == 0:
            return None
        return (math.prod(shape) * bits + 7) // 8


@dataclass(frozen=True)
class SourceLocation:
    file: str
    line: int


@dataclass(frozen=True)
class Node:
    """One operator. Identity is (domain, op_type) as the ONNX spec spells it ("" = ai.onnx)."""

    name: str
    op_type: str
    domain: str = ""
    inputs: tuple[str, ...] = ()  # "" marks an omitted optional input
    outputs: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    subgraphs: Mapping[str, Graph] = field(default_factory=lambda: EMPTY)
    source: SourceLocation | None = None

    @property
    def qualified_op(self) -> str:
        return f"{self.domain}::{self.op_type}" if self.domain else self.op_type


@dataclass(frozen=True)
class Graph:
    """A (sub)graph: nodes in topological order, and every tensor it names.

    `constants` holds the values of small tensors known before run time (shape arithmetic,
    axes, trip counts), which some cost formulas need (TopK's k, Loop's trip count).
    """

    name: str
    nodes: tuple[Node, ...]
    values: Mapping[str, Value]
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    constants: Mapping[str, np.ndarray] = field(default_factory=lambda: EMPTY)

    def value(self, name: str) -> Value | None:
        return self.values.get(name) if name else None


@dataclass(frozen=True)
class DimBinding:
    """How a symbolic dim got its value: bound by the user, or assumed. `source` names the file
    and key a value came from when the exporter's own files gave it ("config.json image_size"),
    or, for an assumed dim, the LLM scenario default that set it ("LLM default context"); empty
    for a value the caller bound or memlint assumed to be 1."""

    name: str
    value: int
    assumed: bool
    source: str = ""


@dataclass(frozen=True)
class Model:
    """A loaded model: the top graph plus what the frontend learned about it."""

    graph: Graph
    source: str
    format: str  # "onnx", "fx"
    producer: str = ""
    opsets: Mapping[str, int] = field(default_factory=lambda: EMPTY)
    dims: tuple[DimBinding, ...] = ()
    tensors_total: int = 0
    tensors_resolved: int = 0
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    # The symbolic dim name each graph input declared per axis before binding (None for a fixed
    # or unnamed dim): {"past_key_values.0.key": ("batch_size", None, "past_sequence_length", None)}
    input_dim_names: Mapping[str, tuple[str | None, ...]] = field(default_factory=lambda: EMPTY)
    # Graph inputs fixed to a value at load ({"use_cache_branch": "True"}), no longer inputs.
    input_values: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    # One line per If: taken statically (its condition known before run time) or left dynamic.
    control_flow: tuple[str, ...] = ()

    @property
    def assumed_dims(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims if d.assumed)


def per_graph(compute: Callable[..., _T]) -> Callable[..., _T]:
    """Decorator: `compute(graph, *args)` runs once per live Graph object (graphs are immutable;
    `args` must be the same on every call for a graph) and its result is forgotten when the
    graph is collected. Analyses that several readers ask for (Q/DQ folding, KV-cache copies,
    liveness) share it instead of each keeping a memo."""
    memo: dict[int, tuple[weakref.ref, Any]] = {}
    lock = threading.Lock()

    @functools.wraps(compute)
    def cached(graph: Graph, *args: Any) -> _T:
        key = id(graph)
        held = memo.get(key)
        if held is not None and held[0]() is graph:
            return held[1]
        result = compute(graph, *args)

        def forget(ref: weakref.ref, key: int = key) -> None:  # holds `memo`, not a global
            if memo.get(key, (None,))[0] is ref:
                del memo[key]

        with lock:
            memo[key] = (weakref.ref(graph, forget), result)
        return result

    return cached
