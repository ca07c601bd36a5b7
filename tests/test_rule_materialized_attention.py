"""ML103 materialized-attention: eager attention blocks, with hand-derived bytes and times.

Device: a100 = nvidia-a100-sxm4-80gb, 2.039e12 B/s, vector.float32 19.5e12 FLOP/s,
tensor.float16 312e12 FLOP/s, as replayed in a CUDA graph (memlint.api.graph_replay, --cuda-graphs: no per-kernel launch cost). A MatMul with output Y and contraction K
costs 2 * numel(Y) * K FLOPs; Softmax 5 per element; Add/Mul/Div/Where/IsNaN 1; Cast,
Transpose 0. Each node reads its inputs once and writes its outputs once; Reshape moves nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memlint.api import graph_replay
from memlint.api import analyse, check, load
from memlint.config import Config
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.rulebase import Example

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
BW = 2.039e12
FP32_PEAK = 19.5e12
FP16_PEAK = 312e12
ALL = Config(select=("ML103",), min_share=0.0, min_saving_s=0.0)


def _findings(text: str, config: Config = ALL, **dims: int):
    report = analyse(load_example(Example(text, dims=dims)), graph_replay(resolve("a100")))
    return check(report, config).findings


def test_device_constants() -> None:
    spec = graph_replay(resolve("a100"))
    assert spec.memory_bandwidth_bytes_per_s == BW
    assert spec.peak_flops_per_s["vector.float32"] == FP32_PEAK
    assert spec.peak_flops_per_s["tensor.float16"] == FP16_PEAK
    assert not spec.kernel_overhead_s


ENCODER = """
g (float[1,4,64,32] q, float[1,4,64,32] k, float[1,4,64,32] v, float[1,1,1,64] mask)
  => (float[1,4,64,32] y) <float scale = {5.656854}> {
  kt = Transpose <perm = [0, 1, 3, 2]> (k)
  s = MatMul(q, kt)
  d = Div(s, scale)
  a = Add(d, mask)
  p = Softmax <axis = -1> (a)
  y = MatMul(p, v)
}
"""


def test_encoder_block_fp32() -> None:
    (f,) = _findings(ENCODER)
    assert f.code == "ML103"
    assert f.nodes == ("Softmax_4", "Transpose_0", "MatMul_1", "Div_2", "Add_3", "MatMul_5")
    # scores [1,4,64,64] fp32: 16384 elements, 65536 B.
    # Written by QK (1), read+written by Div (2), Add (2), Softmax (2), read by PV (1): 8 passes.
    assert f.metric("score_bytes") == 65536
    assert f.metric("score_passes") == 8
    assert f.metric("score_bytes_moved") == 8 * 65536
    # Bytes per node (all memory-bound: e.g. QK 1.05 MFLOP / 19.5 T = 54 ns < 131 kB / BW = 64 ns):
    # Transpose 32768 + 32768; QK 32768 + 32768 + 65536; Div 65536 + 4 + 65536;
    # Add 65536 + 256 + 65536; Softmax 2 * 65536; PV 65536 + 32768 + 32768.  Sum = 721156 B.
    block_s = 721156 / BW
    assert f.metric("block_time_s") == pytest.approx(block_s)
    assert f.time_s == pytest.approx(block_s)
    assert f.metric("block_share") == pytest.approx(1.0)  # the block is the whole model
    # Fused: FLOPs 2 * 1048576 (QK, PV) + 2 * 16384 (Div, Add) + 5 * 16384 (Softmax) = 2211840;
    # bytes: Q, K, V 3 * 32768 + mask 256 read (the scale is a weight), Y 32768 written = 131328.
    # fp32 matmuls run at the vector FP32 peak: 2211840 / 19.5e12 = 113 ns > 131328 / BW = 64 ns.
    assert f.metric("fused_flops") == 2211840
    assert f.metric("fused_bytes") == 131328
    fused_s = 2211840 / FP32_PEAK
    assert f.metric("fused_time_s") == pytest.approx(fused_s)
    assert len(f.fixes) == 3
    assert all(fix.saving_s == pytest.approx(block_s - fused_s) for fix in f.fixes)
    # An ONNX graph of no known exporter, an encoder: the optimizer first (it works on the file
    # as it is), then TensorRT, then a re-export (tests/test_artifact.py: the other producers).
    assert "onnxruntime.transformers.optimizer" in f.fixes[0].text
    assert "--model_type bert" in f.fixes[0].text and "MultiHeadAttention" in f.fixes[0].text
    assert "TensorRT" in f.fixes[1].text
    assert "scaled_dot_product_attention" in f.fixes[2].text
    assert "1x4x64x64 float32 attention scores (65.5 kB) go to memory 8 times" in f.message


FP16 = """
g (float16[4,64,32] q, float16[4,32,64] kt, float16[4,64,32] v, float16[1,64,64] mask)
  => (float16[4,64,32] y)
  <float16 scale, int64[4] split = {1, 4, 64, 64}, int64[3] merge = {4, 64, 64}> {
  s = MatMul(q, kt)
  m = Add(s, mask)
  c = Mul(m, scale)
  r = Reshape(c, split)
  f = Cast <to = 1> (r)
  p = Softmax <axis = -1> (f)
  h = Cast <to = 10> (p)
  b = Reshape(h, merge)
  y = MatMul(b, v)
}
"""


def test_fp16_mask_before_scale_with_casts_and_reshapes() -> None:
    (f,) = _findings(FP16)
    assert f.nodes == (
        "Softmax_5", "MatMul_0", "Add_1", "Mul_2", "Reshape_3", "Cast_4", "Cast_6", "Reshape_7",
        "MatMul_8",
    )
    # Scores: 16384 elements; the Softmax output is fp32 (65536 B), the rest fp16 (32768 B).
    # Passes: QK w, Add r+w, Mul r+w, Cast r+w, Softmax r+w, Cast r+w, PV r = 12 (Reshapes: 0).
    # fp16 passes 8 (QK, Add 2, Mul 2, Cast in, Cast out, PV), fp32 passes 4.
    assert f.metric("score_bytes") == 65536
    assert f.metric("score_passes") == 12
    assert f.metric("score_bytes_moved") == 8 * 32768 + 4 * 65536
    # Node bytes: QK 16384 + 16384 + 32768 = 65536; Add 32768 + 8192 + 32768 = 73728;
    # Mul 32768 + 2 + 32768 = 65538; Cast 32768 + 65536 = 98304; Softmax 131072;
    # Cast 98304; PV 32768 + 16384 + 16384 = 65536. Sum 598018 B, every node memory-bound.
    block_s = 598018 / BW
    assert f.metric("block_time_s") == pytest.approx(block_s)
    # Fused: FLOPs as above = 2211840 at the fp16 tensor peak (7.1 ns); bytes Q, K, V 3 * 16384
    # + mask 8192 read, Y 16384 written = 73728 -> memory-bound, 73728 / BW.
    assert f.metric("fused_flops") == 2211840
    assert f.metric("fused_bytes") == 73728
    assert f.metric("fused_time_s") == pytest.approx(73728 / BW)
    assert f.saving_s == pytest.approx((598018 - 73728) / BW)


DECODE = """
g (float[2,4,1,32] q, float[2,4,129,32] k, float[2,4,129,32] v, bool[2,1,1,129] causal)
  => (float[2,4,1,32] y) <float scale = {5.656854}, float low = {-3.4e38}, float zero = {0}> {
  kt = Transpose <perm = [0, 1, 3, 2]> (k)
  s = MatMul(q, kt)
  d = Div(s, scale)
  w = Where(causal, d, low)
  p = Softmax <axis = -1> (w)
  n = IsNaN(p)
  g = Where(n, zero, p)
  y = MatMul(g, v)
}
"""


def test_decode_step_q1_with_mask_after_scale_and_nan_guard() -> None:
    (f,) = _findings(DECODE)
    assert f.nodes[0] == "Softmax_4"
    assert set(f.nodes) == {"Softmax_4", "Transpose_0", "MatMul_1", "Div_2", "Where_3",
                            "IsNaN_5", "Where_6", "MatMul_7"}
    # Scores [2,4,1,129]: 1032 elements, 4128 B fp32; the IsNaN mask is bool (1032 B).
    # Passes: QK w, Div r+w, Where r+w, Softmax r+w, IsNaN r+w, Where_1 r(n) r(p) w, PV r = 13.
    assert f.metric("score_bytes") == 4128
    assert f.metric("score_passes") == 13
    assert f.metric("score_bytes_moved") == 11 * 4128 + 2 * 1032
    # Node bytes: Transpose 2 * 132096; QK 1024 + 132096 + 4128; Div 4128 + 4 + 4128;
    # Where 258 + 4128 + 4 + 4128; Softmax 8256; IsNaN 4128 + 1032; Where 1032 + 4 + 4128 + 4128;
    # PV 4128 + 132096 + 1024. Sum 578174 B, all memory-bound.
    assert f.metric("block_time_s") == pytest.approx(578174 / BW)
    # Fused FLOPs: 2 * 66048 (QK, PV: 2 * 1032 * 32 and 2 * 256 * 129) + 4 * 1032 + 5 * 1032
    # = 141384; bytes: Q 1024 + K 132096 + V 132096 + causal 258 read, Y 1024 written = 266498.
    assert f.metric("fused_flops") == 141384
    assert f.metric("fused_bytes") == 266498
    assert f.metric("fused_time_s") == pytest.approx(266498 / BW)
    assert f.saving_s == pytest.approx((578174 - 266498) / BW)


def test_ort_fused_matmul_with_folded_scale_and_transpose() -> None:
    # onnxruntime's basic optimizer folds the K transpose and the scale into FusedMatMul but
    # leaves the softmax unfused: still a materialized block.
    text = (
        "g (float[1,4,64,32] q, float[1,4,64,32] k, float[1,4,64,32] v, float[1,1,1,64] mask) "
        "=> (float[1,4,64,32] y) { s = com.microsoft.FusedMatMul <transB = 1, alpha = 0.17> "
        "(q, k)\n a = Add(s, mask)\n p = Softmax <axis = -1> (a)\n y = MatMul(p, v) }"
    )
    (f,) = _findings(text)
    assert f.nodes == ("Softmax_2", "FusedMatMul_0", "Add_1", "MatMul_3")
    # QK w, Add r+w, Softmax r+w, PV r = 6 passes; the fused kernel moves the same 131328 B as
    # in test_encoder_block_fp32 (Q, K, V, mask read, Y written).
    assert f.metric("score_passes") == 6
    assert f.metric("fused_bytes") == 131328


@pytest.mark.parametrize(
    "text",
    [
        # Attention probabilities returned (output_attentions): no fused kernel can drop them.
        "g (float[1,4,64,32] q, float[1,4,32,64] kt, float[1,4,64,32] v) => "
        "(float[1,4,64,32] y, float[1,4,64,64] p) "
        "{ s = MatMul(q, kt)\n p = Softmax <axis = -1> (s)\n y = MatMul(p, v) }",
        # A classifier head: logits from a weight, then Softmax: no attention.
        "g (float[8,1024] x) => (float[8,1000] p) <float[1024,1000] w> "
        "{ s = MatMul(x, w)\n p = Softmax <axis = -1> (s) }",
        # Softmax then a weight MatMul (no V).
        "g (float[1,4,64,32] q, float[1,4,32,64] kt) => (float[1,4,64,32] y) "
        "<float[64,32] w> { s = MatMul(q, kt)\n p = Softmax <axis = -1> (s)\n y = MatMul(p, w) }",
    ],
)
def test_not_attention_or_not_fusable(text: str) -> None:
    assert _findings(text) == ()


def test_fused_attention_op_is_quiet() -> None:
    text = (
        "g (float[1,512,768] q, float[1,512,768] k, float[1,512,768] v) => (float[1,512,768] y) "
        "{ y = com.microsoft.MultiHeadAttention <num_heads = 12> (q, k, v) }"
    )
    assert _findings(text) == ()


def test_bert_sample_fires_grouped_with_default_thresholds() -> None:
    model = load(SAMPLES / "bert_encoder.onnx", dims={"batch_size": 1, "sequence_length": 128})
    report = check(analyse(model, graph_replay(resolve("a100"))), Config(select=("ML103",)))
    (f,) = report.findings
    assert f.count == 2
    assert f.nodes[0] == "/encoder/layer.0/attention/self/Softmax"
    assert "/encoder/layer.1/attention/self/Softmax" in f.nodes
    # [1, 4, 128, 128] fp32 scores; MatMul, Div, Add mask, Softmax, MatMul: 8 passes.
    assert f.metric("score_bytes") == 4 * 128 * 128 * 4
    assert f.metric("score_passes") == 8
    assert f.saving_s > 0


def test_gpt2_sample_decode_step() -> None:
    dims = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 128}
    model = load(SAMPLES / "gpt2_decoder_step.onnx", dims=dims)
    report = check(analyse(model, graph_replay(resolve("a100"))), Config(select=("ML103",)))
    (f,) = report.findings
    assert f.count == 2
    assert f.nodes[0] == "/transformer/h.0/attn/Softmax"
    # [1, 4, 1, 129] fp32 scores; MatMul, Div, Where, Add, Softmax, MatMul: 10 passes.
    assert f.metric("score_bytes") == 4 * 129 * 4
    assert f.metric("score_passes") == 10
    # Fused reads Q 512 B, K and V 2 * 66048 B (the present caches), both masks (129 B bool,
    # 516 B fp32) and writes 512 B.
    assert f.metric("fused_bytes") == 512 + 2 * 66048 + 129 + 516 + 512
