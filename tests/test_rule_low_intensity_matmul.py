"""ML101 low-intensity-matmul: numbers derived by hand for tiny graphs, and the sample models.

a100 (nvidia-a100-sxm4-80gb): bandwidth 2039 GB/s, vector.float32 19.5 TFLOP/s (fp32 matmuls
without --tf32), tensor.float16 312 TFLOP/s, no per-kernel overhead. Ridges:
fp32 19.5e12 / 2039e9 = 9.5635 FLOP/B, fp16 312e12 / 2039e9 = 153.02 FLOP/B.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memlint.api import analyse, check, lint
from memlint.config import Config
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.rulebase import Example

BW = 2039e9
FP32_PEAK = 19.5e12
FP16_PEAK = 312e12
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
ALL_FINDINGS = Config(select=("ML101",), min_share=0.0, min_saving_s=0.0)


def _findings(text: str, dims=None, config: Config = ALL_FINDINGS, hw: str = "a100"):
    report = analyse(load_example(Example(text, dims=dims or {})), resolve(hw))
    return check(report, config).findings


def _fix(finding, starts: str):
    return next(f for f in finding.fixes if f.text.startswith(starts))


GEMV = (
    "g (float[1,768] x) => (float[1,3072] y) <float[768,3072] w> { y = MatMul(x, w) }"
)


def test_fp32_gemv_numbers():
    # MatMul [1,768]x[768,3072] fp32 on a100:
    #   flops = 2*1*3072*768 = 4,718,592
    #   weights W = 768*3072*4 = 9,437,184 B; other bytes A = 768*4 + 3072*4 = 15,360 B
    #   moved = 9,452,544 B; intensity = 4718592/9452544 = 0.49919 FLOP/B
    #   time = 9452544 / 2039e9 = 4.63587 us (memory-bound: compute 4718592/19.5e12 = 0.242 us)
    #   s = ridge*W / (flops - ridge*A) = 9.5635*9437184 / (4718592 - 146895.5) = 19.742
    #   M* = ceil(1 * 19.742) = 20
    [f] = _findings(GEMV)
    ridge = FP32_PEAK / BW
    time = 9_452_544 / BW
    assert f.code == "ML101" and f.nodes == ("MatMul_0",)
    assert f.metric("flops") == 4_718_592
    assert f.metric("weight_bytes") == 9_437_184
    assert f.metric("bytes_moved") == 9_452_544
    assert f.metric("intensity") == pytest.approx(4_718_592 / 9_452_544)
    assert f.metric("ridge") == pytest.approx(ridge)
    assert f.metric("time_s") == pytest.approx(time)
    assert f.time_s == pytest.approx(time)
    assert f.metric("share") == pytest.approx(1.0)
    assert f.metric("rows") == 1
    assert f.metric("rows_compute_bound") == 20
    assert "needs M >= 20 rows to be compute-bound (M = 1)" in f.message
    assert f.message.startswith("MatMul [1,768]x[768,3072] float32: intensity 0.499 FLOP/B")
    # Batching to 20 rows: flops 94,371,840 -> compute 4.8396 us; bytes 9437184 + 20*15360 =
    # 9,744,384 -> memory 4.7790 us; compute-bound, 4.8396 us for 20 rows. Saving for our one
    # row: 4.63587 us - 4.8396 us / 20 = 4.39389 us.
    batch = _fix(f, "Batch more inputs per call")  # no KV cache: not an LLM, no vLLM advice
    assert "vLLM" not in batch.text
    assert batch.saving_s == pytest.approx(time - 94_371_840 / FP32_PEAK / 20)
    assert "per-row time drops from 4.64 us to 242 ns" in batch.text
    # int8: weight bytes 9437184 * 8/32 = 2,359,296 -> saves 7,077,888 B / BW = 3.4712 us;
    # int4: 1,179,648 B -> saves 8,257,536 B / BW = 4.0498 us (both still memory-bound:
    # 1,179,648 + 15,360 = 1,195,008 B / BW = 0.586 us > compute 0.242 us).
    assert _fix(f, "Store the weights as int8").saving_s == pytest.approx(7_077_888 / BW)
    assert _fix(f, "Store the weights as int4").saving_s == pytest.approx(8_257_536 / BW)
    assert "int4 weights save 4.05 us" in f.message
    assert not any("Speculative decoding" in x.text for x in f.fixes)  # not a decoder
    # best first: batching 4.39 us > int4 4.05 us > int8 3.47 us; an ONNX graph gets
    # onnxruntime's quantizer, not torchao
    assert [x.saving_s for x in f.fixes] == sorted((x.saving_s for x in f.fixes), reverse=True)
    assert "MatMulNBits" in _fix(f, "Store the weights as int4").text
    assert "torchao" not in _fix(f, "Store the weights as int4").text


# BERT-large-shaped projections (hidden 1024, FFN 4096) in fp16.
BERT_LARGE = """
g (float16["batch","seq",1024] x) => (float16["batch","seq",1024] y)
  <float16[1024,1024] wq, float16[1024,4096] w_up, float16[4096,1024] w_down> {
  q = MatMul(x, wq)
  h = MatMul(q, w_up)
  y = MatMul(h, w_down)
}
"""


def test_bert_large_fp16_at_batch_32_seq_512_is_quiet():
    # M = 32*512 = 16384 rows. The [1024,4096] projection: flops = 2*16384*1024*4096 = 137.4 G;
    # bytes = 16384*1024*2 (x) + 1024*4096*2 (w) + 16384*4096*2 (y) = 33.6 M + 8.4 M + 134.2 M
    # = 176.2 MB; intensity 780 FLOP/B > ridge 153 FLOP/B. The [1024,1024] one: 34.4 G FLOP over
    # 33.6 M + 2.1 M + 33.6 M = 69.2 MB, 496 FLOP/B > 153. Compute-bound: nothing to flag.
    assert _findings(BERT_LARGE, {"batch": 32, "seq": 512}, Config(select=("ML101",))) == ()


def test_bert_large_fp16_at_batch_1_seq_1_fires_on_every_projection():
    # M = 1: [1024,4096] has intensity 2*1024*4096 / (2048 + 8388608 + 8192) = 0.9988 FLOP/B
    # and s = 153.02*8388608 / (8388608 - 153.02*10240) = 188.16 -> M* = 189.
    found = _findings(BERT_LARGE, {"batch": 1, "seq": 1}, Config(select=("ML101",)))
    assert sorted(n for f in found for n in f.nodes) == ["MatMul_0", "MatMul_1", "MatMul_2"]
    up = next(f for f in found if f.nodes == ("MatMul_1",))
    assert up.metric("intensity") == pytest.approx(8_388_608 / 8_398_848)
    assert up.metric("ridge") == pytest.approx(FP16_PEAK / BW)
    assert up.metric("rows_compute_bound") == 189


def test_two_activations_are_not_this_rules_business():
    # Q @ K^T over a KV cache: no weight read at all.
    text = (
        "g (float[1,12,1,64] q, float[1,12,64,512] k) => (float[1,12,1,512] s) "
        "{ s = MatMul(q, k) }"
    )
    assert _findings(text) == ()


def test_no_batch_reaches_the_ridge_but_weights_dominate():
    # [1,8]x[8,4096] fp32: flops = 2*8*4096 = 65,536; W = 8*4096*4 = 131,072 B;
    # A = 8*4 + 4096*4 = 16,416 B; ridge*A = 9.5635*16416 = 156,995 > flops: never compute-bound.
    # Weights are 131072 / 147488 = 89% of bytes moved, so it is flagged.
    text = "g (float[1,8] x) => (float[1,4096] y) <float[8,4096] w> { y = MatMul(x, w) }"
    [f] = _findings(text)
    assert "no batch makes it compute-bound (M = 1)" in f.message
    assert f.metric("rows_compute_bound") is None
    assert not any(x.text.startswith("Batch") for x in f.fixes)
    # int8 saves 131072 * 3/4 = 98,304 B (compute 65536/19.5e12 = 3.4 ns stays below memory).
    assert _fix(f, "Store the weights as int8").saving_s == pytest.approx(98_304 / BW)


def test_activation_bound_conv_is_quiet():
    # Depthwise-like 1x1 conv, 16 -> 32 channels at 32x32: W = 32*16*4 = 2,048 B, activations
    # 16*1024*4 + 32*1024*4 = 196,608 B; flops = 2*32*1024*16 = 1,048,576; ridge*A = 1.88 M >
    # flops (never), and weights are 1% of the bytes: the activations set its time.
    text = (
        "g (float[1,16,32,32] x) => (float[1,32,32,32] y) <float[32,16,1,1] w> "
        "{ y = Conv(x, w) }"
    )
    assert _findings(text) == ()


def test_conv_on_one_pixel_counts_output_pixels_as_rows():
    # 1x1 conv 512 -> 2048 on a 1x1 image: M = out numel / out channels = 2048/2048 = 1.
    # flops = 2*2048*512 = 2,097,152; W = 2048*512*4 = 4,194,304; A = 512*4 + 2048*4 = 10,240;
    # s = 9.5635*4194304 / (2097152 - 97930) = 20.07 -> M* = 21.
    text = (
        "g (float[1,512,1,1] x) => (float[1,2048,1,1] y) <float[2048,512,1,1] w> "
        "{ y = Conv(x, w) }"
    )
    [f] = _findings(text)
    assert f.metric("rows") == 1 and f.metric("rows_compute_bound") == 21
    assert f.message.startswith("Conv [1,512,1,1]*[2048,512,1,1] float32")
    texts = [x.text for x in f.fixes]
    assert any(t.startswith("Store the weights as int8") for t in texts)
    assert not any(t.startswith("Store the weights as int4") for t in texts)  # convs: int8 only


def test_int4_weights_get_no_quantization_fix():
    # MatMulNBits, N = K = 4096, 4-bit blocks of 32: B packed as [4096,128,16] uint8 =
    # 8,388,608 B, plus fp16 scales 4096*128*2 = 1,048,576 B: 9,437,184 B of weights.
    text = """
    g (float16[1,4096] x) => (float16[1,4096] y) <uint8[4096,128,16] wq, float16[524288] sc> {
      y = com.microsoft.MatMulNBits <K: int = 4096, N: int = 4096, bits: int = 4,
                                     block_size: int = 32> (x, wq, sc)
    }
    """
    [f] = _findings(text)
    assert f.metric("weight_bytes") == 9_437_184
    assert f.message.startswith("MatMulNBits [1,4096]x[4096,128,16] int4:")
    assert not any(x.text.startswith("Store the weights") for x in f.fixes)
    assert "weights save" not in f.message


def test_max_intensity_ratio_option():
    # The GEMV's intensity 0.499 is above 0.05 * 9.5635 = 0.478: quiet at that ratio.
    strict = Config(select=("ML101",), min_share=0.0, min_saving_s=0.0,
                    rule_options={"ML101": {"max-intensity-ratio": 0.05}})
    assert _findings(GEMV, config=strict) == ()
    loose = Config(select=("ML101",), min_share=0.0, min_saving_s=0.0,
                   rule_options={"low-intensity-matmul": {"max-intensity-ratio": 0.06}})
    assert len(_findings(GEMV, config=loose)) == 1


def test_gpt2_decoder_step_flags_weight_projections_only():
    # b=1, s=1, past=128: every projection is a fp32 GEMV (M = 1); the attention MatMuls read the
    # KV cache, not weights. Identical layers are grouped (h.0 and h.1).
    report = lint(
        SAMPLES / "gpt2_decoder_step.onnx", hw="a100",
        dims={"batch_size": 1, "sequence_length": 1, "past_sequence_length": 128},
        config=Config(select=("ML101",)),
    )
    flagged = sorted(n for f in report.findings for n in f.nodes)
    assert flagged == sorted(
        [f"/transformer/h.{i}/{p}/MatMul" for i in (0, 1)
         for p in ("attn/c_attn", "attn/c_proj", "mlp/c_fc", "mlp/c_proj")]
        + ["/lm_head/MatMul"]
    )
    c_attn = next(f for f in report.findings if "/transformer/h.0/attn/c_attn/MatMul" in f.nodes)
    assert c_attn.count == 2
    # c_attn [1,1,128]x[128,384]: W = 196,608 B, A = 512 + 1536 = 2,048 B, flops = 98,304;
    # s = 9.5635*196608 / (98304 - 19586) = 23.89 -> M* = 24.
    assert c_attn.metric("rows_compute_bound") == 24
    node = next(n for n in report.nodes if n.name == "/transformer/h.0/attn/c_attn/MatMul")
    assert c_attn.metric("time_s") == node.timing.predicted_latency_s
    assert c_attn.metric("flops") == node.cost.flops == 98_304


def test_gpt2_prefill_and_other_samples_are_quiet():
    prefill = lint(SAMPLES / "gpt2_decoder_step.onnx", hw="a100",
                   dims={"batch_size": 8, "sequence_length": 128, "past_sequence_length": 1},
                   config=Config(select=("ML101",)))
    assert prefill.findings == ()
    bert = lint(SAMPLES / "bert_encoder.onnx", hw="a100",
                dims={"batch_size": 1, "sequence_length": 128}, config=Config(select=("ML101",)))
    assert bert.findings == ()
    cnn = lint(SAMPLES / "small_cnn.onnx", hw="a100", dims={"batch_size": 1},
               config=Config(select=("ML101",)))
    assert cnn.findings == () and cnn.hidden_as_noise == 1
    # Without noise control: only the classifier Gemm 64 -> 10 at M = 1 streams its weights; the
    # convs are below the ridge because of their activations (never compute-bound by batching,
    # weights a few % of their bytes), which is not this rule's business.
    cnn = lint(SAMPLES / "small_cnn.onnx", hw="a100", dims={"batch_size": 1}, config=ALL_FINDINGS)
    assert [f.nodes for f in cnn.findings] == [("/classifier/Gemm",)]
