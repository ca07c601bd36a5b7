"""The memory wall's headline result, from two graphs: an encoder that reads N tokens in one pass
and a decoder that generates N tokens one by one ("AI and Memory Wall", Gholami et al., IEEE
Micro 2024: BERT and GPT-2 of similar FLOPs, the decoder with far lower arithmetic intensity and
far higher latency). docs/llm.md prints the numbers; bench/memory_wall.py reproduces them.

The encoder pass binds its batch and sequence dims to (batch, N). The decoder's N tokens are a
prefill of a `prompt`-token prompt and N - 1 decode steps (memlint.llm.generate), so both sides
handle N token positions per sequence. Both are timed on the roofline alone: the paper's
argument is about bytes and FLOPs, so a spec's per-kernel launch cost is left out (as
--cuda-graphs does).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from memlint.analysis.structure import DimRole, detect
from memlint.core.report import analyse
from memlint.frontends.onnx import load_onnx
from memlint.hardware import HardwareSpec, resolve
from memlint.llm import LlmError
from memlint.llm.generate import StepTotals, generate, step_totals
from memlint.llm.scenario import Evaluator


@dataclass(frozen=True)
class MemoryWall:
    tokens: int
    batch: int
    hardware: str
    encoder: StepTotals  # one pass over the N tokens
    decoder: StepTotals  # prefill + N - 1 decode steps
    decoder_passes: int

    @property
    def flops_ratio(self) -> float:
        """Decoder FLOPs over encoder FLOPs (~1 means the comparison is fair)."""
        return self.decoder.flops / self.encoder.flops

    @property
    def intensity_ratio(self) -> float:
        """How many times lower the decoder's arithmetic intensity is."""
        return (self.encoder.intensity or 0.0) / (self.decoder.intensity or float("inf"))

    @property
    def latency_ratio(self) -> float:
        """How many times longer the decoder's predicted time is."""
        return self.decoder.latency_s / self.encoder.latency_s


def memory_wall(
    encoder: str | os.PathLike[str],
    decoder: str | os.PathLike[str],
    *,
    tokens: int = 128,
    batch: int = 1,
    prompt: int = 1,
    hw: str | HardwareSpec = "a100",
) -> MemoryWall:
    """Encoder over `tokens` tokens against a decoder generating them (module docstring)."""
    spec = hw if isinstance(hw, HardwareSpec) else resolve(hw, ())
    spec = dataclasses.replace(spec, kernel_overhead_s=None)  # the roofline alone
    enc_structure = detect(load_onnx(encoder))
    dims = {}
    for role, value in ((DimRole.BATCH, batch), (DimRole.NEW_TOKENS, tokens)):
        names = enc_structure.dims_of(role)
        if not names:
            raise LlmError(f"{encoder}: no dim for the {role.value} of the encoder")
        dims.update({name: value for name in names})
    enc = step_totals(analyse(load_onnx(encoder, dims=dims), spec))
    dec_structure = detect(load_onnx(decoder))
    evaluator = Evaluator(decoder, spec, dec_structure)
    generation = generate(evaluator, tokens=tokens - prompt + 1, prompt=prompt, batch=batch)
    return MemoryWall(
        tokens=tokens,
        batch=batch,
        hardware=spec.name,
        encoder=enc,
        decoder=generation.total,
        decoder_passes=generation.total.steps,
    )


__all__ = ["MemoryWall", "memory_wall"]
