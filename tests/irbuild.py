"""Build one-node IR graphs for cost tests without any frontend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from memlint.ir import DType, Graph, Node, Value, ValueKind

F32, F16, BF16, I64, I32, I8, U8, BOOL = (
    DType.FLOAT32,
    DType.FLOAT16,
    DType.BFLOAT16,
    DType.INT64,
    DType.INT32,
    DType.INT8,
    DType.UINT8,
    DType.BOOL,
)
W, A, KV = ValueKind.WEIGHT, ValueKind.ACTIVATION, ValueKind.KV_CACHE

Spec = tuple  # (shape, dtype) or (shape, dtype, kind); None for an omitted input


def one_node(
    op_type: str,
    inputs: Sequence[Spec | None],
    outputs: Sequence[Spec],
    *,
    domain: str = "",
    attrs: Mapping[str, Any] | None = None,
    constants: Mapping[int, Any] | None = None,
) -> tuple[Node, Graph]:
    """A graph holding one node; input i is named in{i}, output j out{j}.

    `constants` maps an input index to its known value (e.g. Reshape's shape, TopK's k).
    """
    values: dict[str, Value] = {}
    in_names: list[str] = []
    for i, spec in enumerate(inputs):
        if spec is None:
            in_names.append("")
            continue
        name = f"in{i}"
        in_names.append(name)
        values[name] = Value(name, tuple(spec[0]), spec[1], spec[2] if len(spec) > 2 else A)
    out_names = []
    for j, spec in enumerate(outputs):
        name = f"out{j}"
        out_names.append(name)
        values[name] = Value(name, tuple(spec[0]), spec[1], spec[2] if len(spec) > 2 else A)
    consts = {f"in{i}": np.asarray(v) for i, v in (constants or {}).items()}
    node = Node(
        name=f"{op_type}_0",
        op_type=op_type,
        domain=domain,
        inputs=tuple(in_names),
        outputs=tuple(out_names),
        attributes=MappingProxyType(dict(attrs or {})),
    )
    graph = Graph(
        name="g",
        nodes=(node,),
        values=MappingProxyType(values),
        inputs=tuple(n for n in in_names if n),
        outputs=tuple(out_names),
        constants=MappingProxyType(consts),
    )
    return node, graph
