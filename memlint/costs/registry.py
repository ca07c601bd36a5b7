"""The one table of cost formulas, keyed by (domain, op_type) as the ONNX spec spells them.

Three explicit outcomes for every node: a formula counts it, it is declared to move no data
(metadata-only ops), or it is unmodelled (bytes reported as a lower bound, never zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from memlint.costs.model import ZERO_BYTES, ByteCounts, CostStatus, OpCost
from memlint.errors import RegistrationError
from memlint.ir import ComputeUnit, DType, Graph, Node, Value, ValueKind

# Nodes whose inputs are all constants are folded at load time by runtimes, except these,
# which runtimes keep on purpose (QDQ pairs feed quantized kernels) or which are not pure.
NEVER_FOLDED = frozenset(
    {
        ("", "DequantizeLinear"),
        ("", "QuantizeLinear"),
        ("", "RandomNormal"),
        ("", "RandomUniform"),
        ("", "RandomNormalLike"),
        ("", "RandomUniformLike"),
        ("", "Multinomial"),
        ("", "Bernoulli"),
        ("com.microsoft", "DequantizeLinear"),
        ("com.microsoft", "QuantizeLinear"),
    }
)


@dataclass(frozen=True)
class CostContext:
    """What a formula sees: the node, its input and output tensors, and known constants."""

    node: Node
    graph: Graph

    @cached_property  # looked up once per node: formulas ask for them several times
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self.graph.value(name) for name in self.node.inputs)

    @cached_property
    def outputs(self) -> tuple[Value | None, ...]:
        return tuple(self.graph.value(name) for name in self.node.outputs)

    def input(self, index: int) -> Value | None:
        """The index-th input, or None when it is absent or omitted."""
        if index >= len(self.node.inputs):
            return None
        return self.graph.value(self.node.inputs[index])

    def output(self, index: int) -> Value | None:
        if index >= len(self.node.outputs):
            return None
        return self.graph.value(self.node.outputs[index])

    def shape(self, index: int) -> tuple[int, ...]:
        """The resolved shape of input `index` (formulas run only on resolved nodes)."""
        value = self.input(index)
        if value is None or value.shape is None:
            raise KeyError(f"input {index} of {self.node.name} has no shape")
        return value.shape  # type: ignore[return-value]

    def out_shape(self, index: int = 0) -> tuple[int, ...]:
        value = self.output(index)
        if value is None or value.shape is None:
            raise KeyError(f"output {index} of {self.node.name} has no shape")
        return value.shape  # type: ignore[return-value]

    def out_numel(self, index: int = 0) -> int:
        return math.prod(self.out_shape(index))

    def const(self, index: int) -> np.ndarray | None:
        """The value of input `index` when it is known before run time."""
        if index >= len(self.node.inputs) or not self.node.inputs[index]:
            return None
        return self.graph.constants.get(self.node.inputs[index])

    def attr(self, name: str, default: Any = None) -> Any:
        return self.node.attributes.get(name, default)

    def compute_dtype(self) -> DType | None:
        """The dtype arithmetic runs in: the first floating input, else the first input."""
        values = [v for v in self.inputs if v is not None] + [
            v for v in self.outputs if v is not None
        ]
        for value in values:
            if value.dtype.is_float:
                return value.dtype
        return values[0].dtype if values else None

    def cost(
        self,
        flops: int | float,
        *,
        unit: ComputeUnit = ComputeUnit.VECTOR,
        bytes_read: ByteCounts | None = None,
        bytes_written: ByteCounts | None = None,
        compute_dtype: DType | None = None,
        note: str = "",
    ) -> OpCost:
        """A modelled cost; bytes default to each input read once and each output written once."""
        return OpCost(
            flops=int(flops),
            bytes_read=ByteCounts.of(self.inputs) if bytes_read is None else bytes_read,
            bytes_written=ByteCounts.of(self.outputs) if bytes_written is None else bytes_written,
            status=CostStatus.MODELLED,
            unit=unit,
            compute_dtype=compute_dtype or self.compute_dtype(),
            note=note,
        )


CostFn = Callable[[CostContext], OpCost]

_FORMULAS: dict[tuple[str, str], CostFn] = {}
_METADATA_OPS: set[tuple[str, str]] = set()


def _key(domain: str, op_type: str) -> tuple[str, str]:
    return ("" if domain == "ai.onnx" else domain, op_type)


def _claim(key: tuple[str, str]) -> None:
    if key in _FORMULAS or key in _METADATA_OPS:
        raise RegistrationError(f"a cost formula for {key[0] or 'ai.onnx'}::{key[1]} exists already")


def register(*op_types: str, domain: str = "") -> Callable[[CostFn], CostFn]:
    """Decorator: `fn` is the cost formula of every op type named."""

    def decorate(fn: CostFn) -> CostFn:
        for op_type in op_types:
            add_formula(op_type, fn, domain=domain)
        return fn

    return decorate


def add_formula(op_type: str, fn: CostFn, *, domain: str = "") -> None:
    """Register one formula (used by factories that make a formula per op family)."""
    key = _key(domain, op_type)
    _claim(key)
    _FORMULAS[key] = fn


def register_metadata(*op_types: str, domain: str = "") -> None:
    """Declare ops that change metadata only and move no bytes (Reshape, Shape, ...)."""
    for op_type in op_types:
        key = _key(domain, op_type)
        _claim(key)
        _METADATA_OPS.add(key)


def is_registered(op_type: str, domain: str = "") -> bool:
    key = _key(domain, op_type)
    return key in _FORMULAS or key in _METADATA_OPS


def registered_ops() -> list[tuple[str, str]]:
    return sorted(set(_FORMULAS) | _METADATA_OPS)


def _lower_bound(ctx: CostContext, status: CostStatus, note: str) -> OpCost:
    return OpCost(
        flops=0,
        bytes_read=ByteCounts.of(ctx.inputs),
        bytes_written=ByteCounts.of(ctx.outputs),
        status=status,
        compute_dtype=ctx.compute_dtype(),
        note=note,
    )


def _is_folded(ctx: CostContext) -> bool:
    node = ctx.node
    if not node.inputs or node.subgraphs or _key(node.domain, node.op_type) in NEVER_FOLDED:
        return False
    values = [ctx.graph.value(name) for name in node.inputs if name]
    return bool(values) and all(v is not None and v.kind is ValueKind.WEIGHT for v in values)


def cost_of(node: Node, graph: Graph) -> OpCost:
    """The cost of one node of `graph`: one of the three outcomes, never a silent zero."""
    ctx = CostContext(node, graph)
    key = _key(node.domain, node.op_type)
    if key in _METADATA_OPS:
        return OpCost(0, ZERO_BYTES, ZERO_BYTES, CostStatus.METADATA, compute_dtype=None)
    if _is_folded(ctx):
        return OpCost(
            0, ZERO_BYTES, ZERO_BYTES, CostStatus.FOLDED, note="all inputs constant: folded at load"
        )
    formula = _FORMULAS.get(key)
    if formula is None:
        return _lower_bound(ctx, CostStatus.UNMODELLED, f"no cost formula for {node.qualified_op}")
    unresolved = [
        v.name if v is not None else name
        for name, v in zip(node.inputs + node.outputs, ctx.inputs + ctx.outputs)
        if name and (v is None or not v.is_resolved)
    ]
    if unresolved and not node.subgraphs:
        return _lower_bound(
            ctx, CostStatus.UNRESOLVED, f"shape unknown for {', '.join(unresolved[:3])}"
        )
    return formula(ctx)
