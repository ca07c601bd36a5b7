"""Evaluate the small integer tensors of shape arithmetic once every input dim is bound.

Exporters compute Reshape targets, Slice bounds and Expand shapes at run time
(Shape -> Gather -> Concat -> Reshape). With concrete input dims all of that is constant;
onnx's data propagation covers part of it, and this table folds the rest so that shape
inference resolves every tensor. Only small tensors are folded (MAX_FOLD_ELEMENTS).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from onnx import helper

MAX_FOLD_ELEMENTS = 4096

Arrays = Sequence[np.ndarray | None]
Folder = Callable[[Arrays, dict[str, Any]], list[np.ndarray]]
FOLDERS: dict[str, Folder] = {}


def folder(*op_types: str) -> Callable[[Folder], Folder]:
    def decorate(fn: Folder) -> Folder:
        for op_type in op_types:
            FOLDERS[op_type] = fn
        return fn

    return decorate


def _axes(xs: Arrays, attrs: dict[str, Any], index: int) -> list[int] | None:
    if len(xs) > index and xs[index] is not None:
        return [int(a) for a in np.asarray(xs[index]).reshape(-1)]
    axes = attrs.get("axes")
    return list(axes) if axes is not None else None


def _elementwise(fn: Callable[..., np.ndarray]) -> Folder:
    def fold(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
        result = np.asarray(fn(*xs))
        return [result.astype(np.result_type(*[x.dtype for x in xs if x is not None]), copy=False)
                if result.dtype != np.bool_ else result]

    return fold


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):
        return np.trunc(a / b).astype(a.dtype)  # ONNX integer Div truncates toward zero
    return a / b


for _op, _fn in {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _int_div,
    "Mod": np.fmod, "Pow": np.power, "Neg": np.negative, "Abs": np.abs, "Sign": np.sign,
    "Floor": np.floor, "Ceil": np.ceil, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal,
    "Min": np.minimum, "Max": np.maximum,
}.items():
    FOLDERS[_op] = _elementwise(_fn)

for _op, _fn in {
    "Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or,
    "Xor": np.logical_xor, "Not": np.logical_not,
}.items():
    FOLDERS[_op] = lambda xs, attrs, _fn=_fn: [np.asarray(_fn(*xs))]


@folder("Identity")
def _identity(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    return [xs[0]]


@folder("Cast")
def _cast(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    return [xs[0].astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))]


@folder("Size")
def _size(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    return [np.array(xs[0].size, dtype=np.int64)]


@folder("Where")
def _where(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    return [np.where(xs[0], xs[1], xs[2])]


@folder("Unsqueeze")
def _unsqueeze(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    result = xs[0]
    axes = _axes(xs, attrs, 1) or []
    rank = result.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        result = np.expand_dims(result, axis)
    return [result]


@folder("Squeeze")
def _squeeze(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    axes = _axes(xs, attrs, 1)
    return [np.squeeze(xs[0], axis=None if axes is None else tuple(axes))]


@folder("Concat")
def _concat(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    return [np.concatenate([x for x in xs if x is not None], axis=attrs.get("axis", 0))]


@folder("Gather")
def _gather(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    return [np.take(xs[0], xs[1].astype(np.int64), axis=attrs.get("axis", 0))]


@folder("Slice")
def _slice(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    data = xs[0]
    starts = [int(v) for v in xs[1].reshape(-1)]
    ends = [int(v) for v in xs[2].reshape(-1)]
    axes = _axes(xs, {}, 3) or list(range(len(starts)))
    steps = _axes(xs, {}, 4) or [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    return [data[tuple(index)]]


@folder("Reshape")
def _reshape(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    shape = [int(v) for v in xs[1].reshape(-1)]
    if not attrs.get("allowzero", 0):
        shape = [xs[0].shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [xs[0].reshape(shape)]


@folder("Transpose")
def _transpose(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    return [np.transpose(xs[0], attrs.get("perm"))]


@folder("ConstantOfShape")
def _constant_of_shape(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    value = attrs.get("value")
    fill = value.reshape(-1)[0] if value is not None else np.float32(0)
    shape = [int(v) for v in xs[0].reshape(-1)]
    _check_size(math.prod(shape))
    return [np.full(shape, fill, dtype=np.asarray(fill).dtype)]


@folder("Range")
def _range(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    start, limit, delta = (x.reshape(()) for x in xs[:3])
    _check_size(max(0, math.ceil((limit - start) / delta)))
    return [np.arange(start, limit, delta, dtype=start.dtype)]


@folder("Expand")
def _expand(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    shape = np.broadcast_shapes(xs[0].shape, tuple(int(v) for v in xs[1].reshape(-1)))
    _check_size(math.prod(shape))
    return [np.broadcast_to(xs[0], shape).copy()]


@folder("Tile")
def _tile(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
    repeats = [int(v) for v in xs[1].reshape(-1)]
    _check_size(xs[0].size * math.prod(repeats))
    return [np.tile(xs[0], repeats)]


def _reduce(fn: Callable[..., np.ndarray]) -> Folder:
    def fold(xs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray]:
        axes = _axes(xs, attrs, 1)
        if not axes and attrs.get("noop_with_empty_axes", 0):
            return [xs[0]]
        keep = bool(attrs.get("keepdims", 1))
        return [np.asarray(fn(xs[0], axis=None if not axes else tuple(axes), keepdims=keep))]

    return fold


for _op, _fn in {"ReduceProd": np.prod, "ReduceSum": np.sum, "ReduceMax": np.max,
                 "ReduceMin": np.min}.items():
    FOLDERS[_op] = _reduce(_fn)


class FoldTooLarge(Exception):
    """The folded tensor would exceed MAX_FOLD_ELEMENTS."""


def _check_size(numel: int) -> None:
    if numel > MAX_FOLD_ELEMENTS:
        raise FoldTooLarge(numel)


_BROADCASTING = frozenset({
    "Add", "Sub", "Mul", "Div", "Mod", "Pow", "Min", "Max", "Equal", "Less", "Greater",
    "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Where",
})  # fmt: skip


def _check_output_size(op_type: str, xs: Arrays, attrs: dict[str, Any]) -> None:
    """Refuse before computing: a broadcast, a gather or a concat of small inputs can still
    make a large output ([4096, 1] + [1, 4096] is 16M elements)."""
    arrays = [np.asarray(x) for x in xs if x is not None]
    if op_type in _BROADCASTING and arrays:
        _check_size(math.prod(np.broadcast_shapes(*(a.shape for a in arrays))))
    elif op_type == "Concat":
        _check_size(sum(a.size for a in arrays))
    elif op_type == "Gather" and len(arrays) == 2:
        data, indices = arrays
        axis_len = data.shape[attrs.get("axis", 0)]
        _check_size(data.size // axis_len * indices.size if axis_len else 0)


def fold_node(op_type: str, inputs: Arrays, attrs: dict[str, Any]) -> list[np.ndarray] | None:
    """Outputs of a default-domain node whose inputs are all known, or None if not foldable."""
    fn = FOLDERS.get(op_type)
    if fn is None:
        return None
    try:
        _check_output_size(op_type, inputs, attrs)
        with np.errstate(all="ignore"):  # 1/0 and overflow end in a refusal, never a warning
            outputs = fn(inputs, attrs)
    except (FoldTooLarge, ValueError, TypeError, IndexError, KeyError, ZeroDivisionError,
            FloatingPointError, OverflowError, AttributeError,  # AttributeError: omitted input
            RuntimeError):  # numpy: "only supports up to 32 dimensions" (broadcast_shapes)
        return None
    if any(np.asarray(o).size > MAX_FOLD_ELEMENTS or np.asarray(o).dtype == object
           for o in outputs):  # object: strings, or an omitted input passed through
        return None
    return [np.asarray(o) for o in outputs]
