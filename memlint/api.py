"""The one entry point: lint(source, ...) -> Report. The CLI, many-model runs, the pytest plugin,
the torch.compile backend and memlint.testing all call it; the LLM scenario and the measured run
are arguments of it, not second paths.

    report = memlint.lint("decoder.onnx", hw="h100", scenario={"batch": 8, "context": 4095})
    json.dumps(report.to_dict())  # exactly `memlint decoder.onnx --hw h100 ... --format json`

Steps, each a function here for callers that need one of them: parse (read an ONNX file once),
load (frontend -> ir.Model at bound dims), analyse (costs and roofline: memlint.core.report),
check (rules: memlint.engine), lint_llm (the scenario of a decoder with a KV cache, loaded at
its dims), then the LLM sections (memlint.llm.session) and, when asked, a measured run
(memlint.confirm).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlint.baseline import load_baseline, model_identity
from memlint.config import Config
from memlint.core.llm import ScenarioRequest
from memlint.core.report import BaselineResult, Report, analyse
from memlint.errors import ConfigError, DimError, LlmError, ModelLoadError
from memlint.hardware import HardwareSpec, resolve
from memlint.ir import Model

DEFAULT_HARDWARE = "a100"

__all__ = [
    "DEFAULT_HARDWARE", "Confirm", "ScenarioRequest", "analyse", "check", "lint", "lint_llm",
    "load", "parse",
]  # fmt: skip


@dataclass(frozen=True)
class Confirm:
    """Ask lint() for a measured run (--confirm): onnxruntime for an ONNX model, torch eager for
    a torch one, on CUDA when available (provider "auto") else the CPU. `progress(done, total,
    phase)` and `announce(line)` report what it does (the CLI shows a bar and a line on
    stderr)."""

    runs: int = 10
    provider: str = "auto"  # "auto", "cpu" or "cuda"
    progress: Callable[[int, int, str], None] | None = None
    announce: Callable[[str], None] | None = None


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
    scenario: ScenarioRequest | Mapping[str, Any] | None = None,
    confirm: Confirm | None = None,
    decode: int | None = None,
    cuda_graphs: bool = False,
) -> Report:
    """Lint a model for the device `hw` and return the Report (`report.to_dict()` is the JSON
    report's document).

    source: an ONNX file (or an export folder's model.onnx path, or what `parse` returned), a
    `.pt2` file (torch.export.save), an already loaded ir.Model, or a torch object: an nn.Module
    captured with `example_inputs` (a tuple of args, or one tensor) and `example_kwargs`, a
    torch.fx.GraphModule, a torch.export.ExportedProgram, or what
    memlint.frontends.fx.load_factory returns.

    dims binds symbolic dims by name ({"batch_size": 1}), and naming a dim the model does not
    have is an error; default_dims (and the config's dims) bind dims where the model has them.
    input_shapes gives whole input shapes for ONNX inputs whose dims have no name (a torch model
    is linted at the shapes of its example inputs). strict_dims fails instead of assuming 1 for
    an unbound dim. tf32=True lets fp32 matmuls use the TF32 tensor peak.

    scenario (a ScenarioRequest or a mapping of its fields: phase, batch, context, prompt,
    sweeps, generate, weights_dtype, kv_dtype, act_dtype, exclude_blocks, tp) applies to an
    ONNX decoder with a KV cache, except the what-ifs weights_dtype, kv_dtype, act_dtype and
    exclude_blocks ("embedding,lm_head"), which apply to every model: the report's nodes and
    `summary` are then the what-if's, `summary.as_written` the graph's own totals, and the
    findings stay those of the graph as written (docs/blocks.md). Without a scenario, a
    decoder is linted at the default decode step (docs/llm.md), and the
    report's `llm` holds its sections. config selects rules, options, suppressions, noise
    thresholds and a baseline (memlint.config; no configuration file is read by the library).
    confirm runs the model and joins measured times to the report (memlint.confirm).
    cuda_graphs=True prices a runtime that replays the step as a CUDA graph: the spec's
    per-kernel launch cost is dropped from both estimates (a GPU spec only).

    A torch step with a KV cache gets the LLM sections too (docs/torch.md): pass its inputs
    (a transformers cache or a tuple cache in example_kwargs; linted at their shapes), or give a
    Hugging Face model no inputs and memlint builds the step for the scenario: decode=N is a
    decode step after N cached tokens (scenario={"phase": "decode", "context": N}), and with
    neither, the default decode step.

    Raises MemlintError (with one clear line) when the tool cannot do its job.
    """
    spec = hw if isinstance(hw, HardwareSpec) else resolve(hw, hw_files)
    if cuda_graphs:
        spec = graph_replay(spec)
    config = config or Config()
    request = ScenarioRequest.of(scenario)
    what_if = request.what_if  # checked before any load
    if _onnx_source(source) and request.moe_routing:
        raise LlmError(
            f"--moe-routing {request.moe_routing}: applies to torch mixture-of-experts steps, "
            "which memlint routes while capturing (docs/torch.md); an ONNX graph is linted as "
            "written"
        )
    if _onnx_source(source):
        run = lint_llm(
            source, hw=spec, dims=dims, input_shapes=input_shapes, strict_dims=strict_dims,
            tf32=tf32, config=config, default_dims=default_dims, phase=request.phase,
            batch=request.batch, context=request.context, prompt=request.prompt,
        )  # fmt: skip
        report = _with_sections(run.report, run, request)
    else:
        report = _lint_torch(
            source, spec, request, config, dims=dims, input_shapes=input_shapes,
            strict_dims=strict_dims, tf32=tf32, default_dims=default_dims,
            example_inputs=example_inputs, example_kwargs=example_kwargs, decode=decode,
        )  # fmt: skip
    if cuda_graphs:
        report = dataclasses.replace(report, cuda_graphs=True)
    if confirm is not None:
        from memlint.confirm import measure

        report = dataclasses.replace(report, measurement=measure(
            report, torch_source=None if _onnx_source(source) else source, runs=confirm.runs,
            provider=confirm.provider, progress=confirm.progress, announce=confirm.announce,
        ))  # fmt: skip
    if not what_if.is_identity:  # after the measured run: it ran the graph as written
        from memlint.llm.whatif import apply_what_if

        report = apply_what_if(report, what_if)
    return report


def graph_replay(spec: HardwareSpec) -> HardwareSpec:
    """`spec` as a runtime that replays the step as a CUDA graph sees it: no per-kernel launch
    cost. ConfigError for a spec that is not a GPU's."""
    if spec.kind != "gpu":
        raise ConfigError(
            f"--cuda-graphs: {spec.name} is a {spec.kind} spec; CUDA graphs apply to GPU specs"
        )
    return dataclasses.replace(spec, kernel_overhead_s=None)


def _lint_torch(
    source: Any, spec: HardwareSpec, request: ScenarioRequest, config: Config, *,
    dims: Mapping[str, int] | None, input_shapes: Mapping[str, tuple[int, ...]] | None,
    strict_dims: bool, tf32: bool, default_dims: Mapping[str, int] | None,
    example_inputs: Any, example_kwargs: Mapping[str, Any] | None, decode: int | None,
) -> Report:
    """A torch source linted, with the LLM sections when it is a step with a KV cache
    (memlint.llm.torch_step)."""
    from memlint.llm.torch_step import lint_step

    if decode is not None:
        if isinstance(decode, bool) or not isinstance(decode, int) or decode < 0:
            raise ConfigError(f"decode={decode!r}: expected the cached tokens, a whole number >= 0")
        if request.phase not in (None, "decode") or request.context not in (None, decode):
            raise ConfigError(f"decode={decode} contradicts the scenario's phase or context")
        request = dataclasses.replace(request, phase="decode", context=decode)
    if isinstance(source, (str, os.PathLike, Model)) and request.flags:
        raise ConfigError(
            f"{', '.join(request.flags)}: a .pt2 program or a loaded Model is linted at the "
            "shapes it has; LLM scenarios apply to ONNX models and Hugging Face torch models"
        )
    bind = {"dims": dims, "strict_dims": strict_dims,
            "default_dims": {**config.dims, **(default_dims or {})}}  # fmt: skip

    def capture(obj: Any, args: Any, kwargs: Mapping[str, Any] | None) -> Model:
        model = load(obj, input_shapes=input_shapes, example_inputs=args, example_kwargs=kwargs,
                     moe_routing=request.moe_routing, **bind)  # fmt: skip
        if request.moe_routing and "moe" not in model.metadata:
            raise LlmError(f"--moe-routing {request.moe_routing}: {model.source} has no "
                           "mixture-of-experts block that memlint routes (docs/torch.md)")
        return model

    def analyse_model(model: Model) -> Report:
        return check(analyse(model, spec, tf32=tf32), config)

    report, run = lint_step(
        source, spec=spec, request=request, analyse_model=analyse_model, capture=capture,
        example_inputs=example_inputs, example_kwargs=example_kwargs, strict_dims=strict_dims,
    )  # fmt: skip
    return report if run is None else _with_sections(report, run, request)


def _with_sections(report: Report, run: Any, request: ScenarioRequest) -> Report:
    """`report` with the LLM sections of `run` (a memlint.llm.session.LlmLint) for `request`."""
    from memlint.llm.session import sections

    return dataclasses.replace(report, llm=sections(
        run, sweeps=request.sweeps, generate_tokens=request.generate,
        weights_dtype=request.weights_dtype, kv_dtype=request.kv_dtype,
        act_dtype=request.act_dtype, exclude_blocks=request.what_if.exclude_blocks,
        tp=request.tp, exact=request.exact,
        # a crossover search re-lints up to five times: only when a sweep asks for tables
        find_crossover=bool(request.sweeps) if request.find_crossover is None
        else request.find_crossover,
    ))  # fmt: skip


def lint_llm(
    source: str | os.PathLike[str],
    *,
    hw: str | HardwareSpec = DEFAULT_HARDWARE,
    hw_files: Sequence[str | os.PathLike[str]] = (),
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    strict_dims: bool = False,
    tf32: bool = False,
    config: Config | None = None,
    default_dims: Mapping[str, int] | None = None,
    phase: str | None = None,
    batch: int | None = None,
    context: int | None = None,
    prompt: int | None = None,
):  # -> memlint.llm.session.LlmLint
    """An ONNX model linted at its LLM scenario (memlint.llm.scenario), rules run: the step,
    the decoder's structure, the scenario (None for a model without a KV cache and no flags,
    linted as bound) and an Evaluator that re-lints other scenarios of the same model.

    The file is read once; it is loaded to read its structure and, when the scenario binds dims
    that load did not, once more at the scenario's dims from the copy in memory."""
    from memlint.analysis.structure import detect
    from memlint.llm.scenario import (
        Evaluator,
        assumed_dims,
        check_sequence_positions,
        scenario_dims,
        scenario_inputs,
        strict_dims_error,
    )
    from memlint.llm.scenario import resolve as resolve_scenario
    from memlint.llm.session import LlmLint

    spec = hw if isinstance(hw, HardwareSpec) else resolve(hw, hw_files)
    config = config or Config()
    # The config's dims (and default_dims) bind the dims a model has and are no error where it
    # has none; the caller's dims must all exist. Roles are read from both.
    # The export folder's own files (config.json, preprocessor_config.json) give dims under
    # those: the image size, audio frames; the report names the file of each it used.
    source = parse(source)  # read once for every load below and the evaluator's
    exported = {d.name: d for d in _export_dims(source)}
    defaults = {**config.dims, **(default_dims or {})}
    sources = {n: d.source for n, d in exported.items() if n not in {**defaults, **(dims or {})}}
    defaults = {**{n: d.value for n, d in exported.items()}, **defaults}
    given = {**defaults, **(dims or {})}
    first = load(source, dims, input_shapes, strict_dims=False, default_dims=defaults)
    structure = detect(first)
    check_sequence_positions(structure, {b.name: b.value for b in first.dims})
    scenario = resolve_scenario(
        structure, phase=phase, batch=batch, context=context, prompt=prompt, dims=given
    )
    model = first
    assumed: dict[str, str] = {}  # dims only the scenario's defaults set, with their source
    if scenario is not None:
        assumed = assumed_dims(structure, scenario, given, phase_given=phase is not None)
        if strict_dims and assumed:
            raise strict_dims_error(structure, scenario, assumed)
        wanted = {**given, **scenario_dims(structure, scenario)}
        bound = {b.name: b.value for b in first.dims if not b.assumed}
        values = scenario_inputs(structure, scenario)  # a merged decoder's branch flag
        if {k: v for k, v in wanted.items() if k in bound or k not in defaults} != bound \
                or strict_dims or values:
            model = load(source, {**(dims or {}), **scenario_dims(structure, scenario)},
                         input_shapes, strict_dims=strict_dims, default_dims=defaults,
                         input_values=values)
        if values:  # the structure of the branch the scenario takes (heads, tables, ...)
            structure = dataclasses.replace(detect(model), cache_flags=structure.cache_flags)
    elif strict_dims:
        model = load(source, dims, input_shapes, strict_dims=True, default_dims=defaults)
    model = _with_sources(_with_assumed(model, assumed), sources)
    report = check(analyse(model, spec, tf32=tf32), config)
    evaluator = None
    if structure.has_kv_cache:
        known = {b.name for b in first.dims}  # a config dim the model lacks binds nothing
        evaluator = Evaluator(
            source, spec, structure, dims={k: v for k, v in given.items() if k in known},
            input_shapes=input_shapes, tf32=tf32,
            encoder_length=None if scenario is None else scenario.encoder_length,
        )
        if scenario is not None:
            evaluator.remember(scenario, report)
    return LlmLint(report, structure, scenario, evaluator)


def _export_dims(source: Any) -> tuple:  # tuple[memlint.analysis.export_dims.ExportDim, ...]
    """The dims an ONNX export's folder gives (memlint.analysis.export_dims), read before any
    load from the inputs the graph declares."""
    from memlint.analysis.export_dims import export_dims
    from memlint.frontends.onnx import ParsedOnnx, declared_input_dims

    if not isinstance(source, ParsedOnnx):
        return ()
    return export_dims(str(source.path), declared_input_dims(source))


def _with_assumed(model: Model, assumed: Mapping[str, str]) -> Model:
    """`model` with each dim only an LLM scenario default set marked assumed, its source the
    default ("LLM default context")."""
    if not assumed:
        return model
    return dataclasses.replace(model, dims=tuple(
        dataclasses.replace(b, assumed=True, source=assumed[b.name]) if b.name in assumed else b
        for b in model.dims
    ))  # fmt: skip


def _with_sources(model: Model, sources: Mapping[str, str]) -> Model:
    """`model` with each dim the export's files gave marked with its file and key."""
    if not sources:
        return model
    return dataclasses.replace(model, dims=tuple(
        dataclasses.replace(b, source=sources[b.name])
        if b.name in sources and not b.assumed else b for b in model.dims
    ))  # fmt: skip


def check(report: Report, config: Config | None = None) -> Report:
    """Run the selected rules over an analysed report; the report with its findings."""
    from memlint import engine
    from memlint.rulebase import RuleContext

    ctx = RuleContext(  # shares are of the operators' time: launch costs are no rule's
        report.model, report.hardware, report.nodes, report.summary.work_latency_s,
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
        rules=outcome.rules,
        baseline=baseline,
        config_files=config.files,
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
    input_values: Mapping[str, Any] | None = None,
    moe_routing: str | None = None,
) -> Model:
    """Load a model into the IR. The frontend is chosen by the source: a `.pt2` file or a torch
    object goes to the torch frontend (which imports torch), any other path to ONNX.
    input_values fixes ONNX graph inputs to a value (an If they decide is taken statically)."""
    if isinstance(source, Model):
        return source
    if _onnx_source(source):
        from memlint.frontends.onnx import load_onnx

        return load_onnx(source, dims=dims, input_shapes=input_shapes, strict_dims=strict_dims,
                         default_dims=default_dims, input_values=input_values)
    if input_shapes:
        raise DimError(
            "input shapes apply to ONNX models; capture a torch model with example inputs of "
            "the shapes to lint instead"
        )
    fx = torch_frontend()
    from memlint.frontends.torch_logs import kept_logs

    bind = {"dims": dims, "default_dims": default_dims, "strict_dims": strict_dims}
    with kept_logs():  # torch's own log lines never reach the terminal (--debug shows them)
        if isinstance(source, (str, os.PathLike)):
            return fx.capture_pt2(source, **bind).model
        return fx.capture(source, example_inputs, example_kwargs, **bind,
                      moe_routing=moe_routing or "expected").model


def parse(source: str | os.PathLike[str] | Any) -> Any:
    """An ONNX file read once (memlint.frontends.onnx.ParsedOnnx) for several `load`s at other
    dims; any other source (a torch object, a .pt2 file, a Model) is returned as it is."""
    if _onnx_source(source):
        from memlint.frontends.onnx import parse_onnx

        return parse_onnx(source)
    return source


def _onnx_source(source: Any) -> bool:
    """A path to an ONNX file (anything but .pt2), or an ONNX file already parsed."""
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix != ".pt2"


def torch_frontend():  # noqa: ANN201 - the module memlint.frontends.fx
    """memlint.frontends.fx, or ModelLoadError saying how to install torch."""
    try:
        from memlint.frontends import fx
    except ImportError as exc:
        raise ModelLoadError(
            f"linting a torch model needs torch ({exc}); install it: pip install 'memlint[torch]'"
        ) from None
    return fx
