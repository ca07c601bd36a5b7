"""Typed results: what a lint produced (core.report: node results, summary, coverage, the
Report and its JSON document), the LLM sections (core.llm) and a measured run
(core.measurement). Renderers format these; nothing here renders."""
