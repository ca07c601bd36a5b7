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

Capture (1) is here; building the IR (2-4) is memlint.frontends.fx_graph. torch is imported by
these two modules alone, and they are imported only for torch sources: linting an ONNX file never
imports torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import io
import logging
import operator
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import fx
from torch._subclasses.fake_tensor import FakeTensor
from torch.export import ExportedProgram
from torch.utils import _pytree as pytree

from memlint.errors import ModelLoadError, first_line
from memlint.frontends import fx_cache, fx_decode, fx_moe
from memlint.frontends.fx_fake import fake_meta_state, fake_tensor
from memlint.frontends.fx_graph import Builder, Dims, Input, value_of
from memlint.frontends.torch_logs import kept_logs, logged_error
from memlint.ir import Model, ValueKind

log = logging.getLogger(__name__)

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
class Captured:
    """A captured graph: its IR, and what running it needs (memlint.confirm.torch_run).

    `graph_module` is the aten graph the IR was built from; `origins` maps each of its node
    names to the IR nodes it became. `program` is the torch.export program whose state feeds
    the graph's weight placeholders (None when the graph came from another capture, which
    memlint does not run), and `example` the leaves of the example (args, kwargs).
    """

    model: Model
    graph_module: fx.GraphModule
    origins: Mapping[str, tuple[str, ...]]
    program: ExportedProgram | None = None
    example: tuple[Any, ...] = ()


# --- entry points -----------------------------------------------------------------------------


def capture(
    obj: Any,
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
    *,
    dims: Mapping[str, int] | None = None,
    default_dims: Mapping[str, int] | None = None,
    strict_dims: bool = False,
    moe_routing: str = "expected",
) -> Captured:
    """An nn.Module (with example inputs), an fx.GraphModule, an ExportedProgram or a
    TorchSource -> its graph and IR (`.model`). Raises ModelLoadError with one clear line when
    capture fails.

    A module is captured at the shapes of its example inputs; `dims` binds the symbolic dims of
    a program exported with dynamic shapes (naming one it does not have is an error),
    `default_dims` binds them where the program has them. `moe_routing` is the routing
    mixture-of-experts blocks are captured at (memlint.frontends.fx_moe.ROUTINGS)."""
    label = ""
    if isinstance(obj, TorchSource):
        label = obj.label
        obj, example_inputs, example_kwargs = obj.obj, obj.args, dict(obj.kwargs)
    label = label or type(obj).__name__
    binding = Dims(dims or {}, strict_dims, default_dims)
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
            inputs = {n.name: Input(n.name) for n in obj.graph.nodes if n.op == "placeholder"}
            return _build(obj, inputs, binding, label, "torch.fx GraphModule (aten)")
        args = _placeholder_examples(obj)
    if args is None:
        raise ModelLoadError(
            f"{label}: a module needs example inputs to be captured (example_inputs=(tensor, ...) "
            "or --example-inputs package.module:make_inputs)"
        )
    return _capture(obj, args, kwargs, label, binding, moe_routing=moe_routing)


def capture_pt2(
    path: str | os.PathLike[str],
    *,
    dims: Mapping[str, int] | None = None,
    default_dims: Mapping[str, int] | None = None,
    strict_dims: bool = False,
) -> Captured:
    """A program saved with torch.export.save -> its graph and IR; dims as for capture.
    Nothing in the file is unpickled (see _no_unpickling): a .pt2 cannot run code."""
    program = read_pt2(path)
    binding = Dims(dims or {}, strict_dims, default_dims)
    return _from_program(program, str(path), "torch.export.load", binding)


def read_pt2(path: str | os.PathLike[str]) -> ExportedProgram:
    """The program of a .pt2 file, read without unpickling anything."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    try:  # torch logs a damaged archive's traceback: kept, its error quoted in ours
        with warnings.catch_warnings(), _no_unpickling(), kept_logs() as logs:
            warnings.simplefilter("ignore")
            return torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure to read is a bad input file
        reason = logged_error(logs) or first_line(exc)
        raise ModelLoadError(f"{path}: not a readable torch.export program ({reason})") from None


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
            inputs.append(Input(".".join(parts[1:]) or name, ValueKind.WEIGHT))
        else:
            inputs.append(Input(re.sub(r"^[Ll]_", "", name).strip("_")))
    return _capture(gm, tuple(example_inputs), {}, label, Dims({}, False), inputs).model


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
        if needs and not fx_decode.is_hf_generative(obj):  # memlint builds an HF model's step
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
    binding: Dims,
    user_inputs: Sequence[Input] | None = None,
    moe_routing: str = "expected",
) -> Captured:
    """torch.export first; symbolic_trace + fake-tensor propagation when export fails."""
    training = module.training
    module.eval()  # memlint lints inference: dropout off, batch norm on running stats
    step = contextlib.nullcontext()
    if user_inputs is None and fx_cache.holds_cache(args, kwargs):  # a decode step's cache
        flat = fx_cache.flatten(module.forward, args, kwargs)
        step = fx_cache.flat_forward(module, flat)
        args, kwargs, user_inputs = flat.tensors, {}, [Input(name) for name in flat.names]
    try:
        with fake_meta_state(module) as mode, warnings.catch_warnings(), step, \
                fx_moe.expected_routing(module, moe_routing) as routing, _whole_stacks():
            if mode is not None:  # no real weights: the example inputs become fake too
                args, kwargs = pytree.tree_map_only(
                    torch.Tensor, lambda t: fake_tensor(mode, t), (args, kwargs)
                )
            warnings.simplefilter("ignore")
            try:  # torch prints the graph it had when export fails: keep it off stderr
                with contextlib.redirect_stderr(io.StringIO()):
                    program = torch.export.export(module, args, kwargs, strict=False)
            except Exception as exc:  # noqa: BLE001 - any export failure: fall back, saying why
                reason = first_line(exc)
                captured = _fallback(module, args, kwargs, label, binding, reason, user_inputs)
                log.warning(  # said once the fallback worked (else its error says both)
                    "%s: torch.export failed (%s); captured with torch.fx.symbolic_trace and "
                    "shapes propagated on fake tensors instead", label, reason,
                )  # fmt: skip
                return captured
            example = tuple(pytree.tree_leaves((args, kwargs)))
            captured = _from_program(program, label, "torch.export", binding, user_inputs, example)
            return _noting_routing(captured, routing)
    finally:
        module.train(training)


def _from_program(
    program: ExportedProgram,
    label: str,
    capture: str,
    binding: Dims,
    user_inputs: Sequence[Input] | None = None,
    example: tuple[Any, ...] = (),
) -> Captured:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = program.run_decompositions({})
    except Exception as exc:  # noqa: BLE001 - keep the training IR, which maps as well
        log.info("%s: run_decompositions failed (%s); linting the graph as exported", label, exc)
    inputs: dict[str, Input] = {}
    users = iter(user_inputs or ())
    for spec in program.graph_signature.input_specs:
        name = getattr(spec.arg, "name", None)
        if name is None:
            continue
        if spec.kind.name in _WEIGHT_SPECS:
            inputs[name] = Input(spec.target or name, ValueKind.WEIGHT)
        elif spec.kind.name == "USER_INPUT":
            inputs[name] = next(users, None) or Input(name)
    saved = getattr(program, "example_inputs", None)  # what torch.export recorded, if anything
    if not example and saved is not None:
        example = tuple(pytree.tree_leaves(saved))
    # outputs that write back into an input (index_copy_ into a StaticCache, functionalized)
    mutated = frozenset(getattr(program.graph_signature, "user_inputs_to_mutate", {}) or ())
    return _build(program.graph_module, inputs, binding, label, capture, program, example,
                  mutated)  # fmt: skip


def _noting_routing(captured: Captured, routing: fx_moe.Routing) -> Captured:
    """The captured model with the MoE routing it was captured at in its metadata ("moe")."""
    if not routing.blocks:
        return captured
    model = captured.model
    _, tokens, experts, top_k, run = routing.blocks[0]
    metadata = MappingProxyType({
        **model.metadata, "moe": routing.describe(), "moe.experts": str(experts),
        "moe.top_k": str(top_k), "moe.tokens": str(tokens), "moe.run": str(run),
    })  # fmt: skip
    return dataclasses.replace(captured, model=dataclasses.replace(model, metadata=metadata))


def _fallback(
    module, args, kwargs, label: str, binding: Dims, reason: str,
    user_inputs: Sequence[Input] | None = None,
) -> Captured:  # fmt: skip
    try:
        traced, inputs = _symbolic_trace(module, args, kwargs)
        lowered, names = _lower(traced, inputs)
    except Exception as exc:  # noqa: BLE001 - both captures failed: one clear line
        raise ModelLoadError(
            f"{label}: torch.export failed ({reason}); the torch.fx.symbolic_trace fallback "
            f"failed too ({first_line(exc)}){_next_step(reason)}"
        ) from None
    placeholders = [n.name for n in lowered.graph.nodes if n.op == "placeholder"]
    given = list(user_inputs or ())
    given += [Input(name) for name in list(inputs)[len(given):]]
    labels = [Input(n, ValueKind.WEIGHT) for n in names]
    labels += [spec for spec, v in zip(given, inputs.values()) if isinstance(v, torch.Tensor)]
    specs = dict(zip(placeholders, labels))
    capture = f"torch.fx.symbolic_trace (torch.export failed: {reason})"
    return _build(lowered, specs, binding, label, capture)


def _next_step(reason: str) -> str:
    """What to do about a capture failure, where memlint knows."""
    if "data-dependent" in reason or "nonzero" in reason:
        return (
            ". Next step: the model branches or sizes a tensor on its data (nonzero, .item(), "
            "a loop over a mask); write that part with static shapes or torch.cond, or lint an "
            "ONNX export of the model (docs/torch.md, 'When capture fails')"
        )
    if "Unsupported input type" in reason:
        return (
            ". Next step: pass that input as tensors (a tuple or dict of tensors); "
            "transformers caches are handled (docs/torch.md)"
        )
    return ". Next step: see docs/torch.md, 'When capture fails'"


def _build(
    gm: fx.GraphModule, inputs: Mapping[str, Input], binding: Dims, label: str, how: str,
    program: ExportedProgram | None = None, example: tuple[Any, ...] = (),
    in_place: frozenset[str] = frozenset(),
) -> Captured:
    builder = Builder(gm, inputs, binding, in_place)
    model = builder.model(label, how)
    origins = MappingProxyType({k: tuple(v) for k, v in builder.origins.items()})
    return Captured(model, gm, origins, program, example)


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


# --- helpers ----------------------------------------------------------------------------------


def _is_aten_graph(gm: fx.GraphModule) -> bool:
    """Already lowered to aten with example values (make_fx, aot_autograd, export)?"""
    for node in gm.graph.nodes:
        if node.op in ("call_module", "call_method"):
            return False
        if node.op == "call_function":
            aten = isinstance(node.target, torch._ops.OpOverload) or node.target is operator.getitem
            if not aten or value_of(node) is None:
                return False
    return True


def _placeholder_examples(gm: fx.GraphModule) -> tuple[Any, ...]:
    examples = []
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        val = value_of(node)
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
    except SystemExit as exc:  # user code that exits must not end memlint with its code
        raise ModelLoadError(f"{spec}: importing {module_name!r} called sys.exit({exc.code!r})"
                             ) from None
    except Exception as exc:  # noqa: BLE001 - user code: report any import failure
        raise ModelLoadError(f"{spec}: cannot import {module_name!r} ({first_line(exc)})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"{spec}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _call(factory: Any, spec: str) -> Any:
    try:
        return factory()
    except SystemExit as exc:  # user code that exits must not end memlint with its code
        raise ModelLoadError(f"{spec}: called sys.exit({exc.code!r}) instead of returning"
                             ) from None
    except Exception as exc:  # noqa: BLE001 - user code: report any failure in one line
        raise ModelLoadError(f"{spec}: raised {type(exc).__name__}: {first_line(exc)}") from None


def _concrete(value: Any) -> Any:
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        hint = value.node.hint
        return hint if hint is not None else value
    return value


def _holds_tensor(value: Any) -> bool:
    return any(isinstance(t, torch.Tensor) for t in pytree.tree_leaves(value))


@contextlib.contextmanager
def _whole_stacks() -> Iterator[None]:
    """While inside, torch.export records every frame of a node's stack from the first
    forward on (helpers and nested functions included), not only the frames of functions named
    `forward`, so a node's location is the line that runs it, not the line in forward that
    calls a helper (memlint.frontends.fx_graph.source_location picks the innermost user
    frame). torch's tracers keep forward frames only when `_record_forward_stack_traces_only`
    is set; without that private hook (another torch), locations stay as torch records them."""
    tracer = getattr(fx.proxy, "TracerBase", None)
    real = getattr(tracer, "_filter_traceback_frames", None)
    if real is None:
        yield
        return

    def every_frame(self: Any, summary: Any) -> Any:
        only = getattr(self, "_record_forward_stack_traces_only", False)
        self._record_forward_stack_traces_only = False
        try:
            return real(self, summary)
        finally:
            self._record_forward_stack_traces_only = only

    tracer._filter_traceback_frames = every_frame
    try:
        yield
    finally:
        tracer._filter_traceback_frames = real


__all__ = ["Captured", "TorchSource", "capture", "capture_pt2", "from_dynamo", "load_factory",
           "read_pt2"]
