"""ML103 materialized-attention: eager attention that writes the score matrix to memory."""

from __future__ import annotations

from collections.abc import Iterator

from memlint import units
from memlint.analysis.artifact import Producer, artifact, optimizer_command
from memlint.analysis.attention import attention_block
from memlint.costs import ByteCounts, CostStatus, OpCost
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.ir import ComputeUnit, Node, ValueKind
from memlint.roofline import Bound
from memlint.rulebase import Example, Rule, RuleContext

TENSORRT = ("Build with TensorRT, whose fused multi-head attention (MHA) kernels keep the scores "
            "on chip.")
OPSET_23 = ("scaled_dot_product_attention becomes the ONNX Attention op (opset 23), which "
            "runtimes run as one fused kernel")


class MaterializedAttention(Rule):
    """Attention written as MatMul, Softmax, MatMul writes the score matrix to memory.

    ## What it does
    Finds eager attention blocks: a Softmax fed by `Q @ K^T` of two activations (through scale,
    mask, cast and reshape ops, in any order) whose output feeds `P @ V` (through cast, dropout,
    reshape or a NaN guard). The block also takes in a transpose of K and scalar scalings of Q
    and K that only feed the product. It reports the score tensor's size, how many times
    score-sized tensors are written and read, the block's predicted time, and the time of one
    fused kernel.

    ## Why is this bad?
    The score tensor is [batch, heads, q, kv]: quadratic in the sequence length. Each op of the
    block writes it to memory and the next reads it back: BERT-base at batch 8 and 512 tokens
    moves 6 x 101 MB of scores per layer for 38 MB of Q, K and V. A fused (FlashAttention-style)
    kernel does the same FLOPs with the scores kept on chip and reads Q, K, V and the mask once.

    ## How to fix
    The fixes fit the graph (memlint.analysis.artifact), best first. An ONNX graph (a
    torch.onnx or Optimum export, or another): fuse it with onnxruntime's transformer optimizer
    (`python -m onnxruntime.transformers.optimizer`, `optimize_model`) into com.microsoft
    Attention / MultiHeadAttention, or for a decoder GroupQueryAttention with one KV buffer
    (onnxruntime-genai's model builder writes it); a graph the optimizer already rewrote is told
    how to get the block it left unfused (the model builder for a decoder, the optimizer rerun
    with the model's heads and hidden size for an encoder). Then TensorRT, whose fused
    multi-head attention keeps the scores on chip, and a re-export at opset 23, where torch.onnx
    writes `scaled_dot_product_attention` as the ONNX Attention op. A torch module: call
    `torch.nn.functional.scaled_dot_product_attention` (FlashAttention or memory-efficient
    backend), or let torch.compile (Inductor) rewrite the eager pattern into it.

    ## Known limits
    The fused estimate keeps the block's FLOPs and times all of them at the matmuls' peak on the
    tensor unit, although the softmax's exponentials run on the vector unit: it is a lower bound
    where they limit (small head sizes). Weights (scale constants, a constant mask) are assumed
    folded into the kernel; mask activations are read once. Q, K and V are read at the size
    they have before the QK matmul, so a repeat of K/V heads (grouped-query attention) is
    counted as already expanded. Probabilities that leave the block (returned attention
    weights) make the block unfusable and are not flagged.
    """

    code = "ML103"
    estimate = "as_written"  # a fusing runtime already does the fix
    name = "materialized-attention"
    severity = Severity.WARNING
    op_types = frozenset({"Softmax"})
    fix = ("Fuse the attention: onnxruntime.transformers.optimizer (com.microsoft "
           "MultiHeadAttention / GroupQueryAttention) for ONNX, "
           "torch.nn.functional.scaled_dot_product_attention in torch.")
    bad = Example(
        "g (float[1,4,64,32] q, float[1,4,32,64] kt, float[1,4,64,32] v) => (float[1,4,64,32] y) "
        "{ s = MatMul(q, kt)\n p = Softmax <axis = -1> (s)\n y = MatMul(p, v) }"
    )
    good = Example(
        'g (float[1,64,128] q, float[1,64,128] k, float[1,64,128] v) => (float[1,64,128] y) '
        '{ y = com.microsoft.MultiHeadAttention <num_heads = 4> (q, k, v) }'
    )

    def check(self, ctx: RuleContext, node: Node) -> Iterator[Finding]:
        block = attention_block(ctx, node)
        if block is None:
            return
        written = ctx.quantized.written  # QDQ: tensors at the width a folded Q gives them
        scores = written(ctx.graph, node.outputs[0])
        qk, path, after, pv = block.qk, block.path, block.after, block.pv
        block = block.nodes
        results = [ctx.result(n.name) for n in block]
        inside = {o for n in [*path, node, *after] for o in n.outputs if o}  # score-sized
        produced = {o for n in block for o in n.outputs}
        moving = [n for n, r in zip(block, results)
                  if r.cost.status not in (CostStatus.METADATA, CostStatus.FOLDED)]
        passes = [ctx.stored(v) for n in moving for v in dict.fromkeys(n.inputs) if v in inside]
        passes += [written(ctx.graph, v) for n in moving for v in n.outputs if v in inside]
        reads = [ctx.stored(v) for v in sorted({v for n in moving for v in n.inputs}) if v]
        fused = OpCost(  # one kernel: the same FLOPs; reads Q, K, V and masks, writes the output
            flops=sum(r.cost.flops for r in results),
            bytes_read=ByteCounts.of(
                v for v in reads if v.name not in produced and v.kind is not ValueKind.WEIGHT
            ),
            bytes_written=ByteCounts.of([written(ctx.graph, pv.outputs[0])]),
            status=CostStatus.MODELLED,
            unit=ComputeUnit.TENSOR,
            compute_dtype=ctx.result(qk.name).cost.compute_dtype,
        )
        block_s = sum(r.timing.predicted_latency_s for r in results)
        fused_s = ctx.retime(fused).predicted_latency_s
        ran = sum(1 for r in results if r.timing.bound is not Bound.NONE)
        saving_s = max(block_s - fused_s, 0.0) + ctx.launch_s(ran - 1)  # one launch, not many
        traffic = sum(v.nbytes or 0 for v in passes if v is not None)
        message = (
            f"{'x'.join(map(str, scores.shape))} {scores.dtype.label} attention scores "
            f"({units.nbytes(scores.nbytes)}) go to memory {len(passes)} times "
            f"({units.nbytes(traffic)}); the block takes {units.seconds(block_s)} "
            f"({units.percent(ctx.share(block_s))} of predicted time); fused attention would "
            f"move {units.nbytes(fused.bytes_moved)} in {units.seconds(fused_s)}, saving "
            f"{units.seconds(saving_s)}"
        )
        operands = (ctx.value(v) for v in (*qk.inputs[:2], *pv.inputs[:2]))
        yield self.finding(
            ctx, message, nodes=[n.name for n in block], time_s=block_s,
            evidence=[
                Metric("score_bytes", scores.nbytes, "B"),
                Metric("score_passes", len(passes)),
                Metric("score_bytes_moved", traffic, "B"),
                Metric("block_time_s", block_s, "s"),
                Metric("block_share", ctx.share(block_s), "fraction"),
                Metric("fused_bytes", fused.bytes_moved, "B"),
                Metric("fused_flops", fused.flops, "FLOP"),
                Metric("fused_time_s", fused_s, "s"),
            ],
            fixes=[Fix(text, saving_s) for text in _fixes(ctx)],
            signature=" ".join([*(n.op_type for n in block), *(
                f"{v.dtype.label}{list(v.shape)}" for v in operands if v and v.shape
            )]),
        )


def _fixes(ctx: RuleContext) -> list[str]:
    """Best first, for what the graph is: a torch module gets torch's fused attention; an ONNX
    graph onnxruntime's optimizer (GroupQueryAttention for a decoder), unless the optimizer
    already ran on it and left the block unfused; then TensorRT and a re-export."""
    made = artifact(ctx)
    if made.is_torch:
        return [
            ("Call torch.nn.functional.scaled_dot_product_attention instead of MatMul, softmax, "
             "MatMul (FlashAttention / memory-efficient backend): the scores stay on chip."),
            ("torch.compile (Inductor) rewrites common eager-attention patterns into "
             "scaled_dot_product_attention."),
        ]
    builder = ("onnxruntime-genai's model builder (`python -m onnxruntime_genai.models.builder "
               "-m MODEL -o OUT -p fp16 -e cuda`)")
    unfused = "the transformer optimizer already ran on this graph and left this block unfused"
    if made.producer is Producer.ORT_OPTIMIZED and made.llm_decoder:
        first = (f"Build the decoder with {builder}: it writes com.microsoft GroupQueryAttention "
                 f"with one KV buffer for past and present; {unfused}.")
    elif made.producer is Producer.ORT_OPTIMIZED:
        first = (f"Rerun onnxruntime's transformer optimizer on the export with this model's "
                 f"settings (`{optimizer_command(ctx)}`): {unfused}, and its attention fusion "
                 f"matches only the patterns it knows.")
    else:
        first = (f"Fuse with onnxruntime's transformer optimizer (`{optimizer_command(ctx)}`, or "
                 "optimize_model) into com.microsoft " + (
                     f"MultiHeadAttention; GroupQueryAttention with one KV buffer for past and "
                     f"present comes from {builder}." if made.llm_decoder
                     else "Attention / MultiHeadAttention."))
    if made.producer is Producer.TORCH_ONNX:
        export = ("Re-export with torch.onnx.export(..., dynamo=True, opset_version=23): "
                  f"{OPSET_23}.")
    else:
        export = (f"Re-export from the framework with a fused attention op (torch: {OPSET_23}).")
    return [first, TENSORRT, export]
