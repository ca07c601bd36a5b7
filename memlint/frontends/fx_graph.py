"""torch frontend, second half: an aten graph (with fake-tensor example values) -> ir.Model.

`Builder` walks the graph once: values from the fake tensors (symbolic dims sized by `Dims`),
nodes from the aten -> ONNX op table (memlint.frontends.fx_ops), file:line of the innermost user
frame on each node. memlint.frontends.fx captures the graph and calls it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import operator
import os
import re
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import fx
from torch.utils import _pytree as pytree

from memlint.errors import DimError
from memlint.frontends.fx_ops import Call, Emit, lowering_of
from memlint.frontends.onnx import KV_NAME, KV_VIEWS, NON_KV_DTYPES
from memlint.ir import (
    IN_PLACE,
    DimBinding,
    DType,
    Graph,
    Model,
    Node,
    SourceLocation,
    Value,
    ValueKind,
)

log = logging.getLogger("memlint.frontends.fx")

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


@dataclass(frozen=True)
class Input:
    """How a graph placeholder enters the IR: its display name and kind (None: by its name)."""

    name: str
    kind: ValueKind | None = None


# --- the IR builder ---------------------------------------------------------------------------


class Builder:
    """One pass over an aten graph: values from the fake tensors, nodes from the op table."""

    def __init__(
        self, gm: fx.GraphModule, inputs: Mapping[str, Input], binding: Dims,
        in_place: frozenset[str] = frozenset(),
    ) -> None:  # fmt: skip
        # fx nodes whose result writes back into an input: a scatter among them is in place
        self.in_place = in_place
        self.gm = gm
        self.inputs = inputs
        self.dims = binding
        self.values: dict[str, Value] = {}
        self.nodes: list[Node] = []
        self.names: dict[fx.Node, str] = {}  # fx node -> its IR value name
        self.graph_inputs: list[str] = []
        self.used: dict[str, int] = {}
        self.taken = {n.name for n in gm.graph.nodes}  # fx names, which name the IR values
        self.total = self.resolved = 0
        self.origins: dict[str, list[str]] = {}  # fx node name -> the IR nodes it became

    def model(self, label: str, capture: str) -> Model:
        outputs: list[str] = []
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "get_attr":
                self._get_attr(node)
            elif node.op == "output":
                outputs = [self.names[n] for n in pytree.tree_leaves(node.args) if n in self.names]
            elif node.op == "call_function" and node.target is operator.getitem:
                self._getitem(node)
            else:
                self._call(node)
        graph = Graph(
            name=label,
            nodes=tuple(self.nodes),
            values=MappingProxyType(self.values),
            inputs=tuple(self.graph_inputs),
            outputs=tuple(outputs),
        )
        self.dims.check()
        return Model(
            graph=graph,
            source=label,
            format="fx",
            producer=f"torch {torch.__version__}",
            dims=self.dims.bindings,
            tensors_total=self.total,
            tensors_resolved=self.resolved,
            metadata=MappingProxyType({"capture": capture}),
        )

    def _placeholder(self, node: fx.Node) -> None:
        val = value_of(node)
        if not isinstance(val, torch.Tensor):
            return
        spec = self.inputs.get(node.name, Input(node.name))
        if spec.name != node.name and (spec.name in self.taken or spec.name in self.values):
            spec = Input(node.name, spec.kind)  # its own name would clash with another tensor
        self.dims.label_inputs(spec.name, val)
        kind = spec.kind
        if kind is None:
            kv = KV_NAME.search(spec.name) and _dtype(val.dtype) not in NON_KV_DTYPES
            kind = ValueKind.KV_CACHE if kv else ValueKind.ACTIVATION
        value = self._add(spec.name, val, kind, count=kind is not ValueKind.WEIGHT)
        self.names[node] = value.name
        if kind is not ValueKind.WEIGHT:
            self.graph_inputs.append(value.name)

    def _get_attr(self, node: fx.Node) -> None:
        target = str(node.target)
        val = value_of(node)
        if val is None:
            attr: Any = self.gm
            for part in target.split("."):
                attr = getattr(attr, part, None)
            val = attr
        if isinstance(val, torch.Tensor):
            self.names[node] = self._add(target, val, ValueKind.WEIGHT, count=False).name

    def _getitem(self, node: fx.Node) -> None:
        """A result of a multi-output call: its value was made with the call; else a source."""
        if node in self.names or not isinstance(value_of(node), torch.Tensor):
            return
        self.names[node] = self._add(node.name, value_of(node), ValueKind.ACTIVATION).name

    def _call(self, node: fx.Node) -> None:
        results = _results(node)
        if not any(results):
            return  # asserts, size arithmetic, vmap bookkeeping: no tensor, no node
        for out, _ in results:
            if out:
                self.names.setdefault(_fx_of(node, out), out)
        call = Call(node, self._name_of, tuple(out for out, _ in results))
        lower = lowering_of(node.target) if node.op == "call_function" else None
        try:
            emits = lower(call) if lower is not None else None
        except Exception as exc:  # noqa: BLE001 - an odd call form: keep it, unmodelled
            log.warning("%s (%s): not mapped, kept unmodelled (%s)", node.name, node.target, exc)
            call.new_tensors.clear()
            emits = None
        if emits is None:
            domain, op_type = _unmapped(node)
            emits = [Emit(op_type, call.all_tensors(), call.outputs, domain=domain)]
        made = {new.name: new for new in call.new_tensors}
        vals = {out: val for out, val in results if out}
        base = self._node_name(node)
        source = source_location(node.meta.get("stack_trace"))
        made_nodes = self.origins.setdefault(node.name, [])
        for emit in emits:
            kind = self._kind(emit)
            if node.name in self.in_place and emit.op_type in _SCATTERS and emit.inputs:
                emit = dataclasses.replace(emit, attributes={**emit.attributes, IN_PLACE: 1})
                data = self.values.get(emit.inputs[0])
                kind = data.kind if data is not None else kind  # the buffer itself
            for out in emit.outputs:
                if out and out not in self.values:
                    if out in made:
                        meta = torch.empty(made[out].shape, dtype=made[out].dtype, device="meta")
                        self._add(out, meta, kind)
                    elif out in vals:
                        self._add(out, vals[out], kind)
            made_nodes.append(f"{base}/{emit.suffix}" if emit.suffix else base)
            self.nodes.append(
                Node(
                    name=made_nodes[-1],
                    op_type=emit.op_type,
                    domain=emit.domain,
                    inputs=emit.inputs,
                    outputs=emit.outputs,
                    attributes=MappingProxyType(dict(emit.attributes)),
                    source=source,
                )
            )

    def _name_of(self, node: fx.Node) -> str:
        return self.names.get(node, node.name)

    def _kind(self, emit: Emit) -> ValueKind:
        """A view of the KV cache is the cache; anything else made from it (a cat with the new
        tokens, a repeat_kv expand, a transpose, a cast) is a copy, an activation, as for ONNX
        (memlint.analysis.kv_copies finds the copies again). All-weight (constant) inputs give a
        weight; else an activation."""
        ins = [self.values[n] for n in emit.inputs if n in self.values]
        if ins and ins[0].kind is ValueKind.KV_CACHE and not emit.domain and (
            emit.op_type in KV_VIEWS or emit.op_type == "Dropout"
        ):
            return ValueKind.KV_CACHE
        if ins and len(ins) == len([n for n in emit.inputs if n]) and all(
            v.kind is ValueKind.WEIGHT for v in ins
        ):
            return ValueKind.WEIGHT
        return ValueKind.ACTIVATION

    def _add(self, name: str, val: torch.Tensor, kind: ValueKind, count: bool = True) -> Value:
        shape = tuple(self.dims.size(d) for d in val.shape)
        value = Value(name, shape, _dtype(val.dtype), kind)
        self.values[name] = value
        if count:
            self.total += 1
            self.resolved += value.is_resolved
        return value

    def _node_name(self, node: fx.Node) -> str:
        """`module.path/op`: names that differ across identical layers only in their numbers, so
        findings on repeated layers group; a repeat within one module gets _1, _2, ..."""
        target = node.target
        op_name = getattr(target, "_opname", None) or getattr(target, "__name__", str(target))
        path = module_path(node.meta.get("nn_module_stack"))
        base = f"{path}/{op_name}" if path else op_name
        name, count = base, self.used.get(base, 0)
        while name in self.used:
            count += 1
            name = f"{base}_{count}"
        self.used[base] = count
        self.used[name] = 0
        return name


_SCATTERS = frozenset({"ScatterND", "ScatterElements", "Scatter"})


class Dims:
    """Sizes of fake-tensor dims: ints as they are; a symbolic dim (a program exported with
    dynamic shapes) from `dims`, by its symbol ("s0") or by the first input axis that has it
    ("past_key[2]"), else its example value, recorded as assumed."""

    def __init__(
        self, dims: Mapping[str, int], strict: bool, defaults: Mapping[str, int] | None = None
    ) -> None:
        self.given = {**(defaults or {}), **dims}
        self.required = set(dims)  # names the user gave: each must name a dim of the graph
        self.strict = strict
        self.labels: dict[str, str] = {}  # symbol -> "input[axis]"
        self.used: dict[str, DimBinding] = {}

    @property
    def bindings(self) -> tuple[DimBinding, ...]:
        return tuple(self.used.values())

    def label_inputs(self, name: str, val: torch.Tensor) -> None:
        for axis, dim in enumerate(val.shape):
            expr = getattr(getattr(dim, "node", None), "expr", None)
            if expr is not None and expr.is_Symbol:
                self.labels.setdefault(str(expr), f"{name}[{axis}]")

    def size(self, dim: Any) -> int | None:
        if isinstance(dim, int):
            return dim
        node = getattr(dim, "node", None)
        expr = getattr(node, "expr", None)
        if expr is None:
            return None
        values = {}
        for symbol in expr.free_symbols:
            label = self.labels.get(str(symbol), str(symbol))
            given = self.given.get(label, self.given.get(str(symbol)))
            if given is None:
                env = node.shape_env
                given = env.backed_var_to_val.get(symbol) if env is not None else None
                if given is None:
                    return None
                self.used.setdefault(label, DimBinding(label, int(given), assumed=True))
            else:
                self.used.setdefault(label, DimBinding(label, int(given), assumed=False))
            values[symbol] = int(given)
        return int(expr.subs(values))

    def check(self) -> None:
        known = set(self.labels) | set(self.labels.values()) | set(self.used)
        unknown = sorted(self.required - known)
        if unknown:
            listed = ", ".join(sorted(self.labels.values())) or (
                "none: a module is linted at the shapes of its example inputs"
            )
            raise DimError(f"--dim {', '.join(unknown)}: no such dim in the model (its dims: "
                           f"{listed})")  # fmt: skip
        assumed = [b.name for b in self.used.values() if b.assumed]
        if self.strict and assumed:
            flags = " ".join(f"--dim {n}=N" for n in assumed)
            raise DimError(f"symbolic dims left at their example values: {flags}")


# --- helpers ----------------------------------------------------------------------------------


def value_of(node: fx.Node) -> Any:
    """The node's example value (a fake tensor, a tuple of them, a SymInt, ...), or None."""
    meta = node.meta
    if "val" in meta:
        return meta["val"]
    if "example_value" in meta:
        return meta["example_value"]
    tm = meta.get("tensor_meta")
    if tm is not None and hasattr(tm, "shape"):
        return torch.empty_strided(tm.shape, tm.stride, dtype=tm.dtype, device="meta")
    return None


def _results(node: fx.Node) -> list[tuple[str, Any]]:
    """(IR value name, example tensor) per result of a call; "" for a non-tensor result. A tuple
    result is named by the getitem that reads it, else `name.i`."""
    val = value_of(node)
    if isinstance(val, torch.Tensor):
        return [(node.name, val)]
    if not isinstance(val, (tuple, list)):
        return []
    readers = {
        u.args[1]: u.name for u in node.users
        if u.op == "call_function" and u.target is operator.getitem and isinstance(u.args[1], int)
    }  # fmt: skip
    return [
        (readers.get(i, f"{node.name}.{i}"), v) if isinstance(v, torch.Tensor) else ("", None)
        for i, v in enumerate(val)
    ]


def _fx_of(node: fx.Node, out: str) -> fx.Node:
    """The fx node whose name is `out`: the call itself or the getitem reading one result."""
    if out == node.name:
        return node
    return next((u for u in node.users if u.name == out), node)


def _unmapped(node: fx.Node) -> tuple[str, str]:
    """(domain, op_type) of a call the table does not map: aten::foo, or the callable's name."""
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return target.namespace, target._opname
    if isinstance(target, torch._ops.HigherOrderOperator):
        return "higher_order", target.name()
    if node.op != "call_function":
        return "python", f"{node.op}:{target}"
    return "python", getattr(target, "__name__", str(target))


_DTYPES = {d.label: d for d in DType}


def _dtype(dtype: torch.dtype) -> DType:
    label = str(dtype).removeprefix("torch.").replace("_", "")
    return _DTYPES.get(label, DType.UNKNOWN)


def module_path(stack: Mapping[str, tuple[str, Any]] | None) -> str:
    """The innermost module's qualified name (dynamo's "L['self'].h[0]" spelled "h.0")."""
    if not stack:
        return ""
    path = str(list(stack.values())[-1][0])
    path = re.sub(r"^L\[['\"][^'\"]*['\"]\]", "", path)
    path = re.sub(r"\._modules\[['\"]([^'\"]+)['\"]\]", r".\1", path)
    path = re.sub(r"\[['\"]?([^'\"\]]+)['\"]?\]", r".\1", path)
    return path.strip(".")


def source_location(stack_trace: str | None) -> SourceLocation | None:
    """The innermost frame of a node's stack trace that is user code (not torch, memlint or the
    standard library; site-packages such as transformers count as user code)."""
    if not stack_trace:
        return None
    for file, line in reversed(_FRAME.findall(stack_trace)):
        if _is_user_file(file):
            return SourceLocation(file, int(line))
    return None


@functools.lru_cache(maxsize=4096)
def _is_user_file(path: str) -> bool:
    if path.startswith("<"):
        return False
    full = os.path.abspath(path)
    if any(full.startswith(d) for d in _internal_dirs()):
        return False
    return not (
        full.startswith(_stdlib_dir()) and "site-packages" not in full
        and "dist-packages" not in full
    )  # fmt: skip


@functools.lru_cache(maxsize=1)
def _internal_dirs() -> tuple[str, ...]:
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # memlint/
    return (os.path.dirname(os.path.abspath(torch.__file__)) + os.sep, package + os.sep)


@functools.lru_cache(maxsize=1)
def _stdlib_dir() -> str:
    return os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep


__all__ = ["Builder", "Dims", "Input", "module_path", "source_location", "value_of"]
