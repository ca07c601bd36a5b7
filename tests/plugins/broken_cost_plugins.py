"""Entry-point targets for tests/test_cost_plugins.py: cost plugins (callables, so each test
registers afresh) that misbehave in each known way, and one that behaves."""

from __future__ import annotations

from memlint.costs import OpInfo, register, register_metadata

ELEMENTWISE = OpInfo("elementwise", elementwise=True)


def _two_per_element(ctx):
    return ctx.cost(2 * ctx.out_numel())


def onnx_domain_op() -> None:
    register("FusedScaleBias", info=ELEMENTWISE)(_two_per_element)


def microsoft_domain_op() -> None:
    register("FusedScaleBias", domain="com.microsoft", info=ELEMENTWISE)(_two_per_element)


def taken_op() -> None:  # the example plugin's op, registered a second time
    register("FusedScaleBias", domain="com.example", info=ELEMENTWISE)(_two_per_element)


def registers_nothing() -> None:
    pass


def crashes() -> None:
    raise ValueError("boom")


def bad_family() -> None:
    register("Thing", domain="com.test", info=OpInfo("tensor magic"))(_two_per_element)


NOT_CALLABLE = 42


def good() -> None:
    """A callable plugin: a formula and a view of its own domain."""
    register("Double", domain="com.test", info=ELEMENTWISE)(_two_per_element)
    register_metadata("Alias", domain="com.test", view=True)
