"""Hardware specs: built-in data files with sources, users' files, and peak selection."""

from memlint.hardware.loader import list_specs, load_builtin_specs, load_spec_file, resolve
from memlint.hardware.schema import UNITS
from memlint.hardware.spec import HardwareSpec, Peak, peak_chain

__all__ = [
    "UNITS",
    "HardwareSpec",
    "Peak",
    "list_specs",
    "load_builtin_specs",
    "load_spec_file",
    "peak_chain",
    "resolve",
]
