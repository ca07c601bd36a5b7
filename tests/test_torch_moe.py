"""Mixture-of-experts models captured through torch at their expected routing.

Small configs, random weights. The weight bytes a step reads are derived from the model's own
parameter counts and the routing formula, independently of memlint's byte counting: every
parameter and buffer once (fp32), minus the experts a step does not run (E - n per MoE block,
n = min(E, ceil(E(1 - (1 - k/E)^T))) for T tokens), minus the embedding table but the rows the
step's tokens gather.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import memlint  # noqa: E402
from memlint.frontends.fx_moe import expected_experts, moe_blocks  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
BASE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 256,
        "tie_word_embeddings": False}  # fmt: skip


def _qwen2_moe():
    return transformers.Qwen2MoeForCausalLM(transformers.Qwen2MoeConfig(
        **BASE, intermediate_size=128, num_experts=8, num_experts_per_tok=2,
        moe_intermediate_size=32, shared_expert_intermediate_size=64))


def _olmoe():
    return transformers.OlmoeForCausalLM(transformers.OlmoeConfig(
        **BASE, intermediate_size=32, num_experts=8, num_experts_per_tok=2))


def _deepseek_v3():  # a dense first layer, then routed + shared experts; MLA attention
    return transformers.DeepseekV3ForCausalLM(transformers.DeepseekV3Config(
        **{**BASE, "num_key_value_heads": 4}, intermediate_size=128, moe_intermediate_size=32,
        n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, kv_lora_rank=16,
        q_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
        first_k_dense_replace=1, n_group=2, topk_group=1))


def _gpt_oss():  # experts stacked in one module
    return transformers.GptOssForCausalLM(transformers.GptOssConfig(
        **BASE, intermediate_size=32, num_local_experts=8, num_experts_per_tok=2, head_dim=16,
        sliding_window=128))


MODELS = {"qwen2_moe": _qwen2_moe, "olmoe": _olmoe, "deepseek_v3": _deepseek_v3,
          "gpt_oss": _gpt_oss}  # fmt: skip


def _numel(tensors) -> int:
    return sum(t.numel() for t in tensors)


def _expected_weight_bytes(model, tokens: int) -> int:
    # buffers of the model's own rotary embedding (Qwen2-MoE also keeps an unused one per layer)
    used = (b for name, b in model.named_buffers()
            if not (".layers." in name and name.endswith("rotary_emb.inv_freq")))
    total = _numel(model.parameters()) + _numel(used)
    for _, block, _, k in moe_blocks(model):
        if hasattr(block, "gate_up_proj"):  # stacked: [E, ...] per parameter
            experts = int(block.gate_up_proj.shape[0])
            per_expert = _numel(block.parameters()) // experts
            k = model.config.num_experts_per_tok
        else:
            experts = len(block.experts)
            per_expert = _numel(block.experts[0].parameters())
        total -= (experts - expected_experts(experts, k, tokens)) * per_expert
    table = model.get_input_embeddings().weight
    total -= table.numel() - tokens * table.shape[1]  # a Gather reads the rows it returns
    return 4 * total


@pytest.mark.parametrize("name", sorted(MODELS))
def test_moe_decode_step_reads_the_experts_it_runs(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    report = memlint.lint(model, decode=24, hw="h100")
    coverage = report.coverage
    assert coverage.nodes_modelled == coverage.nodes_total, dict(coverage.unmodelled_ops)
    blocks = len(moe_blocks(model))
    assert report.model.metadata["moe"].startswith(f"{blocks} MoE blocks of 8 experts, top-2")
    assert "runs 2 experts per block" in report.model.metadata["moe"]
    # torch lifts scalar constants of gpt-oss's attention into the graph (2 fp32, 8 B): weights
    # the parameter count does not hold
    lifted = 8 if name == "gpt_oss" else 0
    assert report.summary.bytes_read.weights == _expected_weight_bytes(model, tokens=1) + lifted
    # a fusing runtime reads the same weights: the experts the step routes to, each once (a
    # fused kernel over experts stacked in one tensor, gpt-oss's, reads only those it runs)
    fused = report.summary.fused
    assert fused.bytes_read.weights == report.summary.bytes_read.weights
    assert fused.kernels < report.summary.kernels


def test_moe_batch_64_runs_every_expert_as_the_formula_says():
    """A decode step at batch 64 touches E(1 - (1 - k/E)^64) = 7.99990 of 8 experts (top-2)
    on average: all 8 run, and the step reads every expert's weights."""
    assert 8 * (1 - (1 - 2 / 8) ** 64) == pytest.approx(8, abs=1e-6)
    assert math.ceil(8 * (1 - 0.75**64) - 1e-9) == 8 == expected_experts(8, 2, 64)
    torch.manual_seed(0)
    model = _olmoe().eval()
    report = memlint.lint(model, decode=8, scenario={"batch": 64}, hw="h100")
    assert "a step of 64 token(s) runs 8 experts per block" in report.model.metadata["moe"]
    assert report.summary.bytes_read.weights == _expected_weight_bytes(model, tokens=64)
    # the serving section reports the expectation itself, in every format
    experts = report.llm.serving.experts
    assert (experts.experts, experts.top_k, experts.tokens) == (8, 2, 64)
    assert experts.expected_touched == pytest.approx(8 * (1 - 0.75**64), rel=1e-12)
    document = report.to_dict()
    assert document["llm"]["structure"]["experts"] == 8
    assert document["llm"]["serving"]["experts"]["expected_touched"] == pytest.approx(8.0)
    from memlint.report import render

    assert "8 routed per MoE layer, top-2: a step of 64 tokens touches 8 of them" in render(
        report, "text", verbose=True).replace("\n", " ")  # fmt: skip


def test_one_token_step_touches_k_experts():
    torch.manual_seed(0)
    report = memlint.lint(_olmoe().eval(), decode=8, hw="h100")
    experts = report.llm.serving.experts
    assert experts.tokens == 1 and experts.expected_touched == pytest.approx(2.0)
    assert experts.touched_fraction == pytest.approx(0.25)


def test_expert_weight_bound_decode_is_flagged_with_its_fixes():
    """ML109 on a one-token step of an MoE model whose expert weights dominate (OLMoE config:
    per layer 2 of 8 experts of 3 x 64 x 32 run, next to attention of 64 x 64 x 3 + 64 x 32):
    its evidence carries the routing, its fixes int4 experts, batching, expert parallelism."""
    torch.manual_seed(0)
    config = transformers.OlmoeConfig(**{**BASE, "hidden_size": 64, "num_attention_heads": 4},
                                      intermediate_size=512, num_experts=8,
                                      num_experts_per_tok=2)  # fmt: skip
    report = memlint.lint(transformers.OlmoeForCausalLM(config).eval(), decode=16, hw="h100")
    finding = next(f for f in report.findings if f.code == "ML109")
    evidence = {m.name: m.value for m in finding.evidence}
    assert (evidence["moe_experts"], evidence["moe_top_k"], evidence["moe_run"]) == (8, 2, 2)
    assert evidence["expert_share"] >= 0.25
    # 2 layers x 2 experts run x 3 x 64 x 512 fp32 weights = 786,432 B
    assert evidence["expert_weight_bytes"] == 2 * 2 * 3 * 64 * 512 * 4
    texts = [fix.text for fix in finding.fixes]
    assert texts[0].startswith("Quantize the experts to int4")
    assert finding.fixes[0].saving_s == pytest.approx(evidence["expert_time_s"] * (1 - 4 / 32))
    # 4 tokens touch 8(1 - 0.75^4) = 5.47 experts: 5.47 / (4 x 2) = 68% of the bytes per token
    assert "from 2 to 5.47 of 8" in texts[1] and "68.4%" in texts[1]
    assert "expert parallelism" in texts[2]


def test_dense_model_has_no_expert_finding():
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **BASE, intermediate_size=128)).eval()
    report = memlint.lint(model, decode=16, hw="h100")
    assert "ML109" not in {f.code for f in report.findings}


def _with_experts_run(model, tokens: int, run: int) -> int:
    """_expected_weight_bytes with `run` experts per block instead of the expectation."""
    total = _expected_weight_bytes(model, tokens)
    for _, block, _, k in moe_blocks(model):
        per_expert = _numel(block.experts[0].parameters())
        total += 4 * (run - expected_experts(len(block.experts), k, tokens)) * per_expert
    return total


@pytest.mark.parametrize("routing, tokens, run", [("all", 1, 8), ("top-k", 64, 2)])
def test_moe_routing_choices(routing, tokens, run):
    """--moe-routing all: every expert read (the worst case, even by one token); top-k: only k
    (the best case, every token routed to the same experts), at batch 64 too."""
    torch.manual_seed(0)
    model = _olmoe().eval()
    report = memlint.lint(model, decode=8, hw="h100",
                          scenario={"batch": tokens, "moe_routing": routing})  # fmt: skip
    assert f"runs {run} experts per block" in report.model.metadata["moe"]
    assert report.summary.bytes_read.weights == _with_experts_run(model, tokens, run)
    assert report.coverage.nodes_modelled == report.coverage.nodes_total


def test_moe_routing_refused_where_nothing_is_routed(tmp_path):
    from memlint.llm import LlmError

    torch.manual_seed(0)
    dense = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **BASE, intermediate_size=128)).eval()
    with pytest.raises(LlmError, match="no mixture-of-experts block"):
        memlint.lint(dense, decode=8, scenario={"moe_routing": "all"})
    with pytest.raises(LlmError, match="applies to torch mixture-of-experts steps"):
        memlint.lint(SAMPLES / "small_cnn.onnx", scenario={"moe_routing": "all"})
