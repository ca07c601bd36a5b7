"""pytest plugin (entry point pytest11 "memlint"): inert unless `pytest --memlint`.

With --memlint, every model file matched by the `models` globs of the [tool.memlint] table (in
the pyproject.toml or memlint.toml found from pytest's rootdir) becomes a test item: it passes
when memlint finds nothing at or above the configured fail-on, and fails with the text report
otherwise. A model memlint cannot read fails its item with the one-line reason; a crashing rule
or plugin stops the whole session (CI must never pass with rules silently missing).

In your own tests, `memlint.testing.assert_memory_clean(...)` does the same for one model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memlint.config import find_config, parse_config


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memlint", "memory-wall lint of model files")
    group.addoption(
        "--memlint", action="store_true", default=False,
        help="lint the model files matched by `models` in [tool.memlint] as test items",
    )


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if not config.getoption("memlint"):
        return
    found = find_config(Path(str(config.rootpath)))
    if found is None:
        raise pytest.UsageError("--memlint: no [tool.memlint] table (or memlint.toml) found "
                                f"at or above {config.rootpath}")
    path, table = found
    settings = parse_config(table, str(path))
    if not settings.models:
        raise pytest.UsageError(f"--memlint: {path} sets no `models` globs to lint")
    base = path.parent
    models = sorted({p for pattern in settings.models for p in base.glob(pattern) if p.is_file()})
    if not models:
        raise pytest.UsageError(f"--memlint: the globs {list(settings.models)} in {path} match "
                                "no file")
    for model in models:
        items.extend(ModelFile.from_parent(session, path=model).collect())


class ModelFile(pytest.File):
    def collect(self):  # noqa: ANN201
        yield ModelItem.from_parent(self, name=f"memlint[{self.path.name}]")


class MemlintFailure(Exception):
    """The model has findings at or above fail-on; the message is the report."""


class ModelItem(pytest.Item):
    def runtest(self) -> None:
        from memlint.engine import PluginError, RuleError
        from memlint.errors import MemlintError, RegistrationError
        from memlint.report.text import render
        from memlint.runner import LintRequest, fail_on_for, fails, lint_model

        request = LintRequest()
        try:
            report, settings = lint_model(self.path, request)
        except (RuleError, PluginError, RegistrationError) as exc:
            pytest.exit(f"memlint: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
        except MemlintError as exc:
            raise MemlintFailure(f"memlint could not lint {self.path}: {exc}") from None
        if fails(report.findings, fail_on_for(settings, request)):
            raise MemlintFailure(render(report, verbose=True))  # a failing test shows the evidence

    def repr_failure(self, excinfo, style=None):  # noqa: ANN001, ANN201
        if isinstance(excinfo.value, MemlintFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):  # noqa: ANN201
        return self.path, None, f"memlint {self.path.name}"
