"""onnxruntime as a measuring instrument: importing it, its execution providers, whether its
CUDA provider really reaches a GPU, and the tiny graphs that time it.

Shared by calibration (memlint.hardware.calibrate, which measures the machine) and the measured
runs (memlint.confirm, which measure a model on it). onnx and onnxruntime are imported only when
a function here runs, so `import memlint.hardware` never pays for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memlint.errors import ConfirmError

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def import_onnxruntime() -> Any:
    """The onnxruntime module; a ConfirmError naming the package to install when it is absent."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfirmError(
            "measuring needs onnxruntime: pip install onnxruntime (or onnxruntime-gpu)"
        ) from None
    return onnxruntime


def cuda_answers(ort: Any) -> bool:
    """Does a one-node session actually get the CUDA provider (a GPU and its driver are there)?"""
    from onnx import TensorProto, helper

    model = tiny_model(
        [helper.make_node("Identity", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        name="probe",
    )
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model, options, providers=[CUDA, CPU])
    except Exception:  # noqa: BLE001 - any failure means no usable GPU
        return False
    return CUDA in session.get_providers()


def tiny_model(
    nodes: Sequence[Any], inputs: Sequence[Any], outputs: Sequence[Any],
    initializers: Sequence[Any] = (), *, name: str = "memlint",
) -> bytes:
    """A serialised opset-17 model of onnx.helper nodes, value infos and initializers."""
    from onnx import helper

    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def chain_model(count: int) -> bytes:
    """`count` one-element Adds back to back (t1 = x + c, t2 = t1 + c, ...), named add0, add1,
    ...: kernels whose own work is next to nothing, so their time is per-kernel overhead."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Add", [f"t{i}" if i else "x", "c"], [f"t{i + 1}"], name=f"add{i}")
        for i in range(count)
    ]
    scalar = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "c")]
    output = helper.make_tensor_value_info(f"t{count}", TensorProto.FLOAT, [1])
    return tiny_model(nodes, scalar, [output])


# One block of mix_model: 12 nodes, of which memlint times 8 as kernels (Gather, Concat, two
# Transposes, Mul, Softmax, Add, Div) and 4 as metadata (Shape, Unsqueeze, two Reshapes: no
# bytes, no time). Decode steps have 0.4-0.9 metadata nodes per kernel (Constants aside): 45
# beside 105 in sample_models' GPT-2 step, 811 beside 906 in Optimum's GPT-2 export.
MIX_NODES, MIX_KERNELS = 12, 8


def mix_model(blocks: int, width: int = 768, heads: int = 12) -> bytes:
    """`blocks` copies, back to back, of the small shape / index / element-wise nodes a decode
    step runs around its matrix products, on one token of `width` float32 values: x -> Shape ->
    Gather -> Unsqueeze -> Concat -> Reshape to heads -> Transpose -> Mul -> Softmax -> Transpose
    -> Reshape back -> Add bias -> Div -> the next block. Their own work is next to nothing, so
    their time is what small nodes cost in a real graph."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    head = width // heads
    constants = {
        "zero": np.array(0, np.int64), "axes0": np.array([0], np.int64),
        "heads_shape": np.array([1, heads, head], np.int64),
        "flat": np.array([1, 1, width], np.int64), "scale": np.array(0.125, np.float32),
        "bias": np.full(width, 0.5, np.float32), "two": np.array(2.0, np.float32),
    }
    nodes = []
    for i in range(blocks):
        x, y = f"t{i}" if i else "x", f"t{i + 1}"
        nodes += [
            helper.make_node("Shape", [x], [f"s{i}"], name=f"shape{i}"),
            helper.make_node("Gather", [f"s{i}", "zero"], [f"g{i}"], name=f"gather{i}", axis=0),
            helper.make_node("Unsqueeze", [f"g{i}", "axes0"], [f"u{i}"], name=f"unsqueeze{i}"),
            helper.make_node("Concat", [f"u{i}", "heads_shape"], [f"c{i}"], name=f"concat{i}",
                             axis=0),
            helper.make_node("Reshape", [x, f"c{i}"], [f"r{i}"], name=f"reshape{i}"),
            helper.make_node("Transpose", [f"r{i}"], [f"p{i}"], name=f"transpose{i}",
                             perm=[0, 2, 1, 3]),
            helper.make_node("Mul", [f"p{i}", "scale"], [f"m{i}"], name=f"mul{i}"),
            helper.make_node("Softmax", [f"m{i}"], [f"e{i}"], name=f"softmax{i}", axis=-1),
            helper.make_node("Transpose", [f"e{i}"], [f"q{i}"], name=f"back{i}",
                             perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"q{i}", "flat"], [f"f{i}"], name=f"flat{i}"),
            helper.make_node("Add", [f"f{i}", "bias"], [f"a{i}"], name=f"add{i}"),
            helper.make_node("Div", [f"a{i}", "two"], [y], name=f"div{i}"),
        ]
    token = [1, 1, width]
    return tiny_model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, token)],
        [helper.make_tensor_value_info(f"t{blocks}", TensorProto.FLOAT, token)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )


__all__ = [
    "CPU", "CUDA", "MIX_KERNELS", "MIX_NODES", "chain_model", "cuda_answers",
    "import_onnxruntime", "mix_model", "tiny_model",
]
