"""Cost data types: what a formula returns for one operator."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from memlint.ir import ComputeUnit, DType, Value, ValueKind


class CostStatus(enum.Enum):
    MODELLED = "modelled"  # a formula counted it
    METADATA = "metadata"  # changes metadata only (Reshape, Shape, ...): moves no bytes
    FOLDED = "folded"  # every input is a constant: computed once when the model loads
    UNMODELLED = "unmodelled"  # no formula: FLOPs unknown, bytes are a lower bound
    UNRESOLVED = "unresolved"  # a tensor shape is unknown: bytes are a lower bound


@dataclass(frozen=True)
class ByteCounts:
    """Bytes split by the kind of tensor they belong to."""

    weights: int = 0
    activations: int = 0
    kv_cache: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.kv_cache

    def __add__(self, other: ByteCounts) -> ByteCounts:
        return ByteCounts(
            self.weights + other.weights,
            self.activations + other.activations,
            self.kv_cache + other.kv_cache,
        )

    def scaled(self, factor: int) -> ByteCounts:
        return ByteCounts(self.weights * factor, self.activations * factor, self.kv_cache * factor)

    @classmethod
    def of(cls, values: Iterable[Value | None]) -> ByteCounts:
        """Each value's full size once, by its kind; unknown sizes count as zero."""
        weights = activations = kv_cache = 0  # plain locals: this runs for every node
        for value in values:
            if value is None:
                continue
            nbytes = value.nbytes
            if nbytes is None:
                continue
            kind = value.kind
            if kind is ValueKind.WEIGHT:
                weights += nbytes
            elif kind is ValueKind.ACTIVATION:
                activations += nbytes
            elif kind is ValueKind.KV_CACHE:
                kv_cache += nbytes
        return cls(weights=weights, activations=activations, kv_cache=kv_cache)

    @classmethod
    def by_kind(cls, counts: dict[ValueKind, int]) -> ByteCounts:
        return cls(
            weights=counts.get(ValueKind.WEIGHT, 0),
            activations=counts.get(ValueKind.ACTIVATION, 0),
            kv_cache=counts.get(ValueKind.KV_CACHE, 0),
        )

    @classmethod
    def single(cls, kind: ValueKind, nbytes: int) -> ByteCounts:
        return cls.by_kind({kind: nbytes})


ZERO_BYTES = ByteCounts()


@dataclass(frozen=True)
class OpCost:
    """FLOPs and bytes of one operator, counted unfused (see docs/cost-model.md).

    `parts` is set for control flow (If/Loop/Scan): the costs of the subgraph nodes that run,
    already multiplied by their trip count; the roofline times each part on its own.
    """

    flops: int
    bytes_read: ByteCounts
    bytes_written: ByteCounts
    status: CostStatus
    unit: ComputeUnit = ComputeUnit.VECTOR
    compute_dtype: DType | None = None
    note: str = ""
    parts: tuple[OpCost, ...] = ()
    permutes: bool = False  # a layout permutation (Transpose): strided reads, its own bandwidth

    @property
    def bytes_moved(self) -> int:
        return self.bytes_read.total + self.bytes_written.total

    @property
    def intensity(self) -> float | None:
        """FLOPs per byte moved; None when nothing moves."""
        moved = self.bytes_moved
        return self.flops / moved if moved else None

    @property
    def is_modelled(self) -> bool:
        return self.status in (CostStatus.MODELLED, CostStatus.METADATA, CostStatus.FOLDED)

    def scaled(self, factor: int) -> OpCost:
        return OpCost(
            flops=self.flops * factor,
            bytes_read=self.bytes_read.scaled(factor),
            bytes_written=self.bytes_written.scaled(factor),
            status=self.status,
            unit=self.unit,
            compute_dtype=self.compute_dtype,
            note=self.note,
            parts=tuple(p.scaled(factor) for p in self.parts),
            permutes=self.permutes,
        )
