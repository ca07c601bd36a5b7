"""Shared pytest configuration for memlint's tests."""

from __future__ import annotations


def pytest_addoption(parser) -> None:  # noqa: ANN001 - pytest's Parser
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite the golden reports in tests/golden/ from the current output instead of "
        "comparing against them (review the diff before committing).",
    )
