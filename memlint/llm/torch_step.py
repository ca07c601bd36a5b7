"""A torch model's LLM step: the scenario, serving figures, sweeps and what-ifs, as for ONNX.

Two ways in:
- The caller passes the step's inputs (example_inputs / example_kwargs with a transformers cache
  or a tuple cache, captured by memlint.frontends.fx_cache). The graph is static: its scenario is
  what its shapes say (batch and context read from the cache's axes), and scenario flags must
  agree with them. Other scenarios (sweeps, --generate) cannot be linted, since memlint cannot
  know how to make the step's other inputs at other sizes; they raise LlmError saying so.
- A Hugging Face model and no inputs (`memlint.lint(model, decode=1023)`, a scenario, or
  nothing: the default decode step, as for an ONNX decoder). memlint builds the step's inputs
  for the scenario (memlint.frontends.fx_decode) and captures it; every other scenario a sweep
  or --generate asks for is captured the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from memlint.analysis.hfconfig import HfConfig, config_from_dict
from memlint.analysis.structure import detect
from memlint.core.llm import Phase, Scenario, ScenarioRequest
from memlint.core.report import Report
from memlint.errors import DimError
from memlint.hardware import HardwareSpec
from memlint.ir import DimBinding, Model
from memlint.llm import LlmError
from memlint.llm.scenario import (
    DEFAULT_ENCODER_LENGTH,
    Evaluator,
    check_positions,
    default_context_for,
)
from memlint.llm.scenario import resolve as resolve_scenario
from memlint.llm.session import LlmLint


def builds_step(source: Any, example_inputs: Any, example_kwargs: Mapping[str, Any] | None) -> Any:
    """The Hugging Face module whose step memlint builds (no inputs given), else None."""
    from memlint.frontends.fx import TorchSource
    from memlint.frontends.fx_decode import is_hf_generative

    module = source
    if isinstance(source, TorchSource):
        if source.args or source.kwargs:
            return None
        module = source.obj
    if example_inputs is not None or example_kwargs:
        return None
    return module if is_hf_generative(module) else None


def hf_config(module: Any) -> HfConfig | None:
    """The figures of a torch model's own Hugging Face config (None without one)."""
    from memlint.frontends.fx_decode import config_dict

    data = config_dict(module)
    return None if data is None else config_from_dict(data, "model.config")


def requested(request: ScenarioRequest, config: HfConfig | None, encoder_decoder: bool) -> Scenario:
    """The scenario the flags ask of a model memlint builds steps for, with the defaults of an
    ONNX decoder (docs/llm.md): a decode step at batch 1 after min(1024, positions - 1) tokens;
    an encoder-decoder's encoder output at its fixed length (Whisper) or 512 positions."""
    positions = config.max_position_embeddings if config else None
    try:
        phase = Phase(request.phase.strip().lower()) if request.phase else Phase.DECODE
    except ValueError:
        raise LlmError(f"--phase {request.phase!r}: expected prefill or decode") from None
    defaulted: list[str] = []
    reason = ""
    if phase is Phase.DECODE:
        if request.context is not None and request.prompt is not None:
            raise LlmError(
                "--context and --prompt both set the tokens cached before a decode step; give one"
            )
        context = request.context if request.context is not None else request.prompt
        if context is None:
            context, reason = default_context_for(positions)
            defaulted.append("context")
        new_tokens = 1
    else:
        new_tokens = request.prompt
        if new_tokens is None:
            new_tokens, reason = default_context_for(positions)
            defaulted.append("prompt")
        context = request.context or 0
    batch = request.batch
    if batch is None:
        batch = 1
        defaulted.append("batch")
    for flag, value, least in (("--batch", batch, 1), ("--context", context, 0),
                               ("--prompt", new_tokens, 1)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise LlmError(f"{flag} {value}: must be a whole number >= {least}")
    encoder, source = None, ""
    if encoder_decoder:
        if config is not None and config.max_source_positions:
            encoder, source = config.max_source_positions, "model.config max_source_positions"
        else:
            encoder = DEFAULT_ENCODER_LENGTH
            source = "the model fixes none: the encoder's output is built at this length"
            defaulted.append("encoder")
    return Scenario(
        phase=phase, batch=batch, new_tokens=new_tokens, context=context,
        defaulted=tuple(defaulted), origin="flags" if request.flags else "default",
        default_reason=reason, encoder_length=encoder, encoder_source=source,
    )  # fmt: skip


def lint_step(
    source: Any,
    *,
    spec: HardwareSpec,
    request: ScenarioRequest,
    analyse_model: Any,  # Callable[[Model], Report]: analyse + rules (memlint.api)
    capture: Any,  # Callable[[Any, tuple, dict], Model]: the torch frontend, dims bound
    example_inputs: Any = None,
    example_kwargs: Mapping[str, Any] | None = None,
    strict_dims: bool = False,
) -> tuple[Report, LlmLint | None]:
    """The torch source linted, with its LLM run when it is a step with a KV cache."""
    from memlint.frontends.fx_decode import Step, is_encoder_decoder, step_inputs

    module = builds_step(source, example_inputs, example_kwargs)
    flags = tuple(f for f in request.flags if f != "--moe-routing")  # routing: any capture
    if module is None:
        given = example_inputs is not None or bool(example_kwargs) or (
            hasattr(source, "args") and bool(source.args or source.kwargs))
        if flags and not given:
            raise LlmError(
                f"{', '.join(flags)}: memlint builds the steps of Hugging Face models "
                f"that generate; give {type(_module_of(source)).__name__} example inputs (the "
                "step to lint, with its cache)"
            )
        if flags:
            raise LlmError(
                f"{', '.join(flags)}: a torch model given its example inputs is linted "
                "at their shapes; let memlint build the step instead (a Hugging Face model "
                "without example inputs: memlint.lint(model, decode=N, scenario=...))"
            )
        model = capture(source, example_inputs, example_kwargs)
        config = hf_config(_module_of(source))
        structure = detect(model, config=config, use_config=False)
        if not structure.has_kv_cache:
            return analyse_model(model), None
        scenario = resolve_scenario(structure, dims={})
        report = analyse_model(model)
        evaluator = Evaluator(None, spec, structure, encoder_length=scenario.encoder_length)
        evaluator.remember(scenario, report)
        return report, LlmLint(report, structure, scenario, evaluator)

    config = hf_config(module)
    scenario = requested(request, config, is_encoder_decoder(module))
    positions = config.max_position_embeddings if config else None
    if positions and scenario.total_tokens > positions:  # before building a step that long
        raise LlmError(
            f"context {scenario.context} + {scenario.new_tokens} new tokens = "
            f"{scenario.total_tokens} exceeds the model's {positions} positions (from "
            "model.config max_position_embeddings)"
        )
    assumed = _assumed(scenario)
    if strict_dims and assumed:
        listing = ", ".join(f"{b.name}={b.value} ({b.source})" for b in assumed)
        raise DimError(
            f"--strict-dims: the step memlint builds would assume {listing}; set "
            f"{', '.join(_FLAGS[b.name] for b in assumed)} (scenario= or decode= in Python)"
        )

    def load(wanted: Scenario) -> Model:
        step = Step(batch=wanted.batch, new_tokens=wanted.new_tokens, context=wanted.context,
                    encoder_length=wanted.encoder_length)  # fmt: skip
        args, kwargs = step_inputs(module, step)
        return capture(module, args, kwargs)

    model = load(scenario)
    model = dataclasses.replace(model, dims=(*model.dims, *assumed))
    structure = detect(model, config=config, use_config=False)
    check_positions(structure, scenario)
    report = analyse_model(model)
    if not structure.has_kv_cache:  # a prefill from an empty cache: nothing cached to read
        return report, None
    evaluator = Evaluator(None, spec, structure, encoder_length=scenario.encoder_length,
                          loader=load)  # fmt: skip
    evaluator.remember(scenario, report)
    return report, LlmLint(report, structure, scenario, evaluator)


# The step's sizes memlint chose itself, as the dims a report marks assumed (ML902 names them).
_SIZES = {"batch": "batch", "context": "context", "prompt": "new_tokens",
          "encoder": "encoder_length"}  # fmt: skip
_FLAGS = {"batch": "--batch", "context": "--context", "new_tokens": "--prompt",
          "encoder_length": "encoder_length (example inputs)"}  # fmt: skip


def _assumed(scenario: Scenario) -> tuple[DimBinding, ...]:
    return tuple(
        DimBinding(size, getattr(scenario, size), assumed=True, source=f"LLM default {name}")
        for name, size in _SIZES.items() if name in scenario.defaulted
    )  # fmt: skip


def _module_of(source: Any) -> Any:
    from memlint.frontends.fx import TorchSource

    return source.obj if isinstance(source, TorchSource) else source


__all__ = ["builds_step", "hf_config", "lint_step", "requested"]
