"""The LLM structure and FLOPs of Optimum exports of twelve more decoder architectures.

Each is a tiny random config (2 layers, hidden 64, 4 query heads of 16, vocab 500, fp32) exported
once per module by Optimum's main_export ("text-generation-with-past"; nothing is downloaded),
and checked for:

- the structure memlint reads (layers, query heads, KV heads and their size, hidden, vocab) and
  the KV cache per token against the closed form 2 (K and V) x layers x KV heads x 16 x 4 B;
- coverage: every node modelled, every tensor shape resolved;
- the decode step's matrix-product FLOPs (batch 1, one new token after 20 cached) against
  torch's FlopCounterMode on the Hugging Face model stepping with a cache of the same length.
  The torch model runs eager attention: FlopCounterMode has no formula for the CPU kernel of
  scaled_dot_product_attention and would count its products as 0.

What they add to the GPT-2, Llama, Mistral, Gemma 2, Whisper, T5 and MoE exports of other
modules: multi-query attention (Falcon, Gemma), ALiBi and no position table (Bloom), attention
and MLP in parallel (GPT-J, CodeGen, GPT-NeoX, Falcon), rotary on part of each head (GPT-J,
CodeGen, GPT-NeoX, StableLM), fused QKV or gate-up projections (Phi-3, Bloom, Falcon,
GPT-NeoX), QK norms (Qwen3), learned positions and ReLU (OPT), and Granite's multipliers.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")

from exportcheck import assert_fully_modelled, matrix_product_flops, torch_flops

from memlint.analysis.structure import detect
from memlint.api import lint, load
from memlint.report.llm_view import structure_line

LAYERS, HIDDEN, HEADS, HEAD_DIM, VOCAB, FFN = 2, 64, 4, 16, 500, 128
PAST = 20  # cached tokens of the decode step
FP32 = 4  # bytes

# name -> (model class, config class, config keys, KV heads)
ARCHITECTURES = {
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", {
        "num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
        "num_key_value_heads": 2, "intermediate_size": FFN, "max_position_embeddings": 128}, 2),
    "qwen3": ("Qwen3ForCausalLM", "Qwen3Config", {
        "num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
        "num_key_value_heads": 2, "head_dim": HEAD_DIM, "intermediate_size": FFN,
        "max_position_embeddings": 128}, 2),
    "phi3": ("Phi3ForCausalLM", "Phi3Config", {
        "num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
        "num_key_value_heads": 2, "intermediate_size": FFN, "max_position_embeddings": 128,
        "pad_token_id": 0}, 2),
    "gemma": ("GemmaForCausalLM", "GemmaConfig", {
        "num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
        "num_key_value_heads": 1, "head_dim": HEAD_DIM, "intermediate_size": FFN,
        "max_position_embeddings": 128}, 1),
    "stablelm": ("StableLmForCausalLM", "StableLmConfig", {
        "num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
        "num_key_value_heads": 2, "intermediate_size": FFN, "max_position_embeddings": 128}, 2),
    "granite": ("GraniteForCausalLM", "GraniteConfig", {
        "num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
        "num_key_value_heads": 2, "intermediate_size": FFN, "max_position_embeddings": 128}, 2),
    "opt": ("OPTForCausalLM", "OPTConfig", {
        "num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
        "ffn_dim": FFN, "word_embed_proj_dim": HIDDEN, "max_position_embeddings": 128}, 4),
    "gpt_neox": ("GPTNeoXForCausalLM", "GPTNeoXConfig", {
        "num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
        "intermediate_size": FFN, "max_position_embeddings": 128}, 4),
    "gptj": ("GPTJForCausalLM", "GPTJConfig", {
        "n_layer": LAYERS, "n_embd": HIDDEN, "n_head": HEADS, "rotary_dim": 8,
        "n_positions": 128}, 4),
    "codegen": ("CodeGenForCausalLM", "CodeGenConfig", {
        "n_layer": LAYERS, "n_embd": HIDDEN, "n_head": HEADS, "rotary_dim": 8, "n_positions": 128,
        "n_ctx": 128}, 4),
    "bloom": ("BloomForCausalLM", "BloomConfig", {
        "n_layer": LAYERS, "hidden_size": HIDDEN, "n_head": HEADS}, 4),
    "falcon": ("FalconForCausalLM", "FalconConfig", {
        "num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
        "new_decoder_architecture": False, "multi_query": True}, 1),
}  # fmt: skip


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{name: root/<name>-onnx} for every architecture this transformers has (the Hugging Face
    model is saved beside it, root/<name>-hf)."""
    from clitools import optimum_export

    root = tmp_path_factory.mktemp("decoder-families")
    torch.manual_seed(0)
    models = {}
    for name, (model_class, config_class, keys, _) in ARCHITECTURES.items():
        if hasattr(transformers, model_class):
            config = getattr(transformers, config_class)(vocab_size=VOCAB, **keys)
            models[name] = (getattr(transformers, model_class)(config),
                            "text-generation-with-past")
    return optimum_export(root, models)


def export_of(exports, name: str):
    if name not in exports:
        pytest.skip(f"transformers {transformers.__version__} has no "
                    f"{ARCHITECTURES[name][0]}")
    return exports[name]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_structure_and_kv_cache_per_token(exports, name):
    folder, kv_heads = export_of(exports, name), ARCHITECTURES[name][3]
    s = detect(load(folder))
    assert (s.layers, s.heads, s.kv_heads, s.head_dim) == (LAYERS, HEADS, kv_heads, HEAD_DIM)
    assert (s.hidden_size, s.vocab_size) == (HIDDEN, VOCAB)
    # 2 x 2 layers x KV heads x 16 x 4 B: 1,024 B (4 KV heads), 512 B (2), 256 B (1)
    assert s.kv_bytes_per_token() == 2 * LAYERS * kv_heads * HEAD_DIM * FP32
    assert s.attention_kind == {1: "multi-query", 2: "grouped-query (2 query heads per KV head)",
                                4: "multi-head"}[kv_heads]
    # the report's model line: "1 KV head of 16" in the singular (Falcon, Gemma)
    heads = "1 KV head" if kv_heads == 1 else f"{kv_heads} KV heads"
    assert f"2 layers, 4 heads ({s.attention_kind}), {heads} of 16, hidden 64" in \
        structure_line(s)


@pytest.fixture(scope="module")
def steps(exports):
    """name -> the decode step's report: batch 1, one new token after PAST cached."""
    dims = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": PAST}
    return {name: lint(folder, hw="a100", dims=dims, strict_dims=True)
            for name, folder in exports.items()}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_node_modelled_and_every_shape_resolved(exports, steps, name):
    export_of(exports, name)
    assert_fully_modelled(steps[name], name)


def torch_decode_flops(folder, name: str) -> int:
    """FlopCounterMode's count of the Hugging Face model's forward on one new token with a
    cache of PAST tokens (the cache made by a forward on PAST tokens, not counted)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder.parent / f"{name}-hf", local_files_only=True, attn_implementation="eager").eval()
    torch.manual_seed(1)
    with torch.no_grad():
        past = model(torch.randint(0, VOCAB, (1, PAST)), use_cache=True).past_key_values
    flops, _ = torch_flops(model, torch.randint(0, VOCAB, (1, 1)), past_key_values=past,
                           use_cache=True, attention_mask=torch.ones(1, PAST + 1, dtype=torch.long))
    return flops


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_decode_step_matmul_flops_match_torchs_counter(exports, steps, name):
    folder = export_of(exports, name)
    assert matrix_product_flops(steps[name]) == torch_decode_flops(folder, name)


def test_falcon_multi_query_decode_flops_by_hand(exports, steps):
    export_of(exports, "falcon")
    # Per layer (hidden 64, 4 query heads and 1 KV head of 16, MLP 4 x 64 = 256, 21 positions):
    #   fused QKV 64 -> (4 + 1 + 1) x 16 = 96:  2 x 64 x 96        = 12,288
    #   attention output 64 -> 64:               2 x 64 x 64        =  8,192
    #   MLP 64 -> 256 -> 64:                     2 x 2 x 64 x 256   = 65,536
    #   scores and context, 4 heads:             2 x 2 x 4 x 21 x 16 =  5,376
    #   = 91,392; 2 layers = 182,784; lm_head 2 x 64 x 500 = 64,000; the rotary table's
    #   inv_freq (8) x position (1) product 2 x 8 = 16. Total 246,800.
    assert matrix_product_flops(steps["falcon"]) == 246_800
