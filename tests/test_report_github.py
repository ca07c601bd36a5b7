"""GitHub Actions workflow commands: one annotation per finding, a summary notice, and the
escaping of @actions/core (data: % CR LF; properties also : and ,) checked exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from memlint.api import lint
from memlint.cli import main
from memlint.config import Config, Suppression
from memlint.core.report import Report
from memlint.findings import Finding, Fix, Severity, Suppressed
from memlint.ir import SourceLocation
from memlint.report import render as render_format
from memlint.report.github import escape_data, escape_property, render

REPO = Path(__file__).resolve().parent.parent
CNN = "sample_models/small_cnn.onnx"
DECODER = "sample_models/gpt2_decoder_step.onnx"
DECODER_DIMS = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 128}
HOSTILE = "a,b:c%d\nx<img src=x>"


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="module")
def cnn() -> Report:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        return lint(CNN)


def _finding(**changes: Any) -> Finding:
    base = Finding(
        code="ML101",
        name="low-intensity-matmul",
        severity=Severity.WARNING,
        message="intensity 0.5 FLOP/B",
        nodes=("/h.0/mlp/MatMul",),
        fixes=(Fix("Batch requests", 2e-6),),
    )
    return dataclasses.replace(base, **changes)


def _lines(report: Report, *findings: Finding) -> list[str]:
    return render(dataclasses.replace(report, findings=findings)).splitlines()


def test_escape_data_and_property_exactly():
    assert escape_data(HOSTILE) == "a,b:c%25d%0Ax<img src=x>"
    assert escape_property(HOSTILE) == "a%2Cb%3Ac%25d%0Ax<img src=x>"
    # % is escaped first, so an existing escape is not mistaken for one: "%0A" -> "%250A"
    assert escape_data("100%0A\r\n") == "100%250A%0D%0A"
    assert escape_property("C:\\x,y") == "C%3A\\x%2Cy"


def test_hostile_node_name_is_escaped_in_the_message(cnn: Report):
    line = _lines(cnn, _finding(nodes=(HOSTILE,), fixes=(Fix("do it"),)))[0]
    assert line == (
        "::warning file=sample_models/small_cnn.onnx,title=ML101 low-intensity-matmul::"
        "a,b:c%25d%0Ax<img src=x>: intensity 0.5 FLOP/B%0Afix: do it"
    )


def test_hostile_file_name_is_escaped_as_a_property(cnn: Report):
    model = dataclasses.replace(cnn.model, source=f"models/{HOSTILE}.onnx")
    report = dataclasses.replace(cnn, model=model)
    line = _lines(report, _finding(fixes=(Fix("do it"),)))[0]
    assert line == (
        "::warning file=models/a%2Cb%3Ac%25d%0Ax<img src=x>.onnx,"
        "title=ML101 low-intensity-matmul::/h.0/mlp/MatMul: intensity 0.5 FLOP/B%0Afix: do it"
    )


def test_no_finding_can_inject_a_command(cnn: Report):
    evil = _finding(nodes=("n\n::error::pwned",), message="m\r\n::error file=x::pwned")
    lines = _lines(cnn, evil)
    assert len(lines) == 2  # the annotation and the summary: no raw line break got through
    assert not any(line.startswith("::error") for line in lines)


@pytest.mark.parametrize(
    ("severity", "command"),
    [(Severity.ERROR, "::error "), (Severity.WARNING, "::warning "), (Severity.INFO, "::notice ")],
)
def test_command_follows_severity(cnn: Report, severity: Severity, command: str):
    assert _lines(cnn, _finding(severity=severity))[0].startswith(command)


def test_source_file_and_line_when_known(cnn: Report):
    source = SourceLocation(str(REPO / "examples" / "net.py"), 42)
    line = _lines(cnn, _finding(source=source))[0]
    # relative to the cwd (the repo root); 2e-6 s formats as "2 us"
    assert line == (
        "::warning file=examples/net.py,line=42,title=ML101 low-intensity-matmul::"
        "/h.0/mlp/MatMul: intensity 0.5 FLOP/B%0Afix: Batch requests (saves 2 us)"
    )


def test_file_outside_the_cwd_stays_absolute(cnn: Report, tmp_path: Path):
    source = SourceLocation(str(tmp_path / "net.py"), 3)
    line = _lines(cnn, _finding(source=source))[0]
    assert f"file={escape_property((tmp_path / 'net.py').as_posix())},line=3," in line


def test_nodes_in_the_message_group_or_first_three(cnn: Report):
    many = _finding(nodes=("n1", "n2", "n3", "n4", "n5"))
    assert "::n1, n2, n3 and 2 more: intensity" in _lines(cnn, many)[0]
    grouped = _finding(nodes=("/h.0/x", "/h.1/x"), group="2 nodes: /h.0/x ... /h.1/x", count=2)
    assert "::2 nodes: /h.0/x ... /h.1/x: intensity" in _lines(cnn, grouped)[0]
    graph_wide = _finding(nodes=())
    assert "title=ML101 low-intensity-matmul::intensity 0.5 FLOP/B%0A" in _lines(cnn, graph_wide)[0]


def test_summary_notice(cnn: Report):
    # 2 ms predicted, 1.5 ms of it in memory-bound ops -> 75.0% (the % escaped as %25)
    summary = dataclasses.replace(
        cnn.summary, predicted_latency_s=2e-3, memory_bound_latency_s=1.5e-3, launch_s=0.0
    )
    report = dataclasses.replace(
        cnn, summary=summary, hidden_as_noise=3,
        suppressed=(Suppressed(_finding(), "known", "*"),),
    )
    lines = _lines(report, _finding(severity=Severity.ERROR), _finding(), _finding())
    assert len(lines) == 4
    assert lines[-1] == (
        f"::notice title=memlint::sample_models/small_cnn.onnx on {cnn.hardware.display_name}: "
        "predicted latency 2 ms, 75.0%25 memory-bound; 3 finding(s) (1 error, 2 warning), "
        "3 hidden as noise, 1 suppressed"
    )


def test_clean_report_has_only_the_summary(cnn: Report):
    report = dataclasses.replace(cnn, findings=(), hidden_as_noise=0)
    (line,) = render(report).splitlines()
    assert line.startswith("::notice title=memlint::") and line.endswith("; 0 finding(s)")


def test_sample_decoder_one_line_per_finding_suppressed_ones_left_out():
    config = Config(suppress=(Suppression("ML105", "/transformer/h.*", "planned"),))
    report = lint(DECODER, dims=DECODER_DIMS, config=config)
    assert report.findings and report.suppressed
    text = render(report)
    assert text == render_format(report, "github") and text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == len(report.findings) + 1
    assert all(line.startswith(("::warning ", "::error ", "::notice ")) for line in lines)
    assert not any("ML105" in line for line in lines[:-1])
    # suppression comes before grouping: the 4 Concat nodes are 4 suppressed findings
    assert "4 suppressed" in lines[-1]


def test_cli_writes_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main([DECODER, *(f"--dim={k}={v}" for k, v in DECODER_DIMS.items()),
                 "--format", "github", "--fail-on", "never", "--isolated"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("::warning file=sample_models/gpt2_decoder_step.onnx,title=ML")
    assert out.splitlines()[-1].startswith("::notice title=memlint::")
