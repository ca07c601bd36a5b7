"""HardwareSpec: one accelerator's roofline figures in SI base units, and how a peak is chosen.

Peak keys are "<unit>.<dtype>": the unit is a ComputeUnit value ("tensor" for matrix cores,
"vector" for the vector/SIMD units) and the dtype a DType label ("float16", "int8", ...) or one
of the family keys "tf32" (float32 matmul on tensor cores) and "float8" (every float8 variant).

How `peak_for` picks a key (first key the device has wins):

    TENSOR  float16            tensor.float16, tensor.bfloat16
            bfloat16           tensor.bfloat16, tensor.float16
            float32, tf32=True tensor.tf32, vector.float32
            float32            vector.float32
            float8 variants    tensor.float8, tensor.float16, tensor.bfloat16
            int8, uint8        tensor.int8, tensor.float16, tensor.bfloat16
            int4/uint4/int2/uint2  tensor.int4, tensor.int8, tensor.float16, tensor.bfloat16
            float64            vector.float64, vector.float32
            anything else      as on the VECTOR unit
    VECTOR  <dtype>            vector.<dtype>, vector.float32
    None dtype (either unit)   vector.float32

and when none of those exists (a TPU publishes no vector peak): vector.float32, tensor.tf32,
tensor.bfloat16, tensor.float16, then the largest peak the device has. A spec always has at least
one peak, so the answer is never zero and `peak_for` never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from memlint.errors import HardwareError
from memlint.ir import EMPTY, ComputeUnit, DType

KINDS = frozenset({"gpu", "cpu", "tpu"})

# Family keys accepted besides DType labels in "<unit>.<dtype>" peak keys.
FAMILY_KEYS = frozenset({"tf32", "float8"})

_FLOAT8 = frozenset(
    {
        DType.FLOAT8E4M3FN,
        DType.FLOAT8E4M3FNUZ,
        DType.FLOAT8E5M2,
        DType.FLOAT8E5M2FNUZ,
        DType.FLOAT8E8M0,
    }
)
_SUB_BYTE_INT = frozenset({DType.INT4, DType.UINT4, DType.INT2, DType.UINT2})

# Tried, in order, after a dtype's own chain when none of its keys exists on the device.
_LAST_RESORT = ("vector.float32", "tensor.tf32", "tensor.bfloat16", "tensor.float16")


class Peak(NamedTuple):
    """The peak rate chosen for a (dtype, unit) pair and the key it was read from."""

    flops_per_s: float
    key: str


def valid_peak_key(key: str) -> bool:
    """True for "<tensor|vector>.<DType label or family key>"."""
    unit, _, dtype = key.partition(".")
    if unit not in {u.value for u in ComputeUnit}:
        return False
    return dtype in FAMILY_KEYS or dtype in {d.label for d in DType}


def peak_chain(dtype: DType | None, unit: ComputeUnit, *, tf32: bool = False) -> tuple[str, ...]:
    """The preferred peak keys for a dtype on a unit, best first (see the module docstring)."""
    if dtype is None:
        return ("vector.float32",)
    if unit is ComputeUnit.TENSOR:
        if dtype is DType.FLOAT16:
            return ("tensor.float16", "tensor.bfloat16")
        if dtype is DType.BFLOAT16:
            return ("tensor.bfloat16", "tensor.float16")
        if dtype is DType.FLOAT32:
            return ("tensor.tf32", "vector.float32") if tf32 else ("vector.float32",)
        if dtype in _FLOAT8:
            return ("tensor.float8", "tensor.float16", "tensor.bfloat16")
        if dtype in (DType.INT8, DType.UINT8):
            return ("tensor.int8", "tensor.float16", "tensor.bfloat16")
        if dtype in _SUB_BYTE_INT:
            return ("tensor.int4", "tensor.int8", "tensor.float16", "tensor.bfloat16")
        if dtype is DType.FLOAT64:
            return ("vector.float64", "vector.float32")
    own = f"vector.{dtype.label}"
    return (own, "vector.float32") if own != "vector.float32" else (own,)


@dataclass(frozen=True)
class HardwareSpec:
    """One device's figures, all in SI base units (bytes, seconds, FLOP/s).

    `peak_flops_per_s` holds dense peaks keyed like "tensor.float16". `sources` maps each field
    name ("memory_bandwidth", "l2_cache", ...) and each peak key to where the figure came from;
    `origin` is the file the spec was read from.
    """

    name: str
    display_name: str
    kind: str
    memory_bandwidth_bytes_per_s: float
    memory_capacity_bytes: int
    peak_flops_per_s: Mapping[str, float]
    aliases: tuple[str, ...] = ()
    l2_cache_bytes: int | None = None
    interconnect_bandwidth_bytes_per_s: float | None = None
    kernel_overhead_s: float | None = None
    # Optional figures by access pattern and shape class (memlint.roofline.time_op uses them):
    # the bandwidth a matrix product reaches streaming its weights with few rows (a decode
    # step's GEMV), and the FLOP rate of a skinny matrix product (few rows; the peaks above are
    # square ones). None: the memory bandwidth and the peaks serve every operator.
    weight_streaming_bandwidth_bytes_per_s: float | None = None
    skinny_matmul_flops_per_s: float | None = None
    # The bandwidth of data movement: operators that do no arithmetic and move bytes (Concat,
    # Transpose, Gather, Slice, Expand, Split, ...), as a decode step's KV-cache copies run.
    # None: the memory bandwidth serves them too.
    copy_bandwidth_bytes_per_s: float | None = None
    transpose_bandwidth_bytes_per_s: float | None = None  # permuting copies (Transpose)
    sources: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    origin: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        where = f"hardware spec {self.name!r}" + (f" ({self.origin})" if self.origin else "")
        if not self.peak_flops_per_s:
            raise HardwareError(f"{where}: no peaks given")
        figures = {
            "memory_bandwidth": self.memory_bandwidth_bytes_per_s,
            "memory_capacity": self.memory_capacity_bytes,
            "l2_cache": self.l2_cache_bytes,
            "interconnect_bandwidth": self.interconnect_bandwidth_bytes_per_s,
            "kernel_overhead": self.kernel_overhead_s,
            "weight_streaming_bandwidth": self.weight_streaming_bandwidth_bytes_per_s,
            "skinny_matmul_rate": self.skinny_matmul_flops_per_s,
            "copy_bandwidth": self.copy_bandwidth_bytes_per_s,
            "transpose_bandwidth": self.transpose_bandwidth_bytes_per_s,
            **{f"peaks.{k}": v for k, v in self.peak_flops_per_s.items()},
        }
        for label, value in figures.items():
            if value is not None and not value > 0:
                raise HardwareError(f"{where}: {label} must be positive, got {value}")
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "peak_flops_per_s", MappingProxyType(dict(self.peak_flops_per_s)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def __hash__(self) -> int:
        return hash((self.name, self.origin))

    def peak_for(self, dtype: DType | None, unit: ComputeUnit, *, tf32: bool = False) -> Peak:
        """The dense peak for `dtype` on `unit` and the key it came from (never zero, never raises).

        float32 uses tensor cores (TF32) only with tf32=True; the full chain is in the module
        docstring.
        """
        peaks = self.peak_flops_per_s
        for key in peak_chain(dtype, unit, tf32=tf32) + _LAST_RESORT:
            if key in peaks:
                return Peak(peaks[key], key)
        key = max(sorted(peaks), key=peaks.__getitem__)
        return Peak(peaks[key], key)

    def ridge_point(self, dtype: DType | None, unit: ComputeUnit, tf32: bool = False) -> float:
        """Arithmetic intensity (FLOP/byte) where the roofline turns: peak / memory bandwidth."""
        return self.peak_for(dtype, unit, tf32=tf32).flops_per_s / self.memory_bandwidth_bytes_per_s
