"""torch frontend: nn.Module / fx.GraphModule / ExportedProgram / .pt2 -> ir.Model, no ONNX.

1. Capture an aten graph with fake tensors (shapes and dtypes only; no weight is read, so a module
   built on the meta device lints): torch.export.export(strict=False), then
   run_decompositions({}) to the functional aten IR (high-level ops such as linear, layer_norm
   and scaled_dot_product_attention stay whole). When export fails, fall back to
   torch.fx.symbolic_trace, lowered to aten by propagating fake tensors through it (make_fx),
   and log why.
2. Lower every aten call onto an ONNX op (memlint.frontends.fx_ops), so the cost formulas count it
   with the ONNX conventions; what the table cannot map stays an unmodelled "aten" node.
3. Parameters, buffers and constants are weights; inputs named like a KV cache
   (frontends.onnx.KV_NAME) are KV-cache tensors, and so is what passes them on.
4. Every node carries the file:line of the innermost user frame of its stack trace (frames in
   torch, memlint and the standard library are skipped; transformers is user code).

torch is imported here, and this module is imported only for torch sources: linting an ONNX file
never imports torch.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
import operator
import os
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import fx
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.export import ExportedProgram
from torch.fx.experimental.symbolic_shapes import ShapeEnv
from torch.utils import _pytree as pytree

import memlint
from memlint.errors import DimError, ModelLoadError
from memlint.frontends.fx_ops import Call, Emit, lowering_of
from memlint.frontends.onnx import KV_NAME, KV_PASSTHROUGH, KV_SCALING, NON_KV_DTYPES
from memlint.ir import DimBinding, DType, Graph, Model, Node, SourceLocation, Value, ValueKind

log = logging.getLogger(__name__)

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_WEIGHT_SPECS = frozenset({"PARAMETER", "BUFFER", "CONSTANT_TENSOR"})
# dynamo's names for lifted module state: L_self_modules_h_modules_0_parameters_weight_
_DYNAMO_STATE = re.compile(r"_(?:modules|parameters|buffers)_")


@dataclass(frozen=True)
class TorchSource:
    """A torch object to lint with the inputs to capture it with (what load_factory returns)."""

    obj: Any
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class _Input:
    """How a graph placeholder enters the IR: its display name and kind (None: by its name)."""

    name: str
    kind: ValueKind | None = None


# --- entry points -----------------------------------------------------------------------------


def load_torch(
    obj: Any,
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
    *,
    dims: Mapping[str, int] | None = None,
    default_dims: Mapping[str, int] | None = None,
    strict_dims: bool = False,
) -> Model:
    """An nn.Module (with example inputs), an fx.GraphModule, an ExportedProgram or a
    TorchSource -> ir.Model. Raises ModelLoadError with one clear line when capture fails.

    A module is captured at the shapes of its example inputs; `dims` binds the symbolic dims of
    a program exported with dynamic shapes (naming one it does not have is an error),
    `default_dims` binds them where the program has them."""
    label = ""
    if isinstance(obj, TorchSource):
        label = obj.label
        obj, example_inputs, example_kwargs = obj.obj, obj.args, dict(obj.kwargs)
    label = label or type(obj).__name__
    binding = _Dims(dims or {}, strict_dims, default_dims)
    if isinstance(obj, ExportedProgram):
        return _from_program(obj, label, "torch.export", binding)
    if not isinstance(obj, torch.nn.Module):
        raise ModelLoadError(
            f"cannot lint a {type(obj).__name__}: expected an ONNX file, a .pt2 file, a "
            "torch.nn.Module, a torch.fx.GraphModule or a torch.export.ExportedProgram"
        )
    args, kwargs = _example(example_inputs, example_kwargs)
    if isinstance(obj, fx.GraphModule) and args is None and not kwargs:
        if _is_aten_graph(obj):
            inputs = {n.name: _Input(n.name) for n in obj.graph.nodes if n.op == "placeholder"}
            return _Builder(obj, inputs, binding).model(label, "torch.fx GraphModule (aten)")
        args = _placeholder_examples(obj)
    if args is None:
        raise ModelLoadError(
            f"{label}: a module needs example inputs to be captured (example_inputs=(tensor, ...) "
            "or --example-inputs package.module:make_inputs)"
        )
    return _capture(obj, args, kwargs, label, binding)


def load_pt2(
    path: str | os.PathLike[str],
    *,
    dims: Mapping[str, int] | None = None,
    default_dims: Mapping[str, int] | None = None,
    strict_dims: bool = False,
) -> Model:
    """A program saved with torch.export.save; dims as for load_torch. Nothing in the file is
    unpickled (see _no_unpickling): a .pt2 cannot run code."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    try:
        with warnings.catch_warnings(), _no_unpickling():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure to read is a bad input file
        reason = _line(exc)
        raise ModelLoadError(f"{path}: not a readable torch.export program ({reason})") from None
    binding = _Dims(dims or {}, strict_dims, default_dims)
    return _from_program(program, str(path), "torch.export.load", binding)


@contextlib.contextmanager
def _no_unpickling() -> Iterator[None]:
    """torch.export.load unpickles some archive entries (weights marked use_pickle, opaque
    constants, legacy files) with torch.load(weights_only=False) or pickle.loads, which would
    run code from the file. Inside, every torch.load is weights_only=True and pickle's loaders
    refuse."""
    import pickle

    real_load = torch.load

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("memlint does not unpickle objects from a model file")

    patches = [(torch, "load", weights_only_load), (pickle, "loads", refuse),
               (pickle, "load", refuse), (torch._C, "_pickle_load_obj", refuse)]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches
             if hasattr(owner, name)]
    try:
        for owner, name, value in patches:
            if hasattr(owner, name):
                setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def from_dynamo(gm: fx.GraphModule, example_inputs: Sequence[Any], label: str) -> Model:
    """A graph captured by torch.compile (dynamo): its placeholders are the user inputs and the
    lifted parameters and buffers, in the order of `example_inputs`."""
    inputs = []
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    # a dynamic graph takes its sizes as SymInts: lint it at their example values
    example_inputs = [_concrete(v) for v in example_inputs]
    for node, example in zip(placeholders, example_inputs):
        name = str(node.target)
        state = _DYNAMO_STATE.search(name) is not None
        if state or isinstance(example, torch.nn.Parameter):
            parts = _DYNAMO_STATE.split(name.strip("_"))
            inputs.append(_Input(".".join(parts[1:]) or name, ValueKind.WEIGHT))
        else:
            inputs.append(_Input(re.sub(r"^[Ll]_", "", name).strip("_")))
    return _capture(gm, tuple(example_inputs), {}, label, _Dims({}, False), inputs)


def load_factory(spec: str, example_inputs: str | None = None) -> TorchSource:
    """Import "package.module:attr" (called when callable) for the model, and the example inputs
    from another "package.module:attr" that returns args, or (args, kwargs)."""
    obj = _import(spec, "model")
    if callable(obj) and not isinstance(obj, (torch.nn.Module, ExportedProgram)):
        obj = _call(obj, spec)
    if not isinstance(obj, (torch.nn.Module, ExportedProgram)):
        raise ModelLoadError(
            f"{spec}: gave a {type(obj).__name__}, not a torch.nn.Module or ExportedProgram"
        )
    if example_inputs is None:
        needs = isinstance(obj, torch.nn.Module) and not isinstance(obj, fx.GraphModule)
        if needs:
            raise ModelLoadError(
                f"{spec}: a module needs --example-inputs package.module:make_inputs"
            )
        return TorchSource(obj, label=spec)
    made = _import(example_inputs, "example inputs")
    if callable(made) and not isinstance(made, torch.Tensor):
        made = _call(made, example_inputs)
    args, kwargs = _split_inputs(made, example_inputs)
    return TorchSource(obj, args, kwargs, label=spec)


# --- capture ----------------------------------------------------------------------------------


def _capture(
    module: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    label: str,
    binding: _Dims,
    user_inputs: Sequence[_Input] | None = None,
) -> Model:
    """torch.export first; symbolic_trace + fake-tensor propagation when export fails."""
    training = module.training
    module.eval()  # memlint lints inference: dropout off, batch norm on running stats
    try:
        with _fake_meta_state(module) as mode, warnings.catch_warnings():
            if mode is not None:  # no real weights: the example inputs become fake too
                args, kwargs = pytree.tree_map_only(
                    torch.Tensor, lambda t: _fake(mode, t), (args, kwargs)
                )
            warnings.simplefilter("ignore")
            try:
                program = torch.export.export(module, args, kwargs, strict=False)
            except Exception as exc:  # noqa: BLE001 - any export failure: fall back, saying why
                reason = _line(exc)
                log.warning(
                    "%s: torch.export failed (%s); falling back to torch.fx.symbolic_trace with "
                    "shapes propagated on fake tensors", label, reason,
                )  # fmt: skip
                return _fallback(module, args, kwargs, label, binding, reason, user_inputs)
            return _from_program(program, label, "torch.export", binding, user_inputs)
    finally:
        module.train(training)


def _from_program(
    program: ExportedProgram,
    label: str,
    capture: str,
    binding: _Dims,
    user_inputs: Sequence[_Input] | None = None,
) -> Model:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = program.run_decompositions({})
    except Exception as exc:  # noqa: BLE001 - keep the training IR, which maps as well
        log.info("%s: run_decompositions failed (%s); linting the graph as exported", label, exc)
    inputs: dict[str, _Input] = {}
    users = iter(user_inputs or ())
    for spec in program.graph_signature.input_specs:
        name = getattr(spec.arg, "name", None)
        if name is None:
            continue
        if spec.kind.name in _WEIGHT_SPECS:
            inputs[name] = _Input(spec.target or name, ValueKind.WEIGHT)
        elif spec.kind.name == "USER_INPUT":
            inputs[name] = next(users, None) or _Input(name)
    return _Builder(program.graph_module, inputs, binding).model(label, capture)


def _fallback(
    module, args, kwargs, label: str, binding: _Dims, reason: str,
    user_inputs: Sequence[_Input] | None = None,
) -> Model:  # fmt: skip
    try:
        traced, inputs = _symbolic_trace(module, args, kwargs)
        lowered, names = _lower(traced, inputs)
    except Exception as exc:  # noqa: BLE001 - both captures failed: one clear line
        raise ModelLoadError(
            f"{label}: torch.export failed ({reason}); the torch.fx.symbolic_trace fallback "
            f"failed too ({_line(exc)})"
        ) from None
    placeholders = [n.name for n in lowered.graph.nodes if n.op == "placeholder"]
    given = list(user_inputs or ())
    given += [_Input(name) for name in list(inputs)[len(given):]]
    labels = [_Input(n, ValueKind.WEIGHT) for n in names]
    labels += [spec for spec, v in zip(given, inputs.values()) if isinstance(v, torch.Tensor)]
    specs = dict(zip(placeholders, labels))
    capture = f"torch.fx.symbolic_trace (torch.export failed: {reason})"
    return _Builder(lowered, specs, binding).model(label, capture)


def _symbolic_trace(module, args, kwargs) -> tuple[fx.GraphModule, dict[str, Any]]:
    """The module traced with stack traces; non-tensor arguments specialised to their values.
    Also the forward's arguments by name, in the order of the graph's placeholders. A
    GraphModule is a traced graph already: its placeholders take the arguments in order."""
    if isinstance(module, fx.GraphModule) and not kwargs:
        placeholders = [n for n in module.graph.nodes if n.op == "placeholder"]
        return module, {str(n.target): a for n, a in zip(placeholders, args)}
    bound = inspect.signature(module.forward).bind(*args, **kwargs)
    bound.apply_defaults()
    concrete = {k: v for k, v in bound.arguments.items() if not _holds_tensor(v)}
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    graph = tracer.trace(module, concrete_args=concrete)
    return fx.GraphModule(tracer.root, graph), dict(bound.arguments)


def _lower(traced: fx.GraphModule, named: dict[str, Any]) -> tuple[fx.GraphModule, list[str]]:
    """Run the traced graph on fake tensors under make_fx: aten ops with their shapes, and the
    traced nodes' stack traces kept. Parameters and buffers come first, named."""
    from torch.fx.experimental.proxy_tensor import make_fx

    inputs = list(named.values())

    class _Run(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.traced = traced

        def forward(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
            it = iter(tensors)
            full = [next(it) if isinstance(v, torch.Tensor) else v for v in inputs]
            out = fx.Interpreter(self.traced).run(*full)
            return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]

    runner = _Run()
    state = {**dict(runner.named_parameters()), **dict(runner.named_buffers())}
    names = list(state)

    def run(flat_state: list[torch.Tensor], *tensors: torch.Tensor) -> list[torch.Tensor]:
        return torch.func.functional_call(runner, dict(zip(names, flat_state)), tensors)

    tensors = [v for v in inputs if isinstance(v, torch.Tensor)]
    fakes = [t for t in (*state.values(), *tensors) if isinstance(t, FakeTensor)]
    mode = fakes[0].fake_mode if fakes else None  # a meta module's fake state
    tracing = "fake" if mode is None else "real"
    with fx.traceback.preserve_node_meta(), mode or contextlib.nullcontext():
        lowered = make_fx(run, tracing_mode=tracing, pre_dispatch=True)(
            list(state.values()), *tensors
        )
    return lowered, [n.removeprefix("traced.") for n in names]


# --- the IR builder ---------------------------------------------------------------------------


class _Builder:
    """One pass over an aten graph: values from the fake tensors, nodes from the op table."""

    def __init__(self, gm: fx.GraphModule, inputs: Mapping[str, _Input], binding: _Dims) -> None:
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
        val = _val(node)
        if not isinstance(val, torch.Tensor):
            return
        spec = self.inputs.get(node.name, _Input(node.name))
        if spec.name != node.name and (spec.name in self.taken or spec.name in self.values):
            spec = _Input(node.name, spec.kind)  # its own name would clash with another tensor
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
        val = _val(node)
        if val is None:
            attr: Any = self.gm
            for part in target.split("."):
                attr = getattr(attr, part, None)
            val = attr
        if isinstance(val, torch.Tensor):
            self.names[node] = self._add(target, val, ValueKind.WEIGHT, count=False).name

    def _getitem(self, node: fx.Node) -> None:
        """A result of a multi-output call: its value was made with the call; else a source."""
        if node in self.names or not isinstance(_val(node), torch.Tensor):
            return
        self.names[node] = self._add(node.name, _val(node), ValueKind.ACTIVATION).name

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
        for emit in emits:
            kind = self._kind(emit)
            for out in emit.outputs:
                if out and out not in self.values:
                    if out in made:
                        meta = torch.empty(made[out].shape, dtype=made[out].dtype, device="meta")
                        self._add(out, meta, kind)
                    elif out in vals:
                        self._add(out, vals[out], kind)
            self.nodes.append(
                Node(
                    name=f"{base}/{emit.suffix}" if emit.suffix else base,
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
        """KV cache passed on, all-weight (constant) inputs, or an activation (as for ONNX)."""
        ins = [self.values[n] for n in emit.inputs if n in self.values]
        kv = [v for v in ins if v.kind is ValueKind.KV_CACHE]
        if kv and not emit.domain:
            if emit.op_type in KV_PASSTHROUGH or emit.op_type in {"Identity", "Dropout"}:
                return ValueKind.KV_CACHE
            others = [v for v in ins if v.kind is not ValueKind.KV_CACHE]
            scaling = all(v.kind is ValueKind.WEIGHT or v.numel == 1 for v in others)
            if emit.op_type in KV_SCALING and scaling:
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


class _Dims:
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


def _val(node: fx.Node) -> Any:
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
    val = _val(node)
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


def _is_aten_graph(gm: fx.GraphModule) -> bool:
    """Already lowered to aten with example values (make_fx, aot_autograd, export)?"""
    for node in gm.graph.nodes:
        if node.op in ("call_module", "call_method"):
            return False
        if node.op == "call_function":
            aten = isinstance(node.target, torch._ops.OpOverload) or node.target is operator.getitem
            if not aten or _val(node) is None:
                return False
    return True


def _placeholder_examples(gm: fx.GraphModule) -> tuple[Any, ...]:
    examples = []
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        val = _val(node)
        if not isinstance(val, torch.Tensor):
            raise ModelLoadError(
                f"{type(gm).__name__}: input {node.name!r} has no example value; pass "
                "example_inputs"
            )
        shape = [int(d) for d in val.shape]
        examples.append(torch.empty(shape, dtype=val.dtype, device="meta"))
    return tuple(examples)


def _example(inputs: Any, kwargs: Mapping[str, Any] | None) -> tuple[tuple | None, dict]:
    if inputs is None:
        return None, dict(kwargs or {})
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), dict(kwargs or {})
    return (inputs,), dict(kwargs or {})


def _split_inputs(made: Any, spec: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """args, or (args, kwargs), or kwargs, or one tensor."""
    if isinstance(made, dict):
        return (), dict(made)
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[1], dict) and isinstance(
        made[0], (tuple, list)
    ):
        return tuple(made[0]), dict(made[1])
    if isinstance(made, (tuple, list)):
        return tuple(made), {}
    if isinstance(made, torch.Tensor):
        return (made,), {}
    raise ModelLoadError(
        f"{spec}: gave a {type(made).__name__}; expected a tuple of args or (args, kwargs)"
    )


def _import(spec: str, what: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelLoadError(f"{spec!r}: expected the {what} as 'package.module:attribute'")
    if os.getcwd() not in sys.path:  # like uvicorn: modules of the current project import
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - user code: report any import failure
        raise ModelLoadError(f"{spec}: cannot import {module_name!r} ({_line(exc)})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"{spec}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _call(factory: Any, spec: str) -> Any:
    try:
        return factory()
    except Exception as exc:  # noqa: BLE001 - user code: report any failure in one line
        raise ModelLoadError(f"{spec}: raised {type(exc).__name__}: {_line(exc)}") from None


def _concrete(value: Any) -> Any:
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        hint = value.node.hint
        return hint if hint is not None else value
    return value


def _holds_tensor(value: Any) -> bool:
    return any(isinstance(t, torch.Tensor) for t in pytree.tree_leaves(value))


@contextlib.contextmanager
def _fake_meta_state(module: torch.nn.Module) -> Iterator[FakeTensorMode | None]:
    """While capturing, the module's meta-device parameters and buffers are fake CPU tensors
    (shapes without storage, so a 7B model costs nothing; "cpu" because model code such as
    torch.autocast(device_type=x.device.type) refuses "meta"). Yields the fake mode, or None
    when nothing is on the meta device."""
    slots = [
        (table, name, tensor)
        for sub in module.modules()
        for table in (sub._parameters, sub._buffers)
        for name, tensor in table.items()
        if tensor is not None and tensor.device.type == "meta"
    ]
    if not slots:
        yield None
        return
    mode = FakeTensorMode(shape_env=ShapeEnv())
    try:
        for table, name, tensor in slots:
            fake = _fake(mode, tensor)
            if isinstance(tensor, torch.nn.Parameter):
                fake = torch.nn.Parameter(fake, requires_grad=tensor.requires_grad)
            table[name] = fake
        yield mode
    finally:
        for table, name, tensor in slots:
            table[name] = tensor


def _fake(mode: FakeTensorMode, tensor: torch.Tensor) -> torch.Tensor:
    if isinstance(tensor, FakeTensor):
        return tensor
    if tensor.device.type == "meta":
        return FakeTensor(mode, tensor.detach(), torch.device("cpu"))
    return mode.from_tensor(tensor)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= 240 else first[:237] + "..."


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
    return tuple(
        os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (torch, memlint)
    )


@functools.lru_cache(maxsize=1)
def _stdlib_dir() -> str:
    return os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep


__all__ = ["TorchSource", "from_dynamo", "load_factory", "load_pt2", "load_torch"]
