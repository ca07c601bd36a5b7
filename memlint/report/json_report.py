"""JSON rendering: the documented, versioned schema (docs/json-schema.md)."""

from __future__ import annotations

import json
from typing import Any

from memlint._version import __version__
from memlint.costs import ByteCounts
from memlint.findings import Finding
from memlint.core.report import CONVENTIONS, SCHEMA_VERSION, NodeResult, Report


def _kinds(counts: ByteCounts) -> dict[str, int]:
    return {"weights": counts.weights, "activations": counts.activations, "kv_cache": counts.kv_cache}


def _node(node: NodeResult) -> dict[str, Any]:
    cost = node.cost
    return {
        "name": node.name,
        "op_type": node.op_type,
        "domain": node.domain,
        "flops": cost.flops,
        "bytes_read": cost.bytes_read.total,
        "bytes_written": cost.bytes_written.total,
        "bytes_read_by_kind": _kinds(cost.bytes_read),
        "bytes_written_by_kind": _kinds(cost.bytes_written),
        "intensity": cost.intensity,
        "bound": node.timing.bound.value,
        "predicted_latency_s": node.timing.predicted_latency_s,
        "peak": node.timing.peak_key,
        "status": cost.status.value,
        "note": cost.note,
        "source": None if node.source is None else f"{node.source.file}:{node.source.line}",
    }


def to_dict(report: Report) -> dict[str, Any]:
    summary, coverage, spec, model = report.summary, report.coverage, report.hardware, report.model
    return {
        "schema_version": SCHEMA_VERSION,
        "memlint_version": __version__,
        "model": {
            "source": model.source,
            "format": model.format,
            "producer": model.producer,
            "opsets": dict(model.opsets),
        },
        "hardware": {
            "name": spec.name,
            "display_name": spec.display_name,
            "memory_bandwidth_bytes_per_s": spec.memory_bandwidth_bytes_per_s,
            "memory_capacity_bytes": spec.memory_capacity_bytes,
            "peak_flops_per_s": dict(spec.peak_flops_per_s),
            "kernel_overhead_s": spec.kernel_overhead_s,
            "ridge_point": summary.ridge_point,
            "ridge_point_peak": summary.ridge_peak_key,
            "tf32": report.tf32,
        },
        "conventions": list(CONVENTIONS),
        "summary": {
            "flops": summary.flops,
            "bytes_read": summary.bytes_read.total,
            "bytes_written": summary.bytes_written.total,
            "bytes_by_kind": _kinds(summary.bytes_by_kind),
            "intensity": summary.intensity,
            "predicted_latency_s": summary.predicted_latency_s,
            "memory_bound_fraction": summary.memory_bound_fraction,
            "hardware": spec.name,
            "dims": dict(report.dims),
            "assumed_dims": list(report.assumed_dims),
            "coverage": {
                "nodes_total": coverage.nodes_total,
                "nodes_modelled": coverage.nodes_modelled,
                "unmodelled_ops": dict(coverage.unmodelled_ops),
                "unresolved_nodes": coverage.unresolved_nodes,
                "bytes_lower_bound": coverage.bytes_lower_bound,
                "tensors_total": coverage.tensors_total,
                "tensors_resolved": coverage.tensors_resolved,
            },
        },
        "nodes": [_node(n) for n in report.nodes],
        "llm": _llm(report),
        "measurement": _measurement(report),
        "findings": [_finding(f) for f in report.findings],
        "rules_run": list(report.rules_run),
        "hidden_as_noise": report.hidden_as_noise,
        "suppressed": [
            {**_finding(s.finding), "suppressed_by": s.pattern, "reason": s.reason}
            for s in report.suppressed
        ],
        "baseline": None if report.baseline is None else {
            "path": report.baseline.path,
            "known": [_finding(f) for f in report.baseline.known],
            "fixed": [{"code": e.code, "model": e.model, "node": e.node}
                      for e in report.baseline.fixed],
        },
        "unused_suppressions": [
            {"code": s.code, "nodes": s.nodes, "reason": s.reason}
            for s in report.unused_suppressions
        ],
    }


def _llm(report: Report) -> dict[str, Any] | None:
    """The LLM sections (docs/llm.md), or None for a model without a KV cache."""
    if report.llm is None:
        return None
    from memlint.report.llm_view import sections_dict

    return sections_dict(report.llm)


def _measurement(report: Report) -> dict[str, Any] | None:
    """The measured run of --confirm (docs/confirm.md), or None."""
    if report.measurement is None:
        return None
    from memlint.report.sections import measurement_dict

    return measurement_dict(report.measurement)


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "code": finding.code,
        "name": finding.name,
        "severity": finding.severity.value,
        "message": finding.message,
        "nodes": list(finding.nodes),
        "count": finding.count,
        "group": finding.group,
        "time_s": finding.time_s,
        "share": finding.share,
        "saving_s": finding.saving_s,
        "evidence": [{"name": m.name, "value": m.value, "unit": m.unit} for m in finding.evidence],
        "fixes": [{"text": f.text, "saving_s": f.saving_s} for f in finding.fixes],
        "source": None if finding.source is None else f"{finding.source.file}:{finding.source.line}",
    }


def render(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, sort_keys=False) + "\n"
