"""memlint: a static linter that finds where ML models hit the memory wall.

    import memlint
    report = memlint.lint("model.onnx", hw="a100")   # memlint.api.lint
    report.to_dict()                                  # the JSON report's document

`memlint.lint` is memlint.api.lint itself (help(memlint.lint) shows its signature); it is
imported on first use, so `import memlint` stays light.
"""

from __future__ import annotations

from typing import Any

from memlint._version import __version__

__all__ = ["Confirm", "ScenarioRequest", "__version__", "lint"]


def __getattr__(name: str) -> Any:
    if name in ("lint", "Confirm", "ScenarioRequest"):
        from memlint import api

        return getattr(api, name)
    raise AttributeError(f"module 'memlint' has no attribute {name!r}")
