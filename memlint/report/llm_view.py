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

from memlint import units
from memlint.analysis.structure import LlmStructure
from memlint.core.llm import (
    Crossover,
    ExpertRouting,
    LatentServing,
    Generation,
    LlmSections,
    PrecisionGain,
    Serving,
    StepTotals,
    Sweep,
    TensorParallel,
)
from memlint.report.families import plural

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
        parts.append(plural(structure.layers, "layer"))
    if structure.heads:
        kind = f" ({structure.attention_kind})" if structure.attention_kind else ""
        parts.append(plural(structure.heads, "head") + kind)
    if structure.kv_heads:
        size = f" of {structure.head_dim}" if structure.head_dim else ""
        parts.append(plural(structure.kv_heads, "KV head") + size)
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
        ("step", f"{units.seconds(s.step_latency_s)} predicted, "
                 f"{units.percent(s.memory_bound_fraction)} memory-bound, intensity "
                 f"{units.intensity(s.intensity)}"),
        ("bytes per token", f"{units.nbytes(s.bytes_per_token)} moved per {per} "
                            f"(weights {units.nbytes(s.weight_bytes_read / sc.tokens_per_step)}, "
                            f"KV cache {units.nbytes(s.kv_bytes_moved / sc.tokens_per_step)})"),
        ("time per token", f"{units.seconds(s.time_per_token_s)} per {per} of each sequence"),
        ("KV cache", f"{_bytes(s.kv_bytes_per_token)} per token per sequence; "
                     f"{_bytes(s.kv_bytes_at_context)} per sequence at {sc.context:,} tokens"
                     f"{_windowed(s)}; "
                     + _cross(s) + f"{_bytes(s.kv_bytes_batch)} for the batch of {sc.batch:,}"),
        ("memory", f"peak {units.nbytes(s.peak_memory_bytes)} (weights "
                   f"{units.nbytes(s.weight_bytes)}) of {units.nbytes(s.capacity_bytes)}: "
                   f"{'fits' if s.fits else 'does NOT fit'}"),
        ("largest batch", f"{_count(s.largest_batch)} sequences at {sc.total_tokens:,} tokens "
                          f"fit in {units.nbytes(s.capacity_bytes)}"),
        ("tokens/s (upper bound)", f"{_rate(s.tokens_per_s_per_sequence)} per sequence, "
                                   f"{_rate(s.tokens_per_s_aggregate)} over the batch of "
                                   f"{sc.batch:,}"),
    ]  # fmt: skip
    if s.state_bytes_per_sequence is not None and s.kv_bytes_per_token is None:
        rows = [row for row in rows if row[0] != "KV cache"]  # no attention: no KV cache
    if s.state_bytes_per_sequence is not None:
        rows.append(("recurrent state", (
            f"{units.nbytes(s.state_bytes_per_sequence)} per sequence in {s.state_layers} "
            f"state-space layers (convolution and SSM states), the same at any context; "
            f"{units.nbytes(s.state_bytes_per_sequence * sc.batch)} for the batch of "
            f"{sc.batch:,}")))
    if s.latent is not None:
        rows.append(("latent attention", latent_line(s.latent)))
    if s.experts is not None:
        rows.append(("experts", experts_line(s.experts)))
    if s.crossover is not None:
        rows.append(("compute-bound from", crossover_line(s.crossover)))
    return tuple(rows)


def latent_line(m: LatentServing) -> str:
    return (
        f"the cache is the latent, {_bytes(m.latent_bytes_per_token)} per token per sequence "
        f"(the graph keeps decompressed K/V, {_bytes(m.decompressed_bytes_per_token)}); "
        f"attention as written reads {units.nbytes(m.naive_bytes)} of cache "
        f"({units.seconds(m.naive_s)}), absorbed {units.nbytes(m.absorbed_bytes)} "
        f"({units.seconds(m.absorbed_s)})"
    )


def experts_line(e: ExpertRouting) -> str:
    return (
        f"{e.experts} routed per MoE layer, top-{e.top_k}: a step of {e.tokens:,} "
        f"token{'s' if e.tokens != 1 else ''} "
        f"touches {e.expected_touched:.3g} of them on average (E(1 - (1 - k/E)^T), uniform "
        f"routing), so it reads {units.percent(e.touched_fraction)} of the experts' weights"
    )


def _windowed(s: Serving) -> str:
    if not s.sliding_layers:
        return ""
    layers = f"{s.sliding_layers} sliding-window layer{'s' if s.sliding_layers > 1 else ''}"
    return f" ({layers} of window {s.window:,} keep at most {s.window - 1:,} tokens)"


def _cross(s: Serving) -> str:
    """An encoder-decoder's cross-attention cache, counted apart from the self-attention one."""
    if s.cross_kv_bytes_per_sequence is None:
        return ""
    return (f"cross-attention {_bytes(s.cross_kv_bytes_per_sequence)} per sequence at "
            f"{s.scenario.encoder_length:,} encoder positions (read every step, never "
            f"appended); ")


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
