"""If nodes decided before run time are taken statically; one decided at run time is costed
through both branches and the report says so (memlint.frontends.onnx_control,
memlint.costs.control_flow)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from memlint.api import analyse, lint
from memlint.errors import DimError
from memlint.frontends.onnx import load_onnx
from memlint.hardware import resolve

FP32 = 4
# x [4, 8] fp32; then_branch: y = x @ W (W [8, 16]); else_branch: y = Relu(x @ V) (V [8, 16])
# then: MatMul 2*4*8*16 = 1,024 FLOPs; reads x 128 B + W 512 B, writes y 256 B = 896 B
THEN_FLOPS, THEN_BYTES = 2 * 4 * 8 * 16, (4 * 8 + 8 * 16 + 4 * 16) * FP32
# else: the same MatMul 896 B, then Relu: 64 ops, reads 256 B, writes 256 B -> 1,408 B
ELSE_FLOPS, ELSE_BYTES = THEN_FLOPS + 4 * 16, THEN_BYTES + 2 * 4 * 16 * FP32


def _branches() -> tuple[onnx.GraphProto, onnx.GraphProto]:
    out = helper.make_tensor_value_info("y_branch", TensorProto.FLOAT, [4, 16])
    then = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y_branch"], name="then_mm")], "then", [], [out]
    )
    other = helper.make_graph(
        [helper.make_node("MatMul", ["x", "V"], ["h"], name="else_mm"),
         helper.make_node("Relu", ["h"], ["y_branch"], name="else_relu")],
        "else", [], [out],
    )  # fmt: skip
    return then, other


def _model(tmp_path, cond_nodes: list[onnx.NodeProto], inputs: list, cond: str = "cond") -> str:
    then, other = _branches()
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "V"),
    ]
    graph = helper.make_graph(
        [*cond_nodes,
         helper.make_node("If", [cond], ["y"], name="branch", then_branch=then,
                          else_branch=other)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8]), *inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])],
        weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    path = tmp_path / "if.onnx"
    onnx.save(model, path)
    return str(path)


@pytest.fixture
def flag_model(tmp_path):
    """The If reads a bool graph input, as Optimum's merged decoders read use_cache_branch."""
    flag = helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1])
    return _model(tmp_path, [], [flag], cond="use_cache_branch")


def _totals(path: str, **kwargs):
    return analyse(load_onnx(path, **kwargs), resolve("a100"))


@pytest.mark.parametrize(("value", "branch", "flops", "nbytes"), [
    (True, "then_branch", THEN_FLOPS, THEN_BYTES),
    (False, "else_branch", ELSE_FLOPS, ELSE_BYTES),
])  # fmt: skip
def test_if_on_a_bound_input_takes_its_branch(flag_model, value, branch, flops, nbytes):
    report = _totals(flag_model, input_values={"use_cache_branch": value})
    assert "If" not in [n.op_type for n in report.nodes]  # inlined: costed node by node
    assert report.summary.flops == flops
    assert report.summary.bytes_read.total + report.summary.bytes_written.total == nbytes
    assert report.coverage.nodes_modelled == report.coverage.nodes_total
    (line,) = report.model.control_flow
    assert f"use_cache_branch = {value}" in line and f"{branch} taken statically" in line
    assert dict(report.model.input_values) == {"use_cache_branch": str(value)}
    assert "use_cache_branch" not in report.model.graph.inputs


def test_an_unknown_input_value_is_an_error(flag_model):
    with pytest.raises(DimError, match="no_such_flag: no such input"):
        load_onnx(flag_model, input_values={"no_such_flag": True})


def test_if_whose_condition_folds_is_taken_statically(tmp_path):
    # cond = (Shape(x)[0] == 4): known once shapes are inferred (x is [4, 8]) -> then_branch
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Constant", [], ["zero"], name="zero",
                         value=numpy_helper.from_array(np.array(0, dtype=np.int64))),
        helper.make_node("Gather", ["shape", "zero"], ["rows"], name="rows"),
        helper.make_node("Constant", [], ["four"], name="four",
                         value=numpy_helper.from_array(np.array(4, dtype=np.int64))),
        helper.make_node("Equal", ["rows", "four"], ["cond"], name="equal"),
    ]  # fmt: skip
    report = _totals(_model(tmp_path, nodes, []))
    assert "If" not in [n.op_type for n in report.nodes]
    (matmul,) = [n for n in report.nodes if n.op_type == "MatMul"]
    assert matmul.name == "then_mm" and matmul.cost.flops == THEN_FLOPS
    (line,) = report.model.control_flow
    assert "cond = True (a constant before run time); then_branch taken statically" in line


def test_if_with_a_constant_condition_is_taken_statically(tmp_path):
    const = helper.make_node("Constant", [], ["cond"], name="c",
                             value=numpy_helper.from_array(np.array(False)))
    report = _totals(_model(tmp_path, [const], []))
    assert report.summary.flops == ELSE_FLOPS
    assert "else_branch taken statically" in report.model.control_flow[0]


def test_dynamic_if_is_costed_through_both_branches_and_says_so(flag_model):
    report = lint(flag_model, hw="a100")
    (node,) = [n for n in report.nodes if n.op_type == "If"]
    # both branches costed; the more expensive (else: 1,408 B > 896 B) is counted
    assert node.cost.flops == ELSE_FLOPS
    assert node.cost.bytes_moved == ELSE_BYTES
    note = node.cost.note
    assert "both branches costed" in note
    assert f"else_branch {ELSE_FLOPS:,} FLOPs, {ELSE_BYTES:,} B" in note
    assert f"then_branch {THEN_FLOPS:,} FLOPs, {THEN_BYTES:,} B" in note
    assert "counted as the more expensive (else_branch)" in note
    (line,) = report.model.control_flow
    assert "decided at run time; both branches costed" in line
    assert report.to_dict()["model"]["control_flow"] == [line]
    from memlint.report import render

    assert "control flow" in render(report, "text")
