"""Number formatting shared by every renderer (SI prefixes, powers of ten)."""

from __future__ import annotations

_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float, unit: str, digits: int = 3) -> str:
    """1.23e9, 'FLOP' -> '1.23 GFLOP'; powers of ten, as hardware datasheets count."""
    for scale, prefix in _PREFIXES:  # the largest prefix whose rounded figure is at least 1
        text = f"{value / scale:.{digits}g}"
        if abs(float(text)) >= 1:
            return f"{text} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def nbytes(value: float) -> str:
    return si(value, "B")


def flops(value: float) -> str:
    return si(value, "FLOP")


def seconds(value: float) -> str:
    if value == 0:
        return "0 s"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):  # as si(): 0.99996 ms is 1 ms
        text = f"{value / scale:.3g}"
        if abs(float(text)) >= 1:
            return f"{text} {unit}"
    return f"{value / 1e-9:.3g} ns"


def intensity(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} FLOP/B"


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def by_unit(value: float, unit: str) -> str:
    """A measured number formatted by its unit ("B", "s", "FLOP/B", "FLOP", "fraction", or any
    other unit printed after the number), as evidence and diffs show it."""
    if unit == "B":
        return nbytes(value)
    if unit == "s":
        return seconds(value)
    if unit == "FLOP/B":
        return intensity(value)
    if unit == "FLOP":
        return flops(value)
    if unit == "fraction":
        return percent(value)
    number = f"{int(value):,}" if float(value).is_integer() else f"{value:.4g}"
    return f"{number} {unit}" if unit else number
