"""Encoder-decoder decoders exported by Optimum (Whisper, T5): decoder_with_past_model.onnx and
decoder_model_merged.onnx lint with every node modelled and nothing assumed; the encoder length
is its own dim role (DimRole.ENCODER); the cross-attention cache is read every step and never
appended, and is counted apart from the self-attention cache; the merged decoder's If on
use_cache_branch is taken by the scenario (decode: with past; prefill: without).

Tiny configs exported once per module from local save_pretrained dirs (~10 s)."""

from __future__ import annotations

import json

import pytest
from clitools import optimum_export  # pytest puts tests/ on sys.path

from memlint.analysis.structure import DimRole, detect
from memlint.api import lint, load

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")

LAYERS, HIDDEN, HEADS, VOCAB = 2, 64, 4, 300
HEAD_DIM = HIDDEN // HEADS  # 16
FP32 = 4
WHISPER_ENCODER, WHISPER_POSITIONS = 1500, 448  # max_source_positions, max_target_positions
DECODERS = ("decoder_with_past_model", "decoder_model_merged")
ALL_DIMS = {"batch_size": 1, "decoder_sequence_length": 1, "encoder_sequence_length": 64}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{"whisper": export dir, "t5": export dir}: encoder_model, decoder_model,
    decoder_with_past_model and decoder_model_merged .onnx files beside config.json."""

    root = tmp_path_factory.mktemp("seq2seq")
    torch.manual_seed(0)
    models = {
        "whisper": (transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
            d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS,
            encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=128,
            decoder_ffn_dim=128, max_source_positions=WHISPER_ENCODER,
            max_target_positions=WHISPER_POSITIONS, vocab_size=VOCAB, num_mel_bins=80,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
            suppress_tokens=[], begin_suppress_tokens=[],
        )), "automatic-speech-recognition-with-past"),
        "t5": (transformers.T5ForConditionalGeneration(transformers.T5Config(
            d_model=HIDDEN, d_kv=HEAD_DIM, d_ff=128, num_layers=LAYERS,
            num_decoder_layers=LAYERS, num_heads=HEADS, vocab_size=VOCAB,
            decoder_start_token_id=0,
        )), "text2text-generation-with-past"),
    }  # fmt: skip
    return optimum_export(root, models)


def test_optimum_writes_the_four_models(exports):
    for folder in exports.values():
        assert {p.name for p in folder.glob("*.onnx")} == {
            "encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx",
            "decoder_model_merged.onnx",
        }  # fmt: skip


def _fully_modelled(report) -> None:
    coverage = report.coverage
    assert coverage.nodes_modelled == coverage.nodes_total, report.coverage
    # no dim silently left at 1: what the flags did not give is the scenario's, marked so
    assert [d.name for d in report.model.dims if d.assumed and not d.source] == []
    assert all(d.source.startswith("LLM default") for d in report.model.dims if d.assumed)


@pytest.mark.parametrize("name", ["whisper", "t5"])
@pytest.mark.parametrize("decoder", DECODERS)
def test_default_decode_step_is_fully_modelled(exports, name, decoder):
    report = lint(exports[name] / f"{decoder}.onnx", hw="a100")
    _fully_modelled(report)
    assert "If" not in {n.op_type for n in report.nodes}
    scenario = report.llm.serving.scenario
    if name == "whisper":  # the past default fits 448 positions; the encoder fixes 1500 frames
        assert (scenario.context, scenario.encoder_length) == (447, 1500)
        assert "encoder length from config.json max_source_positions" in scenario.describe()
        assert "encoder" not in scenario.defaulted
    else:  # T5 fixes no encoder length: a stated default
        assert (scenario.context, scenario.encoder_length) == (1024, 512)
        assert "encoder" in scenario.defaulted
        assert "default encoder length 512" in scenario.describe()
    dims = dict(report.dims)
    assert dims["encoder_sequence_length"] == scenario.encoder_length
    assert dims["past_decoder_sequence_length"] == scenario.context
    if decoder == "decoder_model_merged":
        assert dict(report.model.input_values) == {"use_cache_branch": "True"}
        assert "then_branch taken statically" in report.model.control_flow[0]


@pytest.mark.parametrize("name", ["whisper", "t5"])
def test_merged_prefill_takes_the_branch_without_past(exports, name):
    report = lint(exports[name] / "decoder_model_merged.onnx", hw="a100",
                  dims={"encoder_sequence_length": 64}, scenario={"phase": "prefill", "prompt": 8})
    _fully_modelled(report)
    assert dict(report.model.input_values) == {"use_cache_branch": "False"}
    assert "else_branch taken statically" in report.model.control_flow[0]
    scenario = report.llm.serving.scenario
    assert (scenario.new_tokens, scenario.context, scenario.encoder_length) == (8, 0, 64)
    assert scenario.encoder_source == "--dim encoder_sequence_length=64"


@pytest.mark.parametrize("name", ["whisper", "t5"])
def test_encoder_length_is_its_own_role(exports, name):
    structure = detect(load(exports[name] / "decoder_with_past_model.onnx"))
    assert structure.dims_of(DimRole.ENCODER) == ("encoder_sequence_length",)
    assert structure.dims_of(DimRole.PAST) == ("past_decoder_sequence_length",)
    assert [t.name for t in structure.kv_inputs if t.cross] == [
        f"past_key_values.{i}.encoder.{part}" for i in range(LAYERS) for part in ("key", "value")
    ]
    # 2 (key, value) x 2 layers x 4 heads x 16 x 4 B = 1,024 B per token (self-attention) and
    # the same per encoder position (cross-attention), counted apart
    assert structure.kv_bytes_per_token() == 2 * LAYERS * HEADS * HEAD_DIM * FP32 == 1024
    assert structure.cross_kv_bytes_per_position() == 1024
    assert (structure.layers, structure.heads, structure.kv_heads, structure.head_dim) == (
        LAYERS, HEADS, HEADS, HEAD_DIM)
    # --dim for both lengths is no longer refused (they used to share the PAST role)
    report = lint(exports[name] / "decoder_with_past_model.onnx", hw="a100",
                  dims={"past_decoder_sequence_length": 100, "encoder_sequence_length": 300})
    scenario = report.llm.serving.scenario
    assert (scenario.context, scenario.encoder_length) == (100, 300)
    _fully_modelled(report)


@pytest.mark.parametrize("name", ["whisper", "t5"])
@pytest.mark.parametrize("model", ["encoder_model", "decoder_model"])
def test_encoder_and_first_decoder_lint_bound(exports, name, model):
    dims = {"batch_size": 1} if (name, model) == ("whisper", "encoder_model") else ALL_DIMS
    if model == "encoder_model":
        dims = {k: v for k, v in dims.items() if k != "decoder_sequence_length"}
    _fully_modelled(lint(exports[name] / f"{model}.onnx", hw="a100", dims=dims))


@pytest.mark.parametrize("decoder", DECODERS)
def test_whisper_kv_traffic_per_step(exports, decoder):
    """Self-attention cache read (past) + written (the new token); cross-attention cache read
    whole and never written."""
    report = lint(exports["whisper"] / f"{decoder}.onnx", hw="a100")
    serving, graph = report.llm.serving, report.model.graph
    # One K or V tensor of one layer, batch 1, 4 heads x 16, fp32:
    #   self past   447 tokens:  4 x 447 x 16 x 4 B  =   114,432 B
    #   new token     1 token:   4 x   1 x 16 x 4 B  =       256 B
    #   cross      1500 frames:  4 x 1500 x 16 x 4 B =   384,000 B
    # x 2 layers x (key, value) = 4 tensors of each:
    self_read, self_written, cross_read = 4 * 114_432, 4 * 256, 4 * 384_000
    assert (self_read, self_written, cross_read) == (457_728, 1_024, 1_536_000)
    assert serving.cache_traffic == (self_read, self_written, cross_read)
    assert serving.kv_bytes_at_context == self_read
    assert serving.cross_kv_bytes_per_sequence == cross_read
    assert serving.kv_bytes_batch == self_read + cross_read

    # The graph agrees: each past input is read whole by the nodes that read it, the present
    # self-attention caches are one token longer, and no node writes a cross-attention cache.
    def nbytes(name: str) -> int:
        return graph.value(name).numel * FP32

    readers = {name: [n for n in graph.nodes if name in n.inputs] for name in graph.inputs}
    cross = [f"past_key_values.{i}.encoder.{p}" for i in range(LAYERS) for p in ("key", "value")]
    past = [f"past_key_values.{i}.decoder.{p}" for i in range(LAYERS) for p in ("key", "value")]
    assert sum(nbytes(n) for n in cross) == cross_read
    assert sum(nbytes(n) for n in past) == self_read
    assert all(readers[n] for n in cross + past)
    present = [n.replace("past_key_values", "present") for n in past]
    assert sum(nbytes(p) - nbytes(n) for p, n in zip(present, past)) == self_written
    by_name = {r.name: r for r in report.nodes}
    for node in graph.nodes:
        written = [o for o in node.outputs if o.startswith("present.") and ".encoder." in o]
        if written:  # the merged decoder's with-past branch outputs empty [0, 4, 1, 16]
            assert node.op_type == "Constant" and by_name[node.name].cost.bytes_moved == 0


def test_serving_section_and_json_count_the_caches_apart(exports):
    report = lint(exports["whisper"] / "decoder_model_merged.onnx", hw="a100")
    from memlint.report import render

    text = render(report, "text")
    assert "cross-attention 1.54 MB per" in text  # wrapped by the terminal width
    assert "control flow" in text and "use_cache_branch = True" in text
    doc = report.to_dict()
    serving = doc["llm"]["serving"]
    assert serving["cross_kv_bytes_per_sequence"] == 1_536_000
    assert serving["cache_traffic_bytes"] == {
        "self_read": 457_728, "self_written": 1_024, "cross_read": 1_536_000}
    assert serving["scenario"]["encoder_length"] == 1500
    assert doc["llm"]["structure"]["encoder_positions"] == 1500
    assert doc["model"]["input_values"] == {"use_cache_branch": "True"}


@pytest.mark.parametrize("name", ["whisper", "t5"])
def test_cli_on_the_export_folder(exports, name, tmp_path):
    from memlint.cli import main

    out = tmp_path / "report.json"
    code = main([str(exports[name] / "decoder_model_merged.onnx"), "--hw", "a100", "--isolated",
                 "--fail-on", "never", "--format", "json", "-o", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    coverage = doc["summary"]["coverage"]
    assert coverage["nodes_modelled"] == coverage["nodes_total"]
    assumed = doc["summary"]["assumed_dims"]  # the default decode step's, each with its source
    assert assumed and all(doc["summary"]["dim_sources"][n].startswith("LLM default")
                           for n in assumed)
    assert doc["llm"]["serving"]["scenario"]["encoder_length"] == (
        1500 if name == "whisper" else 512)


@pytest.mark.parametrize("name", ["whisper", "t5"])
@pytest.mark.parametrize("model", ["encoder_model", *DECODERS])
def test_both_estimates_hold_on_the_seq2seq_exports(exports, name, model):
    # issue 24 on the encoder and the decoders of a sequence-to-sequence export (cross-attention
    # reads the encoder's cache, the merged decoder's If is taken): on a GPU spec the as-written
    # estimate pays at least a launch per kernel, and a fusing runtime runs fewer kernels in
    # less time, moving no more bytes
    summary = lint(exports[name] / f"{model}.onnx", hw="a100").summary
    launch = 2.4e-6  # the NVIDIA specs' per-kernel launch cost
    assert summary.predicted_latency_s >= summary.kernels * launch
    assert summary.kernels_fused < summary.kernels
    assert summary.predicted_latency_fused_s < summary.predicted_latency_s
    assert summary.fused.bytes_moved <= summary.bytes_moved
    assert summary.fused.groups["chain"] > 0  # the norms and activations fuse
    # every attention block is one kernel: self-attention in each encoder layer; self- and
    # cross-attention (over the encoder's cache) in each decoder layer
    per_layer = 1 if model == "encoder_model" else 2
    assert summary.fused.groups["attention"] == per_layer * LAYERS
