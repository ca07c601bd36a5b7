"""torch decode steps as people serve them: Hugging Face models with their own caches.

Small configs with random weights (no hub). Each figure is checked against a closed form derived
here from the config: KV bytes per token = layers x 2 (K and V) x KV heads x head dim x 4 B
(fp32); a cache of C tokens at batch B holds B x C x that; weight bytes of a step are its
parameters x 4 B, minus the embedding table (a Gather reads one row per token).
"""

from __future__ import annotations

import textwrap

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch import nn  # noqa: E402

import memlint  # noqa: E402
from memlint.config import Config  # noqa: E402
from memlint.errors import ConfigError, DimError, ModelLoadError  # noqa: E402
from memlint.frontends.fx_moe import expected_experts  # noqa: E402
from memlint.ir import ValueKind  # noqa: E402
from memlint.llm import LlmError  # noqa: E402

LAYERS, HIDDEN, HEADS, KV_HEADS, VOCAB = 2, 64, 4, 2, 256
HEAD_DIM = HIDDEN // HEADS  # 16
KV_PER_TOKEN = LAYERS * 2 * KV_HEADS * HEAD_DIM * 4  # 512 B
DECODER = {
    "hidden_size": HIDDEN, "intermediate_size": 128, "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB,
    "max_position_embeddings": 256,
}  # fmt: skip
ALL = Config(min_share=0.0, min_saving_s=0.0)  # every finding, none hidden as noise


def _llama():
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**DECODER)).eval()


@pytest.fixture(scope="module")
def llama():
    return _llama()


def _kv_read(report) -> int:
    return report.summary.bytes_read.kv_cache


# --- a step with the caller's cache -----------------------------------------------------------


def test_llama_decode_step_with_its_dynamic_cache(llama):
    """Done when: KV bytes at least the cache size, ML101 on the projections, serving figures."""
    ids = torch.randint(0, VOCAB, (2, 16))
    with torch.no_grad():
        cache = llama(ids, use_cache=True).past_key_values
    assert type(cache).__name__ == "DynamicCache"
    report = memlint.lint(llama, example_inputs=(ids[:, :1],), hw="h100", config=ALL,
                          example_kwargs={"past_key_values": cache, "use_cache": True})
    graph = report.model.graph
    kv_inputs = [n for n in graph.inputs if graph.value(n).kind is ValueKind.KV_CACHE]
    assert kv_inputs == [f"past_key_values.{i}.{p}" for i in range(LAYERS)
                         for p in ("key", "value")]  # fmt: skip
    cache_bytes = 2 * 16 * KV_PER_TOKEN  # batch 2, 16 cached tokens: 16,384 B
    assert _kv_read(report) >= cache_bytes
    assert report.coverage.nodes_modelled == report.coverage.nodes_total
    ml101 = {n for f in report.findings if f.code == "ML101" for n in f.nodes}
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f"layers.0.self_attn.{proj}" in n or f"layers.0.mlp.{proj}" in n
                   for n in ml101), proj  # fmt: skip
    serving = report.llm.serving
    assert (serving.scenario.batch, serving.scenario.context) == (2, 16)
    assert serving.kv_bytes_per_token == KV_PER_TOKEN
    assert serving.step_latency_s == report.summary.predicted_latency_s > 0
    # the cat of the cache with the new token is a copy (DynamicCache): ML105 says so
    assert "ML105" in {f.code for f in report.findings}


def test_tuple_cache_of_a_plain_module_is_named_by_layer_and_role():
    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(32, 32)

        def forward(self, x, past_key_values):
            h, present = self.q(x), []
            for k, v in past_key_values:
                k, v = torch.cat([k, h[:, None]], 2), torch.cat([v, h[:, None]], 2)
                h = nn.functional.scaled_dot_product_attention(h[:, None], k, v)[:, 0]
                present.append((k, v))
            return h, tuple(present)

    past = tuple((torch.randn(1, 1, 10, 32), torch.randn(1, 1, 10, 32)) for _ in range(3))
    report = memlint.lint(Step(), example_inputs=(torch.randn(1, 1, 32),),
                          example_kwargs={"past_key_values": past})
    assert report.model.graph.inputs[1:3] == ("past_key_values.0.key", "past_key_values.0.value")
    # 3 layers x K and V x 1 x 10 x 32 fp32 = 7,680 B, all read
    assert _kv_read(report) == 3 * 2 * 10 * 32 * 4
    assert report.llm.serving.scenario.context == 10


def test_static_cache_step(llama):
    cache = transformers.StaticCache(config=llama.config, max_cache_len=32)
    ids = torch.randint(0, VOCAB, (1, 8))
    with torch.no_grad():
        llama(ids, past_key_values=cache, use_cache=True)
    report = memlint.lint(llama, example_inputs=(ids[:, :1],), hw="h100", example_kwargs={
        "past_key_values": cache, "use_cache": True, "cache_position": torch.tensor([8])})
    # a static cache is read whole (its 32 slots, masked past the 9th)
    assert _kv_read(report) >= 32 * KV_PER_TOKEN
    assert report.llm.serving.scenario.context == 32
    # index_copy_ updates the buffer in place: the new token's K and V are written into the
    # cache (2 layers x K, V x 2 heads x 16 x 4 B = 512 B), the buffer is not copied
    assert report.summary.bytes_written.kv_cache == KV_PER_TOKEN
    updates = [n for n in report.nodes if n.op_type == "ScatterND"]
    assert len(updates) == 2 * LAYERS
    assert all(n.cost.bytes_written.kv_cache == KV_PER_TOKEN // (2 * LAYERS) for n in updates)
    assert not any(f.code == "ML105" and any("index_copy" in x for x in f.nodes)
                   for f in report.findings)  # fmt: skip
    assert report.coverage.nodes_modelled == report.coverage.nodes_total


def test_scenario_flags_need_a_step_memlint_builds(llama):
    ids = torch.randint(0, VOCAB, (1, 4))
    with pytest.raises(LlmError, match="example inputs"):
        memlint.lint(llama, example_inputs=(ids,), scenario={"batch": 4})


# --- steps memlint builds ---------------------------------------------------------------------


def test_decode_convenience_builds_the_cache_and_sweeps(llama):
    report = memlint.lint(llama, decode=100, hw="h100",
                          scenario={"batch": 2, "sweeps": ["batch=1,4"]})  # fmt: skip
    serving = report.llm.serving
    assert (serving.scenario.batch, serving.scenario.context) == (2, 100)
    # 2 sequences x 100 cached tokens x 512 B = 102,400 B of cache, read at least once
    assert _kv_read(report) >= 2 * 100 * KV_PER_TOKEN
    rows = report.llm.sweeps[0].rows
    assert [r.scenario.batch for r in rows] == [1, 4]
    assert rows[1].kv_cache_bytes == 4 * 100 * KV_PER_TOKEN
    # re-captured at batch 4: 4x the tokens through the same weights (more bytes, and 4x the
    # FLOPs but for the lm_head/projection-free parts, so strictly more than 3x)
    assert rows[1].bytes_moved > rows[0].bytes_moved
    assert rows[1].flops > 3 * rows[0].flops


def test_bad_step_requests_are_one_line_errors(llama):
    with pytest.raises(LlmError, match="exceeds the model's 256 positions"):
        memlint.lint(llama, decode=10**7)  # refused before any step is built
    with pytest.raises(ConfigError, match="decode=-3"):
        memlint.lint(llama, decode=-3)
    with pytest.raises(LlmError, match="--batch 0: must be a whole number >= 1"):
        memlint.lint(llama, decode=5, scenario={"batch": 0})


def test_default_decode_step_of_a_model_given_no_inputs(llama):
    report = memlint.lint(llama, hw="h100")
    scenario = report.llm.serving.scenario
    # min(1024, 256 positions - 1) cached tokens, batch 1: both defaulted and said so
    assert (scenario.context, scenario.batch) == (255, 1)
    assert set(scenario.defaulted) == {"context", "batch"}


def test_default_step_sizes_are_assumed_and_strict_dims_refuses_them(llama):
    report = memlint.lint(llama, hw="h100")
    assumed = {b.name: b.source for b in report.model.dims if b.assumed}
    assert assumed == {"batch": "LLM default batch", "context": "LLM default context"}
    assert any(f.code == "ML902" and "context=255" in f.message for f in report.findings)
    with pytest.raises(DimError, match="--strict-dims: the step memlint builds would assume "
                       "batch=1 .*set --batch, --context"):  # fmt: skip
        memlint.lint(llama, hw="h100", strict_dims=True)
    given = memlint.lint(llama, hw="h100", strict_dims=True, decode=32, scenario={"batch": 1})
    assert not any(b.assumed for b in given.model.dims)


def test_meta_device_llama_decode_step():
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**DECODER))
    report = memlint.lint(model, decode=64, hw="h100")
    assert _kv_read(report) >= 64 * KV_PER_TOKEN
    assert report.coverage.nodes_modelled == report.coverage.nodes_total


ARCHS = {
    "mistral": ("MistralForCausalLM", "MistralConfig", {"sliding_window": 4096}),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", {}),
    "gemma2": ("Gemma2ForCausalLM", "Gemma2Config", {"head_dim": HEAD_DIM, "sliding_window": 512}),
}


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_decoders_in_prefill_and_decode(arch, phase):
    model_cls, config_cls, extra = ARCHS[arch]
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(**DECODER, **extra)
    model = getattr(transformers, model_cls)(config).eval()
    scenario = {"phase": phase, "context": 48, "batch": 2}
    if phase == "prefill":
        scenario["prompt"] = 8
    report = memlint.lint(model, hw="h100", scenario=scenario)
    assert report.coverage.nodes_modelled == report.coverage.nodes_total
    serving = report.llm.serving
    assert serving.kv_bytes_per_token == KV_PER_TOKEN
    assert serving.scenario.new_tokens == (8 if phase == "prefill" else 1)
    assert _kv_read(report) >= 2 * 48 * KV_PER_TOKEN


# --- encoder-decoders -------------------------------------------------------------------------


def _t5():
    config = transformers.T5Config(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2,
                                   vocab_size=128)  # fmt: skip
    return transformers.T5ForConditionalGeneration(config).eval()


def _whisper():
    config = transformers.WhisperConfig(
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=128,
        pad_token_id=1, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        max_source_positions=30, max_target_positions=64, num_mel_bins=8,
    )  # fmt: skip
    return transformers.WhisperForConditionalGeneration(config).eval()


def _check_self_and_cross(report, encoder: int) -> None:
    structure = report.llm.structure
    cross = [t.name for t in structure.kv_inputs if t.cross]
    own = [t.name for t in structure.kv_inputs if not t.cross]
    assert own == [f"past_key_values.{i}.decoder.{p}" for i in range(2) for p in ("key", "value")]
    assert cross == [f"past_key_values.{i}.encoder.{p}" for i in range(2) for p in ("key", "value")]
    # 2 layers x K and V x 4 heads x 8 dims x 4 B = 512 B per position, in each cache
    assert structure.kv_bytes_per_token() == 512
    assert structure.cross_kv_bytes_per_position() == 512
    serving = report.llm.serving
    assert (serving.scenario.context, serving.scenario.encoder_length) == (20, encoder)
    assert _kv_read(report) >= 20 * 512 + encoder * 512


def test_whisper_decode_step_tells_self_and_cross_attention_caches_apart():
    """Done when: Whisper and T5 decode steps with EncoderDecoderCache, caches told apart.
    Whisper's encoder length is its config's max_source_positions (30 here)."""
    _check_self_and_cross(memlint.lint(_whisper(), decode=20, hw="h100"), 30)


def test_t5_decode_step_with_its_encoder_decoder_cache():
    """T5 through the caller's own EncoderDecoderCache (built for 40 encoder positions)."""
    from memlint.frontends.fx_decode import Step, step_inputs

    model = _t5()
    _, kwargs = step_inputs(model, Step(batch=1, context=20, encoder_length=40))
    assert type(kwargs["past_key_values"]).__name__ == "EncoderDecoderCache"
    report = memlint.lint(model, example_inputs=(), example_kwargs=kwargs, hw="h100")
    _check_self_and_cross(report, 40)


def test_t5_default_encoder_length_is_stated():
    report = memlint.lint(_t5(), decode=8, hw="h100")
    scenario = report.llm.serving.scenario
    assert scenario.encoder_length == 512 and "encoder" in scenario.defaulted


# --- mixture of experts -----------------------------------------------------------------------


def test_expected_experts_formula():
    # E(1 - (1 - k/E)^T) rounded up, at least k: 8 experts, top-2
    assert expected_experts(8, 2, 1) == 2
    assert expected_experts(8, 2, 4) == 6  # 8 * (1 - 0.75**4) = 5.47
    assert expected_experts(8, 2, 64) == 8  # 8 * (1 - 0.75**64) = 7.9999...
    assert expected_experts(64, 8, 1) == 8


def test_mixtral_one_token_step_captures_with_every_node_modelled():
    """Done when: an HF Mixtral one-token step captures with every node modelled."""
    torch.manual_seed(0)
    config = transformers.MixtralConfig(**DECODER, num_local_experts=8, num_experts_per_tok=2)
    model = transformers.MixtralForCausalLM(config).eval()
    report = memlint.lint(model, decode=20, hw="h100")
    assert report.coverage.nodes_modelled == report.coverage.nodes_total
    assert "runs 2 experts per block" in report.model.metadata["moe"]
    # weights read by one token (fp32): per layer attention q,o 64x64 and k,v 64x32 (12,288),
    # router 64x8 (512), 2 experts of 3 x 64x128 (49,152), 2 RMSNorm (128); final norm 64,
    # LM head 256x64 (16,384), one embedding row 64, the rotary inv_freq buffer (head_dim / 2 = 8)
    params = LAYERS * (12_288 + 512 + 2 * 3 * 64 * 128 + 128) + 64 + 16_384 + 64 + 8
    assert report.summary.bytes_read.weights == params * 4
    routed = memlint.lint(model, hw="h100", scenario={"phase": "prefill", "prompt": 4})
    assert "runs 6 experts per block" in routed.model.metadata["moe"]  # 4 tokens: 5.47 -> 6


# --- locations, failures, gates ---------------------------------------------------------------

NET = """
import torch
import torch.nn.functional as F


def gate(x, w):
    return F.gelu(x) * w  # helper line


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 16)
        self.w = torch.nn.Parameter(torch.ones(16))

    def _forward_impl(self, x):
        x = torch.flatten(x, 1)
        x = self.fc(x)  # fc line
        return x

    def forward(self, x):
        return gate(self._forward_impl(x), self.w)
"""


def test_locations_are_the_lines_that_run_the_ops(tmp_path, monkeypatch):
    """Done when: ResNet's fc (called from a helper method) and a helper function's op point
    at the lines that run them."""
    (tmp_path / "netmod.py").write_text(textwrap.dedent(NET))
    monkeypatch.syspath_prepend(str(tmp_path))
    from netmod import Net

    report = memlint.lint(Net(), example_inputs=(torch.randn(2, 16),))
    lines = NET.splitlines()
    where = {n.op_type: n.source for n in report.nodes}
    assert where["Gemm"].line == 1 + next(i for i, t in enumerate(lines) if "# fc line" in t)
    assert where["Gelu"].line == 1 + next(i for i, t in enumerate(lines) if "# helper line" in t)
    assert where["Gemm"].file.endswith("netmod.py")


def test_compile_backend_reports_the_same_names_and_lines(tmp_path, monkeypatch):
    (tmp_path / "netmod2.py").write_text(textwrap.dedent(NET))
    monkeypatch.syspath_prepend(str(tmp_path))
    from netmod2 import Net

    net, x = Net(), torch.randn(2, 16)
    linted = memlint.lint(net, example_inputs=(x,))
    reports = []
    torch.compile(net, backend="memlint", options={"on_report": reports.append})(x)
    torch._dynamo.reset()

    def where(report):
        return [(n.name, n.source.line) for n in report.nodes]

    assert where(reports[0]) == where(linted)


def test_capture_failure_is_one_line_with_a_next_step(capfd):
    class Routed(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            out = x.clone()
            for _ in (x > 0).nonzero():
                out = out + self.lin(x)
            return out

    with pytest.raises(ModelLoadError) as error:
        memlint.lint(Routed(), example_inputs=(torch.randn(2, 8),))
    message = str(error.value)
    assert "\n" not in message and "Next step" in message and "data" in message
    assert "def forward" not in capfd.readouterr().err  # torch's graph dump stays off stderr


class SqueezeExcite(nn.Module):
    def __init__(self, channels=64):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.reduce, self.expand = nn.Conv2d(channels, 8, 1), nn.Conv2d(8, channels, 1)

    def forward(self, x):
        x = self.conv(x)
        s = torch.sigmoid(self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))))
        return x * s  # a broadcast gate, not a SiLU


def test_squeeze_excitation_gate_is_no_silu_and_no_zero_saving_warning():
    report = memlint.lint(SqueezeExcite(), example_inputs=(torch.randn(1, 64, 56, 56),),
                          config=ALL)  # fmt: skip
    for finding in report.findings:
        if finding.code == "ML102":
            assert "SiLU" not in finding.message
            assert finding.saving_s > 0


def test_silu_is_still_a_silu():
    class Silu(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    report = memlint.lint(Silu(), example_inputs=(torch.randn(64, 4096),), config=ALL)
    assert any(f.code == "ML102" and "SiLU" in f.message for f in report.findings)


HF_FACTORY = """
import torch, transformers

def build():
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=256, max_position_embeddings=256)).eval()
"""


def test_cli_builds_the_step_of_a_hugging_face_factory(tmp_path, monkeypatch, capsys):
    """`memlint pkg:build --context N --batch B`: no --example-inputs for a model that
    generates; the JSON report carries the serving figures of the step memlint built."""
    import json

    from memlint.cli import main

    (tmp_path / "hf_factory_mod.py").write_text(HF_FACTORY)
    monkeypatch.chdir(tmp_path)
    code = main(["hf_factory_mod:build", "--hw", "h100", "--context", "100", "--batch", "4",
                 "--format", "json", "--fail-on", "never"])  # fmt: skip
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    serving = document["llm"]["serving"]
    assert serving["scenario"]["batch"] == 4 and serving["scenario"]["context"] == 100
    assert document["summary"]["bytes_by_kind"]["kv_cache"] >= 4 * 100 * KV_PER_TOKEN


def test_gemma2_alternating_sliding_window_kv_bytes_at_8k():
    """Done when (issue 21): alternating sliding-window layers, KV bytes at context 8k exact.
    4 layers, sliding_attention / full_attention alternating, window W = 4096; per layer and
    token 2 (K, V) x 2 KV heads x 16 x 4 B = 256 B. At 8,192 cached tokens the full layers keep
    8,192 tokens and the sliding ones W - 1 = 4,095 (what transformers' sliding cache keeps):
    2 x 8,192 x 256 + 2 x 4,095 x 256 = 6,290,944 B per sequence."""
    torch.manual_seed(0)
    config = transformers.Gemma2Config(**{**DECODER, "num_hidden_layers": 4,
                                          "max_position_embeddings": 16384},
                                       head_dim=HEAD_DIM, sliding_window=4096)  # fmt: skip
    assert config.layer_types == ["sliding_attention", "full_attention"] * 2
    model = transformers.Gemma2ForCausalLM(config).eval()
    report = memlint.lint(model, decode=8192, hw="h100")
    expected = 2 * 8192 * 256 + 2 * 4095 * 256
    serving = report.llm.serving
    assert serving.scenario.context == 8192
    assert serving.kv_bytes_at_context == expected == 6_290_944
    assert (serving.sliding_layers, serving.window) == (2, 4096)
    # the graph's cache inputs hold exactly that, and the step reads it
    graph = report.model.graph
    held = sum(graph.value(n).nbytes for n in graph.inputs
               if graph.value(n).kind is ValueKind.KV_CACHE)  # fmt: skip
    assert held == expected
    assert _kv_read(report) >= expected
    assert report.llm.structure.windows == {0: 4096, 2: 4096}
    from memlint.report import render

    text = " ".join(render(report, "text").split())  # unwrapped
    assert "2 sliding-window layers of window 4,096 keep at most 4,095 tokens" in text


def test_deepseek_v2_latent_attention_cache_and_both_attention_cores():
    """Done when (issue 21): a DeepSeek-V2-like small config, KV bytes per token equal to the
    latent formula. kv_lora_rank r = 16, rope dims p = 8, nope n = 16, v = 16, 4 heads, 2
    layers, fp32: the latent 2 x (16 + 8) x 4 B = 192 B per token; transformers' decompressed
    cache 2 x 4 x (16 + 8 + 16) x 4 B = 1,280 B. A decode step at batch 2 after 100 tokens
    attends over 101 keys per layer: naive reads 101 x 160 elements, absorbed 101 x 24, per
    sequence and layer (x 2 x 2 x 4 B); FLOPs per layer with T = 2 queries:
    naive 2T h 101 (n + p + v) = 64,640; absorbed 2T h (n r + 101 (2r + p) + r v) = 72,832."""
    torch.manual_seed(0)
    config = transformers.DeepseekV2Config(
        hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, vocab_size=256,
        max_position_embeddings=256, n_routed_experts=8, num_experts_per_tok=2,
        n_shared_experts=1, kv_lora_rank=16, q_lora_rank=32, qk_rope_head_dim=8,
        qk_nope_head_dim=16, v_head_dim=16, first_k_dense_replace=1,
    )  # fmt: skip
    model = transformers.DeepseekV2ForCausalLM(config).eval()
    report = memlint.lint(model, decode=100, scenario={"batch": 2}, hw="h100")
    serving = report.llm.serving
    assert serving.kv_bytes_per_token == 2 * (16 + 8) * 4 == 192
    assert serving.kv_bytes_at_context == 192 * 100
    latent = serving.latent
    assert latent.decompressed_bytes_per_token == 2 * 4 * (16 + 8 + 16) * 4 == 1280
    assert latent.naive_bytes == 101 * 160 * 2 * 2 * 4
    assert latent.absorbed_bytes == 101 * 24 * 2 * 2 * 4
    assert latent.naive_flops == 2 * 64_640 and latent.absorbed_flops == 2 * 72_832
    assert latent.absorbed_s < latent.naive_s
    # the graph itself is transformers' naive step: it holds the decompressed cache
    assert _kv_read(report) >= 2 * 100 * 1280
    document = report.to_dict()["llm"]
    assert document["structure"]["latent_attention"]["kv_lora_rank"] == 16
    assert document["serving"]["latent_attention"]["absorbed"]["cache_bytes_read"] == 38_784


def test_mamba_recurrent_state_is_exact_and_constant_in_context():
    """Done when (issue 21): a Mamba small config, per-sequence state bytes exact and constant
    across contexts. hidden 64, expand 2 -> inner 128, conv kernel 4, state 8, 2 layers, fp32:
    per layer a conv state 128 x 4 and an SSM state 128 x 8, (512 + 1,024) x 4 B = 6,144 B;
    12,288 B per sequence at any context."""
    torch.manual_seed(0)
    config = transformers.MambaConfig(hidden_size=64, num_hidden_layers=2, vocab_size=256,
                                      state_size=8, expand=2, conv_kernel=4)  # fmt: skip
    model = transformers.MambaForCausalLM(config).eval()
    steps = {ctx: memlint.lint(model, decode=ctx, scenario={"batch": 2}, hw="h100")
             for ctx in (16, 256)}  # fmt: skip
    for context, report in steps.items():
        serving = report.llm.serving
        assert serving.scenario.context == context
        assert serving.state_bytes_per_sequence == 2 * (128 * 4 + 128 * 8) * 4 == 12_288
        assert serving.state_layers == 2
        assert serving.kv_bytes_per_token is None  # no attention, no KV cache
        assert report.coverage.nodes_modelled == report.coverage.nodes_total
        names = report.model.graph.inputs
        assert "cache_params.0.conv_state" in names and "cache_params.1.ssm_state" in names
    # the step itself does not grow with the context: same bytes, same time
    short, long = steps[16].summary, steps[256].summary
    assert short.bytes_moved == long.bytes_moved
    assert short.predicted_latency_s == long.predicted_latency_s
    assert report.to_dict()["llm"]["serving"]["state_bytes_per_sequence"] == 12_288


def test_mamba2_stacked_states_are_exact_and_constant_in_context():
    """Mamba-2 stacks its states over the layers (cache_params.conv_states [layers, batch,
    conv dim, kernel], .ssm_states [layers, batch, heads, head dim, state]). hidden 64, expand 2
    -> inner 128, 1 group of state 8: conv dim 128 + 2 x 8 = 144; per layer 144 x 4 + 8 heads x
    16 x 8 = 576 + 1,024 elements, x 4 B = 6,400 B; 12,800 B per sequence for 2 layers."""
    torch.manual_seed(0)
    config = transformers.Mamba2Config(hidden_size=64, num_hidden_layers=2, vocab_size=256,
                                       state_size=8, expand=2, conv_kernel=4, num_heads=8,
                                       head_dim=16, n_groups=1)  # fmt: skip
    model = transformers.Mamba2ForCausalLM(config).eval()
    steps = [memlint.lint(model, decode=ctx, scenario={"batch": 2}, hw="h100")
             for ctx in (16, 256)]  # fmt: skip
    for report in steps:
        serving = report.llm.serving
        assert serving.state_bytes_per_sequence == 2 * (144 * 4 + 8 * 16 * 8) * 4 == 12_800
        assert serving.state_layers == 2
        assert report.coverage.nodes_modelled == report.coverage.nodes_total
    assert steps[0].summary.bytes_moved == steps[1].summary.bytes_moved


def test_jamba_hybrid_keeps_state_and_kv_apart():
    """Jamba with 2 layers: layer 0 a Mamba layer (inner 128: conv 128 x 4 + SSM 128 x 8, x 4 B
    = 6,144 B per sequence), layer 1 attention (2 KV heads x 16, K and V: 256 B per token) with
    a mixture of 4 experts, top-2. At 16 cached tokens the attention cache holds 4,096 B per
    sequence; at 256, 65,536 B; the state stays 6,144 B."""
    torch.manual_seed(0)
    config = transformers.JambaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=256, num_experts=4, num_experts_per_tok=2,
        attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
        mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, use_mamba_kernels=False,
    )  # fmt: skip
    model = transformers.JambaForCausalLM(config).eval()
    for context in (16, 256):
        report = memlint.lint(model, decode=context, scenario={"batch": 2}, hw="h100")
        serving = report.llm.serving
        assert serving.state_bytes_per_sequence == (128 * 4 + 128 * 8) * 4 == 6_144
        assert serving.kv_bytes_per_token == 256
        assert serving.kv_bytes_at_context == 256 * context
        assert report.coverage.nodes_modelled == report.coverage.nodes_total
        assert report.model.metadata["moe"].startswith("1 MoE blocks of 4 experts, top-2")
