"""Runs the rules over an analysed graph: registry, selection, crashes, suppression, grouping and
noise control.

Order of work: every selected rule runs (a crash is a RuleError naming rule and node: exit 2);
one of memlint's own rules that visits nodes (`op_types`) and meets a node whose shapes are not
what its op defines (an IndexError, KeyError or ValueError: `memlint.errors.SHAPE_MISMATCH`)
skips that node, with a debug log line naming the rule, the node and the exception (`--debug`
shows it), and goes on with the others; any other exception, any exception of a rule with
graph scope, and any exception of a plugin's rule (whose KeyError is as likely a bug as a
malformed graph) is a crash, so CI never passes with a rule broken or silently doing nothing;
severity overrides apply; suppressions hide findings on matching nodes (and the ones that match
nothing are reported); findings of one rule on identical layers are grouped; groups whose share
of predicted time and saving are both below the thresholds are hidden as noise; the rest are
sorted by saving, then time, then code.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from memlint.config import Config, Suppression
from memlint.errors import SHAPE_MISMATCH, ConfigError, MemlintError, RegistrationError
from memlint.findings import Finding, Fix, Metric, RuleInfo, Suppressed, layer_pattern
from memlint.rulebase import Rule, RuleContext
from memlint.ruledoc import rule_doc

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "memlint.rules"
RESERVED_PREFIX = "ML"


class RuleError(MemlintError):
    """A rule raised while checking a model."""


class PluginError(MemlintError):
    """A rule plugin could not be loaded or registers invalid rules."""


@dataclass(frozen=True)
class RuleSet:
    """Every known rule by code, and where each came from ("memlint" or the plugin's name)."""

    rules: Mapping[str, Rule]
    origin: Mapping[str, str]

    def get(self, code_or_name: str) -> Rule | None:
        wanted = code_or_name.strip()
        rule = self.rules.get(wanted.upper())
        if rule is not None:
            return rule
        return next((r for r in self.rules.values() if r.name == wanted.lower()), None)


@dataclass(frozen=True)
class Outcome:
    findings: tuple[Finding, ...]
    suppressed: tuple[Suppressed, ...]
    unused_suppressions: tuple[Suppression, ...]
    hidden_as_noise: int
    rules: tuple[RuleInfo, ...]  # the rules that ran, as report data


def builtin_rule_classes() -> list[type[Rule]]:
    """The Rule classes of every public module of the memlint.rules package."""
    import memlint.rules as package

    classes: list[type[Rule]] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            classes.extend(_rules_in(importlib.import_module(f"memlint.rules.{info.name}")))
    return classes


@lru_cache(maxsize=1)
def load_rules() -> RuleSet:
    """Built-in rules plus those of every installed plugin (the `memlint.rules` entry points)."""
    rules: dict[str, Rule] = {}
    origin: dict[str, str] = {}
    for cls in builtin_rule_classes():
        _add(rules, origin, cls, "memlint")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        plugin = f"{ep.name} ({ep.value})"
        try:
            loaded = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure stops the run
            raise PluginError(
                f"rule plugin {plugin} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        classes = _rules_in(loaded)
        if not classes:
            raise PluginError(f"rule plugin {plugin} provides no memlint Rule classes")
        for cls in classes:
            if cls.code.startswith(RESERVED_PREFIX):
                raise PluginError(
                    f"rule plugin {plugin}: code {cls.code} uses the prefix "
                    f"{RESERVED_PREFIX!r}, which is reserved for built-in rules"
                )
            _add(rules, origin, cls, plugin)
    return RuleSet(rules=dict(sorted(rules.items())), origin=origin)


def _rules_in(obj: Any) -> list[type[Rule]]:
    if isinstance(obj, type) and issubclass(obj, Rule):
        return [obj]
    if isinstance(obj, ModuleType):
        return [
            v for v in vars(obj).values()
            if isinstance(v, type) and issubclass(v, Rule) and "code" in v.__dict__
            and v.__module__ == obj.__name__
        ]
    if isinstance(obj, (list, tuple)):
        return [c for item in obj for c in _rules_in(item)]
    return []


def _add(rules: dict[str, Rule], origin: dict[str, str], cls: type[Rule], source: str) -> None:
    if cls.code in rules:
        raise RegistrationError(
            f"rule code {cls.code} is registered twice ({origin[cls.code]} and {source})"
        )
    if any(r.name == cls.name for r in rules.values()):
        raise RegistrationError(f"rule name {cls.name!r} ({cls.code}, {source}) is taken")
    rules[cls.code] = cls()
    origin[cls.code] = source


def matches(code: str, selector: str) -> bool:
    """A selector is "ALL", a full code, or a code prefix ("ML1", "ML")."""
    return selector.upper() == "ALL" or code.startswith(selector.upper())


def selected(ruleset: RuleSet, config: Config) -> list[Rule]:
    for selector in (*config.select, *config.ignore):
        if not any(matches(code, selector) for code in ruleset.rules):
            raise ConfigError(f"{selector!r} matches no rule code (see `memlint rules`)")

    def specificity(code: str, selectors: Iterable[str]) -> int:
        return max((0 if s.upper() == "ALL" else len(s) for s in selectors if matches(code, s)),
                   default=-1)

    chosen = []
    for code, rule in ruleset.rules.items():
        # The longer match wins, as in ruff: select ML1 + ignore ML101 drops only ML101.
        if specificity(code, config.select) > specificity(code, config.ignore):
            chosen.append(rule)
    return chosen


def resolve_options(rule: Rule, config: Config) -> dict[str, Any]:
    values = {key: option.default for key, option in rule.options.items()}
    for key in (rule.code, rule.name):
        for option, raw in config.rule_options.get(key, {}).items():
            if option not in rule.options:
                known = ", ".join(rule.options) or "none"
                raise ConfigError(
                    f"rule {rule.code} ({rule.name}) has no option {option!r} (options: {known})"
                )
            try:
                values[option] = rule.options[option].coerce(raw)
            except ValueError as exc:
                raise ConfigError(f"rule {rule.code} option {option}: {exc}") from None
    return values


def run(ctx: RuleContext, config: Config, ruleset: RuleSet | None = None) -> Outcome:
    ruleset = ruleset or load_rules()
    known = set(ruleset.rules) | {r.name for r in ruleset.rules.values()}
    for key in config.rule_options:
        if key.upper() not in known and key not in known:
            raise ConfigError(f"options given for unknown rule {key!r} (see `memlint rules`)")
    for code in config.severity:
        if not any(matches(c, code) for c in ruleset.rules):
            raise ConfigError(f"severity override for {code!r} matches no rule code")
    rules = selected(ruleset, config)
    raw: list[Finding] = []
    for rule in rules:
        own = ruleset.origin.get(rule.code, "memlint") == "memlint"
        raw.extend(_check(rule, ctx.for_rule(resolve_options(rule, config)), lenient=own))
    raw = [_with_severity(f, config) for f in raw]
    kept, suppressed, unused = _suppress(raw, config.suppress)
    grouped = _group(kept, ctx)
    by_saving = {rule.code for rule in rules if rule.noise_by_saving}
    visible = [f for f in grouped if not _is_noise(f, config, ctx, by_saving)]
    visible.sort(key=lambda f: (-f.saving_s, -(f.time_s or 0.0), f.code, f.nodes))
    return Outcome(
        findings=tuple(visible),
        suppressed=tuple(suppressed),
        unused_suppressions=tuple(unused),
        hidden_as_noise=len(grouped) - len(visible),
        rules=tuple(rule_info(r, ruleset.origin.get(r.code, "memlint")) for r in rules),
    )


def rule_info(rule: Rule, origin: str = "memlint") -> RuleInfo:
    """A rule's metadata and documentation as report data (memlint.findings.RuleInfo)."""
    return RuleInfo(
        code=rule.code, name=rule.name, severity=rule.severity, summary=rule.summary,
        description=rule.doc_sections().get("What it does", rule.summary),
        doc=rule_doc(rule, origin), origin=origin,
    )


def _check(rule: Rule, ctx: RuleContext, *, lenient: bool = False) -> list[Finding]:
    """The findings of one rule; `lenient` (memlint's own rules): a node whose shapes break its
    op's definition is skipped (see the module docstring)."""
    where = f"rule {rule.code} ({rule.name})"
    found: list[Finding] = []
    if rule.op_types is None:
        try:
            found.extend(rule.check(ctx))  # type: ignore[call-arg]
        except MemlintError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise RuleError(f"{where} crashed: {type(exc).__name__}: {exc}") from exc
    else:
        # each node's qualified op read once for every rule (a rule visits a few op types)
        ops = ctx.shared("engine.qualified_ops", lambda: [n.qualified_op for n in ctx.graph.nodes])
        wanted = rule.op_types
        for node, op in zip(ctx.graph.nodes, ops):
            if op not in wanted:
                continue
            try:
                found.extend(list(rule.check(ctx, node)))  # type: ignore[call-arg]
            except MemlintError:
                raise
            except Exception as exc:  # noqa: BLE001
                if lenient and isinstance(exc, SHAPE_MISMATCH):  # shapes its op does not define
                    log.debug("%s skipped node %r (%s): %s: %s", where, node.name,
                              node.qualified_op, type(exc).__name__, exc)
                    continue
                raise RuleError(
                    f"{where} crashed on node {node.name!r} ({node.qualified_op}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    for finding in found:
        if not isinstance(finding, Finding) or finding.code != rule.code:
            raise RuleError(f"{where} returned something other than its own Finding")
    return [
        replace(f, share=ctx.share(f.time_s) if f.time_s is not None else f.share,
                estimate=rule.estimate)
        for f in found
    ]


def _with_severity(finding: Finding, config: Config) -> Finding:
    best = None
    for selector, severity in config.severity.items():
        if matches(finding.code, selector) and (best is None or len(selector) > len(best[0])):
            best = (selector, severity)
    return replace(finding, severity=best[1]) if best else finding


def _suppress(
    findings: list[Finding], rules: tuple[Suppression, ...]
) -> tuple[list[Finding], list[Suppressed], list[Suppression]]:
    used: set[int] = set()
    kept, hidden = [], []
    for finding in findings:
        hit = next(
            (
                (i, s) for i, s in enumerate(rules)
                if matches(finding.code, s.code)
                and finding.nodes
                and all(fnmatch.fnmatchcase(n, s.nodes) for n in finding.nodes)
            ),
            None,
        )
        if hit is None:
            kept.append(finding)
        else:
            used.add(hit[0])
            hidden.append(Suppressed(finding, hit[1].reason, hit[1].nodes))
    return kept, hidden, [s for i, s in enumerate(rules) if i not in used]


def _group(findings: list[Finding], ctx: RuleContext) -> list[Finding]:
    """Merge findings of one rule with the same signature whose (first) nodes' names differ only
    in their numbers (/h.0/mlp/... and /h.1/mlp/...): one finding with the totals."""
    buckets: dict[tuple[str, str, str], list[Finding]] = {}
    order: list[tuple[str, str, str]] = []
    singles: list[Finding] = []
    for finding in findings:
        if not finding.signature or not finding.nodes or finding.time_s is None:
            singles.append(finding)
            continue
        key = (finding.code, finding.signature, layer_pattern(finding.nodes[0]))
        if key not in buckets:
            buckets[key] = []
            order.append(key)
        buckets[key].append(finding)
    merged = [_merge(buckets[key], ctx) if len(buckets[key]) > 1 else buckets[key][0]
              for key in order]
    return singles + merged


def _merge(members: list[Finding], ctx: RuleContext) -> Finding:
    first = members[0]
    nodes = tuple(n for f in members for n in f.nodes)
    time_s = sum(f.time_s or 0.0 for f in members)
    fixes = tuple(
        Fix(fix.text, None if fix.saving_s is None
            else sum((f.fixes[i].saving_s or 0.0) for f in members if i < len(f.fixes)))
        for i, fix in enumerate(first.fixes)
    )
    what = "nodes" if len(first.nodes) == 1 else "blocks"  # a block: several nodes per finding
    group = f"{len(members)} {what}: {first.nodes[0]} ... {members[-1].nodes[0]}"
    from memlint import units

    total = f"together {units.seconds(time_s)} ({units.percent(ctx.share(time_s))} of predicted time)"
    saving = max((f.saving_s or 0.0 for f in fixes), default=0.0)
    if saving:
        total += f", fix saves up to {units.seconds(saving)}"
    return replace(
        first,
        message=f"each of {len(members)} {what}: {first.message}; {total}",
        nodes=nodes,
        evidence=(*first.evidence, Metric("nodes", len(members))),
        fixes=fixes,
        time_s=time_s,
        share=ctx.share(time_s),
        count=len(members),
        group=group,
    )


def _is_noise(
    finding: Finding, config: Config, ctx: RuleContext, by_saving: set[str] = frozenset()
) -> bool:  # type: ignore[assignment]
    if finding.time_s is None:  # about the graph as a whole (capacity, coverage): always shown
        return False
    if finding.code in by_saving:  # a saving may hold launches: of the total that holds them
        total = ctx.predicted_latency_s
        share = finding.saving_s / total if total else 0.0
    else:
        share = finding.share or 0.0
    return share < config.min_share and finding.saving_s < config.min_saving_s
