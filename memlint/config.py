"""Configuration: `[tool.memlint]` in pyproject.toml or a memlint.toml, plus command-line flags.

The file is found by walking up from the model's folder; the first folder holding a memlint.toml
or a pyproject.toml with a [tool.memlint] table wins (memlint.toml first, as ruff does with
ruff.toml). Keys (kebab-case):

    hw = "a100"                      # default device
    fail-on = "warning"              # error | warning | info | never
    tf32 = false
    dims = { batch_size = 1 }        # symbolic dims bound by default (flags override)
    select = ["ML"]                  # codes or prefixes ("ALL" = every rule)
    ignore = ["ML107"]
    min-share = 0.01                 # noise control: hide a finding whose nodes take less than
    min-saving-s = 0.001             #   this share of predicted time AND whose fix saves less
    [tool.memlint.severity]          # severity overrides, by code
    ML106 = "error"
    [tool.memlint.rules.ML101]       # rule options, by code or rule name
    max-intensity-ratio = 0.5
    [[tool.memlint.suppress]]        # hide findings on matching nodes; the reason is required
    code = "ML102"                   # a code or prefix
    nodes = "/h.*/mlp/*"             # fnmatch glob on node names
    reason = "fused by TensorRT at deploy time"
    baseline = "memlint-baseline.json"   # only findings not in this file fail (relative to here)
    models = ["models/**/*.onnx"]        # what `pytest --memlint` lints (relative to here)
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from memlint.errors import ConfigError
from memlint.findings import Severity
from memlint.ir import EMPTY
from memlint.textio import NotReadable, read_small_file, shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FAIL_ON = ("error", "warning", "info", "never")
DEFAULT_MIN_SHARE = 0.01
DEFAULT_MIN_SAVING_S = 1e-3


@dataclass(frozen=True)
class Suppression:
    code: str  # a code or a prefix
    nodes: str  # fnmatch glob over node names
    reason: str


@dataclass(frozen=True)
class Config:
    select: tuple[str, ...] = ("ALL",)
    ignore: tuple[str, ...] = ()
    severity: Mapping[str, Severity] = field(default_factory=lambda: EMPTY)
    rule_options: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: EMPTY)
    suppress: tuple[Suppression, ...] = ()
    min_share: float = DEFAULT_MIN_SHARE
    min_saving_s: float = DEFAULT_MIN_SAVING_S
    hw: str | None = None
    fail_on: str | None = None
    tf32: bool | None = None
    dims: Mapping[str, int] = field(default_factory=lambda: EMPTY)
    baseline: str | None = None  # a baseline file: only findings not in it count (memlint.baseline)
    models: tuple[str, ...] = ()  # globs of the model files `pytest --memlint` lints
    path: str | None = None  # the file it came from
    files: tuple[str, ...] = ()  # every file applied, and what it gave (reports name them)

    def with_model_config(self, local: Config) -> Config:
        """This (the run's) config with a config found beside a model: the model's file may add
        dims (the run's win) and suppressions, each with its reason; it never changes the gate
        (fail-on, select, ignore, severities, rule options and budgets, noise thresholds,
        baseline, hardware), so a file added beside a model cannot turn a CI gate off."""
        if local.path is None or local.path == self.path:
            return self
        given = [what for what, there in (("dims", local.dims), ("suppressions", local.suppress))
                 if there]
        ignored = sorted(key for key, default in _GATE.items() if getattr(local, key) != default)
        note = f"{local.path} (model folder: {', '.join(given) or 'nothing used'}"
        note += f"; not used for the gate: {', '.join(ignored)})" if ignored else ")"
        return replace(
            self,
            dims=MappingProxyType({**local.dims, **self.dims}),
            suppress=self.suppress + local.suppress,
            files=(*self.files, note),
        )

    def with_flags(
        self,
        *,
        select: tuple[str, ...] = (),
        ignore: tuple[str, ...] = (),
        severity: Mapping[str, str] | None = None,
        rule_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Config:
        """Command-line flags over the file: --select replaces, --ignore adds, the rest merge."""
        merged_options = {k: dict(v) for k, v in self.rule_options.items()}
        for rule, values in (rule_options or {}).items():
            merged_options.setdefault(rule, {}).update(values)
        severities = dict(self.severity)
        for code, text in (severity or {}).items():
            severities[code] = _severity(text, f"severity of {code}")
        return replace(
            self,
            select=tuple(select) or self.select,
            ignore=self.ignore + tuple(ignore),
            severity=MappingProxyType(severities),
            rule_options=MappingProxyType(merged_options),
        )


_KEYS = (
    "hw", "fail-on", "tf32", "dims", "select", "ignore", "min-share", "min-saving-s",
    "severity", "rules", "suppress", "baseline", "models",
)


def find_config(start: Path) -> tuple[Path, Mapping[str, Any]] | None:
    """The nearest memlint.toml, or pyproject.toml with [tool.memlint], at or above `start`."""
    folder = start if start.is_dir() else start.parent
    for candidate in (folder.resolve(), *folder.resolve().parents):
        own = candidate / "memlint.toml"
        if own.is_file():
            return own, _read(own)
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file():
            table = _tool_table(_read(pyproject), pyproject)
            if table is not None:
                return pyproject, table
    return None


def _tool_table(document: Mapping[str, Any], path: Path) -> Mapping[str, Any] | None:
    """The [tool.memlint] table of a pyproject.toml document (None when it has none)."""
    tool = document.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{path}: [tool] must be a table, got {shown(tool)}")
    table = tool.get("memlint")
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.memlint] must be a table, got {shown(table)}")
    return table


def load_config(path: Path | None = None, *, start: Path | None = None) -> Config:
    """Config from an explicit file, else found from `start`, else the defaults."""
    if path is not None:
        table = _read(path)
        if path.name == "pyproject.toml":
            table = _tool_table(table, path) or {}
        return parse_config(table, str(path))
    found = find_config(start) if start is not None else None
    if found is None:
        return Config()
    return parse_config(found[1], str(found[0]))


# The settings a gate is made of, with their defaults (Config.with_model_config keeps them).
_GATE = {
    "fail_on": None, "select": ("ALL",), "ignore": (), "severity": EMPTY, "rule_options": EMPTY,
    "min_share": DEFAULT_MIN_SHARE, "min_saving_s": DEFAULT_MIN_SAVING_S, "baseline": None,
    "hw": None, "tf32": None,
}  # fmt: skip


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_small_file(path).decode("utf-8"))
    except NotReadable as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({' '.join(str(exc).split())})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (arrays or tables nested too deeply)") from None


def _name(key: Any) -> str:
    """A key from a config file as written when it is a short printable string, else quoted."""
    if isinstance(key, str) and key.isprintable() and len(key) <= 60:
        return key
    return shown(key)


def parse_config(table: Mapping[str, Any], origin: str) -> Config:
    """Validate a [tool.memlint] table; every problem is a ConfigError naming file and key."""

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{origin}: [tool.memlint] {key}: {problem}")

    for key in table:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, _KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(_name(key), f"unknown key{hint}")
    values: dict[str, Any] = {"path": origin, "files": (origin,)}
    if "hw" in table:
        values["hw"] = _typed(table["hw"], str, "hw", fail)
    if "baseline" in table:  # relative to the config file's folder
        relative = _typed(table["baseline"], str, "baseline", fail)
        values["baseline"] = str(Path(origin).parent / relative)
    if "fail-on" in table:
        fail_on = _typed(table["fail-on"], str, "fail-on", fail)
        if fail_on not in FAIL_ON:
            raise fail("fail-on", f"{shown(fail_on)} is not one of {', '.join(FAIL_ON)}")
        values["fail_on"] = fail_on
    if "tf32" in table:
        values["tf32"] = _typed(table["tf32"], bool, "tf32", fail)
    if "dims" in table:
        dims = _typed(table["dims"], dict, "dims", fail)
        for name, value in dims.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise fail("dims", f"{_name(name)} must be a whole number >= 0, got {shown(value)}")
        values["dims"] = MappingProxyType(dict(dims))
    for key in ("select", "ignore", "models"):
        if key in table:
            items = _typed(table[key], list, key, fail)
            if not all(isinstance(i, str) and i for i in items):
                what = "file globs" if key == "models" else "rule codes or prefixes"
                raise fail(key, f"must be a list of {what}")
            values[key] = tuple(items)
    for key, attr in (("min-share", "min_share"), ("min-saving-s", "min_saving_s")):
        if key in table:
            number = table[key]
            if not isinstance(number, (int, float)) or isinstance(number, bool) or number < 0:
                raise fail(key, f"must be a non-negative number, got {shown(number)}")
            values[attr] = float(number)
    if "severity" in table:
        severities = _typed(table["severity"], dict, "severity", fail)
        try:
            values["severity"] = MappingProxyType(
                {code: _severity(text, _name(code)) for code, text in severities.items()}
            )
        except ConfigError as exc:
            raise fail("severity", str(exc)) from None
    if "rules" in table:
        rules = _typed(table["rules"], dict, "rules", fail)
        for rule, options in rules.items():
            if not isinstance(options, dict):
                raise fail(f"rules.{_name(rule)}", "must be a table of option = value")
        values["rule_options"] = MappingProxyType({k: dict(v) for k, v in rules.items()})
    if "suppress" in table:
        values["suppress"] = tuple(
            _suppression(entry, i, fail)
            for i, entry in enumerate(_typed(table["suppress"], list, "suppress", fail))
        )
    return Config(**values)


def _typed(value: Any, kind: type, key: str, fail) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        names = {str: "a string", bool: "true or false", dict: "a table", list: "a list"}
        raise fail(key, f"must be {names[kind]}, got {shown(value)}")
    return value


def _severity(text: Any, what: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _suppression(entry: Any, index: int, fail) -> Suppression:
    key = f"suppress[{index}]"
    if not isinstance(entry, dict):
        raise fail(key, "must be a table with code, nodes and reason")
    unknown = set(entry) - {"code", "nodes", "reason"}
    if unknown:
        raise fail(key, f"unknown key(s) {', '.join(shown(k) for k in sorted(unknown))}")
    for part in ("nodes", "reason"):
        if not isinstance(entry.get(part), str) or not entry[part].strip():
            raise fail(key, f"needs a non-empty `{part}` string")
    code = entry.get("code", "ALL")
    if not isinstance(code, str) or not code:
        raise fail(key, "`code` must be a rule code or prefix")
    return Suppression(code=code, nodes=entry["nodes"], reason=entry["reason"].strip())


def parse_rule_option_flags(flags: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """`--rule-option ML101.max-intensity-ratio=0.5` -> {"ML101": {"max-intensity-ratio": 0.5}}.

    Values are read as TOML scalars (numbers, true/false, quoted or bare strings)."""
    parsed: dict[str, dict[str, Any]] = {}
    for flag in flags:
        target, sep, raw = flag.partition("=")
        rule, dot, option = target.partition(".")
        if not sep or not dot or not rule or not option:
            raise ConfigError(f"--rule-option {flag!r}: expected RULE.OPTION=VALUE")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        parsed.setdefault(rule, {})[option] = value
    return parsed


def parse_severity_flags(flags: tuple[str, ...]) -> dict[str, str]:
    """`--severity ML106=error` -> {"ML106": "error"}."""
    parsed = {}
    for flag in flags:
        code, sep, level = flag.partition("=")
        if not sep or not code:
            raise ConfigError(f"--severity {flag!r}: expected CODE=info|warning|error")
        parsed[code] = level
    return parsed


_BUDGETS = {  # --budget NAME -> the ML903 over-budget option it sets
    "latency": "max-latency-s",
    "memory-bound": "max-memory-bound-share",
    "bytes-per-token": "max-bytes-per-token",
    "coverage": "min-coverage",
}
_SUFFIXES = (  # longest first
    ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9), ("s", 1.0),
    ("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1.0), ("%", 0.01),
)


def parse_budget_flags(flags: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """`--budget latency=5ms --budget memory-bound=80%` -> options of rule ML903 (over-budget).

    Values take a unit: s/ms/us/ns for latency, B/kB/MB/GB/TB for bytes per token, % or a
    fraction for the shares."""
    options: dict[str, float] = {}
    for flag in flags:
        name, sep, text = flag.partition("=")
        key = _BUDGETS.get(name.strip())
        if not sep or key is None:
            raise ConfigError(f"--budget {flag!r}: expected NAME=VALUE with NAME one of "
                              f"{', '.join(_BUDGETS)} (e.g. latency=5ms, memory-bound=80%)")
        text = text.strip().replace(" ", "")
        scale = 1.0
        for suffix, factor in sorted(_SUFFIXES, key=lambda item: -len(item[0])):
            if text.endswith(suffix):
                text, scale = text[: -len(suffix)], factor
                break
        try:
            value = float(text) * scale
        except ValueError:
            raise ConfigError(f"--budget {flag!r}: {text!r} is not a number") from None
        if not value >= 0:
            raise ConfigError(f"--budget {flag!r}: a budget must be >= 0")
        options[key] = value
    return {"ML903": options} if options else {}
