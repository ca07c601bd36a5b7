"""`memlint hw calibrate`: measure this machine's roofline and write it as a hardware spec.

CPU (onnxruntime, CPU provider, its default threads; numpy for comparison):
- memory bandwidth: an onnxruntime Add of two float32 arrays far larger than the last-level
  cache, bytes counted as memlint counts them (two reads and one write) over the kernel time in
  the profiler; measured again at the end of the calibration, and when the two differ by more
  than DRIFT_WARNING the machine changed under the calibration: the spec's notes and
  Calibration.warnings say so (the CLI prints it);
- weight-streaming bandwidth: a one-row MatMul streaming a 128 MiB weight (a decode step's
  GEMV), the weight's bytes over the kernel time: what a matrix product with few rows reaches
  reading its weights (the cost model uses it for those, the memory bandwidth for the rest);
- peak FLOP/s per dtype: the median rate of onnxruntime MatMuls x @ W of n x n matrices for
  three n (float32 and float64), 2*n^3 FLOPs over the kernel time. W is an initializer, as a
  model's weights are, so onnxruntime prepacks it as it does in a model (an unpacked right-hand
  side runs 5-15% slower). The median, not the best: the fastest size is the one whose
  operands sit best in the caches (on a 2-core EPYC: 512 -> 231, 1024 -> 203, 2048 -> 198
  GFLOPS float32), while a model's GEMMs come in many sizes, most with weights past the
  mid-level caches (BERT-base's 128 x 768 x 3072 ran at 200-220), so the best size's rate
  predicted every GEMM of BERT-base 5-15% fast;
- skinny matmul rate: a MatMul of SKINNY_ROWS_MEASURED rows by an n x n float32 initializer
  small enough to stay in the caches (its compute rate, not its memory), 2*8*n^2 FLOPs over
  the kernel time: the rate of a decode-shaped product (the square peaks above are n x n);
- copy bandwidth: a decode step's KV-cache copies as onnxruntime runs them (graph
  optimisations off, as --confirm's unoptimised run): COPY_LAYERS times, on inputs of their
  own, two Concats (keys, values) of a [1, 12, past, 64] float32 past with a [1, 12, 1, 64]
  new token into presents that are graph outputs (onnxruntime allocates them every run, as a
  decode step's present.N.key and .value), then the Transpose (perm 0, 1, 3, 2) of the keys'
  present that GPT-2's attention scores read; each moves read + written bytes over its kernel
  time: the Concats give copy_bandwidth, the Transposes transpose_bandwidth (strided reads:
  several times slower than a Concat on a CPU, so one figure for both ranks them wrong), the
  median of COPY_SESSIONS fresh sessions (the Transpose's rate moves several-fold between
  sessions). The pasts of all the layers together (72 MiB) are larger than the last-level
  cache, so every past is read from memory, as a decode step reads its cache;
- per-kernel overhead: the wall-clock cost of the small nodes of a real graph, from a mix of
  the shape / index / element-wise nodes a decode step runs (memlint.hardware.ort.mix_model,
  graph optimisations off as --confirm's unoptimised run has them, profiler off):
  (t(K blocks) - t(1 block)) over the kernels memlint times in K - 1 blocks, so the metadata
  nodes (Shape, Reshape, ...) that memlint gives no time are paid for by the kernels beside
  them, as in a decode step; K makes a graph of a decode step's size (3,084 nodes), because the
  cost per node grows with the graph (the executor's per-node state no longer stays in the
  caches; the data of these nodes does: evicting the L2 between blocks changed nothing
  measurable). The slope of a 33-block graph and a chain of one-element Adds, both cheaper
  per kernel, are measured too and quoted in the source;
- memory capacity: MemTotal of /proc/meminfo.

The spec uses the onnxruntime figures because `--confirm` runs onnxruntime's kernels: numpy's
copy/add (one thread) and matmul (its BLAS) are measured too and quoted in each source, so a
reader sees how far the kernels are from each other.

GPU (torch with CUDA): bandwidth from a device-to-device copy of 1 GiB (or an eighth of the
memory), peaks from n x n matmuls (float16, bfloat16, float32 with and without TF32, int8 with
torch._int_mm when it exists), per-kernel overhead from a chain of one-element adds, all timed
with CUDA events; memory and L2 sizes from the device properties. Without torch, onnxruntime-gpu
(its CUDA provider, operands bound on the device): wall-clock times less a one-element run's,
float16 / float32 / TF32 peaks, name and memory from nvidia-smi.

Rates come from the lower quartile of the run times (a peak is what the hardware reaches when
nothing else runs, and other processes only ever slow a run down; the single fastest run can be
luck); the overhead from medians. Each phase runs at least three times and until its share of
the budget is spent.

Sources read "measured by memlint hw calibrate on <date>: ..."; the date comes only from the
caller (the CLI passes today's), so the output is reproducible in tests.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memlint.errors import ConfirmError, first_line
from memlint.hardware import HardwareSpec
from memlint.hardware.machine import total_memory_bytes
from memlint.hardware.ort import (
    CPU,
    CUDA,
    MIX_KERNELS,
    MIX_NODES,
    chain_model,
    cuda_answers,
    import_onnxruntime,
    mix_model,
    tiny_model,
)
from memlint.hardware.ort_profile import Trace, read_trace
from memlint.hardware.schema import parse_document

CPU_NAME, GPU_NAME, ALIAS = "local-cpu", "local-gpu", "local"
QUICK_BUDGET_S = 5.0  # below this, smaller arrays and matrices (still past the caches)
TINY_BUDGET_S = 1.0  # below this, sizes for a smoke test (cache-resident: not a real figure)
OVERHEAD_CHAIN = 257
# mix_model blocks: 256 more than one, 2,048 more kernels, a graph of 3,084 nodes, the size of a
# small decoder's step (Optimum's GPT-2 small export: 2,741 nodes). The cost per kernel grows
# with the graph (the executor's per-node state outgrows the caches): on a 2-core EPYC 0.59 us
# at 33 blocks (396 nodes), 0.85-0.99 at 257, 1.0-1.13 at 513; the 33-block slope is quoted
OVERHEAD_BLOCKS, OVERHEAD_BLOCKS_SMALL = 257, 33
COPY_LAYERS = 12  # _copy_model's layers (GPT-2 small's): 24 pasts of 3 MiB at full size
# Fresh onnxruntime sessions the copy figures take the median of: a strided Transpose's rate
# moves several-fold from one session to the next on the development VM (6 to 41 GB/s; within a
# session it holds), so one session's figure is luck.
COPY_SESSIONS = 3
SKINNY_ROWS_MEASURED = 8
# The memory bandwidth is measured again at the end of a CPU calibration: a move of more than
# this fraction between the two means the machine changed under the calibration (a shared VM's
# memory moved 36 -> 64 GB/s within minutes), and the spec carries a warning.
DRIFT_WARNING = 0.15


@dataclass(frozen=True)
class Figure:
    """One calibrated number as it goes into the TOML file."""

    field: str  # a field of the hardware file ("memory_bandwidth", ...) or "peaks.<key>"
    value: float  # in `unit`
    unit: str  # a unit of memlint.hardware.UNITS
    source: str


@dataclass(frozen=True)
class Calibration:
    spec: HardwareSpec
    toml: str
    figures: tuple[Figure, ...]
    warnings: tuple[str, ...] = ()  # what makes these figures unreliable (also in the notes)


# progress(what is being measured now)
Progress = Callable[[str], None]


def calibrate(
    *,
    seconds_budget: float = 20.0,
    date: str | None = None,
    device: str = "auto",
    threads: int = 0,
    name: str | None = None,
    progress: Progress | None = None,
) -> Calibration:
    """Measure this machine and return its spec and the TOML text that defines it.

    device: "auto" (the GPU when torch sees CUDA or onnxruntime-gpu reaches a GPU, else the
    CPU), "cpu" or "gpu".
    seconds_budget: roughly how long the measurements may take (at least three runs each).
    date: written into every source ("measured by memlint hw calibrate on DATE"); none if None.
    """
    if seconds_budget <= 0:
        raise ConfirmError(f"the calibration budget must be positive, got {seconds_budget}")
    if device not in ("auto", "cpu", "gpu"):
        raise ConfirmError(f"unknown device {device!r} to calibrate (auto, cpu or gpu)")
    stamp = f"measured by memlint hw calibrate on {date}" if date else (
        "measured by memlint hw calibrate"
    )
    say = progress or (lambda _what: None)
    if device != "cpu":
        torch = _torch_cuda()
        ort = None if torch is not None else _ort_cuda()
        if torch is not None:
            figures, display, notes = _gpu_figures(torch, seconds_budget, stamp, say)
            return _calibration(name or GPU_NAME, display, "gpu", notes, figures, date)
        if ort is not None:
            figures, display, notes = _ort_gpu_figures(ort, seconds_budget, stamp, say)
            return _calibration(name or GPU_NAME, display, "gpu", notes, figures, date)
        if device == "gpu":
            raise ConfirmError("calibrating the GPU needs torch with CUDA, or onnxruntime-gpu, "
                               "and a GPU")
    figures, display, notes, warnings = _cpu_figures(seconds_budget, stamp, threads, say)
    return _calibration(name or CPU_NAME, display, "cpu", notes, figures, date, warnings)


def _calibration(
    name: str, display: str, kind: str, notes: str, figures: list[Figure], date: str | None,
    warnings: tuple[str, ...] = (),
) -> Calibration:
    notes = " ".join([notes, *warnings])
    text = to_toml(name, display, kind, notes, figures, date)
    (spec,) = parse_document(text.encode("utf-8"), "<memlint hw calibrate>", "toml")
    return Calibration(spec=spec, toml=text, figures=tuple(figures), warnings=warnings)


def to_toml(
    name: str, display: str, kind: str, notes: str, figures: list[Figure], date: str | None
) -> str:
    """The hardware file (docs/hardware.md format) for one calibrated device."""
    when = f" on {date}" if date else ""
    lines = [
        f"# Written by memlint hw calibrate{when}: this machine's measured roofline.",
        "# Use it with --hw-file FILE (or save it in the user config folder for --hw local).",
        "",
        "[[device]]",
        f"name = {_string(name)}",
        f"display_name = {_string(display)}",
        f"aliases = [{_string(ALIAS)}]",
        f"kind = {_string(kind)}",
        f"notes = {_string(notes)}",
    ]
    peaks = []
    for figure in figures:
        row = (f"{{ value = {_number(figure.value)}, unit = {_string(figure.unit)}, "
               f"source = {_string(figure.source)} }}")
        if figure.field.startswith("peaks."):
            peaks.append(f"{_string(figure.field[len('peaks.'):])} = {row}")
        else:
            lines.append(f"{figure.field} = {row}")
    lines += ["", "[device.peaks]", *peaks, ""]
    return "\n".join(lines)


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)  # a JSON string is a TOML basic string


def _number(value: float) -> str:
    text = f"{value:.4g}"
    return text if any(c in text for c in ".e") else f"{text}.0"


# --- CPU ------------------------------------------------------------------------------------


def _cpu_figures(
    budget: float, stamp: str, threads: int, say: Progress
) -> tuple[list[Figure], str, str, tuple[str, ...]]:
    ort = import_onnxruntime()
    tier = 0 if budget < TINY_BUDGET_S else 1 if budget < QUICK_BUDGET_S else 2
    elements = (2**20, 2**23, 2**25)[tier]  # 32 or 128 MiB per array: past the L3 cache
    sizes = {  # square matmuls; the median rate sets the peak
        "float32": ((128, 256), (256, 512), (512, 1024, 2048))[tier],
        "float64": ((96, 192), (192, 384), (384, 768, 1536))[tier],
    }
    gemv = (256, 1024, 4096)[tier]  # a gemv x 2gemv float32 weight: 128 MiB at full size
    skinny = (128, 256, 512)[tier]  # an n x n float32 weight: 1 MiB at full size, in the caches
    past = (63, 511, 1023)[tier]  # a [1, 12, past, 64] float32 past: 3 MiB at full size
    version = f"onnxruntime {ort.__version__}"

    say("memory bandwidth")
    add_model, add_feeds = _add_model(elements), _add_feeds(elements)
    add_s = _ort_kernel_times(ort, add_model, add_feeds, "add", budget * 0.15, threads)
    bandwidth = 3 * 4 * elements / fast(add_s)
    weight_bytes = 2 * gemv * gemv * 4
    gemv_s = _ort_kernel_times(ort, _gemv_model(gemv), {"x": np.ones((1, gemv), np.float32)},
                               "gemv", budget * 0.1, threads)
    numpy_add, numpy_copy = _numpy_bandwidth(elements, budget * 0.05)
    figures = [Figure(
        "memory_bandwidth", bandwidth / 1e9, "GB/s",
        f"{stamp}: {version} Add of two {elements * 4 >> 20} MiB float32 arrays, 12 B per "
        f"element over the {QUARTILE_TEXT} kernel time of {len(add_s)} runs (for comparison: "
        f"numpy add {numpy_add / 1e9:.3g} GB/s and copy {numpy_copy / 1e9:.3g} GB/s, one "
        "thread)",
    ), Figure(
        "weight_streaming_bandwidth", weight_bytes / fast(gemv_s) / 1e9, "GB/s",
        f"{stamp}: {version} MatMul of one row by a {gemv}x{2 * gemv} float32 initializer "
        f"({weight_bytes >> 20} MiB), the weight's bytes over the {QUARTILE_TEXT} kernel time "
        f"of {len(gemv_s)} runs",
    )]
    for dtype, ns in sizes.items():
        say(f"{dtype} matmul peak")
        share = budget * (0.25 if dtype == "float32" else 0.1) / len(ns)
        rates = {}
        for n in ns:
            mm_s = _ort_kernel_times(ort, _matmul_model(n, dtype), _matmul_feeds(n, dtype), "mm",
                                     share, threads)
            rates[n] = (2 * n**3 / fast(mm_s), len(mm_s))
        ranked = sorted(ns, key=lambda n: rates[n][0])
        middle = ranked[(len(ranked) - 1) // 2]  # the median rate (the lower of two middles)
        others = ", ".join(f"{n}: {rates[n][0] / 1e9:.3g}" for n in ns if n != middle)
        numpy_rate = _numpy_matmul(middle, dtype, budget * 0.03)
        figures.append(Figure(
            f"peaks.vector.{dtype}", rates[middle][0] / 1e9, "GFLOPS",
            f"{stamp}: {version} MatMul {middle}x{middle} x {middle}x{middle} {dtype} (weight an "
            f"initializer, prepacked as in a model), 2*n^3 FLOPs over the {QUARTILE_TEXT} kernel "
            f"time of {rates[middle][1]} runs; the median rate of n = {', '.join(map(str, ns))} "
            f"(GFLOPS at {others}; numpy matmul at {middle}: {numpy_rate / 1e9:.3g})",
        ))
    say("skinny matmul rate")
    rows = SKINNY_ROWS_MEASURED
    skinny_s = _ort_kernel_times(
        ort, _matmul_model(skinny, "float32", rows),
        {"x": np.ones((rows, skinny), np.float32)}, "mm", budget * 0.05, threads)
    figures.append(Figure(
        "skinny_matmul_rate", 2 * rows * skinny**2 / fast(skinny_s) / 1e9, "GFLOPS",
        f"{stamp}: {version} MatMul {rows}x{skinny} x {skinny}x{skinny} float32 (weight an "
        f"initializer, prepacked, in the caches), 2*m*n^2 FLOPs over the {QUARTILE_TEXT} kernel "
        f"time of {len(skinny_s)} runs",
    ))
    say("copy bandwidth")
    figures.extend(_copy_figures(ort, past, budget * 0.08, threads, stamp, version))
    say("per-kernel overhead")
    chain = _ort_overhead(ort, budget * 0.03, threads)
    overhead, small = _ort_mix_overhead(ort, budget * 0.08, threads)
    figures.append(Figure(
        "kernel_overhead", max(overhead * 1e6, 0.001), "us",
        f"{stamp}: {version} wall-clock cost per kernel of {OVERHEAD_BLOCKS - 1} more blocks of "
        f"small shape / index / element-wise nodes as a decode step runs them ({MIX_NODES} "
        f"nodes, {MIX_KERNELS} of them kernels in memlint's count; a graph of "
        f"{OVERHEAD_BLOCKS * MIX_NODES} nodes, a small decoder step's size; graph optimisations "
        f"and profiler off), medians (for comparison: {max(small * 1e6, 0.001):.3g} us in a "
        f"graph of {OVERHEAD_BLOCKS_SMALL} blocks; one more one-element Add in a chain of "
        f"{OVERHEAD_CHAIN}: {max(chain * 1e6, 0.001):.3g} us)",
    ))
    say("memory bandwidth again")
    again = 3 * 4 * elements / fast(_ort_kernel_times(ort, add_model, add_feeds, "add",
                                                      budget * 0.07, threads))
    drift = again / bandwidth - 1
    first = figures[0]  # memory_bandwidth
    figures[0] = Figure(first.field, first.value, first.unit,
                        f"{first.source}; {again / 1e9:.3g} GB/s measured again at the end of "
                        f"the calibration ({100 * drift:+.0f}%)")
    # (a smoke-test budget's arrays sit in the caches and its few runs are noise: no verdict)
    warnings = () if abs(drift) <= DRIFT_WARNING or tier == 0 else (
        f"Unstable: the memory bandwidth moved {100 * drift:+.0f}% during this calibration "
        f"({bandwidth / 1e9:.3g} -> {again / 1e9:.3g} GB/s), so predictions on this machine "
        "carry errors of that size; calibrate again when nothing else runs on it.",
    )
    total = total_memory_bytes()
    if not total:
        raise ConfirmError("cannot read this machine's memory size (no /proc/meminfo or sysconf)")
    figures.insert(1, Figure("memory_capacity", total / 2**30, "GiB",
                             f"{stamp}: MemTotal of /proc/meminfo"))
    cpus = os.cpu_count() or 1
    display = f"{_cpu_model()} ({cpus} CPUs, calibrated)"
    notes = (
        f"Calibrated with {version} (intra-op threads: {threads or 'default'}) and numpy "
        f"{np.__version__} on {platform.machine()}; re-run memlint hw calibrate after changing "
        "the machine or its load."
    )
    return figures, display, notes, warnings


QUARTILE_TEXT = "lower-quartile"


def fast(times: list[float]) -> float:
    """The lower quartile of run times: what the hardware reaches when nothing else runs (other
    processes only ever slow a run down), without trusting the single luckiest run."""
    ordered = sorted(times)
    return ordered[len(ordered) // 4]


def _ort_kernel_times(
    ort: Any, model: bytes, feeds: dict[str, np.ndarray], node: str, budget: float, threads: int
) -> list[float]:
    """Profiler kernel times of `node` over runs that fill `budget` (one warm-up, >= 3 runs)."""
    return _kernel_times(_ort_trace(ort, model, feeds, budget, threads), (node,))


def _ort_trace(
    ort: Any, model: bytes, feeds: dict[str, np.ndarray], budget: float, threads: int,
    *, optimised: bool = True,
) -> Trace:
    """onnxruntime's profile of runs that fill `budget` (one warm-up, >= 3 runs)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="memlint-calibrate-") as tmp:
        options = _session_options(ort, threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "calibrate")
        if not optimised:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(model, options, providers=[CPU])
        _repeat(functools.partial(session.run, None, feeds), budget)
        trace = read_trace(session.end_profiling(), skip=1)
        session = None
    return trace


def _kernel_times(trace: Trace, nodes: tuple[str, ...]) -> list[float]:
    """The kernel times of `nodes` in every run of `trace`, pooled (each node's own times)."""
    times = [run[node] for run in trace.runs for node in nodes if run.get(node, 0) > 0]
    if not times:
        raise ConfirmError("onnxruntime's profile has no kernel time for the calibration run")
    return times


def _copy_figures(
    ort: Any, past: int, budget: float, threads: int, stamp: str, version: str
) -> tuple[Figure, Figure]:
    """The copy and transpose bandwidths: a decode step's KV-cache Concats and Transposes (see
    _copy_model), each kind at its own rate (a Transpose's strided reads run several times
    slower than a Concat's on a CPU)."""
    feeds = {}
    for i in range(COPY_LAYERS):
        for cache in ("key", "value"):
            feeds[f"past_{cache}{i}"] = np.full((1, 12, past, 64), 0.5, np.float32)
            feeds[f"new_{cache}{i}"] = np.full((1, 12, 1, 64), 0.25, np.float32)
    concats = tuple(f"{cache}{i}" for i in range(COPY_LAYERS) for cache in ("key", "value"))
    transposes = tuple(f"transpose{i}" for i in range(COPY_LAYERS))
    model = _copy_model(past, COPY_LAYERS)
    concat_s, transpose_s, runs = [], [], 0
    for _ in range(COPY_SESSIONS):
        trace = _ort_trace(ort, model, feeds, budget / COPY_SESSIONS, threads, optimised=False)
        concat_s.append(fast(_kernel_times(trace, concats)))
        transpose_s.append(fast(_kernel_times(trace, transposes)))
        runs += len(trace.runs)
    concat, transpose = statistics.median(concat_s), statistics.median(transpose_s)
    # as memlint counts them: each reads the present's elements and writes them once
    moved = 2 * 12 * (past + 1) * 64 * 4
    pasts = COPY_LAYERS * moved >> 20  # two pasts per layer, each half of `moved`
    setting = (f"{stamp}: {version} KV-cache copies of a decode step, graph optimisations off, "
               f"in {COPY_LAYERS} layers ({pasts} MiB of pasts): ")

    def timing(times: list[float]) -> str:
        rates = ", ".join(f"{moved / t / 1e9:.3g}" for t in times)
        return (f"read + written bytes ({moved} B each) over the median of {COPY_SESSIONS} "
                f"fresh sessions' {QUARTILE_TEXT} kernel times ({runs} runs in all; GB/s per "
                f"session: {rates})")
    return (
        Figure("copy_bandwidth", moved / concat / 1e9, "GB/s",
               setting + f"two Concats per layer (keys, values) of a [1,12,{past},64] float32 "
               f"past and a [1,12,1,64] token into a present that is a graph output, "
               f"{timing(concat_s)}"),
        Figure("transpose_bandwidth", moved / transpose / 1e9, "GB/s",
               setting + "the Transpose (perm 0,1,3,2) of each layer's keys' present that the "
               f"attention scores read, {timing(transpose_s)}"),
    )


def _ort_overhead(ort: Any, budget: float, threads: int) -> float:
    """Seconds one more tiny kernel adds to a run: the slope between a 1- and a K-kernel chain."""
    feeds = {"x": np.ones(1, np.float32), "c": np.ones(1, np.float32)}
    one, many = (_unoptimised_median(ort, chain_model(count), feeds, budget / 2, threads)
                 for count in (1, OVERHEAD_CHAIN))
    return (many - one) / (OVERHEAD_CHAIN - 1)


def _ort_mix_overhead(ort: Any, budget: float, threads: int) -> tuple[float, float]:
    """Seconds per kernel (as memlint counts kernels) that small nodes of a real graph add: the
    slope between 1 and OVERHEAD_BLOCKS blocks of mix_model (a graph of a decode step's size),
    and for comparison between 1 and OVERHEAD_BLOCKS_SMALL blocks."""
    feeds = {"x": np.ones((1, 1, 768), np.float32)}
    one, small, many = (_unoptimised_median(ort, mix_model(blocks), feeds, budget / 3, threads)
                        for blocks in (1, OVERHEAD_BLOCKS_SMALL, OVERHEAD_BLOCKS))
    return ((many - one) / ((OVERHEAD_BLOCKS - 1) * MIX_KERNELS),
            (small - one) / ((OVERHEAD_BLOCKS_SMALL - 1) * MIX_KERNELS))


def _unoptimised_median(
    ort: Any, model: bytes, feeds: dict[str, np.ndarray], budget: float, threads: int
) -> float:
    """Median wall-clock seconds of a run with graph optimisations (and the profiler) off."""
    options = _session_options(ort, threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model, options, providers=[CPU])
    return statistics.median(_repeat(functools.partial(session.run, None, feeds), budget))


def _session_options(ort: Any, threads: int) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    return options


def _repeat(run: Callable[[], Any], budget: float, least: int = 3, most: int = 200) -> list[float]:
    """Wall-clock seconds of runs after one warm-up, until `budget` is spent (>= `least`)."""
    run()
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < least or (len(times) < most and time.perf_counter() < deadline):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def _numpy_bandwidth(elements: int, budget: float) -> tuple[float, float]:
    a = np.ones(elements, np.float32)
    b = np.ones(elements, np.float32)
    out = np.empty_like(a)
    add = fast(_repeat(lambda: np.add(a, b, out=out), budget / 2))
    copy = fast(_repeat(lambda: np.copyto(out, a), budget / 2))
    return 3 * a.nbytes / add, 2 * a.nbytes / copy


def _numpy_matmul(n: int, dtype: str, budget: float) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    return 2 * n**3 / fast(_repeat(lambda: a @ b, budget))


def _add_model(elements: int) -> bytes:
    """y = a + b, then a reduction so that y is an intermediate the arena reuses run to run."""
    from onnx import TensorProto, helper

    vector = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [elements]) for n in "ab"]
    return tiny_model(
        [helper.make_node("Add", ["a", "b"], ["y"], name="add"),
         helper.make_node("ReduceMax", ["y"], ["m"], name="max", keepdims=0)],
        vector, [helper.make_tensor_value_info("m", TensorProto.FLOAT, [])],
    )


def _add_feeds(elements: int) -> dict[str, np.ndarray]:
    return {"a": np.ones(elements, np.float32), "b": np.full(elements, 2.0, np.float32)}


def _copy_model(past: int, layers: int) -> bytes:
    """A decode step's KV-cache copies, `layers` times on inputs of their own: key{i} and
    value{i} = Concat(past_<cache>{i} [1, 12, past, 64], new_<cache>{i} [1, 12, 1, 64]) on the
    sequence axis into presents that are graph outputs, as a decode step's present.N.key and
    .value are (onnxruntime allocates them every run), then transpose{i} = Transpose(present
    keys, perm 0, 1, 3, 2) as GPT-2's attention reads K^T, its output reduced so that it is an
    intermediate of the arena."""
    from onnx import TensorProto, helper

    def value(name: str, shape: list[int]) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    nodes, inputs, outputs = [], [], []
    for i in range(layers):
        for cache in ("key", "value"):
            nodes.append(helper.make_node(
                "Concat", [f"past_{cache}{i}", f"new_{cache}{i}"], [f"present_{cache}{i}"],
                name=f"{cache}{i}", axis=2))
            inputs += [value(f"past_{cache}{i}", [1, 12, past, 64]),
                       value(f"new_{cache}{i}", [1, 12, 1, 64])]
            outputs.append(value(f"present_{cache}{i}", [1, 12, past + 1, 64]))
        nodes += [
            helper.make_node("Transpose", [f"present_key{i}"], [f"keys{i}"],
                             name=f"transpose{i}", perm=[0, 1, 3, 2]),
            helper.make_node("ReduceMax", [f"keys{i}"], [f"max{i}"], name=f"max{i}",
                             keepdims=0),
        ]
        outputs.append(value(f"max{i}", []))
    return tiny_model(nodes, inputs, outputs)


def _gemv_model(n: int) -> bytes:
    """y = x @ w with w a 2n x ... initializer: one row streaming the whole weight, as a decode
    step's matmuls do (onnxruntime prepacks initializer weights, as in a real model)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((n, 2 * n)).astype(np.float32)
    return tiny_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="gemv")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2 * n])],
        [numpy_helper.from_array(weight, "w")],
    )


def _matmul_model(n: int, dtype: str, rows: int | None = None) -> bytes:
    """y = x @ w, x rows x n (n x n by default), w an n x n initializer (prepacked by
    onnxruntime, as a model's weights are)."""
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.DOUBLE
    weight = np.random.default_rng(1).standard_normal((n, n)).astype(dtype)
    m = n if rows is None else rows
    return tiny_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [helper.make_tensor_value_info("x", elem, [m, n])],
        [helper.make_tensor_value_info("y", elem, [m, n])],
        [numpy_helper.from_array(weight, "w")],
    )


def _matmul_feeds(n: int, dtype: str) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((n, n)).astype(dtype)}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


# --- GPU (torch) ----------------------------------------------------------------------------


def _torch_cuda() -> Any | None:
    """torch, when it is installed and sees a CUDA GPU (imported only when a driver is there)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    if not _driver_present():
        return None  # no NVIDIA driver: spare the seconds that importing torch takes
    import torch

    return torch if torch.cuda.is_available() else None


def _driver_present() -> bool:
    """An NVIDIA driver is loaded (always assumed off Linux, where this cannot be read)."""
    import sys

    return sys.platform != "linux" or any(
        os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version")
    )


def _ort_cuda() -> Any | None:
    """onnxruntime, when it has the CUDA provider and a probe session really gets it."""
    if not _driver_present():
        return None
    try:
        ort = import_onnxruntime()
    except ConfirmError:
        return None
    return ort if CUDA in ort.get_available_providers() and cuda_answers(ort) else None


def _ort_gpu_figures(
    ort: Any, budget: float, stamp: str, say: Progress
) -> tuple[list[Figure], str, str]:
    """The GPU through onnxruntime-gpu alone (no torch): every operand bound on the device with
    IOBinding, runs timed by the wall clock and the time of a one-element run (launch and
    framework) taken off. bfloat16 and int8 are not measured (numpy has no bfloat16; CUDA
    MatMulInteger is not a tensor-core peak)."""
    name, memory = _nvidia_smi()
    version = f"onnxruntime {ort.__version__}"
    share = budget / 7
    say("launch time")
    launch = fast(_ort_cuda_times(ort, _add_model_plain(1), _inputs("ab", 1, "float32"),
                                  share / 2))
    say("memory bandwidth")
    elements = min(2**28, memory // 16 // 4)  # 1 GiB a float32 array, at most 1/16 of memory
    add = fast(_ort_cuda_times(ort, _add_model_plain(elements),
                               _inputs("ab", elements, "float32"), share))
    figures = [Figure(
        "memory_bandwidth", 12 * elements / max(add - launch, 1e-9) / 1e9, "GB/s",
        f"{stamp}: {version} CUDA Add of two {elements * 4 >> 20} MiB float32 arrays bound on "
        f"the device, 12 B per element over the {QUARTILE_TEXT} wall-clock time less a "
        "one-element run's",
    ), Figure("memory_capacity", memory / 2**30, "GiB", f"{stamp}: nvidia-smi memory.total")]
    n = 8192
    for key, dtype, tf32 in (("tensor.float16", "float16", False),
                             ("vector.float32", "float32", False),
                             ("tensor.tf32", "float32", True)):
        say(f"{key} peak")
        mm = fast(_ort_cuda_times(ort, _matmul_inputs_model(n, dtype),
                                  _inputs("ab", (n, n), dtype), share, tf32))
        figures.append(Figure(
            f"peaks.{key}", 2 * n**3 / max(mm - launch, 1e-9) / 1e12, "TFLOPS",
            f"{stamp}: {version} CUDA MatMul {n}x{n} {dtype} (use_tf32={int(tf32)}), 2*n^3 "
            f"FLOPs over the {QUARTILE_TEXT} wall-clock time less a one-element run's",
        ))
    say("per-kernel overhead")
    one, many = (statistics.median(_ort_cuda_times(ort, chain_model(k),
                                                   _inputs("xc", 1, "float32"), share / 2))
                 for k in (1, OVERHEAD_CHAIN))
    figures.append(Figure(
        "kernel_overhead", max((many - one) / (OVERHEAD_CHAIN - 1) * 1e6, 0.001), "us",
        f"{stamp}: {version} CUDA wall-clock cost of one more one-element Add in a chain of "
        f"{OVERHEAD_CHAIN}, medians",
    ))
    notes = (f"Calibrated with {version} (CUDA provider, no torch); bfloat16 and int8 peaks are "
             "not measured this way; re-run memlint hw calibrate on a new GPU.")
    return figures, f"{name} (calibrated)", notes


def _inputs(names: str, shape: int | tuple[int, ...], dtype: str) -> dict[str, tuple]:
    """{name: (shape, numpy dtype)} for inputs allocated on the device (never on the host)."""
    dims = (shape,) if isinstance(shape, int) else shape
    return {name: (dims, np.dtype(dtype)) for name in names}


def _ort_cuda_times(ort: Any, model: bytes, inputs: dict[str, tuple], budget: float,
                    tf32: bool = False) -> list[float]:
    """Wall-clock seconds of CUDA runs with every input (allocated on the device, values left
    as they are: timing does not depend on them) and output bound on the device."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model, options, providers=[(CUDA, {"use_tf32": str(int(tf32))}), CPU])
    binding = session.io_binding()
    for name, (shape, dtype) in inputs.items():
        value = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cuda", 0)
        binding.bind_ortvalue_input(name, value)
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda")

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return _repeat(run, budget)


def _nvidia_smi() -> tuple[str, int]:
    """(name, memory in bytes) of GPU 0, from nvidia-smi (onnxruntime does not report them)."""
    import subprocess

    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits",
             "--id=0"], capture_output=True, text=True, timeout=30, check=True)
        name, mib = (part.strip() for part in done.stdout.splitlines()[0].rsplit(",", 1))
        return name, int(float(mib)) * 2**20
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        raise ConfirmError("calibrating a GPU through onnxruntime needs nvidia-smi for its name "
                           "and memory size") from None


def _add_model_plain(elements: int) -> bytes:
    """y = a + b and nothing else (on a GPU the run's wall clock is the measure)."""
    from onnx import TensorProto, helper

    return tiny_model(
        [helper.make_node("Add", ["a", "b"], ["y"], name="add")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [elements]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [elements])],
    )


def _matmul_inputs_model(n: int, dtype: str) -> bytes:
    """y = a @ b with both operands graph inputs (bound on the device)."""
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    return tiny_model(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
        [helper.make_tensor_value_info(x, elem, [n, n]) for x in "ab"],
        [helper.make_tensor_value_info("y", elem, [n, n])],
    )


def _gpu_figures(
    torch: Any, budget: float, stamp: str, say: Progress
) -> tuple[list[Figure], str, str]:
    props = torch.cuda.get_device_properties(0)
    share = budget / 7
    say("memory bandwidth")
    nbytes = min(2**30, props.total_memory // 8)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    copy_s = _cuda_times(torch, functools.partial(dst.copy_, src), share)
    figures = [Figure(
        "memory_bandwidth", 2 * nbytes / fast(copy_s) / 1e9, "GB/s",
        f"{stamp}: torch {torch.__version__} device-to-device copy of {nbytes >> 20} MiB, "
        f"read + write over the {QUARTILE_TEXT} time of {len(copy_s)} runs (CUDA events)",
    ), Figure("memory_capacity", props.total_memory / 2**30, "GiB",
              f"{stamp}: torch.cuda.get_device_properties total_memory")]
    src = dst = None
    l2 = getattr(props, "L2_cache_size", 0)
    if l2:
        figures.append(Figure("l2_cache", l2 / 2**20, "MiB",
                              f"{stamp}: torch.cuda.get_device_properties L2_cache_size"))
    n = 8192
    cases = [("tensor.float16", torch.float16, False), ("tensor.bfloat16", torch.bfloat16, False),
             ("vector.float32", torch.float32, False), ("tensor.tf32", torch.float32, True)]
    skipped = []
    for key, dtype, tf32 in cases:
        say(f"{key} peak")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            a = torch.randn(n, n, device="cuda", dtype=dtype)
            b = torch.randn(n, n, device="cuda", dtype=dtype)
            times = _cuda_times(torch, functools.partial(torch.matmul, a, b), share)
        except RuntimeError as exc:  # a dtype this GPU or its libraries lack (bf16 before sm80)
            skipped.append(f"{key} ({first_line(exc, 160)})")
            continue
        finally:
            a = b = None
        figures.append(Figure(
            f"peaks.{key}", 2 * n**3 / fast(times) / 1e12, "TFLOPS",
            f"{stamp}: torch {torch.__version__} matmul {n}x{n} {str(dtype)[6:]}"
            f"{' (TF32 on)' if tf32 else ''}, 2*n^3 FLOPs over the {QUARTILE_TEXT} time of "
            f"{len(times)} runs",
        ))
    torch.backends.cuda.matmul.allow_tf32 = False
    if hasattr(torch, "_int_mm"):
        say("tensor.int8 peak")
        try:
            a = torch.randint(-8, 8, (n, n), device="cuda", dtype=torch.int8)
            b = torch.randint(-8, 8, (n, n), device="cuda", dtype=torch.int8)
            times = _cuda_times(torch, functools.partial(torch._int_mm, a, b), share)
        except RuntimeError as exc:
            skipped.append(f"tensor.int8 ({first_line(exc, 160)})")
        else:
            figures.append(Figure(
                "peaks.tensor.int8", 2 * n**3 / fast(times) / 1e12, "TOPS",
                f"{stamp}: torch._int_mm {n}x{n} int8, 2*n^3 ops over the {QUARTILE_TEXT} "
                f"time of {len(times)} runs",
            ))
        finally:
            a = b = None
    say("per-kernel overhead")
    x = torch.zeros(1, device="cuda")

    def chain() -> None:
        for _ in range(OVERHEAD_CHAIN):
            x.add_(1)

    per_chain = statistics.median(_cuda_times(torch, chain, share))
    figures.append(Figure(
        "kernel_overhead", per_chain / OVERHEAD_CHAIN * 1e6, "us",
        f"{stamp}: torch {torch.__version__} {OVERHEAD_CHAIN} one-element adds back to back, "
        "time per kernel (CUDA events)",
    ))
    display = f"{torch.cuda.get_device_name(0)} (calibrated)"
    notes = f"Calibrated with torch {torch.__version__}; re-run memlint hw calibrate on a new GPU."
    if skipped:
        notes += f" Not measured (the matmul failed): {'; '.join(skipped)}."
    return figures, display, notes


def _cuda_times(torch: Any, run: Callable[[], Any], budget: float) -> list[float]:
    """Seconds per run by CUDA events, after a warm-up, until `budget` is spent (>= 3 runs)."""
    run()
    torch.cuda.synchronize()
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < 3 or (len(times) < 200 and time.perf_counter() < deadline):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return times
