"""ML106 wide-weights: numbers derived by hand for tiny graphs and for the GPT-2 sample.

a100 (nvidia-a100-sxm4-80gb): bandwidth 2039 GB/s, no per-kernel overhead, so a memory-bound
node takes bytes / 2039e9 s and its weight bytes W take W / 2039e9 s of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memlint.api import analyse, check, lint
from memlint.config import Config
from memlint.errors import ConfigError
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.ir import DType, ValueKind
from memlint.report import json_report
from memlint.rulebase import Example

BW = 2039e9
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
ALL_FINDINGS = Config(select=("ML106",), min_share=0.0, min_saving_s=0.0)


def _findings(text: str, dims=None, config: Config = ALL_FINDINGS):
    report = analyse(load_example(Example(text, dims=dims or {})), resolve("a100"))
    return check(report, config).findings


def _with_options(**options) -> Config:
    return Config(select=("ML106",), min_share=0.0, min_saving_s=0.0,
                  rule_options={"ML106": {k.replace("_", "-"): v for k, v in options.items()}})


GEMV = "g (float[1,1024] x) => (float[1,1024] y) <{dtype}[1024,1024] w> {{ y = MatMul(x, w) }}"


def test_fp32_gemv_numbers():
    # W = 1024*1024*4 = 4,194,304 B; activations 4096 + 4096; moved 4,202,496 B, memory-bound.
    # Weight time = t * W / moved = W / BW = 2.05704 us; share = W / moved = 0.99805.
    # fp16: W/2 saved -> 1.02852 us; int8: 3W/4 -> 1.54278 us; int4: 7W/8 -> 1.79991 us.
    [f] = _findings(GEMV.format(dtype="float"))
    w = 4_194_304
    assert f.code == "ML106" and f.nodes == ("MatMul_0",)
    assert f.time_s == pytest.approx(4_202_496 / BW)
    assert f.metric("weight_bytes_float32") == w
    assert f.metric("weight_time_s") == pytest.approx(w / BW)
    assert f.metric("weight_time_share") == pytest.approx(w / 4_202_496)
    assert f.metric("fp32_weight_time_share") == pytest.approx(w / 4_202_496)
    assert f.metric("saving_fp16_s") == pytest.approx(w / 2 / BW)
    assert f.metric("saving_int8_s") == pytest.approx(w * 3 / 4 / BW)
    assert f.metric("saving_int4_s") == pytest.approx(w * 7 / 8 / BW)
    # best first (int4, int8, fp16); an ONNX graph without a KV cache: onnxruntime's tools, no
    # torch and no LLM-only GPTQ/AWQ
    assert [x.saving_s for x in f.fixes] == pytest.approx([w * 7 / 8 / BW, w * 3 / 4 / BW,
                                                           w / 2 / BW])
    assert "convert_float_to_float16" in f.fixes[2].text
    assert "matmul_nbits_quantizer" in f.fixes[0].text and "GPTQ/AWQ" not in f.fixes[0].text
    assert not any("torch" in x.text for x in f.fixes)
    assert f.message == (
        "weights read per run: 4.19 MB float32; reading them takes 2.06 us of 2.06 us predicted "
        "(99.8%); fp16 saves 1.03 us, int8 saves 1.54 us, int4 saves 1.8 us"
    )


def test_fp16_weights_offer_int8_and_int4_only():
    # W = 2,097,152 B fp16: int8 saves W/2, int4 saves 3W/4; no fp16 step.
    [f] = _findings(GEMV.format(dtype="float16").replace("float[", "float16["))
    w = 2_097_152
    assert [m.name for m in f.evidence if m.name.startswith("saving_")] == [
        "saving_int8_s", "saving_int4_s"]
    assert f.metric("saving_int8_s") == pytest.approx(w / 2 / BW)
    assert f.metric("saving_int4_s") == pytest.approx(w * 3 / 4 / BW)
    # With target fp16, fp16 weights are not wide: quiet.
    assert _findings(GEMV.format(dtype="float16").replace("float[", "float16["),
                     config=_with_options(target="fp16")) == ()


def test_compute_bound_weights_cost_no_time():
    # 512 rows: intensity 2*512*1024*1024 / (2 MiB + 4 MiB + 2 MiB) = 128 > ridge 9.56.
    text = ('g (float["b",1024] x) => (float["b",1024] y) <float[1024,1024] w> '
            "{ y = MatMul(x, w) }")
    assert _findings(text, {"b": 512}) == ()


# A GEMV next to an element-wise op on a big activation: the weights take a third of the time.
MIXED = """
g ({t}[1,1024] x, {t}[1,1048576] z) => ({t}[1,1024] y, {t}[1,1048576] r) <{t}[1024,1024] w> {{
  y = MatMul(x, w)
  r = Relu(z)
}}
"""


def test_fp32_fires_at_a_lower_share_than_fp16():
    # fp16: W = 2,097,152; MatMul moves W + 2048 + 2048; Relu moves 2*2,097,152. Weight share
    # = 2097152 / (2101248 + 4194304) = 0.33311: below 0.5 -> quiet.
    assert _findings(MIXED.format(t="float16"), config=Config(select=("ML106",))) == ()
    # fp32: every byte doubles, same share 0.33311 >= 0.2 -> fires.
    [f] = _findings(MIXED.format(t="float"), config=Config(select=("ML106",)))
    assert f.metric("wide_weight_time_share") == pytest.approx(4_194_304 / (4_202_496 + 8_388_608))
    assert f.nodes == ("MatMul_0",)  # only the node that reads weights
    # Raising min-weight-share-fp32 above it silences it; lowering min-weight-share wakes fp16.
    quiet = _with_options(min_weight_share_fp32=0.4)
    assert _findings(MIXED.format(t="float"), config=quiet) == ()
    loud = _with_options(min_weight_share=0.3)
    assert len(_findings(MIXED.format(t="float16"), config=loud)) == 1


def test_bad_target_is_a_config_error():
    with pytest.raises(ConfigError, match="target"):
        _findings(GEMV.format(dtype="float"), config=_with_options(target="int3"))


def _gpt2_step():
    return lint(
        SAMPLES / "gpt2_decoder_step.onnx", hw="a100",
        dims={"batch_size": 1, "sequence_length": 1, "past_sequence_length": 128},
        config=Config(select=("ML106",)),
    )


def test_gpt2_decoder_step_fires_with_hand_checked_savings():
    report = _gpt2_step()
    [f] = report.findings
    nodes = {n["name"]: n for n in json.loads(json_report.render(report))["nodes"]}
    # From the JSON node data: /lm_head/MatMul reads W = 512,000 B of weights ([128,1000] fp32)
    # and moves 516,512 B; memory-bound, t = 516512 / BW = 253.3 ns, weight time 251.1 ns.
    # c_attn reads 196,608 B of 198,656 moved.
    lm_head, c_attn = nodes["/lm_head/MatMul"], nodes["/transformer/h.0/attn/c_attn/MatMul"]
    assert lm_head["bytes_read_by_kind"]["weights"] == 512_000
    assert lm_head["bytes_read"] + lm_head["bytes_written"] == 516_512
    assert lm_head["predicted_latency_s"] == pytest.approx(516_512 / BW)
    assert c_attn["bytes_read_by_kind"]["weights"] == 196_608
    # Every weight-reading node is memory-bound (batch 1, one token), so weight time = W / BW.
    # Float32 weight bytes read per run, per layer: ln_1 1024 (gamma, beta), c_attn 196608 +
    # bias 1536, attn c_proj 65536 + bias 512, ln_2 1024, c_fc 262144 + bias 2048, mlp c_proj
    # 262144 + bias 512, five Gelu scalars 20, the 1/sqrt(d) Div 4 and the mask Where 4 =
    # 793,116; twice = 1,586,232. Outside the layers: one wte row 512, one wpe row 512, mask Sub
    # and Mul 4 + 4, ln_f 1024, lm_head 512,000 = 514,056. Total 2,100,288 B.
    assert f.metric("weight_bytes_float32") == 2_100_288
    matmuls = 2 * (196_608 + 65_536 + 262_144 + 262_144) + 512_000  # 2,084,864 B
    others = 2_100_288 - matmuls  # 15,424 B: norms, biases, embedding rows, scalars
    # fp16 halves every float weight; int8/int4 take matmul weights to 8/4 bits and the others
    # to 16 bits. Every node stays memory-bound, so the saving is the bytes removed / BW.
    # lm_head alone: int4 saves 512000 * 7/8 / BW = 219.7 ns (= t - (516512 - 448000) / BW).
    assert f.metric("saving_fp16_s") == pytest.approx(2_100_288 / 2 / BW)  # 515.0 ns
    assert f.metric("saving_int8_s") == pytest.approx((matmuls * 3 / 4 + others / 2) / BW)  # 770.7
    assert f.metric("saving_int4_s") == pytest.approx((matmuls * 7 / 8 + others / 2) / BW)  # 898.5
    assert f.metric("weight_time_s") == pytest.approx(sum(
        n["bytes_read_by_kind"]["weights"] for n in nodes.values()) / BW)
    # The finding names the nodes that read float32 weights (not those reading only int64 shape
    # constants or the bool causal mask), and its time is theirs.
    graph = report.model.graph
    float_readers = {
        node.name for node in graph.nodes
        if any(graph.value(i) is not None and graph.value(i).kind is ValueKind.WEIGHT
               and graph.value(i).dtype is DType.FLOAT32 for i in node.inputs)
    }
    assert "/transformer/h.0/attn/Concat" not in float_readers  # reads int64 shape pieces
    assert set(f.nodes) == float_readers and len(f.nodes) == len(float_readers)
    assert f.time_s == pytest.approx(sum(nodes[n]["predicted_latency_s"] for n in float_readers))
    assert "2.1 MB float32" in f.message and "int4 saves 898 ns" in f.message


def test_other_samples():
    # The CNN's weights are tiny next to its activations: quiet. The BERT encoder at one token
    # is a stack of fp32 GEMVs: fires.
    cnn = lint(SAMPLES / "small_cnn.onnx", hw="a100", dims={"batch_size": 1},
               config=Config(select=("ML106",)))
    assert cnn.findings == ()
    bert = lint(SAMPLES / "bert_encoder.onnx", hw="a100",
                dims={"batch_size": 1, "sequence_length": 1}, config=Config(select=("ML106",)))
    assert [f.code for f in bert.findings] == ["ML106"]


def test_a_few_fp32_constants_do_not_make_fp16_a_step():
    # An fp16 GEMV (2 MiB of weights) next to a [64] fp32 constant (256 B, rotary frequencies in
    # a real model): the fp32 bytes are 0.01% of the weight read time, so the steps start at
    # int8 (an "fp16 saves picoseconds" fix would be noise).
    text = """g (float16[1,1024] x, float[64] p) => (float16[1,1024] y, float[64] q)
      <float16[1024,1024] w, float[64] f> { y = MatMul(x, w)  q = Mul(p, f) }"""
    (finding,) = _findings(text)
    assert [f.text.split()[0] for f in finding.fixes] == ["Quantize", "Quantize"]
    assert finding.metric("saving_fp16_s") is None
    assert finding.metric("saving_int8_s") is not None
