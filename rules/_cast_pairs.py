"""Cast round trips (a->b, then back to a through fusible ops) for ML107."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from memlint.analysis.fusion import is_fusible, readers, source
from memlint.ir import Node
from memlint.rulebase import RuleContext

SEARCH_LIMIT = 16  # nodes visited looking for the other Cast of a round trip


def dtypes(ctx: RuleContext, node: Node) -> tuple[str, str]:
    i, o = ctx.value(node.inputs[0]), ctx.value(node.outputs[0])
    return (i.dtype.label if i else "?"), (o.dtype.label if o else "?")


@dataclass(frozen=True)
class RoundTrip:
    back: Node  # the Cast back to the first Cast's input dtype
    between: tuple[str, ...]  # op types run in the other precision, in the order visited


def partner(ctx: RuleContext, cast: Node) -> RoundTrip | None:
    """The Cast that converts back to cast's input dtype, reached through fusible ops."""
    a, b = dtypes(ctx, cast)
    seen: dict[str, str] = {}
    frontier = [cast.outputs[0]]
    while frontier and len(seen) < SEARCH_LIMIT:
        for r in readers(ctx, frontier.pop(0)):
            if r.name in seen:
                continue
            if r.op_type == "Cast":
                if dtypes(ctx, r) == (b, a):
                    return RoundTrip(r, tuple(seen.values()))
            elif is_fusible(r):
                frontier.extend(o for o in r.outputs if o)
            seen[r.name] = r.op_type
    return None


def casts_before(ctx: RuleContext, cast: Node) -> Iterator[Node]:
    """Casts among cast's ancestors reached through fusible ops (candidates for its partner)."""
    seen: set[str] = set()
    frontier = [cast.inputs[0]]
    while frontier and len(seen) < SEARCH_LIMIT:
        p = ctx.producer(source(ctx, frontier.pop(0)))
        if p is None or p.name in seen:
            continue
        seen.add(p.name)
        if p.op_type == "Cast":
            yield p
        elif is_fusible(p):
            frontier.extend(v for v in p.inputs if v)
