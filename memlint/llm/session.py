"""The LLM sections of one linted step: `sections(run, ...)` computes the "LLM serving" numbers
and whatever the scenario asks for (sweeps, generation, precision and tensor-parallel what-ifs).

`run` is what memlint.api.lint_llm returns (an LlmLint: the step's report with its rules run,
the decoder's structure, the scenario and the Evaluator that re-lints other scenarios from the
file read once); memlint.api.lint calls both, so the CLI and the Python API are one path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from memlint.analysis.structure import DimRole, LlmStructure
from memlint.core.llm import LlmSections
from memlint.core.report import Report
from memlint.llm.generate import generate
from memlint.llm.parallel import smallest_fitting_tp, tensor_parallel
from memlint.llm.scenario import Evaluator, Phase, Scenario, require_kv_cache
from memlint.llm.serving import serving
from memlint.llm.sweep import crossover_batch, parse_sweep, sweep
from memlint.llm.whatif import Precision, apply_precision, precision_gain, without_blocks


@dataclass(frozen=True)
class LlmLint:
    report: Report  # the step at the scenario, rules run
    structure: LlmStructure
    scenario: Scenario | None  # None: no KV cache and no flags (linted as bound)
    evaluator: Evaluator | None  # re-lints other scenarios of the same model


def sections(
    run: LlmLint,
    *,
    sweeps: Sequence[str] = (),
    generate_tokens: int | None = None,
    weights_dtype: str | None = None,
    kv_dtype: str | None = None,
    act_dtype: str | None = None,
    exclude_blocks: tuple[str, ...] = (),
    tp: int | None = None,
    exact: bool = False,
    find_crossover: bool = True,
) -> LlmSections:
    """The LLM sections for `run`; LlmError for a flag that does not apply to the model.

    With --weights-dtype / --kv-dtype / --act-dtype every section (serving, sweeps, generation,
    tensor parallel) is computed for the what-if, and `precision` compares it with the graph as
    it is; `run.report` (its findings) stays the graph as it is. `exclude_blocks` leaves the
    nodes of those block roles (memlint.analysis.blocks) out of every step's totals. The
    crossover batch of a decode step costs up to five more loads (find_crossover=False skips it
    unless a batch sweep finds it anyway); exact=True lints every step of --generate.
    """
    structure = run.structure
    require_kv_cache(structure, {"--sweep": tuple(sweeps), "--generate": generate_tokens})
    precision = Precision.parse(weights_dtype, kv_dtype, act_dtype)
    gain = None
    step = run.report
    if not precision.is_identity:
        step = apply_precision(run.report, precision)
        gain = precision_gain(run.report, step, precision)
    step = without_blocks(step, exclude_blocks)
    split = smallest = None
    if tp is not None:  # on the what-if's step when one is asked for
        batch, new_tokens = _tokens(run)
        split = tensor_parallel(step, structure, tp, batch=batch, new_tokens=new_tokens)
        smallest = smallest_fitting_tp(step, structure, batch=batch, new_tokens=new_tokens)
    if run.scenario is None or run.evaluator is None:
        return LlmSections(structure, None, precision=gain, tensor_parallel=split,
                           smallest_tp=smallest)  # fmt: skip
    evaluator = run.evaluator
    if not precision.is_identity or exclude_blocks:
        evaluator = evaluator.with_precision(precision, exclude_blocks=exclude_blocks)
        evaluator.remember(run.scenario, step)
    base = run.scenario
    parsed = [parse_sweep(text) for text in sweeps]
    tables = tuple(sweep(evaluator, base, axis, values) for axis, values in parsed)
    crossover = next((t.crossover for t in tables if t.crossover is not None), None)
    if crossover is None and find_crossover and base.phase is Phase.DECODE:
        crossover = crossover_batch(evaluator, base)
    generation = None
    if generate_tokens is not None:
        generation = generate(
            evaluator, tokens=generate_tokens, prompt=generation_prompt(structure, base,
            generate_tokens), batch=base.batch, exact=exact,
        )  # fmt: skip
    return LlmSections(
        structure=structure,
        serving=serving(step, structure, base, precision=precision, crossover=crossover),
        sweeps=tables,
        generation=generation,
        precision=gain,
        tensor_parallel=split,
        smallest_tp=smallest,
    )


def generation_prompt(structure: LlmStructure, base: Scenario, tokens: int) -> int:
    """The prompt --generate starts from: the prefill's prompt, the decode step's context
    (--prompt or --context), or, when the context was defaulted, the default context shortened
    so that the prompt and the N tokens fit in the model's positions."""
    if base.phase is Phase.PREFILL:
        return base.new_tokens
    prompt = base.context
    if "context" in base.defaulted and structure.max_positions:
        prompt = min(prompt, structure.max_positions - tokens + 1)
    return max(prompt, 1)


def _tokens(run: LlmLint) -> tuple[int, int]:
    """(batch, new tokens) of the linted step: the scenario's, else the encoder's bound dims."""
    if run.scenario is not None:
        return run.scenario.batch, run.scenario.new_tokens
    dims = run.report.dims
    values = []
    for role in (DimRole.BATCH, DimRole.NEW_TOKENS):
        names = run.structure.dims_of(role)
        values.append(dims.get(names[0], 1) if names else 1)
    return values[0], values[1]


__all__ = ["LlmLint", "LlmSections", "generation_prompt", "sections"]
