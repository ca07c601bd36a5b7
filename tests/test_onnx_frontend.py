"""The ONNX frontend: dim binding, shape inference, weights never loaded, names, tensor kinds,
control flow, contrib ops, bad input, unmodelled ops.

Every graph is built here with onnx.helper and written to tmp_path; the expected numbers are
derived by hand in the comments (a multiply-accumulate is 2 FLOPs; fp32 = 4 bytes, fp16 = 2,
int64 = 8).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from memlint.api import lint
from memlint.costs import ByteCounts, CostStatus
from memlint.errors import DimError, MemlintError, ModelLoadError
from memlint.frontends.onnx import load_onnx
from memlint.ir import DimBinding, DType, ValueKind
from memlint.roofline import Bound

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
F32, F16, I64, BOOL = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.BOOL
MS = "com.microsoft"


def vi(name: str, shape, elem: int = F32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def make_model(nodes, inputs, outputs, initializers=(), *, opsets=None, value_info=()):
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, initializer=list(initializers), value_info=list(value_info)
    )
    opset_ids = [helper.make_opsetid(d, v) for d, v in (opsets or {"": 17}).items()]
    return helper.make_model(graph, opset_imports=opset_ids, ir_version=8)


def save(path: Path, model: onnx.ModelProto) -> Path:
    """Serialise as is: onnx.save would try to write external tensors, we never want that."""
    path.write_bytes(model.SerializeToString())
    return path


def build(tmp_path: Path, *args, name: str = "model.onnx", **kwargs) -> Path:
    return save(tmp_path / name, make_model(*args, **kwargs))


def node_costs(report):
    return {n.name: n.cost for n in report.nodes}


# --- symbolic dims ----------------------------------------------------------------------------


@pytest.fixture
def named_dims_model(tmp_path):
    # x: [batch_size, sequence_length, 8] fp32; mask: [batch_size, past + seq] int64 (Optimum style)
    return build(
        tmp_path,
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Cast", ["mask"], ["m"], to=F32)],
        [
            vi("x", ["batch_size", "sequence_length", 8]),
            vi("mask", ["batch_size", "past_sequence_length + sequence_length"], I64),
        ],
        [vi("y", None), vi("m", None)],
    )


def test_dims_bind_named_dims_and_evaluate_expressions(named_dims_model):
    model = load_onnx(
        named_dims_model, dims={"batch_size": 2, "past_sequence_length": 5, "sequence_length": 3}
    )
    values = model.graph.values
    assert values["x"].shape == (2, 3, 8)
    assert values["mask"].shape == (2, 8)  # 5 + 3
    assert values["y"].shape == (2, 3, 8)
    assert values["m"].shape == (2, 8) and values["m"].dtype is DType.FLOAT32
    assert model.assumed_dims == ()
    assert {d.name: d.value for d in model.dims} == {
        "batch_size": 2, "past_sequence_length": 5, "sequence_length": 3}  # fmt: skip


def test_unbound_named_dims_become_one_and_are_recorded(named_dims_model):
    model = load_onnx(named_dims_model, dims={"batch_size": 2, "past_sequence_length": 5})
    assert model.graph.values["x"].shape == (2, 1, 8)
    assert model.graph.values["mask"].shape == (2, 6)  # 5 + (sequence_length assumed 1)
    assert model.assumed_dims == ("sequence_length",)
    assert DimBinding("sequence_length", 1, assumed=True) in model.dims
    assert DimBinding("batch_size", 2, assumed=False) in model.dims

    report = lint(named_dims_model, dims={"batch_size": 2, "past_sequence_length": 5})
    assert report.dims == {"batch_size": 2, "past_sequence_length": 5, "sequence_length": 1}
    assert report.assumed_dims == ("sequence_length",)
    # Relu over 2*1*8 = 16 elements: 16 FLOPs, 64 B read, 64 B written
    relu = node_costs(report)["Relu_0"]
    assert (relu.flops, relu.bytes_read.total, relu.bytes_written.total) == (16, 64, 64)


def test_nothing_bound_assumes_every_named_dim(named_dims_model):
    model = load_onnx(named_dims_model)
    assert sorted(model.assumed_dims) == ["batch_size", "past_sequence_length", "sequence_length"]
    assert model.graph.values["mask"].shape == (1, 2)  # 1 + 1


def test_a_dim_naming_no_dim_lists_the_models_dims(named_dims_model):
    with pytest.raises(DimError) as info:
        load_onnx(named_dims_model, dims={"batch": 2})
    assert str(info.value) == (
        "--dim batch: no such dim in the model "
        "(its dims: batch_size, past_sequence_length, sequence_length)"
    )


def test_strict_dims_names_the_flags_to_add(named_dims_model):
    with pytest.raises(DimError) as info:
        load_onnx(named_dims_model, dims={"past_sequence_length": 5}, strict_dims=True)
    message = str(info.value)
    assert message.startswith("--strict-dims: unbound dims")
    assert "--dim batch_size=N" in message
    assert "--dim sequence_length=N" in message
    assert "past_sequence_length=N" not in message
    assert "\n" not in message
    # all bound: strict mode is satisfied
    dims = {"batch_size": 1, "past_sequence_length": 5, "sequence_length": 1}
    assert load_onnx(named_dims_model, dims=dims, strict_dims=True).assumed_dims == ()


@pytest.fixture
def unnamed_dims_model(tmp_path):
    # x: [-1, 3, 0, <no dim>]; y: ['?', 3, 64, 64]; z = x + y
    x = vi("x", [-1, 3, 0, None])
    x.type.tensor_type.shape.dim[3].Clear()  # neither dim_value nor dim_param
    y = vi("y", ["?", 3, 64, 64])
    return build(tmp_path, [helper.make_node("Add", ["x", "y"], ["z"])], [x, y], [vi("z", None)])


def test_unnamed_dims_are_assumed_per_input_axis(unnamed_dims_model):
    model = load_onnx(unnamed_dims_model)
    assert model.assumed_dims == ("x[0]", "x[2]", "x[3]", "y[0]")
    assert model.graph.values["x"].shape == (1, 3, 1, 1)
    assert model.graph.values["z"].shape == (1, 3, 64, 64)


def test_input_shapes_bind_unnamed_dims_exactly(unnamed_dims_model):
    report = lint(unnamed_dims_model, input_shapes={"x": (1, 3, 64, 64)})
    values = report.model.graph.values
    assert values["x"].shape == (1, 3, 64, 64)
    assert values["z"].shape == (1, 3, 64, 64)
    assert report.assumed_dims == ("y[0]",)
    # Add: 1*3*64*64 = 12288 FLOPs; reads 2 * 12288 * 4 B, writes 12288 * 4 B
    add = node_costs(report)["Add_0"]
    assert add.flops == 12288
    assert add.bytes_read == ByteCounts(activations=98304)
    assert add.bytes_written == ByteCounts(activations=49152)


def test_input_shapes_with_the_wrong_rank_or_an_unknown_input(unnamed_dims_model):
    with pytest.raises(DimError, match=r"^--input-shape x: rank 3 given, the input has rank 4$"):
        load_onnx(unnamed_dims_model, input_shapes={"x": (1, 3, 64)})
    with pytest.raises(DimError, match=r"^--input-shape nope: no such input \(inputs: x, y\)$"):
        load_onnx(unnamed_dims_model, input_shapes={"nope": (1,)})


def test_strict_dims_with_unnamed_dims_asks_for_input_shapes(unnamed_dims_model):
    with pytest.raises(DimError) as info:
        load_onnx(unnamed_dims_model, strict_dims=True)
    assert "--input-shape x=..." in str(info.value)
    assert "--input-shape y=..." in str(info.value)


# --- shape arithmetic resolved after binding ----------------------------------------------------


def _head_split(divide: bool):
    """x [batch, seq, 64] -> Reshape to [batch, seq, 4, 16], the target computed from Shape(x).

    divide=False: Concat(Shape[0], Shape[1], 4, 16), the exporter's usual head split.
    divide=True: the head dim is Shape(x)[2] / 4, which onnx's data propagation leaves unknown.
    """
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
        helper.make_node("Gather", ["s", "i1"], ["t"], axis=0),
        helper.make_node("Unsqueeze", ["b", "axis0"], ["b1"]),
        helper.make_node("Unsqueeze", ["t", "axis0"], ["t1"]),
    ]
    inits = [
        *(const(f"i{i}", np.int64(i)) for i in range(3)),
        const("heads", np.int64(4)),
        const("axis0", np.array([0], np.int64)),
        const("c4", np.array([4], np.int64)),
        const("c16", np.array([16], np.int64)),
    ]
    if divide:
        nodes += [
            helper.make_node("Gather", ["s", "i2"], ["hidden"], axis=0),
            helper.make_node("Div", ["hidden", "heads"], ["head_dim"]),
            helper.make_node("Unsqueeze", ["head_dim", "axis0"], ["hd1"]),
            helper.make_node("Concat", ["b1", "t1", "c4", "hd1"], ["target"], axis=0),
        ]
    else:
        nodes.append(helper.make_node("Concat", ["b1", "t1", "c4", "c16"], ["target"], axis=0))
    nodes += [
        helper.make_node("Reshape", ["x", "target"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], axis=-1),
    ]
    return nodes, [vi("x", ["batch", "seq", 64])], [vi("y", None)], inits


@pytest.mark.parametrize("divide", [False, True], ids=["shape-gather-concat", "shape-gather-div"])
@pytest.mark.parametrize(("batch", "seq"), [(3, 7), (2, 5)])
def test_reshape_target_from_shape_arithmetic_is_resolved(tmp_path, divide, batch, seq):
    path = build(tmp_path, *_head_split(divide))
    report = lint(path, dims={"batch": batch, "seq": seq})
    values = report.model.graph.values
    assert values["r"].shape == (batch, seq, 4, 16)
    assert values["y"].shape == (batch, seq, 4, 16)
    assert report.coverage.tensors_resolved == report.coverage.tensors_total
    assert report.coverage.unresolved_nodes == 0
    softmax = next(n for n in report.nodes if n.op_type == "Softmax")
    assert softmax.cost.status is CostStatus.MODELLED
    # Softmax reads and writes batch*seq*64 fp32 elements
    assert softmax.cost.bytes_read.total == batch * seq * 64 * 4
    assert softmax.cost.bytes_written.total == batch * seq * 64 * 4


# --- weights are never loaded -------------------------------------------------------------------


def _external(name: str, elem: int, dims: list[int], location: str) -> onnx.TensorProto:
    """An initializer whose payload lives in `location`, which this test never writes."""
    tensor = onnx.TensorProto(name=name, data_type=elem, dims=dims)
    tensor.data_location = TensorProto.EXTERNAL
    nbytes = int(np.prod(dims)) * (2 if elem == F16 else 4)
    for key, value in (("location", location), ("offset", "0"), ("length", str(nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def test_external_weights_with_a_missing_data_file_load_and_lint(tmp_path):
    # y = x @ W, x [1, 1024] fp16, W [1024, 1024] fp16 in a data file that does not exist
    path = build(
        tmp_path,
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        [vi("x", ["batch", 1024], F16)],
        [vi("y", None, F16)],
        [_external("W", F16, [1024, 1024], "weights.bin")],
    )
    report = lint(path, hw="a100", dims={"batch": 1})
    assert not (tmp_path / "weights.bin").exists()
    weight = report.model.graph.values["W"]
    assert (weight.shape, weight.dtype, weight.kind) == (
        (1024, 1024),
        DType.FLOAT16,
        ValueKind.WEIGHT,
    )
    matmul = node_costs(report)["MatMul_0"]
    assert matmul.flops == 2 * 1 * 1024 * 1024  # 2,097,152
    assert matmul.bytes_read == ByteCounts(weights=2 * 2**20, activations=2048)  # 2 MiB + x
    assert matmul.bytes_written == ByteCounts(activations=2048)  # y [1, 1024] fp16
    assert report.summary.bytes_read.weights == 2 * 2**20
    assert report.coverage.nodes_modelled == report.coverage.nodes_total == 1


def _mlp_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["a"]),
        helper.make_node("Add", ["a", "b1"], ["a2"]),
        helper.make_node("MatMul", ["a2", "W2"], ["c"]),
        helper.make_node("Reshape", ["c", "target"], ["d"]),
        helper.make_node("Softmax", ["d"], ["y"], axis=-1),
    ]
    inits = [
        const("W1", rng.standard_normal((64, 64)).astype(np.float32)),  # 4096: kept as a constant
        const("b1", np.zeros(64, np.float32)),
        const("W2", rng.standard_normal((64, 256)).astype(np.float32)),  # 16384: stripped
        const("target", np.array([0, -1, 4, 64], np.int64)),
    ]
    return make_model(nodes, [vi("x", ["batch", "seq", 64])], [vi("y", None)], inits)


def _numbers(report):
    return (
        [(n.name, n.cost.status, n.cost.flops, n.cost.bytes_read, n.cost.bytes_written)
         for n in report.nodes],
        report.summary.flops, report.summary.bytes_read, report.summary.bytes_written,
        report.coverage,
    )  # fmt: skip


@pytest.mark.parametrize("size_threshold", [1024, 0], ids=["default-threshold", "all-external"])
def test_embedded_and_external_weights_give_identical_numbers(tmp_path, size_threshold):
    embedded = save(tmp_path / "embedded.onnx", _mlp_model())
    (tmp_path / "ext").mkdir()
    external = tmp_path / "ext" / "model.onnx"
    onnx.save(_mlp_model(), external, save_as_external_data=True, location="model.onnx.data",
              size_threshold=size_threshold)  # fmt: skip
    assert (tmp_path / "ext" / "model.onnx.data").stat().st_size > 0
    dims = {"batch": 2, "seq": 3}
    expected = lint(embedded, dims=dims)
    # x [2,3,64] @ W1 [64,64]: 2*6*64*64 = 49152; Add 384; @ W2 [64,256]: 2*6*256*64 = 196608;
    # Softmax over [2,3,4,64] (1536 elements)
    assert expected.summary.flops == 49152 + 384 + 196608 + 5 * 1536
    got = lint(external, dims=dims)
    assert [(n.name, n.cost.status) for n in got.nodes] == [
        (n.name, n.cost.status) for n in expected.nodes
    ]
    assert _numbers(got) == _numbers(expected)


# --- node names and order -----------------------------------------------------------------------


def test_unnamed_nodes_get_op_type_and_topological_index(tmp_path):
    path = build(
        tmp_path,
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Tanh", ["a"], ["y"], name="tanh"),
        ],
        [vi("x", [4])],
        [vi("y", None)],
    )
    assert [n.name for n in load_onnx(path).graph.nodes] == ["Relu_0", "tanh"]


def test_nodes_out_of_topological_order_are_sorted_and_duplicates_renamed(tmp_path):
    # file order: Sigmoid(b), Tanh(a), Relu(x), Exp(c); dataflow: Relu -> Tanh -> Sigmoid -> Exp
    nodes = [
        helper.make_node("Sigmoid", ["b"], ["c"], name="dup"),
        helper.make_node("Tanh", ["a"], ["b"], name="dup"),
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Exp", ["c"], ["y"]),
    ]
    model = load_onnx(build(tmp_path, nodes, [vi("x", [4])], [vi("y", None)]))
    graph = model.graph
    assert [n.op_type for n in graph.nodes] == ["Relu", "Tanh", "Sigmoid", "Exp"]
    # the first "dup" in topological order keeps its name; the second gets op_type + index
    assert [n.name for n in graph.nodes] == ["Relu_0", "dup", "Sigmoid_2", "Exp_3"]
    assert graph.values["y"].shape == (4,)


def test_generated_names_never_collide_with_given_names(tmp_path):
    # An unnamed Tanh at index 1 would be "Tanh_1", which the Relu before it is already called.
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="Tanh_1"),
        helper.make_node("Tanh", ["a"], ["y"]),
    ]
    names = [
        n.name
        for n in load_onnx(build(tmp_path, nodes, [vi("x", [4])], [vi("y", None)])).graph.nodes
    ]
    assert names[0] == "Tanh_1"
    assert len(set(names)) == len(names), names


def test_duplicate_names_inside_subgraphs_are_made_unique(tmp_path):
    then_branch = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t1"], name="same"),
         helper.make_node("Neg", ["t1"], ["t_out"], name="same")],
        "then", [], [vi("t_out", [4])],
    )  # fmt: skip
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e_out"], name="same")], "else", [], [vi("e_out", [4])]
    )
    path = build(
        tmp_path,
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        [vi("cond", [], BOOL), vi("x", [4])],
        [vi("y", [4])],
    )
    node = load_onnx(path).graph.nodes[0]
    names = [n.name for n in node.subgraphs["then_branch"].nodes]
    assert names[0] == "If_0/then_branch/same"
    assert len(set(names)) == 2, names
    assert [n.name for n in node.subgraphs["else_branch"].nodes] == ["If_0/else_branch/same"]


def test_a_subgraph_capturing_a_later_node_is_sorted_after_it(tmp_path):
    # the If's branches read `a` from the outer graph; its producer is listed after the If
    then_branch = helper.make_graph(
        [helper.make_node("Relu", ["a"], ["t"])], "then", [], [vi("t", [4])]
    )
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["e"])], "else", [], [vi("e", [4])]
    )
    nodes = [
        helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch,
                         name="the_if"),
        helper.make_node("Exp", ["x"], ["a"], name="producer"),
    ]  # fmt: skip
    report = lint(build(tmp_path, nodes, [vi("cond", [], BOOL), vi("x", [4])], [vi("y", [4])]))
    assert [n.name for n in report.nodes] == ["producer", "the_if"]
    # either branch: 4 FLOPs, reads 16 B, writes 16 B
    the_if = node_costs(report)["the_if"]
    assert (the_if.flops, the_if.bytes_read.total, the_if.bytes_written.total) == (4, 16, 16)


def test_a_graph_with_a_cycle_is_refused(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="n1"),
        helper.make_node("Add", ["a", "c"], ["b"], name="n2"),
        helper.make_node("Tanh", ["b"], ["c"], name="n3"),
    ]
    path = build(tmp_path, nodes, [vi("x", [4])], [vi("c", [4])])
    with pytest.raises(ModelLoadError, match="the graph has a cycle through node") as info:
        load_onnx(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


# --- tensor kinds -------------------------------------------------------------------------------


@pytest.fixture
def kv_model(tmp_path):
    """One attention step with a key cache, Optimum's names.

    q, k = x @ Wq, x @ Wk (x [1,1,64]) -> Reshape [1,1,4,16] -> Transpose [1,4,1,16]
    k_all = Concat(past_key_values.0.key [1,4,P,16], k, axis=2)    KV: a KV input goes in
    present.0.key = Identity(k_all)
    scores = q @ Transpose(k_all) [1,4,16,P+1]                      -> [1,4,1,P+1]
    cache_position_next = cache_position + 1                        int64: never KV
    """
    perm = [0, 2, 1, 3]
    nodes = [
        helper.make_node("MatMul", ["x", "Wq"], ["q"]),
        helper.make_node("Reshape", ["q", "heads"], ["q4"]),
        helper.make_node("Transpose", ["q4"], ["qt"], perm=perm),
        helper.make_node("MatMul", ["x", "Wk"], ["k"]),
        helper.make_node("Reshape", ["k", "heads"], ["k4"]),
        helper.make_node("Transpose", ["k4"], ["kt"], perm=perm),
        helper.make_node(
            "Concat", ["past_key_values.0.key", "kt"], ["k_all"], axis=2, name="concat"
        ),
        helper.make_node("Identity", ["k_all"], ["present.0.key"]),
        helper.make_node("Transpose", ["k_all"], ["k_allT"], perm=[0, 1, 3, 2], name="key_t"),
        helper.make_node("MatMul", ["qt", "k_allT"], ["scores"], name="qk"),
        helper.make_node("Add", ["cache_position", "one"], ["cache_position_next"], name="pos"),
    ]
    inits = [
        const("Wq", np.zeros((64, 64), np.float32)),
        const("Wk", np.zeros((64, 64), np.float32)),
        const("heads", np.array([1, 1, 4, 16], np.int64)),
        const("one", np.array([1], np.int64)),
    ]
    inputs = [
        vi("x", [1, 1, 64]),
        vi("past_key_values.0.key", [1, 4, "past_sequence_length", 16]),
        vi("cache_position", ["sequence_length"], I64),
    ]
    outputs = [vi("scores", None), vi("present.0.key", None), vi("cache_position_next", None, I64)]
    return build(tmp_path, nodes, inputs, outputs, inits)


def test_initializers_are_weights_and_kv_ports_are_kv_cache(kv_model):
    values = load_onnx(kv_model, dims={"past_sequence_length": 7}).graph.values
    kinds = {name: values[name].kind for name in values}
    assert kinds["Wq"] is kinds["Wk"] is kinds["heads"] is ValueKind.WEIGHT
    assert kinds["x"] is kinds["q"] is kinds["kt"] is kinds["scores"] is ValueKind.ACTIVATION
    assert kinds["past_key_values.0.key"] is ValueKind.KV_CACHE
    # present = Concat(past, new) is a copy of the cache: activation traffic (DESIGN.md)
    assert kinds["present.0.key"] is ValueKind.ACTIVATION
    assert kinds["k_all"] is ValueKind.ACTIVATION  # Concat(KV input, activation): a copy
    assert kinds["k_allT"] is ValueKind.ACTIVATION  # a Transpose of the copy: a copy
    # int64 tensors named like caches are positions, not cache contents
    assert values["cache_position"].dtype is DType.INT64
    assert kinds["cache_position"] is ValueKind.ACTIVATION
    assert kinds["cache_position_next"] is ValueKind.ACTIVATION
    assert values["present.0.key"].shape == (1, 4, 8, 16)


def test_kv_cache_bytes_are_counted_as_kv_cache(kv_model):
    report = lint(kv_model, dims={"past_sequence_length": 7, "sequence_length": 1})
    costs = node_costs(report)
    # past [1,4,7,16] fp32 = 1792 B; new key [1,4,1,16] = 256 B; k_all [1,4,8,16] = 2048 B.
    # The KV cache is the cache (the past read); k_all and its transpose are copies of it.
    assert costs["concat"].bytes_read == ByteCounts(activations=256, kv_cache=1792)
    assert costs["concat"].bytes_written == ByteCounts(activations=2048)
    assert costs["key_t"].bytes_read == ByteCounts(activations=2048)
    assert costs["key_t"].bytes_written == ByteCounts(activations=2048)
    # scores [1,4,1,8]: 2 * 32 * 16 = 1024 FLOPs; reads q 256 B and the key 2048 B; writes 128 B
    assert costs["qk"].flops == 1024
    assert costs["qk"].bytes_read == ByteCounts(activations=256 + 2048)
    assert costs["qk"].bytes_written == ByteCounts(activations=128)
    assert costs["pos"].bytes_read == ByteCounts(weights=8, activations=8)
    assert report.summary.bytes_read.kv_cache == 1792
    assert report.summary.bytes_written.kv_cache == 0


@pytest.mark.parametrize("rows", [128, 32], ids=["stripped-weight", "kept-constant"])
def test_a_transpose_of_a_weight_is_folded(tmp_path, rows):
    # W [rows, 64] -> Transpose -> [64, rows]; y = x [1,1,64] @ W^T -> [1,1,rows]
    nodes = [
        helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "Wt"], ["y"]),
    ]
    path = build(tmp_path, nodes, [vi("x", [1, 1, 64])], [vi("y", None)],
                 [const("W", np.ones((rows, 64), np.float32))])  # fmt: skip
    report = lint(path)
    assert report.model.graph.values["Wt"].kind is ValueKind.WEIGHT
    transpose, matmul = report.nodes
    assert transpose.cost.status is CostStatus.FOLDED
    assert transpose.cost.bytes_moved == 0 and transpose.cost.flops == 0
    assert transpose.timing.predicted_latency_s == 0
    # 2 * rows * 64 FLOPs; reads W^T (rows*64*4 B) as weights and x (256 B); writes rows*4 B
    assert matmul.cost.flops == 2 * rows * 64
    assert matmul.cost.bytes_read == ByteCounts(weights=rows * 64 * 4, activations=256)
    assert matmul.cost.bytes_written == ByteCounts(activations=rows * 4)


# --- control flow -------------------------------------------------------------------------------


def _if_model(expensive_first: bool) -> onnx.ModelProto:
    cheap = helper.make_graph([helper.make_node("Relu", ["x"], ["c_out"])], "cheap", [],
                              [vi("c_out", [8, 16])])  # fmt: skip
    costly = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["m_out"])], "costly", [],
                               [vi("m_out", [8, 16])])  # fmt: skip
    then_branch, else_branch = (costly, cheap) if expensive_first else (cheap, costly)
    return make_model(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        [vi("cond", [], BOOL), vi("x", [8, 16])],
        [vi("y", [8, 16])],
        [const("W", np.ones((16, 16), np.float32))],
    )


@pytest.mark.parametrize("expensive_first", [True, False], ids=["then-costly", "else-costly"])
def test_if_is_costed_as_its_more_expensive_branch(tmp_path, expensive_first):
    report = lint(save(tmp_path / "if.onnx", _if_model(expensive_first)))
    cost = report.nodes[0].cost
    # MatMul [8,16] @ [16,16]: 2*8*16*16 = 4096 FLOPs; reads x 512 B + W 1024 B; writes 512 B
    # (the Relu branch: 128 FLOPs, 512 B + 512 B)
    assert cost.flops == 4096
    assert cost.bytes_read == ByteCounts(weights=1024, activations=512)
    assert cost.bytes_written == ByteCounts(activations=512)
    assert ("then_branch" if expensive_first else "else_branch") in cost.note
    assert report.summary.flops == 4096


def _loop_body() -> onnx.GraphProto:
    return helper.make_graph(
        [helper.make_node("MatMul", ["x_in", "W"], ["x_out"]),
         helper.make_node("Identity", ["c_in"], ["c_out"])],
        "body",
        [vi("i", [], I64), vi("c_in", [], BOOL), vi("x_in", [8, 16])],
        [vi("c_out", [], BOOL), vi("x_out", [8, 16])],
    )  # fmt: skip


def test_loop_with_a_constant_trip_count_costs_trips_times_its_body(tmp_path):
    path = build(
        tmp_path,
        [helper.make_node("Loop", ["M", "", "x"], ["y"], body=_loop_body())],
        [vi("x", [8, 16])],
        [vi("y", [8, 16])],
        [const("M", np.int64(4)), const("W", np.ones((16, 16), np.float32))],
    )
    cost = lint(path).nodes[0].cost
    # body: MatMul 4096 FLOPs, reads 512 + 1024 B, writes 512 B; Identity nothing; x 4 trips
    assert cost.flops == 4 * 4096
    assert cost.bytes_read == ByteCounts(weights=4 * 1024, activations=4 * 512)
    assert cost.bytes_written == ByteCounts(activations=4 * 512)
    assert "4 iterations" in cost.note


def test_an_external_initializer_of_a_loop_body_is_never_read(tmp_path):
    # as above, but W [16,16] fp32 is the body's own initializer, in a data file that is absent
    body = _loop_body()
    body.initializer.append(_external("W", F32, [16, 16], "absent.bin"))
    path = build(
        tmp_path,
        [helper.make_node("Loop", ["M", "", "x"], ["y"], body=body)],
        [vi("x", [8, 16])],
        [vi("y", [8, 16])],
        [const("M", np.int64(4))],
    )
    cost = lint(path).nodes[0].cost
    assert cost.flops == 4 * 4096
    assert cost.bytes_read == ByteCounts(weights=4 * 1024, activations=4 * 512)


def test_loop_trip_count_from_a_bound_dim(tmp_path):
    # M = Shape(n)[0] where n is [steps]: known once --dim steps=3 is bound
    path = build(
        tmp_path,
        [helper.make_node("Shape", ["n"], ["s"]),
         helper.make_node("Gather", ["s", "zero"], ["M"], axis=0),
         helper.make_node("Loop", ["M", "", "x"], ["y"], body=_loop_body())],
        [vi("x", [8, 16]), vi("n", ["steps"])],
        [vi("y", [8, 16])],
        [const("zero", np.int64(0)), const("W", np.ones((16, 16), np.float32))],
    )  # fmt: skip
    loop = next(n for n in lint(path, dims={"steps": 3}).nodes if n.op_type == "Loop")
    assert loop.cost.flops == 3 * 4096


def test_scan_costs_its_body_once_per_scanned_slice(tmp_path):
    # xs [5, 8, 16] scanned on axis 0; body: s_out = s_in + x_t, y_t = Relu(x_t), [8, 16] each
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
         helper.make_node("Relu", ["x_t"], ["y_t"])],
        "body",
        [vi("s_in", [8, 16]), vi("x_t", [8, 16])],
        [vi("s_out", [8, 16]), vi("y_t", [8, 16])],
    )  # fmt: skip
    path = build(
        tmp_path,
        [helper.make_node("Scan", ["s0", "xs"], ["s_final", "ys"], body=body, num_scan_inputs=1)],
        [vi("s0", [8, 16]), vi("xs", [5, 8, 16])],
        [vi("s_final", [8, 16]), vi("ys", [5, 8, 16])],
    )
    cost = lint(path).nodes[0].cost
    # per slice: Add 128 + Relu 128 FLOPs; reads 512+512 + 512 B; writes 512 + 512 B; x 5 slices
    assert cost.flops == 5 * 256
    assert cost.bytes_read == ByteCounts(activations=5 * 1536)
    assert cost.bytes_written == ByteCounts(activations=5 * 1024)


# --- onnxruntime contrib ops --------------------------------------------------------------------


def test_contrib_ops_get_shapes_so_standard_ops_downstream_resolve(tmp_path):
    # x, skip [batch, seq, 64] fp16 -> SkipLayerNorm -> FastGelu -> MatMulNBits (K 64, N 128,
    # 4 bits, blocks of 32) -> Relu -> Softmax; onnx's own inference knows none of the three
    nodes = [
        helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta"], ["ln"],
                         domain=MS, epsilon=1e-5),
        helper.make_node("FastGelu", ["ln"], ["g"], domain=MS),
        helper.make_node("MatMulNBits", ["g", "Bq", "scales"], ["mm"], domain=MS, K=64, N=128,
                         bits=4, block_size=32),
        helper.make_node("Relu", ["mm"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], axis=-1),
    ]  # fmt: skip
    inits = [
        const("gamma", np.ones(64, np.float16)),
        const("beta", np.zeros(64, np.float16)),
        const("Bq", np.zeros((128, 2, 16), np.uint8)),  # N x blocks x (32 * 4 bits / 8)
        const("scales", np.ones(256, np.float16)),
    ]
    inputs = [vi("x", ["batch", "seq", 64], F16), vi("skip", ["batch", "seq", 64], F16)]
    path = build(tmp_path, nodes, inputs, [vi("y", None, F16)], inits, opsets={"": 17, MS: 1})
    report = lint(path, dims={"batch": 1, "seq": 8})
    values = report.model.graph.values
    assert values["ln"].shape == values["g"].shape == (1, 8, 64)
    assert values["mm"].shape == values["r"].shape == values["y"].shape == (1, 8, 128)
    assert values["y"].dtype is DType.FLOAT16
    assert report.coverage.nodes_modelled == report.coverage.nodes_total == 5
    assert report.coverage.tensors_resolved == report.coverage.tensors_total
    costs = {n.op_type: n.cost for n in report.nodes}
    assert costs["SkipLayerNormalization"].flops == (8 + 1) * 512  # LayerNorm 8 + residual 1
    assert costs["FastGelu"].flops == 8 * 512
    assert costs["MatMulNBits"].flops == 2 * 8 * 128 * 64  # 131072
    # packed 4-bit B 4096 B + fp16 scales 512 B read as weights
    assert costs["MatMulNBits"].bytes_read == ByteCounts(weights=4096 + 512, activations=1024)
    assert costs["Relu"].flops == 1024 and costs["Relu"].status is CostStatus.MODELLED
    assert costs["Softmax"].status is CostStatus.MODELLED


# --- bad input ----------------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    cnn = (SAMPLES / "small_cnn.onnx").read_bytes()
    files = {
        "missing": tmp_path / "missing.onnx",
        "empty": tmp_path / "empty.onnx",
        "html": tmp_path / "page.onnx",
        "lfs-pointer": tmp_path / "lfs.onnx",
        "no-onnx-dir": tmp_path / "empty_dir",
        "truncated": tmp_path / "truncated.onnx",
    }
    files["empty"].write_bytes(b"")
    files["html"].write_text("<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1></body></html>\n")
    files["lfs-pointer"].write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 86257\n"
    )
    files["no-onnx-dir"].mkdir()
    (files["no-onnx-dir"] / "README.md").write_text("nothing here")
    files["truncated"].write_bytes(cnn[: len(cnn) // 2])
    return files


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "no such file"),
        ("empty", "empty file, not an ONNX model"),
        ("html", "not a readable ONNX model"),
        ("lfs-pointer", "not a readable ONNX model"),
        ("no-onnx-dir", "a directory with no .onnx file"),
        ("truncated", "not a readable ONNX model"),
    ],
)
def test_bad_input_is_one_line_model_load_error(tmp_path, case, reason):
    path = _bad_inputs(tmp_path)[case]
    with pytest.raises(ModelLoadError) as info:
        lint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {reason}")
    assert "\n" not in message


def test_a_truncated_model_never_raises_anything_but_memlint_errors(tmp_path):
    model = _if_model(True).SerializeToString()
    target = tmp_path / "cut.onnx"
    for cut in range(1, len(model), 3):
        target.write_bytes(model[:cut])
        with pytest.raises(MemlintError):
            lint(target)


def test_an_export_directory_loads_its_model_onnx(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(SAMPLES / "small_cnn.onnx", export / "model.onnx")
    (export / "model_quantized.onnx").write_bytes(b"not even onnx")
    model = load_onnx(export)
    assert model.source == str(export / "model.onnx")
    assert len(model.graph.nodes) == 16


def test_a_directory_with_several_models_and_no_model_onnx_is_refused(tmp_path):
    for name in ("decoder.onnx", "encoder.onnx"):
        shutil.copy(SAMPLES / "small_cnn.onnx", tmp_path / name)
    with pytest.raises(ModelLoadError, match=r"several models \(decoder.onnx, encoder.onnx\)"):
        load_onnx(tmp_path)


# --- unmodelled ops -----------------------------------------------------------------------------


def test_an_unknown_custom_op_is_unmodelled_with_a_lower_bound(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("FancyOp", ["a"], ["b"], domain="my.custom"),
        helper.make_node("Relu", ["b"], ["y"]),
    ]
    path = build(tmp_path, nodes, [vi("x", [4, 8])], [vi("y", None)],
                 opsets={"": 17, "my.custom": 1})  # fmt: skip
    report = lint(path)
    assert dict(report.coverage.unmodelled_ops) == {"my.custom::FancyOp": 1}
    fancy = node_costs(report)["FancyOp_1"]
    assert fancy.status is CostStatus.UNMODELLED
    # lower bound: its input a [4, 8] fp32 = 128 B read (its output's shape is unknown)
    assert fancy.bytes_read.total == 128
    assert fancy.bytes_moved > 0
    assert report.coverage.bytes_lower_bound >= 128
    assert report.coverage.nodes_modelled < report.coverage.nodes_total == 3


# --- a real export: GPT-2 small graph only, weights absent ---------------------------------------


def test_gpt2_small_graph_only_decode_step_is_memory_bound_with_kv_bytes():
    path = SAMPLES / "gpt2_small_graph_only.onnx"
    assert not (SAMPLES / "gpt2_small_graph_only.onnx.data").exists()
    report = lint(path, hw="a100", dims={"past_sequence_length": 1023})
    # a decoder with a KV cache is linted at its decode step (as on the command line): the
    # batch is the scenario's default (assumed), the one new token the decode step's that the
    # bound context asks for
    assert report.dims == {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 1023}
    assert report.assumed_dims == ("batch_size",)
    assert report.llm.serving.scenario.defaulted == ("batch",)
    matmuls = [n for n in report.nodes if n.op_type == "MatMul"]
    assert len(matmuls) == 12 * 6 + 1  # c_attn, QK, AV, c_proj, c_fc, c_proj per layer + lm_head
    assert {n.timing.bound for n in matmuls} == {Bound.MEMORY}
    # per layer, fp32, 12 heads of 64: the cache is past K and V [1,12,1023,64], read by the
    # Concats, which write the new token into it ([1,12,1,64] each); the rest of the presents
    # and the transposed key are copies of it (activation traffic)
    past, new = 12 * 1023 * 64 * 4, 12 * 1 * 64 * 4
    assert report.summary.bytes_read.kv_cache == 12 * 2 * past
    assert report.summary.bytes_written.kv_cache == 12 * 2 * new
    assert report.coverage.nodes_modelled == report.coverage.nodes_total
