"""The memory wall's headline result (docs/llm.md, bench/memory_wall.py): an encoder reading N
tokens in one pass against a decoder generating them one by one, similar FLOPs, the decoder with
far lower arithmetic intensity and far higher predicted time.

Measured (N = 128; docs/llm.md carries the tables, and this test checks they are current):
- sample models (2 layers, hidden 128, fp32): intensity 6.0 vs 0.40 FLOP/B (14.9x), predicted
  time 13.1 us vs 176 us on an A100 (13.4x), decoder FLOPs 1.20x the encoder's;
- GPT-2 small against a BERT-base-size encoder (12 layers, hidden 768, fp32): 24.9 vs 0.48 FLOP/B
  (51.6x), 1.36 ms vs 32.6 ms on an A100 (23.9x), decoder FLOPs 1.43x (its 50,257-word head).
The tiny pair cannot reach two orders of magnitude: with hidden 128 the encoder's matrix products
average 21 FLOP/B and its unfused element-wise ops move 2.5x their bytes (docs/llm.md).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_memory_wall", ROOT / "bench" / "memory_wall.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample_walls(bench):
    return bench.compute(SAMPLES / "bert_encoder.onnx", SAMPLES / "gpt2_decoder_step.onnx",
                         bench.HARDWARE, 128)  # fmt: skip


@pytest.fixture(scope="module")
def full_walls(bench, tmp_path_factory):
    bert = bench.build_bert_base(tmp_path_factory.mktemp("bert-base"))
    assert bert.stat().st_size < 1_000_000  # graph only: the weights are never written
    return bench.compute(bert, SAMPLES / "gpt2_small_graph_only.onnx", bench.HARDWARE, 128)


def doc_block(name: str) -> str:
    text = (ROOT / "docs" / "llm.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- memory-wall:{name}:begin -->\n(.*?)<!-- memory-wall:{name}:end -->",
                      text, re.S)  # fmt: skip
    assert match, f"docs/llm.md lacks the memory-wall:{name} block"
    return match.group(1)


def test_sample_encoder_against_sample_decoder(sample_walls):
    for wall in sample_walls:
        assert wall.decoder_passes == 128 and wall.encoder.steps == 1
        assert 0.8 < wall.flops_ratio < 1.5  # similar total FLOPs
        assert wall.intensity_ratio >= 10  # 14.9x measured
        assert wall.latency_ratio >= 10  # 13.4x (A100), 17.0x (H100) measured
        assert wall.decoder.memory_bound_fraction > 0.99 > wall.encoder.memory_bound_fraction


def test_full_size_pair_shows_the_wall(full_walls):
    for wall in full_walls:
        assert 0.8 < wall.flops_ratio < 1.5
        assert wall.intensity_ratio >= 30  # 51.6x measured
        assert wall.latency_ratio >= 20  # 23.9x (A100), 42.5x (H100) measured


def test_docs_carry_the_current_numbers(bench, sample_walls, full_walls):
    assert doc_block("sample") == bench.render(bench.SAMPLE_LABEL, sample_walls), (
        "docs/llm.md is stale: paste the output of python bench/memory_wall.py --full"
    )
    assert doc_block("full") == bench.render(bench.FULL_LABEL, full_walls), (
        "docs/llm.md is stale: paste the output of python bench/memory_wall.py --full"
    )
