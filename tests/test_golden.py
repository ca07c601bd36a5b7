"""Golden reports: every format of every sample model, compared byte for byte.

A change to a report shows up here as a diff. When it is intended, accept it with

    pytest --update-golden tests/test_golden.py

and review the changed files in tests/golden/ like any other code. The models are linted with
paths relative to the repository root (the test runs from there), so the files do not depend on
where the checkout lives; reports carry no timestamp by default, so nothing needs scrubbing.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from functools import lru_cache
from pathlib import Path

import pytest

from memlint.core.report import Report
from memlint.report import FORMATS as REGISTRY
from memlint.report import render
from memlint.runner import LintRequest, lint_model

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
ACCEPT = "run pytest --update-golden tests/test_golden.py to accept"
DIFF_LINES = 40
TOP = 15  # operators in the text table; the text format is 120 columns wide by default

# Sample model (under sample_models/) -> the dims it is linted at.
MODELS = {
    "gpt2_decoder_step": {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 128},
    "bert_encoder": {"batch_size": 2, "sequence_length": 128},
    "small_cnn": {},
}
# (format, golden file suffix) for every format of the registry: a new format gets its goldens
# with --update-golden. text and github both end .txt; github's goldens end .github.txt.
FORMATS = [(name, "github.txt" if name == "github" else f.suffix) for name, f in REGISTRY.items()]
CASES = [(model, fmt, suffix) for model in MODELS for fmt, suffix in FORMATS]


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def _lint(model: str) -> Report:
    """As the command line lints it (LLM sections included), with no config file."""
    flags = tuple(f"{k}={v}" for k, v in MODELS[model].items())
    report, _ = lint_model(Path(f"sample_models/{model}.onnx"), LintRequest(dims=flags, isolated=True))
    return report


@lru_cache(maxsize=None)
def _report(model: str) -> Report:
    """One lint per model for the whole module (the cwd is the repo root in every test)."""
    return _lint(model)


def _require(fmt: str) -> None:
    """Skip a format whose renderer module does not exist yet; a broken one fails."""
    module = REGISTRY[fmt].module
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"format {fmt!r}: {module} does not exist yet (no renderer to compare)")
    importlib.import_module(module)


def _render(report: Report, fmt: str) -> bytes:
    return render(report, fmt, top=TOP).encode("utf-8")


def _diff(expected: bytes, actual: bytes, name: str) -> str:
    lines = list(
        difflib.unified_diff(
            expected.decode("utf-8", "replace").splitlines(keepends=True),
            actual.decode("utf-8", "replace").splitlines(keepends=True),
            fromfile=f"tests/golden/{name}",
            tofile="rendered now",
            n=2,
        )
    )
    shown = "".join(lines[:DIFF_LINES])
    if len(lines) > DIFF_LINES:
        shown += f"... ({len(lines) - DIFF_LINES} more diff lines)\n"
    return shown


@pytest.mark.parametrize(("model", "fmt", "suffix"), CASES, ids=[f"{m}-{f}" for m, f, _ in CASES])
def test_report_matches_golden(model: str, fmt: str, suffix: str, request: pytest.FixtureRequest):
    _require(fmt)
    name = f"{model}.{suffix}"
    path = GOLDEN / name
    actual = _render(_report(model), fmt)
    if request.config.getoption("--update-golden"):
        GOLDEN.mkdir(exist_ok=True)
        if not path.exists() or path.read_bytes() != actual:
            path.write_bytes(actual)
        return
    if not path.exists():
        pytest.fail(f"no golden file tests/golden/{name}; {ACCEPT}", pytrace=False)
    expected = path.read_bytes()
    if actual != expected:
        pytest.fail(
            f"the {fmt} report of {model} differs from tests/golden/{name}:\n"
            f"{_diff(expected, actual, name)}{ACCEPT}",
            pytrace=False,
        )


@pytest.mark.parametrize("model", list(MODELS))
def test_renders_are_deterministic(model: str):
    """Two renders of one report, and the render of a second lint, are byte-identical."""
    first, second = _report(model), _lint(model)
    for fmt, _ in FORMATS:
        if importlib.util.find_spec(REGISTRY[fmt].module) is None:
            continue
        once = _render(first, fmt)
        assert _render(first, fmt) == once, f"{fmt}: two renders of one report differ"
        assert _render(second, fmt) == once, f"{fmt}: renders of two lints of {model} differ"


def test_no_stale_golden_files():
    """Every file in tests/golden/ belongs to a case (a renamed model or format leaves none)."""
    expected = {f"{model}.{suffix}" for model, _, suffix in CASES}
    present = {p.name for p in GOLDEN.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert not present - expected, f"golden files of no case: {sorted(present - expected)}"
