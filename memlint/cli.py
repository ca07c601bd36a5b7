"""Command line: parse -> options -> api.lint -> render -> exit code. Thin on purpose.

Exit codes: 0 clean, 1 findings at or above --fail-on, 2 the tool could not do its job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

import click

from memlint import __version__
from memlint.errors import MemlintError, OutputError

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
FORMATS = ("text", "json", "markdown", "html", "sarif", "github")
FAIL_ON = ("error", "warning", "info", "never")
DEFAULT_HARDWARE = "a100"
DEFAULT_FAIL_ON = "warning"


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


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--hw", "hw", default=None, help="Device name or alias (memlint hw list).  [default: a100, or `hw` in the config]")
@click.option("--hw-file", "hw_files", multiple=True, type=click.Path(path_type=Path), help="Extra hardware spec file (TOML/YAML); repeatable.")
@click.option("--dim", "dims", multiple=True, metavar="NAME=VALUE", help="Bind a symbolic dim; repeatable.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D0,D1,...", help="Whole shape of an input whose dims have no name; repeatable.")
@click.option("--strict-dims", is_flag=True, help="Fail instead of assuming 1 for unbound dims.")
@click.option("--tf32", is_flag=True, default=None, help="Let fp32 matmuls run at the TF32 tensor-core peak.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the report here instead of stdout.")
@click.option("--timestamp", is_flag=True, help="Stamp the report with the time it was made (reports are otherwise byte-identical run to run).")
@click.option("--top", default=15, show_default=True, type=click.IntRange(min=0), help="Operators in the text table.")
@click.option("--select", multiple=True, metavar="CODES", help="Only these rule codes or prefixes (comma-separated; replaces the config's).")
@click.option("--ignore", multiple=True, metavar="CODES", help="Skip these rule codes or prefixes (comma-separated; adds to the config's).")
@click.option("--severity", "severities", multiple=True, metavar="CODE=LEVEL", help="Override a rule's severity (info, warning, error); repeatable.")
@click.option("--rule-option", "rule_options", multiple=True, metavar="CODE.OPTION=VALUE", help="Set a rule option; repeatable (memlint rule CODE lists them).")
@click.option("--min-share", type=click.FloatRange(min=0), default=None, help="Hide findings under this share of predicted time whose fix also saves under --min-saving-s.  [default: 0.01]")
@click.option("--min-saving-s", type=click.FloatRange(min=0), default=None, help="See --min-share (seconds).  [default: 0.001]")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="Config file (memlint.toml or pyproject.toml) instead of the one found from the model's folder.")
@click.option("--isolated", is_flag=True, help="Ignore configuration files.")
@click.option("--fail-on", type=click.Choice(FAIL_ON), default=None, help="Exit 1 when a finding has at least this severity.  [default: warning]")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
def check(
    model: Path,
    hw: str | None,
    hw_files: tuple[Path, ...],
    dims: tuple[str, ...],
    input_shapes: tuple[str, ...],
    strict_dims: bool,
    tf32: bool | None,
    fmt: str,
    output: Path | None,
    timestamp: bool,
    top: int,
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    severities: tuple[str, ...],
    rule_options: tuple[str, ...],
    min_share: float | None,
    min_saving_s: float | None,
    config_file: Path | None,
    isolated: bool,
    fail_on: str | None,
    debug: bool,
) -> int:
    """Lint MODEL (an .onnx file, or an export directory holding model.onnx).

    Settings come from the nearest memlint.toml or [tool.memlint] in pyproject.toml above the
    model (see --config, --isolated); flags override them.
    """
    from memlint.api import lint
    from memlint.config import (
        Config,
        load_config,
        parse_rule_option_flags,
        parse_severity_flags,
    )
    from memlint.frontends.dims import parse_dim_flags, parse_shape_flags

    if isolated:
        config = Config()
    else:
        config = load_config(config_file, start=model if config_file is None else None)
    config = config.with_flags(
        select=_split(select),
        ignore=_split(ignore),
        severity=parse_severity_flags(severities),
        rule_options=parse_rule_option_flags(rule_options),
    )
    if min_share is not None:
        config = dataclasses.replace(config, min_share=min_share)
    if min_saving_s is not None:
        config = dataclasses.replace(config, min_saving_s=min_saving_s)
    report = lint(
        model,
        hw=hw or config.hw or DEFAULT_HARDWARE,
        hw_files=hw_files,
        dims=parse_dim_flags(dims),
        input_shapes=parse_shape_flags(input_shapes),
        strict_dims=strict_dims,
        tf32=bool(config.tf32) if tf32 is None else tf32,
        config=config,
    )
    if fmt == "text" and output is None:
        from memlint.report.text import render_to, terminal_console

        render_to(terminal_console(), report, top=top)
    else:
        from memlint.report import render

        _emit(render(report, fmt, top=top, timestamp=_now() if timestamp else None), output)
    threshold = fail_on or config.fail_on or DEFAULT_FAIL_ON
    return EXIT_FINDINGS if _fails(report.findings, threshold) else EXIT_OK


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fails(findings: tuple, fail_on: str) -> bool:
    """True when a finding is at least as severe as `fail_on` ("never" never fails)."""
    if fail_on == "never":
        return False
    from memlint.findings import Severity

    floor = Severity.parse(fail_on).rank
    return any(f.severity.rank >= floor for f in findings)


@cli.command("rules")
def rules_list() -> int:
    """List every rule: code, name, severity, what it checks, and where it comes from."""
    from rich.table import Table

    from memlint.engine import load_rules
    from memlint.report.text import terminal_console

    ruleset = load_rules()
    table = Table(box=None)
    table.add_column("code", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("summary")
    table.add_column("from", no_wrap=True)
    for code, rule in ruleset.rules.items():
        table.add_row(code, rule.name, rule.severity.value, rule.summary, ruleset.origin[code])
    terminal_console().print(table)
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


def _emit(text: str, output: Path | None) -> None:
    """Write to stdout, or atomically to a file (never a half-written report)."""
    if output is None:
        click.echo(text, nl=False)
        return
    directory = output.parent if str(output.parent) else Path(".")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{output.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, output)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise OutputError(f"{output}: cannot write the report ({exc.strerror or exc})") from None


@cli.group()
def hw() -> None:
    """Hardware specs: list them, or show one with its sources."""


@hw.command("list")
@click.option("--hw-file", "hw_files", multiple=True, type=click.Path(path_type=Path))
def hw_list(hw_files: tuple[Path, ...]) -> int:
    """List known devices and their aliases."""
    from rich.table import Table

    from memlint import units
    from memlint.hardware import list_specs
    from memlint.ir import ComputeUnit, DType
    from memlint.report.text import terminal_console

    table = Table(box=None)
    table.add_column("name", no_wrap=True)  # what users type after --hw: never cut
    for column in ("aliases", "memory BW", "fp16 tensor", "capacity"):
        table.add_column(column)
    for spec in list_specs(hw_files):
        fp16 = spec.peak_for(DType.FLOAT16, ComputeUnit.TENSOR)
        table.add_row(
            spec.name,
            ", ".join(spec.aliases),
            units.si(spec.memory_bandwidth_bytes_per_s, "B/s"),
            units.si(fp16.flops_per_s, "FLOP/s"),
            units.nbytes(spec.memory_capacity_bytes),
        )
    terminal_console().print(table)
    return EXIT_OK


@hw.command("show")
@click.argument("name")
@click.option("--hw-file", "hw_files", multiple=True, type=click.Path(path_type=Path))
def hw_show(name: str, hw_files: tuple[Path, ...]) -> int:
    """Show one device: every figure, its unit and its source."""
    from rich.markup import escape

    from memlint import units
    from memlint.hardware import resolve
    from memlint.report.text import terminal_console

    spec = resolve(name, hw_files)
    console = terminal_console()
    console.soft_wrap = True  # one line per figure and its source, greppable
    console.print(f"[bold]{escape(spec.display_name)}[/bold] ({escape(spec.name)}, {spec.kind})")
    if spec.aliases:
        console.print(f"aliases: {escape(', '.join(spec.aliases))}")
    rows = [
        ("memory_bandwidth", units.si(spec.memory_bandwidth_bytes_per_s, "B/s")),
        ("memory_capacity", units.nbytes(spec.memory_capacity_bytes)),
        ("l2_cache", spec.l2_cache_bytes and units.nbytes(spec.l2_cache_bytes)),
        ("interconnect_bandwidth", spec.interconnect_bandwidth_bytes_per_s and units.si(spec.interconnect_bandwidth_bytes_per_s, "B/s")),
        ("kernel_overhead", spec.kernel_overhead_s and units.seconds(spec.kernel_overhead_s)),
    ]
    for key, value in rows:
        if value:
            console.print(f"  {key:<24} {value:<14} {escape(spec.sources.get(key, ''))}")
    console.print("dense peaks (ridge point = peak / memory bandwidth):")
    for key, value in sorted(spec.peak_flops_per_s.items()):
        ridge = value / spec.memory_bandwidth_bytes_per_s
        console.print(
            f"  {key:<24} {units.si(value, 'FLOP/s'):<14} ridge {ridge:.3g} FLOP/B  "
            f"{escape(spec.sources.get(key, ''))}"
        )
    if spec.notes:
        console.print(f"notes: {escape(spec.notes)}")
    if spec.origin:
        console.print(f"from: {escape(spec.origin)}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one clear line and exit 2 for anything that stops the tool."""
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
        click.echo(f"memlint: error: {exc}", err=True)
        code = EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the user gets one line, --debug shows the rest
        if debug:
            traceback.print_exc()
        click.echo(f"memlint: internal error: {type(exc).__name__}: {exc} (rerun with --debug)", err=True)
        code = EXIT_ERROR
    return code if isinstance(code, int) else EXIT_OK


def run() -> None:
    """The `memlint` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
