"""Cost plugins: installed packages that register cost formulas and op facts for the ops of their
own domain, through the `memlint.costs` entry point group.

An entry point names a module, which registers its ops when imported (with
memlint.costs.registry's `register`, `add_formula` or `register_metadata`), or a callable, which
memlint calls with no arguments to register them. The registry loads every plugin once, the first
time it is asked about an op. A plugin that fails to load, registers nothing, or registers an op
of a domain memlint models itself (the ONNX default domain and com.microsoft) or an op already
registered is a CostPluginError naming the plugin: a run never goes on with formulas silently
missing.

A formula runs only on a node whose tensor shapes are known. onnx's shape inference knows the
output shape of a custom-domain op when the model carries the op as a model-local function (as
exporters emit custom ops); otherwise the node is reported unresolved, its bytes a lower bound.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from memlint.errors import MemlintError

ENTRY_POINT_GROUP = "memlint.costs"
RESERVED_DOMAINS = frozenset({"", "com.microsoft"})  # memlint's own formulas: plugins keep off


class CostPluginError(MemlintError):
    """A cost plugin could not be loaded or registered ops it may not."""


def installed() -> list[EntryPoint]:
    """The entry points of the group, in name order (loading order does not depend on install
    order)."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def plugin_name(ep: EntryPoint) -> str:
    return f"{ep.name} ({ep.value})"


def run(ep: EntryPoint) -> None:
    """Import the plugin; a callable target is then called. Either way it registers its ops."""
    target = ep.load()
    if isinstance(target, ModuleType):
        return
    if not callable(target):
        raise TypeError(f"{ep.value} is neither a module nor a callable")
    target()
