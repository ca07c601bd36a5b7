"""What loading a parsed ONNX graph needs that no binding of its dims changes, read from the
proto once per parse (memlint.frontends.onnx.ParsedOnnx) and shared by every load of it: an LLM
scenario, each point of a sweep, each step of a generation.

- `Op`: one top-level node's fields as Python values (name, op_type, domain, input, output:
  the NodeProto's names, so code written for a NodeProto reads an Op the same way), whether
  it holds a subgraph, and a key of its attributes (their serialized bytes);
- the topological order of the nodes (file order when it is already one), or the error every
  load raises (two writers of one value, a cycle);
- each node's attributes as Python values (one object per distinct set of attributes:
  identical layers share them), the IR Node of every node without a subgraph, and a memo
  (memlint.frontends.onnx_infer) of what shape inference computes from a node's op,
  attributes, input types and known input values (Constant values, per-node inference, folded
  shape arithmetic): 80 identical decoder layers infer and fold once.

Reading protobuf fields from Python costs about a microsecond each; a 100,000-node graph read
field by field once per pass (checks, order, control flow, inference, IR) spent seconds there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import chain
from pathlib import Path
from types import MappingProxyType
from typing import Any

import onnx

from memlint.errors import ModelLoadError

_GRAPH, _GRAPHS = onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS
_UNSET: Any = object()


class Op:
    """One node of a parsed top graph, its fields read once (the NodeProto's field names)."""

    __slots__ = ("attr_key", "domain", "input", "name", "nested", "op_type", "output", "proto",
                 "subgraph")

    def __init__(self, proto: onnx.NodeProto, name: str, op_type: str, domain: str,
                 inputs: tuple[str, ...], outputs: tuple[str, ...], subgraph: bool,
                 nested: bool, attr_key: tuple[bytes, ...]) -> None:
        self.proto = proto
        self.name = name
        self.op_type = op_type
        self.domain = domain
        self.input = inputs
        self.output = outputs
        self.subgraph = subgraph  # holds a GRAPH or GRAPHS attribute
        self.nested = nested  # an attribute holds a graph field, whatever its type says
        self.attr_key = attr_key  # the serialized attributes, in order

    @property
    def attribute(self) -> Any:  # the proto's repeated field, for code that walks attributes
        return self.proto.attribute


def op_of(proto: onnx.NodeProto) -> Op:
    """One NodeProto as an Op (a node inlined from a branch, a node of a built graph)."""
    return read_ops([proto])[0][0]


def read_ops(graph: onnx.GraphProto | list[onnx.NodeProto]) -> tuple[list[Op], list[Any]]:
    """The graph's nodes as Ops, and every name field read (node names, op types, domains,
    inputs, outputs, attribute names) for the caller's UTF-8 check."""
    ops: list[Op] = []
    attribute_names: list[Any] = []
    new, graph_types = Op, (_GRAPH, _GRAPHS)
    for proto in graph.node if isinstance(graph, onnx.GraphProto) else graph:
        subgraph = nested = False
        key: tuple[bytes, ...] = ()
        attributes = proto.attribute
        if attributes:
            parts = []
            for attr in attributes:
                attribute_names.append(attr.name)
                if attr.type in graph_types:
                    subgraph = nested = True
                elif attr.HasField("g") or attr.graphs:
                    nested = True
                parts.append(attr.SerializeToString())
            key = tuple(parts)
        ops.append(new(proto, proto.name, proto.op_type, proto.domain, tuple(proto.input),
                       tuple(proto.output), subgraph, nested, key))
    return ops, _NodeFields(ops, attribute_names)


class _NodeFields:
    """The name fields of a list of Ops (and their attribute names), in node order, for
    utf8_error: tested at C speed (joining them fails on a name that is not text), listed one
    by one only when one is not."""

    def __init__(self, ops: list[Op], attribute_names: list[Any]) -> None:
        self.ops, self.attribute_names = ops, attribute_names

    def all_text(self) -> bool:
        try:
            "".join([op.name + op.op_type + op.domain for op in self.ops])
            "".join(chain.from_iterable(op.input for op in self.ops))
            "".join(chain.from_iterable(op.output for op in self.ops))
            "".join(self.attribute_names)
        except TypeError:
            return False
        return True

    def __iter__(self):  # noqa: ANN204 - the fields in the order the old check read them
        names = iter(self.attribute_names)
        for op in self.ops:
            yield from (op.name, op.op_type, op.domain, *op.input, *op.output)
            for _ in op.proto.attribute:
                yield next(names)


class Layout:
    """The binding-free facts of one parsed top graph (module docstring)."""

    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops
        self.has_if = any(op.op_type == "If" and op.domain in ("", "ai.onnx") and op.input
                          for op in ops)
        self._order: list[int] | None = None
        self._order_error: ModelLoadError | None = None
        self._constants_error: Any = _UNSET
        self._typed: dict[tuple, Mapping[str, Any]] = {}
        self._raw: dict[tuple[bytes, ...], dict[str, object]] = {}
        self.names: list[str] | None = None  # unique node names, in topological order
        self.ir_nodes: list[Any] = []  # the IR Node at each topological position (or None)
        self.inference_memo: dict[tuple, tuple] = {}  # memlint.frontends.onnx_infer
        self.nodes_bytes: bytes | None = None  # the nodes in topological order, serialized
        # memlint.frontends.onnx_blocks: the repeated blocks of the nodes in topological order
        # (None: none), and those nodes without the blocks after the first, serialized
        self.blocks: Any = None
        self.blocks_known = False
        self.reduced: tuple[list[Op], bytes] | None = None
        self.folded_positions: tuple[tuple[int, ...], Mapping[str, str]] | None = None

    def order(self, compute: Callable[[], list[int]]) -> list[int]:
        """The topological order (compute() once; an error it raised is raised again)."""
        if self._order_error is not None:
            raise self._order_error
        if self._order is None:
            try:
                self._order = compute()
            except ModelLoadError as exc:
                self._order_error = exc
                raise
        return self._order

    def check_constants(self, check: Callable[[list[Op]], None]) -> None:
        """check(ops) once (it raises for a corrupt Constant); raise its error on every call."""
        if self._constants_error is _UNSET:
            try:
                check(self.ops)
                self._constants_error = None
            except ModelLoadError as exc:
                self._constants_error = exc
        if self._constants_error is not None:
            raise self._constants_error

    def raw_attributes(self, op: Op, read: Callable[[Any], dict[str, object]]) -> dict:
        """read(op) (a node's attributes as Python values), once per distinct attribute set."""
        found = self._raw.get(op.attr_key)
        if found is None:
            found = self._raw[op.attr_key] = read(op)
        return found

    def typed_attributes(self, op: Op, read: Callable[[Any], dict[str, object]]) -> Mapping:
        """MappingProxyType(read(op)) (the attributes its op's schema types), one object per
        distinct (op, attributes): identical layers share it."""
        key = (op.op_type, op.domain, op.attr_key)
        found = self._typed.get(key)
        if found is None:
            found = self._typed[key] = MappingProxyType(read(op))
        return found


def utf8_error(fields: Any, path: Path) -> ModelLoadError | None:
    """The error for the first name that protobuf handed back as bytes (invalid UTF-8)."""
    if isinstance(fields, _NodeFields) and fields.all_text():
        return None
    for field in fields:
        if type(field) is not str and not isinstance(field, str):
            text = field.decode("utf-8", "replace") if isinstance(field, bytes) else str(field)
            return ModelLoadError(f"{path}: the name {text!r} is not UTF-8 text (a corrupt file)")
    return None


__all__ = ["Layout", "Op", "op_of", "read_ops", "utf8_error"]
