"""ML102 unfused-elementwise-chain: which nodes form a chain, and its bytes and saving by hand.

Device a100 (nvidia-a100-sxm4-80gb): 2039 GB/s, vector fp32 19.5 TFLOP/s, as replayed in a CUDA graph
(memlint.api.graph_replay, --cuda-graphs: no per-kernel launch
overhead. Every chain here is memory-bound, so each time is bytes / 2039e9.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import memlint
from memlint.api import graph_replay
from memlint.api import analyse, check
from memlint.config import Config
from memlint.engine import load_rules
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.rulebase import Example, RuleContext

RULE = load_rules().rules["ML102"]
A100 = graph_replay(resolve("a100"))
BW = 2039e9
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def _raw(text: str) -> list:
    """The rule's own findings, before the engine groups identical layers."""
    report = analyse(load_example(Example(text)), A100)
    ctx = RuleContext(
        report.model, report.hardware, report.nodes, report.summary.predicted_latency_s
    )
    return list(RULE.check(ctx))


def _visible(text: str) -> list:
    report = analyse(load_example(Example(text)), A100)
    return list(check(report, Config(select=("ML102",), min_share=0.0, min_saving_s=0.0)).findings)


def test_device_assumptions():
    assert A100.memory_bandwidth_bytes_per_s == BW
    assert not A100.kernel_overhead_s


BIAS_GELU = """g (float[4,256,1024] x) => (float[4,256,4096] y)
<float[1024,4096] w, float[4096] b, float s = {1.4142135}, float one = {1.0}, float half = {0.5}> {
  h = MatMul(x, w)  hb = Add(h, b)  d = Div(hb, s)  e = Erf(d)  p = Add(e, one)
  m = Mul(hb, p)  y = Mul(m, half)
}"""


def test_bias_add_and_decomposed_gelu_erf():
    # A = 4*256*4096 fp32 = 16,777,216 B. As written: bias Add 2A + 16384 (bias [4096] fp32),
    # Div 2A + 4, Erf 2A, Add 2A + 4, Mul(hb, p) 3A, Mul(m, 0.5) 2A + 4 -> 13A + 16396 =
    # 218,120,204 B. Fused: read h once (A), the bias and 3 scalars (16396), write y (A)
    # -> 2A + 16396 = 33,570,828 B. The MatMul is not part of the chain.
    (finding,) = _raw(BIAS_GELU)
    assert finding.nodes == ("Add_1", "Div_2", "Erf_3", "Add_4", "Mul_5", "Mul_6")
    assert finding.metric("bytes_as_written") == 218_120_204
    assert finding.metric("bytes_fused") == 33_570_828
    assert finding.metric("time_as_written_s") == pytest.approx(218_120_204 / BW)
    assert finding.metric("time_fused_s") == pytest.approx(33_570_828 / BW)
    saving = (218_120_204 - 33_570_828) / BW  # 90.5 us
    assert finding.fixes[0].saving_s == pytest.approx(saving)
    assert finding.time_s == pytest.approx(218_120_204 / BW)
    assert finding.message.startswith("bias Add + decomposed GELU (erf) as 6 kernels")
    assert "com.microsoft BiasGelu" in finding.fixes[0].text
    assert "--model_type bert" in finding.fixes[0].text
    assert finding.signature == (
        "bias Add + decomposed GELU (erf)|Add+Div+Erf+Add+Mul+Mul|float32[4, 256, 4096]"
    )


RMS_NORM_FP16 = """g (float16[4,512,4096] x) => (float16[4,512,4096] y)
<float two = {2.0}, float eps = {1e-6}, float16[4096] w> {
  x32 = Cast<to = 1>(x)  sq = Pow(x32, two)  ms = ReduceMean<axes = [-1]>(sq)  v = Add(ms, eps)
  r = Sqrt(v)  inv = Reciprocal(r)  n = Mul(x32, inv)  n16 = Cast<to = 10>(n)  y = Mul(n16, w)
}"""


def test_rmsnorm_with_cast_pair_in_fp16():
    # E = 4*512*4096 = 8,388,608 elements; H = fp16 tensor 16,777,216 B; F = fp32 33,554,432 B;
    # r = row statistics [4,512,1] fp32 = 8192 B. As written: Cast H+F, Pow 2F+4, ReduceMean
    # F+r, Add 2r+4, Sqrt 2r, Reciprocal 2r, Mul(x32, inv) 2F+r, Cast F+H, Mul(n16, w) 2H+8192
    # -> 4H + 7F + 8r + 8200 = 302,063,624 B. Fused: read x (H), 2.0, eps, w (8200), write y (H)
    # -> 33,562,632 B. FLOPs 4E + 4*2048 stay; the chain is memory-bound either way.
    (finding,) = _raw(RMS_NORM_FP16)
    assert len(finding.nodes) == 9
    assert finding.metric("bytes_as_written") == 302_063_624
    assert finding.metric("bytes_fused") == 33_562_632
    assert finding.fixes[0].saving_s == pytest.approx((302_063_624 - 33_562_632) / BW)
    assert finding.message.startswith("decomposed RMSNorm as 9 kernels")
    assert "SimplifiedLayerNormalization" in finding.fixes[0].text


RESIDUAL_STREAM = """g (float[2,1024,1024] x, float[2,1024,1024] r) => (float[2,1024,1024] y)
<float[1024] g, float[1024] b, float[1024,1024] w> {
  a1 = Add(x, r)  n1 = LayerNormalization<axis = -1>(a1, g, b)  m = MatMul(n1, w)
  a2 = Add(a1, m)  y = LayerNormalization<axis = -1>(a2, g, b)
}"""


def test_residual_adds_joined_directly_and_through_a_matmul_stay_apart():
    # a1 -> a2 is a direct edge, but a1 -> LayerNorm -> MatMul -> a2 is a path through a
    # kernel: fusing a1 with a2 would put the MatMul inside and outside the kernel at once.
    # A = 2*1024*1024 fp32 = 8,388,608 B; gamma and beta 4096 B each.
    first, second = _raw(RESIDUAL_STREAM)
    assert first.nodes == ("Add_0", "LayerNormalization_1")
    assert second.nodes == ("Add_3", "LayerNormalization_4")
    # Chain 1 writes a1 (the next residual Add reads it) and n1 (the MatMul reads it):
    # 2A read + 8192 + 2A written. As written: Add 3A, LayerNorm 2A + 8192.
    assert first.metric("bytes_fused") == 4 * 8_388_608 + 8192
    assert first.metric("bytes_as_written") == 5 * 8_388_608 + 8192
    # Chain 2: a2 is read only by the LayerNorm, so only y is written: 3A + 8192.
    assert second.metric("bytes_fused") == 3 * 8_388_608 + 8192
    assert first.message.startswith("residual Add + LayerNorm as 2 kernels")
    assert "SkipLayerNormalization" in first.fixes[0].text


def test_residual_adds_alone_form_no_chain():
    text = """g (float[2048,1024] x, float[2048,1024] r) => (float[2048,1024] y)
    <float[1024,1024] w> { a1 = Add(x, r)  m = MatMul(a1, w)  y = Add(a1, m) }"""
    assert _raw(text) == []


def test_chain_feeding_softmax_is_left_to_ml103():
    text = """g (float[8,16,512,64] q, float[8,16,64,512] k, float[8,1,1,512] mask)
    => (float[8,16,512,512] p) <float c = {8.0}> {
      s = MatMul(q, k)  d = Div(s, c)  a = Add(d, mask)  p = Softmax<axis = -1>(a)
    }"""
    assert _raw(text) == []


def test_reshape_is_transparent_and_its_data_read_at_the_source():
    # Add -> Reshape -> Mul is one chain; A = 2048*1024 fp32 = 8,388,608 B. Fused: read x (A),
    # b (4096), s (4); write y (A).
    text = """g (float[2048,1024] x) => (float[2,1024,1024] y)
    <float[1024] b, float s = {2.0}, int64[3] shape = {2, 1024, 1024}> {
      a = Add(x, b)  v = Reshape(a, shape)  y = Mul(v, s)
    }"""
    (finding,) = _raw(text)
    assert finding.nodes == ("Add_0", "Mul_2")
    assert finding.metric("bytes_fused") == 2 * 8_388_608 + 4096 + 4
    assert finding.message.startswith("element-wise chain as 2 kernels")


def test_scalar_glue_does_not_join_a_chain():
    # sqrt(scale) is computed on a 1-element tensor: not an activation, so Mul stays alone.
    text = """g (float[2048,1024] x, float[1] scale) => (float[2048,1024] y) {
      s = Sqrt(scale)  y = Mul(x, s)
    }"""
    assert _raw(text) == []


@pytest.mark.parametrize(
    ("body", "name", "kernel"),
    [
        # GPT-2's tanh GELU: 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3)))
        ("a = Mul(x, half)  p = Pow(x, three)  q = Mul(p, c)  s = Add(x, q)  t = Mul(s, k)"
         "  u = Tanh(t)  v = Add(u, one)  y = Mul(a, v)", "decomposed GELU (tanh)", "FastGelu"),
        ("m = ReduceMean<axes = [-1]>(x)  d = Sub(x, m)  p = Pow(d, two)"
         "  v = ReduceMean<axes = [-1]>(p)  e = Add(v, eps)  r = Sqrt(e)  n = Div(d, r)"
         "  g = Mul(n, gamma)  y = Add(g, beta)", "decomposed LayerNorm", "LayerNormalization"),
        ("s = Sigmoid(x)  a = Mul(x, s)  y = Mul(a, up)", "SiLU/SwiGLU", "torch.compile"),
    ],
)
def test_patterns_are_named_with_their_fused_kernel(body, name, kernel):
    text = (
        "g (float[2048,4096] x, float[2048,4096] up) => (float[2048,4096] y)\n"
        "<float half = {0.5}, float three = {3.0}, float c = {0.044715}, float k = {0.79788},"
        " float one = {1.0}, float two = {2.0}, float eps = {1e-5}, float[4096] gamma,"
        " float[4096] beta> {\n  " + body + "\n}"
    )
    (finding,) = _visible(text)
    assert finding.message.startswith(f"{name} as ")
    assert kernel in finding.fixes[0].text


def test_bert_sample_reports_gelu_and_skip_layernorm_per_layer():
    report = memlint.lint(
        SAMPLES / "bert_encoder.onnx", hw=graph_replay(resolve("a100")), dims={"batch_size": 8, "sequence_length": 128},
        config=Config(select=("ML102",)),
    )
    messages = [f.message for f in report.findings]
    gelu = next(f for f in report.findings if "decomposed GELU (erf)" in f.message)
    assert gelu.count == 2 and len(gelu.nodes) == 12  # 2 layers x (bias Add + 5 GELU ops)
    assert sum("bias Add + residual Add + LayerNorm" in m for m in messages) == 2
    assert all("(Cast, Sub, Mul)" not in m for m in messages)  # the mask chain is noise here


def test_gpt2_sample_decode_step_keeps_residual_adds_apart():
    report = memlint.lint(
        SAMPLES / "gpt2_decoder_step.onnx", hw=graph_replay(resolve("a100")),
        dims={"batch_size": 4, "sequence_length": 1, "past_sequence_length": 128},
        config=Config(select=("ML102",), min_share=0.0, min_saving_s=0.0),
    )
    assert any("decomposed GELU (tanh)" in f.message for f in report.findings)
    for finding in report.findings:
        residual = [n for n in finding.nodes if n.startswith("/transformer/h.0/Add")]
        assert len(residual) <= 1, finding.nodes


def test_small_cnn_has_no_chain():
    report = memlint.lint(
        SAMPLES / "small_cnn.onnx", hw=graph_replay(resolve("a100")), dims={"batch_size": 8},
        config=Config(select=("ML102",), min_share=0.0, min_saving_s=0.0),
    )
    assert report.findings == ()


def _index(text: str):
    from memlint.analysis.graph_index import GraphIndex

    report = analyse(load_example(Example(text)), A100)
    return report, GraphIndex(report.model, report.nodes)


def test_one_search_serves_the_rule_and_the_fused_estimate(monkeypatch):
    # Every candidate of BIAS_GELU touches data, so the search with glue (the fused estimate)
    # decides as the one without (ML102): one pass finds both, the same Chain objects.
    from memlint.analysis import fusion

    calls = []
    search = fusion._search
    monkeypatch.setattr(fusion, "_search", lambda *a: calls.append(1) or search(*a))
    report, ctx = _index(BIAS_GELU)  # analyse priced the fused estimate: the one pass
    assert calls == [1]
    plain, glue = fusion.find_chains(ctx), fusion.find_chains(ctx, glue=True)
    assert [c.nodes for c in plain] == [c.nodes for c in glue] and len(plain) == 1
    assert all(a is b for a, b in zip(plain, glue))
    check(report, Config(select=("ML102",)))  # the rule reads the same search
    assert calls == [1]


def test_glue_joins_what_the_plain_search_leaves_out():
    # Sqrt on a 1-element tensor is a candidate the plain search leaves out (the test above
    # it: no ML102 finding); the search with glue fuses it into the Mul.
    from memlint.analysis import fusion

    text = """g (float[2048,1024] x, float[1] scale) => (float[2048,1024] y) {
      s = Sqrt(scale)  y = Mul(x, s)
    }"""
    _, ctx = _index(text)
    assert fusion.find_chains(ctx) == []
    (chain,) = fusion.find_chains(ctx, glue=True)
    assert [n.op_type for n in chain.nodes] == ["Sqrt", "Mul"]


def test_both_searches_in_one_pass_keep_their_own_chains():
    # Without glue the Sqrt on a 1-element tensor is a kernel of its own, outside the chain
    # of the Add and the Mul; with glue it joins them. One pass finds both.
    from memlint.analysis import fusion

    text = """g (float[2048,1024] x, float[1] scale) => (float[2048,1024] y) {
      k = Sqrt(scale)  a = Add(x, k)  y = Mul(a, x)
    }"""
    _, ctx = _index(text)
    (plain,) = fusion.find_chains(ctx)
    (glue,) = fusion.find_chains(ctx, glue=True)
    assert [n.op_type for n in plain.nodes] == ["Add", "Mul"]
    assert [n.op_type for n in glue.nodes] == ["Sqrt", "Add", "Mul"]


def test_the_searches_part_at_the_first_left_out_candidate():
    # Add and Mul join in both searches; the searches part at the Sqrt on a 1-element tensor.
    # Without glue it is a kernel, so the last Add sits one kernel deeper than the Mul and
    # starts no chain with it: [Add, Mul]. With glue, the Sqrt joins and so does the last Add:
    # one chain of all four, carried on from the state both searches shared.
    from memlint.analysis import fusion

    text = """g (float[2048,1024] x, float[1] scale) => (float[2048,1024] y) <float[1024] b> {
      a = Add(x, b)  m = Mul(a, a)  k = Sqrt(scale)  y = Add(m, k)
    }"""
    _, ctx = _index(text)
    (plain,) = fusion.find_chains(ctx)
    (glue,) = fusion.find_chains(ctx, glue=True)
    assert [n.op_type for n in plain.nodes] == ["Add", "Mul"]
    assert [n.op_type for n in glue.nodes] == ["Add", "Mul", "Sqrt", "Add"]
