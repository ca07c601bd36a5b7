"""What a report's totals are: per-block totals (`summary.by_block`), the what-ifs a report's
totals are computed for (`summary.what_if`) and the graph's own totals beside them
(`summary.as_written`). Data only: memlint.analysis.blocks gives the roles, memlint.llm.whatif
applies the what-ifs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from memlint.costs import ByteCounts
from memlint.ir import Graph
from memlint.roofline import NodeResult


class ByteTotals:
    """What every total of FLOPs and bytes read and written derives: the bytes by kind (read +
    written), the bytes moved and the arithmetic intensity. A base of the frozen dataclasses
    that hold `flops`, `bytes_read` and `bytes_written` (it adds no field)."""

    __slots__ = ()
    flops: int
    bytes_read: ByteCounts
    bytes_written: ByteCounts

    @property
    def bytes_by_kind(self) -> ByteCounts:
        return self.bytes_read + self.bytes_written

    @property
    def bytes_moved(self) -> int:
        return self.bytes_by_kind.total

    @property
    def intensity(self) -> float | None:
        return self.flops / self.bytes_moved if self.bytes_moved else None


@dataclass(frozen=True)
class BlockTotals(ByteTotals):
    """The nodes of one block role, totalled (memlint.analysis.blocks)."""

    nodes: int
    flops: int
    bytes_read: ByteCounts
    bytes_written: ByteCounts
    predicted_latency_s: float


def block_totals(nodes: Iterable[NodeResult], graph: Graph) -> Mapping[str, BlockTotals]:
    """{role: totals} over `nodes`, the roles in memlint.analysis.blocks.BLOCKS order; a role
    without nodes is absent."""
    from memlint.analysis.blocks import BLOCKS, NORM_ELEMENTWISE, node_blocks

    roles = node_blocks(graph)
    sums: dict[str, list] = {}  # role -> [nodes, flops, 3 read kinds, 3 written kinds, time]
    for node in nodes:
        cost = node.cost
        row = sums.get(role := roles.get(node.name, NORM_ELEMENTWISE))
        if row is None:
            row = sums[role] = [0, 0, 0, 0, 0, 0, 0, 0, 0.0]
        read, written = cost.bytes_read, cost.bytes_written
        row[0] += 1
        row[1] += cost.flops
        row[2] += read.weights
        row[3] += read.activations
        row[4] += read.kv_cache
        row[5] += written.weights
        row[6] += written.activations
        row[7] += written.kv_cache
        row[8] += node.timing.predicted_latency_s
    return MappingProxyType({
        role: BlockTotals(row[0], row[1], ByteCounts(*row[2:5]), ByteCounts(*row[5:8]), row[8])
        for role in BLOCKS if (row := sums.get(role)) is not None
    })


@dataclass(frozen=True)
class WhatIf:
    """The what-ifs a report's totals are for (--weights-dtype, --act-dtype, --kv-dtype,
    --exclude-block); `unchanged` names those that changed nothing in this graph (--kv-dtype on
    a model without a KV cache)."""

    weights_dtype: str | None = None
    act_dtype: str | None = None
    kv_dtype: str | None = None
    exclude_blocks: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()  # "kv_dtype", ...

    @property
    def is_identity(self) -> bool:
        return not (self.weights_dtype or self.act_dtype or self.kv_dtype or self.exclude_blocks)

    @property
    def label(self) -> str:
        """'weights int8, activations int8, KV cache int8 (changed nothing: no KV cache);
        embedding and lm_head left out'."""
        parts = []
        for field, what in (("weights_dtype", "weights"), ("act_dtype", "activations"),
                            ("kv_dtype", "KV cache")):
            value = getattr(self, field)
            if value:
                note = " (no such tensors: changed nothing)" if field in self.unchanged else ""
                parts.append(f"{what} {value}{note}")
        if self.exclude_blocks:
            parts.append(f"{' and '.join(self.exclude_blocks)} left out")
        return ", ".join(parts)


@dataclass(frozen=True)
class AsWritten(ByteTotals):
    """The graph's own totals, beside a what-if's."""

    flops: int
    bytes_read: ByteCounts
    bytes_written: ByteCounts
    predicted_latency_s: float


EMPTY_BLOCKS: Mapping[str, BlockTotals] = MappingProxyType({})

__all__ = ["EMPTY_BLOCKS", "AsWritten", "BlockTotals", "ByteTotals", "WhatIf", "block_totals"]
