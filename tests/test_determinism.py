"""Two runs of the command line write byte-identical reports.

tests/test_golden.py compares each format with a stored file inside one process; here the real
command line runs twice per format in separate processes with different hash seeds (set and
dict-of-set iteration order changes with PYTHONHASHSEED) and locales, and the files must match
byte for byte: no timestamps, no absolute temporary paths, no ordering left to chance.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memlint.report import FORMATS as REGISTRY

REPO = Path(__file__).resolve().parent.parent
MODEL = "sample_models/gpt2_decoder_step.onnx"  # a decoder: the LLM sections are printed too
DIMS = ("--dim", "batch_size=1", "--dim", "sequence_length=1", "--dim", "past_sequence_length=128")
# the formats that are whole documents (text and github annotations are covered by goldens)
FORMATS = {name: REGISTRY[name].suffix for name in ("json", "sarif", "markdown", "html")}
RUNS = ({"PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"}, {"PYTHONHASHSEED": "4242", "LC_ALL": "C"})
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """Every format written by two runs (all eight processes at once, to keep it quick)."""
    folder = tmp_path_factory.mktemp("determinism")
    jobs = []
    for run, env in enumerate(RUNS):
        for fmt, suffix in FORMATS.items():
            target = folder / f"run{run}.{suffix}"
            command = [sys.executable, "-m", "memlint.cli", MODEL, *DIMS, "--isolated",
                       "--fail-on", "never", "--format", fmt, "-o", str(target)]
            process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env},
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            jobs.append((fmt, target, process))
    written: dict[str, list[bytes]] = {fmt: [] for fmt in FORMATS}
    for fmt, target, process in jobs:
        _, stderr = process.communicate(timeout=TIMEOUT_S)
        assert process.returncode == 0, stderr
        written[fmt].append(target.read_bytes())
    return written


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_two_runs_write_identical_reports(outputs: dict[str, list[bytes]], fmt: str) -> None:
    first, second = outputs[fmt]
    assert first, f"{fmt}: empty report"
    if first != second:
        at = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
        pytest.fail(f"{fmt}: the runs differ from byte {at}: {first[at - 60:at + 60]!r} vs "
                    f"{second[at - 60:at + 60]!r}")


def test_reports_hold_no_temporary_paths(outputs: dict[str, list[bytes]]) -> None:
    """What the reports name is the model as given, relative to the working directory."""
    for fmt, (report, _) in outputs.items():
        assert b"/tmp/" not in report and str(REPO).encode() not in report, fmt
        assert b"gpt2" in report, fmt
