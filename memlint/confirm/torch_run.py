"""confirm_torch(report, source): run a torch graph eagerly, op by op, and time every node.

The torch counterpart of memlint.confirm.run for reports of torch models (format "fx"):

1. The source is captured again at the report's dims (memlint.frontends.fx.capture), giving the
   aten graph the report was built from and, per graph node, the IR nodes it became. Only a
   graph torch.export captured runs: its program holds the weights that feed the graph.
2. The graph's inputs: the program's parameters, buffers and constants, and the example inputs
   (synthesised from the graph's example values when there are none: normal floats, zero
   integers, true booleans), all moved to the device.
3. `warmup` runs of the graph, then `runs` runs in a torch.fx.Interpreter that times each aten
   call by the wall clock (on CUDA with a device synchronize before and after each call, so a
   node's time is its launch and its kernel), then `runs` plain runs whose median wall-clock time
   is the latency of the graph as written. A node's measured time is the median of its times; a
   graph node that became several IR nodes has its time split over them in proportion to their
   predicted times.

There is no optimised run (torch.compile would compile for minutes and fuse nodes away): the
measurement's optimised latency is None. torch is imported only when a function here runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from memlint.confirm.inputs import ConfirmError
from memlint.confirm.run import Progress, RunCounter, check_spec, spec_notes
from memlint.confirm.verdicts import judge
from memlint.core.measurement import Measurement, NodeMeasurement
from memlint.core.report import Report
from memlint.errors import MemlintError

DEVICES = {None: None, "auto": None, "cpu": "cpu", "cuda": "cuda", "gpu": "cuda"}


def confirm_torch(
    report: Report,
    source: Any,
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
    *,
    runs: int = 10,
    warmup: int = 3,
    device: str | None = None,
    progress: Progress | None = None,
) -> Measurement:
    """Measure the torch graph of `report` (from memlint.lint(source, ...)): `source` is what
    was linted (an nn.Module with `example_inputs`/`example_kwargs`, an ExportedProgram, a
    memlint.frontends.fx.TorchSource, or a .pt2 path). device: None/"auto" (CUDA when torch
    sees a GPU, else the CPU), "cpu" or "cuda". Raises ConfirmError (one line) when the graph
    cannot be run or the spec is for another kind of device."""
    if runs < 1 or warmup < 0:
        raise ConfirmError(f"need at least one timed run and no negative warm-up, got runs={runs}, "
                           f"warmup={warmup}")
    if report.model.format != "fx":
        raise ConfirmError(f"confirm_torch measures torch graphs; this report is of a "
                           f"{report.model.format} model: use memlint.confirm.confirm")
    torch = import_torch()
    target = select_device(torch, device)
    kind = "gpu" if target == "cuda" else "cpu"
    check_spec(report.hardware, kind, f"torch ({target})")
    captured = _capture_again(report, source, example_inputs, example_kwargs)
    feeds, synthesised = _feeds(torch, captured, target)
    gm = captured.graph_module.to(target)
    sync = torch.cuda.synchronize if target == "cuda" else _nothing
    counter = RunCounter(progress, warmup + 2 * runs)
    times: dict[str, list[float]] = {}
    latencies = []
    with torch.inference_mode():
        for _ in range(warmup):
            gm(*feeds)
            sync()
            counter.step("warm-up")
        for _ in range(runs):
            for name, seconds in _timed_run(torch, gm, feeds, sync).items():
                times.setdefault(name, []).append(seconds)
            counter.step("timed nodes")
        for _ in range(runs):
            sync()
            start = time.perf_counter()
            gm(*feeds)
            sync()
            latencies.append(time.perf_counter() - start)
            counter.step("timed runs")
    nodes = _node_measurements(report, captured.origins, times)
    by_name = {n.name: n for n in nodes}
    notes = spec_notes(report.hardware)
    if synthesised:
        notes.append("inputs synthesised from the graph's example values (normal floats, zero "
                     "integers, true booleans)")
    if target == "cuda":
        notes.append("per-node times are wall-clock times with a device synchronize around each "
                     "op: launch and kernel together")
    return Measurement(
        provider=f"eager ({target})",
        device=kind,
        hardware=report.hardware.name,
        runs=runs,
        warmup=warmup,
        threads=torch.get_num_threads(),
        weights="real",
        predicted_latency_s=report.summary.predicted_latency_s,
        unoptimised_latency_s=statistics.median(latencies),
        optimised_latency_s=None,
        measured_nodes_s=sum(n.measured_s for n in nodes),
        nodes=nodes,
        not_run=tuple(n.name for n in report.nodes if n.name not in by_name),
        unmapped_s=0.0,
        unmapped_kernels=(),
        kernels=(),
        findings=tuple(judge(f, by_name) for f in report.findings),
        notes=tuple(notes),
        kernel_overhead_s=report.hardware.kernel_overhead_s,
        runtime=f"torch {torch.__version__}",
    )


def select_device(torch: Any, device: str | None) -> str:
    """"cpu" or "cuda" for the requested device."""
    if device not in DEVICES:
        raise ConfirmError(f"unknown device {device!r} for a torch run (auto, cpu or cuda)")
    chosen = DEVICES[device]
    if chosen is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if chosen == "cuda" and not torch.cuda.is_available():
        raise ConfirmError("torch sees no CUDA GPU here (torch.cuda.is_available() is False)")
    return chosen


def import_torch() -> Any:
    """The torch module; a ConfirmError naming the extra to install when it is absent."""
    try:
        import torch
    except ImportError:
        raise ConfirmError("measuring a torch model needs torch: pip install 'memlint[torch]'"
                           ) from None
    return torch


def _nothing() -> None:
    return None


def _capture_again(report: Report, source: Any, example_inputs: Any,
                   example_kwargs: Mapping[str, Any] | None) -> Any:
    """The graph of `report` captured again (memlint.frontends.fx.Captured), checked to be the
    same graph: the same IR nodes with the same output shapes."""
    import os

    from memlint.frontends import fx

    dims = {b.name: b.value for b in report.model.dims if not b.assumed}
    try:
        if isinstance(source, (str, os.PathLike)):
            captured = fx.capture_pt2(source, dims=dims)
        else:
            captured = fx.capture(source, example_inputs, example_kwargs, dims=dims)
    except MemlintError as exc:
        raise ConfirmError(f"cannot capture the model again to run it: {exc}") from None
    if captured.program is None:
        how = captured.model.metadata.get("capture", "another capture")
        raise ConfirmError(f"only a graph torch.export captured can be run; this one came from "
                           f"{how}")
    if _shapes(captured.model) != _shapes(report.model):
        raise ConfirmError("the model captured again is not the graph of the report (other "
                           "inputs or dims?): lint and measure the same source")
    return captured


def _shapes(model: Any) -> dict[str, tuple]:
    """Every node's name with the shapes of its outputs: what makes two captures one graph."""
    values = model.graph.values
    return {node.name: tuple(values[o].shape if o in values else None for o in node.outputs)
            for node in model.graph.nodes}


def _feeds(torch: Any, captured: Any, device: str) -> tuple[list[Any], bool]:
    """The values of the graph's placeholders, on `device`; and whether inputs were made up."""
    program = captured.program
    specs = program.graph_signature.input_specs
    placeholders = [n for n in captured.graph_module.graph.nodes if n.op == "placeholder"]
    if len(specs) != len(placeholders):
        raise ConfirmError(f"the exported graph has {len(placeholders)} inputs for {len(specs)} "
                           "input specs: cannot feed it")
    examples = iter(captured.example)
    feeds, synthesised = [], False
    for spec, node in zip(specs, placeholders, strict=True):
        kind, target = spec.kind.name, spec.target
        if kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR", "CUSTOM_OBJ"):
            value = program.state_dict.get(target) if kind in ("PARAMETER", "BUFFER") else None
            if value is None:
                value = program.constants.get(target)
            if value is None:
                raise ConfirmError(f"the program has no value for its {kind.lower()} {target!r}")
            if isinstance(value, torch.Tensor) and not _real(torch, value):
                raise ConfirmError(
                    f"{target} is on the meta device (no weights to run with): build the model "
                    "with real or random weights to measure it"
                )
        elif kind == "USER_INPUT":
            value = next(examples, None)
            if not isinstance(value, torch.Tensor) or not _real(torch, value):
                value, synthesised = _synthesise(torch, node), True
        else:
            raise ConfirmError(f"cannot feed a {kind.lower()} input ({node.name})")
        feeds.append(value.to(device) if isinstance(value, torch.Tensor) else value)
    return feeds, synthesised


def _real(torch: Any, tensor: Any) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return tensor.device.type != "meta" and not isinstance(tensor, FakeTensor)


def _synthesise(torch: Any, node: Any) -> Any:
    """An input of the placeholder's example shape and dtype (seeded)."""
    from memlint.frontends.fx_graph import value_of

    val = value_of(node)
    if not isinstance(val, torch.Tensor):
        raise ConfirmError(f"input {node.name} has no example value to make an input from")
    shape = [int(d) for d in val.shape]
    generator = torch.Generator().manual_seed(0)
    if val.dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(val.dtype)
    if val.dtype == torch.bool:
        return torch.ones(shape, dtype=torch.bool)
    return torch.zeros(shape, dtype=val.dtype)


def _timed_run(torch: Any, gm: Any, feeds: list[Any], sync: Callable[[], None]
               ) -> dict[str, float]:
    """One run through a torch.fx.Interpreter: seconds per call_function node, by name."""
    from torch import fx

    times: dict[str, float] = {}

    class Timed(fx.Interpreter):
        def run_node(self, node: fx.Node) -> Any:
            if node.op != "call_function":
                return super().run_node(node)
            args, kwargs = self.fetch_args_kwargs_from_env(node)
            sync()
            start = time.perf_counter()
            result = node.target(*args, **kwargs)
            sync()
            times[node.name] = times.get(node.name, 0.0) + time.perf_counter() - start
            return result

    Timed(gm).run(*feeds)
    return times


def _node_measurements(report: Report, origins: Mapping[str, tuple[str, ...]],
                       times: Mapping[str, list[float]]) -> tuple[NodeMeasurement, ...]:
    """Per IR node (graph order): its graph node's median time, split over the IR nodes it
    became in proportion to their predicted times (evenly when those are all zero)."""
    results = {n.name: n for n in report.nodes}
    measured: dict[str, float] = {}
    shared: set[str] = set()
    for fx_name, names in origins.items():
        if fx_name not in times or not names:
            continue
        median = statistics.median(times[fx_name])
        predicted = [results[n].timing.predicted_latency_s for n in names]
        whole = sum(predicted)
        for name, part in zip(names, predicted, strict=True):
            measured[name] = median * (part / whole if whole else 1 / len(names))
        if len(names) > 1:
            shared.update(names)
    return tuple(
        NodeMeasurement(
            name=n.name, op_type=n.op_type, measured_s=measured[n.name],
            predicted_s=n.timing.predicted_latency_s, flops=n.cost.flops,
            bytes_moved=n.cost.bytes_moved, compute_time_s=n.timing.compute_time_s,
            memory_time_s=n.timing.memory_time_s, shared=n.name in shared,
        )
        for n in report.nodes
        if n.name in measured
    )


__all__ = ["confirm_torch", "import_torch", "select_device"]
