"""memlint.analysis.liveness: peak live memory of one run, on hand-built graphs with hand-computed bytes."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from memlint.analysis.liveness import footprint, is_alias, resident_weights
from memlint.api import load
from memlint.ir import DType, Graph, Node, Value, ValueKind

F32, F16, I8, I64 = DType.FLOAT32, DType.FLOAT16, DType.INT8, DType.INT64
W, A, KV = ValueKind.WEIGHT, ValueKind.ACTIVATION, ValueKind.KV_CACHE
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def _graph(values, nodes, inputs, outputs, subgraph=False) -> Graph:
    """values: {name: (numel or None, dtype, kind)}; nodes: (name, op, inputs, outputs)."""
    vals = {
        name: Value(name, None if numel is None else (numel,), dtype, kind)
        for name, (numel, dtype, kind) in values.items()
    }
    return Graph(
        name="g",
        nodes=tuple(
            node if isinstance(node, Node) else Node(node[0], node[1], "", node[2], node[3])
            for node in nodes
        ),
        values=MappingProxyType(vals),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
    )


def test_hand_computed_peak():
    # Bytes: x 1000, kv_in 400, W 4000, s 8 (int64 shape), a 1000 (a_view aliases it),
    # kv_out 1400, b 1000, y 2000.
    # Live per step (inputs and outputs of the running node included):
    #   0 n0 Add(x, W) -> a            x 1000 + kv_in 400 + a 1000                 = 2400
    #   1 n1 Reshape(a, s) -> a_view   kv_in 400 + a 1000 (the view allocates 0)   = 1400
    #   2 n2 Concat(kv_in, a_view)     kv_in 400 + a 1000 + kv_out 1400            = 2800
    #   3 n3 Relu(a_view) -> b         a 1000 + kv_out 1400 + b 1000               = 3400
    #   4 n4 Mul(b, b) -> y            kv_out 1400 + b 1000 + y 2000               = 4400
    # Peak at n4: KV 1400, activations 3000. The KV cache is the cache, resident for the
    # whole run: max(inputs kv_in 400, outputs kv_out 1400) = 1400 (past and present together,
    # 1800 at n2, would count the copy the Concat makes).
    # Weights: W 4000 + s 8 (read by the Reshape, which runs: a is an activation) = 4008.
    graph = _graph(
        {
            "x": (250, F32, A), "kv_in": (100, F32, KV), "W": (1000, F32, W), "s": (1, I64, W),
            "a": (250, F32, A), "a_view": (250, F32, A), "kv_out": (350, F32, KV),
            "b": (250, F32, A), "y": (500, F32, A),
        },
        [
            ("n0", "Add", ("x", "W"), ("a",)),
            ("n1", "Reshape", ("a", "s"), ("a_view",)),
            ("n2", "Concat", ("kv_in", "a_view"), ("kv_out",)),
            ("n3", "Relu", ("a_view",), ("b",)),
            ("n4", "Mul", ("b", "b"), ("y",)),
        ],
        inputs=("x", "kv_in"),
        outputs=("kv_out", "y"),
    )
    mem = footprint(graph)
    assert mem.weight_bytes == 4008
    assert mem.kv_cache_bytes == 1400
    assert mem.peak_activation_bytes == 3000
    assert mem.peak_total_bytes == 4008 + 1400 + 3000
    assert mem.peak_node == "n4"
    assert mem.max_kv_cache_bytes == 1400
    assert mem.unresolved_tensors == 0


def test_weights_counted_once_as_runtimes_keep_them():
    # W1 (1000 B) is read only by a folded Transpose: the runtime keeps its result W1t (1000 B)
    # instead. W2 (2000 B) is read through an Identity (a view: counted once). Wq (int8, 250 B)
    # and its scale (4 B) feed a weight DequantizeLinear, which runtimes fold into its consumer
    # (memlint.costs.quantized): both stay resident as stored, and no fp32 copy (1000 B) is
    # ever allocated.
    graph = _graph(
        {
            "x": (250, F32, A), "W1": (250, F32, W), "W1t": (250, F32, W), "W2": (500, F32, W),
            "W2i": (500, F32, W), "Wq": (250, I8, W), "scale": (1, F32, W), "Wdq": (250, F32, W),
            "a": (250, F32, A), "b": (500, F32, A), "y": (250, F32, A),
        },
        [
            ("t", "Transpose", ("W1",), ("W1t",)),
            ("i", "Identity", ("W2",), ("W2i",)),
            ("dq", "DequantizeLinear", ("Wq", "scale"), ("Wdq",)),
            ("m0", "Mul", ("x", "Wdq"), ("a",)),
            ("m1", "Add", ("a", "W1t"), ("b",)),
            ("m2", "Mul", ("b", "W2i"), ("y",)),
        ],
        inputs=("x",),
        outputs=("y",),
    )
    mem = footprint(graph)
    assert sorted(v.name for v in resident_weights(graph)) == ["W1t", "W2", "Wq", "scale"]
    assert mem.weight_bytes == 1000 + 2000 + 250 + 4
    # Steps: t, i, dq (nothing live but x 1000), m0: x + a = 2000, m1: a + b = 1000 + 2000,
    # m2: b + y = 2000 + 1000. First maximum: m1.
    assert (mem.peak_node, mem.peak_activation_bytes) == ("m1", 3000)


def test_unresolved_tensors_count_zero():
    graph = _graph(
        {"x": (250, F32, A), "a": (None, F32, A), "y": (250, F32, A)},
        [("n0", "Relu", ("x",), ("a",)), ("n1", "Relu", ("a",), ("y",))],
        inputs=("x",),
        outputs=("y",),
    )
    mem = footprint(graph)
    assert mem.unresolved_tensors == 1
    assert mem.peak_activation_bytes == 1000  # x at n0, y at n1: the unknown `a` counts 0


def test_subgraph_reads_keep_outer_tensors_alive():
    # `big` (4000 B) is read only inside the If's branch: it must live until the If (step 2).
    branch = _graph(
        {"big": (1000, F32, A), "o": (250, F32, A)},
        [("inner", "ReduceMax", ("big",), ("o",))],
        inputs=(),
        outputs=("o",),
    )
    if_node = Node("if", "If", "", ("cond",), ("r",), subgraphs=MappingProxyType(
        {"then_branch": branch, "else_branch": branch}))
    graph = _graph(
        {"x": (1000, F32, A), "big": (1000, F32, A), "cond": (1, DType.BOOL, A),
         "r": (250, F32, A), "c": (1, F32, A)},
        [("n0", "Relu", ("x",), ("big",)), ("n1", "ReduceSum", ("x",), ("c",)), if_node],
        inputs=("x", "cond"),
        outputs=("r",),
    )
    mem = footprint(graph)
    # n0: x 4000 + cond 1 + big 4000 = 8001; n1: 8001 + c 4 = 8005 (c is never read: freed
    # after n1); if: cond 1 + big 4000 + r 1000 = 5001.
    assert (mem.peak_node, mem.peak_activation_bytes) == ("n1", 8005)
    assert footprint(Graph("g", (), MappingProxyType({}), (), ())).peak_total_bytes == 0


def test_aliases_are_the_views_of_the_cost_registry():
    # The registry's view trait decides; a metadata op that makes a new tensor is no alias.
    def node(op_type, domain=""):
        return Node(f"n_{op_type}", op_type, domain, ("x",), ("y",))

    for op_type, domain in (("Reshape", ""), ("Dropout", ""), ("ExpandDims", "com.microsoft")):
        assert is_alias(node(op_type, domain)), op_type
    for op_type in ("Shape", "Constant", "Transpose", "SomeCustomOp"):
        assert not is_alias(node(op_type)), op_type
    assert not is_alias(Node("r", "Reshape", "", ("",), ("y",)))  # no input 0: nothing to alias


def test_long_chain_stays_two_tensors():
    # 14,000 Relus in a chain: at every step exactly the input and the output are live.
    n = 14_000
    values = {f"t{i}": (1024, F16, A) for i in range(n + 1)}
    nodes = [(f"r{i}", "Relu", (f"t{i}",), (f"t{i + 1}",)) for i in range(n)]
    mem = footprint(_graph(values, nodes, inputs=("t0",), outputs=(f"t{n}",)))
    assert (mem.peak_activation_bytes, mem.peak_node) == (2 * 2048, "r0")


def test_sample_decoder_step():
    # gpt2_decoder_step at batch 1, past 16, one new token. Parameters (fp32): wte 1000x128
    # 512000, wpe 256x128 131072, causal_bias bool 256x256 65536, ln_f 1024, lm_head 128x1000
    # 512000, and per layer ln 2x1024, c_attn 196608 + 1536, c_proj 65536 + 512, fc 262144 +
    # 2048, proj 262144 + 512 = 793088 (x2). Total 2807808, plus the int64 Constant scalars and
    # shape pieces (under 1 kB).
    model = load(SAMPLES / "gpt2_decoder_step.onnx",
                 dims={"batch_size": 1, "sequence_length": 1, "past_sequence_length": 16})
    mem = footprint(model.graph)
    assert 2_807_808 <= mem.weight_bytes < 2_807_808 + 1024
    # The KV cache: the four presents [1,4,17,32] fp32 (8704 B each; the four pasts [1,4,16,32]
    # are 8192 each, fewer), resident for the whole step. The presents (Concat copies) and the
    # transposed keys are copies of the cache: not in the peak (at most 5 x 8704 live at once).
    # Activations peak in layer 0's GELU (Mul_1): the residual 512 + c_fc 2048 + three GELU
    # temporaries [1,1,512] 3 x 2048 + the additive mask 68 + the sliced causal mask 17 (bool).
    assert mem.peak_node == "/transformer/h.0/mlp/act/Mul_1"
    assert mem.kv_cache_bytes == 4 * 8704
    assert mem.kv_copy_bytes == 5 * 8704
    assert mem.peak_activation_bytes == 512 + 2048 + 3 * 2048 + 68 + 17
    assert mem.unresolved_tensors == 0


@pytest.mark.parametrize("name", ["bert_encoder.onnx", "small_cnn.onnx"])
def test_sample_models_without_kv(name):
    mem = footprint(load(SAMPLES / name, dims={"batch_size": 1}).graph)
    assert mem.kv_cache_bytes == mem.max_kv_cache_bytes == 0
    assert mem.peak_total_bytes == mem.weight_bytes + mem.peak_activation_bytes > 0


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_a_resized_footprint_is_the_footprint_of_the_export_loaded_there(small_exports, name):
    # Optimum decode-step exports loaded at two points: the first load's plan with every
    # tensor's size at the second point gives the second load's own footprint (what a sweep
    # point reads), and with its own sizes its own footprint.
    from memlint.analysis.liveness import footprint_resized
    from memlint.api import parse

    parsed = parse(small_exports[name])
    here = load(parsed, {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 63}).graph
    there = load(parsed, {"batch_size": 4, "sequence_length": 1, "past_sequence_length": 20}).graph
    assert footprint(there) != footprint(here)  # the point moves the peak and the cache
    sizes = {name: value.nbytes for name, value in there.values.items()}
    assert footprint_resized(here, sizes.get) == footprint(there)
    own = {name: value.nbytes for name, value in here.values.items()}
    assert footprint_resized(here, own.get) == footprint(here)
