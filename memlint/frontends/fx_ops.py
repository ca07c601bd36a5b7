"""The one table from aten ops onto memlint's IR ops, spelled as ONNX (domain, op_type).

The cost formulas of memlint.costs are keyed by ONNX ops; this table lowers each aten call of a
torch.fx graph onto the ONNX op with the same semantics, so a torch graph is counted with the
same conventions as its ONNX export. What it cannot map returns None: the caller keeps the call as
an unmodelled node of domain "aten" (never a silent zero).

Choices (docs/torch.md lists them for users):

- `linear` is Gemm(x, W, b) with transB=1 (W is [out, in]); a 3-D or larger input is flattened
  to 2-D and back by two Reshape nodes, as torch's own decomposition (view, addmm, view) does.
  `addmm(b, x, W)` is Gemm(x, W, b); `mm`, `bmm`, `matmul` are MatMul; `baddbmm(c, a, b)` is
  MatMul(a, b, c): the addend is read, its add is not counted.
- The scaled_dot_product_attention family (sdpa and its flash / efficient / cudnn / math / cpu
  variants) is ONNX Attention (opset 23) on (B, H, S, d) inputs, with q_num_heads and
  kv_num_heads: costs.attention's fused count (Q@K^T, softmax, @V; the score matrix stays on
  chip). The math variant also writes its attention weights (its second output), and they count.
- silu is Swish (alpha=1, `x*sigmoid(x)`), gelu is Gelu with its `approximate` attribute,
  rsqrt is counted as Sqrt (1 FLOP per element), ne as Equal, log1p as Log and expm1 as Exp;
  diff (n=1) is a Sub per output element.
- Views move no bytes: view/_unsafe_view/flatten/unflatten are Reshape, squeeze and unsqueeze are
  Squeeze and Unsqueeze, every other aten view (any op whose schema says its output aliases its
  input: permute, transpose, t, expand, slice, select, split, unbind, alias, ...) is Identity,
  one node per output. A copy shows where torch makes one: clone, contiguous, _to_copy, copy and a
  reshape that cannot be a view become Cast (dtype change), Expand (the input is a broadcast
  view; the Expand reads the tensor before the broadcast), Transpose (a permuted view made dense;
  `perm` from the strides), Slice (another strided view made dense), or Identity when the layout
  is already the requested one (a clone that keeps the layout: functionalization inserts such
  clones where eager code aliases, e.g. dropout at inference).
- dropout at any train flag is Dropout (the identity: memlint lints inference); creation ops
  (full, zeros, ones, *_like, zero, arange) write only; empty allocates only (metadata); roll
  moves every element once (a whole-tensor Slice: read all, write all).
- In-place ops (add_, copy_, index_put_) are mapped as their functional form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx


@dataclass(frozen=True)
class Emit:
    """One IR node an aten call lowers to: an ONNX op over IR value names."""

    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    domain: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    suffix: str = ""  # appended to the node's name when a call lowers to several nodes


@dataclass(frozen=True)
class NewTensor:
    """A tensor that a lowering introduces (linear's 2-D view of a 3-D input)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype


class Call:
    """One aten call of an fx graph, its arguments bound to the op schema's argument names."""

    def __init__(
        self, node: fx.Node, name_of: Callable[[fx.Node], str], outputs: tuple[str, ...]
    ) -> None:
        self.node = node
        self.outputs = outputs  # IR value names of the results, "" for a non-tensor result
        self.new_tensors: list[NewTensor] = []
        self._name_of = name_of
        self.args = _bind(node)

    def get(self, name: str, default: Any = None) -> Any:
        """A non-tensor argument's value (a graph-computed size is its example value)."""
        value = self.args.get(name)
        if isinstance(value, fx.Node):
            value = value.meta.get("val")
        return default if value is None else value

    def tensor(self, name: str) -> str:
        """The IR name of a tensor argument; "" when it is absent or not a tensor."""
        value = self.args.get(name)
        return self._name_of(value) if is_tensor_node(value) else ""

    def tensors(self, name: str) -> tuple[str, ...]:
        """The IR names of the tensors in a list argument (cat's tensors, index's indices)."""
        value = self.args.get(name) or ()
        return tuple(self._name_of(v) for v in value if is_tensor_node(v))

    def meta(self, name: str) -> torch.Tensor | None:
        value = self.args.get(name)
        return value.meta.get("val") if is_tensor_node(value) else None

    @property
    def out(self) -> torch.Tensor:
        """The (first) result's example tensor."""
        val = self.node.meta.get("val")
        return val[0] if isinstance(val, (tuple, list)) else val

    def all_tensors(self) -> tuple[str, ...]:
        """Every tensor argument, in argument order (lists flattened)."""
        names: list[str] = []
        for value in self.args.values():
            items = value if isinstance(value, (list, tuple)) else (value,)
            names.extend(self._name_of(v) for v in items if is_tensor_node(v))
        return tuple(names)

    def emit(self, op_type: str, inputs: Sequence[str], **kwargs: Any) -> Emit:
        kwargs.setdefault("outputs", self.outputs)
        return Emit(op_type, _trim(inputs), **kwargs)

    def new_tensor(self, suffix: str, shape: Sequence[int], dtype: torch.dtype) -> str:
        name = f"{self.node.name}.{suffix}"
        self.new_tensors.append(NewTensor(name, tuple(int(d) for d in shape), dtype))
        return name


Lowering = Callable[[Call], "Sequence[Emit] | None"]


def is_tensor_node(value: Any) -> bool:
    return isinstance(value, fx.Node) and isinstance(value.meta.get("val"), torch.Tensor)


def _bind(node: fx.Node) -> dict[str, Any]:
    """The call's arguments by schema name (positional ones as arg0, arg1... without a schema)."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        bound = {f"arg{i}": a for i, a in enumerate(node.args)}
        bound.update(node.kwargs)
        return bound
    bound = {}
    for index, argument in enumerate(schema.arguments):
        if index < len(node.args) and not argument.kwarg_only:
            bound[argument.name] = node.args[index]
        elif argument.name in node.kwargs:
            bound[argument.name] = node.kwargs[argument.name]
        elif argument.has_default_value():
            bound[argument.name] = argument.default_value
    return bound


def _trim(inputs: Sequence[str]) -> tuple[str, ...]:
    """Inputs without trailing omitted optionals ("" marks an omitted optional input)."""
    names = list(inputs)
    while names and not names[-1]:
        names.pop()
    return tuple(names)


def _ints(value: Any) -> list[int]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return [int(v) for v in items]


# --- generic lowerings ------------------------------------------------------------------------


def op(
    op_type: str,
    *names: str,
    domain: str = "",
    attrs: Callable[[Call], dict[str, Any]] | None = None,
) -> Lowering:
    """The call as one `op_type` node reading the named tensor arguments in this order (every
    tensor argument when none is named); `attrs` computes the node's attributes."""

    def lower(call: Call) -> list[Emit]:
        inputs = [call.tensor(n) for n in names] if names else call.all_tensors()
        return [call.emit(op_type, inputs, domain=domain, attributes=attrs(call) if attrs else {})]

    return lower


def _axis(arg: str = "dim") -> Callable[[Call], dict[str, Any]]:
    return lambda call: {"axis": int(call.get(arg, 0))}


def _reduction(call: Call) -> dict[str, Any]:
    dims = call.get("dim")
    attrs: dict[str, Any] = {"keepdims": int(bool(call.get("keepdim", False)))}
    if dims is not None and dims != []:
        attrs["axes"] = _ints(dims)
    return attrs


def view_op(call: Call) -> list[Emit]:
    """A view: moves no bytes. One metadata node per result (a split gives several)."""
    name = call.node.target._opname.rstrip("_")
    op_type = VIEW_OP_TYPES.get(name, "Identity")
    source = call.all_tensors()[:1]
    return [
        call.emit(op_type, source, outputs=(out,), suffix=f"{i}" if len(call.outputs) > 1 else "")
        for i, out in enumerate(call.outputs)
        if out
    ]


# --- matrix products, convolution, attention --------------------------------------------------


def _linear(call: Call) -> list[Emit] | None:
    x, weight, bias = call.tensor("input"), call.tensor("weight"), call.tensor("bias")
    x_meta, out = call.meta("input"), call.out
    if x_meta is None or x_meta.dim() == 0:
        return None
    if x_meta.dim() == 1:  # a vector: MatMul's count (2*N*K) holds; the bias is read, not counted
        return [call.emit("MatMul", (x, weight, bias))]
    gemm = {"transB": 1}
    if x_meta.dim() == 2:
        return [call.emit("Gemm", (x, weight, bias), attributes=gemm)]
    rows, k, n = math.prod(x_meta.shape[:-1]), x_meta.shape[-1], out.shape[-1]
    flat = call.new_tensor("flat_in", (rows, k), x_meta.dtype)
    product = call.new_tensor("flat_out", (rows, n), out.dtype)
    return [
        call.emit("Reshape", (x,), outputs=(flat,), suffix="flatten"),
        call.emit("Gemm", (flat, weight, bias), outputs=(product,), attributes=gemm),
        call.emit("Reshape", (product,), suffix="unflatten"),
    ]


def _conv_attrs(call: Call) -> dict[str, Any]:
    attrs: dict[str, Any] = {"group": int(call.get("groups", 1))}
    for arg, attr in (("stride", "strides"), ("dilation", "dilations")):
        if call.get(arg) is not None:
            attrs[attr] = _ints(call.get(arg))
    padding = call.get("padding")
    if isinstance(padding, str):
        attrs["auto_pad"] = padding
    elif padding is not None:
        attrs["pads"] = _ints(padding) * 2
    return attrs


def _convolution(call: Call) -> list[Emit]:
    op_type = "ConvTranspose" if call.get("transposed", False) else "Conv"
    inputs = (call.tensor("input"), call.tensor("weight"), call.tensor("bias"))
    return [call.emit(op_type, inputs, attributes=_conv_attrs(call))]


def _attention(mask: str) -> Lowering:
    """An sdpa-family call as ONNX Attention(Q, K, V, mask); `mask` names the mask argument."""

    def lower(call: Call) -> list[Emit] | None:
        q, k = call.meta("query"), call.meta("key")
        if q is None or k is None or q.dim() not in (3, 4):
            return None
        heads = (int(q.shape[1]), int(k.shape[1])) if q.dim() == 4 else (1, 1)
        attrs: dict[str, Any] = {
            "q_num_heads": heads[0],
            "kv_num_heads": heads[1],
            "is_causal": int(bool(call.get("is_causal", False))),
        }
        if call.get("scale") is not None:
            attrs["scale"] = float(call.get("scale"))
        inputs = (call.tensor("query"), call.tensor("key"), call.tensor("value"), call.tensor(mask))
        return [call.emit("Attention", inputs, attributes=attrs)]

    return lower


# --- copies -----------------------------------------------------------------------------------


def _dense_order(t: torch.Tensor) -> list[int] | None:
    """The dims from outermost to innermost in memory, when `t` is a dense (gap-free) layout."""
    order = sorted(range(t.dim()), key=lambda i: -t.stride(i))
    expected = 1
    for dim in reversed(order):
        if t.shape[dim] != 1 and t.stride(dim) != expected:
            return None
        expected *= int(t.shape[dim])
    return order


def _broadcast(t: torch.Tensor) -> bool:
    return any(s == 0 and n > 1 for s, n in zip(t.stride(), t.shape))


def _before_broadcast(node: Any) -> Any:
    """Walk back through views from a broadcast view to the tensor it broadcasts."""
    while is_tensor_node(node) and _broadcast(node.meta["val"]) and is_view_call(node):
        node = node.args[0]
    return node


def copy_of(call: Call, source: str, *, dtype: torch.dtype | None = None) -> list[Emit]:
    """A copy of tensor argument `source` into the call's result (see the module docstring)."""
    src, out = call.meta(source), call.out
    if src is None or out is None:
        return [call.emit("Identity", (call.tensor(source),))]
    if (dtype or out.dtype) != src.dtype:
        label = str(out.dtype).removeprefix("torch.")
        return [call.emit("Cast", (call.tensor(source),), attributes={"to": label})]
    if _broadcast(src) or src.numel() != out.numel():
        base = _before_broadcast(call.args.get(source))
        name = call._name_of(base) if is_tensor_node(base) else call.tensor(source)
        return [call.emit("Expand", (name,))]
    same = src.stride() == out.stride() or (src.is_contiguous() and out.is_contiguous())
    if same and tuple(src.shape) == tuple(out.shape):
        return [call.emit("Identity", (call.tensor(source),))]
    order = _dense_order(src)
    if order is not None and order != sorted(order):
        perm = [order.index(i) for i in range(src.dim())]
        return [call.emit("Transpose", (call.tensor(source),), attributes={"perm": perm})]
    if order is not None:  # dense and in order: a plain view would have done
        return [call.emit("Identity", (call.tensor(source),))]
    return [call.emit("Slice", (call.tensor(source),))]


def _copy(source: str) -> Lowering:
    return lambda call: copy_of(call, source)


def _to(call: Call) -> list[Emit]:
    return copy_of(call, "self")


def _reshape(call: Call) -> list[Emit]:
    src = call.meta("self")
    if src is None or _viewable(src, call.out.shape):
        return [call.emit("Reshape", call.all_tensors()[:1])]
    return copy_of(call, "self")


def _viewable(src: torch.Tensor, shape: Sequence[int]) -> bool:
    try:
        torch.empty_strided(src.shape, src.stride(), device="meta").view(shape)
    except (RuntimeError, TypeError):
        return False
    return True


def _vector_norm(call: Call) -> list[Emit] | None:
    op_type = {1: "ReduceL1", 2: "ReduceL2"}.get(call.get("ord", 2))
    if op_type is None:
        return None
    return [call.emit(op_type, (call.tensor("self"),), attributes=_reduction(call))]


# --- pooling, resize --------------------------------------------------------------------------


def _pool(op_type: str) -> Lowering:
    return op(op_type, "self", attrs=lambda c: {"kernel_shape": _ints(c.get("kernel_size"))})


def _adaptive_pool(windowed: str, global_op: str) -> Lowering:
    def lower(call: Call) -> list[Emit] | None:
        src, out = call.meta("self"), call.out
        if src is None:
            return None
        spatial = len(_ints(call.get("output_size")))
        sizes = list(zip(src.shape[-spatial:], out.shape[-spatial:]))
        if all(o == 1 for _, o in sizes):
            return [call.emit(global_op, (call.tensor("self"),))]
        kernel = [math.ceil(int(i) / max(int(o), 1)) for i, o in sizes]
        return [call.emit(windowed, (call.tensor("self"),), attributes={"kernel_shape": kernel})]

    return lower


def _resize(mode: str) -> Lowering:
    return op("Resize", "self", attrs=lambda c: {"mode": mode})


def _resize_vec(mode: str) -> Lowering:
    return op("Resize", "input", attrs=lambda c: {"mode": mode})


# --- the table --------------------------------------------------------------------------------

VIEW_OP_TYPES = {
    "view": "Reshape", "_unsafe_view": "Reshape", "view_as": "Reshape", "flatten": "Reshape",
    "unflatten": "Reshape", "_reshape_alias": "Reshape", "reshape_as": "Reshape",
    "squeeze": "Squeeze", "unsqueeze": "Unsqueeze",
}  # fmt: skip

ELEMENTWISE = {
    "add": "Add", "sub": "Sub", "rsub": "Sub", "mul": "Mul", "div": "Div", "true_divide": "Div",
    "floor_divide": "Div", "remainder": "Mod", "fmod": "Mod", "pow": "Pow", "square": "Mul",
    "neg": "Neg", "abs": "Abs", "exp": "Exp", "expm1": "Exp", "log": "Log", "log1p": "Log",
    "sqrt": "Sqrt", "rsqrt": "Sqrt", "reciprocal": "Reciprocal", "tanh": "Tanh",
    "sigmoid": "Sigmoid", "relu": "Relu", "erf": "Erf", "sin": "Sin", "cos": "Cos",
    "floor": "Floor", "ceil": "Ceil", "round": "Round", "sign": "Sign", "isnan": "IsNaN",
    "isinf": "IsInf", "logical_not": "Not", "bitwise_not": "Not", "logical_and": "And",
    "bitwise_and": "And", "__and__": "And", "logical_or": "Or", "bitwise_or": "Or",
    "__or__": "Or", "logical_xor": "Xor", "bitwise_xor": "Xor", "__xor__": "Xor",
    "eq": "Equal", "ne": "Equal", "lt": "Less", "le": "LessOrEqual", "gt": "Greater",
    "ge": "GreaterOrEqual", "maximum": "Max", "minimum": "Min", "max.other": "Max",
    "min.other": "Min", "where": "Where", "clamp": "Clip", "clamp_min": "Clip",
    "clamp_max": "Clip", "clip": "Clip", "hardtanh": "Clip", "leaky_relu": "LeakyRelu",
    "elu": "Elu", "selu": "Selu", "celu": "Celu", "softplus": "Softplus",
    "hardsigmoid": "HardSigmoid", "hardswish": "HardSwish", "mish": "Mish",
    "prelu": "PRelu", "_prelu_kernel": "PRelu",
}  # fmt: skip

REDUCTIONS = {
    "sum": "ReduceSum", "mean": "ReduceMean", "amax": "ReduceMax", "amin": "ReduceMin",
    "max": "ReduceMax", "min": "ReduceMin", "prod": "ReduceProd", "any": "ReduceMax",
    "all": "ReduceMin", "logsumexp": "ReduceLogSumExp",
}  # fmt: skip

LOWERINGS: dict[str, Lowering] = {
    **{name: op(onnx) for name, onnx in ELEMENTWISE.items()},
    **{name: op(onnx, "self", attrs=_reduction) for name, onnx in REDUCTIONS.items()},
    "masked_fill": op("Where", "mask", "value", "self"),
    "diff": lambda c: (
        [c.emit("Sub", (c.tensor("self"), c.tensor("prepend"), c.tensor("append")))]
        if c.get("n", 1) == 1 else None
    ),
    "gelu": op("Gelu", "self", attrs=lambda c: {"approximate": c.get("approximate", "none")}),
    "silu": op("Swish", "self", attrs=lambda c: {"alpha": 1.0}),
    "argmax": op("ArgMax", "self", attrs=lambda c: {"axis": int(c.get("dim", 0) or 0)}),
    "argmin": op("ArgMin", "self", attrs=lambda c: {"axis": int(c.get("dim", 0) or 0)}),
    "cumsum": op("CumSum", "self", attrs=_axis()),
    "cumprod": op("CumProd", "self", attrs=_axis()),
    "softmax": op("Softmax", "self", attrs=_axis()),
    "_softmax": op("Softmax", "self", attrs=_axis()),
    "_safe_softmax": op("Softmax", "self", attrs=_axis()),
    "log_softmax": op("LogSoftmax", "self", attrs=_axis()),
    "_log_softmax": op("LogSoftmax", "self", attrs=_axis()),
    "topk": op("TopK", "self", attrs=_axis()),
    "linalg_vector_norm": _vector_norm,
    # matrix products
    "mm": op("MatMul", "self", "mat2"),
    "bmm": op("MatMul", "self", "mat2"),
    "matmul": op("MatMul", "self", "other"),
    "addmm": op("Gemm", "mat1", "mat2", "self"),
    "baddbmm": op("MatMul", "batch1", "batch2", "self"),
    "linear": _linear,
    "einsum": op("Einsum", attrs=lambda c: {"equation": c.get("equation")}),
    "convolution": _convolution,
    "_convolution": _convolution,
    **{f"conv{d}d": op("Conv", "input", "weight", "bias", attrs=_conv_attrs) for d in (1, 2, 3)},
    **{
        f"conv_transpose{d}d": op("ConvTranspose", "input", "weight", "bias", attrs=_conv_attrs)
        for d in (1, 2, 3)
    },
    "scaled_dot_product_attention": _attention("attn_mask"),
    "_scaled_dot_product_flash_attention": _attention(""),
    "_scaled_dot_product_flash_attention_for_cpu": _attention("attn_mask"),
    "_scaled_dot_product_efficient_attention": _attention("attn_bias"),
    "_scaled_dot_product_cudnn_attention": _attention("attn_bias"),
    "_scaled_dot_product_attention_math": _attention("attn_mask"),
    "_scaled_dot_product_attention_math_for_mps": _attention("attn_mask"),
    # normalization
    "layer_norm": op(
        "LayerNormalization", "input", "weight", "bias",
        attrs=lambda c: {"axis": -len(c.get("normalized_shape")), "epsilon": c.get("eps", 1e-5)},
    ),
    "native_layer_norm": op(
        "LayerNormalization", "input", "weight", "bias",
        attrs=lambda c: {"axis": -len(c.get("normalized_shape")), "epsilon": c.get("eps", 1e-5)},
    ),
    "rms_norm": op(
        "RMSNormalization", "input", "weight",
        attrs=lambda c: {"axis": -len(c.get("normalized_shape"))},
    ),
    "_fused_rms_norm": op(
        "RMSNormalization", "input", "weight",
        attrs=lambda c: {"axis": -len(c.get("normalized_shape"))},
    ),
    "group_norm": op(
        "GroupNormalization", "input", "weight", "bias",
        attrs=lambda c: {"num_groups": int(c.get("num_groups"))},
    ),
    "native_group_norm": op(
        "GroupNormalization", "input", "weight", "bias",
        attrs=lambda c: {"num_groups": int(c.get("group"))},
    ),
    "instance_norm": op("InstanceNormalization", "input", "weight", "bias"),
    "batch_norm": op(
        "BatchNormalization", "input", "weight", "bias", "running_mean", "running_var",
        attrs=lambda c: {"training_mode": int(bool(c.get("training", False)))},
    ),
    "_native_batch_norm_legit_no_training": op(
        "BatchNormalization", "input", "weight", "bias", "running_mean", "running_var"
    ),
    "_native_batch_norm_legit": op(
        "BatchNormalization", "input", "weight", "bias", "running_mean", "running_var",
        attrs=lambda c: {"training_mode": int(bool(c.get("training", False)))},
    ),
    # data movement
    "cat": op("Concat", attrs=_axis()),
    "concat": op("Concat", attrs=_axis()),
    "concatenate": op("Concat", attrs=_axis()),
    "stack": op("Concat", attrs=_axis()),
    "embedding": op("Gather", "weight", "indices", attrs=lambda c: {"axis": 0}),
    "index_select": op("Gather", "self", "index", attrs=_axis()),
    "index": lambda c: [c.emit("GatherND", (c.tensor("self"), *c.tensors("indices")))],
    "gather": op("GatherElements", "self", "index", attrs=_axis()),
    "scatter": op("ScatterElements", "self", "index", "src", attrs=_axis()),
    "scatter_add": op(
        "ScatterElements", "self", "index", "src",
        attrs=lambda c: {"axis": int(c.get("dim", 0)), "reduction": "add"},
    ),
    "scatter_reduce": op(
        "ScatterElements", "self", "index", "src",
        attrs=lambda c: {"axis": int(c.get("dim", 0)), "reduction": c.get("reduce", "sum")},
    ),
    "index_put": lambda c: [
        c.emit(
            "ScatterND",
            (c.tensor("self"), *c.tensors("indices"), c.tensor("values")),
            attributes={"reduction": "add" if c.get("accumulate", False) else "none"},
        )
    ],
    "slice_scatter": op("ScatterND", "self", "src"),
    "select_scatter": op("ScatterND", "self", "src"),
    "diagonal_scatter": op("ScatterND", "self", "src"),
    "as_strided_scatter": op("ScatterND", "self", "src"),
    "index_copy": op("ScatterND", "self", "index", "source"),
    "index_add": lambda c: [  # out[index[i]] += alpha * source[i] along dim
        c.emit("ScatterND", (c.tensor("self"), c.tensor("index"), c.tensor("source")),
               attributes={"reduction": "add"})
    ],
    "constant_pad_nd": op("Pad", "self"),
    "pad": op("Pad", "self"),
    "repeat": op("Tile", "self"),
    "repeat_interleave": op("Tile", "self"),
    "tril": op("Trilu", "self", attrs=lambda c: {"upper": 0}),
    "triu": op("Trilu", "self", attrs=lambda c: {"upper": 1}),
    "arange": op("Range", attrs=lambda c: {}),
    **{
        name: lambda c: [c.emit("ConstantOfShape", ())]
        for name in (
            "full", "zeros", "ones", "full_like", "zeros_like", "ones_like", "new_full",
            "new_zeros", "new_ones", "scalar_tensor", "fill", "rand", "randn", "rand_like",
            "randn_like", "randint", "randint_like", "zero",
        )
    },  # fmt: skip
    # roll: every element moved once (read all, write all), as a whole-tensor copy
    "roll": lambda c: [c.emit("Slice", (c.tensor("self"),))],
    **{
        name: lambda c: [c.emit("Identity", ())]
        for name in ("empty", "empty_like", "empty_strided", "new_empty", "empty_permuted")
    },
    "dropout": op("Dropout", "input"),
    "native_dropout": op("Dropout", "input"),
    "feature_dropout": op("Dropout", "input"),
    "alpha_dropout": op("Dropout", "input"),
    "lift_fresh_copy": op("Identity", "self"),
    "clone": _copy("self"),
    "contiguous": _copy("self"),
    "_to_copy": _to,
    "to": _to,
    "type_as": _to,
    "copy": _copy("src"),
    "reshape": _reshape,
    "_unsafe_view": view_op,
    # pooling and resize
    **{f"max_pool{d}d": _pool("MaxPool") for d in (1, 2, 3)},
    **{f"max_pool{d}d_with_indices": _pool("MaxPool") for d in (1, 2, 3)},
    **{f"avg_pool{d}d": _pool("AveragePool") for d in (1, 2, 3)},
    **{
        f"{prefix}adaptive_avg_pool{d}d": _adaptive_pool("AveragePool", "GlobalAveragePool")
        for d in (1, 2, 3) for prefix in ("", "_")
    },  # fmt: skip
    **{f"adaptive_max_pool{d}d": _adaptive_pool("MaxPool", "GlobalMaxPool") for d in (1, 2, 3)},
    **{f"upsample_nearest{d}d": _resize("nearest") for d in (1, 2, 3)},
    "upsample_linear1d": _resize("linear"),
    "upsample_bilinear2d": _resize("linear"),
    "_upsample_bilinear2d_aa": _resize("linear"),
    "upsample_trilinear3d": _resize("linear"),
    "upsample_bicubic2d": _resize("cubic"),
}
for _name, _mode in (("upsample_nearest2d.vec", "nearest"), ("upsample_bilinear2d.vec", "linear")):
    LOWERINGS[_name] = _resize_vec(_mode)


def is_view_op(target: Any) -> bool:
    """An aten op whose result aliases its input without writing it (schema `Tensor(a)`)."""
    schema = getattr(target, "_schema", None)
    if schema is None or not schema.returns:
        return False
    alias = schema.returns[0].alias_info
    return alias is not None and not alias.is_write


def is_view_call(node: Any) -> bool:
    return isinstance(node, fx.Node) and node.op == "call_function" and is_view_op(node.target)


def lowering_of(target: Any) -> Lowering | None:
    """The lowering of an aten op overload; None for an op the table does not map."""
    if not isinstance(target, torch._ops.OpOverload) or target.namespace != "aten":
        return None
    name = target._opname
    if name.endswith("_") and not name.startswith("__"):
        name = name[:-1]  # in-place: lowered as its functional form
    found = LOWERINGS.get(f"{name}.{target._overloadname}") or LOWERINGS.get(name)
    if found is not None:
        return found
    return view_op if is_view_op(target) else None


