"""The one table of the ops memlint knows, keyed by (domain, op_type) as the ONNX spec spells
them: each op's cost formula and its facts, given together in one registration.

Three explicit outcomes for every node: a formula counts it, it is declared to move no data
(metadata-only ops), or it is unmodelled (bytes reported as a lower bound, never zero).

A formula assumes the shapes its op defines. When a node's shapes break that (an output
whose shape could not be derived, a rank short of the op's), the formula's IndexError,
KeyError or ValueError (`memlint.errors.SHAPE_MISMATCH`) makes the node
UNRESOLVED with a note saying why (rule ML901 names it) and a debug log line; the rest of the
graph is costed. Any other exception is a bug in the formula: memlint.core.report.analyse
stops the run naming the op and node.

## Op facts

Every registration records an `OpInfo`: the op's family (`matmul`, `conv`, `attention`,
`normalization`, `reduction`, `data movement`, `control flow`, `elementwise`; the report colours
ops by it, and an op the table does not know is `other`) and its traits, which analyses and
rules read instead of keeping lists of op names:

- `elementwise`: output element i is computed from the input elements at i (after
  broadcasting), so a fusing compiler can chain it (the fusion rules ML102 and ML107);
- `copy`: reads and writes data without arithmetic (Transpose, Concat, Gather, Cast, ...);
- `reduction`: combines elements along axes or windows (ReduceSum, Softmax, TopK, pooling);
- `metadata`: moves no data, no FLOPs, no bytes (Shape, Constant, and every view);
- `view`: output 0 aliases input 0 and allocates nothing (Reshape, Squeeze, Unsqueeze, Flatten,
  Identity, Dropout, ...): liveness frees the buffer after the last use of any of its views,
  and fusion looks through it.

`op_info(domain, op_type)` (or `op_info_of(node)`) answers for any registered op, None for an
unknown one; `family_of(domain, op_type)` gives `other` for an unknown one.

## Adding an op

One registration, formula and facts together, plus a test with the count derived by hand:

```python
@register("MyOp", domain="com.example", info=OpInfo("elementwise", elementwise=True))
def _my_op(ctx: CostContext) -> OpCost:
    return ctx.cost(2 * ctx.out_numel())  # mul, add per output element
```

An op of a family that already has a factory takes the factory's formula, whose facts come
with it: `add_formula("ReduceFoo", reduction(1))`. An op that moves no data is declared with
`register_metadata("MyView", view=True)`. Registering an op twice raises RegistrationError.
Packages add the ops of their own domain the same way, through the `memlint.costs` entry point
group (memlint.costs.plugins), loaded the first time the table is asked about an op.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import EntryPoint
from typing import Any

import numpy as np

from memlint.costs import plugins, quantized
from memlint.costs.model import ZERO_BYTES, ByteCounts, CostStatus, OpCost
from memlint.errors import SHAPE_MISMATCH, MemlintError, RegistrationError
from memlint.ir import ComputeUnit, DType, Graph, Node, Value, ValueKind

log = logging.getLogger(__name__)

# Nodes whose inputs are all constants are folded at load time by runtimes, except these,
# which runtimes keep on purpose (QDQ pairs feed quantized kernels) or which are not pure.
NEVER_FOLDED = frozenset(
    {
        *quantized.QDQ,
        ("", "RandomNormal"),
        ("", "RandomUniform"),
        ("", "RandomNormalLike"),
        ("", "RandomUniformLike"),
        ("", "Multinomial"),
        ("", "Bernoulli"),
    }
)


@dataclass(frozen=True)
class CostContext:
    """What a formula sees: the node, its input and output tensors, and known constants."""

    node: Node
    graph: Graph

    @cached_property
    def quantized(self) -> quantized.QuantizedView:
        """How the graph's Q/DQ nodes fold (memlint.costs.quantized): inputs and outputs below
        are the tensors as the runtime reads and writes them (a dequantized weight at its stored
        width)."""
        return quantized.view_of(self.graph, op_info_of)

    @cached_property  # looked up once per node: formulas ask for them several times
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self.quantized.read(self.graph, name) for name in self.node.inputs)

    @cached_property
    def outputs(self) -> tuple[Value | None, ...]:
        return tuple(self.quantized.written(self.graph, name) for name in self.node.outputs)

    def input(self, index: int) -> Value | None:
        """The index-th input, or None when it is absent or omitted."""
        if index >= len(self.node.inputs):
            return None
        return self.quantized.read(self.graph, self.node.inputs[index])

    def output(self, index: int) -> Value | None:
        if index >= len(self.node.outputs):
            return None
        return self.quantized.written(self.graph, self.node.outputs[index])

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
        """The dtype arithmetic runs in: the stored dtype when every float input is dequantized
        (memlint.costs.quantized), else the first floating input, else the first input."""
        stored = quantized.compute_dtype(self.graph, self.node, self.quantized)
        if stored is not None:
            return stored
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

FAMILIES = (
    "matmul", "conv", "attention", "normalization", "reduction", "data movement", "control flow",
    "elementwise",
)  # fmt: skip  (the legend order of a report's colours)
OTHER = "other"  # the family of an op the table does not know
BUILTIN = "memlint"  # the origin of the formulas memlint ships


@dataclass(frozen=True)
class OpInfo:
    """What an op is, beside what it costs: given once with its registration (once per factory
    for a family of ops).

    Traits are independent (Cast is element-wise and a copy); a view is always metadata."""

    family: str  # one of FAMILIES
    elementwise: bool = False  # output element i is computed from the input elements at i
    #                           (after broadcasting): a fusing compiler can chain it
    copy: bool = False  # reads and writes data, no arithmetic (layout, dtype, gather, concat)
    reduction: bool = False  # combines elements along axes or windows (a kernel sees whole rows)
    view: bool = False  # output 0 aliases input 0: allocates nothing, moves no bytes
    metadata: bool = False  # moves no data: no FLOPs, no bytes (every view; Shape, Constant)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise RegistrationError(f"unknown op family {self.family!r}: one of {FAMILIES}")
        if self.view and not self.metadata:
            raise RegistrationError("a view moves no data: declare it with register_metadata")


@dataclass(frozen=True)
class Formula:
    """A cost formula with the facts of the ops it counts. A factory returns one, so a family
    of ops (all unary element-wise ops, all reductions) states its facts once."""

    cost: CostFn
    info: OpInfo

    def computing_in(self, index: int) -> Formula:
        """This formula with the arithmetic in the dtype of input `index`: the QLinear ops of
        onnxruntime compute on their int8/uint8 tensor, not on the float scales beside it."""
        cost = self.cost

        @functools.wraps(cost)  # still the formula of its family's module
        def formula(ctx: CostContext) -> OpCost:
            counted, data = cost(ctx), ctx.input(index)
            if data is None:
                return counted
            return dataclasses.replace(counted, compute_dtype=data.dtype)

        return Formula(formula, self.info)


@dataclass(frozen=True)
class Registration:
    """One row of the table: the op's formula (None: it moves no data), facts and origin."""

    cost: CostFn | None
    info: OpInfo
    origin: str  # BUILTIN or the plugin that registered it


@dataclass
class _Plugins:
    """Loading state of the `memlint.costs` plugins (memlint.costs.plugins)."""

    loaded: bool = False
    error: MemlintError | None = None  # a failed load fails every later lookup the same way
    origin: str = BUILTIN  # who is registering now
    lock: threading.RLock = field(default_factory=threading.RLock)
    ready: bool = False  # loaded without error: lookups need no check


_TABLE: dict[tuple[str, str], Registration] = {}
_PLUGINS = _Plugins()


def _key(domain: str, op_type: str) -> tuple[str, str]:
    return ("" if domain == "ai.onnx" else domain, op_type)


def _qualified(key: tuple[str, str]) -> str:
    return f"{key[0] or 'ai.onnx'}::{key[1]}"


def _claim(key: tuple[str, str], row: Registration) -> None:
    origin = _PLUGINS.origin
    if origin != BUILTIN and key[0] in plugins.RESERVED_DOMAINS:
        raise RegistrationError(
            f"{_qualified(key)} is in a domain memlint models itself; a plugin registers the ops "
            "of its own domain"
        )
    if key in _TABLE:
        raise RegistrationError(
            f"a cost formula for {_qualified(key)} exists already ({_TABLE[key].origin})"
        )
    _TABLE[key] = row


def register(*op_types: str, domain: str = "", info: OpInfo) -> Callable[[CostFn], CostFn]:
    """Decorator: `fn` is the cost formula of every op type named, and `info` their facts."""

    def decorate(fn: CostFn) -> CostFn:
        for op_type in op_types:
            add_formula(op_type, Formula(fn, info), domain=domain)
        return fn

    return decorate


def add_formula(op_type: str, formula: Formula, *, domain: str = "") -> None:
    """Register one op with a Formula (what the factories of a family of ops return)."""
    key = _key(domain, op_type)
    if not isinstance(formula, Formula):
        raise RegistrationError(
            f"{_qualified(key)}: add_formula takes a Formula(cost, info), got {formula!r}"
        )
    if formula.info.metadata:
        raise RegistrationError(f"{_qualified(key)}: an op that moves no data has no formula")
    _claim(key, Registration(formula.cost, formula.info, _PLUGINS.origin))


def register_metadata(
    *op_types: str, domain: str = "", view: bool = False, family: str = "data movement"
) -> None:
    """Declare ops that change metadata only and move no bytes (Shape, Constant); `view`: output
    0 is a view of input 0 (Reshape, Squeeze), allocating nothing."""
    info = OpInfo(family, view=view, metadata=True)
    for op_type in op_types:
        _claim(_key(domain, op_type), Registration(None, info, _PLUGINS.origin))


def op_info(domain: str, op_type: str) -> OpInfo | None:
    """The facts of a registered op; None for an op the table does not know."""
    if not _PLUGINS.ready:
        _load_plugins()
    row = _TABLE.get(("" if domain == "ai.onnx" else domain, op_type))
    return row.info if row is not None else None


def origin_of(domain: str, op_type: str) -> str | None:
    """Who registered the op: BUILTIN or the cost plugin's name; None for an unknown op."""
    if not _PLUGINS.ready:
        _load_plugins()
    row = _TABLE.get(("" if domain == "ai.onnx" else domain, op_type))
    return row.origin if row is not None else None


def op_info_of(node: Node) -> OpInfo | None:
    """op_info of anything with a domain and an op_type (an IR Node, a report's NodeResult)."""
    return op_info(node.domain, node.op_type)


def family_of(domain: str, op_type: str) -> str:
    """The op's family, OTHER for an op the table does not know."""
    info = op_info(domain, op_type)
    return info.family if info is not None else OTHER


def is_registered(op_type: str, domain: str = "") -> bool:
    _load_plugins()
    return _key(domain, op_type) in _TABLE


def registered_ops() -> list[tuple[str, str]]:
    """Every (domain, op_type) of the table, plugins' ops included."""
    _load_plugins()
    return sorted(_TABLE)


def _load_plugins() -> None:
    """Load the `memlint.costs` plugins, once (see memlint.costs.plugins); a failed load fails
    every later lookup with the same error."""
    state = _PLUGINS
    if not state.loaded:
        with state.lock:
            if not state.loaded and state.origin == BUILTIN:  # not asked by a loading plugin
                try:
                    for ep in plugins.installed():
                        _load_plugin(ep)
                except plugins.CostPluginError as exc:
                    state.error = exc
                except Exception as exc:  # noqa: BLE001 - e.g. unreadable package metadata
                    state.error = plugins.CostPluginError(
                        f"cost plugins could not be listed: {type(exc).__name__}: {exc}"
                    )
                finally:
                    state.loaded = True
                    state.ready = state.error is None
    if state.error is not None:
        raise plugins.CostPluginError(str(state.error)) from state.error.__cause__


def _load_plugin(ep: EntryPoint) -> None:
    name = plugins.plugin_name(ep)
    before = set(_TABLE)
    _PLUGINS.origin = name
    try:
        plugins.run(ep)
    except RegistrationError as exc:
        raise plugins.CostPluginError(f"cost plugin {name}: {exc}") from exc
    except Exception as exc:  # any import failure stops the run, naming the plugin
        raise plugins.CostPluginError(
            f"cost plugin {name} failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        _PLUGINS.origin = BUILTIN
    if not set(_TABLE) - before:
        raise plugins.CostPluginError(
            f"cost plugin {name} registers no ops (register them when the module is imported, "
            "or name a function that registers them)"
        )


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


def cost_keys(graph: Graph) -> Callable[[Node], tuple | None]:
    """key(node): what the cost of a node of `graph` depends on. Two nodes of the graph with
    equal keys have equal costs (identical layers are costed once); None when that cannot be
    said cheaply: a node holding subgraphs, an op of a plugin (its formula may read anything),
    every node of a graph with Q/DQ nodes (their folding reads neighbours).

    memlint's formulas read the node's op, attributes and input and output names (omitted or
    not), each input and output tensor's shape, dtype and kind, the known values of inputs,
    and whether an output is a graph output (a Concat into the KV cache), nothing else: all of
    it is in the key. Attributes count by identity (frontends share one mapping between nodes
    with identical attributes), so a key holds only while the graph lives."""
    if not _PLUGINS.ready:
        _load_plugins()
    plain = quantized.view_of(graph, op_info_of) is quantized.EMPTY_VIEW
    values, constants, outputs = graph.values, graph.constants, frozenset(graph.outputs)
    table = _TABLE
    known_keys: dict[str, tuple] = {}  # a constant's key, once per tensor (it may be 32 kB)

    def key(node: Node) -> tuple | None:
        if node.subgraphs or not plain:
            return None
        row = table.get(("" if node.domain == "ai.onnx" else node.domain, node.op_type))
        if row is not None and row.origin != BUILTIN:
            return None
        read = []
        for name in node.inputs:
            if not name:
                read.append(None)
                continue
            value = values.get(name)
            if name in known_keys:
                known = known_keys[name]
            else:
                raw = constants.get(name)
                known = known_keys[name] = None if raw is None else _value_key(raw)
            read.append((None if value is None else (value.shape, value.dtype, value.kind), known))
        written = []
        for name in node.outputs:
            value = values.get(name) if name else None
            written.append(None if value is None else (
                value.shape, value.dtype, value.kind, name in outputs
            ))
        return (node.domain, node.op_type, id(node.attributes), tuple(read), tuple(written))

    return key


def _value_key(value: Any) -> tuple:
    array = np.asarray(value)
    return (array.dtype.str, array.shape, array.tobytes())


def cost_of(node: Node, graph: Graph) -> OpCost:
    """The cost of one node of `graph`: one of the three outcomes, never a silent zero."""
    if not _PLUGINS.ready:
        _load_plugins()
    ctx = CostContext(node, graph)
    row = _TABLE.get(_key(node.domain, node.op_type))
    if row is not None and row.cost is None:
        return OpCost(0, ZERO_BYTES, ZERO_BYTES, CostStatus.METADATA, compute_dtype=None)
    if _is_folded(ctx):
        return OpCost(
            0, ZERO_BYTES, ZERO_BYTES, CostStatus.FOLDED, note="all inputs constant: folded at load"
        )
    folded_into = ctx.quantized.folded.get(node.name)
    if folded_into is not None:  # a Q/DQ node a runtime runs inside its neighbour
        return OpCost(0, ZERO_BYTES, ZERO_BYTES, CostStatus.FOLDED, note=folded_into)
    cost = _cost(ctx, row)
    scales = ctx.quantized.extra_reads.get(node.name)
    if scales:  # the scales and zero points of the Q/DQ nodes folded into this one
        cost = dataclasses.replace(cost, bytes_read=cost.bytes_read + ByteCounts.of(scales))
    return cost


def _cost(ctx: CostContext, row: Registration | None) -> OpCost:
    node = ctx.node
    if row is None:
        return _lower_bound(ctx, CostStatus.UNMODELLED, f"no cost formula for {node.qualified_op}")
    unresolved = [
        v.name if v is not None else name
        for name, v in zip(node.inputs + node.outputs, ctx.inputs + ctx.outputs)
        if name and (v is None or not v.is_resolved)
    ]
    # Control flow costs its subgraphs whatever its own outputs are; any other op holding a
    # graph attribute (an If swapped for another op) is an ordinary op with unknown shapes.
    if unresolved and not (node.subgraphs and row.info.family == "control flow"):
        return _lower_bound(
            ctx, CostStatus.UNRESOLVED, f"shape unknown for {', '.join(unresolved[:3])}"
        )
    try:
        return row.cost(ctx)
    except SHAPE_MISMATCH as exc:  # the node's shapes are not what its op defines
        log.debug("cost formula for %s skipped node %r: %s: %s", node.qualified_op, node.name,
                  type(exc).__name__, exc)
        reason = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        return _lower_bound(
            ctx, CostStatus.UNRESOLVED,
            f"the {node.qualified_op} formula cannot use this node's shapes: "
            f"{reason or type(exc).__name__}",
        )
