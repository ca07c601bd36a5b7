"""Measured confirmation: inputs, weights, profiler parsing, name mapping, verdicts, refusals.

Every model here is tiny (onnx.helper) or a shipped sample; runs use the CPU provider with one
timed run or two, so the whole file takes a few seconds.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import memlint
from memlint.confirm import ConfirmError, Measurement, Verdict, confirm
from memlint.confirm import inputs as inputs_module
from memlint.confirm import run as run_module
from memlint.confirm.inputs import GraphNode, index_bounds, prepare_model, synthesize_inputs
from memlint.confirm.profile import replaced_nodes
from memlint.confirm.verdicts import judge
from memlint.core.measurement import NodeMeasurement
from memlint.findings import Finding, Severity
from memlint.hardware import machine
from memlint.hardware.ort_profile import parse_trace, read_trace

pytest.importorskip("onnxruntime")

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
DECODER = SAMPLES / "gpt2_decoder_step.onnx"


def _save(tmp_path: Path, nodes, inputs, outputs, initializers=(), name="m.onnx") -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _mlp(tmp_path: Path, names=("mm", "add", "relu")) -> Path:
    """x[4,64] @ w[64,32] + b -> Relu: three nodes, named as given ("" for unnamed)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(32, np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name=names[0]),
        helper.make_node("Add", ["h", "b"], ["z"], name=names[1]),
        helper.make_node("Relu", ["z"], ["y"], name=names[2]),
    ]
    return _save(
        tmp_path, nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])],
        [w, b],
    )


# --- a measured run -------------------------------------------------------------------------


def test_confirm_runs_a_tiny_model_and_joins_every_kernel_to_its_node(tmp_path):
    report = memlint.lint(_mlp(tmp_path), hw="cpu", dims={"batch": 4})
    steps: list[tuple[int, int, str]] = []
    measured = confirm(report, runs=2, warmup=1, progress=lambda *a: steps.append(a))
    assert isinstance(measured, Measurement)
    assert (measured.provider, measured.device, measured.weights) == (
        "CPUExecutionProvider", "cpu", "real")
    assert [n.name for n in measured.nodes] == ["mm", "add", "relu"]
    assert measured.unmapped_kernels == () and measured.not_run == ()
    assert measured.unoptimised_latency_s > 0 and measured.optimised_latency_s > 0
    assert all(n.measured_s >= 0 for n in measured.nodes)
    # MatMul [4,64]x[64,32]: 2*4*64*32 = 16384 FLOPs
    assert measured.node("mm").flops == 16384
    # progress: 4 warm-ups + 3*2 runs + min(2, 3) optimised profiled runs = 12, counted 1..12
    assert [s[0] for s in steps] == list(range(1, 13)) and {s[1] for s in steps} == {12}
    # the optimised run's kernels all map back to model nodes
    assert measured.kernels and all(k.nodes for k in measured.kernels)
    assert measured.total_error == pytest.approx(
        (report.summary.predicted_latency_s - measured.unoptimised_latency_s)
        / measured.unoptimised_latency_s
    )
    assert "generic-cpu" in measured.notes[0]  # an uncalibrated spec is said so


def test_empty_and_duplicate_node_names_map_to_the_ir_names(tmp_path):
    # Two nodes named "dup" and one unnamed: onnxruntime refuses duplicates; the frontend names
    # the second op_type + "_" + index and the unnamed one likewise, and the profile must too.
    report = memlint.lint(_mlp(tmp_path, names=("dup", "dup", "")), hw="cpu", dims={"batch": 2})
    ir_names = [n.name for n in report.nodes]
    assert ir_names == ["dup", "Add_1", "Relu_2"]
    measured = confirm(report, runs=1, warmup=0)
    assert [n.name for n in measured.nodes] == ir_names
    assert measured.unmapped_kernels == ()


def test_rename_nodes_matches_by_output(tmp_path):
    report = memlint.lint(_mlp(tmp_path, names=("", "", "")), hw="cpu", dims={"batch": 1})
    proto = onnx.load(str(tmp_path / "m.onnx"))
    inputs_module.rename_nodes(proto, report.model.graph)
    assert [n.name for n in proto.graph.node] == [n.name for n in report.nodes]


def test_subgraph_kernels_count_inside_their_if_node(tmp_path):
    def branch(op: str) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node(op, ["x", "x"], ["out"], name="inner")], op, [],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [8])],
        )

    path = _save(
        tmp_path,
        [helper.make_node("If", ["cond"], ["y"], name="if", then_branch=branch("Add"),
                          else_branch=branch("Mul"))],
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])],
    )
    measured = confirm(memlint.lint(path, hw="cpu"), runs=1, warmup=0)
    # the branch nodes (both named "inner") are renamed memlint.subgraph/N and dropped
    assert [n.name for n in measured.nodes] == ["if"] and measured.unmapped_kernels == ()


def test_gpu_spec_on_a_cpu_run_is_refused_with_one_line(tmp_path):
    report = memlint.lint(_mlp(tmp_path), hw="a100", dims={"batch": 1})
    with pytest.raises(ConfirmError) as info:
        confirm(report, runs=1, provider="cpu")
    message = str(info.value)
    assert "\n" not in message and "(gpu)" in message and "memlint hw calibrate" in message


class _FakeOrt:
    """onnxruntime as onnxruntime-gpu presents itself: CUDA listed; a probe session gets it
    only when `gpu_answers` (a driver and a GPU are there)."""

    def __init__(self, gpu_answers: bool) -> None:
        self.answers = gpu_answers

    def get_available_providers(self) -> list[str]:
        return [run_module.CUDA, run_module.CPU]

    def SessionOptions(self):  # noqa: ANN201, N802 - onnxruntime's spelling
        return type("Options", (), {})()

    def InferenceSession(self, model, options, providers):  # noqa: ANN001, ANN201, N802
        got = providers if self.answers else [run_module.CPU]
        return type("Session", (), {"get_providers": lambda session: got})()


def test_cuda_is_chosen_when_a_gpu_answers_the_probe():
    assert run_module.choose_provider(_FakeOrt(True), None) == (run_module.CUDA, "gpu")
    assert run_module.choose_provider(_FakeOrt(True), "cpu") == (run_module.CPU, "cpu")
    # onnxruntime-gpu without a driver or a GPU: auto falls back to the CPU, cuda is refused
    assert run_module.choose_provider(_FakeOrt(False), "auto") == (run_module.CPU, "cpu")
    with pytest.raises(ConfirmError, match="no GPU answered"):
        run_module.choose_provider(_FakeOrt(False), "cuda")


def test_a_gpu_run_needs_a_gpu_spec(tmp_path):
    gpu = memlint.lint(_mlp(tmp_path), hw="a100", dims={"batch": 1}).hardware
    cpu = memlint.lint(_mlp(tmp_path), hw="cpu", dims={"batch": 1}).hardware
    run_module.check_spec(gpu, "gpu", run_module.CUDA)  # an A100 prediction, a CUDA run: fine
    with pytest.raises(ConfirmError, match=r"\(cpu\) with a run on CUDAExecutionProvider"):
        run_module.check_spec(cpu, "gpu", run_module.CUDA)


def test_a_provider_onnxruntime_lacks_is_refused(tmp_path):
    report = memlint.lint(_mlp(tmp_path), hw="cpu", dims={"batch": 1})
    with pytest.raises(ConfirmError, match="no NopeExecutionProvider"):
        confirm(report, runs=1, provider="NopeExecutionProvider")


def test_ctrl_c_propagates_after_the_sessions_are_released(tmp_path, monkeypatch):
    report = memlint.lint(_mlp(tmp_path), hw="cpu", dims={"batch": 1})
    sessions: list[weakref.ref] = []
    real = run_module._session

    def tracked(*args, **kwargs):
        session = real(*args, **kwargs)
        sessions.append(weakref.ref(session))
        return session

    def interrupt(done: int, total: int, phase: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_session", tracked)
    with pytest.raises(KeyboardInterrupt):
        confirm(report, runs=3, warmup=1, progress=interrupt)
    assert sessions and all(ref() is None for ref in sessions)


# --- inputs and weights ---------------------------------------------------------------------


def test_synthesised_inputs_for_the_sample_decoder():
    dims = {"batch_size": 2, "sequence_length": 3, "past_sequence_length": 5}
    model = memlint.lint(DECODER, hw="cpu", dims=dims).model
    # input_ids index wte [1000, 128], position_ids index wpe [256, 128]
    assert index_bounds(model.graph) == {"input_ids": 1000, "position_ids": 256}
    feeds = synthesize_inputs(model)
    ids = feeds["input_ids"]
    assert ids.shape == (2, 3) and ids.dtype == np.int64 and 0 <= ids.min() and ids.max() < 1000
    assert feeds["position_ids"].tolist() == [[5, 6, 7], [5, 6, 7]]  # after 5 past tokens
    assert feeds["attention_mask"].shape == (2, 8) and (feeds["attention_mask"] == 1).all()
    key = feeds["past_key_values.0.key"]
    assert key.shape == (2, 4, 5, 32) and key.dtype == np.float32  # the bound past length
    assert 0 < np.abs(key).max() < 0.5
    assert synthesize_inputs(model)["input_ids"].tolist() == ids.tolist()  # seeded


def test_position_ids_are_clipped_to_the_position_table():
    dims = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 250}
    model = memlint.lint(DECODER, hw="cpu", dims=dims).model
    assert synthesize_inputs(model)["position_ids"].tolist() == [[250]]  # table has 256 rows


def test_the_sample_decoder_runs_with_synthesised_inputs():
    dims = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 16}
    report = memlint.lint(DECODER, hw="cpu", dims=dims)
    measured = confirm(report, runs=1, warmup=0)
    assert len(measured.nodes) > 100 and measured.unmapped_kernels == ()
    # Constant nodes become initializers in onnxruntime: no kernel of their own
    constants = {n.name for n in report.nodes if n.op_type == "Constant"}
    assert constants and constants <= set(measured.not_run)
    codes = {c.code for c in measured.findings}
    assert "ML101" in codes
    assert all(c.verdict in Verdict for c in measured.findings)


def _external_model(tmp_path: Path) -> Path:
    """y = x @ w with w[64, 32] float32 stored in w.bin, which is never written."""
    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([64, 32])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(64 * 32 * 4))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    return _save(
        tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
        [w],
    )


def test_missing_external_weights_are_made_up_in_memory(tmp_path):
    report = memlint.lint(_external_model(tmp_path), hw="cpu")
    prepared = prepare_model(report.model)
    assert prepared.weights == "random" and prepared.random_bytes == 64 * 32 * 4
    weight = prepared.external["w"]
    assert weight.shape == (64, 32) and weight.dtype == np.float32 and weight.std() < 0.1
    measured = confirm(report, runs=1, warmup=0)
    assert measured.weights == "random" and [n.name for n in measured.nodes] == ["mm"]
    assert any("weights: random" in note for note in measured.notes)


def test_present_external_weights_are_the_real_ones(tmp_path):
    path = _external_model(tmp_path)
    (tmp_path / "w.bin").write_bytes(np.ones((64, 32), np.float32).tobytes())
    prepared = prepare_model(memlint.lint(path, hw="cpu").model)
    assert prepared.weights == "real" and not prepared.external


def test_random_weights_that_do_not_fit_in_ram_are_refused(tmp_path, monkeypatch):
    report = memlint.lint(_external_model(tmp_path), hw="cpu")
    monkeypatch.setattr(inputs_module, "available_memory_bytes", lambda: 1000)
    with pytest.raises(ConfirmError) as info:
        prepare_model(report.model)
    # 8192 B of weights for onnxruntime's copy + 8192 B of random values > 1000 B
    assert "would need" in str(info.value) and "available" in str(info.value)
    assert "\n" not in str(info.value)


def test_available_memory_reads_the_system():
    free = machine.available_memory_bytes()
    assert free is None or free > 0
    total = machine.total_memory_bytes()
    assert free is None or total is None or total >= free


# --- the profiler trace ---------------------------------------------------------------------


def _event(name: str, ts: float, dur: float, cat: str = "Node", op: str = "Add") -> dict:
    return {"cat": cat, "name": name, "ts": ts, "dur": dur, "ph": "X",
            "args": {"op_name": op, "provider": "CPUExecutionProvider"}}


def test_parse_trace_splits_runs_drops_warmup_subgraphs_and_the_profiler_floor():
    events = [
        _event("model_run", 0, 100, cat="Session"),
        _event("a_kernel_time", 10, 40),
        _event("b_kernel_time", 60, 20, op="Mul"),
        _event("model_run", 200, 100, cat="Session"),
        _event("a_kernel_time", 210, 30),
        _event("b_kernel_time", 250, 10, op="Mul"),
        _event("b_kernel_time", 270, 10, op="Mul"),  # ran twice in this run: times add up
        _event("memlint.subgraph/0:Add_kernel_time", 280, 5),  # inside its parent's time
        _event("model_run", 400, 100, cat="Session"),
        _event("a_kernel_time", 410, 50),
        _event("stray_kernel_time", 900, 5),  # outside every run
    ]
    trace = parse_trace(events, skip=1, floor_s=2e-6)
    # runs 2 and 3 kept; each event loses 2 us: a = 28 us, 48 us; b = 8 + 8 = 16 us, absent
    assert len(trace.runs) == 2
    assert trace.runs[0]["a"] == pytest.approx(28e-6)
    assert trace.runs[0]["b"] == pytest.approx(16e-6)
    assert trace.median("a") == pytest.approx(38e-6)
    assert trace.median("b") == pytest.approx(8e-6)  # median of 16 us and 0
    assert trace.op_types == {"a": "Add", "b": "Mul"}
    assert trace.median_total() == pytest.approx((44e-6 + 48e-6) / 2)


def test_read_trace_of_a_real_profile(tmp_path):
    import onnxruntime as ort

    path = _mlp(tmp_path)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, {"x": np.ones((2, 64), np.float32)})
    trace = read_trace(session.end_profiling(), skip=1)
    assert len(trace.runs) == 2
    assert trace.op_types == {"mm": "MatMul", "add": "Add", "relu": "Relu"}
    assert set(trace.providers.values()) == {"CPUExecutionProvider"}
    assert all(trace.median(n) > 0 for n in ("mm", "add", "relu"))


# --- fused kernels mapped back --------------------------------------------------------------


def test_a_fused_kernel_maps_to_the_nodes_between_its_inputs_and_outputs():
    original = [
        GraphNode("mm", "MatMul", ("x", "w"), ("h",)),
        GraphNode("add", "Add", ("h", "b"), ("z",)),
        GraphNode("gelu", "Gelu", ("z",), ("g",)),
        GraphNode("out", "MatMul", ("g", "w2"), ("y",)),
    ]
    optimised = [
        GraphNode("fused", "FusedMatMulBiasGelu", ("x", "w", "b"), ("g",)),
        GraphNode("reorder", "ReorderInput", ("g",), ("g_nchwc",)),  # a new tensor only
        GraphNode("out", "MatMul", ("g_nchwc", "w2"), ("y",)),
    ]
    mapping = replaced_nodes(original, optimised, {"x", "w", "b", "w2"})
    assert mapping == {"fused": ("add", "gelu", "mm"), "reorder": (), "out": ("out",)}


# --- verdicts -------------------------------------------------------------------------------


def _finding(nodes: tuple[str, ...], time_s: float | None = 1e-3) -> Finding:
    return Finding("ML101", "low-intensity-matmul", Severity.WARNING, "m", nodes=nodes,
                   time_s=time_s)


def _node(name: str, measured: float, compute: float, memory: float) -> NodeMeasurement:
    return NodeMeasurement(name, "MatMul", measured, max(compute, memory), 0, 0, compute, memory)


def test_verdicts_follow_the_documented_shares():
    nodes = {
        # memory share 80 us / 100 us = 0.8, compute 0.05: memory-bound as predicted
        "gemv": _node("gemv", 100e-6, 5e-6, 80e-6),
        # compute share 0.9: compute-bound in practice
        "gemm": _node("gemm", 100e-6, 90e-6, 10e-6),
        # memory share 0.1 and compute 0.01: overhead sets the time
        "tiny": _node("tiny", 10e-6, 0.1e-6, 1e-6),
        # memory share 2.0: faster than the memory roof (cache-resident), still confirmed
        "cached": _node("cached", 10e-6, 0.1e-6, 20e-6),
    }
    assert judge(_finding(("gemv",)), nodes).verdict is Verdict.CONFIRMED
    gemm = judge(_finding(("gemm",)), nodes)
    assert gemm.verdict is Verdict.NOT_CONFIRMED and "compute-bound" in gemm.reason
    tiny = judge(_finding(("tiny",)), nodes)
    assert tiny.verdict is Verdict.NOT_CONFIRMED and tiny.memory_share == pytest.approx(0.1)
    cached = judge(_finding(("cached",)), nodes)
    assert cached.verdict is Verdict.CONFIRMED and "cache" in cached.reason
    # both together: memory 81 us / 110 us = 0.74, compute 5.1 us / 110 us: confirmed
    both = judge(_finding(("gemv", "tiny", "gone")), nodes)
    assert both.verdict is Verdict.CONFIRMED and both.nodes_measured == 2
    assert both.measured_s == pytest.approx(110e-6) and "2 of 3 nodes" in both.reason


def test_findings_without_time_or_timed_nodes_are_not_measured():
    nodes = {"a": _node("a", 1e-5, 0, 1e-5)}
    graph_wide = judge(_finding((), time_s=None), nodes)
    assert graph_wide.verdict is Verdict.NOT_MEASURED and "graph as a whole" in graph_wide.reason
    folded = judge(_finding(("constant",)), nodes)
    assert folded.verdict is Verdict.NOT_MEASURED and "kernel" in folded.reason
