"""SARIF 2.1.0 output: structure (checked here against the schema's required properties, with no
download), rules, results, locations, fingerprints, suppressions and determinism.

The structural checks follow the OASIS SARIF 2.1.0 schema (sarif-schema-2.1.0.json): for each
object memlint writes, its required properties, the properties the schema allows (most objects
have "additionalProperties": false), and the enums and minimums of the values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from memlint import __version__
from memlint.api import lint
from memlint.cli import main
from memlint.config import Config, Suppression
from memlint.core.report import Report
from memlint.engine import load_rules
from memlint.findings import Finding, Fix, Metric, Severity, Suppressed
from memlint.ir import SourceLocation
from memlint.report import render as render_format
from memlint.report.sarif import (
    FINGERPRINT_KEY,
    INFORMATION_URI,
    SCHEMA_URI,
    fingerprint,
    render,
    unwrap,
)
from memlint.ruledoc import rule_doc

REPO = Path(__file__).resolve().parent.parent
CNN = "sample_models/small_cnn.onnx"
DECODER = "sample_models/gpt2_decoder_step.onnx"
DECODER_DIMS = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 128}

# -- a structural validator for the subset of SARIF 2.1.0 that memlint writes -----------------

# object -> (required properties, allowed properties), from the schema's definitions
_OBJECTS: dict[str, tuple[set[str], set[str]]] = {
    "sarifLog": ({"version", "runs"}, {"$schema", "version", "runs", "inlineExternalProperties",
                                       "properties"}),
    "run": ({"tool"}, {
        "tool", "invocations", "conversion", "language", "versionControlProvenance",
        "originalUriBaseIds", "artifacts", "logicalLocations", "graphs", "results",
        "automationDetails", "runAggregates", "baselineGuid", "redactionTokens",
        "defaultEncoding", "defaultSourceLanguage", "newlineSequences", "columnKind",
        "externalPropertyFileReferences", "threadFlowLocations", "taxonomies", "addresses",
        "translations", "policies", "webRequests", "webResponses", "specialLocations",
        "properties",
    }),
    "tool": ({"driver"}, {"driver", "extensions", "properties"}),
    "toolComponent": ({"name"}, {
        "guid", "name", "organization", "product", "productSuite", "shortDescription",
        "fullDescription", "fullName", "version", "semanticVersion", "dottedQuadFileVersion",
        "releaseDateUtc", "downloadUri", "informationUri", "globalMessageStrings",
        "notifications", "rules", "taxa", "locations", "language", "contents",
        "isComprehensive", "localizedDataSemanticVersion",
        "minimumRequiredLocalizedDataSemanticVersion", "associatedComponent",
        "translationMetadata", "supportedTaxonomies", "properties",
    }),
    "reportingDescriptor": ({"id"}, {
        "id", "deprecatedIds", "guid", "deprecatedGuids", "name", "deprecatedNames",
        "shortDescription", "fullDescription", "messageStrings", "defaultConfiguration",
        "helpUri", "help", "relationships", "properties",
    }),
    "reportingConfiguration": (set(), {"enabled", "level", "rank", "parameters", "properties"}),
    "multiformatMessageString": ({"text"}, {"text", "markdown", "properties"}),
    "message": (set(), {"text", "markdown", "id", "arguments", "properties"}),
    "result": ({"message"}, {
        "ruleId", "ruleIndex", "rule", "kind", "level", "message", "analysisTarget",
        "locations", "guid", "correlationGuid", "occurrenceCount", "partialFingerprints",
        "fingerprints", "stacks", "codeFlows", "graphs", "graphTraversals", "relatedLocations",
        "suppressions", "baselineState", "rank", "attachments", "hostedViewerUri",
        "workItemUris", "provenance", "fixes", "taxa", "webRequest", "webResponse",
        "properties",
    }),
    "location": (set(), {"id", "physicalLocation", "logicalLocations", "message", "annotations",
                         "relationships", "properties"}),
    "physicalLocation": (set(), {"address", "artifactLocation", "region", "contextRegion",
                                 "properties"}),
    "artifactLocation": (set(), {"uri", "uriBaseId", "index", "description", "properties"}),
    "region": (set(), {"startLine", "startColumn", "endLine", "endColumn", "charOffset",
                       "charLength", "byteOffset", "byteLength", "snippet", "message",
                       "sourceLanguage", "properties"}),
    "logicalLocation": (set(), {"name", "index", "fullyQualifiedName", "decoratedName",
                                "parentIndex", "kind", "properties"}),
    "suppression": ({"kind"}, {"guid", "kind", "status", "justification", "location",
                               "properties"}),
    "invocation": ({"executionSuccessful"}, {
        "commandLine", "arguments", "responseFiles", "startTimeUtc", "endTimeUtc", "exitCode",
        "ruleConfigurationOverrides", "notificationConfigurationOverrides",
        "toolExecutionNotifications", "toolConfigurationNotifications", "exitCodeDescription",
        "exitSignalName", "exitSignalNumber", "processStartFailureMessage",
        "executionSuccessful", "machine", "account", "processId", "executableLocation",
        "workingDirectory", "environmentVariables", "stdin", "stdout", "stderr",
        "stdoutStderr", "properties",
    }),
}
_LEVELS = {"none", "note", "warning", "error"}
# SARIF 2.1.0, 3.33.7: the well-known kinds of a logical location
_LOGICAL_KINDS = {
    "function", "member", "module", "namespace", "parameter", "resource", "returnType", "type",
    "variable", "object", "array", "property", "value", "element", "text", "attribute",
    "comment", "declaration", "dtd", "processingInstruction",
}


def _object(value: Any, kind: str, where: str) -> dict[str, Any]:
    assert isinstance(value, dict), f"{where}: {kind} must be an object"
    required, allowed = _OBJECTS[kind]
    assert required <= value.keys(), f"{where}: {kind} lacks {sorted(required - value.keys())}"
    assert value.keys() <= allowed, f"{where}: {kind} has {sorted(value.keys() - allowed)}"
    if "properties" in value:
        _property_bag(value["properties"], f"{where}.properties")
    return value


def _property_bag(bag: Any, where: str) -> None:
    assert isinstance(bag, dict), where
    tags = bag.get("tags", [])
    assert isinstance(tags, list) and all(isinstance(t, str) for t in tags), where
    assert len(set(tags)) == len(tags), f"{where}.tags must be unique"


def _text(value: Any, where: str, kind: str = "multiformatMessageString") -> None:
    _object(value, kind, where)
    assert isinstance(value.get("text"), str) and value["text"], f"{where}.text"


def check_sarif(log: Any) -> None:
    """Assert that `log` fits the SARIF 2.1.0 schema in every object memlint writes."""
    _object(log, "sarifLog", "log")
    assert log["version"] == "2.1.0"
    assert isinstance(log["runs"], list)
    for r, run in enumerate(log["runs"]):
        where = f"runs[{r}]"
        _object(run, "run", where)
        driver = _object(_object(run["tool"], "tool", f"{where}.tool")["driver"], "toolComponent",
                         f"{where}.tool.driver")
        rules = driver.get("rules", [])
        for i, rule in enumerate(rules):
            w = f"{where}.tool.driver.rules[{i}]"
            _object(rule, "reportingDescriptor", w)
            for key in ("shortDescription", "fullDescription", "help"):
                if key in rule:
                    _text(rule[key], f"{w}.{key}")
            if "defaultConfiguration" in rule:
                config = _object(rule["defaultConfiguration"], "reportingConfiguration", w)
                assert config.get("level", "warning") in _LEVELS, w
        ids = [rule["id"] for rule in rules]
        assert len(set(ids)) == len(ids), f"{where}: rule ids must be unique"
        for i, invocation in enumerate(run.get("invocations", [])):
            _object(invocation, "invocation", f"{where}.invocations[{i}]")
            assert isinstance(invocation["executionSuccessful"], bool)
        for i, result in enumerate(run.get("results", [])):
            _check_result(result, ids, f"{where}.results[{i}]")


def _check_result(result: dict[str, Any], ids: list[str], where: str) -> None:
    _object(result, "result", where)
    _text(result["message"], f"{where}.message", kind="message")
    assert result.get("level", "warning") in _LEVELS, where
    if "ruleIndex" in result:
        assert isinstance(result["ruleIndex"], int) and result["ruleIndex"] >= -1, where
        assert ids[result["ruleIndex"]] == result["ruleId"], f"{where}: ruleIndex/ruleId"
    for key in ("partialFingerprints", "fingerprints"):
        assert all(isinstance(v, str) for v in result.get(key, {}).values()), f"{where}.{key}"
    for j, location in enumerate(result.get("locations", [])):
        w = f"{where}.locations[{j}]"
        _object(location, "location", w)
        if "physicalLocation" in location:
            physical = _object(location["physicalLocation"], "physicalLocation", w)
            assert {"address", "artifactLocation"} & physical.keys(), f"{w}: no artifact/address"
            artifact = _object(physical["artifactLocation"], "artifactLocation", w)
            assert isinstance(artifact["uri"], str) and artifact["uri"], f"{w}: empty uri"
            assert " " not in artifact["uri"] and "\\" not in artifact["uri"], f"{w}: not a URI"
            if "region" in physical:
                region = _object(physical["region"], "region", w)
                assert isinstance(region["startLine"], int) and region["startLine"] >= 1, w
        for k, logical in enumerate(location.get("logicalLocations", [])):
            _object(logical, "logicalLocation", f"{w}.logicalLocations[{k}]")
            assert logical.get("kind", "function") in _LOGICAL_KINDS, w
    for j, suppression in enumerate(result.get("suppressions", [])):
        _object(suppression, "suppression", f"{where}.suppressions[{j}]")
        assert suppression["kind"] in {"inSource", "external"}, where


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="module")
def cnn() -> Report:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        return lint(CNN)


@pytest.fixture(scope="module")
def decoder() -> Report:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        return lint(DECODER, dims=DECODER_DIMS)


def _sarif(report: Report, **options: Any) -> dict[str, Any]:
    log = json.loads(render(report, **options))
    check_sarif(log)
    return log


def _one(report: Report, finding: Finding) -> dict[str, Any]:
    """The SARIF result of `finding` alone in `report`."""
    (result,) = _sarif(dataclasses.replace(report, findings=(finding,)))["runs"][0]["results"]
    return result


def _finding(**changes: Any) -> Finding:
    base = Finding(
        code="ML101",
        name="low-intensity-matmul",
        severity=Severity.WARNING,
        message="intensity 0.5 FLOP/B < ridge 153 FLOP/B",
        nodes=("/h.0/mlp/MatMul",),
        evidence=(Metric("intensity", 0.5, "FLOP/B"), Metric("rows", 1)),
        fixes=(Fix("Batch requests", 2e-6), Fix("Speculative decoding")),
        time_s=3e-6,
        share=0.25,
    )
    return dataclasses.replace(base, **changes)


# -- tests ---------------------------------------------------------------------------------------


def test_sample_decoder_is_valid_sarif_with_one_result_per_finding(decoder: Report):
    log = _sarif(decoder)
    assert log["$schema"] == SCHEMA_URI and log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"], driver["informationUri"]) == (
        "memlint", __version__, INFORMATION_URI
    )
    assert [r["id"] for r in driver["rules"]] == list(decoder.rules_run)
    assert len(run["results"]) == len(decoder.findings) > 0
    assert [r["ruleId"] for r in run["results"]] == [f.code for f in decoder.findings]
    assert "invocations" not in run  # no timestamp unless asked


def test_rule_descriptors_carry_the_rule_documentation(cnn: Report):
    ruleset = load_rules()
    rules = {r["id"]: r for r in _sarif(cnn)["runs"][0]["tool"]["driver"]["rules"]}
    assert set(rules) == set(cnn.rules_run)
    for code, descriptor in rules.items():
        rule = ruleset.rules[code]
        assert descriptor["name"] == rule.name
        assert descriptor["shortDescription"]["text"] == rule.summary
        what = rule.doc_sections()["What it does"]  # its paragraphs unwrapped into single lines
        assert descriptor["fullDescription"]["text"] == unwrap(what)
        assert "\n" not in descriptor["fullDescription"]["text"].replace("\n\n", "")
        doc = rule_doc(rule, ruleset.origin[code])
        assert descriptor["help"] == {"text": doc, "markdown": doc}
        assert descriptor["properties"]["tags"][0] == "memory-wall"
    # defaultConfiguration.level follows the rule's own severity: error, warning, info -> note
    assert rules["ML108"]["defaultConfiguration"]["level"] == "error"
    assert rules["ML101"]["defaultConfiguration"]["level"] == "warning"
    assert rules["ML901"]["defaultConfiguration"]["level"] == "note"


@pytest.mark.parametrize(
    ("severity", "level"),
    [(Severity.ERROR, "error"), (Severity.WARNING, "warning"), (Severity.INFO, "note")],
)
def test_result_level_follows_the_finding_severity(cnn: Report, severity: Severity, level: str):
    assert _one(cnn, _finding(severity=severity))["level"] == level


def test_severity_override_changes_the_result_level_not_the_rule_default():
    # small_cnn leaves batch_size unbound, so ML902 (info) fires; the config raises it to error
    report = lint(CNN, config=Config(severity={"ML902": Severity.ERROR}))
    run = _sarif(report)["runs"][0]
    (result,) = [r for r in run["results"] if r["ruleId"] == "ML902"]
    assert result["level"] == "error"
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["defaultConfiguration"] == {
        "level": "note"
    }


def test_message_carries_fixes_and_savings(cnn: Report):
    text = _one(cnn, _finding())["message"]["text"]
    # 2e-6 s formats as "2 us"; a fix without an estimate gets no saving
    assert text == (
        "intensity 0.5 FLOP/B < ridge 153 FLOP/B\n"
        "fix: Batch requests (saves 2 us)\n"
        "fix: Speculative decoding"
    )


def test_properties_hold_the_numbers(cnn: Report):
    props = _one(cnn, _finding(count=2, evidence=(Metric("intensity", 0.5, "FLOP/B"),
                                                  Metric("overflow", float("inf")))))["properties"]
    # saving_s is the largest fix saving: max(2e-6, none) = 2e-6; JSON has no inf -> "inf"
    assert props == {
        "time_s": 3e-6, "share": 0.25, "saving_s": 2e-6, "count": 2,
        "evidence": {"intensity": 0.5, "overflow": "inf"},
    }


def test_location_is_the_model_file_relative_to_the_cwd_without_a_region(cnn: Report):
    (location,) = _one(cnn, _finding())["locations"]
    assert location["physicalLocation"] == {"artifactLocation": {"uri": CNN}}


def test_location_is_the_source_file_and_line_when_known(cnn: Report):
    source = SourceLocation(str(REPO / "examples" / "my model.py"), 42)
    (location,) = _one(cnn, _finding(source=source))["locations"]
    # inside the cwd: relative, forward slashes, percent-encoded as a URI reference
    assert location["physicalLocation"] == {
        "artifactLocation": {"uri": "examples/my%20model.py"}, "region": {"startLine": 42}
    }


def test_location_outside_the_cwd_is_an_absolute_file_uri(cnn: Report, tmp_path: Path):
    source = SourceLocation(str(tmp_path / "model.py"), 7)
    (location,) = _one(cnn, _finding(source=source))["locations"]
    uri = location["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == (tmp_path / "model.py").as_uri() and uri.startswith("file:///")


def test_logical_locations_name_every_node(cnn: Report):
    nodes = ("/h.0/mlp/MatMul", "/h.1/mlp/MatMul")
    (location,) = _one(cnn, _finding(nodes=nodes))["locations"]
    graph = cnn.model.graph.name
    assert location["logicalLocations"] == [
        {"name": n, "fullyQualifiedName": f"{graph}/{n}", "kind": "function"} for n in nodes
    ]


def test_fingerprint_is_code_model_name_and_sorted_nodes(cnn: Report):
    finding = _finding(nodes=("b", "a"))
    # by hand: sha256 of "ML101", "small_cnn.onnx", "a", "b" joined by NUL
    expected = hashlib.sha256(b"ML101\0small_cnn.onnx\0a\0b").hexdigest()
    assert _one(cnn, finding)["partialFingerprints"] == {FINGERPRINT_KEY: expected}
    moved = dataclasses.replace(
        cnn, model=dataclasses.replace(cnn.model, source="/elsewhere/models/small_cnn.onnx")
    )
    # survives moving the file, reordering nodes and rewording the message
    assert fingerprint(moved, finding) == expected
    assert fingerprint(cnn, _finding(nodes=("a", "b"), message="other words")) == expected
    # changes with the rule, the nodes or the model
    assert fingerprint(cnn, _finding(nodes=("a", "b"), code="ML102")) != expected
    assert fingerprint(cnn, _finding(nodes=("a",))) != expected
    renamed = dataclasses.replace(cnn, model=dataclasses.replace(cnn.model, source="x.onnx"))
    assert fingerprint(renamed, finding) != expected


def test_fingerprints_of_a_sample_model_are_unique(decoder: Report):
    results = _sarif(decoder)["runs"][0]["results"]
    prints = [r["partialFingerprints"][FINGERPRINT_KEY] for r in results]
    assert len(set(prints)) == len(prints)


def test_suppressed_findings_are_results_with_an_external_suppression(decoder: Report):
    reason = "in-place cache lands in the next export"
    config = Config(suppress=(Suppression("ML105", "/transformer/h.*", reason),))
    report = lint(DECODER, dims=DECODER_DIMS, config=config)
    # suppression comes before grouping: one suppressed finding per Concat node (4 of them)
    assert len(report.suppressed) == 4
    results = _sarif(report)["runs"][0]["results"]
    hidden = [r for r in results if "suppressions" in r]
    assert len(hidden) == len(report.suppressed)
    assert hidden[0]["ruleId"] == "ML105"
    assert hidden[0]["suppressions"] == [{"kind": "external", "justification": reason}]
    assert all("suppressions" not in r for r in results[: len(report.findings)])


def test_suppressed_result_keeps_its_location_and_fingerprint(cnn: Report):
    finding = _finding()
    report = dataclasses.replace(cnn, findings=(), suppressed=(Suppressed(finding, "known", "*"),))
    (result,) = _sarif(report)["runs"][0]["results"]
    assert result["partialFingerprints"][FINGERPRINT_KEY] == fingerprint(cnn, finding)
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == CNN


def test_invocation_only_with_a_timestamp(cnn: Report):
    run = _sarif(cnn, timestamp="2025-01-02T03:04:05Z")["runs"][0]
    assert run["invocations"] == [
        {"executionSuccessful": True, "startTimeUtc": "2025-01-02T03:04:05Z"}
    ]
    # the format registry passes the timestamp through
    assert json.loads(render_format(cnn, "sarif", timestamp="2025-01-02T03:04:05Z")) == _sarif(
        cnn, timestamp="2025-01-02T03:04:05Z"
    )


def test_output_is_deterministic_with_sorted_keys(decoder: Report):
    text = render(decoder)
    assert text == render(decoder) and text.endswith("}\n")

    def sorted_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys)
        return dict(pairs)

    json.loads(text, object_pairs_hook=sorted_keys)


def test_unknown_rule_code_still_gets_a_descriptor(cnn: Report):
    finding = _finding(code="XYZ001", name="plugin-rule")
    run = _sarif(dataclasses.replace(cnn, findings=(finding,)))["runs"][0]
    descriptor = run["tool"]["driver"]["rules"][run["results"][0]["ruleIndex"]]
    assert descriptor == {"id": "XYZ001", "name": "plugin-rule"}


def test_cli_writes_sarif(tmp_path: Path):
    out = tmp_path / "memlint.sarif"
    code = main([DECODER, *(f"--dim={k}={v}" for k, v in DECODER_DIMS.items()),
                 "--format", "sarif", "--fail-on", "never", "--isolated", "--timestamp",
                 "--output", str(out)])
    assert code == 0
    log = json.loads(out.read_text(encoding="utf-8"))
    check_sarif(log)
    run = log["runs"][0]
    assert run["results"] and run["invocations"][0]["startTimeUtc"].endswith("Z")
