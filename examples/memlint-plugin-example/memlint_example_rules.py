"""An example memlint rule plugin: one rule, code prefix XM (ML is reserved for memlint)."""

from __future__ import annotations

from collections.abc import Iterator

from memlint import units
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.ir import DType
from memlint.rulebase import Example, Option, Rule, RuleContext


class Float64Arithmetic(Rule):
    """Operators compute in float64, which most accelerators run at a fraction of fp32 speed.

    ## What it does
    Flags every operator whose arithmetic runs in float64 and that takes at least `min-share` of
    the predicted time.

    ## Why is this bad?
    float64 doubles the bytes of every tensor it touches and, on most GPUs, runs at 1/2 to 1/64
    of the float32 rate. It usually comes from a NumPy default leaking into an export.

    ## How to fix
    Cast the model (or the offending constants) to float32 or lower before export.

    ## Known limits
    Only the compute dtype of each operator is checked, not integer or bool tensors.
    """

    code = "XM001"
    name = "float64-arithmetic"
    severity = Severity.WARNING
    op_types = None
    options = {"min-share": Option(0.0, "Ignore operators under this share of predicted time.")}
    fix = "Export in float32 (or lower): cast float64 constants and inputs before export."
    bad = Example("g (double[1024,1024] x) => (double[1024,1024] y) { y = Relu(x) }")
    good = Example("g (float[1024,1024] x) => (float[1024,1024] y) { y = Relu(x) }")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        for result in ctx.results:
            if result.cost.compute_dtype is not DType.FLOAT64:
                continue
            time_s = result.timing.predicted_latency_s
            if ctx.share(time_s) < ctx.options["min-share"]:
                continue
            # float32 halves every byte; the roofline re-times the halved traffic.
            halved = ctx.retime(_halved(result.cost))
            yield self.finding(
                ctx,
                f"{result.op_type} computes in float64: {units.seconds(time_s)} "
                f"({units.percent(ctx.share(time_s))} of predicted time)",
                nodes=[result.name],
                evidence=[Metric("predicted_latency", time_s, "s")],
                fixes=[Fix(self.fix, time_s - halved.predicted_latency_s)],
                time_s=time_s,
                signature=f"{result.op_type} float64",
            )


def _halved(cost):
    from dataclasses import replace

    from memlint.costs import ByteCounts

    def half(b: ByteCounts) -> ByteCounts:
        return ByteCounts(b.weights // 2, b.activations // 2, b.kv_cache // 2)

    return replace(
        cost, bytes_read=half(cost.bytes_read), bytes_written=half(cost.bytes_written),
        compute_dtype=DType.FLOAT32,
    )
