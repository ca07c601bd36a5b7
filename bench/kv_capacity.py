"""A Llama-3-8B-shaped GQA decode step: capacity figures from the KV cache, not its copies.

    python bench/kv_capacity.py                  # 2 layers, hidden 4096, 32 heads, 8 KV heads
    python bench/kv_capacity.py --layers 4 --dir /tmp/kv   # more layers; exports are reused

Exports with optimum (text-generation-with-past) a LlamaForCausalLM with Llama-3-8B's attention
and MLP shapes (hidden 4096, 32 query heads and 8 KV heads of 128, intermediate 14336; random
weights, a 32,000-token vocabulary to keep the file small) and fewer layers, then lints the
decode step at batch 4096, context 2047 on a100, and prints each figure beside the one derived
by hand from the config:

    KV per sequence     = layers x 2 (K, V) x 8 KV heads x 128 x 4 B x tokens
    largest batch       ~ (capacity - weights) / KV per sequence at context + 1 tokens
    peak memory         ~ weights + the batch's KV cache
    KV bytes moved      = the cache read once + the new token written

Before issue 17, the repeat_kv Expand copies counted as cache: largest batch 575 where the
formula gives about 2,300, peak 553 GB, KV bytes moved 19x the cache.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

BATCH, CONTEXT = 4096, 2047
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTERMEDIATE, VOCAB = 4096, 32, 8, 128, 14336, 32000


def export(folder: Path, layers: int) -> Path:
    path = folder / "onnx" / "model.onnx"
    if path.exists():
        return path
    import torch
    import transformers
    from optimum.exporters.onnx import main_export

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=HIDDEN, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
        num_hidden_layers=layers, intermediate_size=INTERMEDIATE, vocab_size=VOCAB,
        max_position_embeddings=8192,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(folder / "hf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(str(folder / "hf"), output=folder / "onnx",
                    task="text-generation-with-past", local_files_only=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/memlint-kv-capacity"))
    args = parser.parse_args()
    folder = args.dir / f"layers{args.layers}"
    start = time.perf_counter()
    path = export(folder, args.layers)
    print(f"export: {path} ({time.perf_counter() - start:.0f} s)")

    import memlint
    from memlint.analysis.liveness import footprint

    start = time.perf_counter()
    report = memlint.lint(path, hw="a100", scenario={"batch": BATCH, "context": CONTEXT})
    print(f"lint: {time.perf_counter() - start:.1f} s, "
          f"{report.coverage.nodes_modelled}/{report.coverage.nodes_total} nodes modelled")
    serving, memory = report.llm.serving, footprint(report.model.graph)
    kv_per_token = args.layers * 2 * KV_HEADS * HEAD_DIM * 4
    kv_per_sequence = kv_per_token * (CONTEXT + 1)
    capacity = report.hardware.memory_capacity_bytes
    ideal_batch = (capacity - memory.weight_bytes) / kv_per_sequence
    cache = BATCH * CONTEXT * kv_per_token
    new_tokens = BATCH * kv_per_token
    kv_moved = report.summary.bytes_by_kind.kv_cache
    rows = [
        ("KV bytes per token", serving.kv_bytes_per_token, kv_per_token),
        ("largest batch", serving.largest_batch, ideal_batch),
        ("peak memory (B)", memory.peak_total_bytes, memory.weight_bytes + cache + new_tokens),
        ("KV bytes moved", kv_moved, cache + new_tokens),
    ]
    print(f"{'figure':<22}{'memlint':>18}{'by hand':>18}{'ratio':>8}")
    for name, got, expected in rows:
        ratio = got / expected if expected else float("nan")
        print(f"{name:<22}{got:>18,.0f}{expected:>18,.0f}{ratio:>8.3f}")
    print(f"KV-cache copies live at once (activations, not capacity): "
          f"{memory.kv_copy_bytes:,} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
