"""Costs of the memory-bound families: element-wise, normalization, reductions, pooling and
data movement.

Every expected number is derived by hand in the comment above it. ByteCounts fields are
(weights, activations, kv_cache).
"""

from __future__ import annotations

import importlib
import re

import pytest
from irbuild import BF16, BOOL, F16, F32, I32, I64, KV, U8, A, W, one_node

import memlint.costs
from memlint.costs import ByteCounts, CostStatus, cost_of, registry
from memlint.costs.registry import Formula, OpInfo, add_formula, register_metadata
from memlint.errors import RegistrationError
from memlint.ir import ComputeUnit

MS = "com.microsoft"
FAMILIES = ("elementwise", "normalization", "reduction", "pooling", "data_movement")


def cost(op, inputs, outputs, **kw):
    node, graph = one_node(op, inputs, outputs, **kw)
    return cost_of(node, graph)


def check(c, flops, read, written):
    assert c.status is CostStatus.MODELLED, c.note
    assert c.unit is ComputeUnit.VECTOR
    assert c.flops == flops
    assert c.bytes_read == read
    assert c.bytes_written == written


# --- element-wise ---------------------------------------------------------------------------


def test_add_with_broadcast_weight():
    # Add [2,128,768] fp16 + [768] fp16 weight: flops 2*128*768 = 196_608 (1 per output element);
    # read 196_608*2 = 393_216 activation bytes + 768*2 = 1_536 weight bytes; write 393_216.
    c = cost("Add", [((2, 128, 768), F16), ((768,), F16, W)], [((2, 128, 768), F16)])
    check(
        c, 196_608, ByteCounts(weights=1_536, activations=393_216),
        ByteCounts(activations=393_216),
    )


def test_where_counts_one_select_per_output_element():
    # Where cond [1,1,128,128] bool, x [2,12,128,128] fp16, y scalar fp16 weight.
    # out numel 2*12*128*128 = 393_216 -> flops 393_216.
    # read: cond 16_384 * 1 B + x 393_216 * 2 B = 802_816 activations; y 2 weight bytes.
    # write 393_216 * 2 = 786_432.
    c = cost(
        "Where",
        [((1, 1, 128, 128), BOOL), ((2, 12, 128, 128), F16), ((), F16, W)],
        [((2, 12, 128, 128), F16)],
    )
    check(c, 393_216, ByteCounts(weights=2, activations=802_816), ByteCounts(activations=786_432))


def test_cast_fp32_to_fp16_is_a_copy():
    # Cast [2,128,768]: 196_608 elements, 0 flops; read at 4 B = 786_432, write at 2 B = 393_216.
    c = cost("Cast", [((2, 128, 768), F32)], [((2, 128, 768), F16)], attrs={"to": 10})
    check(c, 0, ByteCounts(activations=786_432), ByteCounts(activations=393_216))


def test_cast_like_does_not_read_its_type_input():
    # CastLike [1024] bf16 -> like [4096] fp32: reads 1024*2 = 2_048 only, writes 1024*4 = 4_096.
    c = cost("CastLike", [((1024,), BF16), ((4096,), F32)], [((1024,), F32)])
    check(c, 0, ByteCounts(activations=2_048), ByteCounts(activations=4_096))


@pytest.mark.parametrize(
    ("op", "n_inputs", "flops"),
    [
        # 3 inputs [4,256]: (3-1) adds * 1024 outputs = 2_048; Mean adds 1 divide: 3*1024 = 3_072.
        ("Sum", 3, 2_048),
        ("Max", 3, 2_048),
        ("Mean", 3, 3_072),
        # one input: a copy, 0 flops.
        ("Sum", 1, 0),
    ],
)
def test_variadic(op, n_inputs, flops):
    # read n_inputs * 1024 * 4 B; write 1024 * 4 = 4_096.
    c = cost(op, [((4, 256), F32)] * n_inputs, [((4, 256), F32)])
    check(c, flops, ByteCounts(activations=4_096 * n_inputs), ByteCounts(activations=4_096))


@pytest.mark.parametrize(
    ("op", "domain", "attrs", "per_element"),
    [
        ("Relu", "", {}, 1),
        ("Exp", "", {}, 1),
        ("Sigmoid", "", {}, 4),  # neg, exp, add, div
        ("HardSwish", "", {}, 4),  # mul, add, saturate, mul
        ("Clip", "", {}, 2),  # min, max
        ("Gelu", "", {}, 5),  # erf form: mul, erf, add, mul, mul
        ("Gelu", "", {"approximate": "tanh"}, 8),  # x*x, *c2, +c1, *x, tanh, +1, *x, *0.5
        ("Gelu", "", {"approximate": b"tanh"}, 8),  # ONNX keeps strings as bytes
        ("Gelu", MS, {}, 5),
        ("QuickGelu", MS, {}, 5),  # mul -a, exp, add, div, mul
    ],
)
def test_unary_activation_table(op, domain, attrs, per_element):
    # [8,1024] fp32 = 8_192 elements: read and write 32_768 B each.
    c = cost(op, [((8, 1024), F32)], [((8, 1024), F32)], domain=domain, attrs=attrs)
    check(c, per_element * 8_192, ByteCounts(activations=32_768), ByteCounts(activations=32_768))


def test_fast_gelu_bias_adds_one_per_element():
    # com.microsoft FastGelu X [1,16,3072] fp16 + bias [3072] fp16 weight: 49_152 elements,
    # (8 + 1) * 49_152 = 442_368 flops; read 98_304 act + 6_144 weight; write 98_304.
    c = cost(
        "FastGelu",
        [((1, 16, 3072), F16), ((3072,), F16, W)],
        [((1, 16, 3072), F16)],
        domain=MS,
    )
    check(c, 442_368, ByteCounts(weights=6_144, activations=98_304), ByteCounts(activations=98_304))


def test_quantize_linear():
    # QuantizeLinear x [1024] fp32, scale fp32 weight, zero point uint8 weight -> y [1024] uint8:
    # 4 * 1024 = 4_096 flops (div, round, add zero point, saturating convert);
    # read 4_096 act + 4 + 1 = 5 weight bytes; write 1_024.
    c = cost("QuantizeLinear", [((1024,), F32), ((), F32, W), ((), U8, W)], [((1024,), U8)])
    check(c, 4_096, ByteCounts(weights=5, activations=4_096), ByteCounts(activations=1_024))


# --- normalization --------------------------------------------------------------------------


def test_layer_normalization():
    # X [2,128,768] fp16 (196_608 elements), scale and B [768] fp16 weights:
    # flops 8 * 196_608 = 1_572_864; read 393_216 act + 2*1_536 = 3_072 weight; write 393_216.
    c = cost(
        "LayerNormalization",
        [((2, 128, 768), F16), ((768,), F16, W), ((768,), F16, W)],
        [((2, 128, 768), F16)],
    )
    check(
        c, 1_572_864, ByteCounts(weights=3_072, activations=393_216),
        ByteCounts(activations=393_216),
    )


def test_layer_normalization_without_bias():
    # No B: 7 * 196_608 = 1_376_256 flops; only scale's 1_536 weight bytes read.
    c = cost("LayerNormalization", [((2, 128, 768), F16), ((768,), F16, W)], [((2, 128, 768), F16)])
    check(
        c, 1_376_256, ByteCounts(weights=1_536, activations=393_216),
        ByteCounts(activations=393_216),
    )


def test_skip_layer_normalization_com_microsoft():
    # input, skip [2,128,768] fp16; gamma, beta, bias [768] fp16 weights.
    # flops (8 + 1 residual add + 1 bias add) * 196_608 = 1_966_080.
    # read 2 * 393_216 = 786_432 act + 3 * 1_536 = 4_608 weight; write 393_216.
    c = cost(
        "SkipLayerNormalization",
        [((2, 128, 768), F16), ((2, 128, 768), F16)] + [((768,), F16, W)] * 3,
        [((2, 128, 768), F16)],
        domain=MS,
    )
    check(
        c, 1_966_080, ByteCounts(weights=4_608, activations=786_432),
        ByteCounts(activations=393_216),
    )


def test_simplified_layer_normalization_is_in_the_default_domain():
    # onnxruntime registers SimplifiedLayerNormalization in "" (not com.microsoft).
    # X [1,1,4096] fp16, scale [4096] fp16 weight: 5 * 4096 = 20_480 flops;
    # read 8_192 act + 8_192 weight; write 8_192.
    c = cost("SimplifiedLayerNormalization", [((1, 1, 4096), F16), ((4096,), F16, W)],
             [((1, 1, 4096), F16)])  # fmt: skip
    check(c, 20_480, ByteCounts(weights=8_192, activations=8_192), ByteCounts(activations=8_192))
    assert not memlint.costs.is_registered("SimplifiedLayerNormalization", MS)


def test_skip_simplified_layer_normalization():
    # input, skip [1,1,4096] fp16, gamma [4096] weight: (5 + 1) * 4096 = 24_576 flops;
    # read 2 * 8_192 = 16_384 act + 8_192 weight; write 8_192.
    c = cost(
        "SkipSimplifiedLayerNormalization",
        [((1, 1, 4096), F16), ((1, 1, 4096), F16), ((4096,), F16, W)],
        [((1, 1, 4096), F16)],
        domain=MS,
    )
    check(c, 24_576, ByteCounts(weights=8_192, activations=16_384), ByteCounts(activations=8_192))


def test_batch_normalization_inference_is_folded_scale_and_shift():
    # X [1,64,56,56] fp32 = 200_704 elements: 2 * 200_704 = 401_408 flops;
    # read 802_816 act + 4 params * 64 * 4 B = 1_024 weight; write 802_816.
    c = cost(
        "BatchNormalization",
        [((1, 64, 56, 56), F32)] + [((64,), F32, W)] * 4,
        [((1, 64, 56, 56), F32)],
    )
    check(
        c, 401_408, ByteCounts(weights=1_024, activations=802_816),
        ByteCounts(activations=802_816),
    )


def test_embed_layer_normalization_reads_only_gathered_rows():
    # input_ids [1,1] int32, no segment ids, word table [30522,768] fp32 weight, position table
    # [512,768] fp32 weight, no segment table, gamma/beta [768] fp32, mask [1,1] int32.
    # Outputs: [1,1,768] fp32 and mask_index [1] int32.
    # flops: (1 add for 2 tables + 8 layer norm) * 768 + 1 mask element = 6_913.
    # read weights: one word row 3_072 + one position row 3_072 + gamma 3_072 + beta 3_072 = 12_288
    # (not the 93.8 MB vocabulary); activations: ids 4 + mask 4 = 8. write 3_072 + 4 = 3_076.
    c = cost(
        "EmbedLayerNormalization",
        [
            ((1, 1), I32),
            None,
            ((30522, 768), F32, W),
            ((512, 768), F32, W),
            None,
            ((768,), F32, W),
            ((768,), F32, W),
            ((1, 1), I32),
        ],
        [((1, 1, 768), F32), ((1,), I32)],
        domain=MS,
    )
    check(c, 6_913, ByteCounts(weights=12_288, activations=8), ByteCounts(activations=3_076))


# --- reductions -----------------------------------------------------------------------------


def test_reduce_mean():
    # ReduceMean X [2,128,768] fp32, axes [-1] int64 constant -> [2,128,1]:
    # 1 add per input element 196_608 + 1 divide per output element 256 = 196_864 flops;
    # read 786_432 act + 8 weight; write 256 * 4 = 1_024.
    c = cost(
        "ReduceMean",
        [((2, 128, 768), F32), ((1,), I64, W)],
        [((2, 128, 1), F32)],
        constants={1: [-1]},
    )
    check(c, 196_864, ByteCounts(weights=8, activations=786_432), ByteCounts(activations=1_024))


def test_softmax():
    # Softmax [2,12,128,128] fp32 = 393_216 elements: 5 * 393_216 = 1_966_080 flops
    # (max, sub, exp, sum, div); read and write 393_216 * 4 = 1_572_864.
    c = cost("Softmax", [((2, 12, 128, 128), F32)], [((2, 12, 128, 128), F32)], attrs={"axis": -1})
    check(c, 1_966_080, ByteCounts(activations=1_572_864), ByteCounts(activations=1_572_864))


@pytest.mark.parametrize(
    ("k", "known", "flops"),
    [
        (50, True, 192_000),  # 32_000 * ceil(log2 50) = 32_000 * 6
        (1, True, 32_000),  # k = 1 is an argmax: 1 compare per element
        (50, False, 192_000),  # k unknown: read from the output shape on axis -1
    ],
)
def test_top_k(k, known, flops):
    # TopK X [1,32000] fp32, K [1] int64 -> values [1,k] fp32, indices [1,k] int64.
    # read 128_000 act + 8 for K (a weight when known); write k*4 + k*8 = 12k.
    c = cost(
        "TopK",
        [((1, 32000), F32), ((1,), I64, W if known else A)],
        [((1, k), F32), ((1, k), I64)],
        constants={1: [k]} if known else None,
    )
    read = ByteCounts(weights=8, activations=128_000) if known else ByteCounts(activations=128_008)
    check(c, flops, read, ByteCounts(activations=12 * k))


# --- pooling --------------------------------------------------------------------------------


def test_max_pool():
    # MaxPool [1,64,112,112] fp32, 3x3 window, stride 2, pad 1 -> [1,64,56,56] = 200_704 outputs:
    # 9 * 200_704 = 1_806_336 flops; read 64*112*112*4 = 3_211_264; write 200_704*4 = 802_816.
    c = cost(
        "MaxPool",
        [((1, 64, 112, 112), F32)],
        [((1, 64, 56, 56), F32)],
        attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    )
    check(c, 1_806_336, ByteCounts(activations=3_211_264), ByteCounts(activations=802_816))


def test_global_average_pool():
    # [1,2048,7,7] fp32 -> [1,2048,1,1]: 1 per input element = 100_352 flops;
    # read 401_408; write 8_192.
    c = cost("GlobalAveragePool", [((1, 2048, 7, 7), F32)], [((1, 2048, 1, 1), F32)])
    check(c, 100_352, ByteCounts(activations=401_408), ByteCounts(activations=8_192))


# --- data movement --------------------------------------------------------------------------


def test_gather_embedding_lookup_reads_only_gathered_rows():
    # Gather table [32000,4096] fp16 weight, indices [1,1] int64 -> [1,1,4096] fp16.
    # Reads one row 4096*2 = 8_192 weight bytes (not the 262_144_000 B table) + 8 B of indices;
    # writes 8_192.
    c = cost(
        "Gather", [((32000, 4096), F16, W), ((1, 1), I64)], [((1, 1, 4096), F16)], attrs={"axis": 0}
    )
    check(c, 0, ByteCounts(weights=8_192, activations=8), ByteCounts(activations=8_192))


def test_gather_never_reads_more_than_the_table():
    # Table [4,8] fp32 (128 B), 16 indices -> [16,8]: 128 gathered elements * 4 = 512 B, capped
    # at the table's 128 B; indices 16*8 = 128 B; write 512.
    c = cost("Gather", [((4, 8), F32, W), ((16,), I64)], [((16, 8), F32)])
    check(c, 0, ByteCounts(weights=128, activations=128), ByteCounts(activations=512))


def test_gather_elements():
    # data [4,1000] fp32, indices [4,5] int64 -> [4,5] fp32: read 20*4 = 80 of data + 160 of
    # indices = 240; write 80.
    c = cost("GatherElements", [((4, 1000), F32), ((4, 5), I64)], [((4, 5), F32)])
    check(c, 0, ByteCounts(activations=240), ByteCounts(activations=80))


def test_slice_of_kv_cache_keeps_its_kind():
    # Slice KV [1,32,4096,128] fp16 to the last 1024 positions -> [1,32,1024,128] fp16:
    # read 32*1024*128*2 = 8_388_608 KV-cache bytes (not all 33_554_432) + starts/ends/axes
    # 3 * 8 = 24 weight bytes; write 8_388_608.
    c = cost(
        "Slice",
        [((1, 32, 4096, 128), F16, KV), ((1,), I64, W), ((1,), I64, W), ((1,), I64, W)],
        [((1, 32, 1024, 128), F16)],
        constants={1: [3072], 2: [4096], 3: [2]},
    )
    check(c, 0, ByteCounts(weights=24, kv_cache=8_388_608), ByteCounts(activations=8_388_608))


def test_concat_kv_cache():
    # Concat past KV [1,32,4095,128] fp16 + new [1,32,1,128] fp16 -> present [1,32,4096,128], a
    # graph output: read 32*4095*128*2 = 33_546_240 KV + 32*128*2 = 8_192 act. Of the
    # 33_554_432 B written, the new token (8_192) goes into the cache and the rest is a copy of
    # what was cached (33_546_240 activations): the KV cache is the cache, its copies are not.
    c = cost(
        "Concat",
        [((1, 32, 4095, 128), F16, KV), ((1, 32, 1, 128), F16)],
        [((1, 32, 4096, 128), F16, KV)],
        attrs={"axis": 2},
    )
    check(
        c, 0, ByteCounts(activations=8_192, kv_cache=33_546_240),
        ByteCounts(activations=33_546_240, kv_cache=8_192),
    )


def test_transpose():
    # [2,12,128,64] fp16 -> [2,12,64,128]: 196_608 elements, read and write 393_216 B each.
    c = cost("Transpose", [((2, 12, 128, 64), F16)], [((2, 12, 64, 128), F16)],
             attrs={"perm": [0, 1, 3, 2]})  # fmt: skip
    check(c, 0, ByteCounts(activations=393_216), ByteCounts(activations=393_216))


@pytest.mark.parametrize("op", ["Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"])
def test_metadata_ops_move_no_bytes(op):
    # A view: no flops, no bytes at all.
    c = cost(op, [((2, 128, 768), F16), ((4,), I64, W)], [((2, 128, 12, 64), F16)],
             constants={1: [2, 128, 12, 64]})  # fmt: skip
    assert c.status is CostStatus.METADATA
    assert (c.flops, c.bytes_moved) == (0, 0)


def test_constant_of_shape_only_writes():
    # shape [3] int64 -> [2,128,128] fp16: read nothing; write 32_768 * 2 = 65_536.
    c = cost("ConstantOfShape", [((3,), I64)], [((2, 128, 128), F16)])
    check(c, 0, ByteCounts(), ByteCounts(activations=65_536))


def test_resize_linear():
    # Resize [1,3,224,224] -> [1,3,448,448] fp32, linear over 2 axes: 3 * (2^2 - 1) = 9 flops per
    # output, 3*448*448 = 602_112 outputs -> 5_419_008 flops.
    # read 3*224*224*4 = 602_112 act + scales 4*4 = 16 weight; write 602_112*4 = 2_408_448.
    c = cost(
        "Resize",
        [((1, 3, 224, 224), F32), None, ((4,), F32, W)],
        [((1, 3, 448, 448), F32)],
        attrs={"mode": "linear"},
        constants={2: [1.0, 1.0, 2.0, 2.0]},
    )
    check(c, 5_419_008, ByteCounts(weights=16, activations=602_112),
          ByteCounts(activations=2_408_448))  # fmt: skip


def test_tensor_scatter_counts_as_written():
    # TensorScatter past KV [1,8,4096,128] fp16 + update [1,8,1,128] fp16 -> present KV:
    # read 8*4096*128*2 = 8_388_608 KV + 2_048 act; write 8_388_608 KV (as written, not in place).
    c = cost(
        "TensorScatter",
        [((1, 8, 4096, 128), F16, KV), ((1, 8, 1, 128), F16)],
        [((1, 8, 4096, 128), F16, KV)],
    )
    check(c, 0, ByteCounts(activations=2_048, kv_cache=8_388_608), ByteCounts(kv_cache=8_388_608))


def test_non_max_suppression_worst_case():
    # boxes [1,100,4], scores [1,2,100] fp32, max_output_boxes_per_class 10 -> [20,3] int64.
    # per class: sort 100 * ceil(log2 100) = 700 + 10 kept * 100 candidates * 13 = 13_000;
    # 1 batch * 2 classes * 13_700 = 27_400 flops.
    # read 1_600 + 800 act + 8 weight; write 20*3*8 = 480.
    c = cost(
        "NonMaxSuppression",
        [((1, 100, 4), F32), ((1, 2, 100), F32), ((1,), I64, W)],
        [((20, 3), I64)],
        constants={2: [10]},
    )
    check(c, 27_400, ByteCounts(weights=8, activations=2_400), ByteCounts(activations=480))


# --- the registry ---------------------------------------------------------------------------


def test_unknown_op_is_unmodelled_with_a_lower_bound():
    # FooBar [4,4] fp32 -> [4,4] fp32: no formula; bytes 64 in, 64 out as a lower bound.
    c = cost("FooBar", [((4, 4), F32)], [((4, 4), F32)])
    assert c.status is CostStatus.UNMODELLED
    assert c.bytes_read.total == 64 and c.bytes_written.total == 64


def test_no_duplicate_registrations():
    # Importing every family raised nothing, so no key was claimed twice; a second claim raises.
    zero = Formula(lambda ctx: ctx.cost(0), OpInfo("elementwise", elementwise=True))
    with pytest.raises(RegistrationError, match="exists already"):
        add_formula("Add", zero)
    with pytest.raises(RegistrationError, match="exists already"):
        add_formula("SkipLayerNormalization", zero, domain=MS)
    with pytest.raises(RegistrationError, match="exists already"):
        register_metadata("Reshape")


@pytest.mark.parametrize("family", FAMILIES)
def test_family_docstring_names_every_op_it_registers(family):
    # The docstring tables feed the docs: each op a family counts must appear in them.
    module = importlib.import_module(f"memlint.costs.{family}")
    ops = {op for (_, op), row in registry._TABLE.items()
           if row.cost is not None and row.cost.__module__ == module.__name__}
    if family == "data_movement":  # the ops that move no data are declared there
        ops |= {op for (_, op), row in registry._TABLE.items() if row.cost is None}
    assert ops, family
    missing = sorted(op for op in ops if not re.search(rf"\b{op}\b", module.__doc__))
    assert not missing, f"{family} docstring does not name {missing}"
