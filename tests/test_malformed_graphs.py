"""Malformed graphs (issue 23): a node that cannot be costed or checked is reported, not fatal;
every refusal names the real problem in one line.

Each case is the smallest hand-built model of a bucket bench/fuzz.py's `exports` target found
in mutants of real exports (bench/fuzz_exports.py).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import memlint
from memlint.cli import main
from memlint.costs import CostStatus
from memlint.errors import MemlintError


def _vi(name: str, shape, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _save(folder: Path, nodes, inputs, outputs=None, inits=(), opsets=(("", 17),)) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs or [_vi("y", None)], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _cli_error(path: Path, capsys) -> str:
    """The one line `memlint PATH` prints on stderr, with exit code 2."""
    assert main([str(path), "--isolated"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


# -- scope 2: a node that does not fit is reported, the rest is linted --------------------------


def test_node_whose_output_shape_cannot_be_derived_is_unresolved(tmp_path: Path) -> None:
    # An If swapped for a MatMul of mismatched operands keeps its branches: onnx infers nothing
    # for it. Was: "cost formula for MatMul failed on node 'mm': 'output 0 of mm has no shape'".
    branch = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "b", [], [_vi("t", [2, 3])])
    path = _save(tmp_path, [
        helper.make_node("MatMul", ["x", "x"], ["h"], name="mm", then_branch=branch,
                         else_branch=branch),
        helper.make_node("Relu", ["x"], ["y"], name="relu"),
    ], [_vi("x", [2, 3])])
    report = memlint.lint(path, hw="a100")
    status = {n.name: n.cost.status for n in report.nodes}
    assert status == {"mm": CostStatus.UNRESOLVED, "relu": CostStatus.MODELLED}
    ml901 = next(f for f in report.findings if f.code == "ML901")
    assert ml901.nodes == ("mm",)
    assert "first 'mm': shape unknown for h" in ml901.message


def test_formula_that_meets_shapes_it_does_not_expect_leaves_the_node_unresolved(
        monkeypatch) -> None:
    # A formula reading an output the node does not have (an IndexError / KeyError inside a
    # formula) makes the node UNRESOLVED with a note, never an abort.
    from memlint.costs import OpInfo, register, registry

    monkeypatch.setattr(registry, "_TABLE", dict(registry._TABLE))  # the test op goes with it

    @register("ReadsOutput5", domain="test.issue23", info=OpInfo("elementwise"))
    def _reads_output_5(ctx):
        return ctx.cost(ctx.out_numel(5))

    model = _conv_with_rank1_output()
    node = dataclasses.replace(model.graph.nodes[0], op_type="ReadsOutput5", domain="test.issue23")
    cost = memlint.costs.cost_of(node, model.graph)
    assert cost.status is CostStatus.UNRESOLVED
    assert cost.note == ("the test.issue23::ReadsOutput5 formula cannot use this node's shapes: "
                         "output 5 of conv has no shape")


def test_rule_skips_a_conv_with_a_malformed_output_shape(caplog) -> None:
    # Was: "rule ML101 crashed on node 'conv' (Conv): IndexError: tuple index out of range".
    model = _conv_with_rank1_output()
    with caplog.at_level(logging.DEBUG, logger="memlint.engine"):
        report = memlint.lint(model, hw="a100")
    assert not [f for f in report.findings if f.code == "ML101"]
    skipped = [r.getMessage() for r in caplog.records if "skipped node 'conv'" in r.getMessage()]
    assert any(m.startswith("rule ML101 (") and "IndexError" in m for m in skipped), skipped


# A rule exception that is not a shape mismatch (ZeroDivisionError, TypeError, ...) still stops
# the run naming rule and node: tests/test_engine.py::test_a_crashing_rule_names_rule_and_node.


def _conv_with_rank1_output() -> memlint.ir.Model:
    """A Conv loaded from a valid file, then its output given a one-axis shape (what a fuzzed
    value_info or a second writer leaves behind)."""
    import tempfile

    from memlint.frontends.onnx import load_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = _save(Path(tmp), [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                     [_vi("x", [1, 3, 8, 8])], inits=[
                         helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.1] * 108)])
        model = load_onnx(path)
    graph = model.graph
    values = dict(graph.values)
    values["y"] = dataclasses.replace(values["y"], shape=(36,))
    return dataclasses.replace(model, graph=dataclasses.replace(graph, values=values))


# -- scope 3: every refusal names the real problem ----------------------------------------------


def test_two_nodes_writing_one_value(tmp_path: Path, capsys) -> None:
    # Was: "the graph has a cycle through node 'B'" (B reads the y that A and B both write).
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="A"),
                            helper.make_node("Neg", ["y"], ["y"], name="B")], [_vi("x", [2])])
    assert _cli_error(path, capsys) == (
        f"memlint: error: {path}: value 'y' is written by nodes 'A' and 'B'; a value has one "
        "producer in ONNX: rename one of the outputs"
    )


def test_literal_zero_dim(tmp_path: Path) -> None:
    # Was: "dim '0' evaluates to 0; bind its names to larger values" (it has no names).
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["0", 4])])
    with pytest.raises(MemlintError) as caught:
        memlint.lint(path, hw="a100")
    assert str(caught.value) == (
        "dim '0' is the constant 0 (it names no dim to bind); no tensor axis can have that "
        "size: fix the export, or give the input's shape with --input-shape NAME=..."
    )


def test_negative_dim_in_a_constant(tmp_path: Path, capsys) -> None:
    # Was: "tensor 'c' would hold more than 2**63 - 1 elements" (two negative dims multiply).
    value = TensorProto(name="v", data_type=TensorProto.FLOAT, dims=[-(2**62), -4])
    path = _save(tmp_path, [helper.make_node("Constant", [], ["c"], name="const", value=value),
                            helper.make_node("Add", ["x", "c"], ["y"])], [_vi("x", [2])])
    assert _cli_error(path, capsys) == (
        f"memlint: error: {path}: Constant node 'const' holds a tensor with a negative dim "
        f"[{-(2**62)}, -4]; the file is corrupt: re-export the model"
    )


def test_node_with_fewer_inputs_than_its_op_takes(tmp_path: Path, capsys) -> None:
    # Was: "onnx shape inference failed: [ShapeInferenceError] ... Input 0 is out of bounds."
    path = _save(tmp_path, [helper.make_node("TopK", [], ["y", "i"], name="topk")], [])
    assert _cli_error(path, capsys).startswith(
        "memlint: error: node 'topk' (TopK) has 0 inputs, its op takes 2; onnx shape inference "
        "cannot run on it ([ShapeInferenceError]"
    )


def test_node_in_a_domain_the_model_does_not_import(tmp_path: Path, capsys) -> None:
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    path = _save(tmp_path, [helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="u",
                                             domain="ai.onnx.ml")], [_vi("x", [2])],
                 inits=[axes])
    assert _cli_error(path, capsys) == (
        "memlint: error: node 'u' (Unsqueeze) is in domain 'ai.onnx.ml', which the model's "
        "opset_import does not list (it lists '' (ai.onnx)): fix the node's domain or import the "
        "domain's opset"
    )


def test_file_whose_bytes_are_not_a_model(tmp_path: Path, capsys) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x0a\xff\xff\xff\xff\x0f")  # a length prefix running past the end
    assert _cli_error(path, capsys) == (
        f"memlint: error: {path}: not a readable ONNX model: its bytes do not parse as an ONNX "
        "ModelProto (Error parsing message with type 'onnx.ModelProto': Wire format was corrupt); "
        "the file is truncated "
        "or damaged (an interrupted download or copy) or another format: fetch or export it again"
    )


def test_a_negative_inferred_size_is_unresolved_never_negative_bytes(tmp_path) -> None:
    # Expand of a [1,4] float to the constant shape [-3, 4]: onnx's shape inference passes the
    # -3 on, which made the output -12 elements, -48 B written and read downstream (a fuzzed
    # GPT-2 then crashed ML106 dividing by its zero bytes moved). A negative dim is no size: the
    # tensor is unresolved, and its nodes are reported as such.
    import numpy as np
    from onnx import numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "s"], ["y"], name="expand"),
         helper.make_node("Relu", ["y"], ["z"], name="relu")], "g",
        [_vi("x", [1, 4])], [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([-3, 4], dtype=np.int64), "s")],
    )  # fmt: skip
    path = tmp_path / "negative.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    report = memlint.lint(path, hw="a100")
    assert {n.name: n.cost.status for n in report.nodes} == {
        "expand": CostStatus.UNRESOLVED, "relu": CostStatus.UNRESOLVED}
    for node in report.nodes:
        counts = (*vars(node.cost.bytes_read).values(), *vars(node.cost.bytes_written).values())
        assert min(counts) >= 0, node


def test_an_if_whose_branch_returns_its_own_output_ends(tmp_path) -> None:
    # Found by bench/fuzz_exports.py (a broken subgraph in a GPT-2): a branch whose output names
    # the If's own output was inlined as Identity(y) -> y, and the fusion analysis walked that
    # view back to itself for ever. Now the branch adds no copy, and the lint ends.
    import subprocess
    import sys

    import numpy as np
    from onnx import numpy_helper

    def branch(name: str) -> onnx.GraphProto:
        return helper.make_graph([], name, [], [_vi("y", [2])])

    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(True))),
         helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch("then"),
                          else_branch=branch("else")),
         helper.make_node("Relu", ["y"], ["z"], name="relu")], "g",
        [_vi("x", [2])], [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )  # fmt: skip
    path = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    done = subprocess.run([sys.executable, "-m", "memlint.cli", str(path), "--isolated",
                           "--fail-on", "never"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "relu" in done.stdout


def test_fusion_walks_a_view_cycle_once() -> None:
    # A view that is its own input (a malformed graph the frontend did not catch) must not
    # hang the element-wise chain analysis.
    from types import MappingProxyType

    from memlint.analysis import fusion
    from memlint.analysis.graph_index import GraphIndex
    from memlint.core.report import analyse
    from memlint.hardware import resolve
    from memlint.ir import DType, Graph, Model, Node, Value, ValueKind

    values = {n: Value(n, (2,), DType.FLOAT32, ValueKind.ACTIVATION) for n in ("a", "b")}
    nodes = (Node("loop", "Identity", "", ("a",), ("a",)), Node("relu", "Relu", "", ("a",), ("b",)))
    graph = Graph("g", nodes, MappingProxyType(values), ("a",), ("b",))
    model = Model(graph=graph, source="cycle.onnx", format="onnx")
    report = analyse(model, resolve("a100", ()))
    index = GraphIndex(model, report.nodes)
    assert fusion.source(index, "a") == "a"
    assert {n.name for n in fusion.readers(index, "a")} == {"relu"}
    fusion.find_chains(index)  # ends
