"""What tests that run memlint as a user does share: the console script, and installing an
example plugin into a folder of its own (never into the test environment)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(sys.executable).with_name("memlint")
MEMLINT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "memlint.cli"]


def pip_install(package: Path, target: Path) -> Path:
    """pip-install `package` (no dependencies) into `target`; put `target` on PYTHONPATH to
    use it. Fails the test with pip's error when the install fails."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(package)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"pip install of {package.name} failed:\n{result.stderr[-2000:]}")
    return target
