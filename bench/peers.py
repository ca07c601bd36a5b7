"""memlint next to the tools users run today, on the same models in the same run (figures, not a
test): onnx-tool's profiler and Polygraphy's `inspect model`.

    python bench/peers.py                          # the three default models, once each
    python bench/peers.py --repeat 3 --cap-gb 8 --timeout 600
    python bench/peers.py --model m.onnx --dim batch_size=1 --dim past_sequence_length=128

Peers are optional bench dependencies (pip install onnx-tool polygraphy); a missing one is
skipped with a note. Every run is a fresh process started from this small parent, under an
address-space cap (--cap-gb, RLIMIT_AS) and a wall-clock limit (--timeout), so a tool that loads
138 GB of weights fails fast instead of taking the machine down; its peak RSS is the child's own
(os.wait4). Each row prints the time and peak-RSS ratios to memlint's and, for a tool that
failed, the last line it printed. What each tool does (see shared/reference/pitfalls.md):

- memlint: `memlint MODEL --hw h100 --dim ... --fail-on never` (graph only; weights never read).
- onnx-tool: `onnx_tool.model_profile(MODEL, dynamic_shapes=...)`, its documented entry point:
  loads every weight, infers shapes with numpy, prints a per-node MACs / memory table.
- polygraphy: `polygraphy inspect model MODEL --show layers --shape-inference`: loads the model
  (with its external data unless --ignore-external-data), runs onnxruntime's symbolic shape
  inference and prints every layer; it takes no input shapes, so dims stay symbolic.
  Where the model has external data, a second row adds --ignore-external-data and a third also
  drops --shape-inference (a layer list without intermediate shapes: not the same job).

Default models: sample_models/gpt2_decoder_step.onnx (2 layers, 3 MB), GPT-2 small with
embedded weights (sample_models/build.py, ~650 MB, built here) and the 80-layer 70B-shaped
decoder of bench/scale.py (weights in a 138 GB sparse file, built here).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import scale  # noqa: E402  (bench/scale.py: the 70B builder and the memlint command)

DECODE = {"batch_size": 1, "sequence_length": 1}

ONNX_TOOL_CHILD = """
import json, sys
import numpy as np
import onnx_tool
spec = json.loads(sys.argv[2])
inputs = {}
for name, (dtype, shape) in spec.items():
    make = np.ones if np.dtype(dtype).kind in "iub" else np.zeros  # zeros: no pages touched
    inputs[name] = make(shape, dtype=dtype)
onnx_tool.model_profile(sys.argv[1], dynamic_shapes=inputs, save_profile=sys.argv[3])
"""

INPUTS_CHILD = """
import json, sys
import onnx
from onnx import helper
from memlint.dims import DimBinder
model = onnx.load(sys.argv[1], load_external_data=False)
binder = DimBinder(json.loads(sys.argv[2]))
inits = {i.name for i in model.graph.initializer}
external = any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer)
spec = {}
for value in model.graph.input:
    if value.name in inits:
        continue
    tensor = value.type.tensor_type
    shape = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value"):
            shape.append(d.dim_value)
        else:  # a name, or an expression of names ("past_sequence_length + sequence_length")
            shape.append(binder.value_of(d.dim_param))
    spec[value.name] = (str(helper.tensor_dtype_to_np_dtype(tensor.elem_type)), shape)
print(json.dumps({"inputs": spec, "external": external}))
"""


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def capped(cap_bytes: int):  # -> Callable[[], None]
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    return limit


def run_capped(argv: list[str], cap_bytes: int, timeout_s: float,
               done: Callable[[str], bool]) -> dict:
    """Wall seconds, peak RSS (MB) and outcome of argv under the caps; `done(output)` tells
    whether the tool did its job (some exit 0 after printing an error)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=capped(cap_bytes), cwd=tempfile.gettempdir())
        deadline = start + timeout_s
        status = usage = None
        while time.perf_counter() < deadline:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        else:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        rc = os.waitstatus_to_exitcode(status)
        proc.returncode = rc
        out.seek(0)
        text = out.read().decode(errors="replace")
    timed_out = seconds >= timeout_s
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    why = ""
    if timed_out:
        why = f"killed after {timeout_s:.0f} s"
    elif rc not in (0, 1) or not done(text):
        last = (lines[-1] if lines else "no output")[:140]
        why = f"exit {rc}: {last}" if rc >= 0 else f"{signal.Signals(-rc).name}: {last}"
        if usage.ru_maxrss * 1024 > 0.75 * cap_bytes or "MemoryError" in text:
            why += f" (out of memory at the {cap_bytes / 2**30:g} GB address-space cap)"
    return {"seconds": seconds, "rss_mb": usage.ru_maxrss / 1024, "ok": not why, "why": why}


def model_inputs(path: Path, dims: dict[str, int]) -> dict:
    out = subprocess.run([sys.executable, "-c", INPUTS_CHILD, str(path), json.dumps(dims)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


Check = Callable[[str], bool]


def commands(path: Path, dims: dict[str, int], work: Path) -> list[tuple[str, list[str], Check]]:
    """(tool, argv, did-it-work) per tool; argv is [] and the check's doc the reason for a tool
    that is skipped."""
    info = model_inputs(path, dims)
    memlint = scale.memlint_command() + [str(path), "--hw", "h100", "--fail-on", "never"]
    for name, value in dims.items():
        memlint += ["--dim", f"{name}={value}"]
    rows: list[tuple[str, list[str], Check]] = [
        ("memlint", memlint, lambda out: "predicted latency" in out)
    ]
    if available("onnx_tool"):
        profile = work / "onnx_tool_profile.txt"

        def profiled(out: str) -> bool:  # the per-node table was written, with its total row
            written = profile.exists() and "Total" in profile.read_text(errors="replace")
            profile.unlink(missing_ok=True)
            return written

        rows.append(("onnx-tool", [sys.executable, "-c", ONNX_TOOL_CHILD, str(path),
                                   json.dumps(info["inputs"]), str(profile)], profiled))
    else:
        rows.append(("onnx-tool", [], skipped("not installed (pip install onnx-tool)")))
    polygraphy = shutil.which("polygraphy", path=str(Path(sys.executable).parent))
    if polygraphy and available("polygraphy"):
        base = [polygraphy, "inspect", "model", str(path), "--show", "layers", "--shape-inference"]
        inspected = lambda out: "==== ONNX Model ====" in out  # noqa: E731
        rows.append(("polygraphy", base, inspected))
        if info["external"]:
            rows.append(("polygraphy --ignore-external-data", base + ["--ignore-external-data"],
                         inspected))
            listing = [a for a in base if a != "--shape-inference"] + ["--ignore-external-data"]
            rows.append(("polygraphy (same, no shape inference)", listing, inspected))
    else:
        rows.append(("polygraphy", [], skipped("not installed (pip install polygraphy)")))
    return rows


def skipped(reason: str) -> Check:
    def check(out: str) -> bool:
        return False

    check.__doc__ = f"skipped: {reason}"
    return check


def compare(label: str, path: Path, dims: dict[str, int], args: argparse.Namespace,
            work: Path) -> None:
    size = path.stat().st_size
    data = sum(p.stat().st_size for p in path.parent.glob("*.onnx_data"))
    print(f"\n{label}: {path.name} {size / 1e6:,.1f} MB"
          + (f" + {data / 1e9:,.0f} GB external data" if data else "")
          + f"; dims {', '.join(f'{k}={v}' for k, v in dims.items()) or 'none'}")
    cap = int(args.cap_gb * 2**30)
    results: dict[str, dict] = {}
    for tool, argv, done in commands(path, dims, work):
        if not argv:
            print(f"  {tool:38s} {done.__doc__}")
            continue
        runs = [run_capped(argv, cap, args.timeout, done) for _ in range(args.repeat)]
        good = [r for r in runs if r["ok"]]
        pick = good or runs
        results[tool] = {
            "seconds": statistics.median(r["seconds"] for r in pick),
            "rss_mb": max(r["rss_mb"] for r in pick),
            "ok": bool(good), "why": "" if good else runs[-1]["why"],
        }
    base = results.get("memlint")
    for tool, r in results.items():
        ratio = ""
        if base and base["ok"] and tool != "memlint":
            ratio = (f"  {r['seconds'] / base['seconds']:6.1f}x time "
                     f"{r['rss_mb'] / base['rss_mb']:6.1f}x RSS")
        state = "ok    " if r["ok"] else "FAILED"
        print(f"  {tool:38s} {state} {r['seconds']:7.2f} s {r['rss_mb']:8.0f} MB{ratio}"
              + (f"\n  {'':38s} {r['why']}" if r["why"] else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="compare on this model instead")
    parser.add_argument("--dim", action="append", default=[], help="NAME=VALUE for --model")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cap-gb", type=float, default=8.0, help="address-space cap per run")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--layers", type=int, default=80, help="layers of the 70B-shaped model")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; each run capped at {args.cap_gb:g} GB of address "
          f"space and {args.timeout:.0f} s; median of {args.repeat}")
    with tempfile.TemporaryDirectory(prefix="memlint-peers-") as tmp:
        work = Path(tmp)
        if args.model:
            dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
            compare("model", args.model.resolve(), dims, args, work)
            return 0
        compare("sample GPT-2 decode step (2 layers, fp32, embedded)",
                ROOT / "sample_models/gpt2_decoder_step.onnx",
                {**DECODE, "past_sequence_length": 128}, args, work)
        compare("GPT-2 small (12 layers, fp32, embedded)", scale.build_gpt2_small(work),
                {**DECODE, "past_sequence_length": 128}, args, work)
        built = scale.build_in_child(work / "llama70b", args.layers)
        compare(f"Llama-2-70B-shaped decode step ({args.layers} layers, fp16, external)",
                Path(built["path"]), {**DECODE, "past_sequence_length": 4095}, args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
