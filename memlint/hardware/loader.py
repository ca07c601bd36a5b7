"""Find hardware specs: the built-in data files, users' files, and names and aliases.

Names and aliases match case-insensitively, with "_" and spaces read as "-". A user file's
device replaces a built-in (or earlier file's) device of the same name; a name or alias that
would point at two different devices is an error. Built-ins are read once, on first use.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from memlint.errors import HardwareError
from memlint.hardware.schema import parse_document
from memlint.hardware.spec import HardwareSpec
from memlint.textio import NotReadable, read_small_file

PathLike = str | os.PathLike[str]

_FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}


def load_spec_file(path: PathLike) -> tuple[HardwareSpec, ...]:
    """Every device in one TOML or YAML hardware file, in file order."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise HardwareError(
            f"hardware file {path} has an unsupported extension (use .toml, .yaml or .yml)"
        )
    try:
        text = read_small_file(path)
    except NotReadable as exc:
        raise HardwareError(f"hardware file {path}: {exc}") from None
    except FileNotFoundError:
        raise HardwareError(f"hardware file not found: {path}") from None
    except OSError as exc:
        raise HardwareError(f"cannot read hardware file {path}: {exc.strerror or exc}") from None
    return parse_document(text, str(path), fmt)


@functools.cache
def load_builtin_specs() -> tuple[HardwareSpec, ...]:
    """The specs shipped in memlint/hardware/specs/*.toml, sorted by name."""
    folder = resources.files("memlint.hardware").joinpath("specs")
    specs: list[HardwareSpec] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            specs.extend(parse_document(entry.read_bytes(), str(entry), "toml"))
    merged = _merge(specs, override=False)
    _index(merged)  # built-ins must not clash either
    return tuple(sorted(merged, key=lambda s: s.name))


def list_specs(extra_files: Sequence[PathLike] = ()) -> tuple[HardwareSpec, ...]:
    """Built-ins plus the devices of `extra_files` (later files override), sorted by name."""
    specs = _with_extra(extra_files)
    _index(specs)
    return tuple(sorted(specs, key=lambda s: s.name))


def resolve(name: str, extra_files: Sequence[PathLike] = ()) -> HardwareSpec:
    """The spec whose name or alias is `name`, looking in the built-ins and `extra_files`."""
    index = _builtin_index() if not extra_files else _index(_with_extra(extra_files))
    spec = index.get(normalize(name))
    if spec is not None:
        return spec
    close = difflib.get_close_matches(normalize(name), sorted(index), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ";"
    searched = ""
    if extra_files:
        searched = f" (searched the built-ins and {', '.join(map(str, extra_files))})"
    raise HardwareError(
        f"unknown hardware {name!r}{hint} run `memlint hw list` to see every device{searched}"
    )


def normalize(name: str) -> str:
    """The lookup form of a name or alias: case-folded, "_" and whitespace turned into "-"."""
    return re.sub(r"[\s_]+", "-", name.strip()).casefold()


@functools.cache
def _builtin_index() -> Mapping[str, HardwareSpec]:
    return MappingProxyType(_index(load_builtin_specs()))


def _with_extra(extra_files: Sequence[PathLike]) -> list[HardwareSpec]:
    specs = list(load_builtin_specs())
    for path in extra_files:
        specs.extend(load_spec_file(path))
    return _merge(specs, override=True)


def _merge(specs: Iterable[HardwareSpec], *, override: bool) -> list[HardwareSpec]:
    """Keep one spec per name: the later one when `override`, else a duplicate is an error."""
    by_name: dict[str, HardwareSpec] = {}
    for spec in specs:
        key = normalize(spec.name)
        earlier = by_name.get(key)
        if earlier is not None and not override:
            raise HardwareError(
                f"device {spec.name!r} in {spec.origin} is already defined in {earlier.origin}"
            )
        by_name[key] = spec
    return list(by_name.values())


def _index(specs: Iterable[HardwareSpec]) -> dict[str, HardwareSpec]:
    """Map every normalized name and alias to its spec; one pointing at two devices is an error."""
    index: dict[str, HardwareSpec] = {}
    for spec in specs:
        for label in (spec.name, *spec.aliases):
            key = normalize(label)
            other = index.get(key)
            if other is not None and other is not spec:
                raise HardwareError(
                    f"alias {label!r} of device {spec.name!r} in {spec.origin} is already used "
                    f"by device {other.name!r} in {other.origin}"
                )
            index[key] = spec
    return index


def user_spec_dir() -> Path:
    """Where `memlint hw calibrate --save` keeps specs that every run knows:
    $MEMLINT_HARDWARE_DIR, else $XDG_CONFIG_HOME/memlint/hardware, else ~/.config/memlint/hardware."""
    if os.environ.get("MEMLINT_HARDWARE_DIR"):
        return Path(os.environ["MEMLINT_HARDWARE_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "memlint" / "hardware"


def user_spec_files() -> tuple[Path, ...]:
    """The user's saved specs (calibrations), sorted; none when the folder does not exist."""
    folder = user_spec_dir()
    if not folder.is_dir():
        return ()
    return tuple(sorted(p for p in folder.iterdir()
                        if p.suffix in (".toml", ".yaml", ".yml") and p.is_file()))
