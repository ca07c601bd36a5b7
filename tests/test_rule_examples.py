"""Every registered rule's `bad` example must fire it and its `good` example must not."""

from __future__ import annotations

import pytest

from memlint.api import analyse, check
from memlint.config import Config
from memlint.engine import load_rules
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve

RULES = load_rules().rules


def _codes(rule, example) -> list[str]:
    report = analyse(load_example(example), resolve(example.hw))
    # Only this rule, and no noise threshold: the example is tiny on purpose.
    config = Config(select=(rule.code,), min_share=0.0, min_saving_s=0.0,
                    rule_options={rule.code: dict(example.options)})
    return [f.code for f in check(report, config).findings]


@pytest.mark.parametrize("code", sorted(RULES))
def test_bad_example_fires(code: str) -> None:
    rule = RULES[code]
    assert code in _codes(rule, rule.bad)


@pytest.mark.parametrize("code", sorted(RULES))
def test_good_example_is_quiet(code: str) -> None:
    rule = RULES[code]
    assert code not in _codes(rule, rule.good)
