"""This machine's memory, read without a psutil dependency: its RAM (what calibration writes as
the memory capacity) and its free RAM (what a measured run checks random weights against)."""

from __future__ import annotations

import os


def total_memory_bytes() -> int | None:
    """The RAM: MemTotal of /proc/meminfo, else os.sysconf's physical pages, else None."""
    return memory_bytes("MemTotal", "SC_PHYS_PAGES")


def available_memory_bytes() -> int | None:
    """Free RAM: MemAvailable of /proc/meminfo, else os.sysconf's available pages, else None."""
    return memory_bytes("MemAvailable", "SC_AVPHYS_PAGES")


def memory_bytes(meminfo_field: str, sysconf_pages: str) -> int | None:
    """A /proc/meminfo field in bytes, else os.sysconf(pages) * page size, else None:
    ("MemTotal", "SC_PHYS_PAGES") is the RAM, ("MemAvailable", "SC_AVPHYS_PAGES") the free RAM."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(f"{meminfo_field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf(sysconf_pages) * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


__all__ = ["available_memory_bytes", "memory_bytes", "total_memory_bytes"]
