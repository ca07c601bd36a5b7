"""Cost plugins (the `memlint.costs` entry point group): the shipped example installed for real
and linted through memlint.lint and the CLI, and broken plugins that must stop the run with exit
2 and a one-line error naming the plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import onnx
import pytest
from clitools import MEMLINT, pip_install  # pytest puts tests/ on sys.path
from onnx import TensorProto, helper, numpy_helper

import memlint
from memlint.cli import main
from memlint.costs import CostPluginError, CostStatus, op_info, plugins, registry

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "memlint-cost-plugin-example"
EXAMPLE_PLUGIN = "example (memlint_example_costs)"

# FusedScaleBias on x, y float32 [2, 1024], scale and bias float32 [1024] (weights): 2 FLOPs per
# output element = 4,096; reads x 8,192 B (activations) + scale, bias 8,192 B (weights) = 16,384;
# writes y 8,192 B.
FLOPS, READ_ACTIVATIONS, READ_WEIGHTS, WRITTEN = 4096, 8192, 8192, 8192


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """pip-install the example plugin into its own folder (not into the test environment)."""
    return pip_install(EXAMPLE, tmp_path_factory.mktemp("cost-plugin"))


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """A copy of the op table and no plugin loaded yet; both restored after the test."""
    monkeypatch.setattr(registry, "_TABLE", dict(registry._TABLE))
    monkeypatch.setattr(registry, "_PLUGINS", registry._Plugins())
    yield
    sys.modules.pop("memlint_example_costs", None)  # its import registers: import it afresh


def _with_entry_points(monkeypatch, *values: str) -> None:
    eps = [EntryPoint(name=f"p{i}", value=v, group=plugins.ENTRY_POINT_GROUP)
           for i, v in enumerate(values)]
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps)


def _model(path: Path) -> Path:
    """y = com.example::FusedScaleBias(x, scale, bias). The model carries the op as a local
    function (Mul, Add) so that onnx's shape inference knows y's shape; memlint costs the node
    as the op it is."""
    f32, domain = TensorProto.FLOAT, "com.example"
    function = helper.make_function(
        domain, "FusedScaleBias", ["x", "scale", "bias"], ["y"],
        [helper.make_node("Mul", ["x", "scale"], ["t"]),
         helper.make_node("Add", ["t", "bias"], ["y"])],
        opset_imports=[helper.make_opsetid("", 17)],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("FusedScaleBias", ["x", "scale", "bias"], ["y"], name="fsb",
                          domain=domain)],
        "g",
        [helper.make_tensor_value_info("x", f32, [2, 1024])],
        [helper.make_tensor_value_info("y", f32, [2, 1024])],
        initializer=[numpy_helper.from_array(np.ones(1024, np.float32), name)
                     for name in ("scale", "bias")],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, functions=[function]), path)
    return path


def test_installed_example_plugin_costs_its_op(monkeypatch, installed_example, tmp_path):
    monkeypatch.syspath_prepend(str(installed_example))  # found by importlib.metadata
    report = memlint.lint(_model(tmp_path / "fsb.onnx"), hw="a100")
    (node,) = report.nodes
    assert node.cost.status is CostStatus.MODELLED
    assert node.cost.flops == FLOPS
    assert node.cost.bytes_read.activations == READ_ACTIVATIONS
    assert node.cost.bytes_read.weights == READ_WEIGHTS
    assert node.cost.bytes_written.total == WRITTEN
    assert report.coverage.nodes_modelled == report.coverage.nodes_total == 1
    assert not report.coverage.unmodelled_ops
    info = op_info("com.example", "FusedScaleBias")
    assert info.family == "elementwise" and info.elementwise
    assert registry._TABLE[("com.example", "FusedScaleBias")].origin == EXAMPLE_PLUGIN


def test_without_the_plugin_the_op_is_unmodelled(monkeypatch, tmp_path):
    _with_entry_points(monkeypatch)
    report = memlint.lint(_model(tmp_path / "fsb.onnx"), hw="a100")
    assert report.nodes[0].cost.status is CostStatus.UNMODELLED
    assert op_info("com.example", "FusedScaleBias") is None


def test_installed_example_plugin_through_the_cli(installed_example, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed_example), "NO_COLOR": "1"}
    model = _model(tmp_path / "fsb.onnx")
    result = subprocess.run([*MEMLINT, str(model), "--format", "json", "--isolated"],
                            capture_output=True, text=True, env=env, check=False)
    assert result.returncode in (0, 1), result.stderr
    (node,) = json.loads(result.stdout)["nodes"]
    assert (node["domain"], node["op_type"], node["status"]) == (
        "com.example", "FusedScaleBias", "modelled"
    )
    assert (node["flops"], node["bytes_read"], node["bytes_written"]) == (
        FLOPS, READ_ACTIVATIONS + READ_WEIGHTS, WRITTEN
    )


def test_a_callable_plugin_registers_formulas_and_facts(monkeypatch):
    _with_entry_points(monkeypatch, "tests.plugins.broken_cost_plugins:good")
    assert op_info("com.test", "Double").elementwise
    assert op_info("com.test", "Alias").view
    assert registry._TABLE[("com.test", "Double")].origin == (
        "p0 (tests.plugins.broken_cost_plugins:good)"
    )


BROKEN = [
    ("no_such_module_xyz",
     "cost plugin p0 (no_such_module_xyz) failed to load: ModuleNotFoundError"),
    ("tests.plugins.broken_cost_plugins:onnx_domain_op",
     "ai.onnx::FusedScaleBias is in a domain memlint models itself"),
    ("tests.plugins.broken_cost_plugins:microsoft_domain_op",
     "com.microsoft::FusedScaleBias is in a domain memlint models itself"),
    ("tests.plugins.broken_cost_plugins:registers_nothing", "registers no ops"),
    ("tests.plugins.broken_cost_plugins:crashes", "failed to load: ValueError: boom"),
    ("tests.plugins.broken_cost_plugins:bad_family", "unknown op family 'tensor magic'"),
    ("tests.plugins.broken_cost_plugins:NOT_CALLABLE", "is neither a module nor a callable"),
]


@pytest.mark.parametrize(("value", "problem"), BROKEN)
def test_broken_plugin_raises_naming_it(monkeypatch, tmp_path, value, problem):
    _with_entry_points(monkeypatch, value)
    model = _model(tmp_path / "fsb.onnx")
    with pytest.raises(CostPluginError, match="cost plugin p0 ") as caught:
        memlint.lint(model, hw="a100")
    assert f"({value})" in str(caught.value) and problem in str(caught.value)
    with pytest.raises(CostPluginError, match="cost plugin p0 "):  # loaded once: fails again
        memlint.lint(model, hw="a100")


@pytest.mark.parametrize(("value", "problem"), BROKEN[:2])
def test_broken_plugin_exits_2_with_one_line(monkeypatch, capsys, tmp_path, value, problem):
    _with_entry_points(monkeypatch, value)
    assert main([str(_model(tmp_path / "fsb.onnx")), "--isolated"]) == 2
    err = capsys.readouterr().err
    assert problem in err and f"p0 ({value})" in err and len(err.strip().splitlines()) == 1


def test_two_plugins_registering_one_op_collide(monkeypatch, capsys, installed_example,
                                                 tmp_path):
    monkeypatch.syspath_prepend(str(installed_example))
    _with_entry_points(monkeypatch, "memlint_example_costs",
                       "tests.plugins.broken_cost_plugins:taken_op")
    assert main([str(_model(tmp_path / "fsb.onnx")), "--isolated"]) == 2
    err = capsys.readouterr().err
    assert "cost plugin p1 (tests.plugins.broken_cost_plugins:taken_op)" in err
    assert "com.example::FusedScaleBias exists already (p0 (memlint_example_costs))" in err
    assert len(err.strip().splitlines()) == 1
