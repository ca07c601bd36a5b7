"""`memlint hw calibrate`: the spec it writes loads, names its sources, and is reproducible."""

from __future__ import annotations

import pytest

import memlint.hardware.calibrate as calibrate_module
from memlint.cli import main
from memlint.confirm import ConfirmError
from memlint.hardware import load_spec_file, resolve
from memlint.hardware.calibrate import TINY_BUDGET_S, Figure, calibrate, to_toml

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


def test_a_tiny_budget_measures_the_figures_by_access_pattern():
    result = calibrate(seconds_budget=TINY_BUDGET_S / 2, date="2026-01-02", device="cpu")
    spec = result.spec
    fields = [figure.field for figure in result.figures]
    assert "weight_streaming_bandwidth" in fields and "skinny_matmul_rate" in fields
    assert spec.weight_streaming_bandwidth_bytes_per_s > 1e8
    assert spec.skinny_matmul_flops_per_s > 1e6
    # tiny sizes: a 256 x 512 float32 weight is 512 KiB; an 8 x 128 by 128 x 128 MatMul
    assert "by a 256x512 float32 initializer (0 MiB)" in spec.sources["weight_streaming_bandwidth"]
    assert "MatMul 8x128 x 128x128 float32" in spec.sources["skinny_matmul_rate"]
    # the copy bandwidth: 12 layers of two [1,12,63,64] pasts' Concats; the transpose
    # bandwidth: their Transposes, each kind at its own rate
    assert "copy_bandwidth" in fields and spec.copy_bandwidth_bytes_per_s > 1e8
    assert "transpose_bandwidth" in fields and spec.transpose_bandwidth_bytes_per_s > 1e8
    copies = spec.sources["copy_bandwidth"]
    assert "two Concats per layer (keys, values) of a [1,12,63,64] float32 past" in copies
    assert "in 12 layers" in copies and "(393216 B each)" in copies
    # a strided copy's rate moves between sessions: the median of three fresh ones, each quoted
    assert "over the median of 3 fresh sessions' lower-quartile kernel times" in copies
    assert copies.count(", ", copies.index("GB/s per session:")) == 2
    assert "Transpose (perm 0,1,3,2)" in spec.sources["transpose_bandwidth"]
    # the overhead comes from the decode-like mix; the chain of Adds is quoted beside it
    overhead = spec.sources["kernel_overhead"]
    assert "256 more blocks of small shape / index / element-wise nodes" in overhead
    assert "a graph of 3084 nodes" in overhead and "in a graph of 33 blocks;" in overhead
    assert "one more one-element Add in a chain of 257:" in overhead


def test_the_peak_is_the_median_rate_of_the_sizes(monkeypatch):
    # n = 128 and 256 (tiny budget) for float32, 96 and 192 for float64: the lower of the two
    # middle rates is the peak, not the fastest size's (which sits best in the caches; the
    # spec keeps 4 significant digits).
    # Kernel times by n, so that float32 runs 2*128^3 / 1e-5 = 419 GFLOPS at 128 and
    # 2*256^3 / 1e-4 = 336 at 256: the peak is 336 and the source quotes the other size.
    sized = {128: 1e-5, 256: 1e-4, 96: 1e-5, 192: 1e-4}
    real_model, real_times = calibrate_module._matmul_model, calibrate_module._ort_kernel_times

    def model(n, dtype, rows=None):
        return ("mm", n) if rows is None else real_model(n, dtype, rows)

    def times(ort, model, feeds, node, budget, threads):
        if isinstance(model, tuple):
            return [sized[model[1]]] * 4
        return real_times(ort, model, feeds, node, budget, threads)

    monkeypatch.setattr(calibrate_module, "_matmul_model", model)
    monkeypatch.setattr(calibrate_module, "_ort_kernel_times", times)
    spec = calibrate(seconds_budget=TINY_BUDGET_S / 2, date="2026-01-02", device="cpu").spec
    assert spec.peak_flops_per_s["vector.float32"] == pytest.approx(2 * 256**3 / 1e-4, rel=1e-3)
    assert "MatMul 256x256 x 256x256 float32" in spec.sources["vector.float32"]
    assert "the median rate of n = 128, 256 (GFLOPS at 128: 419;" in spec.sources["vector.float32"]
    assert spec.peak_flops_per_s["vector.float64"] == pytest.approx(2 * 192**3 / 1e-4, rel=1e-3)


def test_a_bandwidth_that_moves_during_the_calibration_is_a_warning(monkeypatch, capsys):
    # The Add is measured first and again at the end; here its kernel takes 1 ms, then 2 ms
    # (32 MiB arrays at the quick budget: 12 B x 2^23 / 1 ms = 101 GB/s, then 50.3 GB/s): -50%,
    # past DRIFT_WARNING, so the spec's notes and the CLI say the machine changed under it.
    real = calibrate_module._ort_kernel_times
    adds = []

    def times(ort, model, feeds, node, budget, threads):
        if node != "add":
            return real(ort, model, feeds, node, budget, threads)
        adds.append(budget)
        return [1e-3 * len(adds)] * 4

    monkeypatch.setattr(calibrate_module, "_ort_kernel_times", times)
    result = calibrate(seconds_budget=TINY_BUDGET_S, device="cpu")
    assert len(adds) == 2
    assert result.spec.memory_bandwidth_bytes_per_s == pytest.approx(12 * 2**23 / 1e-3, rel=1e-3)
    assert result.spec.sources["memory_bandwidth"].endswith(
        "; 50.3 GB/s measured again at the end of the calibration (-50%)")
    (warning,) = result.warnings
    assert warning.startswith("Unstable: the memory bandwidth moved -50% during this calibration "
                              "(101 -> 50.3 GB/s)")
    assert warning in result.spec.notes
    # the CLI prints it
    adds.clear()
    assert main(["hw", "calibrate", "--seconds", str(TINY_BUDGET_S), "--device", "cpu"]) == 0
    assert f"memlint: warning: {warning}" in capsys.readouterr().err


def test_the_overhead_mix_has_the_kernels_memlint_counts(tmp_path):
    # each block: Shape, Unsqueeze and two Reshapes are metadata (no time); Gather, Concat, two
    # Transposes, Mul, Softmax, Add and Div are kernels: 8 of 12, as MIX_KERNELS says
    import memlint
    from memlint.hardware.ort import MIX_KERNELS, MIX_NODES, mix_model

    path = tmp_path / "mix.onnx"
    path.write_bytes(mix_model(3))
    report = memlint.lint(path, hw="a100")
    assert len(report.nodes) == 3 * MIX_NODES
    kernels = [n for n in report.nodes if n.timing.predicted_latency_s > 0]
    assert len(kernels) == 3 * MIX_KERNELS == 24
    if getattr(report.summary, "kernels", None) is not None:  # the summary's own count
        assert report.summary.kernels == 24


def test_the_copy_model_moves_the_bytes_the_figure_counts(tmp_path):
    # one layer, past 63: each Concat reads 12*63*64*4 = 193,536 + 12*64*4 = 3,072 B and
    # writes the [1,12,64,64] present, 196,608 B; the Transpose reads and writes 196,608 B:
    # 393,216 B each, as the source says, and all are data movement (no FLOPs) for the roofline
    import memlint
    from memlint.roofline import is_copy

    path = tmp_path / "copies.onnx"
    path.write_bytes(calibrate_module._copy_model(63, 1))
    nodes = {n.name: n for n in memlint.lint(path, hw="a100").nodes}
    for name in ("key0", "value0", "transpose0"):
        assert nodes[name].cost.bytes_moved == 393_216 and is_copy(nodes[name].cost)


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


class _FakeDType(str):
    """A torch dtype as the calibration uses it: str() gives "torch.<name>"."""

    def __str__(self) -> str:
        return f"torch.{str.__str__(self)}"


class _FakeCuda:
    """Just enough of torch (and torch.cuda) for the GPU calibration to run without a GPU: every
    timed run "takes" `run_ms`, and matmuls of the dtypes in `broken` fail as an old GPU's do."""

    def __init__(self, run_ms: float, broken: tuple[str, ...] = ()) -> None:
        from types import SimpleNamespace

        self.__version__ = "9.9.9"
        self.float16, self.bfloat16, self.float32, self.int8 = (
            _FakeDType(n) for n in ("float16", "bfloat16", "float32", "int8"))
        self.backends = SimpleNamespace(cuda=SimpleNamespace(matmul=SimpleNamespace(allow_tf32=False)))
        props = SimpleNamespace(total_memory=80 * 2**30, L2_cache_size=40 * 2**20)

        class Event:
            def __init__(self, enable_timing: bool) -> None:
                assert enable_timing

            def record(self) -> None: ...

            def synchronize(self) -> None: ...

            def elapsed_time(self, end: object) -> float:
                return run_ms

        self.cuda = SimpleNamespace(
            get_device_properties=lambda index: props, Event=Event, synchronize=lambda: None,
            get_device_name=lambda index: "Fake GPU")
        self.broken = broken

    def _tensor(self, dtype):  # noqa: ANN001, ANN202
        from types import SimpleNamespace

        return SimpleNamespace(dtype=dtype, copy_=lambda src: None, add_=lambda x: None)

    def empty(self, n, dtype, device):  # noqa: ANN001, ANN201
        return self._tensor(dtype)

    def empty_like(self, t):  # noqa: ANN001, ANN201
        return self._tensor(t.dtype)

    def zeros(self, n, device):  # noqa: ANN001, ANN201
        return self._tensor(self.float32)

    def randn(self, *shape, device, dtype):  # noqa: ANN001, ANN201
        if str(dtype).removeprefix("torch.") in self.broken:
            raise RuntimeError(f"\"addmm_cuda\" not implemented for '{dtype}'\nmore detail")
        return self._tensor(dtype)

    def randint(self, low, high, shape, device, dtype):  # noqa: ANN001, ANN201
        return self._tensor(dtype)

    def matmul(self, a, b):  # noqa: ANN001, ANN201
        return a

    def _int_mm(self, a, b):  # noqa: ANN001, ANN201
        return a


def test_the_gpu_calibration_writes_a_gpu_spec(monkeypatch):
    # every timed run takes 1 ms: copy of 1 GiB read + written = 2 GiB / 1 ms = 2147.5 GB/s;
    # 8192^3 * 2 FLOPs / 1 ms = 1099.5 TFLOPS; 257 adds per chain in 1 ms = 3.891 us per kernel
    monkeypatch.setattr(calibrate_module, "_torch_cuda", lambda: _FakeCuda(1.0, ("bfloat16",)))
    result = calibrate(seconds_budget=0.05, date="2026-01-02", device="gpu")
    spec = result.spec
    assert spec.kind == "gpu" and spec.name == "local-gpu" and "Fake GPU" in spec.display_name
    assert spec.memory_bandwidth_bytes_per_s == pytest.approx(2 * 2**30 / 1e-3, rel=1e-3)
    assert spec.kernel_overhead_s == pytest.approx(1e-3 / 257, rel=1e-3)
    assert spec.l2_cache_bytes == 40 * 2**20
    peaks = dict(spec.peak_flops_per_s)
    assert set(peaks) == {"tensor.float16", "vector.float32", "tensor.tf32", "tensor.int8"}
    assert peaks["tensor.float16"] == pytest.approx(2 * 8192**3 / 1e-3, rel=1e-3)
    # the dtype the GPU lacks is left out and said so in one line
    assert "Not measured (the matmul failed): tensor.bfloat16" in result.toml
    assert "more detail" not in result.toml


class _Clock:
    """A perf_counter that moves only when a fake GPU run takes time."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _FakeOrtGpu:
    """onnxruntime-gpu without a GPU: a run "takes" 14 us of launch and framework plus
    12 B / element / 2 TB/s for Adds, 4 us more per extra Add of a chain, and 2*n^3 FLOPs at
    1000 TFLOPS (float16), 150 (float32, TF32 on) or 60 (float32, TF32 off) for MatMuls."""

    __version__ = "9.9.9"

    def __init__(self, clock: _Clock) -> None:
        from types import SimpleNamespace

        self.clock = clock
        self.OrtValue = SimpleNamespace(  # noqa: N815 - onnxruntime's spelling
            ortvalue_from_shape_and_type=lambda shape, dtype, device, index: (shape, dtype, device))

    def get_available_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def SessionOptions(self):  # noqa: ANN201, N802
        return type("Options", (), {})()

    def InferenceSession(self, model, options, providers):  # noqa: ANN001, ANN201, N802
        import onnx

        graph = onnx.load_from_string(model).graph
        ops = [n.op_type for n in graph.node]
        dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        seconds = 14e-6
        if ops[0] == "MatMul":
            half = graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
            tf32 = providers[0][1]["use_tf32"] == "1"
            seconds += 2 * dims[0] ** 3 / ((1000 if half else 150 if tf32 else 60) * 1e12)
        else:
            seconds += 12 * dims[0] / 2e12 + 4e-6 * (len(ops) - 1)
        clock = self.clock

        class Binding:
            def bind_ortvalue_input(self, name, value) -> None:  # noqa: ANN001
                assert value[2] == "cuda"

            def bind_output(self, name, device) -> None:  # noqa: ANN001
                assert device == "cuda"

            def synchronize_outputs(self) -> None: ...

        class Session:
            def io_binding(self) -> Binding:
                return Binding()

            def get_outputs(self) -> list:
                from types import SimpleNamespace

                return [SimpleNamespace(name=o.name) for o in graph.output]

            def run_with_iobinding(self, binding: Binding) -> None:
                clock.now += seconds

        return Session()


def test_the_gpu_is_calibrated_through_onnxruntime_gpu_without_torch(monkeypatch):
    from types import SimpleNamespace

    clock = _Clock()
    monkeypatch.setattr(calibrate_module, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(calibrate_module, "_torch_cuda", lambda: None)
    monkeypatch.setattr(calibrate_module, "_ort_cuda", lambda: _FakeOrtGpu(clock))
    monkeypatch.setattr(calibrate_module, "_nvidia_smi", lambda: ("Fake GPU", 80 * 2**30))
    result = calibrate(seconds_budget=0.01, date="2026-01-02")  # device "auto" finds the GPU
    spec = result.spec
    assert spec.kind == "gpu" and spec.display_name == "Fake GPU (calibrated)"
    # the one-element run's 14 us come off every time: the rates are the fake's exactly
    assert spec.memory_bandwidth_bytes_per_s == pytest.approx(2e12, rel=1e-6)
    peaks = dict(spec.peak_flops_per_s)
    assert set(peaks) == {"tensor.float16", "vector.float32", "tensor.tf32"}
    assert peaks["tensor.float16"] == pytest.approx(1000e12, rel=1e-6)
    assert peaks["tensor.tf32"] == pytest.approx(150e12, rel=1e-6)
    assert peaks["vector.float32"] == pytest.approx(60e12, rel=1e-6)
    assert spec.kernel_overhead_s == pytest.approx(4e-6, rel=1e-6)
    assert spec.memory_capacity_bytes == 80 * 2**30
    assert "onnxruntime 9.9.9 CUDA Add" in spec.sources["memory_bandwidth"]
