"""SARIF 2.1.0 for code scanning (GitHub, Azure DevOps, SARIF viewers): one run, one result per
finding; findings hidden by a configured suppression are results with a `suppressions` entry.

The output is deterministic (sorted keys, no timestamp unless one is given), so a SARIF file
only changes when a finding does. `partialFingerprints` lets code scanning match a finding
across runs: it hashes the rule code, the model file's base name and the sorted node names, so
it survives moving the model file and reordering its nodes.

Message texts quote node names from the model, so they are plain text that cannot act: SARIF
viewers turn "[text](target)" in a plain-text message into a link (SARIF 2.1.0, 3.11.6), so a
message holding "](" has its brackets escaped ("\\[", "\\]"), and control characters are
written as visible escapes. Logical locations keep node names exactly (they identify nodes).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

from memlint import units
from memlint._version import __version__
from memlint.core.report import Report
from memlint.findings import Finding, Severity, Suppressed
from memlint.report.lines import inert

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://github.com/memlint/memlint"  # placeholder until the project has a home
FINGERPRINT_KEY = "memlint/v1"
RULE_TAGS = ("memory-wall", "performance")
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
# A graph node is one call of an operator, and ONNX defines operators as functions (an op may be
# a FunctionProto; torch.fx calls them call_function). Of the kinds SARIF 2.1.0 lists for a
# logical location (section 3.33.7), "function" is the one for a unit of computation; the others
# describe declarations ("type", "module", "namespace"), data ("variable", "value") or XML.
NODE_KIND = "function"


def render(report: Report, *, timestamp: str | None = None) -> str:
    """The report as a SARIF log; `timestamp` (ISO 8601 UTC) adds an invocation with it."""
    return json.dumps(to_dict(report, timestamp=timestamp), indent=2, sort_keys=True,
                      allow_nan=False) + "\n"


def to_dict(report: Report, *, timestamp: str | None = None) -> dict[str, Any]:
    rules = _rule_descriptors(report)
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    results = [_result(report, f, index) for f in report.findings]
    results += [_suppressed_result(report, s, index) for s in report.suppressed]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "memlint",
                "version": __version__,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }
        },
        "results": results,
        "properties": {
            "hardware": report.hardware.name,
            "dims": dict(report.dims),
            "predicted_latency_s": _number(report.summary.predicted_latency_s),
            "memory_bound_fraction": _number(report.summary.memory_bound_fraction),
        },
    }
    m = report.measurement
    if m is not None:
        run["properties"]["measurement"] = {
            "runtime": m.runtime, "provider": m.provider, "runs": m.runs,
            "unoptimised_latency_s": _number(m.unoptimised_latency_s),
            "optimised_latency_s": _number(m.optimised_latency_s),
            "total_error": _number(m.total_error), "rank_correlation": _number(
                m.rank_correlation.rho),
        }
    if timestamp is not None:
        run["invocations"] = [{"executionSuccessful": True, "startTimeUtc": timestamp}]
    return {"$schema": SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


# -- shared with memlint.report.github -------------------------------------------------------


def report_path(path: str) -> str:
    """`path` relative to the current directory when it lies inside it, else absolute; forward
    slashes either way (CI annotations and code scanning resolve paths from the checkout)."""
    cwd = Path.cwd()
    lexical, real = Path(os.path.abspath(path)), Path(path).resolve()
    for candidate, base in ((lexical, cwd), (real, cwd.resolve())):  # real: through symlinks
        try:
            return candidate.relative_to(base).as_posix()
        except ValueError:
            continue
    return lexical.as_posix()


def location_of(report: Report, finding: Finding) -> tuple[str, int | None]:
    """(file, line): the finding's source file and line when the frontend knows them, else the
    model file and no line."""
    if finding.source is not None:
        line = finding.source.line if finding.source.line >= 1 else None
        return report_path(finding.source.file), line
    return report_path(report.model.source), None


def finding_text(finding: Finding, report: Report | None = None) -> str:
    """The finding's message, then one line per fix with the time it saves, then (when the
    report has a --confirm run) the measured verdict."""
    lines = [finding.message]
    for fix in finding.fixes:
        saving = f" (saves {units.seconds(fix.saving_s)})" if fix.saving_s else ""
        lines.append(f"fix: {fix.text}{saving}")
    check = measured_check(report, finding)
    if check is not None:
        lines.append(f"measured: {check.verdict.value}: {check.reason}")
    return "\n".join(lines)


def measured_check(report: Report | None, finding: Finding) -> Any:
    """The --confirm verdict on `finding` (a memlint.confirm.FindingCheck), or None."""
    if report is None or report.measurement is None:
        return None
    return report.measurement.check_for(finding)


def plain_text(text: str) -> str:
    """A SARIF plain-text message that shows `text` as written: no control characters, and no
    embedded link (brackets escaped when the text holds "](")."""
    text = inert(text, keep="\n")
    if "](" in text:
        text = text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return text


def unwrap(text: str) -> str:
    """Docstring paragraphs as single lines (viewers wrap plain text themselves)."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())


def fingerprint(report: Report, finding: Finding) -> str:
    """sha256 of code, model file base name and sorted node names (stable across moves)."""
    identity = PurePath(report.model.source).name
    key = "\0".join((finding.code, identity, *sorted(finding.nodes)))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# -- SARIF objects -----------------------------------------------------------------------------


def _rule_descriptors(report: Report) -> list[dict[str, Any]]:
    """Every rule that ran (plus, defensively, any code a finding carries that did not)."""
    findings = [*report.findings, *(s.finding for s in report.suppressed)]
    ran = {rule.code for rule in report.rules}
    descriptors: list[dict[str, Any]] = [
        {
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": unwrap(rule.description)},
            "help": {"text": rule.doc, "markdown": rule.doc},
            "defaultConfiguration": {"level": LEVELS[rule.severity]},
            "properties": {"tags": list(RULE_TAGS)},
        }
        for rule in report.rules
    ]
    names = {f.code: f.name for f in findings}
    descriptors += [{"id": code, "name": names[code]} for code in sorted(set(names) - ran)]
    return descriptors


def _result(report: Report, finding: Finding, index: dict[str, int]) -> dict[str, Any]:
    file, line = location_of(report, finding)
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(file)}}
    if line is not None:
        physical["region"] = {"startLine": line}
    graph = report.model.graph.name
    location: dict[str, Any] = {"physicalLocation": physical}
    if finding.nodes:
        location["logicalLocations"] = [
            {"name": node, "fullyQualifiedName": f"{graph}/{node}", "kind": NODE_KIND}
            for node in finding.nodes
        ]
    properties: dict[str, Any] = {
        "time_s": _number(finding.time_s),
        "share": _number(finding.share),
        "saving_s": _number(finding.saving_s),
        "count": finding.count,
        "evidence": {m.name: _number(m.value) for m in finding.evidence},
    }
    check = measured_check(report, finding)
    if check is not None:
        properties["measured"] = {
            "verdict": check.verdict.value, "predicted_s": _number(check.predicted_s),
            "measured_s": _number(check.measured_s), "compute_share": _number(check.compute_share),
            "memory_share": _number(check.memory_share),
        }
    return {
        "ruleId": finding.code,
        "ruleIndex": index[finding.code],
        "level": LEVELS[finding.severity],
        "message": {"text": plain_text(finding_text(finding, report))},
        "locations": [location],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(report, finding)},
        "properties": properties,
    }


def _suppressed_result(report: Report, hidden: Suppressed, index: dict[str, int]) -> dict[str, Any]:
    result = _result(report, hidden.finding, index)
    result["suppressions"] = [{"kind": "external", "justification": plain_text(hidden.reason)}]
    return result


def _uri(path: str) -> str:
    """A URI reference: relative paths percent-encoded, absolute ones as file:// URIs."""
    if os.path.isabs(path):
        return Path(path).as_uri()
    return quote(path)


def _number(value: float | None) -> float | str | None:
    """JSON has no inf or nan: such values become the strings "inf", "-inf", "nan"."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def combine(outcomes: Sequence) -> str:
    """Many models: one SARIF log whose runs are every model's run."""
    documents = [json.loads(o.rendered) for o in outcomes if not o.error]
    if not documents:
        return json.dumps({"version": "2.1.0", "runs": []}, indent=2) + "\n"
    merged = dict(documents[0])
    merged["runs"] = [run for doc in documents for run in doc.get("runs", [])]
    return json.dumps(merged, indent=2, sort_keys=True) + "\n"
