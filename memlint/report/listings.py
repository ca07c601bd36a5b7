"""Listings for people: the tables of `memlint rules` and `memlint hw list`, the lines of
`memlint hw show` (rich renderables and markup; every value formatted here, text that comes from
rule and device files escaped)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.markup import escape
from rich.table import Table

from memlint import units
from memlint.findings import RuleInfo
from memlint.hardware import HardwareSpec
from memlint.ir import ComputeUnit, DType


def spec_table(specs: Iterable[HardwareSpec]) -> Table:
    """Name, aliases, memory bandwidth, fp16 tensor peak and capacity of each device."""
    table = Table(box=None)
    table.add_column("name", no_wrap=True)  # what users type after --hw: never cut
    for column in ("aliases", "memory BW", "fp16 tensor", "capacity"):
        table.add_column(column)
    for spec in specs:
        fp16 = spec.peak_for(DType.FLOAT16, ComputeUnit.TENSOR)
        table.add_row(
            escape(spec.name),
            escape(", ".join(spec.aliases)),
            units.si(spec.memory_bandwidth_bytes_per_s, "B/s"),
            units.si(fp16.flops_per_s, "FLOP/s"),
            units.nbytes(spec.memory_capacity_bytes),
        )
    return table


def spec_lines(spec: HardwareSpec) -> list[str]:
    """Every figure of one device with its unit and source, one per line, then its peaks with
    their ridge points (peak / memory bandwidth)."""
    lines = [f"[bold]{escape(spec.display_name)}[/bold] ({escape(spec.name)}, {spec.kind})"]
    if spec.aliases:
        lines.append(f"aliases: {escape(', '.join(spec.aliases))}")
    rows = [
        ("memory_bandwidth", units.si(spec.memory_bandwidth_bytes_per_s, "B/s")),
        ("memory_capacity", units.nbytes(spec.memory_capacity_bytes)),
        ("l2_cache", spec.l2_cache_bytes and units.nbytes(spec.l2_cache_bytes)),
        ("interconnect_bandwidth", spec.interconnect_bandwidth_bytes_per_s
         and units.si(spec.interconnect_bandwidth_bytes_per_s, "B/s")),
        ("kernel_overhead", spec.kernel_overhead_s and units.seconds(spec.kernel_overhead_s)),
        ("weight_streaming_bandwidth", spec.weight_streaming_bandwidth_bytes_per_s
         and units.si(spec.weight_streaming_bandwidth_bytes_per_s, "B/s")),
        ("skinny_matmul_rate", spec.skinny_matmul_flops_per_s
         and units.si(spec.skinny_matmul_flops_per_s, "FLOP/s")),
        ("copy_bandwidth", spec.copy_bandwidth_bytes_per_s
         and units.si(spec.copy_bandwidth_bytes_per_s, "B/s")),
        ("transpose_bandwidth", spec.transpose_bandwidth_bytes_per_s
         and units.si(spec.transpose_bandwidth_bytes_per_s, "B/s")),
    ]
    for key, value in rows:
        if value:
            lines.append(f"  {key:<26} {value:<14} {escape(spec.sources.get(key, ''))}")
    lines.append("dense peaks (ridge point = peak / memory bandwidth):")
    for key, value in sorted(spec.peak_flops_per_s.items()):
        ridge = value / spec.memory_bandwidth_bytes_per_s
        lines.append(
            f"  {key:<26} {units.si(value, 'FLOP/s'):<14} ridge {ridge:.3g} FLOP/B  "
            f"{escape(spec.sources.get(key, ''))}"
        )
    if spec.notes:
        lines.append(f"notes: {escape(spec.notes)}")
    if spec.origin:
        lines.append(f"from: {escape(spec.origin)}")
    return lines


def rules_table(rules: Iterable[RuleInfo]) -> Table:
    """Code, name, severity, summary and origin (memlint or a plugin) of each rule."""
    table = Table(box=None)
    for column in ("code", "name", "severity"):
        table.add_column(column, no_wrap=True)
    table.add_column("summary")
    table.add_column("from", no_wrap=True)
    for rule in rules:
        table.add_row(escape(rule.code), escape(rule.name), rule.severity.value,
                      escape(rule.summary), escape(rule.origin))
    return table
