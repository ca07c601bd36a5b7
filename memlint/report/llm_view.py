"""The LLM sections formatted for the renderers: every number becomes a string here, so text,
Markdown and HTML templates only loop and print; `*_dict` gives the raw numbers for JSON (units in
the key names, as docs/json-schema.md does).

Sections (titles as the reports should print them):

    LLM serving              serving_rows(Serving)            label / value rows
    LLM sweep over <axis>    sweep_table(Sweep)               header + rows, and notes
    Generation               generation_rows(Generation)
    Precision what-if        precision_rows(PrecisionGain)
    Tensor parallel          tp_rows(TensorParallel, smallest)

`blocks(sections)` gives all of them in report order and `sections_dict(sections)` the JSON
"llm" object; a renderer needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memlint import units
from memlint.llm.generate import Generation, StepTotals
from memlint.llm.parallel import TensorParallel
from memlint.llm.serving import Serving
from memlint.llm.session import LlmSections
from memlint.analysis.structure import LlmStructure, describe
from memlint.llm.sweep import Crossover, Sweep
from memlint.llm.whatif import PrecisionGain

Rows = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()
    text_columns: int = 1  # the leading columns that hold words (left-aligned); then numbers


@dataclass(frozen=True)
class Block:
    """One section: label / value rows, or a table."""

    title: str
    rows: Rows = ()
    table: Table | None = None


def blocks(parts: LlmSections) -> tuple[Block, ...]:
    """Every LLM section that `parts` holds, in report order."""
    out = []
    if parts.serving is not None:
        out.append(Block("LLM serving", serving_rows(parts.serving, parts.structure)))
    out += [Block(t.title, table=t) for t in map(sweep_table, parts.sweeps)]
    if parts.generation is not None:
        out.append(Block("Generation", generation_rows(parts.generation)))
    if parts.precision is not None:
        out.append(Block("Precision what-if", precision_rows(parts.precision)))
    if parts.tensor_parallel is not None:
        out.append(Block("Tensor parallel", tp_rows(parts.tensor_parallel, parts.smallest_tp)))
    return tuple(out)


def sections_dict(parts: LlmSections) -> dict[str, Any]:
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


def _bytes(value: float | None) -> str:
    return "-" if value is None else units.nbytes(value)


def _rate(value: float) -> str:
    return units.si(value, "tokens/s")


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def structure_line(structure: LlmStructure) -> str:
    """'2 layers, 4 heads (multi-head), 4 KV heads of 16, hidden 64, vocab 500, 128 positions'."""
    parts = []
    if structure.layers:
        parts.append(f"{structure.layers} layers")
    if structure.heads:
        kind = f" ({structure.attention_kind})" if structure.attention_kind else ""
        parts.append(f"{structure.heads} heads{kind}")
    if structure.kv_heads:
        size = f" of {structure.head_dim}" if structure.head_dim else ""
        parts.append(f"{structure.kv_heads} KV heads{size}")
    for label, value in (("hidden", structure.hidden_size), ("vocab", structure.vocab_size)):
        if value:
            parts.append(f"{label} {value}")
    if structure.max_positions:
        parts.append(f"{structure.max_positions} positions")
    return ", ".join(parts)


def crossover_line(crossover: Crossover | None) -> str:
    if crossover is None:
        return ""
    if crossover.batch is None:
        at = units.intensity(crossover.gemm_intensity)
        return (
            f"decode stays memory-bound up to batch {crossover.searched_to:,}: its GEMMs reach "
            f"{at} there, under the ridge point {crossover.ridge_point:.3g} FLOP/B "
            f"({crossover.peak_key})"
        )
    fits = "" if crossover.fits is None else (
        "; fits in memory" if crossover.fits else "; does NOT fit in memory there")
    return (
        f"decode turns compute-bound at batch {crossover.batch:,}: its GEMMs reach "
        f"{units.intensity(crossover.gemm_intensity)} >= ridge point "
        f"{crossover.ridge_point:.3g} FLOP/B ({crossover.peak_key}){fits}"
    )


def serving_rows(s: Serving, structure: LlmStructure | None = None) -> Rows:
    """The "LLM serving" section."""
    sc = s.scenario
    per = "generated token" if sc.phase.value == "decode" else "prompt token"
    rows = [("scenario", sc.describe())]
    if structure is not None and structure_line(structure):
        rows.append(("model", structure_line(structure)))
    if s.precision != "as in the graph":
        rows.append(("what-if", s.precision))
    rows += [
        ("step", f"{units.seconds(s.step_latency_s)} predicted on {s.hardware}, "
                 f"{units.percent(s.memory_bound_fraction)} memory-bound, intensity "
                 f"{units.intensity(s.intensity)}"),
        ("bytes per token", f"{units.nbytes(s.bytes_per_token)} moved per {per} "
                            f"(weights {units.nbytes(s.weight_bytes_read / sc.tokens_per_step)}, "
                            f"KV cache {units.nbytes(s.kv_bytes_moved / sc.tokens_per_step)})"),
        ("time per token", f"{units.seconds(s.time_per_token_s)} per {per} of each sequence"),
        ("KV cache", f"{_bytes(s.kv_bytes_per_token)} per token per sequence; "
                     f"{_bytes(s.kv_bytes_at_context)} per sequence at {sc.context:,} tokens; "
                     f"{_bytes(s.kv_bytes_batch)} for the batch of {sc.batch:,}"),
        ("memory", f"peak {units.nbytes(s.peak_memory_bytes)} (weights "
                   f"{units.nbytes(s.weight_bytes)}) of {units.nbytes(s.capacity_bytes)}: "
                   f"{'fits' if s.fits else 'does NOT fit'}"),
        ("largest batch", f"{_count(s.largest_batch)} sequences at {sc.total_tokens:,} tokens "
                          f"fit in {units.nbytes(s.capacity_bytes)}"),
        ("tokens/s (upper bound)", f"{_rate(s.tokens_per_s_per_sequence)} per sequence, "
                                   f"{_rate(s.tokens_per_s_aggregate)} over the batch of "
                                   f"{sc.batch:,}"),
    ]  # fmt: skip
    if s.crossover is not None:
        rows.append(("compute-bound from", crossover_line(s.crossover)))
    return tuple(rows)


def sweep_table(sweep: Sweep) -> Table:
    """The sweep as a table; the crossover line as a note."""
    axis = {"batch": "batch", "context": "context", "prompt": "prompt"}[sweep.axis]
    headers = (axis, "step time", "tokens/s", "intensity", "memory-bound", "KV cache",
               "peak memory", "fits")  # fmt: skip
    rows = []
    for r in sweep.rows:
        value = {"batch": r.scenario.batch, "context": r.scenario.context,
                 "prompt": r.scenario.new_tokens}[sweep.axis]  # fmt: skip
        rows.append((
            f"{value:,}", units.seconds(r.latency_s), _rate(r.tokens_per_s),
            units.intensity(r.intensity), units.percent(r.memory_bound_fraction),
            _bytes(r.kv_cache_bytes), units.nbytes(r.peak_memory_bytes),
            "yes" if r.fits else "NO",
        ))  # fmt: skip
    notes = [f"base: {sweep.base.describe()}; on {sweep.hardware}"]
    if sweep.crossover is not None:
        notes.append(crossover_line(sweep.crossover))
    return Table(f"LLM sweep over {axis}", headers, tuple(rows), tuple(notes))


def generation_rows(g: Generation) -> Rows:
    t = g.total
    method = (
        f"every decode step linted ({len(g.contexts_evaluated)})" if g.method == "every step"
        else f"decode costs affine in the context, checked at contexts "
             f"{', '.join(map(str, g.contexts_evaluated))}; the other steps interpolated"
    )  # fmt: skip
    return (
        ("generation", f"{g.tokens:,} tokens from a {g.prompt:,}-token prompt, batch {g.batch:,}: "
                       f"1 prefill + {g.decode.steps:,} decode steps"),
        ("total", _totals(t)),
        ("prefill", _totals(g.prefill)),
        ("decode", _totals(g.decode)),
        ("time to first token", units.seconds(g.time_to_first_token_s)),
        ("time per output token", "-" if g.time_per_output_token_s is None
                                  else units.seconds(g.time_per_output_token_s)),
        ("tokens/s (upper bound)", f"{_rate(g.tokens_per_s)} per sequence, "
                                   f"{_rate(g.aggregate_tokens_per_s)} over the batch"),
        ("method", method),
    )  # fmt: skip


def _totals(t: StepTotals) -> str:
    return (
        f"{units.flops(t.flops)}, {units.nbytes(t.bytes_moved)} moved, intensity "
        f"{units.intensity(t.intensity)}, {units.seconds(t.latency_s)} predicted "
        f"({units.percent(t.memory_bound_fraction)} memory-bound)"
    )


def precision_rows(gain: PrecisionGain) -> Rows:
    speedup = "-" if gain.speedup is None else f"{gain.speedup:.2f}x"
    return (
        ("what-if", gain.precision.label),
        ("weights", f"{units.nbytes(gain.weight_bytes_before)} -> "
                    f"{units.nbytes(gain.weight_bytes_after)} resident"),
        ("KV cache moved", f"{units.nbytes(gain.kv_bytes_moved_before)} -> "
                           f"{units.nbytes(gain.kv_bytes_moved_after)} per step"),
        ("bytes moved", f"{units.nbytes(gain.bytes_moved_before)} -> "
                        f"{units.nbytes(gain.bytes_moved_after)} per step"),
        ("peak memory", f"{units.nbytes(gain.peak_memory_before)} -> "
                        f"{units.nbytes(gain.peak_memory_after)}"),
        ("step time", f"{units.seconds(gain.latency_before_s)} -> "
                      f"{units.seconds(gain.latency_after_s)} ({speedup}, saves "
                      f"{units.seconds(gain.saving_s)})"),
    )  # fmt: skip


def tp_rows(tp: TensorParallel | None, smallest: TensorParallel | None = None) -> Rows:
    rows: list[tuple[str, str]] = []
    if tp is not None:
        rows += [
            ("tensor parallel", f"{tp.tp} devices"),
            ("per device", f"weights {units.nbytes(tp.weight_bytes_per_device)}, KV cache "
                           f"{units.nbytes(tp.kv_cache_bytes_per_device)}, activations "
                           f"{units.nbytes(tp.activation_bytes_per_device)}: "
                           f"{units.nbytes(tp.memory_per_device_bytes)} of "
                           f"{units.nbytes(tp.capacity_bytes)} "
                           f"({'fits' if tp.fits else 'does NOT fit'})"),
            ("all-reduce", f"{tp.layers} layers x 2 x 2({tp.tp}-1)/{tp.tp} x {tp.tokens:,} "
                           f"tokens x {tp.hidden_size} x {tp.activation_bytes:g} B = "
                           f"{units.nbytes(tp.layers * tp.allreduce_bytes_per_layer)} per device"
                           + (f" over {units.si(tp.interconnect_bandwidth_bytes_per_s, 'B/s')}"
                              if tp.interconnect_bandwidth_bytes_per_s else "")
                           + f": {units.seconds(tp.allreduce_time_s)}"),
            ("step time", f"{units.seconds(tp.step_latency_s)} = compute/memory "
                          f"{units.seconds(tp.compute_latency_s)} + interconnect "
                          f"{units.seconds(tp.allreduce_time_s)} "
                          f"({units.percent(tp.interconnect_share)})"),
        ]  # fmt: skip
    rows.append(("smallest TP that fits", "none up to the candidates tried" if smallest is None
                 else f"{smallest.tp} ({units.nbytes(smallest.memory_per_device_bytes)} "
                      f"per device)"))  # fmt: skip
    return tuple(rows)


# --- raw numbers for JSON ---------------------------------------------------------------------


def scenario_dict(s: Any) -> dict[str, Any]:
    return {
        "phase": s.phase.value, "batch": s.batch, "new_tokens": s.new_tokens,
        "context": s.context, "defaulted": list(s.defaulted), "origin": s.origin,
        "description": s.describe(),
    }  # fmt: skip


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
    }


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
