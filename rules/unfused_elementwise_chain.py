"""ML102 unfused-elementwise-chain: element-wise ops on one activation run as separate kernels."""

from __future__ import annotations

from collections.abc import Iterator

from memlint import units
from memlint.analysis.fusion import Chain, find_chains, readers, source
from memlint.analysis.fusion_patterns import recognise
from memlint.costs import ByteCounts, CostStatus, OpCost
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.ir import ComputeUnit
from memlint.rulebase import Example, Rule, RuleContext


class UnfusedElementwiseChain(Rule):
    """Element-wise ops on one activation run as separate kernels, each a round trip to memory.

    ## What it does
    Finds groups of element-wise ops, casts, norm reductions and fused norm/activation ops that
    one kernel could run (no path between two of them leaves the group through another kernel),
    such as decomposed GELU (erf or tanh form), SiLU/SwiGLU, LayerNorm, RMSNorm and residual
    Add + LayerNorm, and compares the bytes moved as written with those of one fused kernel:
    each outside input read once, each tensor needed outside written once.

    ## Why is this bad?
    Each op reads its inputs from memory and writes its output back. GPT-2's tanh GELU as 8 ops
    moves 18 activations' worth of data where one fused kernel moves 2 (one read, one write);
    these ops are memory-bound, so their time scales with the bytes.

    ## How to fix
    Use the fused op: the onnxruntime transformers optimizer rewrites these patterns to
    com.microsoft Gelu / BiasGelu / FastGelu / SkipLayerNormalization /
    SimplifiedLayerNormalization and ONNX LayerNormalization; torch.compile (Inductor) and
    TensorRT fuse point-wise chains on their own. For a torch.fx graph the finding names torch's
    fused op (torch.nn.functional.gelu, layer_norm, rms_norm) and torch.compile instead; a graph
    the onnxruntime optimizer already rewrote (and left this chain unfused) gets TensorRT.

    ## Known limits
    Chains that feed or read a Softmax are left to ML103 (attention). Metadata views (Reshape,
    Squeeze, Unsqueeze, Identity, Flatten) are transparent and shape computations are assumed
    known to the compiler; ops on scalars and shape vectors alone (at most 16 elements, not fed
    by a chain) do not join. Grouping is conservative: a side path through another kernel that
    is longer than the chain itself can split a chain a compiler would still fuse. The fused
    time is the roofline of the summed FLOPs and the fused bytes; a reduction whose row does not
    fit on chip needs a second read, which is not counted. A chain one kernel would not shorten
    (the fused bytes no fewer than as written: a squeeze-excitation gate x * sigmoid(s), s a
    pooled vector broadcast over x) is no finding; SiLU is x * sigmoid(x) at one shape, and a
    broadcast gate is named a sigmoid gate. Noise is judged by what fusing saves, not by the
    time of the chain's nodes: a chain whose fix saves less than both thresholds
    (--min-share of the predicted time, --min-saving-s) is hidden.
    """

    code = "ML102"
    estimate = "as_written"  # a fusing runtime already does the fix
    name = "unfused-elementwise-chain"
    noise_by_saving = True
    severity = Severity.WARNING
    op_types = None
    fix = "Fuse the chain: onnxruntime transformers optimizer, torch.compile or TensorRT."
    bad = Example(
        "g (float[8,512,3072] x) => (float[8,512,3072] y)\n"
        "<float s = {1.4142135}, float one = {1.0}, float half = {0.5}> {\n"
        "  h = Div(x, s)  e = Erf(h)  p = Add(e, one)  m = Mul(x, p)  y = Mul(m, half)\n}"
    )
    good = Example(
        "g (float[8,512,3072] x) => (float[8,512,3072] y) { y = com.microsoft.Gelu(x) }"
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        for chain in find_chains(ctx):
            if _near_softmax(ctx, chain):
                continue
            tensors = chain.outputs or chain.inputs
            if not tensors:
                continue
            results = [ctx.result(n.name) for n in chain.nodes]
            main = max(tensors, key=lambda v: (v.numel or 0, v.nbytes or 0))  # the activation
            fused = OpCost(
                flops=sum(r.cost.flops for r in results),
                bytes_read=ByteCounts.of(chain.inputs),
                bytes_written=ByteCounts.of(chain.outputs),
                status=CostStatus.MODELLED,
                unit=ComputeUnit.VECTOR,
                compute_dtype=main.dtype,
            )
            written_b = sum(r.cost.bytes_moved for r in results)
            time_s = sum(r.timing.predicted_latency_s for r in results)
            fused_s = ctx.retime(fused).predicted_latency_s
            # and one launch instead of one per node (GPU specs: kernel launch cost)
            saving_s = max(time_s - fused_s, 0.0) + ctx.launch_s(len(results) - 1)
            if saving_s <= 0.0 or fused.bytes_moved >= written_b:
                continue  # one kernel would move as much: nothing to fuse for
            pattern = recognise(ctx, chain)
            ops = [n.op_type for n in chain.nodes]
            tensor = f"{main.dtype.label}{list(main.shape or ())}"
            yield self.finding(
                ctx,
                f"{pattern.name} as {len(ops)} kernels ({', '.join(ops)}) on {tensor}: "
                f"{units.nbytes(written_b)} moved as written vs {units.nbytes(fused.bytes_moved)} "
                f"fused; {units.seconds(time_s)} vs {units.seconds(fused_s)} predicted "
                f"({units.percent(ctx.share(time_s))} of predicted time); one fused kernel would "
                f"save {units.seconds(saving_s)}",
                nodes=[n.name for n in chain.nodes],
                evidence=[
                    Metric("chain_nodes", len(ops)),
                    Metric("bytes_as_written", written_b, "B"),
                    Metric("bytes_fused", fused.bytes_moved, "B"),
                    Metric("time_as_written_s", time_s, "s"),
                    Metric("time_fused_s", fused_s, "s"),
                    Metric("saving_s", saving_s, "s"),
                ],
                fixes=[Fix(pattern.fix, saving_s)],
                time_s=time_s,
                signature=f"{pattern.name}|{'+'.join(ops)}|{tensor}",
            )


def _near_softmax(ctx: RuleContext, chain: Chain) -> bool:
    """The chain feeds a Softmax (score scale/mask) or reads one: attention, ML103's business."""
    fed = any(r.op_type == "Softmax" for n in chain.nodes for o in n.outputs
              for r in readers(ctx, o))
    return fed or any(
        (p := ctx.producer(source(ctx, v.name))) is not None and p.op_type == "Softmax"
        for v in chain.inputs
    )
