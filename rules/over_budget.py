"""ML903 over-budget: the model breaks a budget set for the deployment gate."""

from __future__ import annotations

from collections.abc import Iterator

from memlint import units
from memlint.analysis.structure import DimRole, detect
from memlint.findings import Finding, Metric, Severity
from memlint.rulebase import Example, Option, Rule, RuleContext

_GEMV = (
    'g (float16["batch",8192] x) => (float16["batch",8192] y) <float16[8192,8192] w> '
    "{ y = MatMul(x, w) }"
)


class OverBudget(Rule):
    """The model breaks a budget: predicted latency, memory-bound share, bytes per token, coverage.

    ## What it does
    Compares the whole model with the budgets a deployment gate sets: `max-latency-s` (predicted
    latency), `max-memory-bound-share` (share of predicted time in memory-bound operators),
    `max-bytes-per-token` (bytes moved per token a step processes: batch x new tokens of a
    decoder, found from its KV-cache structure) and `min-coverage` (share of nodes the cost model
    counts). Every budget is off until set; each one broken is a finding of its own.

    ## Why is this bad?
    A model that passes its rules can still miss the latency its service promises, or spend most
    of its time waiting on memory. A budget turns that target into a gate that fails in CI
    instead of in production.

    ## How to fix
    Apply the other findings' fixes (they say how much each saves), or change the scenario the
    budget is for (batch, context, device). Set budgets in `[tool.memlint.rules.ML903]` or with
    `--budget latency=5ms --budget memory-bound=80% --budget bytes-per-token=2GB
    --budget coverage=99%`.

    ## Known limits
    The bytes-per-token budget applies to decoders with a KV cache only (elsewhere a token has no
    clear meaning) and is skipped, with a note, on other models.
    """

    code = "ML903"
    name = "over-budget"
    severity = Severity.ERROR
    op_types = None
    options = {
        "max-latency-s": Option(0.0, "Largest predicted latency in seconds (0: no budget)."),
        "max-memory-bound-share": Option(1.0, "Largest share of predicted time that is memory-bound."),
        "max-bytes-per-token": Option(0.0, "Largest bytes moved per token of a decoder step (0: none)."),
        "min-coverage": Option(0.0, "Smallest share of nodes the cost model counts (0 to 1)."),
    }
    fix = "Apply the findings' fixes, or relax the budget for this scenario on purpose."
    bad = Example(_GEMV, dims={"batch": 1}, options={"max-memory-bound-share": 0.5})
    good = Example(_GEMV, dims={"batch": 1}, options={"max-latency-s": 1.0})

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        results = ctx.results
        work = ctx.total_latency_s  # the operators' time; with launch costs, the total has more
        total = ctx.predicted_latency_s
        memory_s = sum(r.timing.predicted_latency_s for r in results if r.timing.bound.value == "memory")
        share = min(memory_s / work, 1.0) if work else 0.0
        modelled = sum(1 for r in results if r.cost.is_modelled)
        coverage = modelled / len(results) if results else 1.0
        moved = sum(r.cost.bytes_moved for r in results)
        opts = ctx.options
        checks = [
            ("latency", opts["max-latency-s"] > 0 and total > opts["max-latency-s"],
             f"predicted latency {units.seconds(total)} > budget {units.seconds(opts['max-latency-s'])}",
             [Metric("predicted_latency_s", total, "s"), Metric("budget_s", opts["max-latency-s"], "s")]),
            ("memory-bound share", share > opts["max-memory-bound-share"],
             f"{units.percent(share)} of predicted time is memory-bound > budget "
             f"{units.percent(opts['max-memory-bound-share'])}",
             [Metric("memory_bound_share", share, "fraction"),
              Metric("budget", opts["max-memory-bound-share"], "fraction")]),
            ("coverage", coverage < opts["min-coverage"],
             f"the cost model counts {units.percent(coverage)} of the nodes < budget "
             f"{units.percent(opts['min-coverage'])}",
             [Metric("coverage", coverage, "fraction"), Metric("budget", opts["min-coverage"], "fraction")]),
        ]
        if opts["max-bytes-per-token"] > 0:
            tokens = _tokens_per_step(ctx)
            if tokens:
                per_token = moved / tokens
                checks.append((
                    "bytes per token", per_token > opts["max-bytes-per-token"],
                    f"{units.nbytes(per_token)} moved per token ({units.nbytes(moved)} for "
                    f"{tokens:,} tokens) > budget {units.nbytes(opts['max-bytes-per-token'])}",
                    [Metric("bytes_per_token", per_token, "B"),
                     Metric("budget", opts["max-bytes-per-token"], "B")],
                ))
        for _, broken, message, evidence in checks:
            if broken:
                yield self.finding(ctx, message, evidence=evidence)


def _tokens_per_step(ctx: RuleContext) -> int | None:
    """batch x new tokens of a decoder step (None for a model without a KV cache)."""
    structure = ctx.shared("llm.structure", lambda: detect(ctx.model, use_config=False))
    if not structure.has_kv_cache:
        return None
    values = {d.name: d.value for d in ctx.model.dims}

    def value(role: DimRole) -> int | None:
        names = structure.dims_of(role)
        if names and names[0] in values:
            return values[names[0]]
        pinned = structure.pinned.get(role)
        return pinned.value if pinned is not None else None

    batch, new = value(DimRole.BATCH), value(DimRole.NEW_TOKENS)
    return batch * new if batch and new else None
