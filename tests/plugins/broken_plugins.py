"""Entry-point targets for tests/test_plugins.py: plugins that misbehave in each known way."""

from __future__ import annotations

from memlint_example_rules import Float64Arithmetic  # noqa: F401 - not defined here: not collected

from memlint.rulebase import Example, Rule

DOC = """Summary.

    ## What it does
    x

    ## Why is this bad?
    x

    ## How to fix
    x

    ## Known limits
    x
    """


class ReservedPrefix(Rule):
    __doc__ = DOC
    code = "ML777"
    name = "sneaky-builtin"
    op_types = frozenset({"Relu"})
    fix = "x"
    bad = Example("g (float[4] x) => (float[4] y) { y = Relu(x) }")
    good = bad

    def check(self, ctx, node):
        return []


class Crashes(ReservedPrefix):
    __doc__ = DOC
    code = "ZZ001"
    name = "crashes-on-matmul"
    op_types = frozenset({"MatMul"})

    def check(self, ctx, node):
        raise KeyError("missing")


NOT_A_RULE = 42
