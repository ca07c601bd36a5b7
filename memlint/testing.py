"""Helpers for asserting on models inside your own tests.

    from memlint.testing import assert_memory_clean

    def test_decoder_ships():
        assert_memory_clean("exports/decoder.onnx", hw="h100",
                            dims={"batch_size": 8, "sequence_length": 1,
                                  "past_sequence_length": 2047},
                            ignore=("ML106",))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

from memlint.config import Config


def assert_memory_clean(
    model: str | os.PathLike[str],
    *,
    hw: str = "a100",
    dims: Mapping[str, int] | None = None,
    select: Sequence[str] = ("ALL",),
    ignore: Sequence[str] = (),
    fail_on: str = "warning",
    config: Config | None = None,
):  # -> memlint.core.report.Report
    """Lint `model` and raise AssertionError (with the text report) when a finding is at least
    `fail_on`; return the Report otherwise (for further asserts on its numbers)."""
    from memlint.api import lint
    from memlint.report.text import render
    from memlint.runner import fails

    config = dataclasses.replace(config or Config(), select=tuple(select),
                                 ignore=tuple(ignore))
    report = lint(model, hw=hw, dims=dims, config=config)
    if fails(report.findings, fail_on):
        raise AssertionError(f"memlint findings at or above {fail_on}:\n{render(report, verbose=True)}")
    return report
