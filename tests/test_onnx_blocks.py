"""Repeated blocks inferred once (memlint.frontends.onnx_blocks): a load that folds them gives
the IR of a load that infers every node, and a sweep's figures from a load that keeps one
block are those of a full report. Tiny graphs built here, plus the 2-layer sample GPT-2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import memlint.frontends.onnx as onnx_frontend
from memlint.api import load, parse
from memlint.core.report import analyse
from memlint.hardware import resolve
from memlint.llm.steps import figures, folded_figures

GPT2 = Path(__file__).resolve().parent.parent / "sample_models" / "gpt2_decoder_step.onnx"


def _blocks_model(path: Path, blocks: int, *, grow: bool = False) -> Path:
    """x [batch, 128] -> Relu, then `blocks` times: MatMul by its own [128, 128] weight (large
    enough to be a weight, not a constant), Add its own bias, Mul by a shared scale (grow:
    Concat the block's input and output on axis 0, so each block doubles the rows and hands on
    a type it did not receive), then Sigmoid."""
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="pre/Relu")]
    inits = [numpy_helper.from_array(np.full([1], 0.5, np.float32), "scale")]
    x = "h"
    for k in range(blocks):
        w = numpy_helper.from_array(np.full([128, 128], k, np.float32), f"w{k}")
        b = numpy_helper.from_array(np.full([128], 1.0, np.float32), f"b{k}")
        inits += [w, b]
        nodes += [
            helper.make_node("MatMul", [x, f"w{k}"], [f"m{k}"], name=f"/layers.{k}/MatMul"),
            helper.make_node("Add", [f"m{k}", f"b{k}"], [f"a{k}"], name=f"/layers.{k}/Add"),
            helper.make_node("Mul", [f"a{k}", "scale"], [f"y{k}"], name=f"/layers.{k}/Mul"),
        ]
        if grow:
            nodes.append(helper.make_node("Concat", [x, f"y{k}"], [f"c{k}"], axis=0,
                                          name=f"/layers.{k}/Concat"))
        x = f"c{k}" if grow else f"y{k}"
    nodes.append(helper.make_node("Sigmoid", [x], ["out"], name="post/Sigmoid"))
    graph = helper.make_graph(
        nodes, "blocks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 128])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _ir(model) -> tuple:
    g = model.graph
    return ({k: (v.shape, v.dtype, v.kind) for k, v in g.values.items()},
            {k: np.asarray(v).tolist() for k, v in g.constants.items()},
            [(n.name, n.op_type, n.inputs, n.outputs) for n in g.nodes],
            model.tensors_total, model.tensors_resolved)


def _unfolded(monkeypatch, path: Path, dims: dict) -> tuple:
    with monkeypatch.context() as m:
        m.setattr(onnx_frontend, "find_blocks", lambda *a, **k: None)
        return _ir(load(parse(path), dims))


@pytest.mark.parametrize("grow", [False, True])
def test_a_folded_load_is_the_load_of_every_node(tmp_path, monkeypatch, grow):
    path = _blocks_model(tmp_path / "blocks.onnx", 5, grow=grow)
    parsed = parse(path)
    folded = _ir(load(parsed, {"batch": 3}))
    blocks = parsed.layout.blocks
    assert blocks is not None and blocks.count >= 4 and blocks.length == 3 + grow
    assert folded == _unfolded(monkeypatch, path, {"batch": 3})
    rows = folded[0]["out"][0][0]
    assert rows == (3 * 2**5 if grow else 3)  # grow: each block doubles the rows (no fold)


def test_a_sweep_point_from_one_block_has_the_figures_of_a_full_report():
    parsed = parse(GPT2)
    spec = resolve("a100")
    base_dims = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 8}
    base = analyse(load(parsed, base_dims), spec)
    for dims in ({**base_dims, "batch_size": 7}, {**base_dims, "past_sequence_length": 100},
                 {"batch_size": 2, "sequence_length": 16, "past_sequence_length": 0}):
        fast = folded_figures(parsed, base, dims)
        assert fast is not None  # the sample's two layers fold
        assert fast == figures(analyse(load(parsed, dims), spec))
