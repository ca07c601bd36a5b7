"""Rule plugins: the shipped example plugin installed for real, and broken plugins (load
failure, reserved prefix, no rules, a rule that raises) that must stop the run with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from clitools import MEMLINT, pip_install  # pytest puts tests/ on sys.path

from memlint import engine
from memlint.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "memlint-plugin-example"
DECODER = ROOT / "sample_models" / "gpt2_decoder_step.onnx"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """pip-install the example plugin into its own folder (not into the test environment)."""
    return pip_install(EXAMPLE, tmp_path_factory.mktemp("plugin"))


def _run(target: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target), "NO_COLOR": "1"}
    return subprocess.run([*MEMLINT, *argv], capture_output=True, text=True, env=env)


def test_installed_example_plugin_is_listed_documented_and_runs(installed_example, tmp_path):
    listing = _run(installed_example, "rules")
    assert listing.returncode == 0, listing.stderr
    assert "XM001" in listing.stdout and "example (memlint_example_rules)" in listing.stdout
    doc = _run(installed_example, "rule", "XM001")
    assert doc.stdout.startswith("# float64-arithmetic (XM001)")
    assert "From: example (memlint_example_rules)." in doc.stdout

    # A float64 model: [1024, 1024] Relu reads and writes 8 MiB each = 16.8 MB at 2.039 TB/s
    # on an A100 = 8.23 us; float32 halves it (4.11 us saved).
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu64")], "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1024, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1024, 1024])],
    )
    model = tmp_path / "f64.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    result = _run(installed_example, str(model), "--select", "XM", "--format", "json", "--isolated")
    assert result.returncode == 1, result.stderr  # a warning fails the default --fail-on
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["code"] == "XM001" and finding["nodes"] == ["relu64"]
    assert finding["saving_s"] == pytest.approx(2 * 8 * 2**20 / 2.039e12 / 2, rel=1e-3)


def _with_entry_points(monkeypatch, *values: str) -> None:
    eps = [EntryPoint(name=f"p{i}", value=v, group=engine.ENTRY_POINT_GROUP)
           for i, v in enumerate(values)]
    monkeypatch.setattr(engine, "entry_points", lambda group: eps)
    engine.load_rules.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_registry():
    engine.load_rules.cache_clear()
    yield
    engine.load_rules.cache_clear()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("no_such_module_xyz", "rule plugin p0 (no_such_module_xyz) failed to load: "
                               "ModuleNotFoundError"),
        ("tests.plugins.broken_plugins:ReservedPrefix",
         "code ML777 uses the prefix 'ML', which is reserved"),
        ("tests.plugins.broken_plugins:NOT_A_RULE", "provides no memlint Rule classes"),
    ],
)
def test_broken_plugins_exit_2_naming_the_plugin(monkeypatch, capsys, installed_example, value,
                                                  problem):
    monkeypatch.syspath_prepend(str(installed_example))
    _with_entry_points(monkeypatch, value)
    assert main(["rules"]) == 2
    err = capsys.readouterr().err
    assert problem in err and len(err.strip().splitlines()) == 1


def test_a_plugin_rule_that_raises_exits_2_naming_rule_and_node(monkeypatch, capsys,
                                                                installed_example):
    monkeypatch.syspath_prepend(str(installed_example))
    _with_entry_points(monkeypatch, "tests.plugins.broken_plugins:Crashes")
    assert main([str(DECODER), "--isolated"]) == 2
    err = capsys.readouterr().err
    assert "rule ZZ001 (crashes-on-matmul) crashed on node" in err
    assert "KeyError" in err and len(err.strip().splitlines()) == 1


def test_two_plugins_with_one_code_collide(monkeypatch, capsys, installed_example):
    monkeypatch.syspath_prepend(str(installed_example))
    _with_entry_points(monkeypatch, "memlint_example_rules", "memlint_example_rules:Float64Arithmetic")
    assert main(["rules"]) == 2
    assert "rule code XM001 is registered twice" in capsys.readouterr().err
