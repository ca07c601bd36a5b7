"""ML902 assumed-dims: symbolic dims that nobody bound, so memlint assumed a value."""

from __future__ import annotations

from collections.abc import Iterator

from memlint.findings import Finding, Fix, Metric, Severity
from memlint.rulebase import Example, Rule, RuleContext


class AssumedDims(Rule):
    """Symbolic dims were not bound, so the numbers hold for an assumed size only.

    ## What it does
    Lists the symbolic dims (batch size, sequence length, past length, ...) of the model's inputs
    that were neither given with `--dim` / `--input-shape` nor in the config, and the value
    memlint assumed for each: 1, or for a decoder with a KV cache linted at its default LLM
    scenario the scenario's default, named (`past_sequence_length=1023 (LLM default context)`:
    the batch, the context, the decode step's one new token).

    ## Why is this bad?
    Whether an operator is memory-bound depends on these sizes: a projection is a GEMV at batch 1
    and a compute-bound GEMM at batch 256. Findings computed for a size nobody chose may not
    describe the deployment at all.

    ## How to fix
    Bind each dim to the size you deploy with, e.g. `--dim batch_size=8 --dim
    sequence_length=1 --dim past_sequence_length=2047`, or set `dims` in `[tool.memlint]`; for
    an LLM's defaults, `--batch`, `--context` and `--phase` do the same. `--strict-dims` makes
    any assumed dim, an LLM default included, exit 2.

    ## Known limits
    Dims of intermediate tensors that inference could not express in the inputs' dims are not
    listed here; see ML901 for tensors that stayed unresolved.
    """

    code = "ML902"
    name = "assumed-dims"
    severity = Severity.INFO
    op_types = None
    fix = "Bind each symbolic dim with --dim NAME=VALUE (or `dims` in [tool.memlint])."
    bad = Example('g (float["batch",1024] x) => (float["batch",1024] y) { y = Relu(x) }')
    good = Example(
        'g (float["batch",1024] x) => (float["batch",1024] y) { y = Relu(x) }',
        dims={"batch": 8},
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assumed = [d for d in ctx.model.dims if d.assumed]
        if not assumed:
            return
        listing = ", ".join(f"{d.name}={d.value}" + (f" ({d.source})" if d.source else "")
                            for d in assumed)
        flags = " ".join(f"--dim {d.name}=N" for d in assumed)
        defaults = [d for d in assumed if d.source]  # an LLM scenario's defaults
        scenario = " (or the scenario flags --batch, --context, --phase)" if defaults else ""
        flags = f"Bind them with --dim{scenario}: {flags}"
        yield self.finding(
            ctx,
            f"{len(assumed)} symbolic dim(s) not bound, assumed {listing}",
            evidence=[Metric("assumed_dims", len(assumed)),
                      *([Metric("llm_default_dims", len(defaults))] if defaults else [])],
            fixes=[Fix(flags)],
        )
