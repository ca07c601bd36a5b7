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


def optimum_export(root: Path, models: dict) -> dict[str, Path]:
    """{name: export folder} for {name: (transformers model, optimum task)}: each model saved
    under root/<name>-hf and exported by optimum's main_export (no hub: local files only) to
    root/<name>-onnx. Exporters' tracer warnings are silenced."""
    import warnings

    from optimum.exporters.onnx import main_export

    folders = {}
    for name, (model, task) in models.items():
        model.save_pretrained(root / f"{name}-hf")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main_export(str(root / f"{name}-hf"), output=root / f"{name}-onnx", task=task,
                        local_files_only=True)
        folders[name] = root / f"{name}-onnx"
    return folders
