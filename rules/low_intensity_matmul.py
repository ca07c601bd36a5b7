"""ML101 low-intensity-matmul: a matmul or conv that streams its weights for too few rows."""

from __future__ import annotations

from collections.abc import Iterator

from memlint import units
from memlint.analysis.artifact import Artifact, artifact
from memlint.costs import CostStatus, OpCost
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.ir import Node
from memlint.rulebase import Example, Option, Rule, RuleContext, with_weight_bytes

from ._products import PRODUCT_OPS, Product, product, rows_compute_bound, shape_text, with_rows

SPECULATIVE_MAX_ROWS = 8  # speculative decoding is offered up to this many rows
_QUANT = (("int8", 8), ("int4", 4))
_CONV_QUANT = (("int8", 8),)  # int4 convolution kernels are rare
_EXAMPLE = (
    'g (float16["batch",1024] x) => (float16["batch",4096] y) <float16[1024,4096] w> '
    "{ y = MatMul(x, w) }"
)


class LowIntensityMatmul(Rule):
    """A matmul or convolution reads its weights for too few rows to reach the compute roof.

    ## What it does
    Flags a matrix product or convolution that reads a weight (GEMV, skinny GEMM) and whose
    arithmetic intensity (FLOPs per byte moved) is below `max-intensity-ratio` times the ridge
    point of its peak (peak FLOP/s / memory bandwidth). It reports M, the rows (Conv: output
    pixels) that share one read of the weight, and M*, the rows at which it turns compute-bound:
    scaling everything but the weight bytes W by s, `flops*s / (W + A*s) = ridge` gives
    `s = ridge*W / (flops - ridge*A)` (A: every other byte moved) and `M* = ceil(M x s)`; when
    `flops <= ridge*A` no batch makes it compute-bound, and it is flagged only if the weights
    are at least half the bytes moved. Products of two activations (attention over the KV
    cache) are not flagged.

    ## Why is this bad?
    At M = 1 (one decoded token) each weight element serves one multiply-accumulate: the
    tensor cores idle while the weights stream from memory, and the time is set by the weight
    bytes alone. This is the memory wall of LLM decoding.

    ## How to fix
    Serve M >= M* rows per weight read: batch requests (an LLM decoder: continuous batching in
    vLLM, TGI, TensorRT-LLM; any other model: a server's dynamic batching). Its saving is per M
    rows: their time now minus their share (M/M*) of one run at M*; the fix also says how the
    per-row time drops. Store the weights narrower, weight-only (matmuls: int8 or int4, with
    onnxruntime's MatMulNBits quantizer for an ONNX graph, torchao for a torch module, GPTQ/AWQ
    for an LLM; convs: int8): the saving re-times the op with its weight bytes scaled to 8 (4)
    bits of the current width, compute peak unchanged. Weights already int8 get the int4 step,
    int4 weights none. Fixes are listed by saving, best first. An LLM decoder at M <= 8 also
    gets speculative decoding, which verifies k draft tokens in one pass, multiplying M by k.

    ## Known limits
    Weights that reach the product through an op other than a folded DequantizeLinear (a
    Transpose) are activations to this rule. Integer convolution weights get no quantization
    fix. The what-ifs scale every weight byte of the op (bias, scales alike) and do not count
    dequantization arithmetic. "LLM decoder" means a KV cache among the graph inputs.
    """

    code = "ML101"
    name = "low-intensity-matmul"
    severity = Severity.WARNING
    op_types = PRODUCT_OPS
    options = {
        "max-intensity-ratio": Option(1.0, "fire when intensity < this ratio * ridge point"),
    }
    fix = "Batch more rows per weight read, or store the weights as int8/int4 (weight-only)."
    bad = Example(_EXAMPLE, dims={"batch": 1})
    good = Example(_EXAMPLE, dims={"batch": 512})

    def check(self, ctx: RuleContext, node: Node) -> Iterator[Finding]:
        result = ctx.result(node.name)
        if result is None or result.cost.status is not CostStatus.MODELLED:
            return
        cost, timing, intensity = result.cost, result.timing, result.cost.intensity
        found = product(ctx, node)
        if found is None or cost.bytes_read.weights <= 0 or intensity is None:
            return
        ridge = ctx.ridge(timing)
        if intensity >= ctx.options["max-intensity-ratio"] * ridge:
            return
        time_s, rows = timing.predicted_latency_s, found.rows
        m_star = rows_compute_bound(cost, ridge, rows)
        if m_star is None and 2 * cost.bytes_read.weights < cost.bytes_moved:
            return  # the activations, not the weights, hold it below the ridge
        fixes, quant = _fixes(ctx, cost, time_s, found, m_star)
        evidence = [
            Metric("intensity", intensity, "FLOP/B"), Metric("ridge", ridge, "FLOP/B"),
            Metric("flops", cost.flops, "FLOP"), Metric("bytes_moved", cost.bytes_moved, "B"),
            Metric("weight_bytes", cost.bytes_read.weights, "B"), Metric("time_s", time_s, "s"),
            Metric("share", ctx.share(time_s), "fraction"), Metric("rows", rows, "rows"),
        ]
        if m_star is None:
            need = f"no batch makes it compute-bound (M = {rows})"
        else:
            evidence.append(Metric("rows_compute_bound", m_star, "rows"))
            need = (f"needs M >= {m_star} rows to be compute-bound (M = {rows})" if m_star > rows
                    else f"compute-bound from M = {m_star} rows (M = {rows})")
        message = (
            f"{_describe(node, found)}: intensity {units.intensity(intensity)} < ridge "
            f"{units.intensity(ridge)} ({timing.peak_key}); {need}; {units.seconds(time_s)} "
            f"({units.percent(ctx.share(time_s))} of predicted)"
        )
        if quant:
            label, saving = quant[-1]
            message += f"; {label} weights save {units.seconds(saving)}"
        yield self.finding(ctx, message, nodes=[node.name], evidence=evidence, fixes=fixes,
                           time_s=time_s, signature=_signature(node, found))


def _fixes(ctx: RuleContext, cost: OpCost, time_s: float, found: Product, m_star: int | None
           ) -> tuple[list[Fix], list[tuple[str, float]]]:
    """Batching, narrower weights (with the saving of each width), speculation for an LLM
    decoder; the tools named fit the artifact (memlint.analysis.artifact). Best first: by
    saving, a fix without an estimate last."""
    made, rows, fixes = artifact(ctx), found.rows, []
    if m_star is not None and m_star > rows:
        batched = ctx.retime(with_rows(cost, m_star / rows)).predicted_latency_s
        how = ("Batch requests (continuous batching: vLLM, TGI, TensorRT-LLM)" if made.llm_decoder
               else "Batch more inputs per call (a server's dynamic batching, e.g. Triton "
                    "Inference Server's)")
        fixes.append(Fix(
            f"{how} so that >= {m_star} rows share each weight read: per-row time drops from "
            f"{units.seconds(time_s / rows)} to {units.seconds(batched / m_star)}",
            time_s - batched * rows / m_star,
        ))
    steps = _CONV_QUANT if found.is_conv else _QUANT
    if not found.weight.dtype.is_float and found.is_conv:
        steps = ()  # integer convolution weights: no narrower kernel to point at
    quant = [(label, time_s - ctx.retime(with_weight_bytes(cost, bits / found.weight_bits))
              .predicted_latency_s) for label, bits in steps if bits < found.weight_bits]
    fixes += [Fix(_quant_text(label, found, made), saving) for label, saving in quant]
    fixes.sort(key=lambda f: -f.saving_s)
    if made.llm_decoder and rows <= SPECULATIVE_MAX_ROWS:
        fixes.append(Fix(
            "Speculative decoding (draft model, Medusa, EAGLE): verifying k draft tokens in one "
            f"pass reads the weights once for {rows}*k rows"
        ))
    return fixes, quant


def _quant_text(label: str, found: Product, made: Artifact) -> str:
    bits = label[3:]
    if found.is_conv:
        tools = ("PT2E int8 quantization (torch.ao, XNNPACK/X86 quantizer), TensorRT"
                 if made.is_torch else "int8 QDQ weights: onnxruntime quantize_static, TensorRT")
    elif made.is_torch:
        tools = f"torchao quantize_ with {label.capitalize()}WeightOnlyConfig"
    else:
        tools = f"onnxruntime matmul_nbits_quantizer -> MatMulNBits bits={bits}"
    if label == "int4" and made.llm_decoder and not found.is_conv:
        tools += ", GPTQ/AWQ"
    return f"Store the weights as {label} ({tools}); compute stays in {found.a.dtype.label}"


def _describe(node: Node, found: Product) -> str:
    sign = "*" if found.is_conv else "x"
    operands = f"{shape_text(found.a)}{sign}{shape_text(found.b)}"
    bits, dtype = found.weight_bits, found.weight.dtype  # MatMulNBits packs int4 in uint8
    return f"{node.op_type} {operands} {dtype.label if bits == dtype.bits else f'int{bits}'}"


def _signature(node: Node, found: Product) -> str:
    return (f"{node.qualified_op} {found.a.dtype.label}{shape_text(found.a)} "
            f"{found.b.dtype.label}{shape_text(found.b)} -> "
            f"{found.out.dtype.label}{shape_text(found.out)}")
