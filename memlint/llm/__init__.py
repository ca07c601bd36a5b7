"""LLM scenarios beside the engine: prefill/decode steps, sweeps, generation totals, precision
and tensor-parallel what-ifs, and the "LLM serving" report section (docs/llm.md). What the graph
says about a decoder (memlint.analysis.structure) lies below, the section types in
memlint.core.llm, their formatting in memlint.report.llm_view; memlint.api.lint calls this
package with its `scenario` argument.

Modules, lowest first (each imports only the ones above it, the analysis and core layers and
the ONNX frontend):

    whatif       --weights-dtype, --kv-dtype: the graph retyped and analysed again
    scenario     --phase/--batch/--context/--prompt mapped onto the dims; Evaluator re-lints
    parallel     --tp N: the step split over N devices plus its all-reduces
    sweep        --sweep batch=...|context=...|prompt=... tables and the crossover batch
    generate     --generate N: prefill plus N-1 decode steps, each at its own context
    serving      the numbers of the "LLM serving" section
    memory_wall  encoder against decoder: the memory wall's headline result
    session      sections(): every section a scenario asks for, from one linted step
"""

from __future__ import annotations

from memlint.errors import LlmError

__all__ = ["LlmError"]
