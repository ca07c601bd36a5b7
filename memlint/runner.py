"""Linting from the command line: one model or many (in worker processes), each with the config
found from its own folder, combined into one report and one exit code.

A model that cannot be linted (corrupt file, bad dims) fails alone with its reason; the others
are still linted, and the run exits 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlint.baseline import Entry
from memlint.config import (
    Config,
    load_config,
    parse_budget_flags,
    parse_rule_option_flags,
    parse_severity_flags,
)
from memlint.core.llm import ScenarioRequest
from memlint.errors import ConfigError, MemlintError, ModelLoadError
from memlint.findings import Severity

DEFAULT_FAIL_ON = "warning"


@dataclass(frozen=True)
class LintRequest:
    """Every lint flag of the command line, as plain data (it crosses process boundaries)."""

    hw: str | None = None
    hw_files: tuple[str, ...] = ()
    dims: tuple[str, ...] = ()
    input_shapes: tuple[str, ...] = ()
    strict_dims: bool = False
    tf32: bool | None = None
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    rule_options: tuple[str, ...] = ()
    min_share: float | None = None
    min_saving_s: float | None = None
    config_file: str | None = None
    isolated: bool = False
    baseline: str | None = None
    ignore_baseline: bool = False  # --write-baseline: record everything found now
    fail_on: str | None = None
    shared_dims: bool = False  # many models: a --dim binds the models that have that dim
    scenario: ScenarioRequest = ScenarioRequest()  # the LLM scenario and what-ifs
    example_inputs: str | None = None  # "package.module:make_inputs" for a module factory
    budgets: tuple[str, ...] = ()  # --budget NAME=VALUE (rule ML903 over-budget)
    cuda_graphs: bool = False  # --cuda-graphs: no per-kernel launch cost (GPU specs)


def is_torch_target(model: Path) -> bool:
    """A saved torch.export program (.pt2) or a "package.module:factory" spec (not a file)."""
    return model.suffix == ".pt2" or (":" in str(model) and not model.exists())


def config_for(model: Path, request: LintRequest) -> Config:
    """The model's configuration under the flags. The gate (fail-on, rule selection,
    severities, budgets, noise thresholds, baseline, hardware) comes from the flags and the
    config where the run starts: --config FILE (then no other file is read), else the nearest
    memlint.toml / [tool.memlint] from the working directory. A config found from the model's
    own folder adds only dims and suppressions (Config.with_model_config). Reports name every
    file applied."""
    if request.isolated:
        config = Config()
    elif request.config_file is not None:
        config = load_config(Path(request.config_file))
    else:
        config = load_config(start=Path.cwd())
        if not is_torch_target(model):
            config = config.with_model_config(load_config(start=model))
    config = config.with_flags(
        select=request.select,
        ignore=request.ignore,
        severity=parse_severity_flags(request.severities),
        rule_options={**parse_rule_option_flags(request.rule_options),
                      **parse_budget_flags(request.budgets)},
    )
    changes = {
        "min_share": request.min_share,
        "min_saving_s": request.min_saving_s,
        "baseline": request.baseline,
    }
    config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
    if request.ignore_baseline:
        config = dataclasses.replace(config, baseline=None)
    return config


def lint_model(model: Path, request: LintRequest, *, confirm: Any = None):  # -> (Report, Config)
    """Lint one model through memlint.api.lint with the flags of `request` and the config found
    from the model's folder (a decoder with a KV cache at its LLM scenario: a decode step unless
    the flags or dims say otherwise). `confirm` (memlint.api.Confirm) adds a measured run."""
    from memlint.api import DEFAULT_HARDWARE, lint
    from memlint.dims import parse_dim_flags, parse_shape_flags

    config = config_for(model, request)
    dims = parse_dim_flags(request.dims)
    if request.example_inputs is not None and not is_torch_target(model):
        raise ConfigError("--example-inputs goes with a 'package.module:factory' model spec")
    report = lint(
        torch_source(model, request) if is_torch_target(model) else model,
        hw=request.hw or config.hw or DEFAULT_HARDWARE,
        hw_files=_hw_files(request),
        # a --dim shared by many models binds those that have it
        dims=None if request.shared_dims else dims,
        default_dims=dims if request.shared_dims else None,
        input_shapes=parse_shape_flags(request.input_shapes),
        strict_dims=request.strict_dims,
        tf32=bool(config.tf32) if request.tf32 is None else request.tf32,
        config=config,
        scenario=request.scenario,
        confirm=confirm,
        cuda_graphs=request.cuda_graphs,
    )
    return report, config


def torch_source(model: Path, request: LintRequest) -> Any:
    """What a torch target names: the .pt2 path, or the module a factory spec makes (imported
    and called) with its --example-inputs, as a memlint.frontends.fx.TorchSource."""
    if model.suffix == ".pt2":
        return str(model)
    from memlint.api import torch_frontend

    return torch_frontend().load_factory(str(model), request.example_inputs)


def _hw_files(request: LintRequest) -> tuple[str, ...]:
    """--hw-file files, then the user's saved specs (memlint hw calibrate --save: --hw local)."""
    from memlint.hardware.loader import user_spec_files

    return (*request.hw_files, *map(str, user_spec_files()))


def fail_on_for(config: Config, request: LintRequest) -> str:
    return request.fail_on or config.fail_on or DEFAULT_FAIL_ON


def fails(findings: Sequence, fail_on: str) -> bool:
    """True when a finding is at least as severe as `fail_on` ("never" never fails)."""
    if fail_on == "never":
        return False
    floor = Severity.parse(fail_on).rank
    return any(f.severity.rank >= floor for f in findings)


def expand_models(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a folder holding model.onnx is that model (an export folder); any other
    folder stands for every .onnx file below it, sorted."""
    models: list[Path] = []
    for path in paths:
        if is_torch_target(path):
            models.append(path)
        elif path.is_dir() and not (path / "model.onnx").is_file():
            found = sorted(path.rglob("*.onnx"))
            if not found:
                raise ModelLoadError(f"{path}: a folder with no .onnx file in it")
            models.extend(found)
        else:
            models.append(path)
    return models


@dataclass(frozen=True)
class ModelOutcome:
    """One model's result in a many-model run (plain data, picklable)."""

    model: str
    rendered: str = ""  # the report in the requested format
    error: str = ""  # why the model could not be linted
    fails: bool = False
    findings: int = 0
    latency_s: float = 0.0
    baseline_entries: tuple[Entry, ...] = ()  # what --write-baseline records for this model


def lint_to_outcome(model: str, request: LintRequest, fmt: str, top: int | None,
                    timestamp: str | None, verbose: bool = False) -> ModelOutcome:
    from memlint.baseline import entries_of, model_identity
    from memlint.report import render

    try:
        report, config = lint_model(Path(model), request)
        rendered = render(report, fmt, top=top, timestamp=timestamp, verbose=verbose)
    except MemlintError as exc:
        return ModelOutcome(model, error=str(exc))
    identity = model_identity(report.model.source)
    return ModelOutcome(
        model,
        rendered=rendered,
        fails=fails(report.findings, fail_on_for(config, request)),
        findings=len(report.findings),
        latency_s=report.summary.predicted_latency_s,
        baseline_entries=tuple(e for f in report.findings for e in entries_of(f, identity)),
    )


def lint_many(models: Sequence[Path], request: LintRequest, fmt: str, *, top: int | None,
              jobs: int, verbose: bool = False,
              timestamp: str | None, progress: Callable[[ModelOutcome], None] | None = None,
              ) -> list[ModelOutcome]:
    """Lint every model, `jobs` at a time in worker processes (1: in this process)."""
    args = [(str(m), request, fmt, top, timestamp, verbose) for m in models]
    outcomes: list[ModelOutcome] = []
    if jobs <= 1 or len(models) == 1:
        for arg in args:
            outcomes.append(lint_to_outcome(*arg))
            if progress:
                progress(outcomes[-1])
        return outcomes
    from concurrent.futures import ProcessPoolExecutor  # --jobs only

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for outcome in pool.map(lint_to_outcome, *zip(*args)):
            outcomes.append(outcome)
            if progress:
                progress(outcome)
    return outcomes
