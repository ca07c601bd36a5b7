"""Hardware data files -> HardwareSpec: the file format, the unit table and every check.

A file (TOML, or YAML when PyYAML is installed) holds a list `device` of tables:

    [[device]]
    name = "nvidia-a100-sxm4-80gb"          # stable slug, unique across all files
    display_name = "NVIDIA A100 SXM4 80GB"  # optional, defaults to name
    aliases = ["a100", "a100-80gb"]         # optional short names
    kind = "gpu"                            # gpu, cpu or tpu
    notes = "..."                           # optional
    memory_bandwidth = { value = 2039, unit = "GB/s", source = "vendor datasheet" }
    memory_capacity = { value = 80, unit = "GB", source = "..." }
    l2_cache = { ... }                      # optional
    interconnect_bandwidth = { ... }        # optional
    kernel_overhead = { value = 5, unit = "us", source = "..." }   # optional
    weight_streaming_bandwidth = { value = 38, unit = "GB/s", source = "..." }  # optional
    skinny_matmul_rate = { value = 90, unit = "GFLOPS", source = "..." }        # optional
    copy_bandwidth = { value = 20, unit = "GB/s", source = "..." }              # optional
    transpose_bandwidth = { value = 6, unit = "GB/s", source = "..." }          # optional

    [device.peaks]                          # dense peaks, at least one
    "tensor.float16" = { value = 312, unit = "TFLOPS", source = "..." }

Every error is a HardwareError on one line naming the file and, where known, the device.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Mapping
from typing import Any

from memlint.errors import HardwareError
from memlint.hardware.spec import KINDS, HardwareSpec, valid_peak_key
from memlint.textio import shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

# The one unit table: unit -> (factor to SI base units, what it measures). Powers of ten except
# the binary sizes: 1 GB/s = 1e9 B/s, 1 GB = 1e9 B, 1 GiB = 2**30 B.
UNITS: Mapping[str, tuple[float, str]] = {
    "TFLOPS": (1e12, "rate"),
    "TOPS": (1e12, "rate"),
    "GFLOPS": (1e9, "rate"),
    "TB/s": (1e12, "bandwidth"),
    "GB/s": (1e9, "bandwidth"),
    "GB": (1e9, "size"),
    "MB": (1e6, "size"),
    "GiB": (2**30, "size"),
    "MiB": (2**20, "size"),
    "us": (1e-6, "time"),
}

# What any real device measures, in SI base units, with orders of magnitude to spare: a figure
# outside is a typo (GB/s for TB/s twice over) or a hostile file, and would turn predictions
# into 0 or infinity. (lowest, highest, how the unit reads)
PLAUSIBLE: Mapping[str, tuple[float, float, str]] = {
    "rate": (1e6, 1e19, "FLOP/s"),  # a microcontroller .. ten exaFLOP/s
    "bandwidth": (1e6, 1e16, "B/s"),  # 1 MB/s .. 10 PB/s
    "size": (1e3, 1e16, "B"),  # 1 kB .. 10 PB
    "time": (1e-10, 1.0, "s"),  # 0.1 ns .. 1 s per kernel
}

# Numeric fields: name -> (what its unit must measure, required).
QUANTITIES: Mapping[str, tuple[str, bool]] = {
    "memory_bandwidth": ("bandwidth", True),
    "memory_capacity": ("size", True),
    "l2_cache": ("size", False),
    "interconnect_bandwidth": ("bandwidth", False),
    "kernel_overhead": ("time", False),
    "weight_streaming_bandwidth": ("bandwidth", False),
    "skinny_matmul_rate": ("rate", False),
    "copy_bandwidth": ("bandwidth", False),
    "transpose_bandwidth": ("bandwidth", False),
}
TEXT_FIELDS = ("name", "display_name", "kind", "notes")
KNOWN_FIELDS = frozenset(QUANTITIES) | frozenset(TEXT_FIELDS) | {"aliases", "peaks"}
QUANTITY_KEYS = frozenset({"value", "unit", "source"})


def parse_document(text: bytes, origin: str, fmt: str) -> tuple[HardwareSpec, ...]:
    """Parse a whole file's bytes ("toml" or "yaml") into specs; `origin` names it in errors."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HardwareError(f"hardware file {origin} is not UTF-8 text: {exc}") from None
    data = _load_yaml(decoded, origin) if fmt == "yaml" else _load_toml(decoded, origin)
    if not isinstance(data, dict) or not isinstance(data.get("device"), list):
        raise HardwareError(f"{origin}: expected a list of device tables under the key 'device'")
    extra = sorted(map(str, set(data) - {"device"}))
    if extra:
        raise HardwareError(f"{origin}: unknown top-level key {shown(extra[0])} (only 'device')")
    specs: dict[str, HardwareSpec] = {}
    for index, entry in enumerate(data["device"]):
        spec = parse_device(entry, origin, index)
        if spec.name in specs:
            raise HardwareError(f"{origin}: device {spec.name!r} is defined twice")
        specs[spec.name] = spec
    return tuple(specs.values())


def parse_device(entry: Any, origin: str, index: int) -> HardwareSpec:
    where = f"{origin}: device #{index + 1}"
    if not isinstance(entry, dict):
        raise HardwareError(f"{where}: expected a table, got {type(entry).__name__}")
    name = entry.get("name")
    if isinstance(name, str) and name.strip():
        where = f"{origin}: device {name!r}"
    for key in entry:
        if key not in KNOWN_FIELDS:
            raise HardwareError(f"{where}: unknown field {shown(key)}{_hint(key, KNOWN_FIELDS)}")
    text = {key: _text(entry, key, where) for key in TEXT_FIELDS}
    for key in ("name", "kind"):
        if not text[key]:
            raise HardwareError(f"{where}: missing field {key!r}")
    if text["kind"] not in KINDS:
        raise HardwareError(
            f"{where}: unknown kind {text['kind']!r} (expected one of {', '.join(sorted(KINDS))})"
        )
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise HardwareError(f"{where}: 'aliases' must be a list of non-empty strings")

    values: dict[str, float | None] = {}
    sources: dict[str, str] = {}
    for key, (measure, required) in QUANTITIES.items():
        if key not in entry:
            if required:
                raise HardwareError(f"{where}: missing field {key!r}")
            values[key] = None
            continue
        values[key], sources[key] = _quantity(entry[key], key, measure, where)

    peaks_entry = entry.get("peaks")
    if not isinstance(peaks_entry, dict) or not peaks_entry:
        raise HardwareError(f"{where}: missing field 'peaks' (a table of at least one peak)")
    peaks: dict[str, float] = {}
    for key, raw in peaks_entry.items():
        if not isinstance(key, str) or not valid_peak_key(key):
            raise HardwareError(
                f"{where}: unknown peak key {shown(key)}{_hint(key, _EXAMPLE_KEYS)}"
                " (expected '<tensor|vector>.<dtype>', e.g. 'tensor.float16')"
            )
        peaks[key], sources[key] = _quantity(raw, f"peaks.{key}", "rate", where)

    capacity, l2 = values["memory_capacity"], values["l2_cache"]
    return HardwareSpec(
        name=text["name"],
        display_name=text["display_name"] or text["name"],
        kind=text["kind"],
        aliases=tuple(a.strip() for a in aliases),
        memory_bandwidth_bytes_per_s=values["memory_bandwidth"],  # type: ignore[arg-type]
        memory_capacity_bytes=round(capacity),  # type: ignore[arg-type]
        l2_cache_bytes=None if l2 is None else round(l2),
        interconnect_bandwidth_bytes_per_s=values["interconnect_bandwidth"],
        kernel_overhead_s=values["kernel_overhead"],
        weight_streaming_bandwidth_bytes_per_s=values["weight_streaming_bandwidth"],
        skinny_matmul_flops_per_s=values["skinny_matmul_rate"],
        copy_bandwidth_bytes_per_s=values["copy_bandwidth"],
        transpose_bandwidth_bytes_per_s=values["transpose_bandwidth"],
        peak_flops_per_s=peaks,
        sources=sources,
        origin=origin,
        notes=text["notes"],
    )


_EXAMPLE_KEYS = (
    "tensor.float16", "tensor.bfloat16", "tensor.tf32", "tensor.float8", "tensor.int8",
    "tensor.int4", "vector.float32", "vector.float64", "vector.float16",
)  # fmt: skip


def _quantity(raw: Any, key: str, measure: str, where: str) -> tuple[float, str]:
    """Check one {value, unit, source} table; return (value in SI base units, source)."""
    if not isinstance(raw, dict):
        raise HardwareError(f"{where}: {key} must be a table {{value, unit, source}}, got {shown(raw)}")
    extra = sorted(map(str, set(raw) - QUANTITY_KEYS))
    if extra:
        raise HardwareError(f"{where}: {key} has unknown key {shown(extra[0])} (value, unit, source)")
    for needed in ("value", "unit", "source"):
        if needed not in raw:
            raise HardwareError(f"{where}: {key} is missing {needed!r}")
    value, unit, source = raw["value"], raw["unit"], raw["source"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HardwareError(f"{where}: {key} value must be a finite number, got {shown(value)}")
    if value <= 0:
        raise HardwareError(f"{where}: {key} value must be positive, got {value!r}")
    fitting = [u for u, (_, m) in UNITS.items() if m == measure]
    if not isinstance(unit, str) or unit not in UNITS:
        raise HardwareError(
            f"{where}: {key} has unknown unit {shown(unit)} (expected one of {', '.join(fitting)})"
        )
    factor, unit_measure = UNITS[unit]
    if unit_measure != measure:
        raise HardwareError(
            f"{where}: {key} unit {shown(unit)} is not a {measure} unit"
            f" (use one of {', '.join(fitting)})"
        )
    if not isinstance(source, str) or not source.strip():
        raise HardwareError(f"{where}: {key} needs a non-empty 'source' naming where it came from")
    low, high, base = PLAUSIBLE[measure]
    si = value * factor
    if not low <= si <= high:
        raise HardwareError(
            f"{where}: {key} = {value!r} {unit} is not a figure of a real device "
            f"(expected {low:g} to {high:g} {base})"
        )
    return si, source.strip()


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str):
        raise HardwareError(f"{where}: {key!r} must be a string, got {shown(value)}")
    return value.strip()


def _hint(word: Any, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _load_toml(text: str, origin: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HardwareError(f"malformed TOML in {origin}: {_one_line(exc)}") from None
    except RecursionError:
        raise HardwareError(f"malformed TOML in {origin}: nested too deeply") from None


def _load_yaml(text: str, origin: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise HardwareError(
            f"{origin}: reading YAML hardware files needs PyYAML (pip install pyyaml); "
            "or write the file as TOML"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HardwareError(f"malformed YAML in {origin}: {_one_line(exc)}") from None
    except RecursionError:
        raise HardwareError(f"malformed YAML in {origin}: nested too deeply") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
