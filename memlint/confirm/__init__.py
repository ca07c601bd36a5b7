"""Measured confirmation: run a linted ONNX model with onnxruntime and check the prediction.

    from memlint.confirm import confirm
    from memlint.hardware.calibrate import calibrate
    measurement = confirm(report, runs=10)          # report from memlint.lint(path, hw=...)
    measurement = confirm_torch(report, module, (x,))  # report from memlint.lint(module, ...)
    calibration = calibrate(seconds_budget=20)      # this machine's spec, and its TOML text

This package is the only part of memlint that imports onnxruntime (lazily, when a function runs),
and, with the frontends, the only one that reads ONNX protos; torch_run imports torch the same
way. See docs/confirm.md.
"""

from __future__ import annotations

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
