"""The layers of docs/architecture.md, checked on the source: every import of a memlint module
(module level or inside a function, since a lazy import is still a dependency) must go to its
own layer or one the layer may use, and the import graph has no cycle. Imports under
`if TYPE_CHECKING:` are annotations only, never run, and are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"memlint": ROOT / "memlint", "memlint.rules": ROOT / "rules",
            "memlint.templates": ROOT / "templates"}

# Layer of each module, by the longest matching prefix of its dotted name.
LAYERS = {
    "memlint.errors": "base", "memlint.textio": "base", "memlint.units": "base",
    "memlint.ir": "base", "memlint._version": "base", "memlint.dims": "base",
    "memlint.costs": "costs",
    "memlint.hardware": "hardware", "memlint.roofline": "hardware",
    "memlint.analysis": "analysis",
    "memlint.findings": "data", "memlint.config": "data", "memlint.baseline": "data",
    "memlint.rulebase": "rules", "memlint.ruledoc": "rules", "memlint.rules": "rules",
    "memlint.engine": "rules",
    "memlint.core": "core", "memlint.diff": "core",
    "memlint.frontends": "frontends",
    "memlint.llm": "llm",
    "memlint.confirm": "confirm",
    "memlint.report": "report", "memlint.templates": "report",
    "memlint.api": "api", "memlint.runner": "api", "memlint.formats": "api", "memlint.fix": "api",
    "memlint.cli": "entry", "memlint.pytest_plugin": "entry", "memlint.torch_backend": "entry",
    "memlint.testing": "entry", "memlint": "entry",
}
_BELOW_RULES = {"base", "costs", "hardware", "analysis", "data"}
MAY_USE = {
    "base": set(),
    "data": {"base"},
    "costs": {"base"},
    "hardware": {"base", "costs"},
    "analysis": {"base", "costs", "hardware"},
    "rules": _BELOW_RULES,
    "core": _BELOW_RULES | {"rules"},
    "frontends": {"base", "costs"},
    "llm": _BELOW_RULES | {"core", "frontends"},
    "confirm": _BELOW_RULES | {"core", "frontends"},
    "report": _BELOW_RULES | {"core"},
    "api": _BELOW_RULES | {"rules", "core", "frontends", "llm", "confirm", "report"},
    "entry": _BELOW_RULES | {"rules", "core", "frontends", "llm", "confirm", "report", "api"},
}
# Rule machinery that a report may not reach even though its layer lies below: a renderer
# formats the report it is given and never loads or runs rules.
REPORT_NEVER = ("memlint.engine", "memlint.rulebase", "memlint.rules", "memlint.ruledoc")


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """memlint modules that `name` imports, anywhere in its source ("from memlint import units"
    is an import of memlint.units; "from memlint import __version__" one of memlint)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner) for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for inner in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "memlint")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: None if is_package else -1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.split(".")[0] != "memlint":
                continue
            submodules = {f"{module}.{a.name}" for a in node.names} & MODULES.keys()
            out.update(submodules)
            if len(submodules) < len(node.names):
                out.add(module)
    return {m for m in out if m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> str:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = LAYERS.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    raise KeyError(module)


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if not any(m == p or m.startswith(p + ".") for p in LAYERS)
                or m == "memlint" and False]
    assert not unplaced, f"add these modules to LAYERS (and docs/architecture.md): {unplaced}"


def test_imports_run_downward():
    wrong = []
    for module, imported in sorted(GRAPH.items()):
        layer = layer_of(module)
        for target in sorted(imported):
            if target not in MODULES:
                wrong.append(f"{module} imports {target}, which does not exist")
                continue
            other = layer_of(target)
            if other != layer and other not in MAY_USE[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({other})")
            if layer == "report" and target.startswith(REPORT_NEVER):
                wrong.append(f"{module} (a renderer) imports rule machinery {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    # Tarjan's strongly connected components over the whole graph; any component of two or
    # more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH.get(module, ()):
            if target not in MODULES:
                continue
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module,expected", [
    ("memlint.rules.wide_weights", "rules"), ("memlint.report.sarif", "report"),
    ("memlint.costs.matmul", "costs"), ("memlint", "entry"),
])
def test_layer_table_reads_as_documented(module, expected):
    assert layer_of(module) == expected


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    # The check would pass vacuously if it missed imports inside functions.
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from memlint.api import lint\n    from memlint import units\n"
                      "if TYPE_CHECKING:\n    from memlint.engine import run\n")
    assert _imports("memlint.report.x", source) == {"memlint.api", "memlint.units"}
