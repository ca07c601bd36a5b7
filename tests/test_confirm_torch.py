"""--confirm for torch models: the torch.export graph run eagerly, every node timed, on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from clitools import MEMLINT  # noqa: E402 - pytest puts tests/ on sys.path
from torch import nn  # noqa: E402
from torch_blocks import Block  # noqa: E402 - pytest puts tests/ on sys.path

import memlint  # noqa: E402
from memlint.confirm import ConfirmError, confirm, confirm_torch  # noqa: E402
from memlint.confirm.torch_run import _synthesise  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def blocks() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(Block(64, 4), Block(64, 4)).eval(), torch.randn(1, 16, 64)


@pytest.fixture(scope="module")
def measured():
    model, x = blocks()
    report = memlint.lint(model, example_inputs=(x,), hw="cpu")
    calls = []
    m = confirm_torch(report, model, (x,), runs=2, warmup=1,
                      progress=lambda done, total, phase: calls.append((done, total, phase)))
    return report, m, calls


def test_every_node_of_the_graph_is_timed(measured):
    report, m, calls = measured
    # 1 warm-up + 2 timed node runs + 2 timed whole runs, each reported as it ends
    assert [c[:2] for c in calls] == [(i, 5) for i in range(1, 6)]
    assert [c[2] for c in calls] == ["warm-up", *["timed nodes"] * 2, *["timed runs"] * 2]
    assert (m.provider, m.device, m.weights) == ("eager (cpu)", "cpu", "real")
    assert m.runtime == f"torch {torch.__version__}"
    assert m.not_run == () and len(m.nodes) == len(report.nodes)
    assert m.unoptimised_latency_s > 0 and m.measured_nodes_s > 0
    assert m.optimised_latency_s is None and m.optimised_error is None and m.kernels == ()
    assert len(m.findings) == len(report.findings)
    assert all(check.verdict.value in ("confirmed", "not confirmed") for check in m.findings)


def test_a_node_that_became_several_ir_nodes_shares_its_time_by_prediction(measured):
    _, m, _ = measured
    by_name = {n.name: n for n in m.nodes}
    # aten linear on a 3-d input is Flatten + Gemm + Unflatten in the IR: the views are
    # predicted to take no time, so the Gemm gets the whole measured time
    assert by_name["0.qkv/linear"].measured_s > 0
    assert by_name["0.qkv/linear/flatten"].measured_s == 0
    assert by_name["0.qkv/linear/unflatten"].measured_s == 0
    assert by_name["0.qkv/linear"].shared and by_name["0.qkv/linear/flatten"].shared
    # shares are not kernels of their own: the small-kernel figure leaves them out
    small = [n for n in m.nodes if not n.shared and max(n.compute_time_s, n.memory_time_s) < 5e-7]
    assert m.small_kernels[0] == len(small) > 0
    # split into q, k, v: three equal slices, three equal shares
    parts = [by_name[f"0/split/{i}"].measured_s for i in range(3)]
    assert parts[0] > 0 and parts[0] == pytest.approx(parts[1]) == pytest.approx(parts[2])


def test_the_report_shows_the_torch_run(measured):
    import dataclasses

    from memlint.report import render

    report, m, _ = measured
    with_run = dataclasses.replace(report, measurement=m)
    text = render(with_run, "markdown")
    assert f"torch {torch.__version__} eager (cpu)" in text and "eager, op by op" in text
    assert "measured, optimised" not in text
    data = json.loads(render(with_run, "json"))["measurement"]
    assert data["optimised_latency_s"] is None and data["runtime"].startswith("torch ")


def test_a_module_on_the_meta_device_has_no_weights_to_run():
    with torch.device("meta"):
        model = nn.Sequential(Block(64, 4))
    x = torch.randn(1, 16, 64)
    report = memlint.lint(model, example_inputs=(x,), hw="cpu")
    with pytest.raises(ConfirmError, match="is on the meta device") as err:
        confirm_torch(report, model, (x,), runs=1)
    assert "\n" not in str(err.value)


class WithOpts(nn.Module):
    """torch.export cannot take the plain-object argument: memlint falls back to symbolic_trace."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 4)

    def forward(self, x, opts):
        return self.proj(x) * opts.scale


class Opts:
    scale = 2.0


def test_a_graph_from_the_fallback_capture_is_not_run():
    x = torch.randn(2, 8)
    report = memlint.lint(WithOpts(), example_inputs=(x, Opts()), hw="cpu")
    assert report.model.metadata["capture"].startswith("torch.fx.symbolic_trace")
    with pytest.raises(ConfirmError, match="only a graph torch.export captured can be run"):
        confirm_torch(report, WithOpts(), (x, Opts()), runs=1)


def test_refusals_name_the_other_path():
    model, x = blocks()
    torch_report = memlint.lint(model, example_inputs=(x,), hw="cpu")
    with pytest.raises(ConfirmError, match="confirm_torch"):
        confirm(torch_report, runs=1)
    onnx_report = memlint.lint(ROOT / "sample_models" / "small_cnn.onnx", hw="cpu",
                               dims={"batch_size": 1})
    with pytest.raises(ConfirmError, match="use memlint.confirm.confirm"):
        confirm_torch(onnx_report, model, (x,))
    gpu_report = memlint.lint(model, example_inputs=(x,), hw="a100")
    with pytest.raises(ConfirmError, match=r"\(gpu\) with a run on torch \(cpu\)"):
        confirm_torch(gpu_report, model, (x,), device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfirmError, match="torch sees no CUDA GPU"):
            confirm_torch(torch_report, model, (x,), device="cuda")
    with pytest.raises(ConfirmError, match="not the graph of the report"):
        confirm_torch(torch_report, model, (torch.randn(1, 8, 64),))  # other shapes, other graph


def test_inputs_are_made_from_the_example_values_when_there_are_none():
    from torch import fx

    graph = fx.Graph()
    made = {}
    for name, value in [("f", torch.empty(2, 3, dtype=torch.float16)),
                        ("i", torch.empty(4, dtype=torch.int64)),
                        ("b", torch.empty(1, 2, dtype=torch.bool))]:
        node = graph.placeholder(name)
        node.meta["val"] = value
        made[name] = _synthesise(torch, node)
    assert made["f"].shape == (2, 3) and made["f"].dtype == torch.float16
    assert made["f"].float().std() > 0.5  # normal values, seeded
    assert made["i"].tolist() == [0, 0, 0, 0] and made["b"].all()


FACTORY = textwrap.dedent("""
    import torch
    from torch_blocks import Block

    def build():
        torch.manual_seed(0)
        return torch.nn.Sequential(Block(64, 4)).eval()

    def inputs():
        return (torch.randn(1, 16, 64),)
""")


def test_confirm_on_the_command_line_for_a_factory_and_a_pt2(tmp_path: Path):
    (tmp_path / "memlint_confirm_factory.py").write_text(FACTORY, encoding="utf-8")
    env = {**os.environ, "NO_COLOR": "1", "MEMLINT_HARDWARE_DIR": str(tmp_path / "hw"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "tests")])}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*MEMLINT, *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    done = run("memlint_confirm_factory:build", "--example-inputs",
               "memlint_confirm_factory:inputs", "--hw", "cpu", "--confirm", "--runs", "2",
               "--format", "json", "--fail-on", "never")
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)["measurement"]
    assert data["provider"] == "eager (cpu)" and data["unoptimised_latency_s"] > 0
    assert "measuring with torch" in done.stderr
    # a saved program runs with the example inputs torch.export recorded in it
    sys.path.insert(0, str(tmp_path))
    try:
        import memlint_confirm_factory as factory
    finally:
        sys.path.remove(str(tmp_path))
    program = torch.export.export(factory.build(), factory.inputs())
    torch.export.save(program, str(tmp_path / "block.pt2"))
    done = run("block.pt2", "--hw", "cpu", "--confirm", "--runs", "2", "--fail-on", "never")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "eager, op by op" in done.stdout and "synthesised" not in done.stdout
