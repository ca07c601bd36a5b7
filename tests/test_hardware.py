"""Hardware specs: the built-in figures, name resolution, peak selection and malformed files."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from memlint.errors import HardwareError
from memlint.hardware import HardwareSpec, list_specs, load_builtin_specs, load_spec_file, resolve
from memlint.ir import ComputeUnit, DType

TENSOR, VECTOR = ComputeUnit.TENSOR, ComputeUnit.VECTOR
BUILTINS = load_builtin_specs()

# One well-formed device; the malformed cases below each break one thing in it.
GOOD_DEVICE = """\
[[device]]
name = "acme-x1"
display_name = "Acme X1"
aliases = ["x1"]
kind = "gpu"
memory_bandwidth = { value = 1000, unit = "GB/s", source = "Acme X1 datasheet" }
memory_capacity = { value = 48, unit = "GiB", source = "Acme X1 datasheet" }
kernel_overhead = { value = 5, unit = "us", source = "measured" }

[device.peaks]
"tensor.float16" = { value = 200, unit = "TFLOPS", source = "Acme X1 datasheet, dense" }
"vector.float32" = { value = 20, unit = "TFLOPS", source = "Acme X1 datasheet" }
"""


def write(tmp_path: Path, text: str, name: str = "hw.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- the built-ins --------------------------------------------------------------------------


def test_every_builtin_loads_with_positive_sourced_figures():
    assert len(BUILTINS) >= 18
    for spec in BUILTINS:
        numbers = {
            "memory_bandwidth": spec.memory_bandwidth_bytes_per_s,
            "memory_capacity": spec.memory_capacity_bytes,
            "l2_cache": spec.l2_cache_bytes,
            "interconnect_bandwidth": spec.interconnect_bandwidth_bytes_per_s,
            "kernel_overhead": spec.kernel_overhead_s,
            **spec.peak_flops_per_s,
        }
        for field, value in numbers.items():
            if value is None:
                continue
            assert value > 0, (spec.name, field)
            assert spec.sources[field].strip(), (spec.name, field)
        assert spec.kind in {"gpu", "cpu", "tpu"}
        assert spec.origin.endswith(".toml")
        # NVIDIA GPUs carry the sourced launch cost (docs/hardware.md); no other built-in has one
        if spec.name.startswith("nvidia-"):
            assert spec.kernel_overhead_s == pytest.approx(2.4e-6)
            assert "(260 - 70) / 80" in spec.sources["kernel_overhead"]
        else:
            assert spec.kernel_overhead_s is None


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("a100", "nvidia-a100-sxm4-80gb"),
        ("A100", "nvidia-a100-sxm4-80gb"),
        ("a100-40gb", "nvidia-a100-sxm4-40gb"),
        ("a100-pcie", "nvidia-a100-pcie-80gb"),
        ("h100", "nvidia-h100-sxm5-80gb"),
        ("h100-pcie", "nvidia-h100-pcie-80gb"),
        ("h200", "nvidia-h200-sxm-141gb"),
        ("b200", "nvidia-b200-hgx-180gb"),
        ("l4", "nvidia-l4"),
        ("l40s", "nvidia-l40s"),
        ("t4", "nvidia-t4"),
        ("a10", "nvidia-a10"),
        ("v100", "nvidia-v100-sxm2-32gb"),
        ("rtx4090", "nvidia-geforce-rtx-4090"),
        ("mi250x", "amd-instinct-mi250x"),
        ("mi300x", "amd-instinct-mi300x"),
        ("tpu-v4", "google-tpu-v4"),
        ("TPU_v5e", "google-tpu-v5e"),
        ("cpu", "generic-cpu"),
        ("NVIDIA-H100-SXM5-80GB", "nvidia-h100-sxm5-80gb"),
    ],
)
def test_names_and_aliases_resolve_case_insensitively(alias, name):
    assert resolve(alias).name == name


def test_a100_and_h100_figures():
    a100 = resolve("a100")
    assert a100.memory_bandwidth_bytes_per_s == pytest.approx(2039e9)
    assert a100.peak_flops_per_s["tensor.float16"] == pytest.approx(312e12)
    assert a100.memory_capacity_bytes == 80 * 10**9
    assert a100.l2_cache_bytes == 40 * 10**6
    h100 = resolve("h100")
    assert h100.display_name == "NVIDIA H100 SXM5 80GB"
    assert h100.memory_bandwidth_bytes_per_s == pytest.approx(3.35e12)
    assert h100.peak_flops_per_s["tensor.bfloat16"] == pytest.approx(989.5e12)
    # TPU v4 capacity is given in GiB: 32 * 2**30 bytes.
    assert resolve("tpu-v4").memory_capacity_bytes == 32 * 2**30


def test_ridge_point_h100_bf16():
    # 989.5e12 FLOP/s / 3.35e12 B/s = 295.37 FLOP/B
    assert resolve("h100").ridge_point(DType.BFLOAT16, TENSOR) == pytest.approx(295.37, abs=0.01)


# --- peak selection -------------------------------------------------------------------------


def test_fp32_matmul_uses_vector_peak_unless_tf32():
    a100 = resolve("a100")
    assert a100.peak_for(DType.FLOAT32, TENSOR) == (pytest.approx(19.5e12), "vector.float32")
    assert a100.peak_for(DType.FLOAT32, TENSOR, tf32=True) == (
        pytest.approx(156e12),
        "tensor.tf32",
    )
    # MI250X has no TF32 key: tf32=True falls back to the vector peak.
    assert resolve("mi250x").peak_for(DType.FLOAT32, TENSOR, tf32=True).key == "vector.float32"


@pytest.mark.parametrize(
    ("device", "dtype", "unit", "key"),
    [
        ("a100", DType.FLOAT16, TENSOR, "tensor.float16"),
        ("a100", DType.BFLOAT16, TENSOR, "tensor.bfloat16"),
        ("v100", DType.BFLOAT16, TENSOR, "tensor.float16"),  # no BF16 key
        ("h100", DType.FLOAT8E4M3FN, TENSOR, "tensor.float8"),
        ("a100", DType.FLOAT8E5M2, TENSOR, "tensor.float16"),  # no FP8 key
        ("a100", DType.UINT8, TENSOR, "tensor.int8"),
        ("a100", DType.INT4, TENSOR, "tensor.int8"),  # no int4 key
        ("v100", DType.INT8, TENSOR, "tensor.float16"),  # no int8 key
        ("a100", DType.FLOAT64, TENSOR, "vector.float32"),  # no fp64 key
        ("cpu", DType.FLOAT64, TENSOR, "vector.float64"),
        ("a100", DType.FLOAT16, VECTOR, "vector.float32"),  # no vector.float16 key
        ("a100", DType.INT64, TENSOR, "vector.float32"),
        ("a100", None, TENSOR, "vector.float32"),
        ("cpu", DType.FLOAT16, TENSOR, "vector.float32"),  # no tensor peaks at all
        ("tpu-v4", DType.FLOAT16, TENSOR, "tensor.bfloat16"),  # no FP16 key
        ("tpu-v4", DType.FLOAT32, VECTOR, "tensor.bfloat16"),  # no vector peaks at all
        ("tpu-v5e", None, VECTOR, "tensor.bfloat16"),
    ],
)
def test_peak_for_fallbacks(device, dtype, unit, key):
    spec = resolve(device)
    peak = spec.peak_for(dtype, unit)
    assert peak.key == key
    assert peak.flops_per_s == spec.peak_flops_per_s[key]


def test_peak_for_never_zero_and_never_raises():
    for spec in BUILTINS:
        for dtype in [*DType, None]:
            for unit in ComputeUnit:
                for tf32 in (False, True):
                    peak = spec.peak_for(dtype, unit, tf32=tf32)
                    assert peak.flops_per_s > 0
                    assert peak.key in spec.peak_flops_per_s


def test_last_resort_is_largest_peak():
    spec = HardwareSpec(
        name="odd",
        display_name="odd",
        kind="gpu",
        memory_bandwidth_bytes_per_s=1e12,
        memory_capacity_bytes=10**9,
        peak_flops_per_s={"tensor.int8": 4e14, "tensor.int4": 8e14},
    )
    assert spec.peak_for(DType.FLOAT32, VECTOR) == (8e14, "tensor.int4")


def test_spec_rejects_non_positive_figures():
    with pytest.raises(HardwareError, match="memory_bandwidth must be positive"):
        HardwareSpec("x", "x", "gpu", 0.0, 1, {"vector.float32": 1e12})
    with pytest.raises(HardwareError, match="no peaks"):
        HardwareSpec("x", "x", "gpu", 1e12, 1, {})


# --- user files -----------------------------------------------------------------------------


def test_user_file_adds_and_overrides(tmp_path):
    path = write(
        tmp_path,
        GOOD_DEVICE
        + """
[[device]]
name = "nvidia-a100-sxm4-80gb"
display_name = "A100 measured"
aliases = ["a100", "my-a100"]
kind = "gpu"
memory_bandwidth = { value = 1.7, unit = "TB/s", source = "measured with a copy kernel" }
memory_capacity = { value = 80, unit = "GB", source = "datasheet" }

[device.peaks]
"tensor.float16" = { value = 280, unit = "TFLOPS", source = "measured" }
""",
    )
    added = resolve("x1", [path])
    assert added.name == "acme-x1"
    assert added.memory_capacity_bytes == 48 * 2**30
    assert added.kernel_overhead_s == pytest.approx(5e-6)
    assert added.origin == str(path)
    overridden = resolve("a100", [path])
    assert overridden.display_name == "A100 measured"
    assert overridden.memory_bandwidth_bytes_per_s == pytest.approx(1.7e12)
    assert resolve("my-a100", [path]) == overridden
    names = [s.name for s in list_specs([path])]
    assert names == sorted(names) and names.count("nvidia-a100-sxm4-80gb") == 1
    assert "acme-x1" in names
    # The built-ins are untouched.
    assert resolve("a100").memory_bandwidth_bytes_per_s == pytest.approx(2039e9)


def test_yaml_file(tmp_path):
    pytest.importorskip("yaml")
    path = write(
        tmp_path,
        """\
        device:
          - name: acme-y1
            kind: tpu
            memory_bandwidth: {value: 500, unit: GB/s, source: datasheet}
            memory_capacity: {value: 16, unit: GB, source: datasheet}
            peaks:
              tensor.bfloat16: {value: 100, unit: TFLOPS, source: datasheet}
        """,
        name="hw.yaml",
    )
    (spec,) = load_spec_file(path)
    assert spec.display_name == "acme-y1"
    assert spec.ridge_point(DType.BFLOAT16, TENSOR) == pytest.approx(200.0)


def test_yaml_without_pyyaml(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    path = write(tmp_path, "device: []\n", name="hw.yml")
    with pytest.raises(HardwareError, match="needs PyYAML") as info:
        load_spec_file(path)
    assert str(path) in str(info.value)


BROKEN = {
    "missing field": (
        GOOD_DEVICE.replace("memory_bandwidth = ", "# memory_bandwidth = "),
        "missing field 'memory_bandwidth'",
    ),
    "unknown unit": (GOOD_DEVICE.replace('"GB/s"', '"GB/sec"'), "unknown unit 'GB/sec'"),
    "wrong kind of unit": (GOOD_DEVICE.replace('"GiB"', '"GB/s"'), "not a size unit"),
    "zero value": (GOOD_DEVICE.replace("value = 1000", "value = 0"), "must be positive"),
    "negative value": (GOOD_DEVICE.replace("value = 200", "value = -200"), "must be positive"),
    "string value": (GOOD_DEVICE.replace("value = 200", 'value = "200"'), "a finite number"),
    "missing source": (GOOD_DEVICE.replace(', source = "measured"', ""), "missing 'source'"),
    "unknown field": (GOOD_DEVICE.replace("kind = ", "knd = "), "unknown field 'knd'"),
    "unknown peak key": (GOOD_DEVICE.replace('"tensor.float16"', '"tensor.fp16"'), "peak key"),
    "no peaks": (GOOD_DEVICE.split("[device.peaks]")[0], "missing field 'peaks'"),
    "unknown kind": (GOOD_DEVICE.replace('kind = "gpu"', 'kind = "fpga"'), "unknown kind 'fpga'"),
    "duplicate alias": (
        GOOD_DEVICE + GOOD_DEVICE.replace('name = "acme-x1"', 'name = "acme-x2"'),
        "alias 'x1' of device 'acme-x2'",
    ),
    "duplicate name": (GOOD_DEVICE + GOOD_DEVICE, "defined twice"),
    "alias taken from a built-in": (GOOD_DEVICE.replace('["x1"]', '["h100"]'), "already used by"),
    "malformed TOML": (GOOD_DEVICE.replace('kind = "gpu"', "kind = gpu"), "malformed TOML"),
    "no device list": ("title = 'x'\n", "list of device tables"),
    # finite and positive, but no device: predictions would be 0 or infinity
    "subnormal bandwidth": (GOOD_DEVICE.replace("value = 1000", "value = 1e-320"),
                            "memory_bandwidth = 1e-320 GB/s is not a figure of a real device"),
    "overflowing bandwidth": (GOOD_DEVICE.replace("value = 1000", "value = 1e308"),
                              "memory_bandwidth = 1e\\+308 GB/s is not a figure"),
    "absurd peak": (GOOD_DEVICE.replace("value = 200", "value = 1e12"), "is not a figure"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_malformed_file_names_problem_and_file(tmp_path, case):
    text, message = BROKEN[case]
    path = write(tmp_path, text)
    with pytest.raises(HardwareError, match=message) as info:
        resolve("x1", [path])
    error = str(info.value)
    assert str(path) in error
    assert "\n" not in error


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(HardwareError, match="not found") as info:
        resolve("a100", [tmp_path / "nope.toml"])
    assert "nope.toml" in str(info.value)
    with pytest.raises(HardwareError, match="unsupported extension"):
        load_spec_file(write(tmp_path, GOOD_DEVICE, name="hw.json"))


def test_unknown_name_suggests_close_matches():
    with pytest.raises(HardwareError) as info:
        resolve("h10O")
    error = str(info.value)
    assert "'h10O'" in error and "h100" in error and "memlint hw list" in error
    with pytest.raises(HardwareError, match="memlint hw list"):
        resolve("quantum-annealer-9000")
