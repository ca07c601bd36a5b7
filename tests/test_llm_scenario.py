"""memlint.llm.scenario and memlint.llm.session: flags and --dim bindings -> one step's dims;
defaults stated; every LLM flag on a model without a KV cache is an error, never a no-op."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from memlint.analysis.structure import detect
from memlint.api import lint_llm, load
from memlint.errors import MemlintError
from memlint.llm import LlmError
from memlint.llm.scenario import DEFAULT_CONTEXT, Phase, Scenario, resolve, scenario_dims
from memlint.llm.session import sections

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
GPT2 = SAMPLES / "gpt2_decoder_step.onnx"
BERT = SAMPLES / "bert_encoder.onnx"


@pytest.fixture(scope="module")
def gpt2():
    return detect(load(GPT2))


@pytest.fixture(scope="module")
def bert():
    return detect(load(BERT))


def test_default_is_a_decode_step_at_batch_1(gpt2):
    s = resolve(gpt2)
    # the sample has 256 positions: min(1024, 256 - 1) = 255 cached tokens, 1 new
    assert (s.phase, s.batch, s.new_tokens, s.context) == (Phase.DECODE, 1, 1, 255)
    assert s.origin == "default" and s.defaulted == ("context", "batch")
    assert s.describe() == (
        "decode step: batch 1, 1 new token after 255 cached tokens "
        "(default context 255 = min(1024, 256 positions - 1); default batch 1)"
    )
    assert scenario_dims(gpt2, s) == {
        "batch_size": 1, "sequence_length": 1, "past_sequence_length": 255
    }  # fmt: skip
    unknown = resolve(dataclasses.replace(gpt2, max_positions=None))
    assert unknown.context == DEFAULT_CONTEXT == 1024
    assert "the model's positions are unknown" in unknown.describe()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"phase": "prefill", "prompt": 64}, (Phase.PREFILL, 1, 64, 0)),
        ({"phase": "prefill", "prompt": 16, "context": 100}, (Phase.PREFILL, 1, 16, 100)),
        ({"batch": 8, "context": 100}, (Phase.DECODE, 8, 1, 100)),
        ({"prompt": 50}, (Phase.DECODE, 1, 1, 50)),  # the first step after a 50-token prompt
        ({"phase": Phase.DECODE, "context": 0}, (Phase.DECODE, 1, 1, 0)),
        ({"dims": {"batch_size": 4}}, (Phase.DECODE, 4, 1, 255)),
        ({"dims": {"batch_size": 2, "sequence_length": 16, "past_sequence_length": 0}},
         (Phase.PREFILL, 2, 16, 0)),
        ({"batch": 2, "dims": {"batch_size": 2}}, (Phase.DECODE, 2, 1, 255)),
    ],
)  # fmt: skip
def test_flags_and_dims(gpt2, flags, expected):
    s = resolve(gpt2, **flags)
    assert (s.phase, s.batch, s.new_tokens, s.context) == expected


def test_all_dims_bound_is_taken_as_is(gpt2):
    s = resolve(gpt2, dims={"batch_size": 3, "sequence_length": 1, "past_sequence_length": 7})
    assert s.origin == "dims" and not s.defaulted
    assert s.describe() == "decode step: batch 3, 1 new token after 7 cached tokens"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"context": 300}, re.escape("context 300 + 1 new tokens = 301 exceeds the model's 256 "
                                     "positions (from the graph's position table)")),
        ({"phase": "decode", "dims": {"sequence_length": 5}},
         r"--phase decode \(1 new token per step\) contradicts --dim sequence_length=5"),
        ({"batch": 3, "dims": {"batch_size": 4}}, "--batch 3 contradicts --dim batch_size=4"),
        ({"context": 3, "prompt": 4}, "--context and --prompt both set the tokens cached"),
        ({"batch": 0}, "--batch 0: must be a whole number >= 1"),
        ({"context": -1}, "--context -1: must be a whole number >= 0"),
        ({"phase": "train"}, "--phase 'train': expected prefill or decode"),
    ],
)  # fmt: skip
def test_contradictions_are_errors(gpt2, flags, message):
    with pytest.raises(LlmError, match=message):
        resolve(gpt2, **flags)


NO_KV_FLAGS = [
    ("lint", {"phase": "decode"}, "--phase"),
    ("lint", {"batch": 8}, "--batch"),
    ("lint", {"context": 128}, "--context"),
    ("lint", {"prompt": 128}, "--prompt"),
    ("sections", {"sweeps": ["batch=1,8"]}, "--sweep"),
    ("sections", {"generate_tokens": 16}, "--generate"),
]  # --kv-dtype applies to every model (a what-if that changes nothing without a cache)


@pytest.mark.parametrize(("where", "flags", "flag"), NO_KV_FLAGS, ids=[f[2] for f in NO_KV_FLAGS])
def test_every_scenario_flag_on_a_model_without_kv_cache_is_an_error(where, flags, flag):
    dims = {"batch_size": 1, "sequence_length": 32}
    with pytest.raises(MemlintError) as info:
        if where == "lint":
            lint_llm(BERT, dims=dims, **flags)
        else:
            sections(lint_llm(BERT, dims=dims), **flags)
    message = str(info.value)
    assert message.startswith(f"{flag}: bert_encoder.onnx has no KV-cache inputs"), message
    assert "bind its dims with --dim instead (its dims: batch_size, sequence_length)" in message
    assert "\n" not in message


def test_what_ifs_that_apply_without_kv_cache(bert):
    run = lint_llm(BERT, dims={"batch_size": 1, "sequence_length": 32})
    assert run.scenario is None and run.evaluator is None
    parts = sections(run, weights_dtype="int4")
    assert parts.serving is None and parts.precision.converted_after > 0
    with pytest.raises(LlmError, match="--tp 2: the model's layers could not be found"):
        sections(run, tp=2)


def test_lint_llm_lints_the_scenario(gpt2):
    run = lint_llm(GPT2, hw="a100", batch=4, context=32)
    assert run.report.dims == {"batch_size": 4, "sequence_length": 1, "past_sequence_length": 32}
    assert run.report.rules_run and not run.report.assumed_dims
    assert run.evaluator.report(run.scenario) is run.report  # reused, not reloaded
    assert run.evaluator.loads == 0
    plain = lint_llm(GPT2, hw="a100")  # no flags: the default decode step, stated
    assert plain.report.dims["past_sequence_length"] == 255 and plain.scenario.origin == "default"


def test_scenario_at_clears_defaults():
    base = Scenario(Phase.DECODE, 1, 1, 255, defaulted=("context", "batch"), origin="default")
    moved = base.at(batch=8)
    assert moved.defaulted == ("context",) and moved.batch == 8 and moved.origin == "flags"
    assert (moved.total_tokens, moved.tokens_per_step) == (256, 8)


# --- scenario defaults are assumptions: marked everywhere, refused by --strict-dims -----------


def test_scenario_defaults_are_marked_assumed_with_their_source():
    from memlint.api import lint

    report = lint(GPT2)  # no flag, no --dim: the default decode step
    assert report.dims == {"batch_size": 1, "past_sequence_length": 255, "sequence_length": 1}
    assert report.assumed_dims == ("batch_size", "past_sequence_length", "sequence_length")
    summary = report.to_dict()["summary"]
    assert summary["assumed_dims"] == ["batch_size", "past_sequence_length", "sequence_length"]
    assert summary["dim_sources"] == {
        "batch_size": "LLM default batch", "past_sequence_length": "LLM default context",
        "sequence_length": "LLM default decode step",
    }  # fmt: skip
    (ml902,) = [f for f in report.findings if f.code == "ML902"]
    assert "past_sequence_length=255 (LLM default context)" in ml902.message
    assert "--context" in ml902.fixes[0].text
    # what flags give is no assumption; the decode step's token follows from a given context
    given = lint(GPT2, scenario={"batch": 2, "context": 100})
    assert given.assumed_dims == () and "dim_sources" not in given.to_dict()["summary"]
    assert not [f for f in given.findings if f.code == "ML902"]
    # a prefill's prompt and its context, both defaults, with the total that follows them
    prefill = lint(GPT2, scenario={"phase": "prefill", "batch": 1})
    assert prefill.to_dict()["summary"]["dim_sources"] == {
        "sequence_length": "LLM default prompt"}


def test_strict_dims_refuses_scenario_defaults_in_one_line():
    import subprocess

    from clitools import MEMLINT

    def run(*args: str):
        return subprocess.run([*MEMLINT, str(GPT2), "--strict-dims", "--fail-on", "never", *args],
                              capture_output=True, text=True, check=False)

    refused = run()
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith(
        "memlint: error: --strict-dims: the LLM scenario would assume batch_size=1 (LLM default "
        "batch), past_sequence_length=255 (LLM default context), sequence_length=1 (LLM default "
        "decode step); set --batch B, --context C, --phase decode or --dim batch_size=N")
    partly = run("--batch", "4")
    assert partly.returncode == 2 and "batch_size" not in partly.stderr
    assert "--context C" in partly.stderr and "--batch B" not in partly.stderr
    assert run("--batch", "4", "--context", "100").returncode == 0
    dims = ("--dim", "batch_size=1", "--dim", "past_sequence_length=9", "--dim",
            "sequence_length=1")
    assert run(*dims).returncode == 0


def test_the_header_marks_scenario_defaults_assumed():
    from memlint.api import lint
    from memlint.report import render
    from memlint.report.text import render as render_text

    report = lint(GPT2)
    text = render_text(report, width=200)
    assert ("dims: batch_size=1 (assumed: LLM default batch), past_sequence_length=255 "
            "(assumed: LLM default context), sequence_length=1 (assumed: LLM default decode "
            "step)") in text
    assert "set to 1" not in text
    markdown = render(report, "markdown")
    assert "past\\_sequence\\_length=255 (assumed: LLM default context)" in markdown
    assert "Assumed LLM scenario defaults" in markdown
