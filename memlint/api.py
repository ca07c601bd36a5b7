"""The one entry point: lint(source, ...) -> Report. The CLI, the pytest plugin and tests call it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from memlint.baseline import load_baseline, model_identity
from memlint.config import Config
from memlint.costs import cost_of
from memlint.errors import DimError, MemlintError, ModelLoadError
from memlint.hardware import HardwareSpec, resolve
from memlint.ir import Model
from memlint.core.report import BaselineResult, NodeResult, Report, coverage_of, summarize
from memlint.roofline import time_op

DEFAULT_HARDWARE = "a100"


def lint(
    source: str | os.PathLike[str] | Model | Any,
    *,
    hw: str | HardwareSpec = DEFAULT_HARDWARE,
    hw_files: Sequence[str | os.PathLike[str]] = (),
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    strict_dims: bool = False,
    tf32: bool = False,
    config: Config | None = None,
    default_dims: Mapping[str, int] | None = None,
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
) -> Report:
    """Lint a model for the device `hw`: an ONNX file, a `.pt2` file (torch.export.save), an
    already loaded ir.Model, or a torch object: an nn.Module captured with `example_inputs` (a
    tuple of args, or one tensor) and `example_kwargs`, a torch.fx.GraphModule, a
    torch.export.ExportedProgram, or what memlint.frontends.fx.load_factory returns.

    dims binds symbolic dims by name ({"batch_size": 1}), and naming a dim the model does not
    have is an error; default_dims (and the config's dims) bind dims where the model has them.
    input_shapes gives whole input shapes for ONNX inputs whose dims have no name (a torch model
    is linted at the shapes of its example inputs). tf32=True lets fp32 matmuls use the TF32
    tensor peak.
    config selects rules, options, suppressions and noise thresholds (memlint.config; the
    defaults when None: no configuration file is read by the library). Raises MemlintError (with
    one clear line) when the tool cannot do its job.
    """
    spec = hw if isinstance(hw, HardwareSpec) else resolve(hw, hw_files)
    config = config or Config()
    defaults = {**config.dims, **(default_dims or {})}
    model = (
        source if isinstance(source, Model)
        else load(
            source, dims, input_shapes, strict_dims, default_dims=defaults,
            example_inputs=example_inputs, example_kwargs=example_kwargs,
        )
    )  # fmt: skip
    return check(analyse(model, spec, tf32=tf32), config)


def check(report: Report, config: Config | None = None) -> Report:
    """Run the selected rules over an analysed report; the report with its findings."""
    from memlint import engine
    from memlint.rulebase import RuleContext

    ctx = RuleContext(
        report.model, report.hardware, report.nodes, report.summary.predicted_latency_s,
        tf32=report.tf32,
    )
    config = config or Config()
    outcome = engine.run(ctx, config)
    findings, baseline = outcome.findings, None
    if config.baseline:
        split = load_baseline(config.baseline).split(findings, model_identity(report.model.source))
        findings = split.new
        baseline = BaselineResult(config.baseline, split.known, split.fixed)
    return dataclasses.replace(
        report,
        findings=findings,
        suppressed=outcome.suppressed,
        unused_suppressions=outcome.unused_suppressions,
        hidden_as_noise=outcome.hidden_as_noise,
        rules_run=outcome.rules_run,
        baseline=baseline,
    )


def load(
    source: str | os.PathLike[str] | Any,
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    strict_dims: bool = False,
    *,
    default_dims: Mapping[str, int] | None = None,
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
) -> Model:
    """Load a model into the IR. The frontend is chosen by the source: a `.pt2` file or a torch
    object goes to the torch frontend (which imports torch), any other path to ONNX."""
    if isinstance(source, Model):
        return source
    if _onnx_path(source):
        from memlint.frontends.onnx import load_onnx

        return load_onnx(source, dims=dims, input_shapes=input_shapes, strict_dims=strict_dims,
                         default_dims=default_dims)
    if input_shapes:
        raise DimError(
            "input shapes apply to ONNX models; capture a torch model with example inputs of "
            "the shapes to lint instead"
        )
    fx = _torch_frontend()
    bind = {"dims": dims, "default_dims": default_dims, "strict_dims": strict_dims}
    if isinstance(source, (str, os.PathLike)):
        return fx.capture_pt2(source, **bind).model
    return fx.capture(source, example_inputs, example_kwargs, **bind).model


def parse(source: str | os.PathLike[str] | Any) -> Any:
    """An ONNX file read once (memlint.frontends.onnx.ParsedOnnx) for several `load`s at other
    dims; any other source (a torch object, a .pt2 file, a Model) is returned as it is."""
    if _onnx_path(source):
        from memlint.frontends.onnx import parse_onnx

        return parse_onnx(source)
    return source


def _onnx_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix != ".pt2"


def _torch_frontend():  # noqa: ANN202 - the module memlint.frontends.fx
    try:
        from memlint.frontends import fx
    except ImportError as exc:
        raise ModelLoadError(
            f"linting a torch model needs torch ({exc}); install it: pip install 'memlint[torch]'"
        ) from None
    return fx


def analyse(model: Model, spec: HardwareSpec, *, tf32: bool = False) -> Report:
    """Cost every node, place it on the roofline of `spec`, and total the graph."""
    nodes = []
    for node in model.graph.nodes:
        try:
            cost = cost_of(node, model.graph)
        except MemlintError:
            raise
        except Exception as exc:  # a formula bug must name the node, not crash anonymously
            raise MemlintError(
                f"cost formula for {node.qualified_op} failed on node {node.name!r}: {exc}"
            ) from exc
        timing = time_op(cost, spec, tf32=tf32)
        nodes.append(NodeResult(node.name, node.op_type, node.domain, cost, timing, node.source))
    results = tuple(nodes)
    return Report(
        model=model,
        hardware=spec,
        nodes=results,
        summary=summarize(results, spec, tf32),
        coverage=coverage_of(results, model),
        tf32=tf32,
    )
