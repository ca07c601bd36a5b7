"""GitHub Actions workflow commands: one annotation per finding, then a summary notice.

    ::warning file=sample_models/gpt2.onnx,title=ML101 low-intensity-matmul::/lm_head/MatMul: ...

Escaping follows @actions/core (toolkit, src/command.ts): message data escapes `%`, CR and LF;
property values (file, line, title) also escape `:` and `,`. `%` goes first, so an escape is
never escaped twice. Other control characters (ESC would colour the Actions log) are written
as visible escapes ("\\x1b") first: names from a model stay data. GitHub shows a limited number of annotations per step, so findings come
in the report's order: largest saving first. Suppressed findings get no annotation.
"""

from __future__ import annotations

from collections import Counter

from memlint import units
from memlint.core.report import Report
from memlint.findings import Finding, Severity
from memlint.report.sarif import finding_text, location_of, report_path
from memlint.report.lines import inert

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
_DATA_ESCAPES = (("%", "%25"), ("\r", "%0D"), ("\n", "%0A"))
_PROPERTY_ESCAPES = (*_DATA_ESCAPES, (":", "%3A"), (",", "%2C"))
NODES_SHOWN = 3


def render(report: Report) -> str:
    lines = [_annotation(report, f) for f in report.findings]
    lines.append(command("notice", _summary(report), title="memlint"))
    return "\n".join(lines) + "\n"


def escape_data(text: str) -> str:
    text = inert(text, keep="\r\n")
    for raw, escaped in _DATA_ESCAPES:
        text = text.replace(raw, escaped)
    return text


def escape_property(text: str) -> str:
    text = inert(text, keep="\r\n")
    for raw, escaped in _PROPERTY_ESCAPES:
        text = text.replace(raw, escaped)
    return text


def command(name: str, message: str, **properties: str | int | None) -> str:
    """`::name key=value,...::message`, escaped; properties that are None are left out."""
    props = ",".join(
        f"{key}={escape_property(str(value))}" for key, value in properties.items()
        if value is not None
    )
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def _annotation(report: Report, finding: Finding) -> str:
    file, line = location_of(report, finding)
    where = _nodes(finding)
    text = finding_text(finding, report)
    return command(
        COMMANDS[finding.severity],
        f"{where}: {text}" if where else text,
        file=file,
        line=line,
        title=f"{finding.code} {finding.name}",
    )


def _nodes(finding: Finding) -> str:
    """The group line of a grouped finding, else the first few node names."""
    if finding.group:
        return finding.group
    shown = ", ".join(finding.nodes[:NODES_SHOWN])
    more = len(finding.nodes) - NODES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _summary(report: Report) -> str:
    summary = report.summary
    counts = Counter(f.severity.value for f in report.findings)
    parts = [f"{counts[s]} {s}" for s in ("error", "warning", "info") if counts[s]]
    tally = f"{len(report.findings)} finding(s)" + (f" ({', '.join(parts)})" if parts else "")
    if report.hidden_as_noise:
        tally += f", {report.hidden_as_noise} hidden as noise"
    if report.suppressed:
        tally += f", {len(report.suppressed)} suppressed"
    measured = ""
    m = report.measurement
    if m is not None:
        measured = (f"; measured {units.seconds(m.unoptimised_latency_s)} as written with "
                    f"{m.runtime} {m.provider} (prediction error {100 * m.total_error:+.1f}%)")
    return (
        f"{report_path(report.model.source)} on {report.hardware.display_name}: predicted "
        f"latency {units.seconds(summary.predicted_latency_s)}, "
        f"{units.percent(summary.memory_bound_fraction)} memory-bound{measured}; {tally}"
    )
