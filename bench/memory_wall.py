"""The memory wall's headline result with memlint's own numbers (figures for docs/llm.md).

    python bench/memory_wall.py                 # sample models, A100 and H100
    python bench/memory_wall.py --hw h200 --tokens 64
    python bench/memory_wall.py --full          # also GPT-2 small against a BERT-base encoder

An encoder reads N tokens in one pass; a decoder with a KV cache generates N tokens one by one (a
1-token prompt, then N - 1 decode steps, each at its own context): memlint.llm.memory_wall. The
sample pair is sample_models/bert_encoder.onnx and gpt2_decoder_step.onnx (both 2 layers, hidden
128, 4 heads, MLP 512, fp32). --full compares sample_models/gpt2_small_graph_only.onnx (GPT-2
small, 12 layers, hidden 768) with a BERT-base-size encoder (12 layers, hidden 768, 12 heads, MLP
3072) built here by sample_models/build.py with its weights external and absent (graph only).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"


def build_bert_base(out_dir: Path) -> Path:
    """A BERT-base-size encoder, graph only (weights external, never written): ~230 kB."""
    spec = importlib.util.spec_from_file_location("sample_models_build", SAMPLES / "build.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build
    spec.loader.exec_module(build)  # type: ignore[union-attr]
    cfg = build.EncoderConfig(
        num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
        vocab_size=30522, max_position_embeddings=512,
    )  # fmt: skip
    model = build.build_encoder(cfg, build.ExternalWeights("bert_base.onnx.data"), "bert_base")
    path = out_dir / "bert_base_graph_only.onnx"
    path.write_bytes(model.SerializeToString(deterministic=True))
    return path


def render(label: str, walls: list) -> str:
    """One markdown block: a table of both sides per device, then the ratios (deterministic, so
    docs/llm.md can carry it and a test can compare)."""
    from memlint import units

    lines = [
        f"**{label}**",
        "",
        "| hardware | model | passes | FLOPs | bytes moved | intensity | predicted time "
        "| memory-bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for wall in walls:
        for name, t in ((f"encoder, {wall.tokens} tokens in 1 pass", wall.encoder),
                        (f"decoder, {wall.tokens} tokens one by one", wall.decoder)):  # fmt: skip
            lines.append(
                f"| {wall.hardware} | {name} | {t.steps} | {units.flops(t.flops)} "
                f"| {units.nbytes(t.bytes_moved)} | {units.intensity(t.intensity)} "
                f"| {units.seconds(t.latency_s)} | {units.percent(t.memory_bound_fraction)} |"
            )
    lines.append("")
    for wall in walls:
        lines.append(
            f"- {wall.hardware}: decoder FLOPs {wall.flops_ratio:.2f}x the encoder's; arithmetic "
            f"intensity {wall.intensity_ratio:.1f}x lower; predicted time "
            f"{wall.latency_ratio:.1f}x longer"
        )
    return "\n".join(lines) + "\n"


def compute(encoder: Path, decoder: Path, hws: list[str], tokens: int) -> list:
    from memlint.llm.memory_wall import memory_wall

    return [memory_wall(encoder, decoder, tokens=tokens, hw=hw) for hw in hws]


SAMPLE_LABEL = "Sample models (2 layers, hidden 128, fp32)"
FULL_LABEL = "GPT-2 small against a BERT-base-size encoder (12 layers, hidden 768, fp32)"
HARDWARE = ["a100", "h100"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", action="append", help="device (repeatable); default a100, h100")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per sequence (128)")
    parser.add_argument("--full", action="store_true", help="also the full-size pair")
    args = parser.parse_args(argv)
    hws = args.hw or HARDWARE
    start = time.perf_counter()
    walls = compute(SAMPLES / "bert_encoder.onnx", SAMPLES / "gpt2_decoder_step.onnx", hws,
                    args.tokens)  # fmt: skip
    print(render(SAMPLE_LABEL, walls))
    if args.full:
        with tempfile.TemporaryDirectory() as tmp:
            bert = build_bert_base(Path(tmp))
            walls = compute(bert, SAMPLES / "gpt2_small_graph_only.onnx", hws, args.tokens)
            print(render(FULL_LABEL, walls))
    print(f"(computed in {time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
