"""Hostile inputs end in a Report or one MemlintError line, never in another exception.

The strategies live in bench/fuzz.py (which runs thousands of cases: `python bench/fuzz.py
--cases 5000`); here a bounded, derandomized sample runs on every test run, and every crash the
fuzzer ever found is a regression test below with its minimised input, written out with
onnx.helper so that it reads as what it is.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from onnx import TensorProto, helper

from memlint.errors import MemlintError
from memlint.report import FORMATS, render
from memlint.runner import LintRequest, lint_model

REPO = Path(__file__).resolve().parent.parent


def _load_fuzz():  # noqa: ANN202 - the bench/fuzz.py module
    spec = importlib.util.spec_from_file_location("memlint_bench_fuzz", REPO / "bench" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()

BOUNDED = settings(
    derandomize=True,  # the same cases on every run: a failure here is reproducible
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),  # no coverage-tracing explain phase
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)


def _explain(outcome) -> str:  # noqa: ANN001 - fuzz.Outcome
    return f"{outcome.signature}: {outcome.message}\n{outcome.details}"


# -- bounded fuzzing: about 600 model, 150 config and 80 hardware cases (~10 s) ---------------


@settings(BOUNDED, max_examples=600)
@given(data=fuzz.model_inputs())
def test_hostile_models_end_in_a_report_or_one_error_line(data: bytes, tmp_path_factory) -> None:
    outcome = fuzz.check_model_bytes(data, tmp_path_factory.mktemp("model"))
    assert outcome.kind != "crash", _explain(outcome)


@settings(BOUNDED, max_examples=150)
@given(document=fuzz.config_documents())
def test_hostile_config_files_end_in_a_report_or_one_error_line(document, tmp_path_factory) -> None:  # noqa: ANN001
    name, data = document
    outcome = fuzz.check_config(name, data, tmp_path_factory.mktemp("config"))
    assert outcome.kind != "crash", _explain(outcome)


@settings(BOUNDED, max_examples=80)
@given(document=fuzz.hardware_documents())
def test_hostile_hardware_files_end_in_a_report_or_one_error_line(document, tmp_path_factory) -> None:  # noqa: ANN001
    name, data = document
    outcome = fuzz.check_hardware(name, data, tmp_path_factory.mktemp("hw"))
    assert outcome.kind != "crash", _explain(outcome)


# -- regression tests: every crash the fuzzer found, minimised --------------------------------


def _vi(name: str, shape, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:  # noqa: ANN001
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs=None, inits=(), opset: int = 17, **kw) -> onnx.ModelProto:  # noqa: ANN001, ANN003
    outputs = outputs or [_vi(nodes[-1].output[0] if nodes and nodes[-1].output else "y", None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kw)


def _lint(model: onnx.ModelProto | bytes, folder: Path, **request):  # noqa: ANN003, ANN202
    """Lint as the CLI does and render every format; a MemlintError propagates."""
    path = folder / "model.onnx"
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be a second line on stderr
        report, _ = lint_model(path, LintRequest(isolated=True, **request))
        for fmt in FORMATS:
            render(report, fmt)
    return report


def _one_line_error(model: onnx.ModelProto, folder: Path, match: str, **request) -> str:  # noqa: ANN003
    with pytest.raises(MemlintError, match=match) as caught:
        _lint(model, folder, **request)
    message = str(caught.value)
    assert message.strip() and "\n" not in message and "\r" not in message, message
    assert message.isprintable(), repr(message)
    return message


def test_initializer_whose_data_does_not_fit_its_shape(tmp_path: Path) -> None:
    # Was: ValueError (buffer size must be a multiple of element size) from numpy_helper.
    shape = TensorProto(name="shape", data_type=TensorProto.INT64, dims=[3], raw_data=b"\x01\x02")
    model = _model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [_vi("x", [2, 3])],
                   inits=[shape])
    _one_line_error(model, tmp_path, r"initializer 'shape' is corrupt")


def test_initializer_with_a_negative_dim(tmp_path: Path) -> None:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[-3, 4])
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [2, 3])],
                   inits=[weight])
    _one_line_error(model, tmp_path, r"initializer 'w' has a negative dim")


def test_dim_expression_beyond_int64(tmp_path: Path) -> None:
    # Was: ValueError (Value out of range) from protobuf when the bound value was stored.
    model = _model([helper.make_node("Relu", ["x"], ["y"])],
                   [_vi("x", ["99999999999 * 99999999999"])])
    _one_line_error(model, tmp_path, r"evaluates to more than 2\*\*63 - 1")


def test_dim_flag_beyond_int64(tmp_path: Path) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["n"])])
    _one_line_error(model, tmp_path, r"larger than any dim", dims=("n=" + "9" * 30,))


@pytest.mark.parametrize("expression", ["-" * 100_000 + "n", "n*" * 3000 + "n", "(" * 300 + "n"])
def test_dim_strings_the_python_parser_cannot_take(tmp_path: Path, expression: str) -> None:
    # Was: MemoryError / RecursionError from ast.parse; now such a string is an opaque label.
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [expression, 4])])
    report = _lint(model, tmp_path)
    assert report.summary.flops == 4  # the label is assumed 1: Relu over 1 x 4 elements


def test_node_that_reads_its_own_output_is_a_cycle(tmp_path: Path) -> None:
    # Was: "rule ML102 crashed: KeyError" (the frontend let the self-loop through).
    model = _model([helper.make_node("Add", ["x", "y"], ["y"], name="loop")], [_vi("x", [2])])
    _one_line_error(model, tmp_path, r"cycle through node 'loop'")


def test_tensor_with_more_elements_than_int64_counts(tmp_path: Path) -> None:
    # Was: OverflowError (int too large to convert to float) in the roofline.
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2**62] * 20)])
    _one_line_error(model, tmp_path, r"tensor 'x' would hold .* elements")


def test_loop_without_inputs(tmp_path: Path) -> None:
    # Was: ValueError (vector::reserve, a C++ std::length_error) from onnx shape inference.
    body = helper.make_graph([helper.make_node("Relu", ["x"], ["r"])], "body", [],
                             [_vi("r", None)])
    model = _model([helper.make_node("Loop", [], ["y"], body=body)], [_vi("x", [2])])
    # The C++ message names no node; memlint names the node whose input count breaks its schema.
    _one_line_error(model, tmp_path, r"^a Loop node has 0 inputs, its op takes 2 or more; onnx "
                    r"shape inference cannot run on it \(vector::reserve\)")


@pytest.mark.parametrize(
    "node",
    [
        helper.make_node("Cast", [""], ["y"], to=TensorProto.FLOAT),  # was AttributeError
        helper.make_node("Expand", ["", "shape"], ["y"]),  # was AttributeError
        helper.make_node("Identity", [""], ["y"]),  # was NotImplementedError (object array)
        helper.make_node("Shape", [], ["y"]),  # was IndexError
    ],
    ids=["cast", "expand", "identity", "shape"],
)
def test_shape_arithmetic_on_an_omitted_input(tmp_path: Path, node: onnx.NodeProto) -> None:
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [2])
    model = _model([node], [_vi("x", [2])], inits=[shape])
    _lint(model, tmp_path)  # a report: the value is simply unknown


def test_opset_version_beyond_int32(tmp_path: Path) -> None:
    # Was: TypeError from onnx.defs.get_schema (the version is a C++ int).
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], opset=2**63 - 1)
    try:
        _lint(model, tmp_path)
    except MemlintError as exc:
        assert "\n" not in str(exc)


def test_tensor_attribute_whose_data_does_not_fit_its_shape(tmp_path: Path) -> None:
    # Was: ValueError (cannot reshape array of size 0 into shape (1,)) reading attributes.
    value = TensorProto(name="v", data_type=TensorProto.FLOAT, dims=[1])  # no data
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [2])
    model = _model([helper.make_node("ConstantOfShape", ["shape"], ["y"], value=value)], [],
                   inits=[shape])
    _lint(model, tmp_path)


def test_subgraph_initializer_of_undefined_type(tmp_path: Path) -> None:
    # Was: TypeError (The element type in the input tensor is UNDEFINED) in an If branch.
    odd = TensorProto(name="odd", data_type=TensorProto.UNDEFINED, dims=[1])
    branch = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "b", [],
                               [_vi("t", [2])], [odd])
    model = _model(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
        [_vi("c", [], TensorProto.BOOL), _vi("x", [2])],
    )
    _lint(model, tmp_path)


def test_sparse_tensor_where_an_int_attribute_belongs(tmp_path: Path) -> None:
    # Was: TypeError (int() argument ... not 'SparseTensorProto') reading num_heads.
    sparse = helper.make_sparse_tensor(
        helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
        helper.make_tensor("i", TensorProto.INT64, [1], [0]), [4],
    )
    node = helper.make_node("Attention", ["x", "w"], ["y"], domain="com.microsoft",
                            num_heads=sparse)
    model = helper.make_model(
        helper.make_graph([node], "g", [_vi("x", [1, 1, 4]), _vi("w", [4, 12])], [_vi("y", None)]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    _lint(model, tmp_path)


@pytest.mark.parametrize("domain", ["com.microsoft", ""])
def test_attribute_of_the_wrong_type_is_ignored(tmp_path: Path, domain: str) -> None:
    # Was: ValueError (invalid literal for int(): ' ') reading num_heads written as a string.
    # An attribute whose type is not its schema's (or, for contrib ops, the type onnxruntime
    # gives it) is left out of the IR: formulas and rules read schema types only.
    if domain:
        node = helper.make_node("Attention", ["x", "w"], ["y"], domain=domain, num_heads=" ")
        inputs = [_vi("x", [1, 1, 4]), _vi("w", [4, 12])]
    else:
        node = helper.make_node("Softmax", ["x"], ["y"], axis="last")
        inputs = [_vi("x", [2, 3])]
    model = helper.make_model(
        helper.make_graph([node], "g", inputs, [_vi("y", None)]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    report = _lint(model, tmp_path)
    assert dict(report.model.graph.nodes[0].attributes) == {}


def test_kv_cache_dim_name_with_a_control_character(tmp_path: Path) -> None:
    # Was: a two-line DimError: the LLM scenario bound "\rpast" stripped, the frontend listed
    # it raw ("--dim past: no such dim ... (its dims: \rpast, ...)").
    model = fuzz.seed_models()["attention"]
    for info in model.graph.input:
        if info.name == "past_key":
            info.type.tensor_type.shape.dim[1].dim_param = "\rpast"
    _lint(model, tmp_path)


def test_input_names_in_dim_errors_print_escaped(tmp_path: Path) -> None:
    model = _model([helper.make_node("Relu", ["a\nb"], ["y"])], [_vi("a\nb", [None])])
    message = _one_line_error(model, tmp_path, r"no such input", input_shapes=("nope=1",))
    assert "'a\\nb'" in message


def test_names_that_are_not_utf8(tmp_path: Path) -> None:
    # Was: TypeError (expected str instance, bytes found): protobuf returns a proto2 string
    # field holding invalid UTF-8 as bytes. A name is refused; free text is decoded.
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x", [2])],
                   producer_name="fuzz")
    data = model.SerializeToString()
    _lint(data.replace(b"fuzz", b"\xe6uzz"), tmp_path)  # the producer: shown with U+FFFD
    with pytest.raises(MemlintError, match=r"the name 'r\ufffdlu' is not UTF-8 text"):
        _lint(data.replace(b"relu", b"r\xfflu"), tmp_path)


def test_range_folding_by_zero_prints_no_warning(tmp_path: Path) -> None:
    # Was: "RuntimeWarning: divide by zero" on stderr, a second line beside the report.
    scalar = lambda name, value: helper.make_tensor(name, TensorProto.INT64, [], [value])  # noqa: E731
    model = _model([helper.make_node("Range", ["s", "l", "d"], ["y"])], [],
                   inits=[scalar("s", 0), scalar("l", 10), scalar("d", 0)])
    _lint(model, tmp_path)  # warnings are errors in _lint


# -- structural mutants of real exports (bench/fuzz.py --target exports): one case per bucket --


def test_graph_attribute_on_an_op_that_is_not_control_flow(tmp_path: Path) -> None:
    # Was: "cost formula for Mul failed on node 'mul': unsupported operand type(s) for *: 'int'
    # and 'NoneType'" (exit 2): an If swapped for another op keeps its branches, and a node
    # with a graph attribute reached its formula with unknown dims.
    branch = helper.make_graph([], "b", [], [_vi("m", None)])
    model = _model(
        [helper.make_node("Reshape", ["x", "shp"], ["r"]),
         helper.make_node("Mul", ["r", "r"], ["m"], name="mul", then_branch=branch,
                          else_branch=branch)],
        [_vi("x", [2, 3]), _vi("shp", [2], TensorProto.INT64)],
    )
    report = _lint(model, tmp_path)
    mul = next(n for n in report.nodes if n.name == "mul")
    assert (mul.cost.status.value, mul.cost.note) == ("unresolved", "shape unknown for r, r, m")


def test_folding_constants_of_more_than_32_dims(tmp_path: Path) -> None:
    # Was: RuntimeError (numpy.broadcast_shapes: "only supports up to 32 dimensions") folding
    # an Add of two constants; now the value is simply unknown.
    wide = helper.make_tensor("wide", TensorProto.FLOAT, [1] * 40, [1.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    model = _model([helper.make_node("Add", ["wide", "one"], ["s"]),
                    helper.make_node("Add", ["x", "s"], ["y"])], [_vi("x", [1])],
                   inits=[wide, one])
    try:
        _lint(model, tmp_path)
    except MemlintError as exc:  # a refusal is fine; another exception is not
        assert "\n" not in str(exc)


@pytest.mark.parametrize(
    ("nodes", "inputs", "match"),
    [
        # Was: "the graph has a cycle through node 'B'".
        ([helper.make_node("Relu", ["x"], ["y"], name="A"),
          helper.make_node("Neg", ["y"], ["y"], name="B")], [_vi("x", [2])],
         r"value 'y' is written by nodes 'A' and 'B'"),
        # Was: "dim '2 - 3' evaluates to -1; bind its names to larger values" (it has none).
        ([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["2 - 3"])],
         r"^dim '2 - 3' is the constant -1 \(it names no dim to bind\)"),
        # Was: "onnx shape inference failed: [ShapeInferenceError] ... Input 0 is out of bounds."
        ([helper.make_node("Softmax", [], ["y"], name="sm")], [],
         r"^node 'sm' \(Softmax\) has 0 inputs, its op takes 1; onnx shape inference"),
        # Was: "onnx shape inference failed: [TypeInferenceError] Cannot infer type ...".
        ([helper.make_node("Relu", ["x"], ["y"], name="r", domain="ai.onnx.ml")],
         [_vi("x", [2])], (r"^node 'r' \(Relu\) is in domain 'ai.onnx.ml', which the model's "
                           r"opset_import does not list")),
    ],
    ids=["two-writers", "constant-dim", "input-count", "domain-not-imported"],
)
def test_refusals_of_mutated_exports_name_the_problem(tmp_path: Path, nodes, inputs, match) -> None:  # noqa: ANN001
    _one_line_error(_model(nodes, inputs), tmp_path, match)


# -- config and hardware files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("pyproject.toml", "tool = 1\n", r"\[tool\] must be a table"),  # was AttributeError
        ("pyproject.toml", "[tool]\nmemlint = 3\n", r"\[tool.memlint\] must be a table"),
        ("memlint.toml", "a = " + "[" * 2000 + "]" * 2000 + "\n", r"nested too deeply"),  # was RecursionError
        ("memlint.toml", b"hw = '\x80'\n", r"not UTF-8"),  # was UnicodeDecodeError
        ("memlint.toml", '[dims]\n"a\\nb" = -1\n', r"'a\\nb' must be a whole number"),
    ],
    ids=["tool-int", "tool-memlint-int", "deep", "not-utf8", "name-with-newline"],
)
def test_config_file_regressions(tmp_path: Path, name: str, text, match: str) -> None:  # noqa: ANN001
    data = text if isinstance(text, bytes) else text.encode()
    outcome = fuzz.check_config(name, data, tmp_path)
    assert outcome.kind == "error", _explain(outcome)
    assert re.search(match, outcome.message), outcome.message


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("hw.toml", "device = " + "[" * 3000 + "]" * 3000 + "\n", r"nested too deeply"),
        ("hw.yaml", "device: " + "[" * 3000 + "]" * 3000 + "\n", r"nested too deeply"),
        # A YAML alias bomb: 10**9 strings if printed whole; the message quotes a short repr.
        ("hw.yaml", "device:\n  - name: [&a [x, x, x, x, x, x, x, x, x, x], "
         + ", ".join(f"&{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi"))
         + "]\n", r"'name' must be a string"),
        ("hw.yaml", "device: !!python/object/apply:os.system ['true']\n", r"malformed YAML"),
    ],
    ids=["toml-deep", "yaml-deep", "yaml-alias-bomb", "yaml-python-tag"],
)
def test_hardware_file_regressions(tmp_path: Path, name: str, text: str, match: str) -> None:
    pytest.importorskip("yaml")
    outcome = fuzz.check_hardware(name, text.encode(), tmp_path)
    assert outcome.kind == "error", _explain(outcome)
    assert re.search(match, outcome.message), outcome.message
    assert len(outcome.message) < 500
