"""memlint.confirm.measure: one call that picks the runtime for the report's model (onnxruntime
for an ONNX file, torch eager for a torch graph), announces it and returns the measurement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import memlint
from memlint.confirm import ConfirmError, Measurement, measure

pytest.importorskip("onnxruntime")


def _mlp(tmp_path: Path) -> Path:
    """x[batch,64] @ w[64,32] + b -> Relu: three nodes."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(32, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
         helper.make_node("Add", ["h", "b"], ["z"], name="add"),
         helper.make_node("Relu", ["z"], ["y"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def test_an_onnx_model_is_measured_with_onnxruntime(tmp_path):
    report = memlint.lint(_mlp(tmp_path), hw="cpu", dims={"batch": 4})
    said: list[str] = []
    steps: list[tuple[int, int, str]] = []
    measured = measure(report, runs=1, provider="cpu", announce=said.append,
                       progress=lambda *step: steps.append(step))
    assert isinstance(measured, Measurement)
    assert (measured.provider, measured.device) == ("CPUExecutionProvider", "cpu")
    assert measured.runtime.startswith("onnxruntime ")
    assert [n.name for n in measured.nodes] == ["mm", "add", "relu"]
    assert said == ["measuring with onnxruntime CPUExecutionProvider (cpu) against the "
                    "generic-cpu spec"]
    # 4 sessions x 3 warm-ups + 3 x 1 timed/profiled run + min(1, 3) optimised profiled = 16
    assert [s[:2] for s in steps] == [(i, 16) for i in range(1, 17)]


def test_a_refused_onnx_run_announces_nothing(tmp_path):
    path = _mlp(tmp_path)
    said: list[str] = []
    report = memlint.lint(path, hw="cpu", dims={"batch": 1})
    with pytest.raises(ConfirmError, match="no NopeExecutionProvider"):
        measure(report, runs=1, provider="NopeExecutionProvider", announce=said.append)
    gpu = memlint.lint(path, hw="a100", dims={"batch": 1})
    with pytest.raises(ConfirmError, match=r"\(gpu\) with a run on CPUExecutionProvider"):
        measure(gpu, runs=1, provider="cpu", announce=said.append)
    assert said == []


def test_a_torch_graph_is_measured_eagerly_from_its_source():
    torch = pytest.importorskip("torch")
    from torch_blocks import Block  # pytest puts tests/ on sys.path

    from memlint.frontends.fx import TorchSource

    torch.manual_seed(0)
    model, x = torch.nn.Sequential(Block(64, 4)).eval(), torch.randn(1, 16, 64)
    report = memlint.lint(model, example_inputs=(x,), hw="cpu")
    said: list[str] = []
    steps: list[tuple[int, int, str]] = []
    measured = measure(report, torch_source=TorchSource(model, (x,)), runs=1, provider="cpu",
                       announce=said.append, progress=lambda *step: steps.append(step))
    assert (measured.provider, measured.device) == ("eager (cpu)", "cpu")
    assert measured.not_run == () and len(measured.nodes) == len(report.nodes)
    assert said == [f"measuring with torch {torch.__version__} eager on cpu against the "
                    "generic-cpu spec"]
    # 3 warm-ups + 1 run timing every node + 1 timed run = 5
    assert [s[:2] for s in steps] == [(i, 5) for i in range(1, 6)]
    # a torch graph needs its source to run again; an unknown device is refused before a run
    with pytest.raises(ConfirmError, match="torch_source"):
        measure(report, runs=1, announce=said.append)
    with pytest.raises(ConfirmError, match="unknown device"):
        measure(report, torch_source=TorchSource(model, (x,)), provider="tpu",
                announce=said.append)
    assert len(said) == 1


def test_a_saved_program_is_measured_from_its_path(tmp_path):
    torch = pytest.importorskip("torch")
    from torch_blocks import Block

    torch.manual_seed(0)
    model, x = torch.nn.Sequential(Block(64, 4)).eval(), torch.randn(1, 16, 64)
    path = tmp_path / "block.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(path))
    report = memlint.lint(path, hw="cpu")
    measured = measure(report, torch_source=str(path), runs=1, provider="cpu")
    assert measured.provider == "eager (cpu)" and measured.unoptimised_latency_s > 0
    assert not any("synthesised" in note for note in measured.notes)  # the recorded inputs
