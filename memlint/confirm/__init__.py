"""Measured confirmation: run a linted ONNX model with onnxruntime and check the prediction.

    from memlint.confirm import confirm
    from memlint.confirm.calibrate import calibrate
    measurement = confirm(report, runs=10)          # report from memlint.lint(path, hw=...)
    calibration = calibrate(seconds_budget=20)      # this machine's spec, and its TOML text

This package is the only part of memlint that imports onnxruntime (lazily, when a function runs),
and, with the frontends, the only one that reads ONNX protos. See docs/confirm.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memlint.confirm.inputs import ConfirmError
from memlint.confirm.model import (
    FindingCheck,
    Measurement,
    NodeMeasurement,
    OptimisedKernel,
    RankCorrelation,
    Verdict,
    rank_correlation,
)

if TYPE_CHECKING:
    from memlint.report.model import Report

__all__ = [
    "ConfirmError",
    "FindingCheck",
    "Measurement",
    "NodeMeasurement",
    "OptimisedKernel",
    "RankCorrelation",
    "Verdict",
    "confirm",
    "rank_correlation",
]


def confirm(report: Report, **options: Any) -> Measurement:
    """See memlint.confirm.run.confirm."""
    from memlint.confirm.run import confirm as _confirm

    return _confirm(report, **options)
