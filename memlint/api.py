"""The one entry point: lint(source, ...) -> Report. The CLI, the pytest plugin and tests call it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

from memlint.baseline import load_baseline, model_identity
from memlint.config import Config
from memlint.costs import cost_of
from memlint.errors import MemlintError
from memlint.hardware import HardwareSpec, resolve
from memlint.ir import Model
from memlint.report.model import BaselineResult, NodeResult, Report, coverage_of, summarize
from memlint.roofline import time_op

DEFAULT_HARDWARE = "a100"


def lint(
    source: str | os.PathLike[str] | Model,
    *,
    hw: str | HardwareSpec = DEFAULT_HARDWARE,
    hw_files: Sequence[str | os.PathLike[str]] = (),
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    strict_dims: bool = False,
    tf32: bool = False,
    config: Config | None = None,
    default_dims: Mapping[str, int] | None = None,
) -> Report:
    """Lint a model file (or an already loaded ir.Model) for the device `hw`.

    dims binds symbolic dims by name ({"batch_size": 1}), and naming a dim the model does not
    have is an error; default_dims (and the config's dims) bind dims where the model has them.
    input_shapes gives whole input shapes for inputs whose dims have no name. tf32=True lets fp32 matmuls use the TF32 tensor peak.
    config selects rules, options, suppressions and noise thresholds (memlint.config; the
    defaults when None: no configuration file is read by the library). Raises MemlintError (with
    one clear line) when the tool cannot do its job.
    """
    spec = hw if isinstance(hw, HardwareSpec) else resolve(hw, hw_files)
    config = config or Config()
    defaults = {**config.dims, **(default_dims or {})}
    model = (
        source if isinstance(source, Model)
        else load(source, dims, input_shapes, strict_dims, default_dims=defaults)
    )
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
    source: str | os.PathLike[str],
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    strict_dims: bool = False,
    *,
    default_dims: Mapping[str, int] | None = None,
) -> Model:
    """Load a model file into the IR (the frontend is chosen by the file)."""
    from memlint.frontends.onnx import load_onnx

    return load_onnx(source, dims=dims, input_shapes=input_shapes, strict_dims=strict_dims,
                     default_dims=default_dims)


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
