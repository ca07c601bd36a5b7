"""Names of the fusible chains ML102 recognises, and the fused kernel that replaces each."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from memlint.analysis.artifact import Producer, artifact
from memlint.analysis.fusion import TINY_ELEMENTS, Chain, source
from memlint.analysis.graph_index import GraphIndex
from memlint.ir import Node, ValueKind

ORT = (
    "`python -m onnxruntime.transformers.optimizer --input model.onnx --output opt.onnx "
    "--model_type {}`"
)
ANY = "torch.compile (Inductor) and TensorRT fuse it into one kernel too"
MATMULS = frozenset({"MatMul", "Gemm", "FusedMatMul", "MatMulNBits"})
NORM_OPS = frozenset({
    "LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization", "RMSNormalization",
})


@dataclass(frozen=True)
class Pattern:
    name: str  # "bias Add + decomposed GELU (erf)"
    fix: str  # the fused kernel and the tool that produces it


def recognise(ctx: GraphIndex, chain: Chain) -> Pattern:
    """The chain's pattern, with the fix for the graph's framework (memlint.analysis.artifact):
    the onnxruntime optimizer for an ONNX file (TensorRT where the optimizer already ran and
    left the chain), torch's fused ops and torch.compile for a torch.fx graph."""
    pattern = _recognise(ctx, chain)
    made = artifact(ctx)
    if made.is_torch:
        return Pattern(pattern.name, _torch_fix(pattern.name))
    if made.producer is Producer.ORT_OPTIMIZED and pattern.fix.startswith(ORT[:10]):
        return Pattern(pattern.name, "TensorRT fuses it into one kernel (onnxruntime's transformer "
                       "optimizer already ran on this graph and left it unfused)")
    return pattern


def _torch_fix(name: str) -> str:
    """The fix for a torch module, by the pattern's name."""
    if "LayerNorm" in name:
        return ("torch.nn.functional.layer_norm (nn.LayerNorm) is one kernel; torch.compile "
                "(Inductor) fuses the bias and residual Adds with it")
    if "RMSNorm" in name:
        return ("torch.nn.functional.rms_norm (nn.RMSNorm, torch >= 2.4) replaces the decomposed "
                "norm; torch.compile (Inductor) fuses the chain, residual Add included, into one "
                "kernel")
    if "GELU" in name:
        return ("torch.nn.functional.gelu (approximate='tanh' for the tanh form) is one kernel; "
                "torch.compile (Inductor) fuses the bias Add with it")
    if "SiLU" in name:
        return ("torch.compile (Inductor) fuses torch.nn.functional.silu and the gating Mul into "
                "one kernel")
    return "torch.compile (Inductor) fuses point-wise chains into one kernel"


def _recognise(ctx: GraphIndex, chain: Chain) -> Pattern:
    """Norms first (a residual or bias Add joins them), then GELU, SiLU, else a plain chain."""
    ops = Counter(n.op_type for n in chain.nodes)
    adds = [n for n in chain.nodes if n.op_type == "Add" and len(n.inputs) == 2]
    bias = any(_is_bias(ctx, n) for n in adds)
    residual = [n for n in adds if _is_residual(ctx, n)]
    lead = "bias Add + " if bias else ""
    model_type = _model_type(ctx)
    if ops.keys() & {"LayerNormalization", "SkipLayerNormalization"} or (
        ops["ReduceMean"] >= 2 and "Sub" in ops
    ):
        norm, op = "LayerNorm", "LayerNormalization"
    elif ops.keys() & NORM_OPS or ("ReduceMean" in ops and ops.keys() & {"Sqrt", "Reciprocal"}):
        norm, op = "RMSNorm", "SimplifiedLayerNormalization"
    else:
        norm = op = ""
    if norm:
        decomposed = "" if ops.keys() & NORM_OPS else "decomposed "
        kernel, skip = (f"Skip{op}", "residual Add + ") if residual else (op, "")
        if residual and norm == "LayerNorm" and any(_from_gather(ctx, n) for n in residual):
            skip = "embedding Add + "
            kernel = "EmbedLayerNormalization" if model_type == "bert" else kernel
        extra = " with its bias input" if bias and residual else ""
        return Pattern(f"{lead}{skip}{decomposed}{norm}",
                       f"{ORT.format(model_type)} rewrites it to {kernel}{extra}; {ANY}")
    if "Erf" in ops:
        return Pattern(f"{lead}decomposed GELU (erf)", f"{ORT.format('bert')} rewrites it to "
                       f"com.microsoft {'BiasGelu' if bias else 'Gelu'}; {ANY}")
    if "Tanh" in ops and ("Pow" in ops or ops["Mul"] >= 3):
        extra = " with its bias input" if bias else ""
        return Pattern(f"{lead}decomposed GELU (tanh)", f"{ORT.format('gpt2')} rewrites it to "
                       f"com.microsoft FastGelu{extra}; {ANY}")
    if ops.keys() & {"Gelu", "FastGelu", "BiasGelu"} and bias:
        return Pattern("bias Add + GELU", f"{ORT.format(model_type)} folds the bias into "
                       f"BiasGelu / FastGelu's bias input; {ANY}")
    if "Sigmoid" in ops and "Mul" in ops and not _is_silu(ctx, chain):
        return Pattern("sigmoid gate (x * sigmoid(s), s broadcast)",
                       "torch.compile (Inductor) or TensorRT fuse the gate's sigmoid into the "
                       "Mul that applies it (and into the op before it); in ONNX, export the "
                       "gate as one op or leave it: the small gate costs little")
    if "Sigmoid" in ops and "Mul" in ops:
        return Pattern("SiLU/SwiGLU" if ops["Mul"] >= 2 else "SiLU",
                       "torch.compile (Inductor) or TensorRT fuse SiLU and the gating Mul into "
                       "one kernel; in ONNX Runtime com.microsoft QuickGelu with alpha=1 is "
                       "x*sigmoid(x) in one kernel")
    return Pattern(f"{lead}element-wise chain",
                   "torch.compile (Inductor) or TensorRT fuse point-wise chains into one "
                   "kernel; ONNX Runtime fuses only the named patterns, so export a fused op")


def _is_silu(ctx: GraphIndex, chain: Chain) -> bool:
    """x * sigmoid(x): a Mul of a Sigmoid's output with that Sigmoid's own input, at one
    shape. A squeeze-excitation gate multiplies a feature map by the sigmoid of another (pooled,
    broadcast) tensor: not a SiLU."""
    sigmoids = {n.outputs[0]: n.inputs[0] for n in chain.nodes
                if n.op_type == "Sigmoid" and n.inputs and n.outputs}
    for node in chain.nodes:
        if node.op_type != "Mul" or len(node.inputs) != 2:
            continue
        a, b = node.inputs
        for gate, other in ((a, b), (b, a)):
            if sigmoids.get(gate) == other:
                x, y = ctx.value(gate), ctx.value(other)
                if x is not None and y is not None and x.shape == y.shape:
                    return True
    return False


def _model_type(ctx: GraphIndex) -> str:
    """The optimizer's --model_type: gpt2 for a decoder with a KV cache, else bert."""
    return artifact(ctx).ort_model_type


def _is_bias(ctx: GraphIndex, node: Node) -> bool:
    """x + b where b is a weight and x comes from a matrix product."""
    weights = [v for v in node.inputs if (w := ctx.value(v)) and w.kind is ValueKind.WEIGHT]
    other = [v for v in node.inputs if v not in weights]
    producer = ctx.producer(source(ctx, other[0])) if len(other) == 1 else None
    return bool(weights) and producer is not None and producer.op_type in MATMULS


def _is_residual(ctx: GraphIndex, node: Node) -> bool:
    """x + y of two activations, one of the output's full size (a skip connection; the other
    may broadcast, as position embeddings do)."""
    out = ctx.value(node.outputs[0])
    values = [ctx.value(v) for v in node.inputs]
    return out is not None and all(
        v is not None and v.kind is not ValueKind.WEIGHT and (v.numel or 0) > TINY_ELEMENTS
        for v in values
    ) and any(v.numel == out.numel for v in values)


def _from_gather(ctx: GraphIndex, node: Node) -> bool:
    """An input comes straight from an embedding lookup."""
    return any(
        (p := ctx.producer(source(ctx, v))) is not None and p.op_type == "Gather"
        for v in node.inputs
    )
