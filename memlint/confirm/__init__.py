"""Measured confirmation: run a linted model and check the prediction against the run.

    from memlint.confirm import confirm, confirm_torch, measure
    from memlint.hardware.calibrate import calibrate
    measurement = measure(report)                   # the runtime the report's model needs
    measurement = confirm(report, runs=10)          # report from memlint.lint(path, hw=...)
    measurement = confirm_torch(report, module, (x,))  # report from memlint.lint(module, ...)
    calibration = calibrate(seconds_budget=20)      # this machine's spec, and its TOML text

onnxruntime is imported lazily, when a function runs (here and in memlint.hardware.ort, the
instrument this package shares with calibration); torch_run imports torch the same way. With the
frontends, this package is the only one that reads ONNX protos. See docs/confirm.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memlint.confirm.inputs import ConfirmError
from memlint.core.measurement import (
    FindingCheck,
    Measurement,
    NodeMeasurement,
    OptimisedKernel,
    RankCorrelation,
    Verdict,
    rank_correlation,
)

if TYPE_CHECKING:
    from memlint.core.report import Report

__all__ = [
    "ConfirmError",
    "FindingCheck",
    "Measurement",
    "NodeMeasurement",
    "OptimisedKernel",
    "RankCorrelation",
    "Verdict",
    "confirm",
    "confirm_torch",
    "measure",
    "rank_correlation",
]


def confirm(report: Report, **options: Any) -> Measurement:
    """See memlint.confirm.run.confirm."""
    from memlint.confirm.run import confirm as _confirm

    return _confirm(report, **options)


def confirm_torch(report: Report, source: Any, *args: Any, **options: Any) -> Measurement:
    """See memlint.confirm.torch_run.confirm_torch."""
    from memlint.confirm.torch_run import confirm_torch as _confirm_torch

    return _confirm_torch(report, source, *args, **options)


def measure(
    report: Report,
    *,
    torch_source: Any = None,
    runs: int = 10,
    provider: str | None = "auto",
    progress: Callable[[int, int, str], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> Measurement:
    """Measure the model of `report` with the runtime its format needs, and return the run.

    An ONNX model runs in onnxruntime (memlint.confirm.run.confirm); a torch graph (format "fx")
    runs eagerly in torch (memlint.confirm.torch_run.confirm_torch), captured again from
    `torch_source`: what was linted, a .pt2 path or a memlint.frontends.fx.TorchSource (an
    nn.Module with its example inputs). provider: "auto" (the GPU when the runtime reaches one,
    else the CPU), "cpu" or "cuda" ("gpu"); for onnxruntime also a full provider name.

    Before the runs start, `announce` gets one line naming the runtime, the provider or device
    it chose and the spec it checks ("measuring with onnxruntime CPUExecutionProvider (cpu)
    against the cpu spec"); `progress(done, total, phase)` is called after every run. Raises
    ConfirmError (one line) when the run cannot be made: no runtime, a provider it lacks, a
    spec for another kind of device, a torch graph without a source to run.
    """
    say = announce or _silent
    if report.model.format == "fx":
        from memlint.confirm.torch_run import confirm_torch as _confirm_torch
        from memlint.confirm.torch_run import import_torch, select_device

        if torch_source is None:
            raise ConfirmError("measuring a torch graph runs it again: pass what was linted as "
                               "torch_source (a .pt2 path or a TorchSource)")
        torch = import_torch()
        device = select_device(torch, provider)
        say(f"measuring with torch {torch.__version__} eager on {device} against the "
            f"{report.hardware.name} spec")
        return _confirm_torch(report, torch_source, runs=runs, device=device, progress=progress)
    from memlint.confirm.run import confirm as _confirm
    from memlint.confirm.run import select_provider

    chosen, device = select_provider(report, provider)
    say(f"measuring with onnxruntime {chosen} ({device}) against the {report.hardware.name} spec")
    return _confirm(report, runs=runs, provider=chosen, progress=progress)


def _silent(_text: str) -> None:
    return None
