"""The automatic transforms behind memlint's fixes: which findings each resolves, the library
call that does it, whether it needs the weight values, and how far it may move the outputs.

Every transform is one call of a well-kept library (never an optimizer or a quantizer of
memlint's own). They run in the order of TRANSFORMS: graph clean-ups, then fusions (they match
the float graph as exported), then one precision change (`--weights-dtype`). Each takes the
model file a stage wrote and returns the ModelProto of the next stage.

Tolerance: the largest |after - before| over an output, divided by the output's largest
|before| (per output, worst output counted), on the same synthetic inputs. Fusions only
reorder float arithmetic (1e-3); fp16 rounds every weight and activation to 11 bits (2e-2);
int8 and int4 weight-only round each weight to 1/255 and 1/15 of its block's range, which on
the random weights of a test model moved outputs by up to 1% and 13% (5e-2, 3e-1).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRECISIONS = ("fp16", "int8", "int4")
BLOCK_SIZE = 32  # MatMulNBits block: one fp32 scale per 32 weights


@dataclass(frozen=True)
class ModelFacts:
    """What the library calls need to know about the model (from its lint)."""

    model_type: str  # onnxruntime transformer optimizer's model_type: gpt2 (decoder) or bert
    num_heads: int  # 0: unknown (the optimizer then reads it from the graph)
    hidden_size: int


@dataclass(frozen=True)
class Transform:
    name: str
    codes: tuple[str, ...]  # the findings it resolves
    kind: str  # "graph" (no weight values needed) or "precision"
    tolerance: float  # see the module docstring
    keywords: tuple[str, ...]  # words of the finding's fix text that name this transform
    call: Callable[[ModelFacts], str]  # the library call, as code
    run: Callable[[Path, ModelFacts], tuple[Any, str]]  # (ModelProto, what it did)

    @property
    def needs_weights(self) -> bool:
        return self.kind == "precision"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The libraries warn and log per node; memlint reports what they did instead."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _optimizer_args(facts: ModelFacts) -> str:
    known = [f"num_heads={facts.num_heads}" if facts.num_heads else "",
             f"hidden_size={facts.hidden_size}" if facts.hidden_size else ""]
    return ", ".join([f'model_type="{facts.model_type}"', *filter(None, known)])


def _ort_basic(path: Path, facts: ModelFacts) -> tuple[Any, str]:
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        model = optimize_model(str(path), opt_level=1, only_onnxruntime=True, use_gpu=False)
    return model.model, "onnxruntime basic graph optimizations"


def _fusions(path: Path, facts: ModelFacts) -> tuple[Any, str]:
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        model = optimize_model(str(path), model_type=facts.model_type, num_heads=facts.num_heads,
                               hidden_size=facts.hidden_size, opt_level=1, use_gpu=False)
        fused = {op: n for op, n in sorted(model.get_fused_operator_statistics().items()) if n}
    done = ", ".join(f"{op} x{n}" for op, n in fused.items()) or "no pattern matched"
    return model.model, f"fused: {done}"


def _fp16(path: Path, facts: ModelFacts) -> tuple[Any, str]:
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    with _quiet():
        model = OnnxModel(onnx.load(str(path)))
        model.convert_float_to_float16(keep_io_types=True)
    return model.model, "float weights and activations to float16, inputs and outputs kept float32"


def _nbits(bits: int) -> Callable[[Path, ModelFacts], tuple[Any, str]]:
    def run(path: Path, facts: ModelFacts) -> tuple[Any, str]:
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        with _quiet():
            quantizer = MatMulNBitsQuantizer(onnx.load(str(path)), bits=bits,
                                             block_size=BLOCK_SIZE, is_symmetric=True)
            quantizer.process()
        proto = quantizer.model.model
        count = sum(n.op_type == "MatMulNBits" for n in proto.graph.node)
        return proto, f"{count} MatMul weight(s) to int{bits} MatMulNBits, block {BLOCK_SIZE}"

    return run


TRANSFORMS: tuple[Transform, ...] = (
    Transform(
        "onnxruntime-graph-optimizations", ("ML107",), "graph", 1e-3,
        ("Transpose", "Cast", "onnxruntime"),
        lambda f: "onnxruntime.transformers.optimizer.optimize_model(MODEL, opt_level=1, "
                  "only_onnxruntime=True, use_gpu=False)",
        _ort_basic,
    ),
    Transform(
        "transformer-fusions", ("ML102", "ML103"), "graph", 1e-3,
        ("onnxruntime.transformers.optimizer", "optimize_model", "transformer optimizer"),
        lambda f: f"onnxruntime.transformers.optimizer.optimize_model(MODEL, {_optimizer_args(f)}, "
                  "opt_level=1, use_gpu=False)",
        _fusions,
    ),
    Transform(
        "fp16", ("ML106",), "precision", 2e-2, ("fp16",),
        lambda f: "onnxruntime.transformers.onnx_model.OnnxModel(model)"
                  ".convert_float_to_float16(keep_io_types=True)",
        _fp16,
    ),
    Transform(
        "int8", ("ML106",), "precision", 5e-2, ("int8",),
        lambda f: "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer(model, "
                  f"bits=8, block_size={BLOCK_SIZE}, is_symmetric=True).process()",
        _nbits(8),
    ),
    Transform(
        "int4", ("ML106",), "precision", 3e-1, ("int4",),
        lambda f: "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer(model, "
                  f"bits=4, block_size={BLOCK_SIZE}, is_symmetric=True).process()",
        _nbits(4),
    ),
)
BY_NAME = {t.name: t for t in TRANSFORMS}
FIXABLE = frozenset(code for t in TRANSFORMS for code in t.codes)

# A torch module is not rewritten: the same fixes as the code that applies them (weights
# first: torch.compile then traces the quantized module).
_TORCH_GRAPH = {
    "ML102": "Inductor fuses point-wise chains into one kernel",
    "ML103": "write attention as torch.nn.functional.scaled_dot_product_attention: "
             "flash / memory-efficient kernels",
    "ML107": "Inductor folds permutes and cast round trips into its kernels",
}
_TORCH_PRECISION = {
    "fp16": ("model = model.half()  # or model.to(torch.bfloat16)",),
    "int8": ("from torchao.quantization import quantize_, Int8WeightOnlyConfig",
             "quantize_(model, Int8WeightOnlyConfig())"),
    "int4": ("from torchao.quantization import quantize_, Int4WeightOnlyConfig",
             f"quantize_(model, Int4WeightOnlyConfig(group_size={BLOCK_SIZE}))"),
}


def torch_advice(codes: set[str], precision: str) -> tuple[str, ...]:
    """The code that applies the fixes of `codes` to an nn.Module named `model`."""
    lines: list[str] = []
    if "ML106" in codes:
        lines += [f"# ML106: weights to {precision}", *_TORCH_PRECISION[precision]]
    graph = sorted(codes & set(_TORCH_GRAPH))
    if graph:
        lines += [f"# {code}: {_TORCH_GRAPH[code]}" for code in graph]
        lines.append("model = torch.compile(model)")
    return tuple(lines)


def transforms_for(codes: set[str], precision: str) -> list[Transform]:
    """The transforms that resolve `codes`, in the safe order, with one precision change."""
    return [t for t in TRANSFORMS
            if set(t.codes) & codes and (t.kind == "graph" or t.name == precision)]
