"""Op families (for colour) and small naming helpers shared by the view model and the chart."""

from __future__ import annotations

import re
from collections.abc import Sequence

from memlint.core.report import NodeResult
from memlint.costs import registry

FAMILIES = (*registry.FAMILIES, registry.OTHER)  # legend order


def family_of(node: NodeResult) -> str:
    """The op family of a node, for colour: the cost registry's fact for its (domain, op_type),
    "other" for an op the registry does not know."""
    return registry.family_of(node.domain, node.op_type)


def css_key(label: str) -> str:
    """'data movement' -> 'data-movement': a family or kind as a CSS class suffix."""
    return label.replace(" ", "-").replace("_", "-")


def node_anchors(nodes: Sequence[NodeResult]) -> tuple[str, ...]:
    """A unique HTML id per node, 'node-<slug>', in graph order ('-2', '-3' on collisions)."""
    seen: set[str] = set()
    anchors = []
    for node in nodes:
        base = "node-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", node.name).strip("-.") or "unnamed")
        anchor, n = base, 1
        while anchor in seen:
            n += 1
            anchor = f"{base}-{n}"
        seen.add(anchor)
        anchors.append(anchor)
    return tuple(anchors)


def qualified(node: NodeResult) -> str:
    return f"{node.domain}::{node.op_type}" if node.domain else node.op_type


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")
