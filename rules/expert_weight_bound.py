"""ML109 expert-weight-bound-decode: a mixture of experts' step spends its time reading expert
weights."""

from __future__ import annotations

import re
from collections.abc import Iterator

from memlint import units
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.ir import ValueKind
from memlint.roofline import Bound
from memlint.rulebase import Example, Option, Rule, RuleContext

# Expert weights as transformers names them (model.layers.N.mlp.experts.E.*, gpt-oss's stacked
# experts.gate_up_proj, Mixtral's block_sparse_moe.experts.E.w1), in torch captures and ONNX
# exports that keep parameter names
_EXPERT = re.compile(r"(^|[._/])experts([._/]|$)")

_MOE = """
g (float16[1,4096] x) => (float16[1,4096] y)
<float16[4096,14336] experts_0_w1, float16[14336,4096] experts_0_w2,
 float16[4096,14336] experts_1_w1, float16[14336,4096] experts_1_w2> {
    a = MatMul(x, experts_0_w1)
    b = MatMul(a, experts_0_w2)
    c = MatMul(x, experts_1_w1)
    d = MatMul(c, experts_1_w2)
    y = Add(b, d)
}
"""


class ExpertWeightBoundDecode(Rule):
    """A mixture of experts' step spends most of its time reading the weights of its experts.

    ## What it does
    Finds the nodes that read expert weights (tensors named `...experts...`, as transformers
    names them in torch captures and in exports that keep parameter names) and flags a step in
    which they take at least `min-share` (default 25%) of the predicted time while memory-bound.
    For a torch capture it reports the routing the step was captured at (memlint.frontends.fx_moe:
    a step of T tokens touches E(1 - (1 - k/E)^T) of E experts per layer on average).

    ## Why is this bad?
    A decode step at batch B reads every expert that one of its B tokens is routed to, but runs
    only k experts per token: each expert's weights are read for a handful of rows. Bytes per
    token fall slowly with the batch (the experts touched grow with it) until every expert is
    touched, so an MoE model stays weight-bound at batches where a dense model of the same active
    size would not.

    ## How to fix
    Quantize the experts (int4 or fp8 weight-only: x bits/16 of the expert bytes), batch more
    tokens per step (the bytes per token fall as E(1 - (1 - k/E)^T) / T), or spread the experts
    over devices with expert parallelism (each device reads 1/d of them, at the cost of an
    all-to-all exchange of tokens).

    ## Known limits
    Expert weights are recognised by name; an export that renamed them is not seen. The savings
    of expert parallelism are the weight reads only (the all-to-all is not counted); batching
    gives bytes per token, not a shorter step.
    """

    code = "ML109"
    name = "expert-weight-bound-decode"
    severity = Severity.WARNING
    op_types = None
    options = {
        "min-share": Option(0.25, "Flag when expert-weight reads take this share of the step."),
        "devices": Option(8, "Devices the expert-parallelism fix is estimated with."),
    }
    fix = "Quantize the experts, batch more tokens per step, or use expert parallelism."
    bad = Example(_MOE)
    good = Example(_MOE.replace("float16[1,4096] x", "float16[4096,4096] x")
                   .replace("float16[1,4096] y", "float16[4096,4096] y"))

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph = ctx.graph
        nodes: list[str] = []
        bits = 0
        experts = {name for name, v in graph.values.items()
                   if v.kind is ValueKind.WEIGHT and name and _EXPERT.search(name)}
        for node in graph.nodes if experts else ():
            if experts.isdisjoint(node.inputs):
                continue
            nodes.append(node.name)
            bits = max(bits, *(graph.values[name].dtype.bits for name in node.inputs
                               if name in experts))
        if not nodes:
            return
        results = [r for name in nodes if (r := ctx.result(name)) is not None]
        expert_bytes = sum(r.cost.bytes_read.weights for r in results)
        time_s = sum(r.timing.predicted_latency_s for r in results)
        memory_bound = [r for r in results if r.timing.bound is Bound.MEMORY]
        share = ctx.share(time_s)
        if share < ctx.options["min-share"] or len(memory_bound) * 2 < len(results):
            return
        routing = _routing(ctx)
        message = (
            f"expert weights: {units.nbytes(expert_bytes)} read by {len(nodes)} nodes, "
            f"{units.seconds(time_s)} of {units.seconds(ctx.total_latency_s)} predicted "
            f"({units.percent(share)}), memory-bound{routing}"
        )
        evidence = [
            Metric("expert_weight_bytes", expert_bytes, "B"),
            Metric("expert_time_s", time_s, "s"),
            Metric("expert_share", share, "fraction"),
        ]
        meta = ctx.model.metadata
        for key in ("experts", "top_k", "tokens", "run"):
            if f"moe.{key}" in meta:
                evidence.append(Metric(f"moe_{key}", int(meta[f"moe.{key}"])))
        yield self.finding(
            ctx, message, nodes=nodes, evidence=evidence, fixes=_fixes(ctx, time_s, bits),
            time_s=time_s,
        )


def _routing(ctx: RuleContext) -> str:
    meta = ctx.model.metadata
    if "moe.experts" not in meta:
        return ""
    return (f"; a step of {meta['moe.tokens']} token(s) runs {meta['moe.run']} of "
            f"{meta['moe.experts']} experts per layer (top-{meta['moe.top_k']}, expected under "
            "uniform routing)")


def _fixes(ctx: RuleContext, time_s: float, bits: int) -> list[Fix]:
    fixes = []
    if bits > 4:
        saving = time_s * (1 - 4 / bits)
        fixes.append(Fix(
            f"Quantize the experts to int4 weight-only (x4/{bits} of their bytes; fp8 for "
            f"x8/{bits}): saves about {units.seconds(saving)} per step.", saving))
    meta = ctx.model.metadata
    if "moe.experts" in meta:
        experts, k = int(meta["moe.experts"]), int(meta["moe.top_k"])
        tokens = int(meta["moe.tokens"])

        def touched(t: int) -> float:
            return experts * (1 - (1 - k / experts) ** t)

        factor = touched(4 * tokens) / (4 * touched(tokens))
        fixes.append(Fix(
            f"Batch 4x the tokens per step: the experts touched grow from {touched(tokens):.3g} "
            f"to {touched(4 * tokens):.3g} of {experts}, so expert bytes per token fall to "
            f"{units.percent(factor)}."))
    devices = int(ctx.options["devices"])
    saving = time_s * (1 - 1 / devices)
    fixes.append(Fix(
        f"Spread the experts over {devices} devices (expert parallelism): each reads 1/{devices} "
        f"of them, about {units.seconds(saving)} less per step before the all-to-all exchange.",
        saving))
    return fixes
