"""Issue 24: the optional figures by access pattern and shape class (weight-streaming bandwidth,
skinny matmul rate, copy and transpose bandwidths): the file format reads and checks them, `hw show` lists them, and
memlint.roofline.time_op uses each where the cost says it applies, and nowhere else."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from memlint.costs import ByteCounts, CostStatus, OpCost
from memlint.errors import HardwareError
from memlint.hardware import HardwareSpec, load_spec_file
from memlint.hardware.calibrate import Figure, _calibration
from memlint.ir import ComputeUnit, DType
from memlint.report.listings import spec_lines
from memlint.roofline import SKINNY_ROWS, Bound, is_copy, skinny_rows, time_op

DEVICE = """\
[[device]]
name = "acme-cpu"
kind = "cpu"
memory_bandwidth = { value = 50, unit = "GB/s", source = "an Add" }
memory_capacity = { value = 16, unit = "GiB", source = "MemTotal" }
weight_streaming_bandwidth = { value = 38, unit = "GB/s", source = "a GEMV" }
skinny_matmul_rate = { value = 40, unit = "GFLOPS", source = "an 8-row MatMul" }
copy_bandwidth = { value = 20, unit = "GB/s", source = "a KV-cache Concat and Transpose" }

[device.peaks]
"vector.float32" = { value = 200, unit = "GFLOPS", source = "a square MatMul" }
"""

PLAIN = HardwareSpec(
    name="plain", display_name="plain", kind="cpu", memory_bandwidth_bytes_per_s=50e9,
    memory_capacity_bytes=2**34, peak_flops_per_s={"vector.float32": 200e9},
)  # no per-kernel overhead: the times below are the operators' work alone
SHAPED = replace(PLAIN, name="shaped", weight_streaming_bandwidth_bytes_per_s=38e9,
                 skinny_matmul_flops_per_s=40e9)
COPYING = replace(SHAPED, name="copying", copy_bandwidth_bytes_per_s=20e9)


def matmul(m: int, k: int, n: int, *, weight: bool = True) -> OpCost:
    """float32 (m x k) @ (k x n); the right-hand side a weight, or else a KV cache."""
    right = k * n * 4
    read = ByteCounts(weights=right, activations=m * k * 4) if weight else ByteCounts(
        activations=m * k * 4, kv_cache=right)
    return OpCost(flops=2 * m * k * n, bytes_read=read,
                  bytes_written=ByteCounts(activations=m * n * 4), status=CostStatus.MODELLED,
                  unit=ComputeUnit.TENSOR, compute_dtype=DType.FLOAT32)


# float32 [1, 768] + [1, 768]: 768 FLOPs, reads 6144 B, writes 3072 B
ADD = OpCost(flops=768, bytes_read=ByteCounts(activations=6144),
             bytes_written=ByteCounts(activations=3072), status=CostStatus.MODELLED,
             unit=ComputeUnit.VECTOR, compute_dtype=DType.FLOAT32)

# a decode step's KV-cache Concat, float32 [1, 12, 1023, 64] past + [1, 12, 1, 64] token:
# no FLOPs, reads 12*1023*64*4 = 3,142,656 B of cache and 12*64*4 = 3,072 B of activation,
# writes the [1, 12, 1024, 64] present, 3,145,728 B: 6,291,456 B moved
CONCAT = OpCost(flops=0, bytes_read=ByteCounts(activations=3_072, kv_cache=3_142_656),
                bytes_written=ByteCounts(activations=3_145_728), status=CostStatus.MODELLED,
                unit=ComputeUnit.VECTOR, compute_dtype=DType.FLOAT32)


# --- the file format ------------------------------------------------------------------------


def test_the_new_fields_parse_in_si_units(tmp_path):
    path = tmp_path / "hw.toml"
    path.write_text(DEVICE, encoding="utf-8")
    (spec,) = load_spec_file(path)
    # 38 GB/s = 38e9 B/s; 40 GFLOPS = 40e9 FLOP/s
    assert spec.weight_streaming_bandwidth_bytes_per_s == pytest.approx(38e9)
    assert spec.skinny_matmul_flops_per_s == pytest.approx(40e9)
    assert spec.sources["weight_streaming_bandwidth"] == "a GEMV"
    assert spec.sources["skinny_matmul_rate"] == "an 8-row MatMul"


def test_the_json_report_names_the_figures_by_access_pattern(tmp_path):
    import memlint

    path = tmp_path / "hw.toml"
    path.write_text(DEVICE, encoding="utf-8")
    sample = Path(__file__).resolve().parent.parent / "sample_models" / "small_cnn.onnx"
    hardware = memlint.lint(sample, hw="acme-cpu", hw_files=[path]).to_dict()["hardware"]
    assert hardware["weight_streaming_bandwidth_bytes_per_s"] == pytest.approx(38e9)
    assert hardware["skinny_matmul_flops_per_s"] == pytest.approx(40e9)
    assert hardware["copy_bandwidth_bytes_per_s"] == pytest.approx(20e9)
    assert hardware["transpose_bandwidth_bytes_per_s"] is None  # the file gives none


def test_the_new_fields_are_optional(tmp_path):
    path = tmp_path / "hw.toml"
    path.write_text("\n".join(line for line in DEVICE.splitlines()
                              if not line.startswith(("weight_streaming", "skinny"))),
                    encoding="utf-8")
    (spec,) = load_spec_file(path)
    assert spec.weight_streaming_bandwidth_bytes_per_s is None
    assert spec.skinny_matmul_flops_per_s is None


def test_the_new_fields_parse_from_yaml(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "hw.yaml"
    path.write_text(textwrap.dedent("""\
        device:
          - name: acme-y2
            kind: cpu
            memory_bandwidth: {value: 50, unit: GB/s, source: an Add}
            memory_capacity: {value: 16, unit: GB, source: MemTotal}
            weight_streaming_bandwidth: {value: 38, unit: GB/s, source: a GEMV}
            skinny_matmul_rate: {value: 40, unit: GFLOPS, source: an 8-row MatMul}
            peaks:
              vector.float32: {value: 200, unit: GFLOPS, source: a square MatMul}
        """), encoding="utf-8")
    (spec,) = load_spec_file(path)
    assert spec.weight_streaming_bandwidth_bytes_per_s == pytest.approx(38e9)
    assert spec.skinny_matmul_flops_per_s == pytest.approx(40e9)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('value = 38, unit = "GB/s"', 'value = 0, unit = "GB/s"',
     "weight_streaming_bandwidth value must be positive"),
    ('value = 40, unit = "GFLOPS"', 'value = -40, unit = "GFLOPS"',
     "skinny_matmul_rate value must be positive"),
    ('value = 40, unit = "GFLOPS"', 'value = 40, unit = "GB/s"', "not a rate unit"),
    ('value = 38, unit = "GB/s"', 'value = 38, unit = "GFLOPS"', "not a bandwidth unit"),
])
def test_the_new_fields_are_checked(tmp_path, old, new, message):
    path = tmp_path / "hw.toml"
    path.write_text(DEVICE.replace(old, new), encoding="utf-8")
    with pytest.raises(HardwareError, match=message):
        load_spec_file(path)


def test_the_spec_refuses_non_positive_new_figures():
    with pytest.raises(HardwareError, match="weight_streaming_bandwidth must be positive"):
        replace(PLAIN, weight_streaming_bandwidth_bytes_per_s=0.0)
    with pytest.raises(HardwareError, match="skinny_matmul_rate must be positive"):
        replace(PLAIN, skinny_matmul_flops_per_s=-1.0)


def test_the_calibration_writer_round_trips_the_new_fields():
    figures = [
        Figure("memory_bandwidth", 50.0, "GB/s", "an Add"),
        Figure("weight_streaming_bandwidth", 38.25, "GB/s", "a GEMV"),
        Figure("memory_capacity", 16.0, "GiB", "MemTotal"),
        Figure("peaks.vector.float32", 200.0, "GFLOPS", "a square MatMul"),
        Figure("skinny_matmul_rate", 41.5, "GFLOPS", "an 8-row MatMul"),
        Figure("kernel_overhead", 1.5, "us", "a mix"),
    ]
    result = _calibration("local-cpu", "d", "cpu", "n", figures, None)
    assert 'weight_streaming_bandwidth = { value = 38.25, unit = "GB/s"' in result.toml
    assert 'skinny_matmul_rate = { value = 41.5, unit = "GFLOPS"' in result.toml
    # 38.25 GB/s = 38.25e9 B/s; 41.5 GFLOPS = 41.5e9 FLOP/s; 1.5 us
    assert result.spec.weight_streaming_bandwidth_bytes_per_s == pytest.approx(38.25e9)
    assert result.spec.skinny_matmul_flops_per_s == pytest.approx(41.5e9)
    assert result.spec.kernel_overhead_s == pytest.approx(1.5e-6)
    assert result.spec.sources["skinny_matmul_rate"] == "an 8-row MatMul"


def test_hw_show_lists_the_new_fields_with_their_sources():
    text = "\n".join(spec_lines(SHAPED))
    assert "weight_streaming_bandwidth" in text and "38 GB/s" in text
    assert "skinny_matmul_rate" in text and "40 GFLOP/s" in text
    assert "weight_streaming" not in "\n".join(spec_lines(PLAIN))


# --- the roofline ---------------------------------------------------------------------------


def test_effective_rows_of_matrix_products():
    # (m k n) / (m k + k n + m n): 1*768*2304 / (768 + 1769472 + 2304) = 0.9983
    assert skinny_rows(matmul(1, 768, 2304)) == pytest.approx(0.9983, abs=1e-4)
    # square: n^3 / 3n^2 = n / 3
    assert skinny_rows(matmul(512, 512, 512)) == pytest.approx(512 / 3)
    assert skinny_rows(ADD) is None  # not a matrix product
    assert SKINNY_ROWS == 16


def test_a_weight_streaming_gemv_streams_at_the_gemv_bandwidth():
    # [1, 768] @ [768, 2304] float32: 3,538,944 FLOPs; weights 7,077,888 B of 7,090,176 B moved
    gemv = matmul(1, 768, 2304)
    assert (gemv.flops, gemv.bytes_moved) == (3_538_944, 7_090_176)
    timing = time_op(gemv, SHAPED)
    # memory 7,090,176 B / 38 GB/s = 186.58 us; compute 3,538,944 / min(200, 40) GFLOPS = 88.47 us
    assert timing.memory_time_s == pytest.approx(7_090_176 / 38e9)
    assert timing.compute_time_s == pytest.approx(3_538_944 / 40e9)
    assert timing.predicted_latency_s == pytest.approx(186.58e-6, rel=1e-4)
    assert timing.bound is Bound.MEMORY and timing.peak_key == "vector.float32"
    # without the figures: 7,090,176 B / 50 GB/s = 141.80 us
    assert time_op(gemv, PLAIN).predicted_latency_s == pytest.approx(141.80e-6, rel=1e-4)


def test_an_add_keeps_the_element_wise_bandwidth():
    # 9216 B / 50 GB/s = 184.32 ns; the same with or without the figures
    timing = time_op(ADD, SHAPED)
    assert timing.memory_time_s == 9216 / 50e9
    assert timing.predicted_latency_s == pytest.approx(184.32e-9)
    assert timing == time_op(ADD, PLAIN)


def test_a_skinny_gemm_runs_at_the_skinny_rate():
    # [8, 512] @ [512, 512] float32: 4,194,304 FLOPs, 1,081,344 B (weights 1,048,576): 7.76 rows
    skinny = matmul(8, 512, 512)
    assert skinny_rows(skinny) == pytest.approx(7.757, abs=1e-3)
    timing = time_op(skinny, SHAPED)
    # compute 4,194,304 / 40 GFLOPS = 104.86 us > memory 1,081,344 / 38 GB/s = 28.46 us
    assert timing.compute_time_s == pytest.approx(104.8576e-6)
    assert timing.memory_time_s == pytest.approx(28.4564e-6, rel=1e-4)
    assert timing.bound is Bound.COMPUTE and timing.peak_flops_per_s == 40e9
    assert timing.peak_key == "vector.float32"  # still the key of the spec's peak
    # without: compute 20.97 us < memory 1,081,344 / 50 GB/s = 21.63 us
    plain = time_op(skinny, PLAIN)
    assert plain.bound is Bound.MEMORY
    assert plain.predicted_latency_s == pytest.approx(21.627e-6, rel=1e-4)


def test_a_skinny_product_of_the_kv_cache_keeps_the_element_wise_bandwidth():
    # a decode step's scores, [1, 64] @ [64, 1024] of the cache: 131,072 FLOPs over
    # 256 + 262,144 + 4,096 = 266,496 B, no weights: 50 GB/s (5.330 us), the skinny rate for
    # its compute (131,072 / 40 GFLOPS = 3.28 us)
    scores = matmul(1, 64, 1024, weight=False)
    timing = time_op(scores, SHAPED)
    assert timing.memory_time_s == scores.bytes_moved / 50e9 == pytest.approx(5.32992e-6)
    assert timing.compute_time_s == pytest.approx(131_072 / 40e9)


def test_a_square_gemm_keeps_the_square_peak():
    # 512^3 * 2 = 268,435,456 FLOPs / 200 GFLOPS = 1.342 ms; 170.7 rows: not skinny
    square = matmul(512, 512, 512)
    assert time_op(square, SHAPED) == time_op(square, PLAIN)
    assert time_op(square, SHAPED).compute_time_s == 268_435_456 / 200e9


def test_without_the_figures_time_op_is_todays_formula_exactly():
    for cost in (matmul(1, 768, 2304), matmul(8, 512, 512), matmul(512, 512, 512), ADD):
        timing = time_op(cost, PLAIN)
        compute, memory = cost.flops / 200e9, cost.bytes_moved / 50e9
        assert (timing.compute_time_s, timing.memory_time_s) == (compute, memory)
        assert timing.predicted_latency_s == max(compute, memory)
        assert timing.peak_flops_per_s == 200e9


# --- the copy bandwidth (data movement) -----------------------------------------------------


def test_the_copy_bandwidth_parses_in_si_units(tmp_path):
    path = tmp_path / "hw.toml"
    path.write_text(DEVICE, encoding="utf-8")
    (spec,) = load_spec_file(path)
    assert spec.copy_bandwidth_bytes_per_s == pytest.approx(20e9)  # 20 GB/s
    assert spec.sources["copy_bandwidth"] == "a KV-cache Concat and Transpose"
    path.write_text("\n".join(line for line in DEVICE.splitlines()
                              if not line.startswith("copy_bandwidth")), encoding="utf-8")
    (spec,) = load_spec_file(path)
    assert spec.copy_bandwidth_bytes_per_s is None and "copy_bandwidth" not in spec.sources


@pytest.mark.parametrize(("new", "message"), [
    ('value = 0, unit = "GB/s"', "copy_bandwidth value must be positive"),
    ('value = 20, unit = "GFLOPS"', "not a bandwidth unit"),
])
def test_the_copy_bandwidth_is_checked(tmp_path, new, message):
    path = tmp_path / "hw.toml"
    path.write_text(DEVICE.replace('value = 20, unit = "GB/s"', new), encoding="utf-8")
    with pytest.raises(HardwareError, match=message):
        load_spec_file(path)
    with pytest.raises(HardwareError, match="copy_bandwidth must be positive"):
        replace(PLAIN, copy_bandwidth_bytes_per_s=0.0)


def test_the_calibration_writer_round_trips_the_copy_bandwidth():
    figures = [
        Figure("memory_bandwidth", 50.0, "GB/s", "an Add"),
        Figure("memory_capacity", 16.0, "GiB", "MemTotal"),
        Figure("copy_bandwidth", 23.5, "GB/s", "a Concat and a Transpose"),
        Figure("peaks.vector.float32", 200.0, "GFLOPS", "a square MatMul"),
    ]
    result = _calibration("local-cpu", "d", "cpu", "n", figures, None)
    assert 'copy_bandwidth = { value = 23.5, unit = "GB/s"' in result.toml
    assert result.spec.copy_bandwidth_bytes_per_s == pytest.approx(23.5e9)  # 23.5 GB/s
    assert result.spec.sources["copy_bandwidth"] == "a Concat and a Transpose"


def test_hw_show_lists_the_copy_bandwidth():
    text = "\n".join(spec_lines(COPYING))
    assert "copy_bandwidth" in text and "20 GB/s" in text
    assert "copy_bandwidth" not in "\n".join(spec_lines(SHAPED))


def test_what_counts_as_data_movement():
    assert is_copy(CONCAT)
    assert not is_copy(ADD)  # arithmetic
    assert not is_copy(matmul(1, 768, 2304))
    assert not is_copy(replace(CONCAT, bytes_read=ByteCounts(), bytes_written=ByteCounts(),
                               status=CostStatus.METADATA))  # a Reshape moves nothing
    # an op without a formula: FLOPs unknown (not zero), bytes a lower bound
    assert not is_copy(replace(CONCAT, status=CostStatus.UNMODELLED))


def test_a_concat_of_the_cache_moves_at_the_copy_bandwidth():
    assert CONCAT.bytes_moved == 6_291_456
    timing = time_op(CONCAT, COPYING)
    # 6,291,456 B / 20 GB/s = 314.5728 us, memory-bound, no compute time
    assert timing.memory_time_s == 6_291_456 / 20e9
    assert timing.predicted_latency_s == pytest.approx(314.5728e-6)
    assert timing.compute_time_s == 0.0 and timing.bound is Bound.MEMORY
    # without the figure (and with only the matmul figures): 6,291,456 B / 50 GB/s = 125.83 us
    assert time_op(CONCAT, PLAIN) == time_op(CONCAT, SHAPED)
    assert time_op(CONCAT, PLAIN).predicted_latency_s == pytest.approx(125.82912e-6)


def test_the_copy_bandwidth_leaves_arithmetic_alone():
    # an Add keeps 50 GB/s (184.32 ns), the GEMV 38 GB/s (186.58 us), the skinny GEMM 40 GFLOPS
    for cost in (ADD, matmul(1, 768, 2304), matmul(8, 512, 512), matmul(512, 512, 512),
                 matmul(1, 64, 1024, weight=False)):
        assert time_op(cost, COPYING) == time_op(cost, SHAPED)
    assert time_op(ADD, COPYING).predicted_latency_s == pytest.approx(184.32e-9)


def test_without_the_copy_bandwidth_a_copy_is_todays_formula_exactly():
    timing = time_op(CONCAT, PLAIN)
    assert timing.memory_time_s == CONCAT.bytes_moved / 50e9
    assert timing.predicted_latency_s == max(0 / 200e9, CONCAT.bytes_moved / 50e9)


# --- the transpose bandwidth (permuting copies) --------------------------------------------

TRANSPOSING = replace(COPYING, name="transposing", transpose_bandwidth_bytes_per_s=6e9)
TRANSPOSE = replace(CONCAT, permutes=True)  # the same bytes, a permutation of them


def test_a_transpose_moves_at_the_transpose_bandwidth_and_a_concat_at_the_copy_one():
    # 6,291,456 B / 6 GB/s = 1,048.576 us; the Concat keeps 20 GB/s (314.5728 us)
    assert time_op(TRANSPOSE, TRANSPOSING).predicted_latency_s == pytest.approx(1048.576e-6)
    assert time_op(CONCAT, TRANSPOSING).predicted_latency_s == pytest.approx(314.5728e-6)
    # without a transpose figure a transpose is a copy (20 GB/s), without either today's 50 GB/s
    assert time_op(TRANSPOSE, COPYING) == time_op(CONCAT, COPYING)
    assert time_op(TRANSPOSE, PLAIN) == time_op(CONCAT, PLAIN)


def test_the_transpose_cost_says_it_permutes():
    from memlint.frontends.onnx_text import load_example
    from memlint.rulebase import Example

    model = load_example(Example("""
g (float[2,64,128] x, float[2,64,128] y) => (float[2,128,64] t, float[4,64,128] c) {
  t = Transpose <perm = [0, 2, 1]> (x)
  c = Concat <axis = 0> (x, y)
}
"""))
    from memlint.core.report import analyse

    nodes = {n.op_type: n for n in analyse(model, PLAIN).nodes}
    assert nodes["Transpose"].cost.permutes and not nodes["Concat"].cost.permutes


def test_the_transpose_bandwidth_parses_and_is_listed(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(DEVICE.replace(
        'copy_bandwidth = { value = 20, unit = "GB/s", source = "a KV-cache Concat and Transpose" }',
        'copy_bandwidth = { value = 20, unit = "GB/s", source = "a KV-cache Concat" }\n'
        'transpose_bandwidth = { value = 6, unit = "GB/s", source = "its Transpose" }'),
        encoding="utf-8")  # fmt: skip
    (spec,) = load_spec_file(path)
    assert spec.transpose_bandwidth_bytes_per_s == pytest.approx(6e9)  # 6 GB/s
    assert spec.sources["transpose_bandwidth"] == "its Transpose"
    assert "transpose_bandwidth" in "\n".join(spec_lines(spec))
    with pytest.raises(HardwareError, match="transpose_bandwidth must be positive"):
        replace(PLAIN, transpose_bandwidth_bytes_per_s=0.0)
