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


__all__ = ["CPU", "CUDA", "chain_model", "cuda_answers", "import_onnxruntime", "tiny_model"]
