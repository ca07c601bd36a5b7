"""How well memlint's predictions match measured onnxruntime runs on this CPU (figures, not a test).

    python bench/accuracy.py                       # calibrate, export, measure, print the table
    python bench/accuracy.py --hw-file local.toml  # reuse a calibration
    python bench/accuracy.py --models samples      # only the shipped sample models

1. Calibrates this machine (memlint.hardware.calibrate) and lints with that spec.
2. Models: the sample models, plus exports made here with random weights (seed 0) from
   transformers configs through Optimum's main_export: an encoder, BERT-base
   ("feature-extraction", batch 1, sequence 128); a decoder, GPT-2 small
   ("text-generation-with-past"), as one decode step after 1023 tokens (batch 1; issue 24) and
   as a prefill of 128 tokens (the same file, no past); a CNN, ResNet-50 ("image-classification",
   batch 1, 224 x 224). Exports are cached in --workdir. The same BERT-base and GPT-2 (prefill of
   128 tokens) also run as torch modules through confirm_torch (torch eager, op by op; no
   optimised run). `--models issue24` runs the two models of issue 24's target: BERT-base and
   the GPT-2 decode step.
3. For each model: `memlint.confirm.confirm`, then
   - both estimates against the run each one predicts: the as-written estimate (every node a
     kernel: report.summary.predicted_latency_s, with report.summary.kernels) against the run
     with graph optimisations off, and the fused estimate (the kernels a fusing runtime runs:
     report.summary.predicted_latency_fused_s, with kernels_fused) against the run with them on,
     each as (predicted - measured) / measured ("-" where the report has no fused estimate);
   - Spearman's rank correlation of predicted and measured times (memlint.confirm.
     rank_correlation): over single nodes that take at least 1% of the measured node time, which
     is undefined when every such node has the same prediction (BERT-base: only its 24 equal FFN
     MatMuls pass 1%); over single nodes >= 0.1%; and, as the report prints it, over groups >= 1%
     (the same node of identical layers taken as one: names alike but for their numbers, one op
     type, one predicted time);
   - the verdict on every finding, and on ML101 (low-intensity matmul) in particular.

Targets (issue 7): BERT-base total within 30%, rank correlation >= 0.8, ML101 confirmed on the
GPT-2 decode step. Issue 24 (after calibrating per access pattern): total error within 15% on
BERT-base (b1, s128) and on the GPT-2 decode step (b1, past 1023), rank correlation >= 0.9 on
both. The machine should be idle: other processes on a 2-core machine make
multi-threaded onnxruntime runs several times slower at random. So each measurement waits for
the machine to be quiet (other processes under 0.1 cores for 3 s, read from /proc), measures how
many cores other processes used meanwhile, and is repeated (--retries) when that exceeds 0.15;
the table shows the figure of the attempt kept. Each model is measured in --sessions fresh
onnxruntime sessions (default 3) and the table keeps the session of median unoptimised latency:
on the development VM a decode step's KV-cache Transposes took 2.9 to 11.9 ms from one session
to the next (the same within a session), so one session's time is partly luck; every session's
latency and rank correlation are printed under the table.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from memlint.confirm import RankCorrelation, rank_correlation

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
DECODE = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 128}
DECODE_LONG = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 1023}  # issue 24
PREFILL = {"batch_size": 1, "sequence_length": 128, "past_sequence_length": 0}
ENCODE = {"batch_size": 1, "sequence_length": 128}
IMAGE = {"batch_size": 1, "num_channels": 3, "height": 224, "width": 224}


def models(which: str, workdir: Path) -> list[tuple[str, Path, dict[str, int]]]:
    chosen = []
    if which in ("all", "samples"):
        chosen += [
            ("sample gpt2 decode", SAMPLES / "gpt2_decoder_step.onnx", DECODE),
            ("sample bert s128", SAMPLES / "bert_encoder.onnx", ENCODE),
            ("sample cnn", SAMPLES / "small_cnn.onnx", {"batch_size": 1}),
        ]
    if which in ("all", "exports", "bert", "issue24"):
        chosen.append(("BERT-base s128", export_bert(workdir), ENCODE))
    if which in ("all", "exports", "gpt2", "issue24"):
        chosen.append(("GPT-2 decode p1023", export_gpt2(workdir), DECODE_LONG))
    if which in ("all", "exports", "gpt2"):
        chosen.append(("GPT-2 prefill s128", export_gpt2(workdir), PREFILL))
    if which in ("all", "exports", "cnn"):
        chosen.append(("ResNet-50 224", export_resnet(workdir), IMAGE))
    return chosen


def torch_models(which: str, workdir: Path) -> list[tuple[str, Any]]:
    """(label, make) for the torch runs: make() -> (module, example inputs), the same random
    weights as the ONNX exports (their saved transformers folders), measured by confirm_torch."""
    if which not in ("all", "torch"):
        return []

    def loader(export: Any, folder: str, vocab: int, **options: Any) -> Any:
        def make() -> tuple[Any, tuple]:
            import torch
            from transformers import AutoModel, AutoModelForCausalLM

            export(workdir)  # saves the transformers folder too
            auto = AutoModelForCausalLM if folder == "gpt2-hf" else AutoModel
            model = auto.from_pretrained(workdir / folder, **options).eval()
            ids = torch.randint(0, vocab, (1, 128), generator=torch.Generator().manual_seed(0))
            return model, (ids,)
        return make

    return [("torch BERT-base s128", loader(export_bert, "bert-base-hf", 30000)),
            ("torch GPT-2 prefill", loader(export_gpt2, "gpt2-hf", 50000, use_cache=False))]


def export_bert(workdir: Path) -> Path:
    return _export_once(workdir, "bert-base", ("BertModel", "BertConfig"), "feature-extraction")


def export_gpt2(workdir: Path) -> Path:
    return _export_once(workdir, "gpt2", ("GPT2LMHeadModel", "GPT2Config"),
                        "text-generation-with-past")


def export_resnet(workdir: Path) -> Path:
    return _export_once(workdir, "resnet-50", ("ResNetForImageClassification", "ResNetConfig"),
                        "image-classification")


def _export_once(workdir: Path, name: str, classes: tuple[str, str], task: str) -> Path:
    """workdir/<name>-onnx/model.onnx, exported from transformers' (model, config) classes with
    seed-0 weights (saved in <name>-hf) unless it is there already."""
    out = workdir / f"{name}-onnx" / "model.onnx"
    if not out.exists():
        import torch
        import transformers

        torch.manual_seed(0)
        hf = workdir / f"{name}-hf"
        model, config = (getattr(transformers, c) for c in classes)
        model(config()).save_pretrained(hf)
        _export(hf, out.parent, task)
    return out


def _export(source: Path, output: Path, task: str) -> None:
    from optimum.exporters.onnx import main_export

    print(f"exporting {source.name} ({task}) ...", flush=True)
    main_export(str(source), output=str(output), task=task, do_validation=False)


# --- statistics -----------------------------------------------------------------------------


def correlations(measurement) -> dict[str, RankCorrelation]:
    """Spearman over single nodes >= 1% and >= 0.1%, and over groups >= 1% (the report's)."""
    return {
        "1%": rank_correlation(measurement.nodes, 0.01, grouped=False),
        "0.1%": rank_correlation(measurement.nodes, 0.001, grouped=False),
        "groups 1%": measurement.rank_correlation,
    }


# --- other processes ------------------------------------------------------------------------


def _busy_ticks() -> tuple[int, int]:
    """(busy clock ticks of the whole machine, ticks of this process) from /proc."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait
    with open("/proc/self/stat", encoding="ascii") as handle:
        own = handle.read().rsplit(")", 1)[1].split()
    return busy, int(own[11]) + int(own[12])  # utime + stime, every thread


class Others:
    """How busy other processes keep the CPUs, in cores (Linux /proc; 0 elsewhere)."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = Path("/proc/stat").exists()

    def during(self, seconds: float) -> float:
        start, wall = self._sample(), time.perf_counter()
        time.sleep(seconds)
        return self._since(start, wall)

    def wait(self, limit_s: float, threshold: float = 0.1) -> float:
        """Wait (up to limit_s) until others use < threshold cores over 3 s; the last reading."""
        deadline, reading = time.perf_counter() + limit_s, 0.0
        while self.available:
            reading = self.during(3.0)
            if reading < threshold or time.perf_counter() > deadline:
                break
        return reading

    def _sample(self) -> tuple[int, int]:
        return _busy_ticks() if self.available else (0, 0)

    def _since(self, start: tuple[int, int], wall: float) -> float:
        if not self.available:
            return 0.0
        busy, own = self._sample()
        seconds = max(time.perf_counter() - wall, 1e-9)
        return max((busy - start[0]) - (own - start[1]), 0) / self.tick / seconds

    def measure(self, run):  # noqa: ANN001, ANN201 - any callable, its result
        start, wall = self._sample(), time.perf_counter()
        result = run()
        return result, self._since(start, wall)


def quietly(others: Others, run, retries: int, wait_s: float, label: str):  # noqa: ANN001, ANN201
    """Run when the machine is quiet; retry while other processes took > 0.15 cores meanwhile.
    The attempt disturbed least, and how many cores others used during it."""
    best = None
    for attempt in range(1 + retries):
        others.wait(wait_s)
        result, busy = others.measure(run)
        if best is None or busy < best[1]:
            best = (result, busy)
        if busy <= 0.15:
            break
        print(f"  {label}: other processes used {busy:.2f} cores during attempt {attempt + 1}",
              flush=True)
    return best


# --- the run --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw-file", type=Path, help="a calibrated spec to use (skips calibrating)")
    parser.add_argument("--budget", type=float, default=20.0, help="calibration seconds")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads")
    parser.add_argument("--models", default="all",
                        choices=("all", "samples", "exports", "bert", "gpt2", "cnn", "torch",
                                 "issue24"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/memlint-accuracy"))
    parser.add_argument("--verbose", action="store_true", help="print every finding's verdict")
    parser.add_argument("--retries", type=int, default=3,
                        help="re-measure a model while other processes disturb it")
    parser.add_argument("--wait", type=float, default=300.0,
                        help="seconds to wait for a quiet machine before each measurement")
    parser.add_argument("--sessions", type=int, default=3,
                        help="fresh onnxruntime sessions per model; the one of median "
                             "unoptimised latency is kept")
    args = parser.parse_args(argv)

    import memlint
    from memlint.confirm import confirm, confirm_torch

    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs (an idle machine reads near 0)")
    others = Others()
    hw_file = args.hw_file
    if hw_file is None:
        from memlint.hardware.calibrate import calibrate

        start = time.perf_counter()
        result, busy = quietly(others, lambda: calibrate(
            seconds_budget=args.budget, threads=args.threads,
            date=datetime.date.today().isoformat()), args.retries, args.wait, "calibration")
        hw_file = args.workdir / "local.toml"
        hw_file.write_text(result.toml, encoding="utf-8")
        print(f"calibrated in {time.perf_counter() - start:.1f} s -> {hw_file} "
              f"(other processes: {busy:.2f} cores)")
        for figure in result.figures:
            print(f"  {figure.field:<22} {figure.value:>9.4g} {figure.unit}")

    jobs = []
    for label, path, dims in models(args.models, args.workdir):
        report = memlint.lint(path, hw="local", hw_files=[hw_file], dims=dims)
        jobs.append((label, report, lambda report=report: confirm(
            report, runs=args.runs, warmup=args.warmup, threads=args.threads)))
    for label, make in torch_models(args.models, args.workdir):
        module, inputs = make()
        report = memlint.lint(module, example_inputs=inputs, hw="local", hw_files=[hw_file])
        jobs.append((label, report, lambda r=report, m=module, i=inputs: confirm_torch(
            r, m, i, runs=args.runs, warmup=args.warmup)))
    rows, spreads = [], []
    for label, report, measure in jobs:
        probe = bandwidth_now()
        sessions = sorted((quietly(others, measure, args.retries, args.wait, label)
                           for _ in range(max(args.sessions, 1))),
                          key=lambda kept: kept[0].unoptimised_latency_s)
        measured, busy = sessions[(len(sessions) - 1) // 2]  # the median (the lower of two)
        latencies = " / ".join(_ms(m.unoptimised_latency_s).strip() for m, _ in sessions)
        ranks = " / ".join(_rho(correlations(m)["groups 1%"]).split("(")[0].strip()
                           for m, _ in sessions)
        spreads.append(f"  {label:<20} unopt {latencies}; rho groups {ranks}; memory "
                       f"bandwidth before/after: {probe:.1f} / {bandwidth_now():.1f} GB/s")
        verdicts = Counter(c.verdict.value for c in measured.findings)
        ml101 = Counter(c.verdict.value for c in measured.findings if c.code == "ML101")
        rows.append((label, report.summary, measured, correlations(measured), verdicts, ml101,
                     busy))
        if args.verbose:
            for check in measured.findings:
                print(f"  {label}: {check.code} {check.verdict.value}: {check.reason}")

    print()
    header = (f"{'model':<20} {'kernels':>7} {'written':>10} {'unopt':>10} {'err':>7} "
              f"{'fused k':>7} {'fused':>10} {'opt':>10} {'err':>7} {'err w/opt':>9} "
              f"{'rho>=1%':>12} {'rho>=0.1%':>12} {'rho groups':>12} {'others':>6}  "
              "findings / ML101")
    print(header)
    print("-" * len(header))
    for label, summary, m, rho, verdicts, ml101, busy in rows:
        fused = getattr(summary, "predicted_latency_fused_s", None)  # None: not in this report
        fused_error = (None if fused is None or m.optimised_latency_s is None
                       else (fused - m.optimised_latency_s) / m.optimised_latency_s)
        print(
            f"{label:<20} {_count(getattr(summary, 'kernels', None))} "
            f"{_ms(m.predicted_latency_s)} {_ms(m.unoptimised_latency_s)} {_pct(m.total_error)} "
            f"{_count(getattr(summary, 'kernels_fused', None))} {_ms(fused)} "
            f"{_ms(m.optimised_latency_s)} {_pct(fused_error)} {_pct(m.optimised_error):>9} "
            f"{_rho(rho['1%'])} {_rho(rho['0.1%'])} {_rho(rho['groups 1%'])} {busy:6.2f}  "
            f"{_verdicts(verdicts)} / {_verdicts(ml101) or '-'}"
        )
    print()
    print(f"{args.sessions} fresh onnxruntime sessions per model, fastest first (the table "
          "keeps the median), and the Add bandwidth of the calibration measured again right "
          "before and after them (a drift from the calibrated memory_bandwidth moves every "
          "memory-bound prediction with it):")
    print("\n".join(spreads))
    print()
    print("kernels / written: memlint's as-written estimate (every node that runs a kernel) and "
          "its kernel count, against unopt, the measured median latency with onnxruntime's "
          "graph optimisations off; fused k / fused: the fused estimate (the kernels a fusing "
          "runtime runs) against opt, the run with them on ('-': the report has no fused "
          "estimate); err = (predicted - measured) / measured; err w/opt: the as-written "
          "estimate against the optimised run; rho: Spearman (as-written node predictions "
          "against the unoptimised run's nodes) over nodes >= 1% / >= 0.1% of the measured node "
          "time, and over groups >= 1% (the same node of identical layers taken as one, as the "
          "report does); '-' undefined (no spread); others: CPU cores other processes used "
          "while the model was measured. Verdicts: c confirmed, n not confirmed, m not measured.")
    return 0


def bandwidth_now() -> float:
    """GB/s of the calibration's Add (two 128 MiB float32 arrays, 12 B per element over the
    lower-quartile kernel time), measured now in about a second."""
    from memlint.hardware.calibrate import _add_feeds, _add_model, _ort_kernel_times, fast
    from memlint.hardware.ort import import_onnxruntime

    elements = 2**25
    times = _ort_kernel_times(import_onnxruntime(), _add_model(elements), _add_feeds(elements),
                              "add", 1.0, 0)
    return 12 * elements / fast(times) / 1e9


def _ms(seconds: float | None) -> str:
    return "         -" if seconds is None else f"{seconds * 1e3:8.2f}ms"


def _count(kernels: int | None) -> str:
    return f"{'-' if kernels is None else kernels:>7}"


def _pct(fraction: float | None) -> str:
    if fraction is None:
        return "      -"
    return f"{100 * fraction:+6.0f}%" if math.isfinite(fraction) else "    inf"


def _rho(rank: RankCorrelation) -> str:
    return f"{'-' if rank.rho is None else f'{rank.rho:.2f}':>5} ({rank.groups:>3})"


def _verdicts(counts: Counter) -> str:
    short = {"confirmed": "c", "not confirmed": "n", "not measured": "m"}
    return " ".join(f"{counts[k]}{v}" for k, v in short.items() if counts[k])


if __name__ == "__main__":
    sys.exit(main())
