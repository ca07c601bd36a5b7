"""Reading small user files (configs, hardware specs, baselines) safely, writing reports and
specs atomically, and quoting values in one-line messages. Shared so that every file a user
names gets the same guards."""

from __future__ import annotations

import contextlib
import os
import reprlib
import stat
import tempfile
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


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` whole or not at all (a temporary file beside it, then a rename),
    with the mode a new file gets under the umask (0644 under 022), or the mode of the regular
    file it replaces. Only a regular file or a new path is replaced: a device, FIFO, folder or
    symlink at `path` raises NotWritable; OSError passes through."""
    target = Path(path)
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    else:
        if not stat.S_ISREG(info.st_mode):
            raise NotWritable(f"{_kind(info.st_mode)} is there, not a regular file; "
                              "memlint replaces only regular files")
        mode = stat.S_IMODE(info.st_mode)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


class NotWritable(Exception):
    """The path names something memlint will not replace (its message says why, for a user)."""


def _umask() -> int:
    mask = os.umask(0o22)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "something"


def shown(value: Any) -> str:
    """A value from a user's file, quoted and cut short for a one-line message (YAML aliases
    can make a small file hold a huge nested value)."""
    return _SHOWN.repr(value)
