"""The CI gate end to end, in a scratch git repository: a model that gains an unfused chain fails
with exit 1 naming the new finding; a baseline keeps old findings from failing; `memlint diff`
shows the latency regression; a corrupt model is exit 2 with one line; `pytest --memlint` fails
on the bad model and passes on the good one. The CLI runs as the real console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from memlint.frontends.onnx_text import parse_example

pytest_plugins = ["pytester"]

_SCRIPT = Path(sys.executable).with_name("memlint")
MEMLINT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "memlint.cli"]

# v1: a batch-1 GEMV over a 4096x4096 fp32 weight (ML101 and ML106 fire: the "old" findings)
# and a fused Gelu on a [8, 512, 3072] activation.
V1 = """
g (float[1,4096] x, float[8,512,3072] h) => (float[1,4096] y, float[8,512,3072] z)
  <float[4096,4096] w> {
  y = MatMul(x, w)
  z = Gelu(h)
}
"""
# v2: the same, but the GELU decomposed into five element-wise kernels (ML102 is new).
V2 = """
g (float[1,4096] x, float[8,512,3072] h) => (float[1,4096] y, float[8,512,3072] z)
  <float[4096,4096] w, float s = {1.4142135}, float one = {1.0}, float half = {0.5}> {
  y = MatMul(x, w)
  d = Div(h, s)
  e = Erf(d)
  p = Add(e, one)
  m = Mul(h, p)
  z = Mul(m, half)
}
"""
HEADER = '<ir_version: 9, opset_import: ["" : 20]>\n'


def write_model(path: Path, text: str) -> Path:
    onnx.save(parse_example(HEADER + text), path)
    return path


def memlint(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([*MEMLINT, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "models").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "scratch"\nversion = "0"\n\n'
        '[tool.memlint]\nhw = "a100"\nmodels = ["models/*.onnx"]\n'
    )
    return tmp_path


def test_new_unfused_chain_fails_and_the_baseline_keeps_old_findings(repo: Path):
    model = write_model(repo / "models" / "model.onnx", V1)
    first = memlint(model, cwd=repo)
    assert first.returncode == 1, first.stderr  # ML101 / ML106 on the GEMV: warnings
    assert "ML101" in first.stdout and "ML102" not in first.stdout

    recorded = memlint(model, "--write-baseline", "memlint-baseline.json", cwd=repo)
    assert recorded.returncode == 0, recorded.stderr
    assert memlint(model, "--baseline", "memlint-baseline.json", cwd=repo).returncode == 0

    write_model(model, V2)  # the next export decomposes the GELU
    gated = memlint(model, "--baseline", "memlint-baseline.json", "--format", "json", cwd=repo)
    assert gated.returncode == 1, gated.stderr
    report = json.loads(gated.stdout)
    assert [f["code"] for f in report["findings"]] == ["ML102"]  # only the new one counts
    assert "decomposed GELU (erf)" in report["findings"][0]["message"]
    assert {f["code"] for f in report["baseline"]["known"]} >= {"ML101"}
    # The chain's extra time shrinks the weights' share of the total below ML106's threshold:
    # that finding is reported as fixed, which is what the numbers say.
    assert {e["code"] for e in report["baseline"]["fixed"]} <= {"ML106"}


def test_a_baseline_written_for_a_folder_passes_on_that_folder(repo: Path):
    write_model(repo / "models" / "a.onnx", V1)
    write_model(repo / "models" / "b.onnx", V2)
    written = memlint("models", "--write-baseline", "bl.json", cwd=repo)
    assert written.returncode == 0, written.stderr
    rows = json.loads((repo / "bl.json").read_text())["entries"]
    assert {r["model"] for r in rows} == {"a.onnx", "b.onnx"}
    assert {r["code"] for r in rows} >= {"ML101", "ML102"}  # codes where codes belong
    gated = memlint("models", "--baseline", "bl.json", cwd=repo)
    assert gated.returncode == 0, gated.stdout + gated.stderr


def test_baseline_reports_fixed_findings(repo: Path):
    model = write_model(repo / "models" / "model.onnx", V2)
    memlint(model, "--write-baseline", "b.json", cwd=repo)
    write_model(model, V1)  # the chain is fused again
    result = memlint(model, "--baseline", "b.json", "--format", "json", cwd=repo)
    fixed = json.loads(result.stdout)["baseline"]["fixed"]
    assert {e["code"] for e in fixed} == {"ML102"}
    assert {e["node"] for e in fixed} == {"Div_1", "Erf_2", "Add_3", "Mul_4", "Mul_5"}


def test_diff_shows_the_latency_regression(repo: Path):
    old = write_model(repo / "models" / "v1.onnx", V1)
    new = write_model(repo / "models" / "v2.onnx", V2)
    result = memlint("diff", old, new, "--max-regression", "latency=5%", cwd=repo)
    assert result.returncode == 1, result.stderr
    # Gelu on [8,512,3072] fp32 moves 2 x 50.3 MB; the five kernels as written move 13 x 50.3 MB
    # (each binary op reads its input and writes its output; the scalars are bytes): latency grows.
    assert "predicted latency" in result.stdout and "FAIL (max +5%)" in result.stdout
    assert "new ML102" in result.stdout or "new  ML102" in result.stdout
    report = json.loads(memlint("diff", old, new, "--format", "json", cwd=repo).stdout)
    latency = next(m for m in report["metrics"] if m["metric"] == "latency")
    assert latency["relative"] > 1.0
    markdown = memlint("diff", old, new, "--format", "markdown", cwd=repo).stdout
    assert "| predicted latency |" in markdown


def test_a_corrupt_model_is_exit_2_with_one_line(repo: Path):
    (repo / "models" / "broken.onnx").write_bytes(b"\x08\x07not a protobuf at all")
    result = memlint(repo / "models" / "broken.onnx", cwd=repo)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not a readable ONNX model" in result.stderr or "not an ONNX model" in result.stderr


def test_many_models_one_broken_fails_alone(repo: Path):
    write_model(repo / "models" / "good.onnx", V1)
    (repo / "models" / "broken.onnx").write_bytes(b"")
    result = memlint(repo / "models", "--fail-on", "never", "--format", "json", "-j", "2", cwd=repo)
    assert result.returncode == 2  # a tool error outranks findings
    combined = json.loads(result.stdout)
    assert [Path(r["model"]["source"]).name for r in combined["reports"]] == ["good.onnx"]
    assert [Path(e["model"]).name for e in combined["errors"]] == ["broken.onnx"]
    assert "broken.onnx" in result.stderr


def test_pytest_plugin_fails_the_bad_model_and_passes_the_good(pytester: pytest.Pytester):
    pytester.makepyprojecttoml(
        '[tool.memlint]\nhw = "a100"\nmodels = ["models/*.onnx"]\nselect = ["ML102"]\n'
    )
    models = pytester.mkdir("models")
    write_model(models / "good.onnx", V1)
    write_model(models / "bad.onnx", V2)
    result = pytester.runpytest_subprocess("--memlint")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*memlint*bad.onnx*", "*ML102*unfused-elementwise-chain*"])
    # without --memlint the plugin is inert: nothing is collected
    quiet = pytester.runpytest_subprocess()
    assert quiet.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_testing_helper(tmp_path: Path):
    from memlint.testing import assert_memory_clean

    good = write_model(tmp_path / "good.onnx", V1)
    bad = write_model(tmp_path / "bad.onnx", V2)
    report = assert_memory_clean(good, select=("ML102",))
    assert report.findings == ()
    with pytest.raises(AssertionError, match="ML102 warning unfused-elementwise-chain"):
        assert_memory_clean(bad, select=("ML102",))
