"""Fixes that fit the artifact (memlint.analysis.artifact): who produced the graph (a torch.onnx /
Optimum export, an onnxruntime-optimised graph, a torch module, any other ONNX graph), what it
already fuses, and whether it is an LLM decoder (a KV cache among its inputs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from memlint.analysis.artifact import Producer, artifact, producer
from memlint.analysis.graph_index import GraphIndex
from memlint.api import analyse, check, load
from memlint.config import Config
from memlint.frontends.onnx import load_onnx_proto
from memlint.frontends.onnx_text import parse_example
from memlint.hardware import resolve
from memlint.ir import Model

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
ALL = Config(min_share=0.0, min_saving_s=0.0)
HEADER = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1], producer_name: "{}">\n'

# A decoder step with a KV cache: the cache is appended by Concat, attention is eager, and the
# output projection streams its weight for M = 4 rows (heads) at fp32: ML101, ML103, ML105.
DECODER = """g (float[1,4,1,32] q, float[1,4,1,32] k, float[1,4,1,32] v,
   float[1,4,"past",32] past_key, float[1,4,"past",32] past_value)
   => (float[1,4,1,1024] out, float[1,4,"past + 1",32] present_key,
       float[1,4,"past + 1",32] present_value) <float[32,1024] w> {
   present_key = Concat <axis = 2> (past_key, k)
   present_value = Concat <axis = 2> (past_value, v)
   kt = Transpose <perm = [0,1,3,2]> (present_key)
   s = MatMul(q, kt)
   p = Softmax <axis = -1> (s)
   y = MatMul(p, present_value)
   out = MatMul(y, w)
}"""
# The same attention without a cache (an encoder), with a projection: ML101 and ML103.
ENCODER = """g (float[1,4,64,32] q, float[1,4,64,32] k, float[1,4,64,32] v)
   => (float[1,4,64,1024] out) <float[32,1024] w> {
   kt = Transpose <perm = [0,1,3,2]> (k)
   s = MatMul(q, kt)
   p = Softmax <axis = -1> (s)
   y = MatMul(p, v)
   out = MatMul(y, w)
}"""
MLP = """g (float[1,1024] x) => (float[1,1024] y) <float[1024,4096] w1, float[4096,1024] w2> {
   h = MatMul(x, w1)
   r = Relu(h)
   y = MatMul(r, w2)
}"""


def _model(text: str, made_by: str = "", **dims: int) -> Model:
    return load_onnx_proto(parse_example(HEADER.format(made_by) + text), Path("m.onnx"),
                           dims=dims)


def _findings(model: Model) -> dict[str, list]:
    report = check(analyse(model, resolve("a100")), ALL)
    found: dict[str, list] = {}
    for finding in report.findings:
        found.setdefault(finding.code, []).append(finding)
    return found


def _texts(finding) -> list[str]:
    return [fix.text for fix in finding.fixes]


def test_producer_from_the_producer_name_fused_ops_and_exporter_idioms():
    assert producer(_model(ENCODER, "pytorch")) is Producer.TORCH_ONNX
    assert producer(_model(ENCODER, "onnxruntime.transformers")) is Producer.ORT_OPTIMIZED
    assert producer(_model(ENCODER, "skl2onnx")) is Producer.ONNX
    fused = ("g (float[1,8,64] x, float[1,8,64] r, float[64] g, float[64] b) => (float[1,8,64] y) "
             "{ y = com.microsoft.SkipLayerNormalization(x, r, g, b) }")
    assert producer(_model(fused, "pytorch")) is Producer.ORT_OPTIMIZED  # the optimizer's ops
    # producer_name rewritten, but the nodes are named as torch.onnx's TorchScript exporter
    # names them (/scope/Op writing /scope/Op_output_0): the samples copy that
    assert producer(load(SAMPLES / "gpt2_decoder_step.onnx")).name == "TORCH_ONNX"
    assert producer(dataclasses.replace(_model(MLP), format="fx")) is Producer.TORCH_MODULE


def test_artifact_says_what_is_fused_and_whether_it_is_an_llm_decoder():
    def made(model: Model):
        return artifact(GraphIndex(model, analyse(model, resolve("a100")).nodes))

    decoder = made(_model(DECODER, "pytorch", past=127))
    assert decoder.llm_decoder and decoder.fused == frozenset()
    assert decoder.ort_model_type == "gpt2"
    encoder = made(_model(ENCODER, "pytorch"))
    assert not encoder.llm_decoder and encoder.ort_model_type == "bert"
    mha = ("g (float[1,64,128] q, float[1,64,128] k, float[1,64,128] v) => (float[1,64,128] y) "
           "{ y = com.microsoft.MultiHeadAttention <num_heads = 4> (q, k, v) }")
    assert made(_model(mha)).fused == frozenset({"attention"})


def test_a_torch_onnx_decoder_gets_the_ort_optimizer_and_gqa_first():
    found = _findings(_model(DECODER, "pytorch 2.5.0", past=127))
    attention = _texts(found["ML103"][0])
    assert attention[0].startswith("Fuse with onnxruntime's transformer optimizer")
    assert "--model_type gpt2" in attention[0] and "GroupQueryAttention" in attention[0]
    assert "TensorRT" in attention[1]
    assert "opset_version=23" in attention[2]  # SDPA is what it already used: re-export last
    cache = _texts(found["ML105"][0])
    assert "GroupQueryAttention" in cache[0] and "StaticCache" in cache[1]
    # an LLM decoder: serving advice, speculative decoding and LLM quantizers
    matmul = _texts(found["ML101"][0])
    assert any(t.startswith("Batch requests (continuous batching: vLLM") for t in matmul)
    assert any(t.startswith("Speculative decoding") for t in matmul)
    assert any("MatMulNBits bits=4, GPTQ/AWQ" in t for t in matmul)
    assert not any("torchao" in t for t in matmul)


def test_an_ort_optimised_graph_gets_no_optimizer_advice_it_already_took():
    # The optimizer ran (its producer name, or its fused ops in a graph whose producer name
    # still says pytorch) and left this attention block unfused: rerunning it is no fix.
    gelu = DECODER.replace("out = MatMul(y, w)",
                           "o = MatMul(y, w)\n   out = com.microsoft.FastGelu(o)")
    for model in (_model(DECODER, "onnxruntime.transformers", past=127),
                  _model(gelu, "pytorch", past=127)):
        attention = _texts(_findings(model)["ML103"][0])
        assert not any("Fuse with onnxruntime's transformer optimizer" in t for t in attention)
        assert attention[0].startswith("Build the decoder with onnxruntime-genai's model builder")
        assert "left this block unfused" in attention[0]
    encoder = _texts(_findings(_model(ENCODER, "onnxruntime.transformers"))["ML103"][0])
    assert encoder[0].startswith("Rerun onnxruntime's transformer optimizer")
    assert "--model_type bert" in encoder[0]


def test_an_ort_optimised_graph_gets_no_optimizer_advice_for_a_chain_it_left():
    from memlint.rules.unfused_elementwise_chain import UnfusedElementwiseChain

    text = UnfusedElementwiseChain.bad.onnx_text
    (plain,) = _findings(_model(text, "pytorch"))["ML102"]
    assert "onnxruntime.transformers.optimizer" in plain.fixes[0].text
    (left,) = _findings(_model(text, "onnxruntime.transformers"))["ML102"]
    assert "optimizer already ran" in left.fixes[0].text and "TensorRT" in left.fixes[0].text
    assert "python -m onnxruntime" not in left.fixes[0].text


def test_a_model_that_is_not_an_llm_gets_no_serving_advice():
    (matmul, *_) = _findings(_model(MLP, "pytorch"))["ML101"]
    texts = _texts(matmul)
    assert texts[0].startswith("Batch more inputs per call")
    assert not any("vLLM" in t or "TGI" in t or "Speculative" in t or "GPTQ" in t for t in texts)
    savings = [fix.saving_s or 0.0 for fix in matmul.fixes]
    assert savings == sorted(savings, reverse=True)  # best first


def test_quantized_weights_get_the_next_step_or_nothing():
    # MatMulNBits at 8 bits: int4 is the next step (weight bytes halved); at 4 bits, nothing.
    def nbits(bits: int) -> str:
        packed = 32 * bits // 8  # block_size 32
        return (f"g (float[1,1024] x) => (float[1,4096] y) <uint8[4096,32,{packed}] wq, "
                f"float[4096,32] sc> {{ y = com.microsoft.MatMulNBits <K = 1024, N = 4096, "
                f"bits = {bits}, block_size = 32> (x, wq, sc) }}")

    eight = _texts(_findings(_model(nbits(8), "onnxruntime.quantization"))["ML101"][0])
    assert [t for t in eight if t.startswith("Store the weights")] == [
        next(t for t in eight if t.startswith("Store the weights as int4"))]
    four = _texts(_findings(_model(nbits(4), "onnxruntime.quantization"))["ML101"][0])
    assert not any(t.startswith("Store the weights") for t in four)


@pytest.fixture(scope="module")
def torch_report():
    torch = pytest.importorskip("torch")
    from torch_blocks import Block

    from memlint.api import lint

    torch.manual_seed(0)
    config = Config(min_share=0.0, min_saving_s=0.0, rule_options={"ML107": {"min-bytes": 0}})
    return lint(Block(64, 4).eval(), example_inputs=(torch.randn(1, 8, 64),), config=config)


def test_a_torch_module_gets_torch_fixes(torch_report):
    found = {f.code: f for f in torch_report.findings}
    attention = _texts(found["ML103"])
    assert attention[0].startswith("Call torch.nn.functional.scaled_dot_product_attention")
    assert "torch.compile" in attention[1]
    assert not any("onnxruntime" in t or "TensorRT" in t for t in attention)
    quant = [t for t in _texts(found["ML101"]) if t.startswith("Store the weights")]
    assert quant and all("torchao" in t and "MatMulNBits" not in t for t in quant)
    assert all("Speculative" not in t and "vLLM" not in t for t in _texts(found["ML101"]))
    copies = [f for f in torch_report.findings if f.code == "ML107"]
    heads = [f for f in copies if "head split/merge" in f.message]
    assert heads and all(f.fixes[0].text.startswith(
        "If this is attention: torch.nn.functional.scaled_dot_product_attention") for f in heads)
    assert not any("onnxruntime" in f.fixes[0].text for f in copies)
