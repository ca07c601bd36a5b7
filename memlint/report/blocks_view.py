"""The per-block table (`summary.by_block`) and the what-if line of the header, formatted for
every renderer (docs/blocks.md)."""

from __future__ import annotations

from dataclasses import dataclass

from memlint import units
from memlint.analysis.blocks import LABELS
from memlint.core.report import Report


@dataclass(frozen=True)
class BlockRow:
    role: str  # the JSON key (summary.by_block)
    label: str
    nodes: str
    flops: str
    bytes: str  # read + written
    bytes_weights: str
    bytes_activations: str
    bytes_kv: str
    intensity: str
    time: str
    share: str  # of the predicted latency


BLOCK_HEADERS = ("block", "nodes", "FLOPs", "bytes", "weights", "activations", "KV cache",
                 "FLOP/B", "time", "share")  # fmt: skip


def block_rows(report: Report) -> tuple[BlockRow, ...]:
    """One row per block role with nodes, in data-flow order."""
    total = report.summary.predicted_latency_s
    rows = []
    for role, block in report.summary.by_block.items():
        moved = block.bytes_by_kind
        rows.append(BlockRow(
            role=role, label=LABELS.get(role, role), nodes=str(block.nodes),
            flops=units.flops(block.flops), bytes=units.nbytes(moved.total),
            bytes_weights=units.nbytes(moved.weights),
            bytes_activations=units.nbytes(moved.activations),
            bytes_kv=units.nbytes(moved.kv_cache), intensity=units.intensity(block.intensity),
            time=units.seconds(block.predicted_latency_s),
            share=units.percent(block.predicted_latency_s / total) if total else "-",
        ))  # fmt: skip
    return tuple(rows)


def block_cells(row: BlockRow) -> tuple[str, ...]:
    """A row's cells in BLOCK_HEADERS order."""
    return (row.label, row.nodes, row.flops, row.bytes, row.bytes_weights, row.bytes_activations,
            row.bytes_kv, row.intensity, row.time, row.share)  # fmt: skip


# The terminal's narrower table: the bytes by kind are in every other format.
SHORT_HEADERS = ("block", "nodes", "FLOPs", "bytes", "intensity", "time", "share")


def short_cells(row: BlockRow) -> tuple[str, ...]:
    """A row's cells in SHORT_HEADERS order."""
    return (row.label, row.nodes, row.flops, row.bytes, row.intensity, row.time, row.share)


def what_if_line(report: Report) -> str:
    """'' without a what-if, else e.g. 'totals are a what-if: weights int8, activations int8;
    embedding and lm_head left out (as written: 22.4 GFLOP, 380 MB, 1.2 ms)'."""
    summary = report.summary
    if summary.what_if is None:
        return ""
    line = f"totals are a what-if: {summary.what_if.label}"
    written = summary.as_written
    if written is not None:
        line += (f" (as written: {units.flops(written.flops)}, "
                 f"{units.nbytes(written.bytes_moved)} moved, "
                 f"{units.seconds(written.predicted_latency_s)}); "
                 "findings are about the graph as written")  # fmt: skip
    return line


__all__ = [
    "BLOCK_HEADERS", "SHORT_HEADERS", "BlockRow", "block_cells", "block_rows", "short_cells",
    "what_if_line",
]  # fmt: skip
