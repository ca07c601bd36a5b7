"""Reading small user files (configs, hardware specs, baselines) safely, and quoting their values
in one-line messages. Shared so that every file a user names gets the same guards."""

from __future__ import annotations

import os
import reprlib
import stat
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 16 * 2**20  # far more than any config, spec list or baseline needs


class NotReadable(Exception):
    """The path names something memlint will not read (its message says why, for a user)."""


def read_small_file(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`. A FIFO or device (which would block
    or never end) and an oversized file raise NotReadable; OSError passes through."""
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer (a hang)
    with os.fdopen(os.open(Path(path), os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotReadable("not a regular file")
        if info.st_size > max_bytes:
            raise NotReadable(f"{info.st_size:,} bytes, more than the {max_bytes:,} allowed")
        return handle.read()


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxtuple, _SHOWN.maxset = 2, 4, 4, 4, 4


def shown(value: Any) -> str:
    """A value from a user's file, quoted and cut short for a one-line message (YAML aliases
    can make a small file hold a huge nested value)."""
    return _SHOWN.repr(value)
