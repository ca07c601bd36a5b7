"""A model file is untrusted input.

- Its node names, op types, dims, doc strings, metadata and producer are data: inert in every
  report (no terminal escape sequences, no HTML or Markdown markup, no workflow command, no
  SARIF link), whatever they hold.
- Nothing from a model is unpickled, and no user code is imported unless the user names it.
- No tensor is materialised beyond small shape arithmetic, whatever shapes the model declares:
  folding, small external tensors and onnx's shape inference all stay bounded.
"""

from __future__ import annotations

import ast
import json
import os
import re
import resource
import subprocess
import sys
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from memlint.errors import ModelLoadError
from memlint.frontends.onnx_fold import MAX_FOLD_ELEMENTS, fold_node
from memlint.report import render
from memlint.runner import LintRequest, lint_model

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "memlint"
TIMEOUT_S = 60

ANSI = "\x1b[31mred\x1b]8;;http://evil\x07"  # colour, then an OSC 8 hyperlink ended by BEL
HTML = "<img src=x onerror=alert(1)><script>alert(2)</script>"
MARKDOWN = ("[click](https://evil.example) ![x](https://evil.example/x.png) @everyone "
            "www.evil.example | `*_ owner/repo#1 GH-2 :rocket:")
WORKFLOW = "x\n::error file=evil.py::injected %0A,:"
# right-to-left override (shows as "txt.exe"), a paragraph separator and invisible tag text
BIDI = "\u202eexe.txt\u2029\U000e0069\U000e0067\U000e006e"
RAW_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
)


def _weight(name: str, dims: list[int]) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims,
                         data_location=TensorProto.EXTERNAL)
    tensor.external_data.add(key="location", value="absent.bin")  # never read: a weight
    return tensor


def hostile_model() -> onnx.ModelProto:
    """Four low-intensity MatMuls (so findings quote their names) named with payloads, an
    unmodelled op whose type is a payload, a payload dim, producer, doc strings, metadata."""
    names = [ANSI, HTML, MARKDOWN, WORKFLOW]
    nodes = [
        helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"], name=name, doc_string=HTML)
        for i, name in enumerate(names)
    ]
    nodes.append(helper.make_node("Relu", ["h4"], ["y"], name=BIDI))
    nodes.append(helper.make_node("Evil\x1b[5m", ["y"], ["z"], name="odd " + ANSI,
                                  domain="evil.domain"))
    graph = helper.make_graph(
        nodes, "graph " + ANSI,
        [helper.make_tensor_value_info("h0", TensorProto.FLOAT, [ANSI + "dim", 4096])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [_weight(f"w{i}", [4096, 4096]) for i in range(4)], doc_string=HTML,
    )
    model = helper.make_model(
        graph, producer_name=HTML + ANSI, producer_version=MARKDOWN, doc_string=ANSI,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("evil.domain", 1)],
    )
    helper.set_model_props(model, {"author": ANSI + HTML, MARKDOWN: WORKFLOW})
    return model


@pytest.fixture(scope="module")
def hostile_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "model.onnx"
    onnx.save(hostile_model(), str(path))
    return path


@pytest.fixture(scope="module")
def hostile_report(hostile_path: Path):  # noqa: ANN201 - a Report
    report, _ = lint_model(hostile_path, LintRequest(isolated=True))
    assert {f.code for f in report.findings} >= {"ML101"}, "the payload names must be quoted"
    return report


def memlint(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memlint.cli", *map(str, args)], capture_output=True, text=True,
        timeout=TIMEOUT_S, env={**os.environ, **(env or {})}, check=False,
    )


# -- terminal output --------------------------------------------------------------------------


def test_text_report_has_no_raw_control_characters(hostile_report) -> None:  # noqa: ANN001
    text = render(hostile_report, "text")
    assert not RAW_CONTROL.search(text), repr(RAW_CONTROL.search(text))
    assert "\\x1b[31mred\\x1b]8;;http://evil\\x07" in text  # shown, escaped
    assert "\\u202eexe.txt" in text
    assert "Evil\\x1b[5m" in text  # the unmodelled op type


def test_terminal_output_to_a_pipe(hostile_path: Path) -> None:
    done = memlint(hostile_path, "--isolated", "--fail-on", "never", env={"NO_COLOR": ""})
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "\\x1b[31mred" in done.stdout
    assert done.stderr == ""


def test_terminal_output_with_forced_colour(hostile_path: Path) -> None:
    """With FORCE_COLOR rich writes its own SGR colour codes; the model writes none."""
    done = memlint(hostile_path, "--isolated", "--fail-on", "never",
                   env={"FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "\x1b[" in done.stdout, "colour was not forced: the test checks nothing"
    without_sgr = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    assert "\x1b" not in without_sgr, repr(without_sgr[without_sgr.index("\x1b") - 40:][:80])
    assert "\x07" not in done.stdout and "\x9b" not in done.stdout
    assert "\\x1b[31mred\\x1b]8;;http://evil\\x07" in without_sgr


def test_error_messages_quote_names_escaped(tmp_path: Path) -> None:
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", [ANSI], ["y"])], "g",
                          [helper.make_tensor_value_info(ANSI, TensorProto.FLOAT, [None])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    done = memlint(path, "--input-shape", "missing=1")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "\x1b" not in done.stderr, done.stderr
    assert "\\x1b[31mred" in done.stderr


# -- HTML -------------------------------------------------------------------------------------


class _Elements(HTMLParser):
    """Every start tag and attribute of a document, and the text of its script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self.attributes.extend((k, v or "") for k, v in attrs)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _elements(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def test_html_report_holds_the_payloads_as_text(hostile_report) -> None:  # noqa: ANN001
    html = render(hostile_report, "html")
    found = _elements(html)
    assert "img" not in found.tags
    assert found.tags.count("script") == 2  # the JSON island and memlint's own script
    assert not [k for k, _ in found.attributes if k.startswith("on")]
    links = [v for k, v in found.attributes if k in ("href", "src", "action", "formaction")]
    assert all(v.startswith("#") for v in links), [v for v in links if not v.startswith("#")]
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;" in html
    assert not RAW_CONTROL.search(html)
    island = json.loads(found.scripts[0])  # the node table's data: JSON, closed by nothing
    names = {row[island["columns"].index("name")] for row in island["rows"]}
    assert HTML in names and "\\x1b[31mred\\x1b]8;;http://evil\\x07" in names


# -- Markdown ---------------------------------------------------------------------------------


def test_markdown_report_makes_no_markup(hostile_report) -> None:  # noqa: ANN001
    text = render(hostile_report, "markdown")
    assert not RAW_CONTROL.search(text)
    assert "<img" not in text and "<script" not in text
    assert "\\[click\\](https\u2060://evil.example)" in text  # no link
    assert "@\u2060everyone" in text and "www\u2060.evil" in text  # no mention, no autolink
    # no issue reference, no emoji
    assert "repo#\u20601" in text and "GH\u2060-2" in text and ":\u2060rocket:" in text
    markdown_it = pytest.importorskip("markdown_it")
    page = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    rendered = _elements(page)
    assert "img" not in rendered.tags and "script" not in rendered.tags
    assert not [v for k, v in rendered.attributes if "evil" in v], rendered.attributes


# -- SARIF, GitHub annotations, JSON ------------------------------------------------------------


def test_sarif_messages_are_plain_text(hostile_report) -> None:  # noqa: ANN001
    sarif = json.loads(render(hostile_report, "sarif"))
    results = sarif["runs"][0]["results"]
    assert results
    for result in results:
        text = result["message"]["text"]
        assert not RAW_CONTROL.search(text), text
        assert "[click](" not in text  # an embedded link would be clickable in viewers
    names = {loc["name"] for r in results for loc in r["locations"][0].get("logicalLocations", [])}
    assert ANSI in names  # identifiers stay exact (JSON escapes them)


def test_github_annotations_cannot_inject_commands(hostile_report) -> None:  # noqa: ANN001
    text = render(hostile_report, "github")
    lines = text.splitlines()
    assert len(lines) == len(hostile_report.findings) + 1
    assert all(line.startswith(("::warning ", "::error ", "::notice ")) for line in lines), lines
    assert not RAW_CONTROL.search(text)
    assert "%0A::error file=evil.py::injected %250A" in text


def test_json_keeps_names_exact(hostile_report) -> None:  # noqa: ANN001
    data = json.loads(render(hostile_report, "json"))
    assert ANSI in {node["name"] for node in data["nodes"]}
    assert "\x1b" not in render(hostile_report, "json")  # written as \\u001b


# -- no unpickling, no user code ----------------------------------------------------------------

_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal",
                   "shelve"}


def _python_files() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(REPO / "rules").rglob("*.py")])


def _calls(tree: ast.AST):  # noqa: ANN202 - (dotted name, call) pairs
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


# The one import of pickle: to replace its loaders with ones that refuse, while torch.export.load
# reads a .pt2 (memlint/frontends/fx.py _no_unpickling; test_a_pt2_with_pickled_weights_runs_no_code).
PICKLE_DISARMED_IN = {"memlint/frontends/fx.py"}


def test_no_unpickling_in_memlint() -> None:
    problems = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                problems += [f"{where}: import {a.name}" for a in node.names
                             if a.name.split(".")[0] in _PICKLE_MODULES
                             and where.as_posix() not in PICKLE_DISARMED_IN]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _PICKLE_MODULES:
                problems.append(f"{where}: from {node.module} import")
        for name, call in _calls(tree):
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if name.endswith("torch.load") and keywords.get("weights_only") != "True":
                problems.append(f"{where}:{call.lineno}: torch.load without weights_only=True")
            if name.split(".")[-1] == "load" and name.split(".")[0] in ("np", "numpy") and \
                    keywords.get("allow_pickle", "False") != "False":
                problems.append(f"{where}:{call.lineno}: numpy load with allow_pickle")
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "eval", "exec"):
                problems.append(f"{where}:{call.lineno}: {name}")
    assert problems == []


# Where memlint imports modules by name, and why each is safe: rule plugins come from installed
# entry points and memlint's own package, report formats from a fixed table, and a torch model
# factory ("package.module:factory") only when the user names it on the command line.
IMPORT_SITES = {
    "memlint/engine.py": "rule modules of memlint.rules and installed `memlint.rules` plugins",
    "memlint/report/__init__.py": "the renderer of a format from the FORMATS table",
    "memlint/frontends/fx.py": "load_factory: the module the user names as MODEL",
}


def test_modules_are_imported_by_name_only_where_listed() -> None:
    found = set()
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, _ in _calls(tree):
            if name in ("importlib.import_module", "import_module", "__import__",
                        "importlib.util.spec_from_file_location", "runpy.run_path"):
                found.add(path.relative_to(REPO).as_posix())
    assert found <= set(IMPORT_SITES), sorted(found - set(IMPORT_SITES))


def test_an_existing_path_is_never_imported(tmp_path: Path) -> None:
    """`pkg.mod:factory` is a module spec only when no such file exists."""
    from memlint.runner import is_torch_target

    odd = tmp_path / "os:system"
    odd.write_bytes(b"")
    assert not is_torch_target(odd)
    assert is_torch_target(Path("package.module:factory"))


def test_linting_onnx_imports_no_torch(hostile_path: Path) -> None:
    code = (
        "import sys\nfrom memlint.cli import main\n"
        f"main([{str(hostile_path)!r}, '--isolated', '--fail-on', 'never', '--format', 'json'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr


def _pt2_with_a_pickled_weight(folder: Path, marker: Path) -> Path:
    """A torch.export archive whose bias is marked `use_pickle`: loading it with
    weights_only=False runs os.makedirs(marker)."""
    import io
    import zipfile

    torch = pytest.importorskip("torch")

    class Payload:
        def __reduce__(self):  # noqa: ANN204
            return (os.makedirs, (str(marker),))

    plain = folder / "plain.pt2"
    torch.export.save(torch.export.export(torch.nn.Linear(4, 4), (torch.randn(2, 4),)), plain)
    pickled = io.BytesIO()
    torch.save(Payload(), pickled)
    evil = folder / "evil.pt2"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(evil, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                for entry in config["config"].values():
                    entry["use_pickle"] = True
                data = json.dumps(config).encode()
            elif "/data/weights/weight_" in info.filename:
                data = pickled.getvalue()
            target.writestr(info, data)
    return evil


def test_torch_load_only_with_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linting a .pt2 program: every torch.load on the way is weights_only=True."""
    torch = pytest.importorskip("torch")
    program = tmp_path / "linear.pt2"
    torch.export.save(torch.export.export(torch.nn.Linear(4, 4), (torch.randn(2, 4),)), program)
    calls: list[object] = []
    real_load = torch.load

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    from memlint.api import lint

    lint(program)
    assert all(flag is True for flag in calls), calls


def test_a_pt2_with_pickled_weights_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    evil = _pt2_with_a_pickled_weight(tmp_path, marker)
    from memlint.api import lint

    with pytest.raises(ModelLoadError):
        lint(evil)
    assert not marker.exists(), "unpickling a .pt2 ran code from the file"


# -- memory guard -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op_type", "inputs"),
    [
        ("ConstantOfShape", [np.array([10**6, 10**6])]),
        ("Range", [np.array(0), np.array(10**12), np.array(1)]),
        ("Range", [np.array(0.0), np.array(np.inf), np.array(1.0)]),
        ("Expand", [np.ones(1), np.array([10**6, 10**6])]),
        ("Tile", [np.ones((1, 1)), np.array([10**6, 10**6])]),
        ("Add", [np.ones((MAX_FOLD_ELEMENTS, 1)), np.ones((1, MAX_FOLD_ELEMENTS))]),
        ("Where", [np.ones((MAX_FOLD_ELEMENTS, 1), bool), np.ones((1, MAX_FOLD_ELEMENTS)),
                   np.ones(1)]),
        ("Gather", [np.ones((1, MAX_FOLD_ELEMENTS)), np.zeros(MAX_FOLD_ELEMENTS, np.int64)]),
        ("Concat", [np.ones(MAX_FOLD_ELEMENTS)] * 3),
    ],
    ids=["constant-of-shape", "range", "range-inf", "expand", "tile", "broadcast", "where",
         "gather", "concat"],
)
def test_folding_refuses_large_tensors_before_making_them(op_type: str, inputs: list) -> None:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fold_node(op_type, inputs, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result is None
    assert peak < 1_000_000, f"{peak:,} bytes allocated to refuse"


def _shape_model(nodes, inits, inputs=()) -> onnx.ModelProto:  # noqa: ANN001
    return helper.make_model(
        helper.make_graph(nodes, "g", list(inputs),
                          [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT,
                                                         None)], inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )


def test_hostile_shape_arithmetic_lints_in_bounded_memory(tmp_path: Path) -> None:
    """Range(0, 1e12) and ConstantOfShape([1e6, 1e6]) stay symbolic: a report, quickly."""
    scalar = lambda name, value: helper.make_tensor(name, TensorProto.INT64, [], [value])  # noqa: E731
    model = _shape_model(
        [helper.make_node("Range", ["zero", "huge", "one"], ["r"]),
         helper.make_node("ConstantOfShape", ["square"], ["c"]),
         helper.make_node("Expand", ["c", "square"], ["y"])],
        [scalar("zero", 0), scalar("huge", 10**12), scalar("one", 1),
         helper.make_tensor("square", TensorProto.INT64, [2], [10**6, 10**6])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    tracemalloc.start()
    try:
        report, _ = lint_model(path, LintRequest(isolated=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000, f"{peak:,} bytes"
    assert report.model.graph.value("c").shape == (10**6, 10**6)  # known, never materialised


def _external_shape(location: str, **keys: str) -> TensorProto:
    tensor = TensorProto(name="target", data_type=TensorProto.INT64, dims=[2],
                         data_location=TensorProto.EXTERNAL)
    tensor.external_data.add(key="location", value=location)
    for key, value in keys.items():
        tensor.external_data.add(key=key, value=value)
    return tensor


def _reshape_with(folder: Path, target: TensorProto) -> Path:
    model = _shape_model([helper.make_node("Reshape", ["x", "target"], ["y"])], [target],
                         [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])])
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    return path


def test_small_external_tensor_reads_only_its_own_bytes(tmp_path: Path) -> None:
    """A shape tensor (2 int64) in a 256 MB data file, with no `length`: 16 bytes are read
    (onnx's loader would read the whole file, then fail to reshape it)."""
    data = tmp_path / "weights.bin"
    with open(data, "wb") as handle:
        handle.write(np.array([3, 2], dtype=np.int64).tobytes())
        handle.truncate(256 * 2**20)  # sparse: no disk used
    path = _reshape_with(tmp_path, _external_shape("weights.bin"))
    tracemalloc.start()
    try:
        report, _ = lint_model(path, LintRequest(isolated=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.model.graph.value("y").shape == (3, 2)
    assert peak < 20_000_000, f"{peak:,} bytes"


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink-out", "wrong-length", "fifo"])
def test_small_external_tensor_outside_the_folder_is_not_read(tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.array([3, 2], dtype=np.int64).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    location = {"absolute": str(outside), "dotdot": "../outside.bin"}.get(where, "data.bin")
    keys = {"length": "8"} if where == "wrong-length" else {}
    if where == "symlink-out":
        (folder / "data.bin").symlink_to(outside)
    elif where == "wrong-length":
        (folder / "data.bin").write_bytes(outside.read_bytes())
    elif where == "fifo":
        os.mkfifo(folder / "data.bin")  # opening it would block forever
    path = _reshape_with(folder, _external_shape(location, **keys))
    report, _ = lint_model(path, LintRequest(isolated=True))
    assert not report.model.graph.value("y").is_resolved  # the value stayed unknown


def test_one_dimensional_tensors_do_not_exhaust_memory(tmp_path: Path) -> None:
    """onnx 1.23's data propagation materialises one dim per element of a 1-D tensor fed to
    Add (~140 bytes each: 300 GB for 2**31). Under a 2 GB address-space limit the lint must
    finish in seconds."""
    model = helper.make_model(
        helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2**31])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    done = subprocess.run(
        [sys.executable, "-m", "memlint.cli", str(path), "--isolated", "--fail-on", "never",
         "--format", "json"],
        capture_output=True, text=True, timeout=TIMEOUT_S, preexec_fn=limit, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["flops"] == 2**31
