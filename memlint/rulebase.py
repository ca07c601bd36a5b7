"""What a rule is: declarative metadata plus one `check` method, validated at class definition.

A node-scope rule names the ops it visits (`op_types`, qualified as "Op" or "domain::Op") and
defines `check(self, ctx, node)`; a graph-scope rule sets `op_types = None` and defines
`check(self, ctx)`. Both yield Findings built with `self.finding(...)`.

The docstring has fixed sections, rendered by `memlint rule CODE`:

    <one-line summary>

    ## What it does
    ## Why is this bad?
    ## How to fix
    ## Known limits
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from memlint.analysis.graph_index import GraphIndex
from memlint.costs import ByteCounts, OpCost
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.hardware import HardwareSpec
from memlint.ir import EMPTY, Model, SourceLocation
from memlint.roofline import NodeResult, Timing, time_op

T = TypeVar("T")
CODE_RE = re.compile(r"^[A-Z]{1,6}[0-9]{3,4}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
SECTIONS = ("What it does", "Why is this bad?", "How to fix", "Known limits")


@dataclass(frozen=True)
class Option:
    """A rule option: its default (which fixes its type) and one line of help."""

    default: Any
    help: str

    def coerce(self, value: Any) -> Any:
        """The value as the default's type; ValueError naming the expected type otherwise."""
        kind = type(self.default)
        if kind is bool:
            if isinstance(value, bool):
                return value
        elif kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif kind is str:
            if isinstance(value, str):
                return value
        elif kind in (tuple, list):
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return tuple(value)
        raise ValueError(f"expected {_type_name(kind)}, got {value!r}")


def _type_name(kind: type) -> str:
    return {bool: "true or false", float: "a number", int: "an integer", str: "a string"}.get(
        kind, "a list of strings"
    )


@dataclass(frozen=True)
class Example:
    """A tiny model in ONNX text (onnx.parser syntax) with the dims and device to lint it on.

    Tensors declared in the graph's `<...>` list without a value are weights of that shape
    (stored as absent external data, so an example can hold a 4096x4096 matrix in one line).
    """

    onnx_text: str
    dims: Mapping[str, int] = field(default_factory=lambda: EMPTY)
    hw: str = "a100"
    options: Mapping[str, Any] = field(default_factory=lambda: EMPTY)  # the rule's, for this example


class Rule:
    """Base class of every rule (built-in and plugin). See the module docstring."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity] = Severity.WARNING
    op_types: ClassVar[frozenset[str] | None] = None  # None: graph scope
    options: ClassVar[Mapping[str, Option]] = EMPTY
    # True: a finding is noise when what its fix saves (not the time of the nodes it names) is
    # under both thresholds; for rules whose nodes can take much time while fixing them saves
    # little (ML102: a chain one kernel would not shorten much)
    noise_by_saving: ClassVar[bool] = False
    # Which estimate a finding's saving changes: "both", or "as_written" for what a fusing
    # runtime already does (the fused estimate assumes it: ML102, ML103, ML105)
    estimate: ClassVar[str] = "both"
    fix: ClassVar[str]
    bad: ClassVar[Example]
    good: ClassVar[Example]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:  # an abstract intermediate base
            return
        _validate(cls)

    @property
    def summary(self) -> str:
        return (self.__doc__ or "").strip().splitlines()[0]

    @classmethod
    def doc_sections(cls) -> dict[str, str]:
        """The docstring's sections by title (summary under "")."""
        return _sections(inspect.cleandoc(cls.__doc__ or ""))

    def finding(
        self,
        ctx: RuleContext,
        message: str,
        *,
        nodes: Iterable[str] = (),
        evidence: Iterable[Metric] = (),
        fixes: Iterable[Fix] = (),
        time_s: float | None = None,
        signature: str = "",
    ) -> Finding:
        """A Finding of this rule; the source location comes from the first node that has one."""
        names = tuple(nodes)
        source: SourceLocation | None = None
        for name in names:
            node = ctx.node(name)
            if node is not None and node.source is not None:
                source = node.source
                break
        return Finding(
            code=self.code,
            name=self.name,
            severity=self.severity,
            message=message,
            nodes=names,
            evidence=tuple(evidence),
            fixes=tuple(fixes) or (Fix(self.fix),),
            time_s=time_s,
            signature=signature,
            source=source,
        )


def _validate(cls: type[Rule]) -> None:
    where = f"rule class {cls.__module__}.{cls.__qualname__}"

    def fail(problem: str) -> None:
        raise TypeError(f"{where}: {problem}")

    if not isinstance(cls.__dict__.get("code"), str) or not CODE_RE.match(cls.code):
        fail(f"code {cls.__dict__.get('code')!r} must be letters then 3-4 digits, e.g. 'ML101'")
    if not isinstance(getattr(cls, "name", None), str) or not NAME_RE.match(cls.name):
        fail(f"name {getattr(cls, 'name', None)!r} must be kebab-case, e.g. 'copied-kv-cache'")
    if not isinstance(cls.severity, Severity):
        fail("severity must be a memlint.findings.Severity")
    if cls.op_types is not None and (
        not isinstance(cls.op_types, frozenset)
        or not cls.op_types
        or not all(isinstance(op, str) for op in cls.op_types)
    ):
        fail("op_types must be None (graph scope) or a non-empty frozenset of op names")
    if not isinstance(getattr(cls, "fix", None), str) or not cls.fix.strip():
        fail("needs a `fix` text")
    for attr in ("bad", "good"):
        if not isinstance(getattr(cls, attr, None), Example):
            fail(f"needs a `{attr}` Example (a tiny ONNX-text model)")
    if not isinstance(cls.options, Mapping) or not all(
        isinstance(k, str) and NAME_RE.match(k) and isinstance(v, Option)
        for k, v in cls.options.items()
    ):
        fail("options must map kebab-case names to Option(default, help)")
    sections = _sections(inspect.cleandoc(cls.__doc__ or ""))
    if not sections.get(""):
        fail("docstring needs a one-line summary")
    missing = [s for s in SECTIONS if not sections.get(s)]
    if missing:
        fail(f"docstring lacks the section(s) {', '.join('## ' + s for s in missing)}")
    check = cls.__dict__.get("check") or getattr(cls, "check", None)
    if check is None or check is getattr(Rule, "check", None):
        fail("needs a check method")
    wanted = 2 if cls.op_types is None else 3  # (self, ctx) or (self, ctx, node)
    params = [
        p for p in inspect.signature(check).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) != wanted:
        shape = "check(self, ctx)" if cls.op_types is None else "check(self, ctx, node)"
        fail(f"a {'graph' if cls.op_types is None else 'node'}-scope rule defines {shape}")


def _sections(doc: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in doc.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        else:
            sections[current].append(line)
    return {k: "\n".join(v).strip() for k, v in sections.items()}


class RuleContext(GraphIndex):
    """What a rule sees: the graph indexed once (memlint.analysis.graph_index: producers,
    consumers, every node's cost and roofline timing, shared analyses), the device, and the
    rule's own option values."""

    def __init__(
        self,
        model: Model,
        spec: HardwareSpec,
        results: tuple[NodeResult, ...],
        total_latency_s: float,
        *,
        tf32: bool = False,
        options: Mapping[str, Any] = EMPTY,
        tables: Any = None,  # another context's index tables, shared
    ) -> None:
        super().__init__(model, results, tables=tables)
        self.spec = spec
        self.total_latency_s = total_latency_s
        self.tf32 = tf32
        self.options = MappingProxyType(dict(options))

    def for_rule(self, options: Mapping[str, Any]) -> RuleContext:
        return RuleContext(
            self.model, self.spec, self.results, self.total_latency_s,
            tf32=self.tf32, options=options, tables=self._tables,
        )

    def share(self, time_s: float) -> float:
        """A time as a fraction of the model's predicted latency."""
        return time_s / self.total_latency_s if self.total_latency_s else 0.0

    @property
    def predicted_latency_s(self) -> float:
        """The step's predicted latency as written: the operators' time (total_latency_s) and
        the launch of every node that runs a kernel (memlint.core.report.summarize)."""
        return self.shared("rulebase.predicted-latency", lambda: self.total_latency_s
                           + self.launch_s(sum(1 for r in self.results
                                               if r.timing.bound.value != "none")))

    def launch_s(self, kernels: int) -> float:
        """What launching `kernels` kernels costs on this device (0 where the spec gives no
        per-kernel launch cost, or with --cuda-graphs): a fix that runs fewer saves it."""
        return max(kernels, 0) * (self.spec.kernel_overhead_s or 0.0)

    def retime(self, cost: OpCost) -> Timing:
        """The roofline timing of a hypothetical cost on this device (for saving estimates)."""
        return time_op(cost, self.spec, tf32=self.tf32)

    def ridge(self, timing: Timing) -> float:
        """FLOP/B at which the peak used by `timing` meets the memory roof."""
        return timing.peak_flops_per_s / self.spec.memory_bandwidth_bytes_per_s


def with_weight_bytes(cost: OpCost, factor: float) -> OpCost:
    """`cost` with the weight bytes it reads scaled by `factor` (precision what-ifs)."""
    read = cost.bytes_read
    return OpCost(
        flops=cost.flops,
        bytes_read=ByteCounts(round(read.weights * factor), read.activations, read.kv_cache),
        bytes_written=cost.bytes_written,
        status=cost.status,
        unit=cost.unit,
        compute_dtype=cost.compute_dtype,
    )
