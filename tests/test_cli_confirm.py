"""--confirm and `memlint hw calibrate` through the real command line (CPU, onnxruntime)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from clitools import MEMLINT  # noqa: E402 - pytest puts tests/ on sys.path

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def memlint(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "MEMLINT_HARDWARE_DIR": str(tmp_path / "hw")}
    return subprocess.run([*MEMLINT, *args], capture_output=True, text=True, env=env, timeout=300)


def test_confirm_on_cpu_reports_predicted_and_measured(tmp_path: Path):
    result = memlint(str(SAMPLES / "small_cnn.onnx"), "--hw", "cpu", "--confirm", "--runs", "2",
                     "--dim", "batch_size=1", "--format", "json", "--fail-on", "never",
                     tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)["measurement"]
    assert measured["provider"] == "CPUExecutionProvider" and measured["runs"] == 2
    assert measured["unoptimised_latency_s"] > 0 and measured["optimised_latency_s"] > 0
    conv = [n for n in measured["nodes"] if n["op_type"] == "Conv"]
    assert conv and all(n["measured_s"] > 0 and n["predicted_s"] > 0 for n in conv)
    rank = measured["rank_correlation"]
    assert rank["min_share"] == 0.01 and rank["groups"] <= rank["nodes"] <= len(measured["nodes"])
    assert rank["rho"] is None or -1 <= rank["rho"] <= 1
    assert "measured on CPUExecutionProvider" in result.stderr


def test_confirm_text_report_states_error_and_rank_correlation(tmp_path: Path):
    result = memlint(str(SAMPLES / "bert_encoder.onnx"), "--hw", "cpu", "--confirm", "--runs", "2",
                     "--dim", "batch_size=1", "--dim", "sequence_length=16", "--fail-on", "never",
                     tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "prediction error" in result.stdout
    assert "rank correlation" in result.stdout and "(Spearman) over the" in result.stdout
    assert "small kernels" in result.stdout and "per-kernel overhead" in result.stdout


def test_confirming_a_gpu_prediction_on_the_cpu_is_refused(tmp_path: Path):
    result = memlint(str(SAMPLES / "small_cnn.onnx"), "--hw", "a100", "--confirm",
                     "--provider", "cpu", tmp_path=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "memlint: error:" in result.stderr


def test_calibrate_writes_a_spec_that_lints(tmp_path: Path):
    spec = tmp_path / "local.toml"
    made = memlint("hw", "calibrate", "--seconds", "1", "--device", "cpu", "-o", str(spec),
                   tmp_path=tmp_path)
    assert made.returncode == 0, made.stderr
    figures = {line.split()[1] for line in made.stderr.splitlines() if line.startswith("memlint:   ")}
    assert {"memory_bandwidth", "vector.float32", "kernel_overhead"} <= figures
    result = memlint(str(SAMPLES / "small_cnn.onnx"), "--hw", "local", "--hw-file", str(spec),
                     "--format", "json", "--fail-on", "never", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["hardware"]["name"] == "local"
    saved = memlint("hw", "calibrate", "--seconds", "1", "--device", "cpu", "--save",
                    tmp_path=tmp_path)
    assert saved.returncode == 0 and (tmp_path / "hw" / "local.toml").is_file()
    # saved specs are known to every run: --hw local with no --hw-file
    again = memlint(str(SAMPLES / "small_cnn.onnx"), "--hw", "local", "--fail-on", "never",
                    tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("fmt", ["sarif", "github"])
def test_code_scanning_formats_carry_the_measured_verdicts(tmp_path: Path, fmt: str):
    result = memlint(str(SAMPLES / "bert_encoder.onnx"), "--hw", "cpu", "--confirm", "--runs", "2",
                     "--dim", "batch_size=1", "--dim", "sequence_length=16", "--format", fmt,
                     "--fail-on", "never", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    if fmt == "sarif":
        run = json.loads(result.stdout)["runs"][0]
        measured = run["properties"]["measurement"]
        assert measured["runtime"].startswith("onnxruntime") and measured["total_error"] is not None
        results = run["results"]
        assert results and all("\nmeasured: " in r["message"]["text"] for r in results)
        assert all(r["properties"]["measured"]["verdict"] in ("confirmed", "not confirmed",
                                                               "not measured") for r in results)
    else:
        annotations = [line for line in result.stdout.splitlines() if "title=ML" in line]
        assert annotations and all("%0Ameasured: " in line for line in annotations)
        assert "as written with onnxruntime" in result.stdout.splitlines()[-1]
