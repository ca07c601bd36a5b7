"""rules/ and templates/ install as memlint.rules and memlint.templates; no top-level `rules`."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_installed_subpackages_import(tmp_path):
    # From outside the checkout (whose root is on sys.path in this process): the installed
    # package maps memlint.rules/templates and exposes no global `rules`.
    code = (
        "import importlib.util, memlint.rules, memlint.templates;"
        "print(importlib.util.find_spec('rules') is None, importlib.util.find_spec('templates') is None)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{result.stderr[-2000:]}")
    (path,) = out.glob("memlint-*.whl")
    return path


def test_wheel_layout(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "memlint/__init__.py",
        "memlint/rules/__init__.py",
        "memlint/templates/__init__.py",
        "memlint/hardware/specs/nvidia.toml",
        "memlint/costs/matmul.py",
        "memlint/frontends/onnx.py",
        "memlint/analysis/structure.py",
        "memlint/confirm/run.py",
        "memlint/fix/apply.py",
        "memlint/report/html.py",
        "memlint/templates/report.html.j2",
    ):
        assert expected in names, expected
    assert not any(n.startswith(("rules/", "templates/", "tests/")) for n in names), sorted(names)[:20]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "memlint = memlint.cli:run" in zipfile.ZipFile(wheel).read(entry_points).decode()
