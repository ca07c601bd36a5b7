"""Cost formulas of the compute-bound families: matmul, conv, attention, recurrent.

Expected numbers are derived by hand in the comments; a second set of tests cross-checks the
matmul and conv FLOPs against torch.utils.flop_counter.
"""

from __future__ import annotations

import math

import pytest
from irbuild import BF16, F16, F32, I8, I32, I64, KV, U8, W, one_node

import memlint.costs  # noqa: F401  (registers every family)
from memlint.costs import ByteCounts, CostStatus, cost_of, registered_ops
from memlint.ir import ComputeUnit

MS = "com.microsoft"
TENSOR, VECTOR = ComputeUnit.TENSOR, ComputeUnit.VECTOR


def cost(op_type, inputs, outputs, **kwargs):
    result = cost_of(*one_node(op_type, inputs, outputs, **kwargs))
    assert result.status is CostStatus.MODELLED, result.note
    return result


def test_every_op_of_the_four_families_is_registered():
    expected = {
        ("", op)
        for op in (
            "MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "Einsum",
            "Conv", "ConvTranspose", "ConvInteger", "QLinearConv",
            "Attention", "RotaryEmbedding", "LSTM", "GRU", "RNN",
        )
    } | {
        (MS, op)
        for op in (
            "FusedMatMul", "MatMulNBits", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
            "QGemm", "GemmFastGelu", "FusedConv", "NhwcConv", "NhwcFusedConv", "QLinearConv",
            "Attention", "MultiHeadAttention", "GroupQueryAttention",
            "DecoderMaskedMultiHeadAttention", "RotaryEmbedding",
        )
    }  # fmt: skip
    assert expected <= set(registered_ops())


# --- matmul ------------------------------------------------------------------------------------


def test_matmul_decode_step_fp16():
    # MatMul [1,1,768] x [768,3072] fp16 -> [1,1,3072]: flops 2*1*768*3072 = 4_718_592;
    # bytes read: activations 768*2 = 1_536, weights 768*3072*2 = 4_718_592; written 3072*2 = 6_144
    c = cost("MatMul", [((1, 1, 768), F16), ((768, 3072), F16, W)], [((1, 1, 3072), F16)])
    assert c.flops == 4_718_592
    assert c.bytes_read == ByteCounts(weights=4_718_592, activations=1_536)
    assert c.bytes_written == ByteCounts(activations=6_144)
    assert c.unit is TENSOR
    assert c.compute_dtype is F16


def test_matmul_broadcasts_batch_dims():
    # [2,1,8,16] x [3,16,32] -> [2,3,8,32] fp32: flops 2*(2*3*8*32)*16 = 2*1_536*16 = 49_152;
    # read 2*8*16*4 + 3*16*32*4 = 1_024 + 6_144 = 7_168; written 1_536*4 = 6_144
    c = cost("MatMul", [((2, 1, 8, 16), F32), ((3, 16, 32), F32)], [((2, 3, 8, 32), F32)])
    assert c.flops == 49_152
    assert c.bytes_read == ByteCounts(activations=7_168)
    assert c.bytes_written == ByteCounts(activations=6_144)


@pytest.mark.parametrize(
    ("a", "b", "y", "flops"),
    [
        ((16,), (16, 32), (32,), 2 * 32 * 16),  # vector @ matrix: 1_024
        ((4, 16), (16,), (4,), 2 * 4 * 16),  # matrix @ vector: 128
        ((16,), (16,), (), 2 * 16),  # dot product: 32
        ((5, 4, 16), (16,), (5, 4), 2 * 20 * 16),  # batched matrix @ vector: 640
    ],
)
def test_matmul_one_dimensional_operands(a, b, y, flops):
    assert cost("MatMul", [(a, F32), (b, F32)], [(y, F32)]).flops == flops


def test_gemm_trans_b_with_c():
    # Gemm A [4,768], B [3072,768] transB=1, C [3072] fp32 -> [4,3072]:
    # flops 2*4*3072*768 + 4*3072 = 18_874_368 + 12_288 = 18_886_656;
    # read: activations 4*768*4 = 12_288; weights 3072*768*4 + 3072*4 = 9_437_184 + 12_288
    # = 9_449_472; written 4*3072*4 = 49_152
    c = cost(
        "Gemm",
        [((4, 768), F32), ((3072, 768), F32, W), ((3072,), F32, W)],
        [((4, 3072), F32)],
        attrs={"transB": 1},
    )
    assert c.flops == 18_886_656
    assert c.bytes_read == ByteCounts(weights=9_449_472, activations=12_288)
    assert c.bytes_written == ByteCounts(activations=49_152)
    assert c.unit is TENSOR


def test_gemm_trans_a_without_c():
    # A [768,4] transA=1 -> K = 768; B [768,3072]: flops 2*4*3072*768 = 18_874_368
    a, b = ((768, 4), F32), ((768, 3072), F32, W)
    c = cost("Gemm", [a, b], [((4, 3072), F32)], attrs={"transA": 1})
    assert c.flops == 18_874_368


def test_matmul_nbits_4bit_weights_are_half_a_byte():
    # MatMulNBits A [1,1,4096] fp16, K=4096, N=11008, bits=4, block_size=32:
    # B packed [11008, 128, 16] uint8 (128 blocks of 32 weights, 16 bytes each), scales [11008,128].
    # flops 2*1*11008*4096 = 90_177_536
    # weights read: B 11008*128*16 = 22_544_384 (= 4096*11008 / 2: half a byte per weight)
    #               + scales 11008*128*2 = 2_818_048 -> 25_362_432
    # activations read 4096*2 = 8_192; written 11008*2 = 22_016
    k, n = 4096, 11008
    c = cost(
        "MatMulNBits",
        [((1, 1, k), F16), ((n, 128, 16), U8, W), ((n, 128), F16, W)],
        [((1, 1, n), F16)],
        domain=MS,
        attrs={"K": k, "N": n, "bits": 4, "block_size": 32},
    )
    assert c.flops == 90_177_536
    assert n * 128 * 16 == k * n // 2
    assert c.bytes_read == ByteCounts(weights=25_362_432, activations=8_192)
    assert c.bytes_written == ByteCounts(activations=22_016)
    assert c.compute_dtype is F16
    assert c.unit is TENSOR


def test_fused_matmul_trans_a():
    # FusedMatMul A [2,16,8] transA=1 (A^T is [2,8,16], K = 16) x B [2,16,32] -> [2,8,32]:
    # flops 2*(2*8*32)*16 = 16_384
    c = cost(
        "FusedMatMul",
        [((2, 16, 8), F32), ((2, 16, 32), F32)],
        [((2, 8, 32), F32)],
        domain=MS,
        attrs={"transA": 1},
    )
    assert c.flops == 16_384


def test_gemm_fast_gelu():
    # X [4,64] x W [64,128] + bias [128], FastGelu: out 512 elements;
    # flops 2*512*64 + 512 (bias) + 8*512 (gelu, tanh form) = 65_536 + 4_608 = 70_144
    c = cost(
        "GemmFastGelu",
        [((4, 64), F16), ((64, 128), F16, W), ((128,), F16, W)],
        [((4, 128), F16)],
        domain=MS,
    )
    assert c.flops == 70_144


@pytest.mark.parametrize(
    ("op_type", "domain", "inputs", "dtype"),
    [
        ("MatMulInteger", "", [((8, 64), U8), ((64, 32), I8, W)], U8),
        # QLinearMatMul: a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point
        (
            "QLinearMatMul",
            "",
            [((8, 64), I8), ((), F32), ((), I8), ((64, 32), I8, W), ((), F32), ((), I8),
             ((), F32), ((), I8)],
            I8,
        ),  # fmt: skip
        # MatMulIntegerToFloat: A, B, a_scale, b_scale
        ("MatMulIntegerToFloat", MS, [((8, 64), U8), ((64, 32), I8, W), ((), F32), ((), F32)], U8),
        # DynamicQuantizeMatMul: A (float, quantized at run time), B, b_scale
        ("DynamicQuantizeMatMul", MS, [((8, 64), F32), ((64, 32), I8, W), ((), F32)], I8),
    ],
)
def test_integer_matmuls_compute_in_their_integer_type(op_type, domain, inputs, dtype):
    # [8,64] x [64,32]: flops 2*8*32*64 = 32_768
    c = cost(op_type, inputs, [((8, 32), F32)], domain=domain)
    assert c.flops == 32_768
    assert c.compute_dtype is dtype
    assert c.unit is TENSOR


def test_qgemm_with_c():
    # QGemm A [8,64] u8, B [32,64] transB=1 i8, C [32] int32: flops 2*8*32*64 + 8*32 = 33_024
    scalars = [((), F32), ((), U8)]
    c = cost(
        "QGemm",
        [((8, 64), U8), *scalars, ((32, 64), I8, W), *scalars, ((32,), I32, W)],
        [((8, 32), F32)],
        domain=MS,
        attrs={"transB": 1},
    )
    assert c.flops == 33_024
    assert c.compute_dtype is U8


def test_einsum_contraction():
    # "bhqd,bhkd->bhqk" [2,4,8,16] x [2,4,10,16] -> [2,4,8,10]: indices b2 h4 q8 d16 k10,
    # flops 2*2*4*8*16*10 = 20_480; read (1_024 + 1_280)*4 = 9_216; written 640*4 = 2_560
    c = cost(
        "Einsum",
        [((2, 4, 8, 16), F32), ((2, 4, 10, 16), F32)],
        [((2, 4, 8, 10), F32)],
        attrs={"equation": "bhqd,bhkd->bhqk"},
    )
    assert c.flops == 20_480
    assert c.bytes_read == ByteCounts(activations=9_216)
    assert c.bytes_written == ByteCounts(activations=2_560)
    assert c.unit is TENSOR


@pytest.mark.parametrize(
    ("equation", "shapes", "out", "flops", "unit"),
    [
        # implicit output with ellipsis: ... = 3, i4 j5 k6 -> 2*3*4*5*6 = 720
        ("...ij,jk", [(3, 4, 5), (5, 6)], (3, 4, 6), 720, TENSOR),
        # broadcast ellipsis: [3,1,4,5] x [2,5,6]; ellipsis dims 3 and 2, i4 j5 k6: 2*3*2*4*5*6
        ("...ij,...jk->...ik", [(3, 1, 4, 5), (2, 5, 6)], (3, 2, 4, 6), 1_440, TENSOR),
        # one operand, a reduction: 4*5 = 20
        ("ij->i", [(4, 5)], (4,), 20, VECTOR),
        # three operands, left to right: {i2,j3,k4} -> 48, keeps {i,k}; {i2,k4,l5} -> 80: 128
        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], (2, 5), 128, TENSOR),
    ],
)
def test_einsum_forms(equation, shapes, out, flops, unit):
    c = cost("Einsum", [(s, F32) for s in shapes], [(out, F32)], attrs={"equation": equation})
    assert c.flops == flops
    assert c.unit is unit


# --- conv --------------------------------------------------------------------------------------


def test_grouped_conv_with_bias():
    # Conv X [2,32,28,28], W [64,8,3,3] group=4 (C_in/group = 8), B [64], pads 1 -> Y [2,64,28,28]
    # flops 2 * 2*64*784 * 8*9 + 2*64*784 = 14_450_688 + 100_352 = 14_551_040
    # read: X 2*32*784*4 = 200_704; W 64*8*9*4 = 18_432 + B 64*4 = 256; written 100_352*4 = 401_408
    c = cost(
        "Conv",
        [((2, 32, 28, 28), F32), ((64, 8, 3, 3), F32, W), ((64,), F32, W)],
        [((2, 64, 28, 28), F32)],
        attrs={"group": 4, "pads": [1, 1, 1, 1]},
    )
    assert c.flops == 14_551_040
    assert c.bytes_read == ByteCounts(weights=18_688, activations=200_704)
    assert c.bytes_written == ByteCounts(activations=401_408)
    assert c.unit is TENSOR


def test_conv_transpose():
    # ConvTranspose X [1,16,8,8], W [16,8,4,4] (C_out 8), stride 2, pad 1 -> Y [1,8,16,16]
    # flops 2 * 1*16*64 * 8*16 = 262_144; read X 1_024*4 = 4_096, W 2_048*4 = 8_192;
    # written 2_048*4 = 8_192
    c = cost(
        "ConvTranspose",
        [((1, 16, 8, 8), F32), ((16, 8, 4, 4), F32, W)],
        [((1, 8, 16, 16), F32)],
        attrs={"strides": [2, 2], "pads": [1, 1, 1, 1]},
    )
    assert c.flops == 262_144
    assert c.bytes_read == ByteCounts(weights=8_192, activations=4_096)
    assert c.bytes_written == ByteCounts(activations=8_192)


def test_nhwc_conv_matches_nchw():
    # NhwcConv X [1,14,14,32], W [64,32,3,3] -> Y [1,14,14,64]: flops 2*12_544*288 = 7_225_344
    c = cost(
        "NhwcConv",
        [((1, 14, 14, 32), F16), ((64, 32, 3, 3), F16, W)],
        [((1, 14, 14, 64), F16)],
        domain=MS,
    )
    assert c.flops == 7_225_344


def test_fused_conv_counts_bias_residual_and_activation():
    # FusedConv X [1,8,10,10], W [16,8,1,1], B, Z, activation Relu -> Y [1,16,10,10] (1_600):
    # flops 2*1_600*8 + 1_600 (bias) + 1_600 (Z) + 1_600 (Relu) = 25_600 + 4_800 = 30_400
    c = cost(
        "FusedConv",
        [((1, 8, 10, 10), F32), ((16, 8, 1, 1), F32, W), ((16,), F32, W), ((1, 16, 10, 10), F32)],
        [((1, 16, 10, 10), F32)],
        domain=MS,
        attrs={"activation": "Relu"},
    )
    assert c.flops == 30_400


def test_qlinear_conv_computes_in_uint8():
    # QLinearConv x [1,8,10,10] u8, w [16,8,3,3] i8 (index 3), B int32 (index 8) -> y [1,16,8,8]
    # flops 2*1_024*72 + 1_024 = 148_480
    scalars = [((), F32), ((), U8)]
    c = cost(
        "QLinearConv",
        [((1, 8, 10, 10), U8), *scalars, ((16, 8, 3, 3), I8, W), *scalars, *scalars,
         ((16,), I32, W)],
        [((1, 16, 8, 8), U8)],
    )  # fmt: skip
    assert c.flops == 148_480
    assert c.compute_dtype is U8


# --- attention ---------------------------------------------------------------------------------


def test_group_query_attention_decode_with_past_kv():
    # GQA decode: B=1, S=1, 32 query heads, 8 KV heads, head 128, past 4095 -> T = 4096 (fp16)
    # flops: QK 2*1*1*4096*(32*128) = 33_554_432; AV the same; softmax 5*1*32*1*4096 = 655_360
    #        -> 67_764_224
    # read: kv_cache 2 * 8*4095*128*2 = 16_773_120; activations query 4096*2 = 8_192,
    #       key + value 2 * 1024*2 = 4_096, seqlens_k 4, total_sequence_length 4 -> 12_296
    # written: output 4096*2 = 8_192; present kv 2 * 8*4096*128*2 = 16_777_216
    c = cost(
        "GroupQueryAttention",
        [
            ((1, 1, 4096), F16),
            ((1, 1, 1024), F16),
            ((1, 1, 1024), F16),
            ((1, 8, 4095, 128), F16, KV),
            ((1, 8, 4095, 128), F16, KV),
            ((1,), I32),
            ((), I32),
        ],
        [((1, 1, 4096), F16), ((1, 8, 4096, 128), F16, KV), ((1, 8, 4096, 128), F16, KV)],
        domain=MS,
        attrs={"num_heads": 32, "kv_num_heads": 8},
    )
    assert c.flops == 67_764_224
    assert c.bytes_read == ByteCounts(activations=12_296, kv_cache=16_773_120)
    assert c.bytes_written == ByteCounts(activations=8_192, kv_cache=16_777_216)
    assert c.unit is TENSOR
    assert "score matrix" in c.note


def test_group_query_attention_packed_rotary_and_known_total_length():
    # packed query [1,4,(8+2*2)*16 = 192]: head 16, 8 query heads; total_sequence_length 20 known
    # flops: 2*1*4*20*(128+128) = 40_960; softmax 5*8*4*20 = 3_200; rotary 3*1*4*(8+2)*16 = 1_920
    #        -> 46_080
    c = cost(
        "GroupQueryAttention",
        [((1, 4, 192), F16), None, None, ((1, 2, 16, 16), F16, KV), ((1, 2, 16, 16), F16, KV),
         ((1,), I32), ((), I32), ((32, 8), F16, W), ((32, 8), F16, W)],
        [((1, 4, 128), F16)],
        domain=MS,
        attrs={"num_heads": 8, "kv_num_heads": 2, "do_rotary": 1},
        constants={6: 20},
    )  # fmt: skip
    assert c.flops == 46_080


def test_onnx_attention_4d_with_past():
    # Attention (opset 23) Q [1,8,4,64], K/V [1,2,4,64], past K/V [1,2,12,64] -> T = 16
    # flops 2*1*4*16*(8*64 + 8*64) = 131_072; softmax 5*1*8*4*16 = 2_560 -> 133_632
    kv = ((1, 2, 4, 64), BF16)
    past = ((1, 2, 12, 64), BF16, KV)
    c = cost(
        "Attention",
        [((1, 8, 4, 64), BF16), kv, kv, None, past, past],
        [((1, 8, 4, 64), BF16), ((1, 2, 16, 64), BF16, KV), ((1, 2, 16, 64), BF16, KV)],
    )
    assert c.flops == 133_632
    # past read: 2 * 2*12*64*2 = 6_144; present written: 2 * 2*16*64*2 = 8_192
    assert c.bytes_read.kv_cache == 6_144
    assert c.bytes_written.kv_cache == 8_192


def test_onnx_attention_3d():
    # Q [2,6,256] with q_num_heads 4, K/V [2,10,128] (kv_num_heads 2) -> Y [2,6,256], T = 10
    # flops 2*2*6*10*(256+256) = 122_880; softmax 5*2*4*6*10 = 2_400 -> 125_280
    c = cost(
        "Attention",
        [((2, 6, 256), F32), ((2, 10, 128), F32), ((2, 10, 128), F32)],
        [((2, 6, 256), F32)],
        attrs={"q_num_heads": 4, "kv_num_heads": 2},
    )
    assert c.flops == 125_280


def test_contrib_attention_counts_the_projection():
    # com.microsoft Attention input [2,8,64], weights [64,192], bias [192], 4 heads -> [2,8,64]
    # projection 2*2*8*64*192 = 393_216 + bias 2*8*192 = 3_072
    # attention (T = S = 8): 2*2*8*8*(64+64) = 32_768 + softmax 5*2*4*8*8 = 2_560
    # total 431_616
    c = cost(
        "Attention",
        [((2, 8, 64), F32), ((64, 192), F32, W), ((192,), F32, W)],
        [((2, 8, 64), F32)],
        domain=MS,
        attrs={"num_heads": 4},
    )
    assert c.flops == 431_616


def test_multi_head_attention_with_past():
    # MHA query/key/value [1,1,512], past_key/past_value (inputs 6, 7) [1,8,31,64], 8 heads: T = 32
    # flops 2*1*1*32*(512+512) = 65_536 + softmax 5*8*1*32 = 1_280 -> 66_816
    x = ((1, 1, 512), F16)
    past = ((1, 8, 31, 64), F16, KV)
    c = cost(
        "MultiHeadAttention",
        [x, x, x, None, None, None, past, past],
        [x],
        domain=MS,
        attrs={"num_heads": 8},
    )
    assert c.flops == 66_816


@pytest.mark.parametrize(
    ("constants", "flops", "bound"),
    [
        # past_sequence_length known = 31: T = 32, as above: 66_816
        ({7: 31}, 66_816, False),
        # unknown: the buffer length 128 bounds T: 2*128*1024 + 5*8*128 = 262_144 + 5_120
        ({}, 267_264, True),
    ],
)
def test_decoder_masked_mha_shared_buffer(constants, flops, bound):
    x = ((1, 1, 512), F16)
    buffer = ((1, 8, 128, 64), F16, KV)
    c = cost(
        "DecoderMaskedMultiHeadAttention",
        [x, x, x, None, None, buffer, buffer, ((), I32)],
        [x],
        domain=MS,
        attrs={"num_heads": 8, "past_present_share_buffer": 1},
        constants=constants,
    )
    assert c.flops == flops
    assert ("upper bound" in c.note) is bound


@pytest.mark.parametrize("domain", ["", MS])
def test_rotary_embedding(domain):
    # X [1,8,4,64] fp16: 3 * 2_048 = 6_144 FLOPs on the vector unit
    x, cache, ids = ((1, 8, 4, 64), F16), ((16, 32), F16, W), ((1, 4), I64)
    inputs = [x, cache, cache, ids] if domain == "" else [x, ids, cache, cache]
    c = cost("RotaryEmbedding", inputs, [x], domain=domain)
    assert c.flops == 6_144
    assert c.unit is VECTOR
    # reads X 2,048 x 2 B + the ids 4 x 8 B + of each [16, 32] cache the 4 rows of the
    # positions (4 x 32 x 2 B = 256 B, not all 1,024 B); writes X again
    assert c.bytes_read.total == 4_096 + 32 + 2 * 256
    assert c.bytes_read.weights == 2 * 256
    assert c.bytes_written.total == 4_096


# --- recurrent ---------------------------------------------------------------------------------

# X [T=5, B=2, I=10], hidden 20. Per step:
#   LSTM: matmul 2*2*(10+20)*(4*20) = 9_600; bias 2*2*80 = 320; element-wise 24*2*20 = 960
#         -> 10_880, x 5 steps = 54_400
#   GRU (no bias): 2*2*30*60 = 7_200 + 17*40 = 680 -> 7_880, x 5 = 39_400
#   RNN (no bias): 2*2*30*20 = 2_400 + 4*40 = 160 -> 2_560, x 5 = 12_800


def _recurrent(op_type, gates, *, directions=1, bias=True, layout=0):
    x = (2, 5, 10) if layout else (5, 2, 10)
    d, g = directions, gates * 20
    inputs = [(x, F32), ((d, g, 10), F32, W), ((d, g, 20), F32, W)]
    if bias:
        inputs.append(((d, 2 * g), F32, W))
    outputs = [((5, d, 2, 20), F32), ((d, 2, 20), F32)]
    if op_type == "LSTM":
        outputs.append(((d, 2, 20), F32))
    direction = "bidirectional" if directions == 2 else "forward"
    return cost(
        op_type,
        inputs,
        outputs,
        attrs={"hidden_size": 20, "direction": direction, "layout": layout},
    )


def test_lstm():
    c = _recurrent("LSTM", 4)
    assert c.flops == 54_400
    # read: X 100*4 = 400; W 800*4 + R 1_600*4 + B 160*4 = 10_240
    # written: Y 200*4 = 800, Y_h 40*4 = 160, Y_c 160 -> 1_120
    assert c.bytes_read == ByteCounts(weights=10_240, activations=400)
    assert c.bytes_written == ByteCounts(activations=1_120)
    assert c.unit is TENSOR


def test_lstm_bidirectional_and_batch_first():
    assert _recurrent("LSTM", 4, directions=2).flops == 2 * 54_400
    assert _recurrent("LSTM", 4, layout=1).flops == 54_400


def test_gru_and_rnn():
    assert _recurrent("GRU", 3, bias=False).flops == 39_400
    assert _recurrent("RNN", 1, bias=False).flops == 12_800


# --- cross-check against torch.utils.flop_counter (it counts no bias) ------------------------


def _torch_flops(fn, *args):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = fn(*args)
    return counter.get_total_flops(), tuple(out.shape)


def _spec(tensor, kind=None):
    dtype = {"torch.float32": F32}[str(tensor.dtype)]
    return (tuple(tensor.shape), dtype) if kind is None else (tuple(tensor.shape), dtype, kind)


@pytest.mark.parametrize(
    ("a", "b"),
    # (torch sends matrix @ vector to aten.mv, which its counter does not count: not compared)
    [((8, 16, 32), (8, 32, 24)), ((2, 1, 8, 16), (3, 16, 32)), ((16,), (4, 16, 8))],
)
def test_matmul_and_bmm_match_torch(a, b):
    torch = pytest.importorskip("torch")
    x, y = torch.randn(a), torch.randn(b)
    expected, out = _torch_flops(torch.matmul, x, y)
    assert cost("MatMul", [_spec(x), _spec(y)], [(out, F32)]).flops == expected


def test_linear_matches_torch():
    torch = pytest.importorskip("torch")
    linear, x = torch.nn.Linear(768, 3072), torch.randn(4, 768)
    expected, out = _torch_flops(linear, x)
    c = cost(
        "Gemm",
        [_spec(x), _spec(linear.weight, W), _spec(linear.bias, W)],
        [(out, F32)],
        attrs={"transB": 1},
    )
    assert c.flops - 4 * 3072 == expected  # torch leaves out the bias add


@pytest.mark.parametrize(
    ("make", "x_shape", "op_type"),
    [
        (lambda nn: nn.Conv1d(8, 16, 5, padding=2), (2, 8, 40), "Conv"),
        (lambda nn: nn.Conv2d(32, 64, 3, padding=1, groups=4), (2, 32, 28, 28), "Conv"),
        (lambda nn: nn.Conv2d(32, 32, 3, stride=2, groups=32), (1, 32, 17, 17), "Conv"),
        (lambda nn: nn.Conv3d(4, 8, 3), (1, 4, 6, 8, 8), "Conv"),
        (lambda nn: nn.ConvTranspose2d(16, 8, 4, 2, padding=1), (1, 16, 8, 8), "ConvTranspose"),
        (lambda nn: nn.ConvTranspose1d(16, 8, 3, stride=2, groups=2), (1, 16, 9), "ConvTranspose"),
    ],
)
def test_conv_matches_torch(make, x_shape, op_type):
    torch = pytest.importorskip("torch")
    conv, x = make(torch.nn), torch.randn(x_shape)
    expected, out = _torch_flops(conv, x)
    c = cost(op_type, [_spec(x), _spec(conv.weight, W), _spec(conv.bias, W)], [(out, F32)])
    assert c.flops - math.prod(out) == expected  # torch leaves out the bias add


def test_einsum_matches_torch():
    torch = pytest.importorskip("torch")
    q, k = torch.randn(2, 4, 8, 16), torch.randn(2, 4, 10, 16)
    expected, out = _torch_flops(lambda a, b: torch.einsum("bhqd,bhkd->bhqk", a, b), q, k)
    attrs = {"equation": "bhqd,bhkd->bhqk"}
    assert cost("Einsum", [_spec(q), _spec(k)], [(out, F32)], attrs=attrs).flops == expected
