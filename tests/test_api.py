"""memlint.lint is the one path: the command line's JSON report is json.dumps(lint(...).to_dict())
for the same model and options, decoders at their LLM scenario included."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

import memlint
from memlint import api
from memlint.cli import main
from memlint.errors import ConfigError, LlmError
from memlint.report import FORMATS

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
GPT2 = SAMPLES / "gpt2_decoder_step.onnx"

# (model, CLI flags, the same as lint() keywords)
CASES = {
    "cnn": ("small_cnn.onnx", [], {}),
    "bert": ("bert_encoder.onnx", ["--dim", "batch_size=2", "--dim", "sequence_length=128"],
             {"dims": {"batch_size": 2, "sequence_length": 128}}),
    # no flags: the default decode step of a decoder, in the CLI and the API alike
    "gpt2-default": ("gpt2_decoder_step.onnx", [], {}),
    "gpt2-scenario": (
        "gpt2_decoder_step.onnx",
        ["--hw", "h100", "--batch", "4", "--context", "64", "--sweep", "batch=1,8",
         "--generate", "4", "--weights-dtype", "int4", "--tp", "2"],
        {"hw": "h100", "scenario": {"batch": 4, "context": 64, "sweeps": ("batch=1,8",),
                                    "generate": 4, "weights_dtype": "int4", "tp": 2}},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_json_is_the_api_report_document(case, tmp_path, capsys):
    model, flags, keywords = CASES[case]
    out = tmp_path / "report.json"
    code = main([str(SAMPLES / model), *flags, "--isolated", "--fail-on", "never",
                 "--format", "json", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    report = memlint.lint(SAMPLES / model, **keywords)
    assert out.read_text(encoding="utf-8") == json.dumps(report.to_dict(), indent=2) + "\n"
    document = report.to_dict()
    assert document["findings"] and document["nodes"]  # a document with content, not {}
    if case.startswith("gpt2"):
        assert document["llm"]["serving"] is not None


def test_scenario_sections_are_computed_by_lint():
    report = memlint.lint(GPT2, scenario=api.ScenarioRequest(batch=4, context=64,
                                                             sweeps=("batch=1,8",)))
    assert report.dims == {"batch_size": 4, "sequence_length": 1, "past_sequence_length": 64}
    assert [r.scenario.batch for r in report.llm.sweeps[0].rows] == [1, 8]
    assert report.llm.serving.scenario.batch == 4


def test_scenario_flags_refused_where_they_cannot_apply():
    with pytest.raises(LlmError, match="unknown field"):
        memlint.lint(GPT2, scenario={"batchsize": 4})
    with pytest.raises(LlmError, match="no KV-cache inputs"):
        memlint.lint(SAMPLES / "small_cnn.onnx", scenario={"batch": 4})
    model = api.load(SAMPLES / "small_cnn.onnx")  # an ir.Model cannot be re-bound
    with pytest.raises(ConfigError, match="--batch, --sweep: a .pt2 program or a loaded Model"):
        memlint.lint(model, scenario={"batch": 2, "sweeps": "batch=1,2"})


def test_help_shows_the_real_signature_and_docstring():
    assert memlint.lint is api.lint
    parameters = inspect.signature(memlint.lint).parameters
    assert {"hw", "dims", "scenario", "config", "confirm"} <= set(parameters)
    assert "to_dict()" in memlint.lint.__doc__


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_many_models_combine_in_every_format(fmt, tmp_path, capsys):
    out = tmp_path / "all"
    models = [str(SAMPLES / "small_cnn.onnx"), str(SAMPLES / "bert_encoder.onnx")]
    code = main([*models, "--isolated", "--fail-on", "never", "--format", fmt, "-o", str(out)])
    if not FORMATS[fmt].many:
        assert code == 2 and "takes one model per report" in capsys.readouterr().err
        return
    assert code == 0, capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        assert len(json.loads(text)["reports"]) == 2
    elif fmt == "sarif":
        assert len(json.loads(text)["runs"]) == 2
    elif fmt == "text":
        assert "2 models:" in text and "small_cnn.onnx: " in text
    elif fmt == "markdown":
        assert "| model | result |" in text
    assert all(name in text.replace("\\_", "_") for name in ("small_cnn", "bert_encoder"))
