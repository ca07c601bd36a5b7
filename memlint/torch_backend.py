"""torch.compile backend: `torch.compile(model, backend="memlint", options={...})`.

Every graph dynamo captures is linted like `memlint.lint(module, example_inputs=...)` (the graph
is re-captured with torch.export and lowered by memlint.frontends.fx), the findings are logged
on the "memlint" logger, and the graph's own forward is returned, so the model runs unchanged
(eagerly, graph by graph).

torch finds the backend by name through the `torch_dynamo_backends` entry point
(pyproject.toml); torch.compile passes its `options` dict as the keyword `options`:

- "hw": the device spec name (default memlint.api.DEFAULT_HARDWARE), or a HardwareSpec;
- "hw_files": extra hardware files;
- "strict": raise a MemlintError when a finding at or above "fail_on" exists (default False:
  log only). Dynamo wraps what a backend raises in torch._dynamo.exc.BackendCompilerFailed,
  whose `inner_exception` is the MemlintError;
- "fail_on": the severity that fails strict mode, "info", "warning" (default) or "error";
- "config": a memlint.config.Config (rule selection, options, suppressions);
- "tf32": let fp32 matmuls use the TF32 peak;
- "on_report": a callable given each graph's Report (for tools and tests).

Without strict mode a graph memlint cannot lint is logged as a warning and still runs.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from memlint import api
from memlint.errors import ConfigError, MemlintError
from memlint.findings import Finding, Severity

log = logging.getLogger("memlint")

_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING,
           Severity.ERROR: logging.ERROR}  # fmt: skip
_OPTIONS = frozenset({"hw", "hw_files", "strict", "fail_on", "config", "tf32", "on_report"})
_graphs = itertools.count(1)


def memlint_backend(
    gm: Any,
    example_inputs: Sequence[Any],
    *,
    options: Mapping[str, Any] | None = None,
    mode: str | None = None,
) -> Callable[..., Any]:
    """Lint one dynamo graph, log its findings, return its forward (see the module docstring)."""
    opts = dict(options or {})
    unknown = sorted(set(opts) - _OPTIONS)
    if unknown:
        raise ConfigError(
            f"memlint backend: unknown option(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_OPTIONS))})"
        )
    strict = bool(opts.get("strict", False))
    fail_on = Severity.parse(opts.get("fail_on", "warning"))
    label = f"torch.compile graph {next(_graphs)}"
    try:
        report = lint_graph(gm, example_inputs, label=label, **_lint_options(opts))
    except MemlintError as exc:
        if strict:
            raise
        log.warning("memlint: %s not linted: %s", label, exc)
        return gm.forward
    if opts.get("on_report") is not None:
        opts["on_report"](report)
    log_findings(report.findings, label, report.hardware.name)
    failing = [f for f in report.findings if f.severity.rank >= fail_on.rank]
    if strict and failing:
        codes = ", ".join(sorted({f.code for f in failing}))
        raise MemlintError(
            f"{label}: {len(failing)} finding(s) at or above {fail_on.value} ({codes}); "
            "see the 'memlint' log"
        )
    return gm.forward


def lint_graph(gm: Any, example_inputs: Sequence[Any], *, label: str, **lint_options: Any):
    """The Report of one dynamo graph, linted as memlint.lint lints a module."""
    from memlint.frontends.fx import from_dynamo

    model = from_dynamo(gm, example_inputs, label)
    return api.lint(model, **lint_options)


def log_findings(findings: Sequence[Finding], label: str, hardware: str) -> None:
    """One record per finding on the "memlint" logger, at the finding's severity; the Finding
    rides along as `record.memlint_finding`."""
    log.info("memlint: %s on %s: %d finding(s)", label, hardware, len(findings))
    for finding in findings:
        where = f"{finding.source.file}:{finding.source.line}: " if finding.source else ""
        nodes = f" [{finding.group or ', '.join(finding.nodes[:3])}]" if finding.nodes else ""
        log.log(
            _LEVELS[finding.severity],
            "%s%s %s%s: %s", where, finding.code, finding.name, nodes, finding.message,
            extra={"memlint_finding": finding},
        )  # fmt: skip


def _lint_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    picked = {key: opts[key] for key in ("hw", "hw_files", "config", "tf32") if key in opts}
    picked.setdefault("hw", api.DEFAULT_HARDWARE)
    return picked
