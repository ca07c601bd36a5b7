"""LLM scenarios on top of the engine: structure, prefill/decode steps, sweeps, generation totals,
precision and tensor-parallel what-ifs, and the "LLM serving" report section (docs/llm.md).

Modules, lowest first (each imports only the ones above it and the engine's public API):

    hfconfig     what a Hugging Face config.json next to the model says
    structure    what the graph says about the decoder: KV cache, dim roles, layers, heads
    whatif       --weights-dtype, --kv-dtype: the graph retyped and analysed again
    scenario     --phase/--batch/--context/--prompt mapped onto the dims; Evaluator re-lints
    parallel     --tp N: the step split over N devices plus its all-reduces
    sweep        --sweep batch=...|context=...|prompt=... tables and the crossover batch
    generate     --generate N: prefill plus N-1 decode steps, each at its own context
    serving      the numbers of the "LLM serving" section
    memory_wall  encoder against decoder: the memory wall's headline result
    view         those numbers formatted for the renderers (rows of label/value strings)
    session      lint_llm() and sections(): the calls the CLI makes

This package module stays import-light on purpose: `memlint.analysis.structure` depends on
`memlint.ir` alone, so lower layers (rules) may import it without pulling in the API.
"""

from __future__ import annotations

from memlint.errors import LlmError


__all__ = ["LlmError"]
