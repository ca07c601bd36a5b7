"""ML104 oversized-kv-cache on tiny decoder steps, with hand-computed bytes (a100: 80e9 B)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memlint.api import analyse, check, lint
from memlint.config import Config
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.rulebase import Example

CODE = "ML104"
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
CAPACITY = 80e9

# Keys stored pre-transposed [batch, 8, 128, past] so no KV copy is made: 2048 B per token each.
STEP = """
g (float16["batch",8,1,128] q, float16["batch",8,128,"past"] past_key,
   float16["batch",8,"past",128] past_value) => (float16["batch",8,1,128] y) {
    s = MatMul(q, past_key)
    p = Softmax(s)
    y = MatMul(p, past_value)
}
"""

# A GQA decoder step (onnxruntime's fused op): 32 query heads, 8 KV heads of 128, fp16.
GQA = """
g (float16["batch",1,4096] query, float16["batch",1,1024] key, float16["batch",1,1024] value,
   float16["batch",8,"past",128] past_key, float16["batch",8,"past",128] past_value,
   int32["batch"] seqlens_k, int32[1] total_len)
  => (float16["batch",1,4096] out, float16["batch",8,"total",128] present_key,
      float16["batch",8,"total",128] present_value) {
    out, present_key, present_value = com.microsoft.GroupQueryAttention<num_heads=32,
        kv_num_heads=8>(query, key, value, past_key, past_value, seqlens_k, total_len)
}
"""


def _findings(text: str, dims: dict, **options):
    report = analyse(load_example(Example(text, dims=dims)), resolve("a100"))
    config = Config(select=(CODE,), min_share=0.0, min_saving_s=0.0,
                    rule_options={CODE: options} if options else {})
    return check(report, config).findings


def test_bad_example_numbers():
    (finding,) = _findings(STEP, {"batch": 128, "past": 131072})
    # KV per token: (8*128 + 8*128) * 2 B = 4096 B. At 128 x 131072: 4096 * 128 * 131072 =
    # 68719476736 B, resident for the whole step. Live activations at the peak (the Softmax):
    # scores s and probabilities p, each 128*8*131072*2 = 268435456 -> 536870912 B.
    # Left: 80e9 - 0 - 536870912 = 79463129088 B; 68.7 GB is 86.5% of it (> 50%).
    kv, act = 68_719_476_736, 536_870_912
    assert finding.metric("kv_cache_bytes") == kv
    assert finding.metric("kv_bytes_per_token") == 4096
    assert (finding.metric("batch"), finding.metric("context_tokens")) == (128, 131072)
    assert finding.metric("activation_bytes") == act
    assert finding.metric("memory_left_bytes") == CAPACITY - act
    assert finding.metric("kv_fraction_of_left") == pytest.approx(kv / (CAPACITY - act))
    # Largest batch: 80e9 / ((kv + act) / 128) = 80e9 / 541065216 = 147.9 -> 147.
    assert finding.metric("largest_batch") == 147
    assert (finding.metric("kv_heads"), finding.metric("heads")) == (8, 8)
    assert finding.time_s is None
    assert finding.message == (
        "KV cache 68.7 GB at batch 128 x 131072 tokens (4.1 kB per token per sequence) is 86.5% "
        "(> 50.0%) of the 79.5 GB left after weights 0 B and live activations 537 MB on "
        "nvidia-a100-sxm4-80gb; largest batch at this context: 147"
    )
    texts = [f.text for f in finding.fixes]
    # MQA (8 -> 1 KV head): kv/8 = 8589934592; 80e9*128 / (8589934592 + act) = 1122.0 -> 1121.
    assert "multi-query attention" in texts[0] and "largest batch 1121" in texts[0]
    # fp8 KV: kv/2 = 34359738368; 80e9*128 / (34359738368 + act) = 293.4 -> 293.
    assert "x8/16, KV cache 34.4 GB, largest batch 293" in texts[1]
    assert "PagedAttention" in texts[2]
    # Window 4096 of 131072: kv/32 = 2147483648; 80e9*128 / (2147483648 + act) = 3814.7.
    assert "KV cache 2.15 GB, largest batch 3814" in texts[3]
    assert all(f.saving_s is None for f in finding.fixes)


def test_max_fraction_option():
    assert _findings(STEP, {"batch": 128, "past": 131072}, **{"max-fraction": 0.9}) == ()
    assert len(_findings(STEP, {"batch": 64, "past": 131072}, **{"max-fraction": 0.4})) == 1


def test_does_not_fit():
    (finding,) = _findings(STEP, {"batch": 256, "past": 131072})
    # 2 * 68719476736 = 137438953472 B, more than the 80e9 - 1073741824 B left: "does not fit".
    # Live bytes per sequence are those at batch 128 (everything scales with the batch).
    assert finding.metric("kv_cache_bytes") == 137_438_953_472
    assert "does not fit in the" in finding.message
    assert finding.metric("largest_batch") == 147  # the same sequences as at batch 128


def test_weights_already_fill_the_device():
    text = """
    g (float16["batch",150000] x, float16["batch",8,"past",128] past_key)
      => (float16["batch",300000] y, float16["batch",8,1,128] m) <float16[150000,300000] w> {
        y = MatMul(x, w)
        axes = Constant<value = int64[1] {2}>()
        m = ReduceMax(past_key, axes)
    }
    """
    # w: 150000*300000*2 = 90 GB > 80 GB: nothing is left for the cache.
    (finding,) = _findings(text, {"batch": 1, "past": 1024})
    assert finding.metric("memory_left_bytes") < 0
    assert "does not fit: weights 90 GB and live activations" in finding.message
    assert finding.metric("largest_batch") == 0


def test_gqa_heads_from_the_attention_op():
    (finding,) = _findings(GQA, {"batch": 128, "past": 131071})
    # Per token: 2 * 8 * 128 * 2 B = 4096 B; 4096 * 128 * 131071 = 68718952448 B (86% of left).
    assert finding.metric("kv_cache_bytes") == 68_718_952_448
    assert (finding.metric("kv_heads"), finding.metric("heads")) == (8, 32)
    assert "multi-query attention (1 KV head) instead of 8 for 32 query heads" in (
        finding.fixes[0].text)


def test_sequence_axis_from_dim_names():
    # [batch, past, heads, head_dim]: the declared name puts the sequence on axis 1; heads = 4.
    text = """
    g (float["batch","past_len",4,64] past_key) => (float["batch",1,4,64] m) {
        axes = Constant<value = int64[1] {1}>()
        m = ReduceMax(past_key, axes)
    }
    """
    # Per token 4*64*4 = 1024 B; at batch 2048 x 65536: 137438953472 B > 80 GB.
    (finding,) = _findings(text, {"batch": 2048, "past_len": 65536})
    assert finding.metric("kv_bytes_per_token") == 1024
    assert finding.metric("context_tokens") == 65536
    assert finding.metric("kv_heads") == 4


def test_empty_past_is_quiet():
    # Past length 0 (the prompt step): no cache yet, nothing to flag, no division by zero.
    assert _findings(STEP, {"batch": 128, "past": 0}) == ()


@pytest.mark.parametrize(
    "name, dims",
    [
        ("gpt2_decoder_step.onnx",
         {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 250}),
        ("gpt2_decoder_step.onnx",
         {"batch_size": 64, "sequence_length": 1, "past_sequence_length": 250}),
        ("bert_encoder.onnx", {"batch_size": 1, "sequence_length": 128}),
        ("small_cnn.onnx", {"batch_size": 1}),
        ("gpt2_small_graph_only.onnx", {}),
    ],
)
def test_sample_models_are_quiet(name, dims):
    report = lint(SAMPLES / name, hw="a100", dims=dims, config=Config(select=(CODE,)))
    assert [f.code for f in report.findings] == []
