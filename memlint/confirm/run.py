"""confirm(report): run the linted model with onnxruntime and join the times to the report.

Four sessions, one after the other (never two in memory at once):

1. graph optimisations off (ORT_DISABLE_ALL), profiler on: every kernel is one IR node, named
   as the IR names it; warm-up, then `runs` profiled runs give the per-node times;
2. the same without the profiler: warm-up, then `runs` timed runs give the wall-clock latency
   of the graph as written (the profiler's bookkeeping slows every kernel by microseconds, and
   multi-threaded kernels by more, so latencies never come from a profiled session);
3. full optimisations (ORT_ENABLE_ALL), profiler on, the optimised graph saved to a temporary
   folder: warm-up and a few profiled runs give its kernels, mapped back to the nodes they
   replaced;
4. the same without the profiler: warm-up and `runs` timed runs give the latency onnxruntime
   delivers.

Runs happen on a worker thread so that Ctrl-C reaches the main thread at once: it sets
onnxruntime's terminate flag, waits for the run to stop, releases the session and re-raises
KeyboardInterrupt.
"""

from __future__ import annotations

import dataclasses
import gc
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from memlint.confirm.inputs import (
    ConfirmError,
    PreparedModel,
    describe_feeds,
    prepare_model,
    synthesize_inputs,
)
from memlint.confirm.profile import replaced_nodes
from memlint.confirm.verdicts import judge
from memlint.core.measurement import Measurement, NodeMeasurement, OptimisedKernel
from memlint.core.report import Report
from memlint.errors import first_line
from memlint.hardware import HardwareSpec
from memlint.hardware.ort import CPU, CUDA, chain_model, cuda_answers, import_onnxruntime
from memlint.hardware.ort_profile import Trace, read_trace

# progress(completed runs, total runs, what is running): called on the calling thread.
Progress = Callable[[int, int, str], None]

PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "gpu": CUDA}
OPTIMISED_PROFILED_RUNS = 3  # profiled runs of the optimised session (its kernel map)
CALIBRATED_MARK = "memlint hw calibrate"  # in the sources of a calibrated spec


def confirm(
    report: Report,
    *,
    runs: int = 10,
    warmup: int = 3,
    provider: str | None = None,
    progress: Progress | None = None,
    threads: int = 0,
    available_memory: int | None = None,
) -> Measurement:
    """Run the model of `report` (an ONNX file, linted with its dims bound) and measure it.

    provider: None or "auto" (CUDA when onnxruntime has it and a GPU answers, else CPU), "cpu",
    "cuda" or a full provider name. threads: onnxruntime's intra-op threads (0: its default).
    available_memory: free RAM in bytes for the missing-weights check (default: the system's).
    Raises ConfirmError (one line) when the run cannot be made or the spec is for another kind
    of device.
    """
    if runs < 1 or warmup < 0:
        raise ConfirmError(f"need at least one timed run and no negative warm-up, got runs={runs}, "
                           f"warmup={warmup}")
    if report.model.format != "onnx":
        raise ConfirmError(
            f"onnxruntime measures ONNX files; this report is of a {report.model.format} graph: "
            "measure it with memlint.confirm.confirm_torch(report, module, example_inputs)"
        )
    ort = import_onnxruntime()
    chosen, device = choose_provider(ort, provider)
    check_spec(report.hardware, device, chosen)
    prepared = prepare_model(report.model, available=available_memory)
    total = 4 * warmup + 3 * runs + min(runs, OPTIMISED_PROFILED_RUNS)
    counter = RunCounter(progress, total)
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="memlint-confirm-") as tmp:
        folder = Path(tmp)
        try:
            floor_s = profiler_floor(ort, chosen, threads, folder)
            plain = _measure_session(
                ort, prepared, report, chosen, threads, folder, counter, optimised=False,
                warmup=warmup, profiled=runs, timed=runs, floor_s=floor_s,
            )
            fused = _measure_session(
                ort, prepared, report, chosen, threads, folder, counter, optimised=True,
                warmup=warmup, profiled=min(runs, OPTIMISED_PROFILED_RUNS), timed=runs,
                floor_s=floor_s,
            )
        except KeyboardInterrupt:
            interrupted = True  # re-raised below, once its traceback (and the sessions) are gone
        if interrupted:
            gc.collect()
            raise KeyboardInterrupt
        optimised_graph = _read_optimised(folder / "optimised.onnx")
    return _join(report, prepared, plain, fused, optimised_graph, ort, chosen, device, runs,
                 warmup, threads, floor_s)


@dataclasses.dataclass(frozen=True)
class _SessionResult:
    trace: Trace
    latency_s: float


def select_provider(report: Report, provider: str | None = None) -> tuple[str, str]:
    """The provider `confirm` will use for `report` and its device kind ("cpu"/"gpu"), checked
    against the report's spec: for a caller that announces the choice before the runs start."""
    chosen, device = choose_provider(import_onnxruntime(), provider)
    check_spec(report.hardware, device, chosen)
    return chosen, device


def choose_provider(ort: Any, provider: str | None) -> tuple[str, str]:
    """(provider name, device kind "cpu"/"gpu") for the requested provider."""
    available = ort.get_available_providers()
    if provider in (None, "", "auto"):
        if CUDA in available and cuda_answers(ort):
            return CUDA, "gpu"
        return CPU, "cpu"
    name = PROVIDER_ALIASES.get(provider.lower(), provider)
    if name not in available:
        raise ConfirmError(
            f"onnxruntime has no {name} here (it has {', '.join(available)}); for CUDA install "
            "onnxruntime-gpu"
        )
    if name == CUDA and not cuda_answers(ort):
        raise ConfirmError("onnxruntime has the CUDA provider but no GPU answered")
    return name, "gpu" if name == CUDA else "cpu"


def check_spec(spec: HardwareSpec, device: str, provider: str) -> None:
    """Refuse to compare a prediction for one kind of device with a run on another."""
    if spec.kind == device:
        return
    raise ConfirmError(
        f"cannot confirm a prediction for {spec.display_name} ({spec.kind}) with a run on "
        f"{provider}: run `memlint hw calibrate` and predict with --hw local (or --hw-file FILE "
        f"with a {device} spec)"
    )


# --- one session ----------------------------------------------------------------------------


def _measure_session(
    ort: Any, prepared: PreparedModel, report: Report, provider: str, threads: int,
    folder: Path, counter: RunCounter, *, optimised: bool, warmup: int, profiled: int, timed: int,
    floor_s: float,
) -> _SessionResult:
    """Profiled runs in one session, then timed runs in a fresh one without the profiler (whose
    bookkeeping slows every kernel, and a session keeps some of it after end_profiling)."""
    label = "optimised" if optimised else "unoptimised"
    session = _session(ort, prepared, report, provider, threads, folder, optimised, True)
    feeds = synthesize_inputs(report.model, tuple(i.name for i in session.get_inputs()))
    fed = describe_feeds(feeds, report.model)
    _run_many(session, feeds, warmup + profiled, counter, f"{label}: profiled runs", fed=fed)
    trace = read_trace(session.end_profiling(), skip=warmup, floor_s=floor_s)
    session = None  # released before the next one loads
    session = _session(ort, prepared, report, provider, threads, folder, optimised, False)
    times = _run_many(session, feeds, warmup + timed, counter, f"{label}: timed runs", fed=fed)
    return _SessionResult(trace, statistics.median(times[warmup:]))


FLOOR_CHAIN = 64  # one-element Adds whose median profiled kernel time is the profiler's floor


def profiler_floor(ort: Any, provider: str, threads: int, folder: Path) -> float:
    """The profiler's own cost per kernel event, in seconds: the median profiled kernel time of
    a one-element Add (whose own work takes well under a microsecond), with the same provider
    and threads as the measured run. Taken off every measured kernel time."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a run's error is memlint's one line
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "floor")
    session = ort.InferenceSession(chain_model(FLOOR_CHAIN), options,
                                   providers=_providers(provider))
    feeds = {"x": np.ones(1, np.float32), "c": np.ones(1, np.float32)}
    for _ in range(4):
        session.run(None, feeds)
    trace = read_trace(session.end_profiling(), skip=1)
    times = [t for run in trace.runs for t in run.values()]
    return statistics.median(times) if times else 0.0


def _session(
    ort: Any, prepared: PreparedModel, report: Report, provider: str, threads: int,
    folder: Path, optimised: bool, profile: bool,
) -> Any:
    label = "optimised" if optimised else "unoptimised"
    options = _options(ort, prepared, threads, folder, optimised, profile)
    try:
        return ort.InferenceSession(
            prepared.proto_bytes, options, providers=_providers(provider)
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors are long; keep one line
        raise ConfirmError(
            f"onnxruntime cannot load {report.model.source} ({label}): {first_line(exc)}"
        ) from None


def _options(
    ort: Any, prepared: PreparedModel, threads: int, folder: Path, optimised: bool, profile: bool
) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a run's error is memlint's one line
    options.intra_op_num_threads = threads
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = str(folder / ("optimised" if optimised else "unoptimised"))
    level = ort.GraphOptimizationLevel
    options.graph_optimization_level = level.ORT_ENABLE_ALL if optimised else level.ORT_DISABLE_ALL
    options.add_session_config_entry(
        "session.model_external_initializers_file_folder_path", str(prepared.folder)
    )
    if optimised and profile:  # the graph whose kernels the profile names
        options.optimized_model_filepath = str(folder / "optimised.onnx")
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", "optimised.data"
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
    if prepared.external:
        names = list(prepared.external)
        values = [_ort_value(ort, prepared.external[n], prepared.external_types[n]) for n in names]
        options.add_external_initializers(names, values)
    return options


def _ort_value(ort: Any, array: Any, onnx_type: int) -> Any:
    from onnx import TensorProto

    if onnx_type in (TensorProto.BFLOAT16,):
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(array, onnx_type)
    return ort.OrtValue.ortvalue_from_numpy(array)


def _providers(provider: str) -> list[str]:
    return [provider] if provider == CPU else [provider, CPU]


class RunCounter:
    """Counts runs across both sessions and reports them to the progress callback."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def step(self, phase: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, phase)


def _run_many(session: Any, feeds: Mapping[str, Any], count: int, counter: RunCounter,
              phase: str, *, fed: str = "") -> list[float]:
    """`count` runs on a worker thread; the wall-clock seconds of each. Ctrl-C stops the run.
    `fed` says what was fed (confirm.inputs.describe_feeds) in the message of a failed run."""
    import onnxruntime as ort

    options = ort.RunOptions()
    times: list[float] = []
    failure: list[BaseException] = []
    stop = threading.Event()

    def work() -> None:
        try:
            for _ in range(count):
                if stop.is_set():
                    return
                start = time.perf_counter()
                session.run(None, feeds, options)
                times.append(time.perf_counter() - start)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failure.append(exc)

    worker = threading.Thread(target=work, name="memlint-confirm", daemon=True)
    reported = 0
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
            while reported < len(times):
                reported += 1
                counter.step(phase)
    except BaseException:  # Ctrl-C, or a progress callback that failed: stop the run first
        stop.set()
        options.terminate = True
        worker.join()
        raise
    while reported < len(times):
        reported += 1
        counter.step(phase)
    if failure:
        raise ConfirmError(run_failure(failure[0], fed))
    return times


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_ORT_NODE = re.compile(
    r"^Non-zero status code returned while running (\S+) node\. Name:'(.*?)' Status Message: "
)
REASON_LIMIT = 300  # characters of onnxruntime's own reason


def run_failure(exc: BaseException, fed: str = "") -> str:
    """One line for a run onnxruntime refused: what memlint fed first (the shapes, and where
    their dims came from), then onnxruntime's reason without its boilerplate, so that a long
    node name cannot push the reason out of the line ('Conv node /x/Conv: Input channels C is
    not equal to kernel channels * group. C: 1 kernel channels: 3 group: 1')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = _ORT_PREFIX.sub("", lines[0] if lines else type(exc).__name__)
    node = _ORT_NODE.match(reason)
    if node:
        name = node.group(2) if len(node.group(2)) <= 80 else node.group(2)[:77] + "..."
        reason = f"{node.group(1)} node {name!r}: {reason[node.end():]}"
    if len(reason) > REASON_LIMIT:
        reason = reason[: REASON_LIMIT - 3] + "..."
    return f"onnxruntime failed to run the model{f' ({fed})' if fed else ''}: {reason}"


def _read_optimised(path: Path) -> Any | None:
    import onnx

    if not path.is_file():
        return None
    try:
        return onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - without it the fused kernels stay unmapped, said so
        return None


# --- joining times to the report ------------------------------------------------------------


def _join(
    report: Report, prepared: PreparedModel, plain: _SessionResult, fused: _SessionResult,
    optimised_graph: Any, ort: Any, provider: str, device: str, runs: int, warmup: int,
    threads: int, floor_s: float,
) -> Measurement:
    from memlint.confirm.inputs import graph_nodes
    from memlint.confirm.profile import graph_tensors

    trace = plain.trace
    kernels = set(trace.op_types)
    notes: list[str] = []
    # The optimised run's kernels and the nodes they replaced.
    mapping: dict[str, tuple[str, ...]] = {}
    if optimised_graph is not None:
        mapping = replaced_nodes(
            prepared.nodes, graph_nodes(optimised_graph), graph_tensors(optimised_graph)
        )
    else:
        notes.append("onnxruntime did not save its optimised graph: its kernels are not mapped")
    results = {n.name: n for n in report.nodes}
    optimised_kernels, optimised_share = _optimised_kernels(fused.trace, mapping, results)
    nodes = tuple(
        NodeMeasurement(
            name=n.name,
            op_type=n.op_type,
            measured_s=trace.median(n.name),
            predicted_s=n.timing.predicted_latency_s,
            flops=n.cost.flops,
            bytes_moved=n.cost.bytes_moved,
            compute_time_s=n.timing.compute_time_s,
            memory_time_s=n.timing.memory_time_s,
            optimised_s=optimised_share.get(n.name),
        )
        for n in report.nodes
        if n.name in kernels
    )
    unmapped = tuple(k for k in trace.op_types if k not in results)
    by_name = {n.name: n for n in nodes}
    checks = tuple(
        judge(f, by_name, _optimised_time(f.nodes, optimised_share)) for f in report.findings
    )
    notes += spec_notes(report.hardware)
    if device == "gpu" and not trace.runs:
        notes.append("no per-kernel GPU times in onnxruntime's profile")
    if prepared.weights != "real":
        notes.append(f"weights: {prepared.weights} (external data missing, filled in memory)")
    return Measurement(
        provider=provider,
        device=device,
        hardware=report.hardware.name,
        runs=runs,
        warmup=warmup,
        threads=threads,
        weights=prepared.weights,
        predicted_latency_s=report.summary.predicted_latency_s,
        unoptimised_latency_s=plain.latency_s,
        optimised_latency_s=fused.latency_s,
        measured_nodes_s=trace.median_total(by_name),
        nodes=nodes,
        not_run=tuple(n.name for n in report.nodes if n.name not in kernels),
        unmapped_s=trace.median_total(unmapped),
        unmapped_kernels=unmapped,
        kernels=optimised_kernels,
        findings=checks,
        onnxruntime_version=str(getattr(ort, "__version__", "")),
        runtime=f"onnxruntime {getattr(ort, '__version__', '')}".strip(),
        profiler_floor_s=floor_s,
        notes=tuple(notes),
        kernel_overhead_s=report.hardware.kernel_overhead_s,
        predicted_fused_latency_s=getattr(report.summary, "predicted_latency_fused_s", None),
    )


def _optimised_kernels(
    trace: Trace, mapping: Mapping[str, tuple[str, ...]], results: Mapping[str, Any]
) -> tuple[tuple[OptimisedKernel, ...], dict[str, float]]:
    """The optimised run's kernels (slowest first) and each IR node's share of their time,
    split over the nodes a kernel replaced in proportion to their predicted times."""
    kernels, share = [], {}
    for name, op_type in trace.op_types.items():
        measured = trace.median(name)
        nodes = tuple(n for n in mapping.get(name, ()) if n in results)
        note = ""
        if not nodes and name in results:  # kept its name, but writes a tensor of its own
            nodes = (name,)
        elif name not in mapping:
            note = "not in the saved optimised graph"
        elif not nodes:
            note = "inserted by onnxruntime (no node of the model)"
        kernels.append(OptimisedKernel(name, op_type, measured, nodes, note))
        weights = [results[n].timing.predicted_latency_s for n in nodes]
        total = sum(weights)
        for node, weight in zip(nodes, weights):
            part = weight / total if total else 1 / len(nodes)
            share[node] = share.get(node, 0.0) + measured * part
    kernels.sort(key=lambda k: (-k.measured_s, k.name))
    return tuple(kernels), share


def _optimised_time(names: tuple[str, ...], share: Mapping[str, float]) -> float | None:
    times = [share[n] for n in names if n in share]
    return sum(times) if times else None


def spec_notes(spec: HardwareSpec) -> list[str]:
    """What a measurement says about the spec it checks: whether it was calibrated here."""
    if any(CALIBRATED_MARK in source for source in spec.sources.values()):
        return []
    return [f"the figures of {spec.name} were not measured on this machine (memlint hw "
            "calibrate): errors measure the spec as much as the model"]
