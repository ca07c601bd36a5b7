"""JSON rendering: the documented, versioned schema (docs/json-schema.md), exactly
Report.to_dict() (memlint.core.document)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from memlint.core.report import SCHEMA_VERSION, Report


def render(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n"


def combine(outcomes: Sequence) -> str:
    """Many models: {"schema_version", "reports": [each report's document], "errors": [...]}."""
    return json.dumps({
        "schema_version": SCHEMA_VERSION,
        "reports": [json.loads(o.rendered) for o in outcomes if not o.error],
        "errors": [{"model": o.model, "error": o.error} for o in outcomes if o.error],
    }, indent=2) + "\n"
