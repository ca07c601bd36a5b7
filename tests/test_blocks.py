"""Block roles (memlint.analysis.blocks), summary.by_block and the what-ifs that apply to every
model (--weights-dtype, --act-dtype, --kv-dtype, --exclude-block), on exports made here by the
real tools: Optimum's BERT and GPT-2 (with past) and onnxruntime's transformer optimizer."""

from __future__ import annotations

import json
import warnings

import pytest

from memlint.analysis.blocks import node_blocks
from memlint.api import lint, load
from memlint.cli import main

from conftest import SMALL_D, SMALL_H, SMALL_I, SMALL_L, SMALL_V

# layers, hidden, heads, FFN width, vocab: the configs of conftest's small_exports
L, D, H, I, V = SMALL_L, SMALL_D, SMALL_H, SMALL_I, SMALL_V  # noqa: E741
S = 32  # BERT sequence length
BERT_DIMS = {"batch_size": 1, "sequence_length": S}
PAST = 63
GPT2_DIMS = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": PAST}
SOFTMAX = 5  # FLOPs per score element (docs/cost-model.md)

# BERT at sequence S, by hand (a multiply-accumulate is 2 FLOPs), per layer x L:
#   attention projections  Q, K, V, O: 4 x 2 x S x D x D = 4 x 2 x 32 x 64 x 64 = 1,048,576
#   attention scores       Q@K^T and P@V: 2 x 2 x S x S x D              = 262,144
#                          + softmax over H x S x S scores x 5           = 20,480
#   FFN                    fc1 and fc2: 2 x 2 x S x D x I = 2 x 2 x 32 x 64 x 128 = 1,048,576
BERT_FLOPS = {
    "attention_projection": L * 4 * 2 * S * D * D,
    "attention_scores": L * (2 * 2 * S * S * D + SOFTMAX * H * S * S),
    "ffn": L * 2 * 2 * S * D * I,
}
# GPT-2 decode step, 1 new token after PAST cached (T = PAST + 1 positions attended), per layer:
#   c_attn (D -> 3D) and c_proj (D -> D): 2 x D x 3D + 2 x D x D, and the bias each Gemm adds
#   (one FLOP per output): 3D + D
#   Q@K^T and P@V over T positions: 2 x 2 x T x D, softmax H x T x 5
#   c_fc (D -> 4D), c_proj (4D -> D): 2 x 2 x D x 4D + biases 4D + D; lm_head (D -> V) once,
#   no bias: 2 x D x V
T = PAST + 1
GPT2_FLOPS = {
    "attention_projection": L * (2 * D * 3 * D + 2 * D * D + 3 * D + D),
    "attention_scores": L * (2 * 2 * T * D + SOFTMAX * H * T),
    "ffn": L * (2 * 2 * D * 4 * D + 4 * D + D),
    "lm_head": 2 * D * V,
}
LITERATURE = ["--weights-dtype", "int8", "--act-dtype", "int8", "--kv-dtype", "int8",
              "--exclude-block", "embedding,lm_head"]  # fmt: skip


@pytest.fixture(scope="module")
def exports(small_exports):
    """{"bert", "gpt2", "bert_ort"}: model.onnx paths, Optimum exports of tiny random configs
    (no hub) and the BERT one through onnxruntime's transformer optimizer (conftest's
    session-wide small_exports, L, D, H, I, V above)."""
    return small_exports


def _roles(path, dims) -> dict[str, list[str]]:
    graph = load(path, dims).graph
    roles = node_blocks(graph)
    out: dict[str, list[str]] = {}
    for node in graph.nodes:
        out.setdefault(roles[node.name], []).append(f"{node.op_type}:{node.name}")
    return out


def test_bert_roles(exports):
    roles = _roles(exports["bert"], BERT_DIMS)
    # word, position and token-type tables and the two Adds that sum them
    assert sorted(r.split(":")[0] for r in roles["embedding"]) == ["Add", "Add", "Gather",
                                                                   "Gather", "Gather"]
    assert len(roles["attention_projection"]) == 4 * L  # query, key, value, output dense
    assert all(any(k in r for k in ("query", "key", "value", "attention/output"))
               for r in roles["attention_projection"])  # fmt: skip
    assert sorted(r.split(":")[0] for r in roles["attention_scores"]) == \
        ["MatMul"] * 2 * L + ["Softmax"] * L
    assert len(roles["ffn"]) == 2 * L and all(
        "intermediate" in r or "/output/dense" in r for r in roles["ffn"])
    assert "lm_head" not in roles and "other" not in roles


def test_gpt2_with_past_roles(exports):
    roles = _roles(exports["gpt2"], GPT2_DIMS)
    assert roles["lm_head"] == ["MatMul:/lm_head/MatMul"]
    assert all("c_attn" in r or "attn/c_proj" in r for r in roles["attention_projection"])
    assert len(roles["attention_projection"]) == 2 * L
    assert all("mlp" in r for r in roles["ffn"]) and len(roles["ffn"]) == 2 * L
    # the act-to-act products, softmax, and the past-cache Concats (the cache's own traffic)
    ops = sorted(r.split(":")[0] for r in roles["attention_scores"])
    assert ops.count("MatMul") == 2 * L and ops.count("Softmax") == L and "Concat" in ops


def test_ort_optimized_bert_roles(exports):
    roles = _roles(exports["bert_ort"], BERT_DIMS)
    assert [r.split(":")[0] for r in roles["embedding"]] == ["EmbedLayerNormalization"]
    # the fused Attention op (QKV weights inside) is the attention; O projection after it
    assert [r.split(":")[0] for r in roles["attention_scores"]] == ["Attention"] * L
    assert len(roles["attention_projection"]) == L
    assert len(roles["ffn"]) == 2 * L
    assert {"SkipLayerNormalization", "BiasGelu"} <= {
        r.split(":")[0] for r in roles["norm_elementwise"]}


def test_per_block_flops_match_the_closed_forms(exports):
    bert = lint(exports["bert"], dims=BERT_DIMS).summary
    assert {k: bert.by_block[k].flops for k in BERT_FLOPS} == BERT_FLOPS
    assert sum(b.flops for b in bert.by_block.values()) == bert.flops
    gpt2 = lint(exports["gpt2"], dims=GPT2_DIMS).summary
    assert {k: gpt2.by_block[k].flops for k in GPT2_FLOPS} == GPT2_FLOPS


def test_the_literature_convention_on_bert(exports, tmp_path, capsys):
    """The done-when command: W8A8, KV int8, embedding and LM head left out."""
    out = tmp_path / "r.json"
    code = main([str(exports["bert"]), "--dim", f"sequence_length={S}", "--dim", "batch_size=1",
                 *LITERATURE, "--isolated", "--fail-on", "never", "--format", "json",
                 "-o", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads(out.read_text())["summary"]
    assert summary["what_if"] == {"weights_dtype": "int8", "act_dtype": "int8",
                                  "kv_dtype": "int8", "exclude_blocks": ["embedding", "lm_head"],
                                  "unchanged": ["kv_dtype"]}  # no KV cache: changed nothing
    blocks = summary["by_block"]
    assert "embedding" not in blocks
    for role, flops in BERT_FLOPS.items():
        assert blocks[role]["flops"] == flops
    # int8 weights and activations: a projection reads D x D bytes of weights and S x D bytes of
    # activations and writes S x D: per layer 4 x (D x D + 2 x S x D) bytes.
    assert blocks["attention_projection"]["bytes_by_kind"] == {
        "weights": L * 4 * D * D, "activations": L * 4 * 2 * S * D, "kv_cache": 0}
    plain = lint(exports["bert"], dims=BERT_DIMS).summary
    assert summary["as_written"]["flops"] == plain.flops
    assert summary["as_written"]["predicted_latency_s"] == plain.predicted_latency_s
    assert summary["flops"] == plain.flops - plain.by_block["embedding"].flops
    assert summary["flops"] == sum(b["flops"] for b in blocks.values())


@pytest.mark.parametrize(("dtype", "width"), [("int8", 1), ("fp16", 2)])
def test_act_dtype_narrows_activation_bytes(exports, dtype, width):
    plain = lint(exports["bert"], dims=BERT_DIMS)
    what = lint(exports["bert"], dims=BERT_DIMS, scenario={"act_dtype": dtype})
    for role in ("attention_projection", "attention_scores", "ffn"):
        before, after = plain.summary.by_block[role], what.summary.by_block[role]
        # every activation of these blocks is fp32 (4 bytes): the what-if stores `width`
        assert after.bytes_by_kind.activations * 4 == before.bytes_by_kind.activations * width
        assert after.bytes_by_kind.weights == before.bytes_by_kind.weights
        assert after.flops == before.flops
    # FFN activations by hand: fc1 reads S x D, writes S x I; fc2 reads S x I, writes S x D
    ffn = what.summary.by_block["ffn"].bytes_by_kind.activations
    assert ffn == L * 2 * (S * D + S * I) * width
    assert what.findings == plain.findings  # findings are about the graph as written


def test_w8a8_matmuls_compute_in_int8(exports):
    report = lint(exports["bert"], dims=BERT_DIMS, hw="h100",
                  scenario={"weights_dtype": "int8", "act_dtype": "int8"})
    roles = node_blocks(load(exports["bert"], BERT_DIMS).graph)
    peaks = {n.timing.peak_key for n in report.nodes
             if roles[n.name] in ("attention_projection", "ffn", "attention_scores")
             and n.op_type == "MatMul"}
    assert peaks == {"tensor.int8"}
    # weights int8 alone is weight-only quantization: the arithmetic stays fp32
    w8 = lint(exports["bert"], dims=BERT_DIMS, hw="h100", scenario={"weights_dtype": "int8"})
    assert not any(n.timing.peak_key == "tensor.int8" for n in w8.nodes)


def test_excluded_blocks_leave_every_total_of_a_decoder(exports):
    prompt, tokens = 16, 4
    base = {"phase": "prefill", "prompt": prompt, "generate": tokens}
    plain = lint(exports["gpt2"], scenario=base)
    cut = lint(exports["gpt2"], scenario={**base, "exclude_blocks": ("lm_head",)})
    assert "lm_head" not in cut.summary.by_block
    assert cut.summary.as_written.flops == plain.summary.flops
    # the prefill's LM head maps all `prompt` positions to logits: 2 x prompt x D x V
    assert plain.summary.flops - cut.summary.flops == 2 * prompt * D * V
    # generation: the prefill and tokens - 1 decode steps each lose their LM head
    lost = plain.llm.generation.total.flops - cut.llm.generation.total.flops
    assert lost == 2 * D * V * (prompt + tokens - 1)
    # a batch sweep of decode steps: each row loses batch x 2 x D x V
    sweep = {"phase": "decode", "context": 16, "sweeps": ("batch=1,4",)}
    rows = [lint(exports["gpt2"], scenario={**sweep, **cut_}).llm.sweeps[0].rows
            for cut_ in ({}, {"exclude_blocks": "lm_head"})]  # fmt: skip
    assert [a.flops - b.flops for a, b in zip(*rows)] == [2 * D * V * b for b in (1, 4)]


def test_header_says_the_totals_are_a_what_if(exports):
    from memlint.report import render

    report = lint(exports["bert"], dims=BERT_DIMS, scenario={"exclude_blocks": "embedding"})
    for fmt in ("text", "markdown", "html"):
        out = render(report, fmt)
        assert "totals are a what-if: embedding left out" in out, fmt
        assert "attention projections" in out, fmt  # the per-block table
    plain = lint(exports["bert"], dims=BERT_DIMS)
    assert plain.summary.what_if is None and plain.summary.as_written is None
    assert "what-if" not in render(plain, "text")


@pytest.mark.parametrize(("flags", "message"), [
    (["--exclude-block", "embedding,decoder"], "--exclude-block 'decoder': expected block names"),
    (["--act-dtype", "int3"], "--act-dtype 'int3': expected one of int8, fp8, fp16, bf16"),
])  # fmt: skip
def test_bad_values_are_one_line_and_exit_2(exports, flags, message, capsys):
    code = main([str(exports["bert"]), *flags, "--isolated"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and message in err, err


def test_torch_fx_bert_roles():
    """The torch frontend's graph (linear as Gemm, sdpa as Attention) gets the same roles; the
    pooler is a weight product in no block (other)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(
        num_hidden_layers=L, hidden_size=D, num_attention_heads=H, intermediate_size=I,
        vocab_size=V)).eval()  # fmt: skip
    report = lint(bert, example_inputs=(torch.randint(0, V, (1, S)),))
    blocks = report.summary.by_block
    # Gemm counts its bias (one FLOP per output): S x D per projection, S x I + S x D per FFN
    projections = BERT_FLOPS["attention_projection"] + L * 4 * S * D
    assert blocks["attention_projection"].flops == projections
    assert blocks["ffn"].flops == BERT_FLOPS["ffn"] + L * (S * I + S * D)
    assert blocks["attention_scores"].nodes == L  # one fused Attention per layer
    assert blocks["other"].nodes == 1  # the pooler: 2 x D x D + D on the first token
    assert blocks["other"].flops == 2 * D * D + D


def test_quantized_graphs_keep_their_roles(exports, tmp_path):
    """onnxruntime's dynamic int8 quantization (MatMulInteger, tables dequantized after the
    Gather) and 4-bit MatMulNBits keep the roles of the float graph."""
    pytest.importorskip("onnxruntime")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    dynamic = tmp_path / "bert_int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(exports["bert"]), str(dynamic), weight_type=QuantType.QInt8)
    float_roles, int8_roles = _roles(exports["bert"], BERT_DIMS), _roles(dynamic, BERT_DIMS)
    for role in ("attention_projection", "ffn"):
        assert len(int8_roles[role]) == len(float_roles[role])
        assert all(r.startswith("MatMulInteger:") for r in int8_roles[role])
    assert {r.split(":")[0] for r in int8_roles["embedding"]} >= {"Gather", "Add"}
    nbits = tmp_path / "gpt2_nbits.onnx"
    quantizer = MatMulNBitsQuantizer(onnx.load(exports["gpt2"]), block_size=32,
                                     is_symmetric=True)  # fmt: skip
    quantizer.process()
    onnx.save(quantizer.model.model, nbits)
    assert _roles(nbits, GPT2_DIMS)["lm_head"] == ["MatMulNBits:/lm_head/MatMul_Q4"]
