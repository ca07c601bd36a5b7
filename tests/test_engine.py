"""The rule engine: validation at class definition, selection, options, severity overrides,
suppressions, grouping of identical layers, noise control, and crashes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memlint.api import analyse
from memlint.config import Config, Suppression
from memlint.engine import RuleError, RuleSet, load_rules, run, selected
from memlint.errors import ConfigError
from memlint.findings import Finding, Fix, Severity
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.rulebase import Example, Option, Rule, RuleContext

DOC = """Flags every Relu.

    ## What it does
    Flags Relu.

    ## Why is this bad?
    Test only.

    ## How to fix
    Nothing.

    ## Known limits
    None.
    """

# Three identical "layers" and one small Relu; each Relu on [1024, 1024] fp32 moves 8 MiB.
GRAPH = """
g (float[1024,1024] x, float[16] small) => (float[1024,1024] y, float[16] z) {
  l0 = Relu(x)
  l1 = Relu(l0)
  y = Relu(l1)
  z = Relu(small)
}
"""


class ReluRule(Rule):
    __doc__ = DOC
    code = "TT001"
    name = "every-relu"
    op_types = frozenset({"Relu"})
    options = {"skip-small": Option(False, "Skip tensors under 1 MB.")}
    fix = "Remove the Relu."
    bad = Example("g (float[4] x) => (float[4] y) { y = Relu(x) }")
    good = Example("g (float[4] x) => (float[4] y) { y = Abs(x) }")

    def check(self, ctx: RuleContext, node) -> Iterator[Finding]:
        result = ctx.result(node.name)
        if ctx.options["skip-small"] and result.cost.bytes_moved < 1e6:
            return
        time_s = result.timing.predicted_latency_s
        shape = ctx.value(node.outputs[0]).shape
        yield self.finding(
            ctx, f"Relu {shape}", nodes=[node.name], time_s=time_s,
            fixes=[Fix(self.fix, time_s)], signature=f"Relu {shape}",
        )


class CrashingRule(ReluRule):
    __doc__ = DOC
    code = "TT002"
    name = "crashing-rule"

    def check(self, ctx: RuleContext, node) -> Iterator[Finding]:
        raise ZeroDivisionError("boom")


@pytest.fixture(scope="module")
def ctx() -> RuleContext:
    report = analyse(load_example(Example(GRAPH)), resolve("a100"))
    return RuleContext(report.model, report.hardware, report.nodes,
                       report.summary.predicted_latency_s)


def _ruleset(*classes) -> RuleSet:
    return RuleSet(rules={c.code: c() for c in classes}, origin={c.code: "test" for c in classes})


def test_identical_layers_group_and_small_ones_are_noise(ctx):
    # Relu_0, Relu_1, Relu_2 (the names differ only in digits, same signature) -> one finding;
    # the [16] Relu takes 128 B / 2.04e12 B/s = 63 ps of ~12 us: under 1% and 1 ms -> hidden.
    outcome = run(ctx, Config(), _ruleset(ReluRule))
    (finding,) = outcome.findings
    assert finding.count == 3
    assert finding.nodes == ("Relu_0", "Relu_1", "Relu_2")
    assert finding.group == "3 nodes: Relu_0 ... Relu_2"
    each = ctx.result("Relu_0").timing.predicted_latency_s
    assert each == pytest.approx(8 * 2**20 / ctx.spec.memory_bandwidth_bytes_per_s)
    assert finding.time_s == pytest.approx(3 * each)
    assert finding.saving_s == pytest.approx(3 * each)
    assert finding.share == pytest.approx(3 * each / ctx.total_latency_s)
    assert outcome.hidden_as_noise == 1


def test_thresholds_zero_show_everything(ctx):
    outcome = run(ctx, Config(min_share=0.0, min_saving_s=0.0), _ruleset(ReluRule))
    assert [f.count for f in outcome.findings] == [3, 1]
    assert outcome.hidden_as_noise == 0


def test_options_severity_and_unknown_option(ctx):
    config = Config(rule_options={"every-relu": {"skip-small": True}},
                    severity={"TT": Severity.ERROR}, min_share=0.0, min_saving_s=0.0)
    (finding,) = run(ctx, config, _ruleset(ReluRule)).findings
    assert finding.severity is Severity.ERROR
    with pytest.raises(ConfigError, match="has no option 'skip-tiny'"):
        run(ctx, Config(rule_options={"TT001": {"skip-tiny": True}}), _ruleset(ReluRule))
    with pytest.raises(ConfigError, match="expected true or false"):
        run(ctx, Config(rule_options={"TT001": {"skip-small": 3}}), _ruleset(ReluRule))
    with pytest.raises(ConfigError, match="unknown rule 'TT999'"):
        run(ctx, Config(rule_options={"TT999": {}}), _ruleset(ReluRule))


def test_suppressions_hide_and_unused_ones_are_reported(ctx):
    config = Config(suppress=(
        Suppression("TT001", "Relu_[0-2]", "fused at deploy"),
        Suppression("TT0", "/never/*", "stale"),
    ))
    outcome = run(ctx, config, _ruleset(ReluRule))
    assert outcome.findings == ()
    assert [s.finding.nodes for s in outcome.suppressed] == [("Relu_0",), ("Relu_1",), ("Relu_2",)]
    assert {s.reason for s in outcome.suppressed} == {"fused at deploy"}
    assert [s.reason for s in outcome.unused_suppressions] == ["stale"]


def test_select_and_ignore_longest_match_wins():
    ruleset = _ruleset(ReluRule, CrashingRule)
    codes = lambda c: [r.code for r in selected(ruleset, c)]  # noqa: E731
    assert codes(Config()) == ["TT001", "TT002"]
    assert codes(Config(ignore=("TT002",))) == ["TT001"]
    assert codes(Config(select=("TT002",), ignore=("TT",))) == ["TT002"]
    with pytest.raises(ConfigError, match="'XX1' matches no rule"):
        selected(ruleset, Config(select=("XX1",)))


def test_a_crashing_rule_names_rule_and_node(ctx):
    with pytest.raises(RuleError, match=r"rule TT002 \(crashing-rule\) crashed on node 'Relu_0' "
                                        r"\(Relu\): ZeroDivisionError: boom"):
        run(ctx, Config(), _ruleset(CrashingRule))


@pytest.mark.parametrize(
    ("attrs", "problem"),
    [
        ({"code": "X1"}, "code 'X1' must be"),
        ({"name": "Bad_Name"}, "must be kebab-case"),
        ({"__doc__": "Only a summary."}, "lacks the section"),
        ({"fix": ""}, "needs a `fix` text"),
        ({"bad": "g () => () {}"}, "needs a `bad` Example"),
        ({"options": {"x": 1}}, "options must map"),
        ({"op_types": None}, r"graph-scope rule defines check\(self, ctx\)"),
    ],
)
def test_rule_classes_are_validated_when_defined(attrs, problem):
    body = {"__doc__": DOC, "code": "TT009", "name": "fine-name", **attrs}
    with pytest.raises(TypeError, match=problem):
        type("Broken", (ReluRule,), body)


def test_builtin_rules_are_registered_with_docs():
    ruleset = load_rules()
    assert all(code.startswith("ML") for code, origin in ruleset.origin.items()
               if origin == "memlint")
    for rule in ruleset.rules.values():
        assert rule.summary and rule.doc_sections()["How to fix"]
