"""Scenarios: which step of LLM inference to lint, mapped onto the graph's symbolic dims.

    --phase prefill   one pass over the prompt: P new tokens (--prompt, default below) after
                      --context cached tokens (default 0)
    --phase decode    one generation step: 1 new token after C cached tokens (--context C, else
                      --prompt P as the cache left by a P-token prompt, else the default)
    --batch B         sequences per step (default 1)

A decoder with a KV cache whose roles no flag and no --dim sets gets the default scenario: a
decode step at batch 1 after DEFAULT_CONTEXT = 1024 cached tokens, or max positions - 1 when the
model has fewer positions (so that the new token still has a position). The report states it.
Dims bound with --dim count as given: a scenario flag that contradicts one is an error, and
roles that neither sets take the defaults above (never the frontend's silent 1 for a context).

Every scenario flag on a model without a KV cache raises LlmError naming the flag: a flag that
would silently do nothing is a bug the user cannot see.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

from memlint.analysis.structure import DimRole, LlmStructure
from memlint.core.llm import Phase, Scenario
from memlint.core.report import Report, analyse
from memlint.errors import DimError
from memlint.frontends.onnx import ParsedOnnx, load_onnx
from memlint.hardware import HardwareSpec
from memlint.ir import EMPTY, Model
from memlint.llm import LlmError
from memlint.llm.steps import StepFigures, figures, folded_figures
from memlint.llm.whatif import Precision, apply_precision, without_blocks

DEFAULT_CONTEXT = 1024
# An encoder-decoder whose encoder length the model does not fix (T5, BART, Marian: any input
# length up to their positions) and no --dim sets: the encoder positions cross-attention reads.
DEFAULT_ENCODER_LENGTH = 512


_WHAT = {
    DimRole.BATCH: "the batch",
    DimRole.NEW_TOKENS: "the new tokens per step",
    DimRole.PAST: "the context (tokens in the KV cache)",
    DimRole.TOTAL: "the total length (context + new tokens)",
    DimRole.ENCODER: "the encoder length (positions cross-attention reads)",
}


def default_context(structure: LlmStructure) -> tuple[int, str]:
    """The context of the default decode step (also the default prompt of a prefill), and how
    it was chosen."""
    return default_context_for(structure.max_positions)


def default_context_for(max_positions: int | None) -> tuple[int, str]:
    """default_context for a model of `max_positions` positions (None: unknown)."""
    if max_positions:
        chosen = max(min(DEFAULT_CONTEXT, max_positions - 1), 1)
        return chosen, f"min({DEFAULT_CONTEXT}, {max_positions} positions - 1)"
    return DEFAULT_CONTEXT, f"{DEFAULT_CONTEXT} (the model's positions are unknown)"


def no_kv_cache(structure: LlmStructure, flags: list[str]) -> LlmError:
    """The error for LLM flags on a model without a KV cache."""
    roles = ", ".join(sorted(structure.dim_roles)) or "none"
    return LlmError(
        f"{', '.join(flags)}: {os.path.basename(structure.model) or 'the model'} has no KV-cache "
        f"inputs (past_key_values.N.key/value, past_key/past_value, ...), so LLM scenario flags "
        f"do not apply; bind its dims with --dim instead (its dims: {roles})"
    )


def require_kv_cache(structure: LlmStructure, flags: Mapping[str, object]) -> None:
    """LlmError naming every given flag ({"--sweep": value or None, ...}) when the model has no
    KV cache: for the flags that only mean something for a decoder with a cache (--phase,
    --batch, --context, --prompt, --sweep, --generate, --kv-dtype)."""
    given = [flag for flag, value in flags.items() if value not in (None, (), [], False)]
    if given and not structure.has_kv_cache:
        raise no_kv_cache(structure, given)


def resolve(
    structure: LlmStructure,
    *,
    phase: Phase | str | None = None,
    batch: int | None = None,
    context: int | None = None,
    prompt: int | None = None,
    dims: Mapping[str, int] | None = None,
) -> Scenario | None:
    """The scenario that the flags and --dim bindings describe; None for a model without a KV
    cache and no flags (it is linted as bound). Raises LlmError for flags that do not apply or
    contradict each other."""
    flags = {"--phase": phase, "--batch": batch, "--context": context, "--prompt": prompt}
    given = [flag for flag, value in flags.items() if value is not None]
    if not structure.has_kv_cache:
        if given:
            raise no_kv_cache(structure, given)
        return None
    for flag, value, least in (("--batch", batch, 1), ("--prompt", prompt, 1),
                               ("--context", context, 0)):  # fmt: skip
        if value is not None and (isinstance(value, bool) or value < least):
            raise LlmError(f"{flag} {value}: must be a whole number >= {least}")
    if isinstance(phase, str):
        try:
            phase = Phase(phase.strip().lower())
        except ValueError:
            raise LlmError(f"--phase {phase!r}: expected prefill or decode") from None
    bound = _bound(structure, dims or EMPTY)
    value = {role: v for role, (v, _) in bound.items()}
    if DimRole.PAST not in value and DimRole.TOTAL in value:
        value[DimRole.PAST] = value[DimRole.TOTAL] - value.get(DimRole.NEW_TOKENS, 1)
        bound[DimRole.PAST] = (value[DimRole.PAST], bound[DimRole.TOTAL][1])
    elif DimRole.NEW_TOKENS not in value and DimRole.TOTAL in value and DimRole.PAST in value:
        # a static graph: its fixed total and context give the new tokens (never a default)
        value[DimRole.NEW_TOKENS] = value[DimRole.TOTAL] - value[DimRole.PAST]
        bound[DimRole.NEW_TOKENS] = (value[DimRole.NEW_TOKENS], bound[DimRole.TOTAL][1])
    if phase is None:
        phase = Phase.PREFILL if value.get(DimRole.NEW_TOKENS, 1) > 1 else Phase.DECODE
    defaulted: list[str] = []
    reason = ""
    if phase is Phase.DECODE:
        _agree("--phase decode (1 new token per step)", 1, bound, DimRole.NEW_TOKENS)
        if context is not None and prompt is not None:
            raise LlmError(
                "--context and --prompt both set the tokens cached before a decode step; give one"
            )
        cached = context if context is not None else prompt
        flag = "--context" if context is not None else "--prompt"
        if cached is not None:
            _agree(f"{flag} {cached}", cached, bound, DimRole.PAST)
        elif DimRole.PAST in value:
            cached = value[DimRole.PAST]
        else:
            cached, reason = default_context(structure)
            defaulted.append("context")
        new_tokens = 1
    else:
        if prompt is not None:
            _agree(f"--prompt {prompt}", prompt, bound, DimRole.NEW_TOKENS)
            new_tokens = prompt
        elif DimRole.NEW_TOKENS in value:
            new_tokens = value[DimRole.NEW_TOKENS]
        else:
            new_tokens, reason = default_context(structure)
            defaulted.append("prompt")
        if context is not None:
            _agree(f"--context {context}", context, bound, DimRole.PAST)
        cached = context if context is not None else value.get(DimRole.PAST, 0)
    if batch is not None:
        _agree(f"--batch {batch}", batch, bound, DimRole.BATCH)
    else:
        batch = value.get(DimRole.BATCH)
        if batch is None:
            batch = 1
            defaulted.append("batch")
    encoder, encoder_source = _encoder_length(structure, bound, defaulted)
    scenario = Scenario(
        phase=phase,
        batch=batch,
        new_tokens=new_tokens,
        context=cached,
        defaulted=tuple(defaulted),
        origin="flags" if given else ("default" if defaulted else "dims"),
        default_reason=reason,
        encoder_length=encoder,
        encoder_source=encoder_source,
    )
    check_positions(structure, scenario)
    return scenario


def _encoder_length(
    structure: LlmStructure, bound: Mapping[DimRole, tuple[int, str]], defaulted: list[str]
) -> tuple[int | None, str]:
    """The encoder length of an encoder-decoder's decoder and where it comes from: --dim (or
    an axis the graph fixes), else config.json (Whisper's max_source_positions), else
    DEFAULT_ENCODER_LENGTH (marked defaulted). (None, "") for a decoder-only model."""
    if not structure.has_cross_attention and DimRole.ENCODER not in structure.dim_roles.values():
        return None, ""
    if DimRole.ENCODER in bound:
        return bound[DimRole.ENCODER]
    if structure.encoder_positions:
        return structure.encoder_positions, "config.json max_source_positions"
    defaulted.append("encoder")
    return DEFAULT_ENCODER_LENGTH, "the model fixes none; set it with --dim " + (
        " --dim ".join(f"{n}=N" for n in structure.dims_of(DimRole.ENCODER)) or "on its axis"
    )


def scenario_inputs(structure: LlmStructure, scenario: Scenario) -> dict[str, bool]:
    """The graph inputs a scenario fixes besides dims: a merged decoder's branch flag
    (use_cache_branch) is True for a step with past (decode, or a prefill after cached tokens)
    and False for a first pass without."""
    with_past = scenario.phase is Phase.DECODE or scenario.context > 0
    return dict.fromkeys(structure.cache_flags, with_past)


def check_positions(structure: LlmStructure, scenario: Scenario) -> None:
    """LlmError when context + new tokens exceeds the model's positions."""
    limit = structure.max_positions
    if limit and scenario.total_tokens > limit:
        raise LlmError(
            f"context {scenario.context} + {scenario.new_tokens} new tokens = "
            f"{scenario.total_tokens} exceeds the model's {limit} positions "
            f"({_from(structure.sources.get('max_positions', ''))})"
        )


def check_sequence_positions(structure: LlmStructure, bindings: Mapping[str, int]) -> None:
    """LlmError when a model without a KV cache (an encoder) is bound to more tokens than its
    learned position table holds: its position lookup would be clamped and its shapes would no
    longer meet, so every total computed past it would be garbage."""
    limit = structure.max_positions
    if not limit or structure.has_kv_cache:
        return
    for name in (*structure.dims_of(DimRole.NEW_TOKENS), *structure.dims_of(DimRole.TOTAL)):
        value = bindings.get(name)
        if value is not None and value > limit:
            raise LlmError(
                f"{name}={value} exceeds the model's {limit} positions "
                f"({_from(structure.sources.get('max_positions', ''))}); bind "
                f"{name} to {limit} or fewer"
            )


def _from(source: str) -> str:
    """'graph (position table)' -> "from the graph's position table"."""
    if source.startswith("graph (") and source.endswith(")"):
        return f"from the graph's {source[7:-1]}"
    return f"from {source}" if source else "max positions"


def _bound(structure: LlmStructure, dims: Mapping[str, int]) -> dict[DimRole, tuple[int, str]]:
    """The role values that --dim bindings or the graph's pinned axes already give, each with
    where it comes from (for messages)."""
    bound: dict[DimRole, tuple[int, str]] = {}
    for role in DimRole:
        values = {name: dims[name] for name in structure.dims_of(role) if name in dims}
        listed = ", ".join(f"{n}={v}" for n, v in sorted(values.items()))
        if len(set(values.values())) > 1:
            raise LlmError(f"--dim {listed}: these dims all hold {_WHAT[role]}; give one value")
        if values:
            bound[role] = (next(iter(values.values())), f"--dim {listed}")
        elif role in structure.pinned:
            pinned = structure.pinned[role]
            bound[role] = (pinned.value, pinned.why(_WHAT[role]))
    return bound


def _agree(flag: str, value: int, bound: Mapping[DimRole, tuple[int, str]], role: DimRole) -> None:
    have = bound.get(role)
    if have is None or have[0] == value:
        return
    if have[1].startswith("--dim"):
        raise LlmError(f"{flag} contradicts {have[1]} ({_WHAT[role]})")
    raise LlmError(f"{flag}: {have[1]}")


def scenario_dims(structure: LlmStructure, scenario: Scenario) -> dict[str, int]:
    """The --dim bindings that put the graph in `scenario`."""
    values = {
        DimRole.BATCH: scenario.batch,
        DimRole.NEW_TOKENS: scenario.new_tokens,
        DimRole.PAST: scenario.context,
        DimRole.TOTAL: scenario.total_tokens,
    }
    if scenario.encoder_length is not None:
        values[DimRole.ENCODER] = scenario.encoder_length
    dims: dict[str, int] = {}
    for role, value in values.items():
        names = structure.dims_of(role)
        for name in names:
            dims[name] = value
        pinned = structure.pinned.get(role)
        if not names and pinned is not None and pinned.value != value:
            raise LlmError(
                f"{scenario.describe()}: {pinned.why(_WHAT[role])}, not {value}"
            )
    return dims


# How to set each role instead of taking its default (the CLI flag, or --dim).
_FLAG = {
    DimRole.BATCH: "--batch B", DimRole.PAST: "--context C", DimRole.ENCODER: "--dim",
}


def assumed_dims(
    structure: LlmStructure, scenario: Scenario, given: Mapping[str, int], *, phase_given: bool
) -> dict[str, str]:
    """The dims that only the scenario's defaults set (no flag, --dim or config gave them),
    each with its source ("LLM default context"): the batch, the context, a prefill's prompt,
    an encoder length, and the one new token of the default decode step (no --phase, and
    nothing said about the context either); a total length follows them. `given` holds every
    dim the caller bound."""
    roles: dict[DimRole, str] = {}
    for name, role in (("batch", DimRole.BATCH), ("context", DimRole.PAST),
                       ("prompt", DimRole.NEW_TOKENS), ("encoder", DimRole.ENCODER)):
        if name in scenario.defaulted:
            roles[role] = f"LLM default {name}"
    if not phase_given and "context" in scenario.defaulted and scenario.phase is Phase.DECODE:
        roles[DimRole.NEW_TOKENS] = "LLM default decode step"
    if DimRole.PAST in roles or DimRole.NEW_TOKENS in roles:
        roles[DimRole.TOTAL] = "LLM default context + new tokens"
    return {name: why for role, why in roles.items() for name in structure.dims_of(role)
            if name not in given}


def strict_dims_error(structure: LlmStructure, scenario: Scenario,
                      assumed: Mapping[str, str]) -> DimError:
    """The --strict-dims refusal of a scenario that rests on defaults: one line naming the dims
    and the flags that set them."""
    values = scenario_dims(structure, scenario)
    roles = {structure.dim_roles.get(name) for name in assumed}
    flags = [flag for role, flag in _FLAG.items() if role in roles and role is not DimRole.ENCODER]
    if DimRole.NEW_TOKENS in roles:
        flags.append("--phase decode" if scenario.phase is Phase.DECODE else "--prompt P")
    listing = ", ".join(f"{name}={values.get(name, '?')} ({why})"
                        for name, why in sorted(assumed.items()))
    dims = " ".join(f"--dim {name}=N" for name in sorted(assumed))
    return DimError(f"--strict-dims: the LLM scenario would assume {listing}; set "
                    f"{', '.join(flags) + ' or ' if flags else ''}{dims}")


class Evaluator:
    """Lints one model at many scenarios: load with the scenario's dims, analyse on `spec`, then
    apply the precision what-if. Reports are kept per scenario, and `loads` counts the loads.

    `dims` are the user's other --dim bindings (dims that play no LLM role), kept at every point.
    `loader` makes the model of a scenario instead of loading `source` (a torch step captured
    again with inputs built for the scenario: memlint.llm.torch_step); with neither, only the
    scenarios remembered can be reported.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | None,
        spec: HardwareSpec,
        structure: LlmStructure,
        *,
        dims: Mapping[str, int] | None = None,
        input_shapes: Mapping[str, tuple[int, ...]] | None = None,
        tf32: bool = False,
        precision: Precision | None = None,
        encoder_length: int | None = None,
        loader: Callable[[Scenario], Model] | None = None,
        exclude_blocks: tuple[str, ...] = (),
    ) -> None:
        if not structure.has_kv_cache:
            raise no_kv_cache(structure, ["LLM scenarios"])
        self.source = source
        self.spec = spec
        self.structure = structure
        roles = set(structure.dim_roles)
        self.dims = {k: v for k, v in (dims or {}).items() if k not in roles}
        self.input_shapes = dict(input_shapes or {})
        self.tf32 = tf32
        self.precision = precision or Precision()
        self.exclude_blocks = exclude_blocks  # block roles left out of every step's totals
        # An encoder-decoder's encoder length, for scenarios made without one (generation steps)
        self.encoder_length = encoder_length
        self.loader = loader
        self.loads = 0
        self._reports: dict[tuple, Report] = {}
        self._figures: dict[tuple, StepFigures] = {}

    def with_precision(self, precision: Precision, *,
                       exclude_blocks: tuple[str, ...] = ()) -> Evaluator:
        return Evaluator(
            self.source, self.spec, self.structure, dims=self.dims,
            input_shapes=self.input_shapes, tf32=self.tf32, precision=precision,
            encoder_length=self.encoder_length, loader=self.loader,
            exclude_blocks=exclude_blocks,
        )  # fmt: skip

    def complete(self, scenario: Scenario) -> Scenario:
        """`scenario` with this evaluator's encoder length where it has none."""
        if scenario.encoder_length is None and self.encoder_length is not None:
            return dataclasses.replace(scenario, encoder_length=self.encoder_length)
        return scenario

    def dims_for(self, scenario: Scenario) -> dict[str, int]:
        return {**self.dims, **scenario_dims(self.structure, self.complete(scenario))}

    def remember(self, scenario: Scenario, report: Report) -> None:
        """Keep a report of `scenario` analysed elsewhere (at this evaluator's precision)."""
        self._reports[_key(self.complete(scenario))] = report

    def figures(self, scenario: Scenario) -> StepFigures:
        """What a sweep row reads of the step at `scenario` (memlint.llm.steps): from its
        report when there is one, else, for a decoder of repeated layers, from a load that
        keeps one layer (the same figures), else from the report of a full load."""
        scenario = self.complete(scenario)
        key = _key(scenario)
        if key in self._reports:
            return figures(self._reports[key])
        if key not in self._figures:
            check_positions(self.structure, scenario)
            found = None
            base = next(iter(self._reports.values()), None)
            if isinstance(self.source, ParsedOnnx) and base is not None \
                    and self.precision.is_identity and not self.exclude_blocks \
                    and not self.input_shapes \
                    and not scenario_inputs(self.structure, scenario):
                found = folded_figures(self.source, base, self.dims_for(scenario))
            if found is None:
                return figures(self.report(scenario))
            self.loads += 1
            self._figures[key] = found
        return self._figures[key]

    def report(self, scenario: Scenario) -> Report:
        """The analysed step (no rules run: memlint.api.check adds findings)."""
        scenario = self.complete(scenario)
        check_positions(self.structure, scenario)
        key = _key(scenario)
        if key not in self._reports:
            if self.loader is not None:
                model = self.loader(scenario)
            elif self.source is None:
                raise LlmError(
                    f"{scenario.describe()}: a torch step is linted at the shapes of its example "
                    "inputs; for other scenarios let memlint build the step (a Hugging Face model "
                    "without example inputs, e.g. memlint.lint(model, decode=1023))"
                )
            else:
                model = load_onnx(self.source, dims=self.dims_for(scenario),
                                  input_shapes=self.input_shapes or None,
                                  input_values=scenario_inputs(self.structure, scenario) or None)
            self.loads += 1
            report = analyse(model, self.spec, tf32=self.tf32)
            self._reports[key] = without_blocks(apply_precision(report, self.precision),
                                                self.exclude_blocks)  # fmt: skip
        return self._reports[key]


def _key(scenario: Scenario) -> tuple:
    return (scenario.phase, scenario.batch, scenario.new_tokens, scenario.context,
            scenario.encoder_length)


__all__ = [
    "DEFAULT_CONTEXT", "DEFAULT_ENCODER_LENGTH", "Evaluator", "Phase", "Scenario", "assumed_dims",
    "check_positions", "default_context", "default_context_for", "no_kv_cache", "require_kv_cache",
    "resolve", "scenario_dims", "scenario_inputs", "strict_dims_error",
]  # fmt: skip
