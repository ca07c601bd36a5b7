"""Number formatting: the prefix follows the rounded figure, so nothing prints as "1e+03"."""

from __future__ import annotations

import pytest

from memlint import units


@pytest.mark.parametrize(("value", "text"), [
    (0, "0 s"), (2e-6, "2 us"), (1e-6, "1 us"), (5e-10, "0.5 ns"), (1.5, "1.5 s"),
    # just under a unit boundary: 3 significant digits round up to the next unit
    (9.9996e-7, "1 us"), (0.99996e-3, "1 ms"), (0.99996, "1 s"), (-2e-3, "-2 ms"),
])
def test_seconds(value, text):
    assert units.seconds(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (0.5, "0.5 B"), (1234, "1.23 kB"), (-2500, "-2.5 kB"), (1.5e9, "1.5 GB"),
    (999.96, "1 kB"), (999_999.6, "1 MB"), (1e9 - 1, "1 GB"),
])
def test_si(value, text):
    assert units.si(value, "B") == text
