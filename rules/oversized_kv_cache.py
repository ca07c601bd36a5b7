"""ML104 oversized-kv-cache: the KV cache at the bound batch x context crowds out device memory."""

from __future__ import annotations

from collections.abc import Iterator

from memlint import units
from memlint.analysis.kv_cache import kv_cache, largest_batch
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.rulebase import Example, Option, Rule, RuleContext

_STEP = """
g (float16["batch",8,1,128] q, float16["batch",8,128,"past"] past_key,
   float16["batch",8,"past",128] past_value) => (float16["batch",8,1,128] y) {
    s = MatMul(q, past_key)
    p = Softmax(s)
    y = MatMul(p, past_value)
}
"""


class OversizedKvCache(Rule):
    """The KV cache at the bound batch x context takes most of the memory left after weights.

    ## What it does
    Sums the KV-cache inputs of a decoder step (`past_key_values.N.key/value`, ...) at the bound
    batch and past length, and flags when they exceed `max-fraction` (default 50%) of the device
    memory left after the weights and the activations live at the peak (memlint.analysis.liveness), or do
    not fit at all. It reports the KV bytes per token of one sequence (the sequence axis is the
    one whose declared dim name says past/sequence/length, else axis 2 of [batch, heads, seq,
    head_dim]) and the largest batch that fits at this context.

    ## Why is this bad?
    The KV cache grows with batch x context; once it fills the device, the server must lower the
    batch (less throughput, since decode is memory-bound and batching is what amortises the
    weight reads) or preempt sequences. A cache reserved for the full context per sequence wastes
    most of that memory on tokens never generated.

    ## How to fix
    Grouped-query or multi-query attention (KV bytes scale by kv_heads / heads), an fp8 or int8 KV
    cache (x 8 / bits), paged attention (vLLM) so a sequence holds only the tokens it has, or
    sliding-window attention (the cache is capped at the window).

    ## Known limits
    The largest batch assumes that what is live at the peak besides the weights (KV tensors,
    past and present, and activations) grows linearly with the batch, as ML108 counts it:
    `(capacity - weights) / ((KV live + activations live) / batch)`. This is a capacity finding, not a
    time finding: it carries no predicted time (time_s is None) and is never hidden as noise;
    ML101-style rules report the time spent reading the cache. Query heads are read from an
    attention op's attributes or from the Q @ K^T MatMul; the GQA fix needs a model trained (or
    uptrained) for it.
    """

    code = "ML104"
    name = "oversized-kv-cache"
    severity = Severity.WARNING
    op_types = None
    options = {
        "max-fraction": Option(
            0.5, "Flag a KV cache above this fraction of the memory left after weights."
        ),
        "window-tokens": Option(4096, "Window (tokens) the sliding-window fix is estimated with."),
    }
    fix = (
        "Shrink the KV cache: grouped-query attention, an fp8/int8 KV cache, paged attention "
        "(vLLM) or sliding-window attention."
    )
    bad = Example(_STEP, dims={"batch": 128, "past": 131072})
    good = Example(_STEP, dims={"batch": 1, "past": 4096})

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        kv = kv_cache(ctx)
        if kv is None or kv.nbytes == 0 or kv.batch == 0:
            return
        mem = ctx.memory
        capacity = ctx.spec.memory_capacity_bytes
        weights, activations = mem.weight_bytes, mem.peak_activation_bytes
        left = capacity - weights - activations
        max_fraction = ctx.options["max-fraction"]
        if left > 0 and kv.nbytes <= max_fraction * left:
            return

        def fitting(factor: float) -> int | None:  # with the KV cache scaled by `factor`
            live = mem.kv_cache_bytes * factor + activations
            return largest_batch(capacity - weights, live / kv.batch)

        largest = fitting(1.0)
        after = f"weights {units.nbytes(weights)} and live activations {units.nbytes(activations)}"
        if left <= 0:
            verdict = f"does not fit: {after} already exceed the {units.nbytes(capacity)} of"
        else:
            share = f"is {units.percent(kv.nbytes / left)} (> {units.percent(max_fraction)}) of"
            verdict = "does not fit in" if kv.nbytes > left else share
            verdict += f" the {units.nbytes(left)} left after {after} on"
        message = (
            f"KV cache {units.nbytes(kv.nbytes)} at batch {kv.batch} x {kv.context_tokens} tokens "
            f"({units.nbytes(kv.bytes_per_token)} per token per sequence) {verdict} "
            f"{ctx.spec.name}; largest batch at this context: {largest}"
        )
        evidence = [
            Metric("kv_cache_bytes", kv.nbytes, "B"),
            Metric("kv_bytes_per_token", kv.bytes_per_token, "B"),
            Metric("batch", kv.batch),
            Metric("context_tokens", kv.context_tokens),
            Metric("weight_bytes", weights, "B"),
            Metric("activation_bytes", activations, "B"),
            Metric("capacity_bytes", capacity, "B"),
            Metric("memory_left_bytes", left, "B"),
            Metric("kv_live_bytes", mem.kv_cache_bytes, "B"),
        ]
        if left > 0:
            evidence.append(Metric("kv_fraction_of_left", kv.nbytes / left, "fraction"))
        if largest is not None:
            evidence.append(Metric("largest_batch", largest))
        evidence += [Metric(k, v) for k, v in (("kv_heads", kv.kv_heads), ("heads", kv.heads)) if v]
        yield self.finding(
            ctx, message, evidence=evidence, fixes=_fixes(kv, ctx.options["window-tokens"], fitting)
        )


def _fixes(kv, window: int, fitting) -> list[Fix]:
    def outcome(factor: float) -> str:
        return f"KV cache {units.nbytes(kv.nbytes * factor)}, largest batch {fitting(factor)}"

    fixes = []
    if kv.kv_heads and kv.kv_heads > 1:
        target = 8 if kv.kv_heads > 8 else 1
        kind = "grouped-query attention with 8 KV heads" if target == 8 else (
            "multi-query attention (1 KV head)")
        of = f" for {kv.heads} query heads" if kv.heads else ""
        fixes.append(Fix(
            f"Use {kind} instead of {kv.kv_heads}{of} (a model trained or uptrained for it): "
            f"x{target}/{kv.kv_heads}, {outcome(target / kv.kv_heads)}."
        ))
    if kv.bits > 8:
        fixes.append(Fix(
            f"Store the KV cache in fp8 or int8 (vLLM --kv-cache-dtype fp8, TensorRT-LLM int8 KV "
            f"cache): x8/{kv.bits}, {outcome(8 / kv.bits)}."
        ))
    fixes.append(Fix(
        "Allocate the cache in pages (vLLM PagedAttention) so a sequence holds only the tokens it "
        "has, not the full context reserved up front."
    ))
    if 0 < window < kv.context_tokens:
        fixes.append(Fix(
            f"Sliding-window attention over {window} tokens (Mistral-style) caps the cache at "
            f"{window} tokens per sequence: {outcome(window / kv.context_tokens)}."
        ))
    return fixes
