"""ML106 wide-weights: reading float weights wider than needed dominates predicted time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from memlint import units
from memlint.analysis.artifact import Artifact, artifact
from memlint.errors import ConfigError
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.ir import DType
from memlint.roofline import Bound, NodeResult
from memlint.rulebase import Example, Option, Rule, RuleContext, with_weight_bytes

from ._products import QUANTIZABLE_OPS, weight_inputs

TARGET_BITS = {"fp16": 16, "bf16": 16, "int8": 8, "int4": 4}
# (step, bits): every float weight goes to at most 16 bits; products' weights to `bits`
_STEPS = (("fp16", 16), ("int8", 8), ("int4", 4))


def _step_fix(step: str, made: Artifact) -> str:
    """How to take `step`, with the tools of the artifact: torch's for a torch module,
    onnxruntime's for an ONNX graph; GPTQ/AWQ for an LLM decoder's int4."""
    if step == "fp16":
        how = ("model.half() / model.to(torch.bfloat16)" if made.is_torch else
               "onnxruntime.transformers.float16.convert_float_to_float16 (or "
               "onnxconverter_common.float16), keep_io_types=True")
        return f"Convert the weights to fp16/bf16: {how}"
    if made.is_torch:
        how = f"torchao quantize_(model, {step.capitalize()}WeightOnlyConfig())"
    elif step == "int8":
        how = ("onnxruntime matmul_nbits_quantizer (MatMulNBitsQuantizer, "
               "DefaultWeightOnlyQuantConfig(bits=8)) -> MatMulNBits")
    else:
        how = "onnxruntime matmul_nbits_quantizer (formerly matmul_4bits_quantizer) -> MatMulNBits"
    if step == "int4" and made.llm_decoder:
        how += ", or GPTQ/AWQ (auto-gptq, autoawq)"
    return f"Quantize matmul weights to {step} weight-only: {how}"


_EXAMPLE = (
    'g (float["batch",1024] x) => (float["batch",1024] y) <float[1024,1024] w> '
    "{ y = MatMul(x, w) }"
)


SIGNIFICANT = 0.01  # a dtype under 1% of the wide weights' read time does not set the steps


class WideWeights(Rule):
    """Reading float weights wider than needed takes most of the predicted time.

    ## What it does
    Splits the predicted time of every memory-bound node that reads weights by bytes moved:
    `time * weight bytes / bytes moved` is spent on weights (compute-bound nodes: 0), by dtype.
    Fires once per model when float weights wider than `target` (fp16, bf16, int8 or int4)
    take at least `min-weight-share` of predicted time, or fp32 (and wider) weights at least
    `min-weight-share-fp32`. It names the nodes reading those weights, and costs each step
    narrower than the widest (fp16, int8, int4) by re-timing every weight-reading node with its
    weight bytes scaled: float weights go to at most 16 bits, those of float matmuls and
    convolutions to the step's width.

    ## Why is this bad?
    When weight bytes set the time (decoding, small batches), every bit per weight is paid on
    every run: fp32 weights stream twice the bytes of fp16 and eight times those of int4.

    ## How to fix
    Convert the model to fp16/bf16 (an ONNX graph: onnxruntime.transformers float16,
    onnxconverter_common; a torch module: `model.half()`); then store matmul weights as int8 or
    int4 weight-only (onnxruntime's MatMulNBits quantizer, torchao for a torch module, GPTQ/AWQ
    for an LLM decoder) and check accuracy. The fixes are listed by saving, best first.

    ## Known limits
    Compute stays at the current peak: the fp16 step does not count the halved activations or
    the fp16 tensor peak (the real saving is larger), and a node that turns compute-bound saves
    nothing more from narrower steps. A node reading part of a weight (Gather, Slice) is taken
    to read its smaller weights (indices) whole and the rest from its largest. Weights read
    inside control-flow subgraphs are counted but not re-timed.
    """

    code = "ML106"
    name = "wide-weights"
    severity = Severity.WARNING
    op_types = None
    options = {
        "target": Option("int8", "float weights wider than this are wide: fp16, bf16, int8, int4"),
        "min-weight-share": Option(
            0.5, "fire when wide float weights take at least this share of predicted time"),
        "min-weight-share-fp32": Option(
            0.2, "fire when fp32 (or wider) weights take at least this share of predicted time"),
    }
    fix = "Convert the weights to fp16/bf16, then quantize matmul weights to int8/int4."
    bad = Example(_EXAMPLE, dims={"batch": 1})  # GEMV: weight bytes are the time
    good = Example(_EXAMPLE, dims={"batch": 512})  # compute-bound: weight bytes cost no time

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        target = ctx.options["target"]
        if target not in TARGET_BITS:
            raise ConfigError(f"rule {self.code} option target: expected one of "
                              f"{', '.join(TARGET_BITS)}, got {target!r}")
        readers = [r for r in ctx.results if r.cost.bytes_read.weights > 0]
        splits = {r.name: _bytes_by_input(ctx, r.name) for r in readers}  # each node once
        read_by_dtype: dict[DType, int] = defaultdict(int)
        time_by_dtype: dict[DType, float] = defaultdict(float)
        for result in readers:
            weights = result.cost.bytes_read.weights
            memory_bound = result.timing.bound is Bound.MEMORY
            weight_time = result.timing.predicted_latency_s * weights / result.cost.bytes_moved
            for dtype, nbytes in splits[result.name]:
                read_by_dtype[dtype] += nbytes
                time_by_dtype[dtype] += weight_time * nbytes / weights if memory_bound else 0.0
        wide = [d for d in time_by_dtype if d.is_float and d.bits > TARGET_BITS[target]]
        wide_share = ctx.share(sum(time_by_dtype[d] for d in wide))
        fp32_share = ctx.share(sum(time_by_dtype[d] for d in wide if d.bits >= 32))
        if not wide or not (wide_share >= ctx.options["min-weight-share"]
                or fp32_share >= ctx.options["min-weight-share-fp32"]):
            return
        # The widest dtype that matters: a few fp32 scalars (rotary frequencies, epsilons) in an
        # fp16 model must not make "convert to fp16" a fix worth nanoseconds.
        wide_time = sum(time_by_dtype[d] for d in wide)
        widest = max(d.bits for d in wide if time_by_dtype[d] >= SIGNIFICANT * wide_time)
        made = artifact(ctx)
        memo: dict[tuple, float] = {}  # nodes that share a cost and timing share a saving
        savings = [(step, _step_fix(step, made),
                    sum(_saving(ctx, r.name, bits, splits[r.name], memo) for r in readers))
                   for step, bits in _STEPS if bits < widest]
        weight_time = sum(time_by_dtype.values())
        concerned = sorted(  # the nodes that read the wide weights, the heaviest readers first
            (r for r in readers if any(d in wide and n for d, n in splits[r.name])),
            key=lambda r: (-r.cost.bytes_read.weights, r.name),
        )
        time_s = sum(r.timing.predicted_latency_s for r in concerned)
        by_dtype = sorted(read_by_dtype.items(), key=lambda item: -item[1])
        message = (
            f"weights read per run: "
            f"{', '.join(f'{units.nbytes(b)} {d.label}' for d, b in by_dtype)}; reading them "
            f"takes {units.seconds(weight_time)} of {units.seconds(ctx.total_latency_s)} "
            f"predicted ({units.percent(ctx.share(weight_time))}); "
            + ", ".join(f"{step} saves {units.seconds(s)}" for step, _, s in savings)
        )
        evidence = [Metric(f"weight_bytes_{d.label}", b, "B") for d, b in by_dtype]
        evidence += [
            Metric("weight_time_s", weight_time, "s"),
            Metric("weight_time_share", ctx.share(weight_time), "fraction"),
            Metric("wide_weight_time_share", wide_share, "fraction"),
            Metric("fp32_weight_time_share", fp32_share, "fraction"),
        ]
        evidence += [Metric(f"saving_{step}_s", s, "s") for step, _, s in savings]
        yield self.finding(ctx, message, nodes=[r.name for r in concerned], evidence=evidence,
                           fixes=sorted((Fix(text, s) for _, text, s in savings),
                                        key=lambda fix: -fix.saving_s),  # best first
                           time_s=time_s)


def _bytes_by_input(ctx: RuleContext, name: str) -> list[tuple[DType, int]]:
    """The weight bytes a node reads, by the tensor they come from: the smaller weights (indices,
    scalars, starts/ends) are read whole, the largest (a gathered table) supplies the rest."""
    read = ctx.result(name).cost.bytes_read.weights
    values = sorted(weight_inputs(ctx, ctx.node(name)), key=lambda v: v.nbytes or 0)
    if not values:
        return [(DType.UNKNOWN, read)]  # weights read inside a control-flow subgraph
    split = []
    for value in values[:-1]:
        take = min(value.nbytes or 0, read)
        split.append((value.dtype, take))
        read -= take
    return [*split, (values[-1].dtype, read)]


def _saving(ctx: RuleContext, name: str, bits: int, split: list[tuple[DType, int]],
            memo: dict[tuple, float] | None = None) -> float:
    """Time saved on one node by storing its float weights at `bits` (at most 16 bits for the
    weights of ops that weight-only quantization does not cover); `split` is the node's
    _bytes_by_input. `memo` (one check's): the saving by (cost, timing, cap, split), the same
    float for every node that shares them (costs by signature: memlint.core.report)."""
    node, result = ctx.node(name), ctx.result(name)
    if result.cost.parts:
        return 0.0
    cap = bits if node.qualified_op in QUANTIZABLE_OPS else max(bits, 16)
    if memo is not None:
        key = (id(result.cost), id(result.timing), cap, tuple(split))
        found = memo.get(key)
        if found is None:
            found = memo[key] = _saving_of(ctx, result, cap, split)
        return found
    return _saving_of(ctx, result, cap, split)


def _saving_of(ctx: RuleContext, result: NodeResult, cap: int,
               split: list[tuple[DType, int]]) -> float:
    new = sum(n * min(1.0, cap / d.bits) if d.is_float else n for d, n in split)
    old = sum(n for _, n in split)
    if new >= old:
        return 0.0
    scaled = ctx.retime(with_weight_bytes(result.cost, new / old))
    return result.timing.predicted_latency_s - scaled.predicted_latency_s
