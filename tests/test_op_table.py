"""The op table of memlint.costs.registry: every registered op has a cost formula (or moves no
data) AND its facts (family, traits), given in one registration."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from memlint.costs import registry
from memlint.costs.registry import (
    FAMILIES,
    Formula,
    OpInfo,
    add_formula,
    family_of,
    op_info,
    register,
    register_metadata,
)
from memlint.errors import RegistrationError
from memlint.ir import Node

MS = "com.microsoft"
ROOT = Path(__file__).resolve().parent.parent


def test_every_registered_op_has_a_family():
    ops = registry.registered_ops()
    assert len(ops) > 200
    for domain, op_type in ops:
        info = op_info(domain, op_type)
        assert info is not None and info.family in FAMILIES, (domain, op_type)
        assert family_of(domain, op_type) != "other", (domain, op_type)


@pytest.mark.parametrize(
    ("domain", "op_type", "family", "traits"),
    [
        ("", "MatMul", "matmul", set()),
        (MS, "MatMulNBits", "matmul", set()),
        ("", "LSTM", "matmul", set()),  # the recurrent cells are gate matmuls
        ("", "Conv", "conv", set()),
        (MS, "GroupQueryAttention", "attention", set()),
        ("", "LayerNormalization", "normalization", set()),
        ("", "Softmax", "reduction", {"reduction"}),
        ("", "ReduceMean", "reduction", {"reduction"}),
        ("", "MaxPool", "reduction", {"reduction"}),  # pooling reduces windows
        ("", "Reshape", "data movement", {"view", "metadata"}),
        ("", "Dropout", "data movement", {"view", "metadata"}),  # the identity at inference
        (MS, "ExpandDims", "data movement", {"view", "metadata"}),
        ("", "Shape", "data movement", {"metadata"}),  # a new tiny tensor, not a view
        ("", "Transpose", "data movement", {"copy"}),
        ("", "Gather", "data movement", {"copy"}),
        ("", "Resize", "data movement", set()),  # interpolates: arithmetic
        ("", "If", "control flow", set()),
        ("", "Add", "elementwise", {"elementwise"}),
        (MS, "FastGelu", "elementwise", {"elementwise"}),
        ("", "Cast", "elementwise", {"elementwise", "copy"}),
        ("", "DynamicQuantizeLinear", "elementwise", set()),  # reduces x to min/max first
        (MS, "BiasSplitGelu", "elementwise", set()),  # multiplies two halves of an axis
    ],
)
def test_facts(domain, op_type, family, traits):
    info = op_info(domain, op_type)
    assert info.family == family
    traits_of_info = ("elementwise", "copy", "reduction", "view", "metadata")
    found = {t for t in traits_of_info if getattr(info, t)}
    assert found == traits


def test_unknown_ops_have_no_facts_and_family_other():
    assert op_info("", "SomeCustomOp") is None
    assert family_of("", "SomeCustomOp") == "other"
    assert op_info("com.example", "MatMul") is None  # the domain is part of the identity
    assert op_info("ai.onnx", "MatMul") == op_info("", "MatMul")  # ONNX spells "" two ways
    node = Node("n", "GroupQueryAttention", MS, ("q",), ("y",))
    assert registry.op_info_of(node).family == "attention"


def test_family_follows_the_cost_module_of_the_formula():
    """Facts ride on each module's factories: the module a formula lives in fixes its family."""
    module_family = {
        "matmul": "matmul", "recurrent": "matmul", "moe": "matmul", "conv": "conv", "attention": "attention",
        "normalization": "normalization", "elementwise": "elementwise",
        "reduction": "reduction", "pooling": "reduction", "data_movement": "data movement",
        "control_flow": "control flow",
    }  # fmt: skip
    for key, row in registry._TABLE.items():
        if row.cost is None:
            assert row.info.family == "data movement" and row.info.metadata, key
            continue
        module = row.cost.__module__.rsplit(".", 1)[-1]
        assert row.info.family == module_family[module], (key, module)
        assert not row.info.metadata and row.origin == registry.BUILTIN, key


def test_views_and_metadata_agree_with_the_cost_outcome():
    from memlint.costs import CostStatus, cost_of
    from memlint.ir import DType, Graph, Value, ValueKind

    values = {n: Value(n, (4, 4), DType.FLOAT32, ValueKind.ACTIVATION) for n in ("x", "y")}
    for domain, op_type in registry.registered_ops():
        info = op_info(domain, op_type)
        node = Node("n", op_type, domain, ("x",), ("y",))
        graph = Graph("g", (node,), values, ("x",), ("y",))
        if info.metadata:
            assert cost_of(node, graph).status is CostStatus.METADATA, op_type
        assert not (info.view and not info.metadata), op_type


def test_a_second_registration_raises():
    zero = Formula(lambda ctx: ctx.cost(0), OpInfo("elementwise", elementwise=True))
    with pytest.raises(RegistrationError, match="ai.onnx::MatMul exists already"):
        add_formula("MatMul", zero)
    with pytest.raises(RegistrationError, match="com.microsoft::GroupQueryAttention exists"):
        register("GroupQueryAttention", domain=MS, info=OpInfo("attention"))(zero.cost)
    with pytest.raises(RegistrationError, match="exists already"):
        register_metadata("Shape")
    with pytest.raises(RegistrationError, match="exists already"):
        add_formula("Reshape", zero, domain="ai.onnx")  # the same op, spelled the other way


def test_malformed_registrations_raise():
    with pytest.raises(RegistrationError, match="unknown op family 'mat mul'"):
        OpInfo("mat mul")
    with pytest.raises(RegistrationError, match="view moves no data"):
        OpInfo("data movement", view=True)
    with pytest.raises(RegistrationError, match="takes a Formula"):
        add_formula("NotAnOp", lambda ctx: ctx.cost(0), domain="com.example")
    assert not registry.is_registered("NotAnOp", "com.example")


# --- the torch op map (memlint.frontends.fx_ops) against the table ---------------------------


def _fx_emitted_ops() -> tuple[set[str], dict[str, str]]:
    """Every ONNX op type the aten table can emit, read from its source: the op-name arguments
    of each `op(...)`, `emit(...)` and pooling-factory call, the names a lowering computes into
    `op_type`, and the values of its name tables; and VIEW_OP_TYPES itself."""
    tree = ast.parse((ROOT / "memlint" / "frontends" / "fx_ops.py").read_text(encoding="utf-8"))
    emitted: set[str] = set()
    tables: dict[str, dict[str, str]] = {}

    def names(nodes) -> set[str]:
        return {n.value for n in nodes if isinstance(n, ast.Constant)
                and isinstance(n.value, str) and n.value[:1].isupper()}

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("op", "emit", "_pool", "_adaptive_pool"):
                emitted |= names(node.args[:2])
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "op_type" for t in node.targets
        ):  # op_type = "ConvTranspose" if ... else "Conv"; = {1: "ReduceL1", ...}.get(...)
            emitted |= names(ast.walk(node.value))
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("VIEW_OP_TYPES", "ELEMENTWISE",
                                                              "REDUCTIONS"):
                tables[target.id] = {ast.literal_eval(k): ast.literal_eval(v)
                                     for k, v in zip(node.value.keys, node.value.values)}
    for table in tables.values():
        emitted.update(table.values())
    return emitted, tables["VIEW_OP_TYPES"]


def test_every_op_the_aten_table_emits_is_registered():
    emitted, _ = _fx_emitted_ops()
    assert {"MatMul", "Gemm", "Attention", "Softmax", "Transpose", "Concat", "MaxPool",
            "GlobalAveragePool", "Identity", "Swish", "ConvTranspose", "ReduceL2"} <= emitted
    missing = sorted(op for op in emitted if op_info("", op) is None)
    assert not missing, f"fx_ops emits ops without a cost formula: {missing}"


def test_the_aten_views_map_onto_views_of_the_table():
    _, views = _fx_emitted_ops()
    assert views  # view, flatten, squeeze, ...
    for aten, onnx_op in views.items():
        assert op_info("", onnx_op).view, (aten, onnx_op)
    assert op_info("", "Identity").view  # every other aten view becomes Identity
    assert op_info("", "Dropout").view
