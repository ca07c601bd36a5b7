"""JSON rendering: the documented, versioned schema (docs/json-schema.md), exactly
Report.to_dict() (memlint.core.document)."""

from __future__ import annotations

import json

from memlint.core.report import Report


def render(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n"
