"""The generated docs are current, and the README's commands name real files."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cost_model_doc_is_current():
    spec = importlib.util.spec_from_file_location("gen_cost_model", ROOT / "docs" / "gen_cost_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "cost-model.md").read_text(encoding="utf-8") == module.render(), (
        "docs/cost-model.md is stale: run python docs/gen_cost_model.py"
    )


def test_rules_doc_is_current():
    spec = importlib.util.spec_from_file_location("gen_rules", ROOT / "docs" / "gen_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "rules.md").read_text(encoding="utf-8") == module.render(), (
        "docs/rules.md is stale: run python docs/gen_rules.py"
    )


def test_readme_sample_model_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    models = re.findall(r"memlint (sample_models/\S+\.onnx)", readme)
    assert models, "the README's first command must lint a shipped sample model"
    for model in models:
        assert (ROOT / model).is_file(), model
