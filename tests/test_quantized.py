"""Quantized graphs costed as runtimes execute them (memlint.costs.quantized).

Hand-built graphs pin the formulas; a tiny BERT (2 layers, hidden 64) exported by optimum and
quantized by the real tools checks the weight bytes read against the bytes the file stores.
"""

from __future__ import annotations

import warnings

import pytest
from irbuild import F16, F32, I8, U8, A, W, one_node  # pytest puts tests/ on sys.path

from memlint import lint
from memlint.costs import ByteCounts, CostStatus, cost_of
from memlint.ir import DType, Graph, Node, Value

MS = "com.microsoft"

M, K, N = 4, 8, 16


def _graph(nodes, values, outputs=()):
    return Graph("g", tuple(nodes), {v.name: v for v in values}, outputs=tuple(outputs))


def _v(name, shape, dtype, kind=A):
    return Value(name, shape, dtype, kind)


def test_weight_dequantize_folds_into_its_matmul():
    # x float[4,8] @ DQ(W int8[8,16], scale float, zp int8):
    # DQ: folded, nothing per run. MatMul: FLOPs 2*4*8*16 = 1024; weights read 8*16 (int8) + 4
    # (scale) + 1 (zero point) = 133; activations read 4*8*4 = 128, written 4*16*4 = 256.
    # Weight-only (x is float32): computes in float32.
    dq = Node("dq", "DequantizeLinear", inputs=("w", "s", "z"), outputs=("wf",))
    mm = Node("mm", "MatMul", inputs=("x", "wf"), outputs=("y",))
    g = _graph([dq, mm], [_v("x", (M, K), F32), _v("w", (K, N), I8, W), _v("s", (), F32, W),
                          _v("z", (), I8, W), _v("wf", (K, N), F32, W), _v("y", (M, N), F32)],
               outputs=["y"])  # fmt: skip
    assert cost_of(dq, g).status is CostStatus.FOLDED
    assert cost_of(dq, g).bytes_moved == 0
    cost = cost_of(mm, g)
    assert cost.flops == 1024
    assert cost.bytes_read.weights == 133
    assert cost.bytes_read.activations == 128
    assert cost.bytes_written.total == 256
    assert cost.compute_dtype is F32


def test_activation_qdq_pairs_are_the_quantized_ops_io():
    # x -> Q -> DQ -> MatMul(., DQ(W)) -> y -> Q -> DQ -> out (a graph output).
    # Q of the graph input x runs: reads 4*8*4 = 128 + 5 (scale, zp), writes 4*8 = 32.
    # Both DQs before the MatMul fold; the Q after it folds into it; the last DQ writes a graph
    # output, so it runs. MatMul reads x_q 32 B (activation), W 128 B + 3 scales/zps of 5 B
    # (weights, 143), writes y_q 4*16 = 64 B; int8 x int8: computes in int8.
    nodes = [
        Node("qx", "QuantizeLinear", inputs=("x", "sx", "zx"), outputs=("xq",)),
        Node("dqx", "DequantizeLinear", inputs=("xq", "sx", "zx"), outputs=("xd",)),
        Node("dqw", "DequantizeLinear", inputs=("w", "sw", "zw"), outputs=("wf",)),
        Node("mm", "MatMul", inputs=("xd", "wf"), outputs=("y",)),
        Node("qy", "QuantizeLinear", inputs=("y", "sy", "zy"), outputs=("yq",)),
        Node("dqy", "DequantizeLinear", inputs=("yq", "sy", "zy"), outputs=("out",)),
    ]
    values = [_v("x", (M, K), F32), _v("xq", (M, K), I8), _v("xd", (M, K), F32),
              _v("w", (K, N), I8, W), _v("wf", (K, N), F32, W), _v("y", (M, N), F32),
              _v("yq", (M, N), I8), _v("out", (M, N), F32)]  # fmt: skip
    for t in "xwy":
        values += [_v(f"s{t}", (), F32, W), _v(f"z{t}", (), I8, W)]
    g = _graph(nodes, values, outputs=["out"])
    costs = {n.name: cost_of(n, g) for n in nodes}
    assert {n for n, c in costs.items() if c.status is CostStatus.FOLDED} == {"dqx", "dqw", "qy"}
    assert costs["qx"].bytes_read.total == 133 and costs["qx"].bytes_written.total == 32
    mm = costs["mm"]
    assert mm.bytes_read.activations == 32
    assert mm.bytes_read.weights == 128 + 3 * 5
    assert mm.bytes_written.total == 64
    assert mm.compute_dtype is I8
    assert costs["dqy"].bytes_read.activations == 64 and costs["dqy"].bytes_written.total == 256


def test_integer_matmul_ops():
    # QLinearMatMul a int8[4,8], b int8[8,16] (+ 6 scalars): 2*4*8*16 = 1024 FLOPs in int8;
    # reads 32 + 128 + 3*(4+1) = 175 B, writes 64 B.
    node, g = one_node(
        "QLinearMatMul",
        [((M, K), I8), ((), F32, W), ((), I8, W), ((K, N), I8, W), ((), F32, W), ((), I8, W),
         ((), F32, W), ((), I8, W)],
        [((M, N), I8)],
    )  # fmt: skip
    cost = cost_of(node, g)
    assert (cost.flops, cost.bytes_read.total, cost.bytes_written.total) == (1024, 175, 64)
    assert cost.compute_dtype is I8
    # MatMulInteger a int8[4,8] x b int8[8,16] -> int32: 1024 FLOPs; reads 160, writes 256.
    node, g = one_node("MatMulInteger", [((M, K), I8), ((K, N), I8, W)],
                       [((M, N), DType.INT32)])
    cost = cost_of(node, g)
    assert (cost.flops, cost.bytes_read.total, cost.bytes_written.total) == (1024, 160, 256)
    assert cost.compute_dtype is I8
    # DynamicQuantizeMatMul a float[4,8] x b int8[8,16], b_scale float[16]: 1024 FLOPs in int8;
    # reads 128 + 128 + 64 = 320.
    node, g = one_node("DynamicQuantizeMatMul", [((M, K), F32), ((K, N), I8, W), ((N,), F32, W)],
                       [((M, N), F32)], domain="com.microsoft")
    cost = cost_of(node, g)
    assert (cost.flops, cost.bytes_read.total) == (1024, 320)
    assert cost.compute_dtype is I8


def test_gather_block_quantized_reads_rows_at_the_stored_width():
    # table uint8[1000, 32] packs 1000 x 64 int4 values; scales float[1000, 2] (block 32);
    # indices int64[1, 3] -> out float[1, 3, 64]: 192 elements, 2 FLOPs each = 384.
    # Rows read: 192 * 4 bits = 96 B of the table, 192/64000 of the scales (8000 B) = 24 B,
    # indices 24 B; written 192 * 4 = 768 B.
    node, g = one_node(
        "GatherBlockQuantized",
        [((1000, 32), DType.UINT8, W), ((1, 3), DType.INT64), ((1000, 2), F32, W)],
        [((1, 3, 64), F32)], domain="com.microsoft", attrs={"bits": 4, "block_size": 32},
    )  # fmt: skip
    cost = cost_of(node, g)
    assert cost.flops == 384
    assert cost.bytes_read.weights == 96 + 24
    assert cost.bytes_read.activations == 24
    assert cost.bytes_written.total == 768


def test_float8_weight_dequantize_reads_one_byte():
    # DQ(W float8e4m3fn[8,16], scale) -> MatMul with a float8 activation DQ: reads 128 B of
    # weights + 4 (scale), computes in float8 (the tensor.float8 peak where the device has one).
    f8 = DType.FLOAT8E4M3FN
    nodes = [Node("dqx", "DequantizeLinear", inputs=("xq", "sx"), outputs=("xd",)),
             Node("dqw", "DequantizeLinear", inputs=("w", "sw"), outputs=("wf",)),
             Node("mm", "MatMul", inputs=("xd", "wf"), outputs=("y",))]  # fmt: skip
    g = _graph(nodes, [_v("xq", (M, K), f8), _v("xd", (M, K), F32), _v("w", (K, N), f8, W),
                       _v("wf", (K, N), F32, W), _v("y", (M, N), F32), _v("sx", (), F32, W),
                       _v("sw", (), F32, W)], outputs=["y"])  # fmt: skip
    cost = cost_of(nodes[2], g)
    assert cost.bytes_read.weights == 128 + 4 + 4
    assert cost.bytes_read.activations == 32
    assert cost.compute_dtype is f8


# --- real tools on a tiny BERT ----------------------------------------------------------------

DIMS = {"batch_size": 1, "sequence_length": 16}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{form: path} for a 2-layer, hidden-64 BERT: fp32 and its four quantized forms."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("optimum.exporters.onnx")
    pytest.importorskip("onnxruntime.quantization")
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "bench_quantized", Path(__file__).resolve().parent.parent / "bench" / "quantized.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    config = transformers.BertConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=256,
        vocab_size=500,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = bench.build(tmp_path_factory.mktemp("quantized"), config=config,
                            calibration_samples=2)
    return bench, paths


@pytest.fixture(scope="module")
def reports(exports):
    _, paths = exports
    return {form: lint(str(path), hw="a100", dims=DIMS) for form, path in paths.items()}


@pytest.mark.parametrize("form", ["fp32", "qdq-int8", "dynamic-int8", "int4-matmulnbits", "fp16"])
def test_weight_bytes_read_match_the_file(exports, reports, form):
    bench, paths = exports
    report = reports[form]
    stored, tables = bench.stored_weights(paths[form])
    read = report.summary.bytes_read.weights - bench.gathered_table_reads(report, paths[form])
    assert abs(read / (stored - tables) - 1) <= 0.10, (form, read, stored, tables)
    assert report.summary.bytes_written.weights == 0


@pytest.mark.parametrize("form", ["qdq-int8", "dynamic-int8", "int4-matmulnbits"])
def test_resident_weights_are_the_stored_ones(exports, reports, form):
    # Peak memory holds the weights as stored (int8 / int4 and their scales), not a float copy
    # made by each weight DequantizeLinear: within 10% of the file's weight bytes.
    from memlint.analysis.liveness import footprint

    bench, paths = exports
    stored, _ = bench.stored_weights(paths[form])
    resident = footprint(reports[form].model.graph)
    assert abs(resident.weight_bytes / stored - 1) <= 0.10, (form, resident.weight_bytes, stored)
    fp32 = footprint(reports["fp32"].model.graph)
    assert resident.peak_total_bytes < fp32.peak_total_bytes


def test_qdq_costs_less_than_fp32(reports):
    fp32, qdq = reports["fp32"].summary, reports["qdq-int8"].summary
    assert qdq.bytes_by_kind.weights <= 0.3 * fp32.bytes_by_kind.weights
    # the operators' time: the QDQ graph runs more kernels (its activation Q/DQ pairs), whose
    # launch cost is no byte's
    assert qdq.work_latency_s <= fp32.work_latency_s


def _products(report, op):
    return [n for n in report.nodes if n.op_type == op and n.cost.flops]


def test_matmuls_are_labelled_with_their_quantized_dtype(reports):
    qdq = _products(reports["qdq-int8"], "MatMul")
    assert qdq and all(n.cost.compute_dtype.label == "int8" for n in qdq)
    assert all(n.timing.peak_key == "tensor.int8" for n in qdq)
    dyn = _products(reports["dynamic-int8"], "MatMulInteger")
    assert dyn and all(n.timing.peak_key == "tensor.int8" for n in dyn)
    nbits = _products(reports["int4-matmulnbits"], "MatMulNBits")
    assert nbits and all("4-bit" in n.cost.note for n in nbits)


def test_rules_see_the_real_dtype(reports):
    report = reports["qdq-int8"]
    for finding in report.findings:
        if finding.code == "ML101":
            assert "float32" not in finding.message, finding.message
            # int8 weights: the next step (int4) at most, never int8 again
            stores = [f.text for f in finding.fixes if f.text.startswith("Store the weights")]
            assert all(t.startswith("Store the weights as int4") for t in stores), stores
    assert "ML106" not in {f.code for f in report.findings}


def test_attention_found_through_qdq(reports):
    fp32 = {f.code for f in reports["fp32"].findings}
    qdq = [f for f in reports["qdq-int8"].findings if f.code == "ML103"]
    assert "ML103" in fp32
    assert qdq and "int8 attention scores" in qdq[0].message


def test_qdq_nodes_run_no_kernel(reports):
    report = reports["qdq-int8"]
    qdq = [n for n in report.nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    running = [n.name for n in qdq if n.timing.predicted_latency_s > 0]
    # the Q of the embedding sum's inputs and the DQs of the graph outputs still run
    assert len(running) <= 4, running
    assert all(n.cost.status is not CostStatus.UNMODELLED for n in report.nodes)


@pytest.mark.parametrize("form", ["fp32", "qdq-int8", "dynamic-int8", "int4-matmulnbits", "fp16"])
def test_both_estimates_hold_on_the_quantized_forms(reports, form):
    # issue 24 on what onnxruntime's quantizers and fp16 converter write: on a GPU spec the
    # as-written estimate pays at least a launch per kernel, and a fusing runtime runs fewer
    # kernels in less time, moving no more bytes (folded Q/DQ pairs are no kernel either way)
    summary = reports[form].summary
    assert summary.predicted_latency_s >= summary.kernels * 2.4e-6  # the a100's launch cost
    assert summary.kernels_fused < summary.kernels
    assert summary.predicted_latency_fused_s < summary.predicted_latency_s
    assert summary.fused.bytes_moved <= summary.bytes_moved


def test_dynamic_quantization_products_take_their_epilogues(reports):
    # onnxruntime runs a MatMulInteger with the Cast, scale Mul and bias Add after it as one
    # MatMulIntegerToFloat, and the Q/K/V products of one quantized activation as one: the
    # fused plan forms the float graph's epilogue and projection groups on the dynamic form
    fp32 = reports["fp32"].summary.fused.groups
    dynamic = reports["dynamic-int8"].summary.fused.groups
    assert dynamic["epilogue"] == fp32["epilogue"] > 0
    assert dynamic["projections"] == fp32["projections"] > 0


# --- onnxruntime's QOperator ops beyond the matrix products ------------------------------------


def test_qattention_counts_the_int8_projection_and_attention():
    # QAttention, B=1, S=8, D_in=64, D_qkv=192 (3 x 64), 4 heads of 16, no past:
    # projection 2*1*8*64*192 = 196,608 + bias 1*8*192 = 1,536; Q@K^T and P@V
    # 2*1*8*8*(64+64) = 16,384; softmax 5*1*4*8*8 = 1,280: 215,808 FLOPs in uint8.
    # Reads: input 8*64 uint8 = 512 + its scale 4 (activations); weight 64*192 int8 = 12,288,
    # bias 192 fp32 = 768, weight scale 4 (weights). Writes [1,8,64] fp32 = 2,048.
    node, graph = one_node(
        "QAttention",
        [((1, 8, 64), U8), ((64, 192), I8, W), ((192,), F32, W), ((), F32), ((), F32, W)],
        [((1, 8, 64), F32)], domain=MS, attrs={"num_heads": 4},
    )  # fmt: skip
    cost = cost_of(node, graph)
    assert cost.flops == 215_808
    assert cost.bytes_read == ByteCounts(weights=13_060, activations=516)
    assert cost.bytes_written == ByteCounts(activations=2_048)
    assert cost.compute_dtype is DType.UINT8


@pytest.mark.parametrize("op,flops", [("QLinearAdd", 64), ("QLinearMul", 64)])
def test_qlinear_binary_ops_compute_on_the_quantized_tensors(op, flops):
    # [4,16] uint8 A and B with scalar scales and zero points: 1 FLOP per output element = 64;
    # reads 64 + 64 (tensors) + 3 x 4 (scales) + 3 x 1 (zero points) = 143, writes 64.
    q = ((), U8)
    node, graph = one_node(op, [((4, 16), U8), ((), F32), q, ((4, 16), U8), ((), F32), q,
                                ((), F32), q], [((4, 16), U8)], domain=MS)  # fmt: skip
    cost = cost_of(node, graph)
    assert (cost.flops, cost.bytes_read.total, cost.bytes_written.total) == (flops, 143, 64)
    assert cost.compute_dtype is DType.UINT8


def test_qlinear_softmax_pool_and_concat():
    q = ((), U8)
    # QLinearSoftmax [2,10] uint8: 5 FLOPs per element = 100; reads 20 + 2 scales + 2 zps = 30
    node, graph = one_node("QLinearSoftmax", [((2, 10), U8), ((), F32), q, ((), F32), q],
                           [((2, 10), U8)], domain=MS)  # fmt: skip
    softmax = cost_of(node, graph)
    assert (softmax.flops, softmax.bytes_read.total, softmax.bytes_written.total) == (100, 30, 20)
    # QLinearGlobalAveragePool [1,8,4,4] uint8: 1 FLOP per input element = 128; writes 8
    node, graph = one_node("QLinearGlobalAveragePool", [((1, 8, 4, 4), U8), ((), F32), q,
                                                        ((), F32), q], [((1, 8, 1, 1), U8)],
                           domain=MS)  # fmt: skip
    pool = cost_of(node, graph)
    assert (pool.flops, pool.bytes_written.total, pool.compute_dtype) == (128, 8, DType.UINT8)
    # QLinearConcat of two [2,8] uint8 into [4,8]: a copy, 0 FLOPs; reads 16 + 16 + 3 scales +
    # 3 zps = 47, writes 32
    node, graph = one_node("QLinearConcat", [((), F32), q, ((2, 8), U8), ((), F32), q,
                                             ((2, 8), U8), ((), F32), q], [((4, 8), U8)],
                           domain=MS, attrs={"axis": 0})  # fmt: skip
    concat = cost_of(node, graph)
    assert (concat.flops, concat.bytes_read.total, concat.bytes_written.total) == (0, 47, 32)
    assert concat.status is CostStatus.MODELLED


def test_moe_reads_the_experts_a_step_touches():
    """com.microsoft MoE: 1 token, 8 experts, top-2, fc1 float[8, 64, 128], fc2 float[8, 128,
    64]. FLOPs: 1 row x 2 experts x 2 x (64 x 128 + 128 x 64) = 65,536. A step of 1 token
    touches 2 of 8 experts: 1 - (1 - 2/8)^1 = 1/4 of each weight, 262,144 B / 4 = 65,536 B
    each; plus the input 64 x 4 = 256 B and router probs 8 x 4 = 32 B."""
    node, g = one_node(
        "MoE",
        [((1, 64), F32), ((1, 8), F32), ((8, 64, 128), F32, W), None, ((8, 128, 64), F32, W)],
        [((1, 64), F32)], domain="com.microsoft", attrs={"k": 2},
    )  # fmt: skip
    cost = cost_of(node, g)
    assert cost.flops == 65_536
    assert cost.bytes_read.weights == 2 * 65_536
    assert cost.bytes_read.activations == 256 + 32
    assert cost.bytes_written.total == 256
    # 64 rows (a batch of 64 decode steps): 1 - 0.75^64 of the experts, all but 1e-8
    node, g = one_node(
        "MoE",
        [((64, 64), F32), ((64, 8), F32), ((8, 64, 128), F32, W), None, ((8, 128, 64), F32, W)],
        [((64, 64), F32)], domain="com.microsoft", attrs={"k": 2},
    )  # fmt: skip
    cost = cost_of(node, g)
    assert cost.flops == 64 * 65_536
    assert cost.bytes_read.weights == 2 * 262_144


def test_qmoe_counts_packed_int4_experts():
    """QMoE, 4-bit experts: fc1 uint8[8, 128, 32] packs 8 x 128 x 64 weights (2 per byte), fc2
    uint8[8, 64, 64] packs 8 x 64 x 128, scales float16[8, 128] and [8, 64]. 1 token, top-2:
    FLOPs 2 x 2 x (8,192 + 8,192) = 65,536 (as the fp32 MoE); weights read 1/4 of 32,768 B each
    = 16,384 B, the scales whole (2,048 + 1,024 B)."""
    node, g = one_node(
        "QMoE",
        [((1, 64), F16), ((1, 8), F16), ((8, 128, 32), U8, W), ((8, 128), F16, W), None,
         ((8, 64, 64), U8, W), ((8, 64), F16, W)],
        [((1, 64), F16)], domain="com.microsoft", attrs={"k": 2, "expert_weight_bits": 4},
    )  # fmt: skip
    cost = cost_of(node, g)
    assert cost.flops == 65_536
    assert cost.bytes_read.weights == 2 * 8_192 + 2_048 + 1_024
