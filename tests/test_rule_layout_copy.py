"""ML107 layout-copy: copy patterns, bytes moved and savings derived by hand.

Device a100 (nvidia-a100-sxm4-80gb): 2039 GB/s, as replayed in a CUDA graph (memlint.api.graph_replay, --cuda-graphs: no per-kernel launch cost). A copy does no
arithmetic, so its time is bytes / 2039e9 and the fix saves all of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import memlint
from memlint.api import graph_replay
from memlint.api import analyse, check
from memlint.config import Config
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.rulebase import Example

A100 = graph_replay(resolve("a100"))
BW = 2039e9
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def _findings(text: str, **options) -> list:
    report = analyse(load_example(Example(text)), A100)
    config = Config(
        select=("ML107",), min_share=0.0, min_saving_s=0.0,
        rule_options={"ML107": options} if options else {},
    )
    return list(check(report, config).findings)


def _only(text: str, **options):
    (finding,) = _findings(text, **options)
    return finding


def test_device_assumptions():
    assert A100.memory_bandwidth_bytes_per_s == BW
    assert not A100.kernel_overhead_s


def test_transpose_into_matmul_operand_a():
    # [1024, 2048] fp32 = 8,388,608 B read + 8,388,608 B written = 16,777,216 B.
    finding = _only("""g (float[1024,2048] x, float[1024,512] w) => (float[2048,512] y) {
      t = Transpose<perm = [1, 0]>(x)  y = MatMul(t, w) }""")
    assert finding.nodes == ("Transpose_0",)
    assert finding.metric("bytes_moved") == 16_777_216
    assert finding.time_s == pytest.approx(16_777_216 / BW)  # 8.23 us
    assert finding.fixes[0].saving_s == pytest.approx(16_777_216 / BW)
    assert finding.message.startswith("Transpose into MatMul operand A: Transpose perm=[1, 0]")
    assert "FusedMatMul(transA=1)" in finding.fixes[0].text
    assert finding.signature == (
        "Transpose into MatMul operand A|Transpose perm=[1, 0] float32[1024, 2048] -> "
        "float32[2048, 1024]"
    )


def test_batched_key_transpose_into_operand_b():
    # K^T for the scores: [8, 16, 512, 64] fp32 = 16,777,216 B each way.
    finding = _only("""g (float[8,16,512,64] q, float[8,16,512,64] k) => (float[8,16,512,512] s) {
      kt = Transpose<perm = [0, 1, 3, 2]>(k)  s = MatMul(q, kt) }""")
    assert finding.metric("bytes_moved") == 2 * 16_777_216
    assert "FusedMatMul(transB=1)" in finding.fixes[0].text


def test_cancelling_transposes_are_one_finding_saving_both():
    # perm [0,2,3,1] then [0,3,1,2]: p1[p2[i]] = i for every i. Each copies [8,512,16,64] fp32
    # = 16,777,216 B each way: 2 * 33,554,432 = 67,108,864 B together.
    finding = _only("""g (float[8,512,16,64] x) => (float[8,512,16,64] y) {
      t = Transpose<perm = [0, 2, 3, 1]>(x)  y = Transpose<perm = [0, 3, 1, 2]>(t) }""")
    assert finding.nodes == ("Transpose_0", "Transpose_1")
    assert finding.metric("copies") == 2
    assert finding.metric("bytes_moved") == 67_108_864
    assert finding.fixes[0].saving_s == pytest.approx(67_108_864 / BW)
    assert finding.message.startswith("cancelling Transpose pair")


def test_transposes_that_do_not_cancel_are_reported_apart():
    findings = _findings("""g (float[8,512,16,64] x) => (float[8,16,512,64] y) {
      t = Transpose<perm = [0, 2, 3, 1]>(x)  y = Transpose<perm = [0, 1, 3, 2]>(t) }""")
    assert sorted(f.nodes for f in findings) == [("Transpose_0",), ("Transpose_1",)]
    assert not any("cancelling" in f.message for f in findings)


def test_cast_round_trip_around_nothing():
    # [4096, 4096]: fp16 H = 33,554,432 B, fp32 F = 67,108,864 B; each Cast moves H + F.
    finding = _only("""g (float16[4096,4096] x) => (float16[4096,4096] y) {
      a = Cast<to = 1>(x)  b = Cast<to = 10>(a)  y = Relu(b) }""")
    assert finding.nodes == ("Cast_0", "Cast_1")
    assert finding.metric("bytes_moved") == 2 * (33_554_432 + 67_108_864)
    assert finding.fixes[0].saving_s == pytest.approx(201_326_592 / BW)
    assert finding.message.startswith("Cast round trip float16->float32->float16:")
    assert "remove both Casts" in finding.fixes[0].text


def test_cast_round_trip_around_a_norm_is_reported_once():
    finding = _only("""g (float16[4096,4096] x) => (float16[4096,4096] y)
    <float[4096] gamma, float[4096] beta> {
      a = Cast<to = 1>(x)  n = LayerNormalization<axis = -1>(a, gamma, beta)
      y = Cast<to = 10>(n) }""")
    assert finding.nodes == ("Cast_0", "Cast_2")
    assert finding.metric("bytes_moved") == 201_326_592
    assert "around LayerNormalization" in finding.message
    assert "stash_type=1" in finding.fixes[0].text


def test_plain_large_cast_and_no_op_cast():
    cast = _only("""g (int64[2048,1024] m) => (float[2048,1024] y) { y = Cast<to = 1>(m) }""")
    assert cast.message.startswith("Cast int64->float32")
    assert cast.metric("bytes_moved") == 2048 * 1024 * (8 + 4)
    assert "fold the conversion" in cast.fixes[0].text.lower()
    noop = _only("""g (float[2048,1024] x) => (float[2048,1024] y) { y = Cast<to = 1>(x) }""")
    assert noop.message.startswith("no-op Cast to float32")


def test_gqa_repeat_kv_expand_of_the_kv_cache():
    # past_key [1,8,4096,128] fp16 = 8,388,608 B read, plus the shape (5 int64 = 40 B); the
    # repeated [1,8,4,4096,128] fp16 = 33,554,432 B written: 41,943,080 B.
    finding = _only("""g (float16[1,8,4096,128] past_key) => (float16[1,32,4096,128] y)
    <int64[1] ax = {2}, int64[5] shp = {1,8,4,4096,128}, int64[4] out_shape = {1,32,4096,128}> {
      u = Unsqueeze(past_key, ax)  e = Expand(u, shp)  y = Reshape(e, out_shape) }""")
    assert finding.nodes == ("Expand_1",)
    assert finding.metric("bytes_moved") == 41_943_080
    assert finding.message.startswith("Expand of the KV cache (GQA repeat_kv)")
    assert "GroupQueryAttention" in finding.fixes[0].text
    assert "enable_gqa=True" in finding.fixes[0].text


def test_expand_before_a_broadcasting_add():
    # Reads [1,1,4096] fp32 (16,384 B) and the shape (24 B), writes [64,256,4096] fp32
    # (268,435,456 B).
    finding = _only("""g (float[1,1,4096] x, float[64,256,4096] z) => (float[64,256,4096] y)
    <int64[3] shp = {64,256,4096}> { e = Expand(x, shp)  y = Add(e, z) }""")
    assert finding.metric("bytes_moved") == 16_384 + 24 + 268_435_456
    assert finding.message.startswith("Expand before a broadcasting op")
    assert finding.fixes[0].text == (
        "Drop the Expand and pass the unexpanded tensor: the consumer (Add) broadcasts it "
        "natively."
    )


def test_min_bytes_option():
    # [256, 256] fp32 moves 2 * 262,144 = 524,288 B: below the default 1 MiB.
    text = """g (float[256,256] x) => (float[256,256] y) { y = Transpose<perm = [1, 0]>(x) }"""
    assert _findings(text) == []
    (finding,) = _findings(text, **{"min-bytes": 500_000})
    assert finding.metric("bytes_moved") == 524_288
    assert finding.message.startswith("layout Transpose")


def test_transpose_of_a_weight_is_folded_at_load_and_not_reported():
    text = """g (float[64,4096] x) => (float[64,4096] y) <float[4096,4096] w> {
      wt = Transpose<perm = [1, 0]>(w)  y = MatMul(x, wt) }"""
    assert _findings(text) == []


def test_gpt2_sample_key_transpose_is_left_to_the_attention_rule():
    # Per layer K^T of present.key [16, 4, 251, 32] fp32 = 2,056,192 B each way: a large copy,
    # but it belongs to an eager attention block, which ML103 reports (its fused kernel removes
    # the copy): ML107 stays quiet so that the saving is not counted twice.
    dims = {"batch_size": 16, "sequence_length": 1, "past_sequence_length": 250}
    path = SAMPLES / "gpt2_decoder_step.onnx"
    assert memlint.lint(path, hw=graph_replay(resolve("a100")), dims=dims, config=Config(select=("ML107",))).findings == ()
    (attention,) = memlint.lint(path, hw=graph_replay(resolve("a100")), dims=dims, config=Config(select=("ML103",))).findings
    assert {"/transformer/h.0/attn/Transpose_3", "/transformer/h.1/attn/Transpose_3"} <= set(
        attention.nodes)


def test_bert_sample_copies_are_below_the_noise_thresholds():
    report = memlint.lint(
        SAMPLES / "bert_encoder.onnx", hw=graph_replay(resolve("a100")), dims={"batch_size": 1, "sequence_length": 128},
        config=Config(select=("ML107",)),
    )
    assert report.findings == ()
