"""The torch.compile backend: registered as "memlint", lints every graph dynamo captures, logs
its findings, raises in strict mode, and returns the graph's forward so the model runs unchanged.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from memlint.api import lint  # noqa: E402
from memlint.errors import ConfigError, MemlintError  # noqa: E402
from memlint.torch_backend import memlint_backend  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def logged_findings(caplog) -> list:
    return [r.memlint_finding for r in caplog.records if hasattr(r, "memlint_finding")]


def inner(exc: BaseException) -> BaseException:
    """The exception the backend raised, under dynamo's BackendCompilerFailed wrapper."""
    return getattr(exc, "inner_exception", None) or exc


class Gemv(nn.Module):
    """One token through a 1024 x 1024 linear: a weight-streaming GEMV (ML101 on any GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(1024, 1024)

    def forward(self, x):
        return torch.relu(self.proj(x))


def test_registered_through_the_entry_point():
    names = {ep.name: ep.value for ep in entry_points(group="torch_dynamo_backends")}
    assert names.get("memlint") == "memlint.torch_backend:memlint_backend"
    assert "memlint" in torch._dynamo.list_backends(exclude_tags=())
    from torch._dynamo.backends.registry import lookup_backend

    assert lookup_backend("memlint") is memlint_backend


def test_runs_the_model_and_logs_what_lint_finds(caplog):
    model, x = Gemv().eval(), torch.randn(1, 1024)
    reports = []
    compiled = torch.compile(
        model, backend="memlint", options={"hw": "h100", "on_report": reports.append}
    )
    with caplog.at_level(logging.INFO, logger="memlint"), torch.no_grad():
        out = compiled(x)
    assert torch.equal(out, model(x))
    assert len(reports) == 1 and reports[0].hardware.name.startswith("nvidia-h100")
    logged = logged_findings(caplog)
    expected = lint(model, example_inputs=(x,), hw="h100").findings
    assert [(f.code, f.nodes) for f in logged] == [(f.code, f.nodes) for f in expected]
    assert "ML101" in {f.code for f in logged}
    record = next(r for r in caplog.records if hasattr(r, "memlint_finding"))
    assert record.levelno == logging.WARNING and "ML101" in record.getMessage()


def test_strict_mode_raises_on_warnings():
    compiled = torch.compile(Gemv().eval(), backend="memlint", options={"strict": True})
    with pytest.raises(Exception) as err, torch.no_grad():
        compiled(torch.randn(1, 1024))
    assert isinstance(inner(err.value), MemlintError)
    assert "ML101" in str(inner(err.value))


def test_strict_mode_passes_below_its_threshold():
    options = {"strict": True, "fail_on": "error"}  # ML101 is a warning
    compiled = torch.compile(Gemv().eval(), backend="memlint", options=options)
    with torch.no_grad():
        assert compiled(torch.randn(1, 1024)).shape == (1, 1024)


def test_unknown_option_is_an_error():
    compiled = torch.compile(Gemv(), backend="memlint", options={"hardware": "h100"})
    with pytest.raises(Exception) as err:
        compiled(torch.randn(1, 1024))
    assert isinstance(inner(err.value), ConfigError)
    assert "unknown option(s) hardware" in str(inner(err.value))


class Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(64, 64), nn.Linear(64, 64)

    def forward(self, x):
        x = self.a(x)
        torch._dynamo.graph_break()
        return self.b(x)


def test_every_graph_is_linted():
    reports = []
    model, x = Broken().eval(), torch.randn(2, 64)
    compiled = torch.compile(model, backend="memlint", options={"on_report": reports.append})
    with torch.no_grad():
        assert torch.equal(compiled(x), model(x))
    assert len(reports) == 2
    assert [r.summary.flops for r in reports] == [2 * 2 * 64 * 64 + 2 * 64] * 2


def test_gpt2_compiled_runs_like_eager_and_logs_what_lint_finds(caplog):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=256
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 1000, (1, 128))
    reports = []
    compiled = torch.compile(
        model, backend="memlint", options={"hw": "h100", "on_report": reports.append}
    )
    with caplog.at_level(logging.INFO, logger="memlint"), torch.no_grad():
        out = compiled(ids, use_cache=False)
        eager = model(ids, use_cache=False)
    assert torch.equal(out.logits, eager.logits)
    assert len(reports) == 1  # one graph: no graph break
    expected = lint(model, example_inputs=(ids,), example_kwargs={"use_cache": False}, hw="h100")
    logged = logged_findings(caplog)
    assert sorted(f.code for f in logged) == sorted(f.code for f in expected.findings)
    assert {(f.code, f.nodes) for f in logged} == {(f.code, f.nodes) for f in expected.findings}
    assert reports[0].summary.flops == expected.summary.flops
    assert all("transformers" in f.source.file for f in logged)


def test_a_dynamic_recompile_is_linted_at_its_example_shapes():
    reports = []
    model = nn.Linear(32, 32).eval()
    compiled = torch.compile(model, backend="memlint", options={"on_report": reports.append})
    with torch.no_grad():
        for rows in (2, 3, 5):  # the second call recompiles with a symbolic batch
            assert compiled(torch.randn(rows, 32)).shape == (rows, 32)
    assert len(reports) == 2
    # M = 2, then M = 3 (the dynamic graph's example value): 2*M*32*32 + M*32
    assert [r.summary.flops for r in reports] == [2 * 2 * 32 * 32 + 64, 2 * 3 * 32 * 32 + 96]


def test_falls_back_to_symbolic_trace_when_export_fails(monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise RuntimeError("export refused")

    monkeypatch.setattr(torch.export, "export", refuse)
    reports = []
    model, x = Gemv().eval(), torch.randn(1, 1024)
    compiled = torch.compile(model, backend="memlint", options={"on_report": reports.append})
    with caplog.at_level(logging.WARNING, logger="memlint"), torch.no_grad():
        assert torch.equal(compiled(x), model(x))
    assert "torch.export failed (export refused)" in caplog.text
    (report,) = reports
    assert report.model.metadata["capture"].startswith("torch.fx.symbolic_trace")
    values = report.model.graph.values
    assert values["proj.weight"].kind.value == "weights"  # dynamo's lifted parameter
    assert report.summary.flops == 2 * 1024 * 1024 + 1024 + 1024  # Gemm with bias, Relu
