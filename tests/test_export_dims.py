"""Export folders fill unbound dims from the exporter's own files (issue 23): an Optimum ViT and a
CLIP export lint with no flags at their configured image size (config.json image_size,
num_channels; CLIP's text at text_config.max_position_embeddings) with every node modelled and
nothing assumed, and --confirm runs them on the CPU; a Whisper encoder lints at its configured
frame count (2 x max_source_positions) and mel bins; the report names the file and key of each
dim; --dim wins; --strict-dims accepts what the files gave; a --confirm failure names the shapes
it fed.

Tiny configs with random weights, exported once per module from local save_pretrained dirs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from clitools import optimum_export  # pytest puts tests/ on sys.path

from memlint.analysis.export_dims import BATCH_SOURCE, export_dims
from memlint.api import lint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")
pytest.importorskip("onnxruntime")

IMAGE, PATCH, HIDDEN, LAYERS, HEADS = 32, 8, 32, 2, 2
TEXT_POSITIONS = 77  # CLIP's text tower pads to its position table
MEL_BINS, SOURCE_POSITIONS = 80, 1500  # Whisper: 3000 input frames -> 1500 encoder positions
TOWER = {"hidden_size": HIDDEN, "intermediate_size": 64, "num_hidden_layers": LAYERS,
         "num_attention_heads": HEADS}  # fmt: skip


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{"vit": folder, "clip": folder, "whisper": folder}: Optimum exports beside config.json."""

    root = tmp_path_factory.mktemp("export-dims")
    torch.manual_seed(0)
    models = {
        "vit": (transformers.ViTForImageClassification(transformers.ViTConfig(
            image_size=IMAGE, patch_size=PATCH, num_labels=3, **TOWER,
        )), "image-classification"),
        "clip": (transformers.CLIPModel(transformers.CLIPConfig(
            text_config={**TOWER, "vocab_size": 100, "max_position_embeddings": TEXT_POSITIONS},
            vision_config={**TOWER, "image_size": IMAGE, "patch_size": PATCH},
            projection_dim=16,
        )), "zero-shot-image-classification"),
        "whisper": (transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
            d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS,
            encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=64,
            decoder_ffn_dim=64, max_source_positions=SOURCE_POSITIONS, max_target_positions=448,
            vocab_size=100, num_mel_bins=MEL_BINS, pad_token_id=0, bos_token_id=1,
            eos_token_id=2, decoder_start_token_id=1, suppress_tokens=[],
            begin_suppress_tokens=[],
        )), "automatic-speech-recognition"),
    }  # fmt: skip
    return optimum_export(root, models)


def _sources(report) -> dict[str, str]:
    return {d.name: d.source for d in report.model.dims if d.source}


def test_vit_lints_at_its_configured_image_size(exports):
    report = lint(str(exports["vit"] / "model.onnx"), hw="cpu")
    assert report.coverage.nodes_modelled == report.coverage.nodes_total
    assert report.assumed_dims == ()
    assert report.dims == {"batch_size": 1, "num_channels": 3, "height": IMAGE, "width": IMAGE}
    assert _sources(report) == {
        "batch_size": BATCH_SOURCE, "num_channels": "config.json num_channels",
        "height": "config.json image_size", "width": "config.json image_size",
    }  # fmt: skip
    summary = report.to_dict()["summary"]
    assert summary["dim_sources"]["height"] == "config.json image_size"
    # the patch embedding: a Conv over (32/8)^2 = 16 patches, 3*8*8 inputs each, 32 outputs,
    # plus one bias add per output: 2*16*192*32 + 16*32 = 197,120
    conv = next(n for n in report.nodes if n.op_type == "Conv")
    assert conv.cost.flops == 2 * 16 * 3 * PATCH * PATCH * HIDDEN + 16 * HIDDEN


def test_clip_lints_both_towers_at_their_configured_sizes(exports):
    report = lint(str(exports["clip"] / "model.onnx"), hw="cpu")
    assert report.coverage.nodes_modelled == report.coverage.nodes_total
    assert report.assumed_dims == ()
    assert report.dims["sequence_length"] == TEXT_POSITIONS
    assert report.dims["height"] == report.dims["width"] == IMAGE
    assert report.dims["num_channels"] == 3
    sources = _sources(report)
    assert sources["sequence_length"] == "config.json text_config.max_position_embeddings"
    assert sources["height"] == "config.json vision_config.image_size"
    assert sources["text_batch_size"] == BATCH_SOURCE


def test_a_dim_flag_wins_over_the_files_and_strict_dims_accepts_them(exports):
    report = lint(str(exports["clip"] / "model.onnx"), hw="cpu", dims={"sequence_length": 16},
                  strict_dims=True)  # fmt: skip
    assert report.dims["sequence_length"] == 16
    assert "sequence_length" not in _sources(report)  # the flag's value, not the file's
    assert report.dims["height"] == IMAGE and report.assumed_dims == ()
    # a memlint.toml's dims are the user's too: they win over the files
    from memlint.config import Config

    configured = lint(str(exports["vit"] / "model.onnx"), hw="cpu",
                      config=Config(dims={"batch_size": 4}))  # fmt: skip
    assert configured.dims["batch_size"] == 4 and "batch_size" not in _sources(configured)


def test_the_text_header_names_the_file_of_each_dim(exports):
    from memlint.report import render

    text = render(lint(str(exports["vit"] / "model.onnx"), hw="cpu"), "text")
    assert "height=32 (config.json image_size)" in text
    assert "assumed dims" not in text


@pytest.mark.parametrize("name", ["vit", "clip"])
def test_confirm_runs_the_export_with_no_dim_flags(exports, name, tmp_path, monkeypatch):
    from memlint.cli import main

    monkeypatch.setenv("MEMLINT_HARDWARE_DIR", str(tmp_path / "hw"))
    out = tmp_path / "report.json"
    code = main([str(exports[name]), "--confirm", "--hw", "cpu", "--runs", "1", "--isolated",
                 "--fail-on", "never", "--format", "json", "-o", str(out)])  # fmt: skip
    assert code == 0
    measured = json.loads(out.read_text())["measurement"]
    assert measured["provider"] == "CPUExecutionProvider" and measured["runs"] == 1


def test_a_confirm_failure_names_the_shapes_it_fed(exports, tmp_path, monkeypatch, capsys):
    from memlint.cli import main

    monkeypatch.setenv("MEMLINT_HARDWARE_DIR", str(tmp_path / "hw"))
    code = main([str(exports["vit"]), "--confirm", "--hw", "cpu", "--runs", "1", "--isolated",
                 "--dim", "num_channels=1", "--fail-on", "never", "-o", str(tmp_path / "r")])
    assert code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "fed pixel_values float32[1, 1, 32, 32]" in line
    assert "num_channels=1 (bound)" in line and "height=32 (config.json image_size)" in line
    # onnxruntime's reason survives whole, its boilerplate gone
    assert line.endswith("C: 1 kernel channels: 3 group: 1") and "ONNXRuntimeError" not in line


def test_whisper_encoder_lints_at_its_configured_frames(exports, tmp_path):
    report = lint(str(exports["whisper"] / "encoder_model.onnx"), hw="cpu")
    assert report.coverage.nodes_modelled == report.coverage.nodes_total
    assert report.assumed_dims == ()
    features = report.model.graph.value("input_features")
    assert tuple(features.shape) == (1, MEL_BINS, 2 * SOURCE_POSITIONS)
    # older Optimum versions named the mel bins and frames: the config sizes them
    import onnx

    proto = onnx.load(str(exports["whisper"] / "encoder_model.onnx"))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_param, dims[2].dim_param = "feature_size", "encoder_sequence_length"
    folder = tmp_path / "whisper-named"
    folder.mkdir()
    onnx.save(proto, str(folder / "encoder_model.onnx"))
    shutil.copy(exports["whisper"] / "config.json", folder / "config.json")
    named = lint(str(folder / "encoder_model.onnx"), hw="cpu")
    assert named.dims == {"batch_size": 1, "feature_size": MEL_BINS,
                          "encoder_sequence_length": 2 * SOURCE_POSITIONS}  # fmt: skip
    assert _sources(named)["encoder_sequence_length"] == "2 x config.json max_source_positions"
    assert _sources(named)["feature_size"] == "config.json num_mel_bins"
    assert named.coverage.nodes_modelled == named.coverage.nodes_total


def test_whisper_decoder_never_gets_the_encoder_frames(exports):
    """The decoder's encoder_sequence_length is the encoder's output, not its input frames: the
    files size input_features only (the decoder's dims are the LLM scenario's, docs/llm.md)."""
    report = lint(str(exports["whisper"] / "decoder_model.onnx"), hw="cpu")
    assert report.dims.get("encoder_sequence_length") != 2 * SOURCE_POSITIONS
    assert _sources(report) == {}


PIXELS = {"pixel_values": ("batch_size", "num_channels", "height", "width")}


def _folder(tmp_path: Path, **files: dict) -> str:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    for name, data in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    return str(model)


def test_preprocessor_sizes_an_image_the_config_does_not(tmp_path):
    # DETR-style: no image_size in config.json; the processor's shortest/longest edge
    model = _folder(tmp_path, config={"num_channels": 3},
                    preprocessor_config={"size": {"shortest_edge": 800, "longest_edge": 1333}})
    found = {d.name: (d.value, d.source) for d in export_dims(model, PIXELS)}
    assert found["height"] == (800, "preprocessor_config.json size.shortest_edge")
    assert found["width"] == (1333, "preprocessor_config.json size.longest_edge")
    assert found["num_channels"] == (3, "config.json num_channels")


def test_crop_size_and_non_square_image_size(tmp_path):
    cropped = _folder(tmp_path, config={},
                      preprocessor_config={"crop_size": {"height": 224, "width": 192}})
    found = {d.name: d.value for d in export_dims(cropped, PIXELS)}
    assert found == {"batch_size": 1, "height": 224, "width": 192}
    (tmp_path / "config.json").write_text(json.dumps({"image_size": [384, 256]}))
    found = {d.name: d.value for d in export_dims(cropped, PIXELS)}
    assert (found["height"], found["width"]) == (384, 256)  # the config first


def test_inputs_without_a_natural_size_stay_unbound(tmp_path):
    model = _folder(tmp_path, config={"max_position_embeddings": 512, "num_mel_bins": 0},
                    preprocessor_config={"sampling_rate": 16000})
    inputs = {
        "input_ids": ("batch_size", "sequence_length"),  # a BERT: 512 is a limit, not a length
        "input_values": ("batch_size", "sequence_length"),  # Wav2Vec2: raw audio of any length
        "input_features": ("batch_size", "feature_size", "frames"),  # no Whisper config
    }
    assert export_dims(model, inputs) == ()
    assert export_dims(str(tmp_path / "missing.onnx"), PIXELS) == ()


def test_run_failure_message_names_shapes_and_keeps_the_reason():
    from memlint.confirm.run import run_failure

    error = RuntimeError(
        "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Conv node. "
        f"Name:'/{'very_long/' * 30}Conv' Status Message: Input channels C is not equal to "
        "kernel channels * group. C: 1 kernel channels: 3 group: 1\nsecond line"
    )
    line = run_failure(error, "fed pixel_values float32[1, 1, 32, 32]")
    assert line.startswith(
        "onnxruntime failed to run the model (fed pixel_values float32[1, 1, 32, 32]): Conv node"
    )
    assert line.endswith("C: 1 kernel channels: 3 group: 1") and "\n" not in line
    assert len(line) < 400
