"""`memlint fix`: apply the automatic transforms of a model's findings and prove them.

transforms.py  the table: finding code -> library call, weights needed, output tolerance
modelio.py     weights present or absent, stages, atomic publishing, stand-in weights
apply.py       selection, order, refusals, dry run, before/after lint (memlint.diff)
verify.py      --confirm: onnxruntime runs, per-transform output checks, measured latency
render.py      text / JSON / Markdown
"""

from __future__ import annotations

from memlint.fix.apply import FixDiverged, FixResult, Step, fix_model, plan
from memlint.fix.transforms import PRECISIONS, TRANSFORMS, Transform

__all__ = ["PRECISIONS", "TRANSFORMS", "FixDiverged", "FixResult", "Step", "Transform",
           "fix_model", "plan"]
