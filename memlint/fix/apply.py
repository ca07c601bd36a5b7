"""`memlint fix`: lint, choose the transforms of the findings, apply them in order, write the
output atomically, lint it again with the same options, and (with --confirm) prove it in
onnxruntime.

Selection: the findings of the report (after --select / --ignore and the noise thresholds)
whose code has an automatic transform (memlint.fix.transforms); ML106 gets the precision of
`weights_dtype` (fp16 by default). A transform that needs the weight values is refused, in one
line, when the weights file is absent; graph transforms still run (memlint.fix.modelio). The
before/after comparison is memlint.diff's.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memlint.core.report import Report
from memlint.diff import ModelDiff, diff
from memlint.errors import ConfigError, ConfirmError, MemlintError, ModelLoadError, first_line
from memlint.findings import Finding
from memlint.fix import modelio
from memlint.fix.transforms import (
    FIXABLE,
    PRECISIONS,
    ModelFacts,
    Transform,
    torch_advice,
    transforms_for,
)
from memlint.fix.verify import Confirmation, confirm_stages, feeds_for
from memlint.runner import LintRequest, is_torch_target, lint_model


@dataclass(frozen=True)
class Step:
    """One transform of the plan and what became of it."""

    transform: Transform
    call: str  # the library call, as code
    findings: tuple[Finding, ...]  # the selected findings it addresses
    saving_s: float  # their predicted saving (the best fix of each that names this transform)
    status: str = "planned"  # planned | applied | refused
    note: str = ""  # what the library did, or why it was refused


@dataclass(frozen=True)
class FixResult:
    model: str
    output: str | None  # None: nothing written (dry run, torch target, nothing to apply)
    before: Report
    steps: tuple[Step, ...]
    no_transform: tuple[Finding, ...]  # selected findings no automatic transform resolves
    after: Report | None = None
    comparison: ModelDiff | None = None
    confirmation: Confirmation | None = None
    advice: tuple[str, ...] = ()  # a torch target: the fixes as code
    notes: tuple[str, ...] = ()

    @property
    def applied(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.status == "applied")

    @property
    def refused(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.status == "refused")

    @property
    def unresolved(self) -> tuple[Finding, ...]:
        """Findings the applied transforms address that the output still has (same code, node)."""
        if self.after is None:
            return ()
        codes = {c for s in self.applied for c in s.transform.codes}
        fixed = {(e.code, e.node) for e in self.comparison.fixed} if self.comparison else set()
        return tuple(f for s in self.applied for f in s.findings
                     if f.code in codes and not all((f.code, n) in fixed for n in f.nodes))


def _saving(finding: Finding, transform: Transform) -> float:
    named = [f.saving_s or 0.0 for f in finding.fixes
             if any(word in f.text for word in transform.keywords)]
    return max(named or [f.saving_s or 0.0 for f in finding.fixes] or [0.0])


def _facts(report: Report) -> ModelFacts:
    from memlint.analysis.artifact import artifact
    from memlint.analysis.graph_index import GraphIndex
    from memlint.analysis.structure import detect

    index = GraphIndex(report.model, report.nodes)
    structure = index.shared("llm.structure", lambda: detect(report.model, use_config=False))
    # Both or neither: the optimizer reads them from the graph when given 0, and asserts when
    # given a hidden size without the heads.
    heads, hidden = structure.heads or 0, structure.hidden_size or 0
    known = bool(heads and hidden)
    return ModelFacts(artifact(index).ort_model_type, heads * known, hidden * known)


def plan(report: Report, weights_dtype: str) -> tuple[list[Step], list[Finding]]:
    if weights_dtype not in PRECISIONS:
        raise ConfigError(f"--weights-dtype {weights_dtype!r}: expected one of "
                          f"{', '.join(PRECISIONS)}")
    findings = list(report.findings)
    codes = {f.code for f in findings}
    facts = _facts(report) if codes & FIXABLE else None
    steps = []
    for transform in transforms_for(codes, weights_dtype):
        mine = tuple(f for f in findings if f.code in transform.codes)
        steps.append(Step(transform, transform.call(facts), mine,
                          sum(_saving(f, transform) for f in mine)))
    return steps, [f for f in findings if f.code not in FIXABLE]


def fix_model(model: Path, output: Path | None, request: LintRequest, *,
              weights_dtype: str = "fp16", dry_run: bool = False, confirm: bool = False,
              runs: int = 10, announce: Callable[[str], None] = lambda line: None) -> FixResult:
    """Fix `model` into `output` (see the module docstring); nothing is written on a dry run,
    for a torch target, or when no selected finding has an automatic transform."""
    if is_torch_target(model):
        return _torch_advice(model, request, weights_dtype)
    if model.is_dir() and (model / "model.onnx").is_file():  # an export folder
        model = model / "model.onnx"
    if output is None and not dry_run:
        raise ConfigError("memlint fix needs -o OUT (or --dry-run)")
    if output is not None:
        _check_output(model, output)
    before, _ = lint_model(model, request)
    steps, no_transform = plan(before, weights_dtype)
    weights = modelio.weights_of(model)
    if not weights.present:  # known before anything runs: a dry run shows it too
        steps = [dataclasses.replace(s, status="refused", note=(
            f"needs the weight values, and the weights file {weights.missing[0]} is absent"))
            if s.transform.needs_weights else s for s in steps]
    result = FixResult(str(model), None, before, tuple(steps), tuple(no_transform))
    if dry_run or not steps:
        return result
    if confirm and not weights.present:
        raise ConfirmError(f"--confirm runs the model, and its weights file "
                           f"{weights.missing[0]} is absent")
    facts = _facts(before)
    folder = Path(tempfile.mkdtemp(prefix=".memlint-fix-", dir=output.parent))
    try:
        stages, steps = _apply(model, output, steps, facts, weights, folder, announce)
        result = dataclasses.replace(result, steps=tuple(steps))
        if not result.applied:
            return result
        confirmation = None
        if confirm:
            announce(f"running {len(stages)} model(s) in onnxruntime ({runs} timed runs each)")
            confirmation = confirm_stages(stages, feeds_for(before.model), runs)
            if confirmation.diverged:
                worst = confirmation.diverged[0]
                on = f", on the {worst.feed}" if len(confirmation.feeds) > 1 else ""
                raise FixDiverged(f"{worst.transform}: output {worst.output!r} {worst.problem}{on}, "
                                  f"{worst.limit}; {output} was not written")
        modelio.publish(stages[-1][2], output)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    after, _ = lint_model(output, request)
    absent = (f"the weights file is absent: {output.name} refers to {', '.join(weights.missing)} "
              "for its weights, as the input did; put it beside the output")
    notes = () if weights.present else (absent,)
    return dataclasses.replace(result, output=str(output), after=after,
                               comparison=diff(before, after), confirmation=confirmation,
                               notes=notes)


class FixDiverged(MemlintError):
    """A transform moved the model's outputs beyond its tolerance."""


def _check_output(model: Path, output: Path) -> None:
    if not model.exists():
        raise ModelLoadError(f"{model}: no such file")
    if model.is_dir():
        raise ConfigError(f"{model}: memlint fix takes one .onnx file")
    if output.exists() and (output.is_dir() or output.resolve() == model.resolve()):
        raise ConfigError(f"-o {output}: must be a new file, not the input or a folder")
    data = output.with_name(output.name + ".data")
    if data.exists() and data.resolve() in _data_files(model):
        raise ConfigError(f"-o {output}: its data file {data.name} is the input's weights")
    if not output.parent.is_dir():
        raise ConfigError(f"-o {output}: the folder {output.parent} does not exist")


def _data_files(model: Path) -> set[Path]:
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    return {(model.parent / modelio._location(t)).resolve() for t in modelio._external(proto)}


def _apply(model: Path, output: Path, steps: list[Step], facts: ModelFacts,
           weights: modelio.Weights, folder: Path, announce: Callable[[str], None],
           ) -> tuple[list[tuple[str, float, Path]], list[Step]]:
    """Run the steps; -> (stages: (transform, tolerance, file) from the input on, steps)."""
    stages: list[tuple[str, float, Path]] = [("", 0.0, model)]
    done = []
    for number, step in enumerate(steps, 1):
        transform = step.transform
        if step.status == "refused":
            done.append(step)
            continue
        announce(f"applying {transform.name}: {step.call}")
        stage = folder / f"stage-{number}" / output.name
        stage.parent.mkdir()
        try:
            if weights.present:
                proto, note = transform.run(stages[-1][2], facts)
            else:
                proto, note = modelio.without_weights(
                    lambda path, t=transform: t.run(path, facts), stages[-1][2], stage.parent,
                    transform.name)
            if weights.present:
                modelio.save(proto, stage, external=weights.external)
            else:
                import onnx

                onnx.save(modelio.with_domains(proto), str(stage))  # references to the input's absent data file
        except modelio.Refused as exc:
            done.append(dataclasses.replace(step, status="refused", note=str(exc).split(": ", 1)[-1]))
            continue
        except MemlintError:
            raise
        except Exception as exc:  # noqa: BLE001 - a library failed on this model
            done.append(dataclasses.replace(step, status="refused",
                                            note=f"the library failed: {first_line(exc)}"))
            continue
        stages.append((transform.name, transform.tolerance, stage))
        done.append(dataclasses.replace(step, status="applied", note=note))
    return stages, done


def _torch_advice(model: Path, request: LintRequest, weights_dtype: str) -> FixResult:
    before, _ = lint_model(model, request)
    _, no_transform = plan(before, weights_dtype)
    codes = {f.code for f in before.findings}
    return FixResult(str(model), None, before, (), tuple(no_transform),
                     advice=torch_advice(codes, weights_dtype))
