"""The rule-facing CLI: `memlint rules`, `memlint rule CODE`, --select/--ignore/--severity/
--rule-option, config files found from the model, suppressions in the report, exit codes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from memlint.cli import main
from memlint.engine import load_rules

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
DECODER = SAMPLES / "gpt2_decoder_step.onnx"
ENCODER = SAMPLES / "bert_encoder.onnx"  # no KV cache: unbound dims stay assumed (ML902)


def _json(capsys, *argv: str) -> tuple[int, dict]:
    code = main([str(ENCODER), "--format", "json", "--isolated", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_rules_lists_every_rule(capsys):
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    for code, rule in load_rules().rules.items():
        assert code in out and rule.name in out


def test_rule_prints_its_documentation(capsys):
    assert main(["rule", "ml902"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# assumed-dims (ML902)\n")
    for section in ("## What it does", "## Why is this bad?", "## How to fix", "## Known limits",
                    "## Example that fires", "## Example that does not fire"):
        assert section in out
    assert main(["rule", "assumed-dims"]) == 0


def test_unknown_rule_is_one_line_and_exit_2(capsys):
    assert main(["rule", "ML9021"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memlint: error: no rule 'ML9021'; did you mean ML902?")
    assert len(err.strip().splitlines()) == 1


def test_findings_in_json_and_fail_on(capsys):
    # The sample encoder with no dims bound: ML902 (info) reports the two assumed dims.
    code, data = _json(capsys, "--select", "ML902")
    assert code == 0  # info is below the default --fail-on warning
    (finding,) = data["findings"]
    assert finding["code"] == "ML902" and finding["severity"] == "info"
    assert "batch_size=1" in finding["message"]
    assert data["rules_run"] == ["ML902"]
    code, _ = _json(capsys, "--select", "ML902", "--fail-on", "info")
    assert code == 1
    code, data = _json(capsys, "--select", "ML902", "--severity", "ML902=error", "--fail-on", "error")
    assert code == 1 and data["findings"][0]["severity"] == "error"
    # the longer (more specific) selector wins, as in ruff
    code, data = _json(capsys, "--ignore", "ML902", "--select", "ML9")
    assert data["rules_run"] == ["ML901", "ML903"]
    code, data = _json(capsys, "--ignore", "ML9", "--select", "ML902,ML901")
    assert data["rules_run"] == ["ML901", "ML902"]


def test_the_config_where_the_run_starts_is_used(tmp_path, capsys, monkeypatch):
    model = tmp_path / "encoder.onnx"
    shutil.copy(ENCODER, model)
    (tmp_path / "memlint.toml").write_text(
        'select = ["ML902"]\nfail-on = "info"\ndims = { batch_size = 4 }\n'
        '[[suppress]]\ncode = "ML9"\nnodes = "/never/*"\nreason = "stale entry"\n'
    )
    monkeypatch.chdir(tmp_path)  # the run starts here: this file is the run's config
    assert main([str(model), "--format", "json"]) == 1  # fail-on info from the file
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["dims"]["batch_size"] == 4
    assert data["rules_run"] == ["ML902"]
    assert data["unused_suppressions"] == [
        {"code": "ML9", "nodes": "/never/*", "reason": "stale entry"}]
    assert data["config_files"] == [str(tmp_path / "memlint.toml")]
    assert main([str(model), "--format", "json", "--isolated", "--fail-on", "never"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["dims"]["batch_size"] == 1


def test_a_config_beside_the_model_adds_dims_and_suppressions_not_the_gate(tmp_path, capsys,
                                                                          monkeypatch):
    # A pull request adds models/memlint.toml that turns the gate off: the run (started in the
    # repository, whose own config sets the gate) keeps its exit code; the file's dims and its
    # suppression (with a reason) apply, and the report names the file and what it gave.
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "memlint.toml").write_text('fail-on = "warning"\n')
    model = repo / "models" / "decoder.onnx"
    shutil.copy(DECODER, model)
    monkeypatch.chdir(repo)
    before = main([str(model), "--format", "json"])
    gate = json.loads(capsys.readouterr().out)
    assert before == 1 and gate["findings"]
    (repo / "models" / "memlint.toml").write_text(
        'fail-on = "never"\nselect = ["ML902"]\nmin-share = 1.0\n'
        'dims = { batch_size = 2 }\n'
        '[[suppress]]\ncode = "ML106"\nnodes = "*"\nreason = "weights stay fp32 for now"\n'
    )
    assert main([str(model), "--format", "json"]) == 1  # the gate is unchanged
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["dims"]["batch_size"] == 2
    assert {s["code"] for s in data["suppressed"]} == {"ML106"}
    assert data["rules_run"] == gate["rules_run"]
    local = str(repo / "models" / "memlint.toml")
    assert data["config_files"] == [
        str(repo / "memlint.toml"),
        f"{local} (model folder: dims, suppressions; not used for the gate: fail_on, "
        "min_share, select)",
    ]
    assert main([str(model), "--config", str(repo / "memlint.toml"), "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["config_files"] == [str(repo / "memlint.toml")]


def test_text_report_shows_findings_and_unused_suppressions(tmp_path, capsys):
    model = tmp_path / "encoder.onnx"
    shutil.copy(ENCODER, model)
    (tmp_path / "memlint.toml").write_text(
        '[[suppress]]\ncode = "ML902"\nnodes = "*"\nreason = "r"\n'
        '[[suppress]]\nnodes = "nothing"\nreason = "old"\n'
    )
    assert main([str(model), "--select", "ML902"]) == 0
    out = capsys.readouterr().out
    # ML902 is about the graph (no nodes): a node-glob suppression cannot hide it.
    assert re.search(r"^ML902 +assumed-dims ", out, re.M), out  # one line per finding
    assert "unused suppression: code ALL nodes 'nothing' (old) matched no finding" in out


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ('select = ["XX9"]', "'XX9' matches no rule code"),
        ('hw = "a1000"', "a1000"),
        ("[rules.ML902]\nnope = 1", "rule ML902 (assumed-dims) has no option 'nope'"),
        ("fail-on = 3", "fail-on: must be a string"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, monkeypatch, config, problem):
    (tmp_path / "memlint.toml").write_text(config + "\n")
    monkeypatch.chdir(tmp_path)
    shutil.copy(DECODER, tmp_path / "m.onnx")
    assert main([str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert problem in err and len(err.strip().splitlines()) == 1


def test_rule_option_flag_is_validated(capsys):
    assert main([str(DECODER), "--isolated", "--rule-option", "ML902.x=1"]) == 2
    assert "has no option 'x'" in capsys.readouterr().err
