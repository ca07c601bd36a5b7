"""Command line: parse -> options -> api.lint -> render -> exit code. Thin on purpose.

Exit codes: 0 clean, 1 findings at or above --fail-on, 2 the tool could not do its job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import click

from memlint import __version__
from memlint.errors import MemlintError, OutputError
from memlint.report import FORMATS

# `memlint --version` and `--help` import click and this module only: the linting modules
# (memlint.runner and below: numpy, onnx) are imported by the commands that lint.

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
FAIL_ON = ("error", "warning", "info", "never")
__all__ = ["DEFAULT_FAIL_ON", "cli", "main", "run"]


def __getattr__(name: str):  # noqa: ANN202 - DEFAULT_FAIL_ON lives in memlint.runner
    if name == "DEFAULT_FAIL_ON":
        from memlint.runner import DEFAULT_FAIL_ON

        return DEFAULT_FAIL_ON
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _DefaultCommandGroup(click.Group):
    """`memlint MODEL ...` means `memlint check MODEL ...`, as ruff's bare invocation does."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["check", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="memlint")
def cli() -> None:
    """Find where an ML model hits the memory wall on a given accelerator.

    \b
    memlint model.onnx --hw a100
    memlint model.onnx --hw h100 --dim batch_size=1 --dim past_sequence_length=4095
    memlint hw list
    """


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """--select ML101,ML2 --select ML3 -> ("ML101", "ML2", "ML3")."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


# `memlint fix` takes --weights-dtype as the precision to convert to, not as a what-if.
_WEIGHTS_WHAT_IF = click.option("--weights-dtype", type=click.Choice(("fp16", "bf16", "fp8", "int8", "int4")), default=None, help="What-if: weights stored in this dtype (every model).")
_LINT_OPTIONS = (
    click.option("--hw", "hw", default=None, help="Device name or alias (memlint hw list).  [default: a100, or `hw` in the config]"),
    click.option("--hw-file", "hw_files", multiple=True, type=click.Path(path_type=Path), help="Extra hardware spec file (TOML/YAML); repeatable."),
    click.option("--dim", "dims", multiple=True, metavar="NAME=VALUE", help="Bind a symbolic dim; repeatable."),
    click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D0,D1,...", help="Whole shape of an input whose dims have no name; repeatable."),
    click.option("--strict-dims", is_flag=True, help="Fail instead of assuming 1 for unbound dims or an LLM "
                 "scenario's defaults (batch, context, decode step)."),
    click.option("--tf32", is_flag=True, default=None, help="Let fp32 matmuls run at the TF32 tensor-core peak."),
    click.option("--cuda-graphs", is_flag=True, help="The runtime replays the step as a CUDA graph: no per-kernel launch cost (GPU specs)."),
    click.option("--select", multiple=True, metavar="CODES", help="Only these rule codes or prefixes (comma-separated; replaces the config's)."),
    click.option("--ignore", multiple=True, metavar="CODES", help="Skip these rule codes or prefixes (comma-separated; adds to the config's)."),
    click.option("--severity", "severities", multiple=True, metavar="CODE=LEVEL", help="Override a rule's severity (info, warning, error); repeatable."),
    click.option("--rule-option", "rule_options", multiple=True, metavar="CODE.OPTION=VALUE", help="Set a rule option; repeatable (memlint rule CODE lists them)."),
    click.option("--budget", "budgets", multiple=True, metavar="NAME=VALUE", help="Fail (rule ML903) when the model breaks a budget: latency=5ms, memory-bound=80%, bytes-per-token=2GB, coverage=99%; repeatable."),
    click.option("--min-share", type=click.FloatRange(min=0), default=None, help="Hide findings under this share of predicted time whose fix also saves under --min-saving-s.  [default: 0.01]"),
    click.option("--min-saving-s", type=click.FloatRange(min=0), default=None, help="See --min-share (seconds).  [default: 0.001]"),
    click.option("--config", "config_file", type=click.Path(path_type=Path), help="Config file (memlint.toml or pyproject.toml) instead of the one found from the model's folder."),
    click.option("--isolated", is_flag=True, help="Ignore configuration files."),
    click.option("--phase", type=click.Choice(("prefill", "decode")), default=None, help="LLM scenario: a prefill of the prompt or one decode step (decoders with a KV cache; default decode)."),
    click.option("--batch", type=click.IntRange(min=1), default=None, help="LLM scenario: sequences per step."),
    click.option("--context", type=click.IntRange(min=0), default=None, help="LLM scenario: tokens already in the KV cache."),
    click.option("--prompt", type=click.IntRange(min=1), default=None, help="LLM scenario: prompt length (prefill) or the context after it (decode)."),
    click.option("--sweep", "sweeps", multiple=True, metavar="AXIS=V1,V2,...", help="LLM sweep table over batch or context, e.g. batch=1,8,64,256; repeatable."),
    click.option("--generate", type=click.IntRange(min=1), default=None, help="LLM: total cost of generating N tokens one by one from the prompt."),
    _WEIGHTS_WHAT_IF,
    click.option("--kv-dtype", type=click.Choice(("fp16", "fp8", "int8")), default=None, help="What-if: KV cache stored in this dtype (a model without one: changes nothing)."),
    click.option("--act-dtype", default=None, metavar="int8|fp8|fp16|bf16", help="What-if: floating-point activations stored in this dtype; matmuls whose operands are all at it compute in it."),
    click.option("--exclude-block", "exclude_blocks", multiple=True, metavar="NAME[,NAME]", help="What-if: leave these blocks out of every total (embedding, attention_projection, attention_scores, ffn, norm_elementwise, lm_head, other; docs/blocks.md)."),
    click.option("--tp", type=click.IntRange(min=1), default=None, help="LLM what-if: tensor parallelism over N devices (all-reduce over the interconnect)."),
    click.option("--moe-routing", type=click.Choice(("expected", "all", "top-k")), default=None, help="A torch MoE step's experts: expected under uniform routing (default), all of them, or only top-k."),
    click.option("--debug", is_flag=True, help="Show tracebacks and debug logs."),
)


def lint_options(command, without: tuple = ()):  # noqa: ANN001, ANN201 - a click decorator
    """The options every linting command takes (check, diff; fix `without` the what-if dtype)."""
    for option in reversed(_LINT_OPTIONS):
        if option not in without:
            command = option(command)
    return command


def lint_options_without_what_if_dtype(command):  # noqa: ANN001, ANN201
    return lint_options(command, without=(_WEIGHTS_WHAT_IF,))


def _request(options: dict, **extra) -> LintRequest:  # noqa: ANN003
    """The LintRequest for the lint options in `options` (click's values by LintRequest and
    ScenarioRequest field name) plus `extra`."""
    from memlint.core.llm import ScenarioRequest
    from memlint.runner import LintRequest

    values = {k: v for k, v in {**options, **extra}.items() if k != "debug"}
    scenario = {f.name: values.pop(f.name) for f in dataclasses.fields(ScenarioRequest)
                if f.name in values}
    values.update(
        hw_files=tuple(map(str, values["hw_files"])),
        select=_split(values["select"]),
        ignore=_split(values["ignore"]),
        config_file=None if values["config_file"] is None else str(values["config_file"]),
    )
    return LintRequest(scenario=ScenarioRequest.of(scenario), **values)


@cli.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@lint_options
@click.option("--format", "fmt", type=click.Choice(tuple(FORMATS)), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the report here instead of stdout.")
@click.option("--timestamp", is_flag=True, help="Stamp the report with the time it was made (reports are otherwise byte-identical run to run).")
@click.option("--top", default=None, type=click.IntRange(min=0), help="Operator rows in the text and Markdown tables (identical layers are one row in text).  [default: 5 text, 15 Markdown]")
@click.option("--verbose", "-v", is_flag=True, help="Text: each finding's evidence and every fix (default: one line per finding).")
@click.option("--baseline", "baseline_file", type=click.Path(path_type=Path), help="Fail only on findings that are not in this baseline file; report the fixed ones.")
@click.option("--write-baseline", type=click.Path(path_type=Path), help="Record the current findings in this baseline file (then exit 0).")
@click.option("--fail-on", type=click.Choice(FAIL_ON), default=None, help="Exit 1 when a finding has at least this severity.  [default: warning]")
@click.option("--confirm", "confirm_run", is_flag=True, help="Run the model (onnxruntime for an ONNX file, torch eager for a torch target; CUDA when available, else CPU) and compare measured with predicted times.")
@click.option("--runs", default=10, show_default=True, type=click.IntRange(min=1), help="Timed runs (per onnxruntime session) for --confirm.")
@click.option("--provider", type=click.Choice(("auto", "cpu", "cuda")), default="auto", show_default=True, help="Where --confirm runs: onnxruntime's execution provider, or torch's device.")
@click.option("--example-inputs", default=None, metavar="PACKAGE.MODULE:ATTR", help="For a MODEL given as package.module:factory (an nn.Module): a callable returning the example args, or (args, kwargs).")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=1), help="Lint this many models at once (worker processes).")
def check(
    models: tuple[Path, ...],
    fmt: str,
    output: Path | None,
    timestamp: bool,
    top: int | None,
    verbose: bool,
    baseline_file: Path | None,
    write_baseline: Path | None,
    fail_on: str | None,
    confirm_run: bool,
    runs: int,
    provider: str,
    example_inputs: str | None,
    jobs: int,
    **options,  # noqa: ANN003 - the lint options
) -> int:
    """Lint MODELS: .onnx files, export folders holding model.onnx, folders of models, .pt2
    programs saved with torch.export.save, or a package.module:factory returning an nn.Module
    (with --example-inputs; importing it runs your code, only when you name it).

    Settings come from the nearest memlint.toml or [tool.memlint] in pyproject.toml above each
    model (see --config, --isolated); flags override them. Many models give one combined report
    and one exit code: 2 if a model could not be linted, else 1 if any fails --fail-on.
    """
    from memlint.runner import expand_models

    request = _request(
        options,
        baseline=None if baseline_file is None else str(baseline_file),
        ignore_baseline=write_baseline is not None,
        fail_on=fail_on,
        example_inputs=example_inputs,
    )
    stamp = _now() if timestamp else None
    paths = expand_models(models)
    if len(paths) == 1:
        measure = (runs, provider) if confirm_run else None
        return _check_one(paths[0], request, fmt, output, stamp, top, verbose, write_baseline,
                          measure)
    if confirm_run:
        raise OutputError("--confirm measures one model at a time")
    request = dataclasses.replace(request, shared_dims=True)
    return _check_many(paths, request, fmt, output, stamp, top, verbose, write_baseline, jobs)


def _check_one(model: Path, request: LintRequest, fmt: str, output: Path | None,
               stamp: str | None, top: int | None, verbose: bool,
               write_baseline: Path | None, measure: tuple[int, str] | None) -> int:
    from memlint.report import render
    from memlint.runner import fail_on_for, fails, lint_model

    if measure is None:
        report, config = lint_model(model, request)
    else:
        from memlint.api import Confirm

        with _progress_bar() as progress:
            confirm = Confirm(runs=measure[0], provider=measure[1], progress=progress,
                              announce=lambda line: click.echo(f"memlint: {line}", err=True))
            report, config = lint_model(model, request, confirm=confirm)
    if report.measurement is not None:
        click.echo(f"memlint: measured on {report.measurement.provider} "
                   f"({report.measurement.runs} runs)", err=True)
    if fmt == "text" and output is None:
        from memlint.report.text import render_to, terminal_console

        with _reader_may_stop():
            render_to(terminal_console(), report, top=top, verbose=verbose)
    else:
        _emit(render(report, fmt, top=top, timestamp=stamp, verbose=verbose), output)
    if write_baseline is not None:
        from memlint.baseline import model_identity, render_baseline

        _emit(render_baseline([(model_identity(report.model.source), report.findings)]),
              write_baseline)
        click.echo(f"memlint: wrote {len(report.findings)} finding(s) to {write_baseline}", err=True)
        return EXIT_OK
    return EXIT_FINDINGS if fails(report.findings, fail_on_for(config, request)) else EXIT_OK


@contextlib.contextmanager
def _progress_bar():  # noqa: ANN202 - yields progress(done, total, phase)
    """A transient progress bar on stderr for a measured run (shown once it reports); none
    when stderr is no terminal (a CI log gets no bar, and no blank line where it was)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total, phase: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("", total=None, visible=False)

        def progress(done: int, total: int, phase: str) -> None:
            bar.update(task, completed=done, total=total, description=f"measuring: {phase}",
                       visible=True)

        yield progress


def _check_many(models: list[Path], request, fmt: str, output: Path | None,  # noqa: ANN001
                stamp: str | None, top: int | None, verbose: bool, write_baseline: Path | None,
                jobs: int) -> int:
    from memlint.report import FORMATS, combine
    from memlint.runner import lint_many

    if not FORMATS[fmt].many:
        raise OutputError(f"--format {fmt} takes one model per report; lint the models one by one")

    def progress(outcome) -> None:  # noqa: ANN001
        if outcome.error:
            click.echo(f"memlint: error: {_inert(outcome.error)}", err=True)

    outcomes = lint_many(models, request, fmt, top=top, verbose=verbose, jobs=jobs, timestamp=stamp,
                         progress=progress)
    _emit(combine(outcomes, fmt), output)
    if write_baseline is not None:
        from memlint.baseline import render_rows

        rows = [entry for o in outcomes for entry in o.baseline_entries]
        _emit(render_rows(rows), write_baseline)
        click.echo(f"memlint: wrote {len(rows)} baseline entries to {write_baseline}", err=True)
    if any(o.error for o in outcomes):
        return EXIT_ERROR
    if write_baseline is not None:
        return EXIT_OK
    return EXIT_FINDINGS if any(o.fails for o in outcomes) else EXIT_OK


@cli.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@lint_options
@click.option("--format", "fmt", type=click.Choice(("text", "json", "markdown", "html")), default="text", show_default=True, help="html: one self-contained page (the Markdown's content).")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the diff here instead of stdout.")
@click.option("--max-regression", "limits", multiple=True, metavar="METRIC=LIMIT", help="Fail (exit 1) when METRIC grows by more than LIMIT, e.g. latency=5% or bytes=0.1; repeatable. Metrics: latency, latency_fused, kernels, kernels_fused, flops, bytes, weights, activations, kv_cache, memory_bound, findings.")
def diff_command(old: Path, new: Path, fmt: str, output: Path | None, limits: tuple[str, ...],
                 **options) -> int:  # noqa: ANN003
    """Compare two versions of a model: metric deltas, findings new and fixed, regression gates.

    Both are linted with the same device, dims and configuration (found from NEW's folder).
    """
    from memlint.diff import diff, parse_limits
    from memlint.report import diff_render
    from memlint.runner import lint_model

    request = _request(options)
    gates = parse_limits(limits)
    new_report, config = lint_model(new, request)
    old_report, _ = lint_model(old, dataclasses.replace(request, config_file=config.path,
                                                        isolated=request.isolated or config.path is None))
    result = diff(old_report, new_report, gates)
    render = {"text": diff_render.render_text, "json": diff_render.render_json,
              "markdown": diff_render.render_markdown, "html": diff_render.render_html}[fmt]
    _emit(render(result), output)
    return EXIT_FINDINGS if result.regressions else EXIT_OK


@cli.command("fix")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--output", "-o", "out", type=click.Path(path_type=Path), help="Write the fixed model here (a new file; never the input).")
@click.option("--weights-dtype", "precision", type=click.Choice(("fp16", "int8", "int4")), default="fp16", show_default=True, help="What ML106 (wide weights) converts the weights to: fp16 (keep_io_types), or int8 / int4 weight-only MatMulNBits (block 32).")
@click.option("--dry-run", is_flag=True, help="List the transforms that would be applied and the predicted saving of each; write nothing.")
@click.option("--confirm", "confirm_run", is_flag=True, help="Run the input and the output in onnxruntime (CPU) on synthetic inputs (and, for a model with a mask input, again with a padded mask): measured latency, and outputs compared after each transform at its tolerance (exit 2 naming the transform that diverges).")
@click.option("--runs", default=10, show_default=True, type=click.IntRange(min=1), help="Timed runs per model for --confirm.")
@click.option("--format", "fmt", type=click.Choice(("text", "json", "markdown", "html")), default="text", show_default=True, help="html: one self-contained page (memlint diff's, with the transforms and the measured check).")
@click.option("--report", "report_file", type=click.Path(path_type=Path), help="Write the before/after report here instead of stdout.")
@click.option("--example-inputs", default=None, metavar="PACKAGE.MODULE:ATTR", help="For a MODEL given as package.module:factory: a callable returning the example args, or (args, kwargs).")
@lint_options_without_what_if_dtype
def fix_command(model: Path, out: Path | None, precision: str, dry_run: bool, confirm_run: bool,
                runs: int, fmt: str, report_file: Path | None, example_inputs: str | None,
                **options) -> int:  # noqa: ANN003
    """Apply the fixes of MODEL's findings that have an automatic transform, write OUT, and
    prove them: the output is linted with the same options and compared with the input.

    \b
    ML107 layout copies   onnxruntime basic graph optimizations (Transpose optimizer)
    ML102, ML103          onnxruntime transformer optimizer fusions (LayerNorm,
                          SkipLayerNorm, Gelu, attention where its patterns match)
    ML106 wide weights    --weights-dtype: fp16 (float16 converter, keep_io_types),
                          int8 / int4 (MatMulNBitsQuantizer, weight-only)
    Graph fusions run before the precision change. Without the weights file the precision
    change is refused (one line) and the graph transforms still run. A torch target
    (package.module:factory, .pt2) gets the fixes as code and nothing is written.
    Exit 0: written (or dry run); 2: bad input, every transform refused, or --confirm
    outputs diverged (nothing written). See docs/fix.md.
    """
    from memlint.fix import fix_model
    from memlint.fix.render import RENDER

    request = _request(options, example_inputs=example_inputs)
    result = fix_model(model, out, request, weights_dtype=precision, dry_run=dry_run,
                       confirm=confirm_run, runs=runs,
                       announce=lambda line: click.echo(f"memlint: {line}", err=True))
    _emit(RENDER[fmt](result), report_file)
    for step in result.refused:
        click.echo(f"memlint: refused {step.transform.name}: {_inert(step.note)}", err=True)
    if result.steps and not dry_run and not result.applied and not result.advice:
        return EXIT_ERROR  # everything selected was refused
    return EXIT_OK


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@cli.command("rules")
def rules_list() -> int:
    """List every rule: code, name, severity, what it checks, and where it comes from."""
    from memlint.engine import load_rules, rule_info
    from memlint.report.listings import rules_table
    from memlint.report.text import terminal_console

    ruleset = load_rules()
    infos = (rule_info(rule, ruleset.origin[code]) for code, rule in ruleset.rules.items())
    terminal_console().print(rules_table(infos))
    return EXIT_OK


@cli.command("rule")
@click.argument("code")
def rule_show(code: str) -> int:
    """Print the documentation of one rule (by code or name), e.g. `memlint rule ML101`."""
    import difflib

    from memlint.engine import load_rules
    from memlint.errors import ConfigError
    from memlint.ruledoc import rule_doc

    ruleset = load_rules()
    rule = ruleset.get(code)
    if rule is None:
        known = [*ruleset.rules, *(r.name for r in ruleset.rules.values())]
        close = difflib.get_close_matches(code, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else "; `memlint rules` lists them"
        raise ConfigError(f"no rule {code!r}{hint}")
    click.echo(rule_doc(rule, ruleset.origin[rule.code]), nl=False)
    return EXIT_OK


@contextlib.contextmanager
def _reader_may_stop() -> Iterator[None]:
    """Writing to stdout when the reader stops early (`memlint M | head`): the exit code stays
    the gate's, and what is left goes nowhere (so exiting does not fail on it again)."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _emit(text: str, output: Path | None) -> None:
    """Write to stdout, or atomically to a file (never a half-written report; only a regular
    file or a new path is replaced)."""
    from memlint.textio import NotWritable, write_atomically

    if output is None:
        with _reader_may_stop():
            click.echo(text, nl=False)
        return
    try:
        write_atomically(output, text)
    except NotWritable as exc:
        raise OutputError(f"{output}: cannot write the report ({exc})") from None
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the report ({exc.strerror or exc})") from None


@cli.group()
def hw() -> None:
    """Hardware specs: list them, or show one with its sources."""


@hw.command("list")
@click.option("--hw-file", "hw_files", multiple=True, type=click.Path(path_type=Path))
def hw_list(hw_files: tuple[Path, ...]) -> int:
    """List known devices and their aliases."""
    from memlint.hardware import list_specs
    from memlint.report.listings import spec_table
    from memlint.report.text import terminal_console

    terminal_console().print(spec_table(list_specs(hw_files)))
    return EXIT_OK


@hw.command("show")
@click.argument("name")
@click.option("--hw-file", "hw_files", multiple=True, type=click.Path(path_type=Path))
def hw_show(name: str, hw_files: tuple[Path, ...]) -> int:
    """Show one device: every figure, its unit and its source."""
    from memlint.hardware import resolve
    from memlint.report.listings import spec_lines
    from memlint.report.text import terminal_console

    console = terminal_console()
    console.soft_wrap = True  # one line per figure and its source, greppable
    for line in spec_lines(resolve(name, hw_files)):
        console.print(line)
    return EXIT_OK


@hw.command("calibrate")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the spec here (TOML, usable with --hw-file).")
@click.option("--save", is_flag=True, help="Save it as the user spec 'local' (then --hw local works everywhere).")
@click.option("--seconds", default=20.0, show_default=True, type=click.FloatRange(min=1), help="Roughly how long the measurements may take.")
@click.option("--device", type=click.Choice(("auto", "cpu", "gpu")), default="auto", show_default=True, help="auto: the GPU when torch or onnxruntime-gpu reaches one, else the CPU.")
def hw_calibrate(output: Path | None, save: bool, seconds: float, device: str) -> int:
    """Measure this machine (memory bandwidth, peak FLOP/s per dtype, per-kernel overhead) and
    write a hardware spec: to --output, to the user spec folder with --save, else to stdout."""
    import datetime

    from memlint.hardware.calibrate import calibrate
    from memlint.hardware.loader import user_spec_dir

    today = datetime.date.today().isoformat()
    result = calibrate(seconds_budget=seconds, date=today, device=device, name="local",
                       progress=lambda what: click.echo(f"memlint: measuring {what}", err=True))
    for figure in result.figures:  # what was measured, before where it was written
        click.echo(f"memlint:   {figure.field.removeprefix('peaks.'):<26} {figure.value:>9.4g} "
                   f"{figure.unit}", err=True)
    for warning in result.warnings:
        click.echo(f"memlint: warning: {warning}", err=True)
    if save:
        folder = user_spec_dir()
        folder.mkdir(parents=True, exist_ok=True)
        _emit(result.toml, folder / "local.toml")
        click.echo(f"memlint: saved {folder / 'local.toml'} (use --hw local)", err=True)
    if output is not None or not save:
        _emit(result.toml, output)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one clear line and exit 2 for anything that stops the tool."""
    # A lint allocates many small objects that live for the whole run (the IR, costs, the
    # report); the default GC thresholds rescan them again and again (0.25 s of a 14k-node lint).
    gc.set_threshold(50_000, 20, 20)
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args or bool(os.environ.get("MEMLINT_DEBUG"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(name)s: %(message)s")
    try:
        code = cli.main(args=args, prog_name="memlint", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = EXIT_ERROR
    except click.exceptions.Abort:
        click.echo("memlint: interrupted", err=True)
        code = 130
    except KeyboardInterrupt:
        click.echo("memlint: interrupted", err=True)
        code = 130
    except MemlintError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"memlint: error: {_inert(str(exc))}", err=True)
        code = EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the user gets one line, --debug shows the rest
        if debug:
            traceback.print_exc()
        click.echo(f"memlint: internal error: {type(exc).__name__}: {_inert(str(exc))} (rerun with --debug)", err=True)
        code = EXIT_ERROR
    return code if isinstance(code, int) else EXIT_OK


def _inert(text: str) -> str:
    """An error message may quote a model's names: their control characters print escaped."""
    from memlint.report.lines import inert

    return inert(text)


def run() -> None:
    """The `memlint` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
