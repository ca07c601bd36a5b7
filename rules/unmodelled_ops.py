"""ML901 unmodelled-ops: operators the cost model has no formula for, or could not size."""

from __future__ import annotations

from collections.abc import Iterator

from memlint import units
from memlint.costs import CostStatus
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.rulebase import Example, Rule, RuleContext


class UnmodelledOps(Rule):
    """Some operators have no cost formula or unknown tensor shapes, so totals are lower bounds.

    ## What it does
    Reports the operators whose FLOPs are unknown (no formula for the op: *unmodelled*) or whose
    tensor shapes could not be inferred (*unresolved*), with the bytes they move at least.

    ## Why is this bad?
    memlint never counts such an operator as zero, but its bytes are only a lower bound and its
    FLOPs are missing: predicted latency, memory-bound share and every saving are understated by
    an unknown amount. A custom op that dominates the model would go unnoticed.

    ## How to fix
    Bind every symbolic dim (`--dim NAME=VALUE`, `--input-shape`) so that shapes resolve; for a
    custom op, add a cost formula through a `memlint.costs` plugin or ask for one upstream.

    ## Known limits
    An op whose formula exists but whose semantics differ in a custom domain is counted by the
    formula of the domain it claims.
    """

    code = "ML901"
    name = "unmodelled-ops"
    severity = Severity.INFO
    op_types = None
    fix = "Bind the symbolic dims (--dim) and add cost formulas for custom ops."
    bad = Example(
        '<ir_version: 8, opset_import: ["" : 17, "custom.ops" : 1]>\n'
        'g (float[1,1024] x) => (float[1,1024] y) { y = custom.ops.MyOp(x) }'
    )
    good = Example('g (float[1,1024] x) => (float[1,1024] y) { y = Relu(x) }')

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        gaps = [r for r in ctx.results if not r.cost.is_modelled]
        if not gaps:
            return
        unmodelled = sorted({_op(r) for r in gaps if r.cost.status is CostStatus.UNMODELLED})
        unresolved = [r for r in gaps if r.cost.status is CostStatus.UNRESOLVED]
        lower_bound = sum(r.cost.bytes_moved for r in gaps)
        parts = []
        if unmodelled:
            parts.append(f"no cost formula for {', '.join(unmodelled)}")
        if unresolved:
            first = unresolved[0]
            parts.append(f"{len(unresolved)} node(s) with unresolved shapes, first "
                         f"{first.name!r}: {first.cost.note or 'shape unknown'}")
        message = (
            f"{len(gaps)} of {len(ctx.results)} nodes are not fully modelled "
            f"({'; '.join(parts)}); they move at least {units.nbytes(lower_bound)}, FLOPs unknown"
        )
        fixes = [Fix("Bind the symbolic dims (--dim NAME=VALUE) so every shape resolves.")] \
            if unresolved else []
        if unmodelled:
            fixes.append(Fix(
                f"Add a cost formula for {', '.join(unmodelled)} (a memlint.costs plugin)."
            ))
        yield self.finding(
            ctx,
            message,
            nodes=[r.name for r in gaps],
            evidence=[
                Metric("nodes_not_modelled", len(gaps)),
                Metric("nodes_total", len(ctx.results)),
                Metric("bytes_lower_bound", lower_bound, "B"),
            ],
            fixes=fixes,
        )


def _op(result) -> str:
    return f"{result.domain}::{result.op_type}" if result.domain else result.op_type
