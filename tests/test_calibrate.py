"""`memlint hw calibrate`: the spec it writes loads, names its sources, and is reproducible."""

from __future__ import annotations

import pytest

import memlint.confirm.calibrate as calibrate_module
from memlint.confirm import ConfirmError
from memlint.confirm.calibrate import Figure, calibrate, to_toml
from memlint.hardware import load_spec_file, resolve

pytest.importorskip("onnxruntime")


def test_a_tiny_budget_calibration_writes_a_loadable_cpu_spec(tmp_path):
    result = calibrate(seconds_budget=0.2, date="2026-01-02", device="cpu")
    path = tmp_path / "local.toml"
    path.write_text(result.toml, encoding="utf-8")
    (spec,) = load_spec_file(path)
    assert (spec.name, spec.kind, spec.aliases) == ("local-cpu", "cpu", ("local",))
    assert set(spec.peak_flops_per_s) == {"vector.float32", "vector.float64"}
    assert spec.memory_bandwidth_bytes_per_s > 1e8 and spec.kernel_overhead_s > 0
    assert spec.memory_capacity_bytes > 2**28
    for key in ("memory_bandwidth", "memory_capacity", "kernel_overhead", "vector.float32"):
        assert spec.sources[key].startswith("measured by memlint hw calibrate on 2026-01-02: ")
    assert "onnxruntime" in spec.sources["vector.float32"]
    assert "numpy matmul" in spec.sources["vector.float32"]  # the comparison figure is quoted
    # the file's spec is the one returned, and `--hw local` finds it with --hw-file
    assert result.spec.memory_bandwidth_bytes_per_s == spec.memory_bandwidth_bytes_per_s
    assert resolve("local", [path]).name == "local-cpu"


def test_to_toml_is_deterministic_and_parses_back():
    figures = [
        Figure("memory_bandwidth", 26.36, "GB/s", "measured by memlint hw calibrate: add"),
        Figure("memory_capacity", 23.54, "GiB", "measured by memlint hw calibrate: MemTotal"),
        Figure("kernel_overhead", 0.25, "us", 'a "quoted" source'),
        Figure("peaks.vector.float32", 124.0, "GFLOPS", "measured by memlint hw calibrate: mm"),
    ]
    text = to_toml("local-cpu", "AMD EPYC (2 CPUs, calibrated)", "cpu", "notes", figures, None)
    assert text == to_toml("local-cpu", "AMD EPYC (2 CPUs, calibrated)", "cpu", "notes",
                           figures, None)
    assert text.startswith("# Written by memlint hw calibrate: ")
    assert '"vector.float32" = { value = 124.0, unit = "GFLOPS"' in text
    spec = calibrate_module._calibration("local-cpu", "d", "cpu", "n", figures, None).spec
    # 26.36 GB/s = 26.36e9 B/s; 23.54 GiB = 23.54 * 2**30 B; 0.25 us; 124 GFLOPS
    assert spec.memory_bandwidth_bytes_per_s == pytest.approx(26.36e9)
    assert spec.memory_capacity_bytes == round(23.54 * 2**30)
    assert spec.kernel_overhead_s == pytest.approx(0.25e-6)
    assert spec.peak_flops_per_s["vector.float32"] == pytest.approx(124e9)
    assert spec.sources["kernel_overhead"] == 'a "quoted" source'


def test_without_a_date_the_sources_carry_none():
    result = calibrate(seconds_budget=0.1, device="cpu")
    assert all(
        source.startswith("measured by memlint hw calibrate: ")
        for source in result.spec.sources.values()
    )


def test_calibrating_a_gpu_without_one_is_refused(monkeypatch):
    monkeypatch.setattr(calibrate_module, "_torch_cuda", lambda: None)
    with pytest.raises(ConfirmError, match="torch with CUDA"):
        calibrate(seconds_budget=0.1, device="gpu")


@pytest.mark.parametrize(("options", "match"), [
    ({"seconds_budget": 0}, "must be positive"),
    ({"device": "tpu"}, "unknown device"),
])
def test_bad_arguments_are_refused(options, match):
    with pytest.raises(ConfirmError, match=match):
        calibrate(**options)
