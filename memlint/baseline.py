"""Stable finding fingerprints and baselines: fail a gate only on findings that are new.

A fingerprint is sha256(code, model identity, node name): the model identity is the model
file's base name (an Optimum export directory's name when the file is model.onnx), so moving the
checkout, reordering nodes or regrouping layers changes nothing. A finding about several nodes
has one fingerprint per node; one about the graph as a whole (no nodes) has one for the graph.

Baseline file (JSON, sorted, one entry per fingerprint):

    {"memlint_baseline": 1,
     "entries": [{"fingerprint": "...", "code": "ML101", "model": "model.onnx", "node": "/h.0/..."}]}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from memlint.errors import ConfigError
from memlint.findings import Finding
from memlint.textio import NotReadable, read_small_file, shown

BASELINE_VERSION = 1
GRAPH = "<graph>"  # the node name used for findings about the whole graph


@dataclass(frozen=True)
class Entry:
    code: str
    model: str
    node: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.code}\0{self.model}\0{self.node}".encode()).hexdigest()[:32]


def model_identity(source: str) -> str:
    """The base name of the model file; for .../name/model.onnx (an export folder) "name/model.onnx"."""
    path = Path(source)
    if path.name == "model.onnx" and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


def entries_of(finding: Finding, model: str) -> tuple[Entry, ...]:
    return tuple(Entry(finding.code, model, node) for node in (finding.nodes or (GRAPH,)))


def finding_fingerprint(finding: Finding, model: str) -> str:
    """One fingerprint for a whole finding (SARIF partialFingerprints): its nodes, sorted."""
    nodes = "\0".join(sorted(finding.nodes or (GRAPH,)))
    return hashlib.sha256(f"{finding.code}\0{model}\0{nodes}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class BaselineSplit:
    new: tuple[Finding, ...]  # at least one of its (code, node) pairs is not in the baseline
    known: tuple[Finding, ...]
    fixed: tuple[Entry, ...]  # baseline entries of this model that no finding has any more


@dataclass(frozen=True)
class Baseline:
    entries: frozenset[Entry]
    path: str

    def split(self, findings: Iterable[Finding], model: str) -> BaselineSplit:
        new, known, seen = [], [], set()
        for finding in findings:
            mine = entries_of(finding, model)
            seen.update(mine)
            (known if all(e in self.entries for e in mine) else new).append(finding)
        fixed = sorted(
            (e for e in self.entries if e.model == model and e not in seen),
            key=lambda e: (e.code, e.node),
        )
        return BaselineSplit(tuple(new), tuple(known), tuple(fixed))


def render_baseline(findings_by_model: Iterable[tuple[str, Iterable[Finding]]]) -> str:
    return render_rows(e for model, findings in findings_by_model for f in findings
                       for e in entries_of(f, model))


def render_rows(entries: Iterable[Entry]) -> str:
    entries = set(entries)
    rows = [
        {"fingerprint": e.fingerprint, "code": e.code, "model": e.model, "node": e.node}
        for e in sorted(entries, key=lambda e: (e.model, e.code, e.node))
    ]
    # one entry per line: a baseline change reads as a clean diff in review
    body = ",\n".join("  " + json.dumps(row) for row in rows)
    return f'{{"memlint_baseline": {BASELINE_VERSION}, "entries": [\n{body}\n]}}\n'


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """Read a baseline file; a missing, special or malformed one is a ConfigError naming it."""
    target = Path(path)
    try:
        data = json.loads(read_small_file(target).decode("utf-8"))
    except NotReadable as exc:
        raise ConfigError(f"{path}: cannot read the baseline ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the baseline ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else f"invalid JSON: {exc}"
        raise ConfigError(f"{path}: not a memlint baseline ({reason})") from None
    if not isinstance(data, dict) or data.get("memlint_baseline") != BASELINE_VERSION:
        raise ConfigError(
            f"{path}: not a memlint baseline (expected \"memlint_baseline\": {BASELINE_VERSION}; "
            "write one with --write-baseline)"
        )
    rows = data.get("entries", [])
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: not a memlint baseline (\"entries\" must be a list)")
    entries = set()
    for row in rows:
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str)
                                                for k in ("code", "model", "node")):
            raise ConfigError(f"{path}: malformed baseline entry {shown(row)}")
        entries.add(Entry(row["code"], row["model"], row["node"]))
    return Baseline(frozenset(entries), str(path))
