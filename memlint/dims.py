"""Symbolic dims: parse user bindings, evaluate exporter dim expressions, record assumptions.

Frontend-neutral: the ONNX and fx frontends both bind dims through a DimBinder.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Mapping, Sequence

from memlint.errors import DimError
from memlint.ir import DimBinding

MAX_DIM = 2**63 - 1  # ONNX dims are int64
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]*$")
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Div: operator.floordiv,  # dims are integers; exporters mean floor division
    ast.Mod: operator.mod,
}


def parse_dim_flags(flags: Sequence[str]) -> dict[str, int]:
    """`["batch_size=1", "sequence_length=128"]` -> {"batch_size": 1, ...}."""
    dims: dict[str, int] = {}
    for flag in flags:
        name, sep, text = flag.partition("=")
        name = name.strip()
        if not sep or not name:
            raise DimError(f"--dim {flag!r}: expected NAME=VALUE, e.g. --dim batch_size=1")
        # 0 is a real size for a dim: an empty KV cache (past_sequence_length=0) in a prefill
        dims[name] = _whole(text, f"--dim {flag!r}", minimum=0)
    return dims


def parse_shape_flags(flags: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """`["images=1,3,640,640"]` -> {"images": (1, 3, 640, 640)}."""
    shapes: dict[str, tuple[int, ...]] = {}
    for flag in flags:
        name, sep, text = flag.rpartition("=")
        if not sep or not name or not text:
            raise DimError(
                f"--input-shape {flag!r}: expected NAME=D0,D1,..., e.g. --input-shape images=1,3,640,640"
            )
        where = f"--input-shape {flag!r}"
        shapes[name] = tuple(_whole(part, where, minimum=0) for part in text.split(","))
    return shapes


def _whole(text: str, where: str, *, minimum: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise DimError(f"{where}: {text.strip()!r} is not a whole number") from None
    if value < minimum:
        raise DimError(f"{where}: dims must be at least {minimum}, got {value}")
    if value > MAX_DIM:
        raise DimError(f"{where}: {value} is larger than any dim can be (2**63 - 1)")
    return value


def dim_names_in(expression: str) -> list[str]:
    """The symbol names a dim string mentions ('past + seq' -> ['past', 'seq'])."""
    expression = expression.strip()
    if _IDENT.match(expression):
        return [expression]
    tree = _parse(expression)
    if tree is None:
        return [expression]
    return [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]


MAX_EXPRESSION = 1000  # characters; a longer dim string is a label, never parsed


def _parse(expression: str) -> ast.Expression | None:
    """The expression's syntax tree, or None for a label that is not arithmetic (or is too long
    or too deeply nested to parse: the parser can raise RecursionError or MemoryError)."""
    if len(expression) > MAX_EXPRESSION:
        return None
    try:
        return ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


class DimBinder:
    """Hands out a value for every symbolic dim; unbound names become 1 and are recorded.

    Names are the symbols exporters write ('batch_size'); an expression such as
    'past_sequence_length + sequence_length' is evaluated from the names it mentions.
    """

    def __init__(
        self,
        bound: Mapping[str, int],
        *,
        strict: bool = False,
        defaults: Mapping[str, int] | None = None,
    ) -> None:
        self._bound = dict(bound)
        # Defaults (a config's dims, or flags shared by many models) bind a dim where the model
        # has it and are not an error where it has not.
        self._defaults = {k: v for k, v in (defaults or {}).items() if k not in self._bound}
        self._strict = strict
        self._used: dict[str, DimBinding] = {}
        self._missing: list[str] = []

    def value_of(self, dim: str) -> int:
        """The value of a dim string: a name or an arithmetic expression of names."""
        dim = dim.strip()
        if _IDENT.match(dim):
            return self._lookup(dim)
        tree = _parse(dim)
        try:
            if tree is None:
                raise DimError("not an expression")
            result = self._eval(tree.body)
        except (DimError, ZeroDivisionError, RecursionError):
            # An unparseable label ('?', 'p2o.DynamicDimension.0 x') is a name of its own.
            return self._lookup(dim)
        if result < 1 and not any(isinstance(n, ast.Name) for n in ast.walk(tree)):
            raise DimError(f"dim {dim!r} is the constant {result} (it names no dim to bind); no "
                           "tensor axis can have that size: fix the export, or give the "
                           "input's shape with --input-shape NAME=...")
        if result < 1:
            raise DimError(f"dim {dim!r} evaluates to {result}; bind its names to larger values")
        if result > MAX_DIM:
            raise DimError(f"dim {dim!r} evaluates to more than 2**63 - 1, larger than any dim "
                           "can be; bind its names to smaller values")
        return result

    def _eval(self, node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return self._lookup(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](self._eval(node.left), self._eval(node.right))
        raise DimError("unsupported dim expression")

    def _lookup(self, name: str) -> int:
        if name in self._bound:
            if name not in self._used:
                self._used[name] = DimBinding(name, self._bound[name], assumed=False)
            return self._bound[name]
        if name in self._defaults:
            if name not in self._used:
                self._used[name] = DimBinding(name, self._defaults[name], assumed=False)
            return self._defaults[name]
        if name not in self._used:
            self._used[name] = DimBinding(name, 1, assumed=True)
            self._missing.append(name)
        return 1

    def assume(self, label: str) -> int:
        """An unnamed dim (-1, 0, '?'): 1, recorded under `label` (e.g. 'images[0]')."""
        if label not in self._used:
            self._used[label] = DimBinding(label, 1, assumed=True)
            self._missing.append(label)
        return 1

    def check(self, known_names: Sequence[str], *, unnamed_inputs: Sequence[str] = ()) -> None:
        """Raise for user bindings that name no dim, and for anything assumed under --strict-dims."""
        unknown = sorted(set(self._bound) - set(known_names))
        if unknown:
            listed = ", ".join(shown(n) for n in sorted(set(known_names))) or "none"
            raise DimError(
                f"--dim {', '.join(map(shown, unknown))}: no such dim in the model "
                f"(its dims: {listed})"
            )
        if self._strict and self._missing:
            named = [m for m in self._missing if "[" not in m]
            flags = " ".join(f"--dim {shell_quote(n)}=N" for n in named)
            shape_flags = " ".join(
                f"--input-shape {shell_quote(name)}=..." for name in unnamed_inputs
            )
            raise DimError(
                f"--strict-dims: unbound dims {', '.join(map(shown, self._missing))}; add "
                + " ".join(part for part in (flags, shape_flags) if part)
            )

    @property
    def bindings(self) -> tuple[DimBinding, ...]:
        return tuple(sorted(self._used.values(), key=lambda b: b.name))


def shell_quote(text: str) -> str:
    if re.match(r"^[A-Za-z0-9_.:+-]+$", text):
        return text
    if not text.isprintable():  # control characters: shown escaped, never raw
        return shown(text)
    return "'" + text.replace("'", "'\\''") + "'"


def shown(name: str) -> str:
    """A name from a model as it can appear in a one-line message: as is when printable,
    else quoted with its control characters escaped."""
    return name if name.isprintable() else repr(name)
