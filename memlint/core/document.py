"""The JSON document of a report (docs/json-schema.md): raw numbers, units in the key names.

Report.to_dict() returns document(report), and the json format prints exactly that; other
tools read it as a public API. Typed data in, plain dicts out: nothing here formats a number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memlint._version import __version__
from memlint.analysis.structure import describe
from memlint.costs import ByteCounts
from memlint.findings import Finding

if TYPE_CHECKING:  # the types this module reads; core.report imports this module
    from memlint.core.llm import (
        Crossover,
        Generation,
        LlmSections,
        PrecisionGain,
        Serving,
        StepTotals,
        Sweep,
        TensorParallel,
    )
    from memlint.core.measurement import Measurement
    from memlint.core.report import NodeResult, Report
    from memlint.core.whatif import AsWritten, BlockTotals, WhatIf

SCHEMA_VERSION = 1

CONVENTIONS = (
    "A multiply-accumulate is 2 FLOPs; element-wise ops count per output element "
    "(docs/cost-model.md lists the count of every composite op).",
    "Bytes are counted per operator as written (unfused): each input read once, each output "
    "written once, at its dtype's bit width (int4 = half a byte); weights, activations and KV "
    "cache counted apart. Metadata-only ops (Reshape, Shape, ...) move no bytes; constant "
    "subgraphs are folded at load and cost nothing per run.",
    "Quantized graphs are costed as runtimes run them: a weight DequantizeLinear folds into its "
    "consumer (the weight read at its stored width), activation QuantizeLinear/DequantizeLinear "
    "pairs are the quantized op's input and output (docs/quantization.md).",
    "The KV cache is the cache: its inputs are read and the new tokens written; copies of it "
    "(Concat into present, Transpose, GQA Expand, Cast) are activation traffic, and capacity "
    "figures count the cache, never its copies.",
    "Predicted time of an operator = max(FLOPs / dense peak for its dtype and unit, "
    "bytes / memory bandwidth) + the per-kernel launch cost where the spec gives one (GPU "
    "specs; none with --cuda-graphs).",
    "Two estimates: as written (every operator that moves bytes or computes is a kernel) and "
    "fused (attention with the KV cache read once and updated in place, element-wise chains "
    "and norms, epilogues of matrix products and projections that share an input each one "
    "kernel reading its inputs once; shape arithmetic on the host), each with its kernel "
    "count.",
    "Unmodelled operators are never counted as zero: their bytes are a lower bound and the "
    "coverage says how many there are.",
    "A finding's saving is the predicted time its fix removes from the nodes it concerns; "
    "savings of different findings can overlap (e.g. quantizing the same weights), so they do "
    "not add up.",
)


def _kinds(counts: ByteCounts) -> dict[str, int]:
    return {"weights": counts.weights, "activations": counts.activations, "kv_cache": counts.kv_cache}


def _block(block: BlockTotals) -> dict[str, Any]:
    return {
        "nodes": block.nodes,
        "flops": block.flops,
        "bytes_read": block.bytes_read.total,
        "bytes_written": block.bytes_written.total,
        "bytes_by_kind": _kinds(block.bytes_by_kind),
        "intensity": block.intensity,
        "predicted_latency_s": block.predicted_latency_s,
    }


def _what_if(what_if: WhatIf | None) -> dict[str, Any] | None:
    if what_if is None:
        return None
    return {
        "weights_dtype": what_if.weights_dtype,
        "act_dtype": what_if.act_dtype,
        "kv_dtype": what_if.kv_dtype,
        "exclude_blocks": list(what_if.exclude_blocks),
        "unchanged": list(what_if.unchanged),
    }


def _as_written(totals: AsWritten | None) -> dict[str, Any] | None:
    if totals is None:
        return None
    return {
        "flops": totals.flops,
        "bytes_read": totals.bytes_read.total,
        "bytes_written": totals.bytes_written.total,
        "bytes_by_kind": _kinds(totals.bytes_read + totals.bytes_written),
        "intensity": totals.intensity,
        "predicted_latency_s": totals.predicted_latency_s,
    }


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


def _dim_sources(report: Report) -> dict[str, Any]:
    """{"dim_sources": {dim: "config.json image_size"}} for the dims an export's own files gave,
    and for the LLM scenario defaults (also in assumed_dims): {dim: "LLM default context"};
    nothing when there are none (the document of other models is unchanged)."""
    sources = {d.name: d.source for d in report.model.dims if d.source}
    return {"dim_sources": dict(sorted(sources.items()))} if sources else {}


def document(report: Report) -> dict[str, Any]:
    """The JSON report's document (docs/json-schema.md): what Report.to_dict() returns."""
    summary, coverage, spec, model = report.summary, report.coverage, report.hardware, report.model
    return {
        "schema_version": SCHEMA_VERSION,
        "memlint_version": __version__,
        "model": {
            "source": model.source,
            "format": model.format,
            "producer": model.producer,
            "opsets": dict(model.opsets),
        } | ({"input_values": dict(model.input_values)} if model.input_values else {})
          | ({"control_flow": list(model.control_flow)} if model.control_flow else {}),
        "hardware": {
            "name": spec.name,
            "display_name": spec.display_name,
            "memory_bandwidth_bytes_per_s": spec.memory_bandwidth_bytes_per_s,
            "memory_capacity_bytes": spec.memory_capacity_bytes,
            "peak_flops_per_s": dict(spec.peak_flops_per_s),
            "kernel_overhead_s": spec.kernel_overhead_s,
            # the figures by access pattern (docs/hardware.md; null: the spec has none)
            "weight_streaming_bandwidth_bytes_per_s": spec.weight_streaming_bandwidth_bytes_per_s,
            "skinny_matmul_flops_per_s": spec.skinny_matmul_flops_per_s,
            "copy_bandwidth_bytes_per_s": spec.copy_bandwidth_bytes_per_s,
            "transpose_bandwidth_bytes_per_s": spec.transpose_bandwidth_bytes_per_s,
            "kernel_launch_s": spec.kernel_overhead_s or 0.0,
            "cuda_graphs": report.cuda_graphs,
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
            "kernels": summary.kernels,
            "kernels_fused": summary.kernels_fused,
            "predicted_latency_fused_s": summary.predicted_latency_fused_s,
            "bytes_moved_fused": None if summary.fused is None else summary.fused.bytes_moved,
            "fused_groups": None if summary.fused is None else dict(summary.fused.groups),
            "fused_gap_s": None if summary.fused is None else dict(summary.fused.gap_s),
            "memory_bound_fraction": summary.memory_bound_fraction,
            "by_block": {role: _block(b) for role, b in summary.by_block.items()},
            "what_if": _what_if(summary.what_if),
            "as_written": _as_written(summary.as_written),
            "combined_saving_s": report.combined_saving_s,
            "hardware": spec.name,
            "dims": dict(report.dims),
            "assumed_dims": list(report.assumed_dims),
            **_dim_sources(report),
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
        "findings": [finding_dict(f) for f in report.findings],
        "rules_run": list(report.rules_run),
        "config_files": list(report.config_files),
        "hidden_as_noise": report.hidden_as_noise,
        "suppressed": [
            {**finding_dict(s.finding), "suppressed_by": s.pattern, "reason": s.reason}
            for s in report.suppressed
        ],
        "baseline": None if report.baseline is None else {
            "path": report.baseline.path,
            "known": [finding_dict(f) for f in report.baseline.known],
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
    return None if report.llm is None else llm_dict(report.llm)


def _measurement(report: Report) -> dict[str, Any] | None:
    """The measured run of --confirm (docs/confirm.md), or None."""
    return None if report.measurement is None else measurement_dict(report.measurement)


def finding_dict(finding: Finding) -> dict[str, Any]:
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
        "estimate": finding.estimate,
        "evidence": [{"name": m.name, "value": m.value, "unit": m.unit} for m in finding.evidence],
        "fixes": [{"text": f.text, "saving_s": f.saving_s} for f in finding.fixes],
        "source": None if finding.source is None else f"{finding.source.file}:{finding.source.line}",
    }


def llm_dict(parts: LlmSections) -> dict[str, Any]:
    """The JSON report's "llm" object (raw numbers, units in the key names)."""
    return {
        "structure": describe(parts.structure),
        "serving": None if parts.serving is None else serving_dict(parts.serving),
        "sweeps": [sweep_dict(t) for t in parts.sweeps],
        "generation": None if parts.generation is None else generation_dict(parts.generation),
        "precision": None if parts.precision is None else precision_dict(parts.precision),
        "tensor_parallel": (None if parts.tensor_parallel is None
                            else tp_dict(parts.tensor_parallel)),
        "smallest_fitting_tp": None if parts.smallest_tp is None else parts.smallest_tp.tp,
    }  # fmt: skip


def scenario_dict(s: Any) -> dict[str, Any]:
    return {
        "phase": s.phase.value, "batch": s.batch, "new_tokens": s.new_tokens,
        "context": s.context, "defaulted": list(s.defaulted), "origin": s.origin,
        "description": s.describe(),
    } | ({} if s.encoder_length is None else {  # an encoder-decoder's decoder only
        "encoder_length": s.encoder_length, "encoder_source": s.encoder_source,
    })  # fmt: skip


def crossover_dict(c: Crossover | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"batch": c.batch, "searched_to": c.searched_to, "peak": c.peak_key,
            "ridge_point": c.ridge_point, "gemm_intensity": c.gemm_intensity,
            "fits": c.fits}  # fmt: skip


def serving_dict(s: Serving) -> dict[str, Any]:
    return {
        "scenario": scenario_dict(s.scenario),
        "hardware": s.hardware,
        "what_if": s.precision,
        "step_latency_s": s.step_latency_s,
        "flops": s.flops,
        "bytes_moved": s.bytes_moved,
        "intensity": s.intensity,
        "memory_bound_fraction": s.memory_bound_fraction,
        "bytes_per_token": s.bytes_per_token,
        "time_per_token_s": s.time_per_token_s,
        "kv_bytes_per_token": s.kv_bytes_per_token,
        "kv_bytes_at_context": s.kv_bytes_at_context,
        "kv_bytes_batch": s.kv_bytes_batch,
        "weight_bytes": s.weight_bytes,
        "peak_memory_bytes": s.peak_memory_bytes,
        "memory_capacity_bytes": s.capacity_bytes,
        "fits": s.fits,
        "largest_batch": s.largest_batch,
        "tokens_per_s_per_sequence": s.tokens_per_s_per_sequence,
        "tokens_per_s_aggregate": s.tokens_per_s_aggregate,
        "crossover": crossover_dict(s.crossover),
    } | _cross_dict(s) | _experts_dict(s) | _latent_dict(s) | ({} if s.state_layers == 0 else {
        "state_bytes_per_sequence": s.state_bytes_per_sequence, "state_layers": s.state_layers,
    }) | ({} if not s.sliding_layers else {
        "sliding_layers": s.sliding_layers, "sliding_window": s.window})


def _latent_dict(s: Serving) -> dict[str, Any]:
    """Multi-head latent attention's caches and attention cores (absent otherwise)."""
    if s.latent is None:
        return {}
    m = s.latent
    return {"latent_attention": {
        "latent_bytes_per_token": m.latent_bytes_per_token,
        "decompressed_bytes_per_token": m.decompressed_bytes_per_token,
        "naive": {"flops": m.naive_flops, "cache_bytes_read": m.naive_bytes,
                  "time_s": m.naive_s},
        "absorbed": {"flops": m.absorbed_flops, "cache_bytes_read": m.absorbed_bytes,
                     "time_s": m.absorbed_s},
    }}  # fmt: skip


def _experts_dict(s: Serving) -> dict[str, Any]:
    """A mixture of experts' routing at the step's tokens (absent for a dense model)."""
    if s.experts is None:
        return {}
    e = s.experts
    return {"experts": {"experts": e.experts, "top_k": e.top_k, "tokens": e.tokens,
                        "expected_touched": e.expected_touched,
                        "touched_fraction": e.touched_fraction}}  # fmt: skip


def _cross_dict(s: Serving) -> dict[str, Any]:
    """An encoder-decoder's cross-attention cache (absent for a decoder-only model) and the
    cache traffic of the step, self- and cross-attention apart."""
    if s.cross_kv_bytes_per_position is None:
        return {}
    traffic = s.cache_traffic
    return {
        "cross_kv_bytes_per_position": s.cross_kv_bytes_per_position,
        "cross_kv_bytes_per_sequence": s.cross_kv_bytes_per_sequence,
        "cache_traffic_bytes": None if traffic is None else {
            "self_read": traffic[0], "self_written": traffic[1], "cross_read": traffic[2],
        },
    }  # fmt: skip


def sweep_dict(sweep: Sweep) -> dict[str, Any]:
    return {
        "axis": sweep.axis,
        "base": scenario_dict(sweep.base),
        "hardware": sweep.hardware,
        "rows": [
            {"scenario": scenario_dict(r.scenario), "flops": r.flops,
             "bytes_moved": r.bytes_moved, "predicted_latency_s": r.latency_s,
             "tokens_per_s": r.tokens_per_s, "intensity": r.intensity,
             "memory_bound_fraction": r.memory_bound_fraction,
             "kv_cache_bytes": r.kv_cache_bytes, "peak_memory_bytes": r.peak_memory_bytes,
             "fits": r.fits, "gemm_intensity": r.gemm.intensity,
             "gemm_compute_bound": r.gemm.compute_bound}
            for r in sweep.rows
        ],
        "crossover": crossover_dict(sweep.crossover),
    }  # fmt: skip


def _totals_dict(t: StepTotals) -> dict[str, Any]:
    return {"steps": t.steps, "flops": t.flops, "bytes_moved": t.bytes_moved,
            "bytes_by_kind": {"weights": t.bytes_read.weights + t.bytes_written.weights,
                              "activations": t.bytes_read.activations
                              + t.bytes_written.activations,
                              "kv_cache": t.bytes_read.kv_cache + t.bytes_written.kv_cache},
            "intensity": t.intensity, "predicted_latency_s": t.latency_s,
            "memory_bound_fraction": t.memory_bound_fraction}  # fmt: skip


def generation_dict(g: Generation) -> dict[str, Any]:
    return {
        "batch": g.batch, "prompt": g.prompt, "tokens": g.tokens,
        "total": _totals_dict(g.total), "prefill": _totals_dict(g.prefill),
        "decode": _totals_dict(g.decode),
        "time_to_first_token_s": g.time_to_first_token_s,
        "time_per_output_token_s": g.time_per_output_token_s,
        "tokens_per_s_per_sequence": g.tokens_per_s,
        "tokens_per_s_aggregate": g.aggregate_tokens_per_s,
        "method": g.method, "contexts_evaluated": list(g.contexts_evaluated),
    }  # fmt: skip


def precision_dict(gain: PrecisionGain) -> dict[str, Any]:
    return {
        "what_if": gain.precision.label,
        "weight_bytes": [gain.weight_bytes_before, gain.weight_bytes_after],
        "weight_bytes_read": [gain.weight_bytes_read_before, gain.weight_bytes_read_after],
        "kv_bytes_moved": [gain.kv_bytes_moved_before, gain.kv_bytes_moved_after],
        "bytes_moved": [gain.bytes_moved_before, gain.bytes_moved_after],
        "peak_memory_bytes": [gain.peak_memory_before, gain.peak_memory_after],
        "predicted_latency_s": [gain.latency_before_s, gain.latency_after_s],
        "saving_s": gain.saving_s,
    }


def tp_dict(tp: TensorParallel) -> dict[str, Any]:
    return {
        "tp": tp.tp, "layers": tp.layers, "hidden_size": tp.hidden_size, "tokens": tp.tokens,
        "allreduce_bytes_per_layer": tp.allreduce_bytes_per_layer,
        "allreduce_time_s": tp.allreduce_time_s, "compute_latency_s": tp.compute_latency_s,
        "step_latency_s": tp.step_latency_s,
        "weight_bytes_per_device": tp.weight_bytes_per_device,
        "kv_cache_bytes_per_device": tp.kv_cache_bytes_per_device,
        "activation_bytes_per_device": tp.activation_bytes_per_device,
        "memory_per_device_bytes": tp.memory_per_device_bytes, "fits": tp.fits,
    }  # fmt: skip


def measurement_dict(m: Measurement) -> dict[str, Any]:
    """The JSON report's "measurement" object (raw numbers, units in the keys)."""
    small, rank = m.small_kernels, m.rank_correlation
    return {
        "provider": m.provider,
        "runtime": m.runtime,
        "onnxruntime_version": m.onnxruntime_version,
        "runs": m.runs,
        "warmup": m.warmup,
        "weights": m.weights,
        "predicted_latency_s": m.predicted_latency_s,
        "unoptimised_latency_s": m.unoptimised_latency_s,
        "optimised_latency_s": m.optimised_latency_s,
        "measured_nodes_s": m.measured_nodes_s,
        "total_error": m.total_error,
        "optimised_error": m.optimised_error,
        "predicted_fused_latency_s": m.predicted_fused_latency_s,
        "fused_error": m.fused_error,
        "kernels_mapped_fraction": m.kernels_mapped_fraction,
        "small_kernels": {"count": small[0], "median_s": small[1],
                          "spec_kernel_overhead_s": m.kernel_overhead_s},
        "rank_correlation": {"rho": rank.rho, "groups": rank.groups, "nodes": rank.nodes,
                             "min_share": rank.share},
        "nodes": [
            {"name": n.name, "op_type": n.op_type, "predicted_s": n.predicted_s,
             "measured_s": n.measured_s,
             "achieved_bandwidth_bytes_per_s": n.achieved_bandwidth_bytes_per_s,
             "achieved_flops_per_s": n.achieved_flops_per_s, "roof_fraction": n.roof_fraction,
             "shared": n.shared}
            for n in m.nodes
        ],
        "findings": [
            {"code": c.finding.code, "nodes": list(c.finding.nodes), "verdict": c.verdict.value,
             "reason": c.reason, "predicted_s": c.predicted_s, "measured_s": c.measured_s}
            for c in m.findings
        ],
        "not_run": list(m.not_run),
        "notes": list(m.notes),
    }
