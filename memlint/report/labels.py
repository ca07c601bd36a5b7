"""Readable labels for the evidence keys of findings ("saving_fp16_s" -> "Saving at fp16"):
the one table the HTML and Markdown reports print evidence with. The JSON and SARIF keep the
keys (machines read them); a key this table does not know (a plugin's) reads as its words."""

from __future__ import annotations

import re

LABELS = {
    "activation_bytes": "Live activations",
    "assumed_dims": "Assumed dims",
    "batch": "Batch",
    "block_share": "Block's share of predicted time",
    "block_time_s": "Block time",
    "budget": "Budget",
    "budget_s": "Budget",
    "bytes_as_written": "Bytes moved as written",
    "bytes_fused": "Bytes moved fused",
    "bytes_lower_bound": "Bytes of nodes not modelled (lower bound)",
    "bytes_moved": "Bytes moved",
    "bytes_per_token": "Bytes per token",
    "cache_bytes": "KV cache read",
    "capacity_bytes": "Device memory",
    "chain_nodes": "Kernels in the chain",
    "context_tokens": "Context (tokens)",
    "copies": "Copies",
    "copy_bytes": "Copy written",
    "copy_time_s": "Copy time",
    "expert_share": "Expert weights' share of predicted time",
    "expert_time_s": "Time reading expert weights",
    "expert_weight_bytes": "Expert weights read",
    "coverage": "Coverage",
    "flops": "FLOPs",
    "fp32_weight_time_share": "fp32 weights' share of predicted time",
    "fused_bytes": "Bytes moved fused",
    "fused_flops": "FLOPs fused",
    "fused_time_s": "Time fused",
    "heads": "Query heads",
    "in_place_bytes": "Bytes moved in place",
    "intensity": "Arithmetic intensity",
    "kv_bytes_per_token": "KV cache per token",
    "kv_cache_bytes": "KV cache",
    "kv_fraction_of_left": "KV cache's share of memory left",
    "moe_experts": "Routed experts per layer",
    "moe_run": "Experts a step runs per layer",
    "moe_tokens": "Tokens per step",
    "moe_top_k": "Experts per token (top-k)",
    "kv_heads": "KV heads",
    "kv_live_bytes": "KV tensors live at the peak",
    "largest_batch": "Largest batch that fits",
    "llm_default_dims": "LLM scenario defaults",
    "memory_bound_share": "Memory-bound share",
    "memory_left_bytes": "Memory left",
    "new_bytes": "New tokens' K/V",
    "nodes": "Identical layers grouped",
    "nodes_not_modelled": "Nodes not modelled",
    "nodes_total": "Nodes",
    "overflow_bytes": "Over by",
    "past_bytes": "Past KV cache",
    "predicted_latency_s": "Predicted latency",
    "repeats": "Repeats",
    "ridge": "Ridge point",
    "rows": "Rows per weight read (M)",
    "rows_compute_bound": "Rows to be compute-bound (M*)",
    "saving_s": "Saving",
    "score_bytes": "Score tensor",
    "score_bytes_moved": "Score bytes moved",
    "score_passes": "Score tensor passes through memory",
    "share": "Share of predicted time",
    "tensor_parallel_devices": "Tensor-parallel devices",
    "time_as_written_s": "Time as written",
    "time_fused_s": "Time fused",
    "time_s": "Predicted time",
    "total_bytes": "Memory needed",
    "unresolved_tensors": "Tensors of unknown size",
    "usable_bytes": "Usable memory",
    "weight_bytes": "Weight bytes",
    "weight_time_s": "Time reading weights",
    "weight_time_share": "Weights' share of predicted time",
    "wide_weight_time_share": "Wide weights' share of predicted time",
}
# Families of keys that carry a name: (pattern, label template)
PATTERNS = (
    (re.compile(r"^saving_(?P<x>[a-z0-9]+)_s$"), "Saving at {x}"),  # ML106: saving_fp16_s
    (re.compile(r"^weight_bytes_(?P<x>[a-z0-9]+)$"), "{x} weights"),  # weight_bytes_float32
)


def evidence_label(name: str) -> str:
    """The label a report prints for the evidence key `name`."""
    if name in LABELS:
        return LABELS[name]
    for pattern, template in PATTERNS:
        match = pattern.match(name)
        if match:
            return template.format(**match.groupdict())
    words = re.sub(r"_s$", "", name).replace("_", " ").strip()  # a plugin's key
    return words[:1].upper() + words[1:] if words else name


def is_known(name: str) -> bool:
    """Does the table (or one of its patterns) label `name`? (tests: every built-in key is)"""
    return name in LABELS or any(pattern.match(name) for pattern, _ in PATTERNS)
