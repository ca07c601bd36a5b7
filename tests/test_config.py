"""[tool.memlint] / memlint.toml: discovery, validation, and flags over the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from memlint.config import (
    Config,
    Suppression,
    find_config,
    load_config,
    parse_config,
    parse_rule_option_flags,
    parse_severity_flags,
)
from memlint.errors import ConfigError
from memlint.findings import Severity

FULL = """
[tool.memlint]
hw = "h100"
fail-on = "error"
tf32 = true
dims = { batch_size = 8 }
select = ["ML1"]
ignore = ["ML107"]
min-share = 0.05
min-saving-s = 0.0

[tool.memlint.severity]
ML106 = "error"

[tool.memlint.rules.ML101]
max-intensity-ratio = 0.5

[[tool.memlint.suppress]]
code = "ML102"
nodes = "/h.*/mlp/*"
reason = "fused by TensorRT"
"""


def test_pyproject_found_by_walking_up(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text(FULL)
    model_dir = tmp_path / "models" / "v1"
    model_dir.mkdir(parents=True)
    config = load_config(start=model_dir / "model.onnx")
    assert config.path == str(tmp_path.resolve() / "pyproject.toml")
    assert (config.hw, config.fail_on, config.tf32) == ("h100", "error", True)
    assert dict(config.dims) == {"batch_size": 8}
    assert (config.select, config.ignore) == (("ML1",), ("ML107",))
    assert (config.min_share, config.min_saving_s) == (0.05, 0.0)
    assert dict(config.severity) == {"ML106": Severity.ERROR}
    assert dict(config.rule_options) == {"ML101": {"max-intensity-ratio": 0.5}}
    assert config.suppress == (Suppression("ML102", "/h.*/mlp/*", "fused by TensorRT"),)


def test_nearest_file_wins_and_memlint_toml_before_pyproject(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text(FULL)
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no [tool.memlint]: skipped
    (inner / "memlint.toml").write_text('hw = "a10"\n')
    assert load_config(start=inner / "m.onnx").hw == "a10"
    (inner / "memlint.toml").unlink()
    assert load_config(start=inner / "m.onnx").hw == "h100"


def test_no_file_gives_defaults(tmp_path: Path):
    assert find_config(tmp_path) is None or find_config(tmp_path)[0].parent != tmp_path
    assert parse_config({}, "x") == Config(path="x", files=("x",))


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"fail_on": "error"}, r"fail_on: unknown key \(did you mean 'fail-on'\?\)"),
        ({"fail-on": "sometimes"}, "'sometimes' is not one of"),
        ({"select": "ML101"}, "select: must be a list"),
        ({"dims": {"batch": -1}}, "batch must be a whole number >= 0"),
        ({"min-share": -1}, "must be a non-negative number"),
        ({"severity": {"ML101": "fatal"}}, "unknown severity 'fatal'"),
        ({"suppress": [{"code": "ML101", "nodes": "*"}]}, "needs a non-empty `reason`"),
        ({"suppress": [{"nodes": "*", "reason": "r", "why": 1}]}, "unknown key"),
        ({"rules": {"ML101": 3}}, "must be a table"),
        ({"tf32": "yes"}, "tf32: must be true or false"),
    ],
)
def test_bad_config_names_file_and_key(table, problem):
    with pytest.raises(ConfigError, match=problem) as info:
        parse_config(table, "/repo/pyproject.toml")
    assert str(info.value).startswith("/repo/pyproject.toml: [tool.memlint] ")


def test_unreadable_and_malformed_files(tmp_path: Path):
    bad = tmp_path / "memlint.toml"
    bad.write_text("hw = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.toml")


def test_flags_override_the_file():
    base = parse_config({"select": ["ML1"], "ignore": ["ML107"],
                         "rules": {"ML101": {"a-b": 1}}}, "f")
    merged = base.with_flags(
        select=("ML2",), ignore=("ML108",), severity={"ML101": "info"},
        rule_options={"ML101": {"c-d": True}},
    )
    assert merged.select == ("ML2",)
    assert merged.ignore == ("ML107", "ML108")
    assert merged.severity["ML101"] is Severity.INFO
    assert dict(merged.rule_options["ML101"]) == {"a-b": 1, "c-d": True}
    assert base.with_flags().select == ("ML1",)


def test_flag_parsers():
    assert parse_rule_option_flags(("ML101.max-intensity-ratio=0.5", "ML104.name=abc")) == {
        "ML101": {"max-intensity-ratio": 0.5}, "ML104": {"name": "abc"}}
    assert parse_severity_flags(("ML106=error",)) == {"ML106": "error"}
    with pytest.raises(ConfigError, match="expected RULE.OPTION=VALUE"):
        parse_rule_option_flags(("ML101=3",))
    with pytest.raises(ConfigError, match="expected CODE="):
        parse_severity_flags(("ML106",))
