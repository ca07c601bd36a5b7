"""ML903 over-budget: each budget broken is a finding; budgets are off until set."""

from __future__ import annotations

from pathlib import Path

import pytest

from memlint.api import analyse, check
from memlint.config import Config, parse_budget_flags
from memlint.errors import ConfigError
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.rulebase import Example
from memlint.runner import LintRequest, lint_model

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
# [1, 8192] x [8192, 8192] fp16 GEMV: reads W 134,217,728 B + x 16,384 B, writes 16,384 B =
# 134,250,496 B at 2.039e12 B/s on an A100 = 65.8 us, memory-bound (intensity ~1 FLOP/B).
GEMV = ('g (float16[1,8192] x) => (float16[1,8192] y) <float16[8192,8192] w> '
        "{ y = MatMul(x, w) }")


def _findings(**options):
    report = analyse(load_example(Example(GEMV)), resolve("a100"))
    config = Config(select=("ML903",), rule_options={"ML903": options})
    return check(report, config).findings


def test_budgets_are_off_until_set():
    assert _findings() == ()


def test_latency_and_memory_bound_budgets():
    latency, share = _findings(**{"max-latency-s": 50e-6, "max-memory-bound-share": 0.9})
    # the GEMV's bytes / bandwidth and the launch of its one kernel (2.4 us on a100)
    assert latency.metric("predicted_latency_s") == pytest.approx(134_250_496 / 2.039e12 + 2.4e-6)
    assert "> budget 50 us" in latency.message
    assert share.metric("memory_bound_share") == 1.0
    assert latency.time_s is None  # about the model as a whole: never hidden as noise
    assert _findings(**{"max-latency-s": 70e-6}) == ()


def test_bytes_per_token_on_a_decoder_step():
    # The sample decoder at batch 2 / one new token moves B bytes per step: 2 tokens.
    request = LintRequest(dims=("batch_size=2", "sequence_length=1", "past_sequence_length=64"),
                          isolated=True, select=("ML903",), budgets=("bytes-per-token=1kB",))
    report, _ = lint_model(SAMPLES / "gpt2_decoder_step.onnx", request)
    (finding,) = report.findings
    assert finding.metric("bytes_per_token") == pytest.approx(report.summary.bytes_moved / 2)
    assert "for 2 tokens" in finding.message


def test_budget_flags():
    assert parse_budget_flags(("latency=5ms", "memory-bound=80%", "bytes-per-token=2GB",
                               "coverage=0.99")) == {"ML903": {
        "max-latency-s": pytest.approx(0.005), "max-memory-bound-share": pytest.approx(0.8),
        "max-bytes-per-token": 2e9, "min-coverage": 0.99}}
    with pytest.raises(ConfigError, match="NAME one of latency"):
        parse_budget_flags(("speed=1",))
    with pytest.raises(ConfigError, match="is not a number"):
        parse_budget_flags(("latency=fastms",))
