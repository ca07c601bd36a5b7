"""Shared pytest configuration for memlint's tests."""

from __future__ import annotations

import pytest


def pytest_addoption(parser) -> None:  # noqa: ANN001 - pytest's Parser
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite the golden reports in tests/golden/ from the current output instead of "
        "comparing against them (review the diff before committing).",
    )


@pytest.fixture(autouse=True)
def _no_user_hardware_specs(tmp_path_factory, monkeypatch) -> None:  # noqa: ANN001
    """A developer's saved specs (memlint hw calibrate --save) never reach the tests."""
    monkeypatch.setenv("MEMLINT_HARDWARE_DIR", str(tmp_path_factory.getbasetemp() / "no-user-hw"))
