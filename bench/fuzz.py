"""Fuzz memlint's inputs: ONNX models, config files and hardware files (figures, not a test).

    python bench/fuzz.py                    # 5,000 model cases, 1,000 config, 1,000 hardware
    python bench/fuzz.py --cases 20000 --seed 7
    python bench/fuzz.py --target model --cli 50   # also 50 cases through the real CLI
    python bench/fuzz.py --target exports --export-cases 10000 --jobs 2 --minutes 15
        # structural mutants of real exports (Optimum GPT-2 with past, BERT, QDQ BERT) built
        # once into --cache: bench/fuzz_exports.py

Every input must end in a Report (rendered in every format) or in one MemlintError whose message
is one non-empty line; anything else -- another exception, a multi-line message, a warning
printed on the way -- is a crash; a case slower than --slow seconds is saved and counted as
slow (timings depend on the machine's load, so slow cases are not shrunk). The run is held
under an address-space limit (--max-memory-gb), so a case that would exhaust memory ends in a
MemoryError crash instead of the OOM killer. Inputs come from hypothesis strategies over small
seed models:

* bytes: truncations, byte flips, inserted / deleted / duplicated runs of a serialised seed, and
  other protobuf messages (a GraphProto, a TensorProto) saved as a model;
* proto: one field of the parsed seed set to an extreme value (negative, zero, 2**63-1 dims,
  unknown enums and domains, control characters in names, NaN floats), repeated fields cleared
  or duplicated;
* graph: structural edits (a cycle, a dangling input, a duplicated node or name, an attribute
  of the wrong type, a node moved into an If branch or a Loop body, a huge or negative dim);
* random: graphs of random ops with random inputs, attributes and dims.

On a crash hypothesis shrinks the input; the minimal one is saved under --out (a .onnx, .toml or
.yaml file) with its traceback, and the run goes on looking for crashes with other signatures.
tests/test_fuzz.py runs the same strategies on a bounded number of cases; every crash found
here becomes a regression test there.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import math
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from onnx import TensorProto, helper

from memlint.errors import MemlintError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import fuzz_exports  # noqa: E402 - bench/fuzz_exports.py: the `exports` target

FORMATS = ("text", "json", "markdown", "html", "sarif", "github")
INT64_MAX = 2**63 - 1
INTERESTING_INTS = (
    -(2**63), -(2**31), -1, 0, 1, 2, 3, 7, 64, 4096, 2**31 - 1, 2**32, 2**40, 2**62, INT64_MAX,
)  # fmt: skip
INTERESTING_FLOATS = (0.0, -0.0, 1.0, -1.0, 1e-320, 1e308, math.inf, -math.inf, math.nan)
HOSTILE_TEXT = ("", " ", "?", "-1", "\x1b[31mred\x1b]8;;http://evil\x07", "<script>x</script>",
                "a" * 300, "batch_size", "past_sequence_length + sequence_length", "1/0", "\n",
                "../../etc/passwd", "%0A::error::x", "|`*_[]")  # fmt: skip


# -------------------------------------------------------------------------------------------
# Seed models: small, each covering a part of the frontend


def _vi(name: str, elem: int, shape) -> onnx.ValueInfoProto:  # noqa: ANN001
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, inits=(), opset: int = 17, extra_opsets=()) -> onnx.ModelProto:  # noqa: ANN001
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in extra_opsets)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="fuzz")


def _seed_mlp() -> onnx.ModelProto:
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.5] * 16)
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], [0.1] * 4)
    return _model(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
            helper.make_node("Add", ["h", "b"], ["a"], name="add"),
            helper.make_node("Relu", ["a"], ["r"], name="relu"),
            helper.make_node("Softmax", ["r"], ["y"], name="softmax", axis=-1),
        ],
        [_vi("x", TensorProto.FLOAT, ["batch_size", 4])],
        [_vi("y", TensorProto.FLOAT, ["batch_size", 4])],
        [w, b],
    )


def _seed_shape_arithmetic() -> onnx.ModelProto:
    ints = lambda name, values: helper.make_tensor(name, TensorProto.INT64, [len(values)], values)  # noqa: E731
    scalar = lambda name, value: helper.make_tensor(name, TensorProto.INT64, [], [value])  # noqa: E731
    return _model(
        [
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
            helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
            helper.make_node("Concat", ["batch1", "minus1"], ["target"], axis=0),
            helper.make_node("Reshape", ["x", "target"], ["flat"]),
            helper.make_node("ConstantOfShape", ["target_pos"], ["filled"],
                             value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
            helper.make_node("Range", ["zero", "batch", "one"], ["positions"]),
            helper.make_node("Expand", ["flat", "shape2"], ["expanded"]),
            helper.make_node("Cast", ["positions"], ["positions_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["expanded"], ["y"], keepdims=0),
        ],
        [_vi("x", TensorProto.FLOAT, ["batch_size", "past_sequence_length + sequence_length", 8])],
        [_vi("y", TensorProto.FLOAT, []), _vi("filled", TensorProto.FLOAT, None),
         _vi("positions_f", TensorProto.FLOAT, None)],
        [scalar("zero", 0), scalar("one", 1), ints("axes0", [0]), ints("minus1", [-1]),
         ints("target_pos", [2, 3]), ints("shape2", [1, 1])],
    )


def _seed_control_flow() -> onnx.ModelProto:
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [],
                               [_vi("t", TensorProto.FLOAT, [2, 3])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [_vi("e", TensorProto.FLOAT, [2, 3])])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"]),
         helper.make_node("Add", ["carried", "x"], ["carried_out"]),
         helper.make_node("MatMul", ["carried", "wt"], ["scan_out"])],
        "body",
        [_vi("i", TensorProto.INT64, []), _vi("cond", TensorProto.BOOL, []),
         _vi("carried", TensorProto.FLOAT, [2, 3])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("carried_out", TensorProto.FLOAT, [2, 3]),
         _vi("scan_out", TensorProto.FLOAT, [2, 2])],
    )
    wt = helper.make_tensor("wt", TensorProto.FLOAT, [3, 2], [1.0] * 6)
    trips = helper.make_tensor("trips", TensorProto.INT64, [], [4])
    return _model(
        [
            helper.make_node("If", ["c"], ["branch"], name="if", then_branch=then_g,
                             else_branch=else_g),
            helper.make_node("Loop", ["trips", "", "branch"], ["final", "stacked"], name="loop",
                             body=body),
        ],
        [_vi("c", TensorProto.BOOL, []), _vi("x", TensorProto.FLOAT, [2, 3])],
        [_vi("final", TensorProto.FLOAT, [2, 3]), _vi("stacked", TensorProto.FLOAT, None)],
        [wt, trips],
    )


def _seed_attention() -> onnx.ModelProto:
    """One decode step of single-head attention with a KV cache (the LLM code paths)."""
    wq = helper.make_tensor("wq", TensorProto.FLOAT16, [8, 8], [0.0] * 64)
    scale = helper.make_tensor("scale", TensorProto.FLOAT16, [], [0.35])
    return _model(
        [
            helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
            helper.make_node("Concat", ["past_key", "q"], ["present_key"], axis=1, name="cat_k"),
            helper.make_node("Concat", ["past_value", "q"], ["present_value"], axis=1,
                             name="cat_v"),
            helper.make_node("Transpose", ["present_key"], ["kt"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["q", "kt"], ["scores"]),
            helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
            helper.make_node("Softmax", ["scaled"], ["probs"], axis=-1),
            helper.make_node("MatMul", ["probs", "present_value"], ["y"]),
        ],
        [_vi("x", TensorProto.FLOAT16, ["batch_size", "sequence_length", 8]),
         _vi("past_key", TensorProto.FLOAT16, ["batch_size", "past_sequence_length", 8]),
         _vi("past_value", TensorProto.FLOAT16, ["batch_size", "past_sequence_length", 8])],
        [_vi("y", TensorProto.FLOAT16, None), _vi("present_key", TensorProto.FLOAT16, None),
         _vi("present_value", TensorProto.FLOAT16, None)],
        [wq, scale],
    )


def _seed_conv() -> onnx.ModelProto:
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.1] * 108)
    fc = helper.make_tensor("fc", TensorProto.FLOAT, [4, 2], [0.1] * 8)
    bn = [helper.make_tensor(n, TensorProto.FLOAT, [4], [1.0] * 4) for n in "sbmv"]
    return _model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
            helper.make_node("MaxPool", ["n"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("GlobalAveragePool", ["p"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("Gemm", ["f", "fc"], ["y"]),
        ],
        [_vi("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [_vi("y", TensorProto.FLOAT, None)],
        [w, fc, *bn],
    )


def _seed_external() -> onnx.ModelProto:
    """A weight and a shape tensor stored as external data (files that are not there)."""
    big = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4096, 4096],
                      data_location=TensorProto.EXTERNAL)
    big.external_data.add(key="location", value="weights.bin")
    shape = TensorProto(name="shape", data_type=TensorProto.INT64, dims=[2],
                        data_location=TensorProto.EXTERNAL)
    shape.external_data.add(key="location", value="weights.bin")
    shape.external_data.add(key="offset", value="0")
    shape.external_data.add(key="length", value="16")
    return _model(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("Reshape", ["h", "shape"], ["y"])],
        [_vi("x", TensorProto.FLOAT, [1, 4096])],
        [_vi("y", TensorProto.FLOAT, None)],
        [big, shape],
    )


def _seed_contrib() -> onnx.ModelProto:
    gamma = helper.make_tensor("gamma", TensorProto.FLOAT, [8], [1.0] * 8)
    w = helper.make_tensor("wqkv", TensorProto.FLOAT, [8, 24], [0.0] * 192)
    return _model(
        [
            helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma"], ["ln"],
                             domain="com.microsoft", epsilon=1e-5),
            helper.make_node("Attention", ["ln", "wqkv"], ["y"], domain="com.microsoft",
                             num_heads=2),
            helper.make_node("FastGelu", ["y"], ["z"], domain="com.microsoft"),
        ],
        [_vi("x", TensorProto.FLOAT, ["batch_size", "sequence_length", 8]),
         _vi("skip", TensorProto.FLOAT, ["batch_size", "sequence_length", 8])],
        [_vi("z", TensorProto.FLOAT, None)],
        [gamma, w],
        extra_opsets=[("com.microsoft", 1)],
    )


SEED_BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "mlp": _seed_mlp,
    "shape_arithmetic": _seed_shape_arithmetic,
    "control_flow": _seed_control_flow,
    "attention": _seed_attention,
    "conv": _seed_conv,
    "external": _seed_external,
    "contrib": _seed_contrib,
}


def seed_models() -> dict[str, onnx.ModelProto]:
    return {name: build() for name, build in SEED_BUILDERS.items()}


@functools.cache
def _seeds() -> tuple[dict[str, onnx.ModelProto], dict[str, bytes]]:
    return seed_models(), seed_bytes()


def seed_bytes() -> dict[str, bytes]:
    """Serialised seeds, plus other protobuf messages written where a model is expected."""
    seeds = {name: m.SerializeToString() for name, m in seed_models().items()}
    mlp = seed_models()["mlp"]
    seeds["graph_proto"] = mlp.graph.SerializeToString()
    seeds["tensor_proto"] = mlp.graph.initializer[0].SerializeToString()
    seeds["node_proto"] = mlp.graph.node[0].SerializeToString()
    seeds["html"] = b"<!DOCTYPE html><html><head><title>model</title></head></html>\n"
    return seeds


# -------------------------------------------------------------------------------------------
# Strategies: model bytes


@st.composite
def byte_mutations(draw) -> bytes:  # noqa: ANN001
    """A seed with a few byte-level edits: truncation, flips, inserts, deletes, duplicates."""
    seeds = _seeds()[1]
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)), label="seed")])
    for _ in range(draw(st.integers(1, 6), label="edits")):
        if not data:
            break
        kind = draw(st.sampled_from(("truncate", "flip", "set", "insert", "delete", "dup")))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x1A)))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 32))]
    return bytes(data)


def _all_fields(message, out: list, depth: int = 0) -> list:  # noqa: ANN001
    """Every (message, field descriptor) in a proto tree (a few levels deep)."""
    for fd in message.DESCRIPTOR.fields:
        out.append((message, fd))
        if fd.message_type is None or depth > 6:
            continue
        if fd.is_repeated:
            for sub in getattr(message, fd.name):
                _all_fields(sub, out, depth + 1)
        elif message.HasField(fd.name):
            _all_fields(getattr(message, fd.name), out, depth + 1)
    return out


def _scalar(draw, fd):  # noqa: ANN001, ANN202
    """A hostile value for a scalar field of descriptor `fd`."""
    t = fd.type
    if t in (fd.TYPE_STRING,):
        return draw(st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=12)))
    if t == fd.TYPE_BYTES:
        return draw(st.binary(max_size=24))
    if t in (fd.TYPE_FLOAT, fd.TYPE_DOUBLE):
        return draw(st.sampled_from(INTERESTING_FLOATS))
    if t == fd.TYPE_BOOL:
        return draw(st.booleans())
    if t == fd.TYPE_ENUM:
        return draw(st.sampled_from([v.number for v in fd.enum_type.values] + [0, 99]))
    unsigned = t in (fd.TYPE_UINT32, fd.TYPE_UINT64, fd.TYPE_FIXED32, fd.TYPE_FIXED64)
    wide = t in (fd.TYPE_INT64, fd.TYPE_UINT64, fd.TYPE_SINT64, fd.TYPE_FIXED64,
                 fd.TYPE_SFIXED64)
    low, high = (0 if unsigned else -(2 ** (63 if wide else 31))), 2 ** (64 if wide else 32) - 1
    if not unsigned:
        high = 2 ** (63 if wide else 31) - 1
    return draw(st.sampled_from([v for v in INTERESTING_INTS if low <= v <= high]))


@st.composite
def proto_mutations(draw) -> bytes:  # noqa: ANN001
    """A parsed seed with one to three fields set to hostile values, re-serialised."""
    seeds = _seeds()[0]
    model = onnx.ModelProto()
    model.CopyFrom(seeds[draw(st.sampled_from(sorted(seeds)), label="seed")])
    for _ in range(draw(st.integers(1, 3))):
        fields = _all_fields(model, [])
        message, fd = fields[draw(st.integers(0, len(fields) - 1), label="field")]
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            if fd.is_repeated:
                items = getattr(message, fd.name)
                action = draw(st.sampled_from(("clear", "duplicate", "drop", "add")))
                if action == "clear":
                    message.ClearField(fd.name)
                elif action == "duplicate" and len(items):
                    index = draw(st.integers(0, len(items) - 1))
                    if fd.message_type is None:
                        items.append(items[index])
                    else:
                        items.add().CopyFrom(items[index])
                elif action == "drop" and len(items):
                    del items[draw(st.integers(0, len(items) - 1))]
                elif fd.message_type is None:
                    items.append(_scalar(draw, fd))
                else:
                    items.add()
            elif fd.message_type is not None:
                message.ClearField(fd.name)
            else:
                setattr(message, fd.name, _scalar(draw, fd))
    return model.SerializeToString()


def _tensor_names(graph: onnx.GraphProto) -> list[str]:
    names = [i.name for i in graph.input] + [i.name for i in graph.initializer]
    names += [o for n in graph.node for o in n.output if o]
    return sorted(set(names)) or ["x"]


@st.composite
def graph_edits(draw) -> bytes:  # noqa: ANN001
    """A seed with structural edits that a valid exporter never writes."""
    seeds = _seeds()[0]
    model = onnx.ModelProto()
    model.CopyFrom(seeds[draw(st.sampled_from(sorted(seeds)), label="seed")])
    graph = model.graph
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from((
            "cycle", "self_loop", "dangling", "duplicate_node", "duplicate_name", "rename_output",
            "attr_type", "attr_value", "dim", "domain", "wrap_if", "wrap_loop", "drop_node",
            "empty_graph", "opset", "input_elem", "drop_output", "shuffle",
        )))  # fmt: skip
        nodes = graph.node
        if kind == "empty_graph":
            del graph.node[:]
            if draw(st.booleans()):
                del graph.output[:]
            continue
        if kind == "opset":
            del model.opset_import[:]
            model.opset_import.add(domain=draw(st.sampled_from(("", "ai.onnx", "evil.x"))),
                                   version=draw(st.sampled_from((-1, 0, 1, 7, 13, 17, 21, 999))))
            continue
        if kind in ("dim", "input_elem"):
            infos = list(graph.input) + list(graph.output)
            if not infos:
                continue
            info = infos[draw(st.integers(0, len(infos) - 1))]
            tensor = info.type.tensor_type
            if kind == "input_elem":
                tensor.elem_type = draw(st.sampled_from((0, 8, 15, 16, 21, 23, 99, -1)))
                continue
            if not tensor.shape.dim:
                tensor.shape.dim.add()
            dim = tensor.shape.dim[draw(st.integers(0, len(tensor.shape.dim) - 1))]
            if draw(st.booleans()):
                dim.dim_value = draw(st.sampled_from(INTERESTING_INTS))
            else:
                dim.dim_param = draw(st.sampled_from((
                    *HOSTILE_TEXT, "99999999999 * 99999999999", "2 - 3", "a % 0", "a // 0",
                    "(" * 200 + "a" + ")" * 200, "9" * 5000, "a" + " * a" * 2000,
                )))  # fmt: skip
            continue
        if not nodes:
            continue
        i = draw(st.integers(0, len(nodes) - 1))
        node = nodes[i]
        if kind == "cycle" and nodes[-1].output:
            node.input.append(nodes[draw(st.integers(i, len(nodes) - 1))].output[0])
        elif kind == "self_loop" and node.output:
            node.input.append(node.output[0])
        elif kind == "dangling":
            if node.input:
                node.input[draw(st.integers(0, len(node.input) - 1))] = "dangling_tensor"
            else:
                node.input.append("dangling_tensor")
        elif kind == "duplicate_node":
            nodes.add().CopyFrom(node)
        elif kind == "duplicate_name":
            node.name = nodes[draw(st.integers(0, len(nodes) - 1))].name or "n"
        elif kind == "rename_output" and node.output:
            node.output[0] = draw(st.sampled_from(_tensor_names(graph) + list(HOSTILE_TEXT)))
        elif kind == "attr_type":
            attr = node.attribute.add() if not node.attribute else node.attribute[0]
            attr.name = attr.name or draw(st.sampled_from(("axis", "perm", "to", "value")))
            attr.type = draw(st.sampled_from([v.number for v in
                                              onnx.AttributeProto.AttributeType.DESCRIPTOR.values]))
        elif kind == "attr_value":
            name = draw(st.sampled_from((
                "axis", "axes", "perm", "to", "keepdims", "num_heads", "kernel_shape", "strides",
                "pads", "dilations", "group", "transA", "transB", "value", "epsilon", "mode",
            )))  # fmt: skip
            value = draw(st.one_of(
                st.sampled_from(INTERESTING_INTS), st.sampled_from(INTERESTING_FLOATS),
                st.sampled_from(HOSTILE_TEXT),
                st.lists(st.sampled_from(INTERESTING_INTS), max_size=5),
                st.lists(st.sampled_from(INTERESTING_FLOATS), min_size=1, max_size=3),
            ))
            kept = [a for a in node.attribute if a.name != name]
            del node.attribute[:]
            node.attribute.extend(kept)
            with contextlib.suppress(ValueError, TypeError):
                node.attribute.append(helper.make_attribute(name, value))
        elif kind == "domain":
            node.domain = draw(st.sampled_from(("evil.x", "com.microsoft", "ai.onnx.ml",
                                                 "ai.onnx", "\x1b[2J", "")))
        elif kind in ("wrap_if", "wrap_loop"):
            inner = onnx.NodeProto()
            inner.CopyFrom(node)
            outs = [_vi(o, TensorProto.FLOAT, None) for o in inner.output if o]
            if kind == "wrap_if":
                branch = helper.make_graph([inner], "branch", [], outs)
                wrapper = helper.make_node("If", ["cond_input"], list(inner.output),
                                           then_branch=branch, else_branch=branch)
                graph.input.append(_vi("cond_input", TensorProto.BOOL, []))
            else:
                body = helper.make_graph(
                    [inner, helper.make_node("Identity", ["cond"], ["cond_out"])], "body",
                    [_vi("iter", TensorProto.INT64, []), _vi("cond", TensorProto.BOOL, [])],
                    [_vi("cond_out", TensorProto.BOOL, []), *outs],
                )
                wrapper = helper.make_node("Loop", ["", ""], list(inner.output), body=body)
            nodes[i].CopyFrom(wrapper)
        elif kind == "drop_node":
            del nodes[i]
        elif kind == "drop_output" and node.output:
            node.output[0] = ""
        elif kind == "shuffle":
            order = draw(st.permutations(list(range(len(nodes)))))
            copies = [onnx.NodeProto() for _ in order]
            for copy, j in zip(copies, order):
                copy.CopyFrom(nodes[j])
            del nodes[:]
            nodes.extend(copies)
    return model.SerializeToString()


# Op types for random graphs: cost-modelled ops, folded shape ops, control flow, contrib ops.
RANDOM_OPS = (
    "Add", "Mul", "Div", "Sub", "Relu", "Gelu", "Softmax", "LayerNormalization", "MatMul", "Gemm",
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization",
    "Reshape", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "Expand",
    "Tile", "Cast", "Shape", "Size", "ConstantOfShape", "Range", "Unsqueeze", "Squeeze",
    "Flatten", "ReduceMean", "ReduceSum", "ReduceMax", "Where", "Equal", "Pad", "Resize",
    "TopK", "CumSum", "Einsum", "Trilu", "ScatterND", "LSTM", "GRU", "Attention", "Identity",
    "Constant", "DequantizeLinear", "QuantizeLinear", "MatMulInteger", "NonZero", "Pow", "Sqrt",
    "Erf", "Tanh", "Sigmoid", "ArgMax", "OneHot", "DepthToSpace", "InstanceNormalization",
    "GroupQueryAttention", "MultiHeadAttention", "MatMulNBits", "SkipLayerNormalization",
    "RotaryEmbedding", "FusedMatMul", "If", "Loop",
)  # fmt: skip
CONTRIB_OPS = frozenset({"GroupQueryAttention", "MultiHeadAttention", "MatMulNBits",
                         "SkipLayerNormalization", "RotaryEmbedding", "FusedMatMul", "Attention"})
RANDOM_ATTRS = {
    "axis": st.integers(-4, 4), "axes": st.lists(st.integers(-4, 4), min_size=1, max_size=3),
    "perm": st.permutations([0, 1, 2]), "to": st.sampled_from((1, 6, 7, 10, 16, 99)),
    "keepdims": st.integers(0, 1), "num_heads": st.sampled_from((0, 1, 2, 3, -1)),
    "kernel_shape": st.lists(st.integers(-1, 4), min_size=1, max_size=3),
    "strides": st.lists(st.integers(0, 3), min_size=1, max_size=3),
    "pads": st.lists(st.integers(-2, 3), min_size=2, max_size=6),
    "group": st.sampled_from((0, 1, 2, 5)), "transB": st.integers(0, 1),
    "equation": st.sampled_from(("ij,jk->ik", "bij,bjk->bik", "...", "i,i->", "zz")),
    "bits": st.sampled_from((0, 4, 8)), "block_size": st.sampled_from((0, 16, 32)),
    "K": st.sampled_from((0, 8, 4096)), "N": st.sampled_from((0, 8)),
    "hidden_size": st.sampled_from((0, 4, 8)), "kv_num_heads": st.sampled_from((0, 1, 2)),
    "direction": st.sampled_from(("forward", "bidirectional", "sideways")),
}


@st.composite
def random_graphs(draw) -> bytes:  # noqa: ANN001
    """A graph of random ops over random tensors, with random attributes and dims."""
    dims = st.one_of(st.integers(-2, 9), st.sampled_from((2**31, 2**40)),
                     st.sampled_from(("batch_size", "sequence_length", "n + 1", "?", "")))
    inputs = []
    for index in range(draw(st.integers(0, 3))):
        shape = draw(st.one_of(st.none(), st.lists(dims, max_size=4)))
        elem = draw(st.sampled_from((TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64,
                                     TensorProto.BOOL, TensorProto.INT8, TensorProto.STRING)))
        inputs.append(_vi(f"in{index}", elem, shape))
    inits = []
    for index in range(draw(st.integers(0, 3))):
        values = draw(st.lists(st.integers(-3, 8), min_size=0, max_size=4))
        inits.append(helper.make_tensor(f"c{index}", TensorProto.INT64, [len(values)], values))
    names = [i.name for i in inputs] + [i.name for i in inits]
    nodes = []
    for index in range(draw(st.integers(1, 8), label="nodes")):
        op = draw(st.sampled_from(RANDOM_OPS))
        n_in = draw(st.integers(0, 4))
        ins = [draw(st.sampled_from(names + ["", "missing"])) if names else "missing"
               for _ in range(n_in)]
        outs = [f"t{index}_{k}" for k in range(draw(st.integers(1, 3)))]
        attrs = {k: draw(v) for k, v in RANDOM_ATTRS.items() if draw(st.booleans())
                 and draw(st.integers(0, 5)) == 0}
        if op in ("If", "Loop"):
            sub_out = [_vi(o, TensorProto.FLOAT, None) for o in outs]
            sub_nodes = [helper.make_node("Relu", [ins[0] if ins and ins[0] else "missing"], [o])
                         for o in outs]
            sub = helper.make_graph(sub_nodes, "sub", [], sub_out)
            attrs = ({"then_branch": sub, "else_branch": sub} if op == "If" else {"body": sub})
        domain = "com.microsoft" if op in CONTRIB_OPS else ""
        nodes.append(helper.make_node(op, ins, outs, name=f"n{index}", domain=domain, **attrs))
        names.extend(outs)
    outputs = [_vi(names[-1], TensorProto.FLOAT, None)]
    model = _model(nodes, inputs, outputs, inits, opset=draw(st.sampled_from((13, 17, 21))),
                   extra_opsets=[("com.microsoft", 1)])
    return model.SerializeToString()


def model_inputs() -> st.SearchStrategy[bytes]:
    """Every kind of hostile model file, as bytes."""
    return st.one_of(byte_mutations(), proto_mutations(), graph_edits(), random_graphs())


# -------------------------------------------------------------------------------------------
# Strategies: config and hardware files

_TOML_SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.sampled_from((0.0, -1.0, 0.5, 1e308, math.inf, math.nan)),
    st.booleans(), st.sampled_from(HOSTILE_TEXT), st.text(max_size=8),
    st.sampled_from(("ML", "ML101", "ALL", "error", "warning", "never", "a100", "h100")),
)
_TOML_VALUES = st.recursive(
    _TOML_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(("a", "ML101", "code", "nodes",
                                                             "reason", "batch_size",
                                                             "max-intensity-ratio")),
                                            inner, max_size=3)),
    max_leaves=6,
)
CONFIG_KEYS = ("hw", "fail-on", "tf32", "dims", "select", "ignore", "min-share",
               "min-saving-s", "severity", "rules", "suppress", "baseline", "models", "unknown")


def toml_value(value) -> str:  # noqa: ANN001
    """`value` written as TOML (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, str):
        escaped = "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}"
                          for c in value)
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + "}"


@st.composite
def config_documents(draw) -> tuple[str, bytes]:
    """(file name, content) of a memlint.toml or pyproject.toml, valid or not."""
    table = draw(st.dictionaries(st.sampled_from(CONFIG_KEYS), _TOML_VALUES, max_size=5))
    body = "\n".join(f'"{k}" = {toml_value(v)}' for k, v in table.items()) + "\n"
    name = draw(st.sampled_from(("memlint.toml", "pyproject.toml")))
    if name == "pyproject.toml":
        header = draw(st.sampled_from(("[tool.memlint]\n", "tool = 1\n", "[tool]\nmemlint = 3\n",
                                       "[project]\nname = 'x'\n[tool.memlint]\n")))
        body = header + (body if header.endswith("]\n") else "")
    data = body.encode()
    if draw(st.integers(0, 4)) == 0:  # a few raw edits: broken syntax, deep nesting, bad UTF-8
        edit = draw(st.sampled_from(("truncate", "bytes", "nest", "bom")))
        if edit == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif edit == "bytes":
            data += draw(st.binary(min_size=1, max_size=8))
        elif edit == "nest":
            data += b"deep = " + b"[" * 2000 + b"]" * 2000 + b"\n"
        else:
            data = b"\xef\xbb\xbf" + data
    return name, data


_QUANTITY = st.fixed_dictionaries(
    {"value": st.one_of(st.sampled_from((1, 100, 0, -5, 1e308, 1e-320, 2039.5)),
                        st.sampled_from((math.inf, math.nan, "2039", True))),
     "unit": st.sampled_from(("GB/s", "TB/s", "GB", "GiB", "TFLOPS", "us", "parsecs")),
     "source": st.sampled_from(("datasheet", "", "\x1b[31mred")),
     },
)


@st.composite
def hardware_documents(draw) -> tuple[str, bytes]:
    """(file name, content) of a TOML or YAML hardware file, valid or not."""
    device = {
        "name": draw(st.sampled_from(("fuzz-gpu", "a100", "", "\x1b[31mred\x07", "x" * 200))),
        "kind": draw(st.sampled_from(("gpu", "cpu", "tpu", "fpga"))),
        "memory_bandwidth": draw(_QUANTITY),
        "memory_capacity": draw(_QUANTITY),
        "peaks": {draw(st.sampled_from(("tensor.float16", "vector.float32", "tensor.tf32",
                                        "bogus.key", "tensor.int4"))): draw(_QUANTITY)},
    }
    for optional in ("l2_cache", "kernel_overhead", "interconnect_bandwidth", "aliases"):
        if draw(st.booleans()):
            device[optional] = draw(_QUANTITY) if optional != "aliases" else draw(
                st.lists(st.sampled_from(("a100", "fz", "", "<b>")), max_size=2))
    drop = draw(st.sampled_from((None, "name", "kind", "peaks", "memory_bandwidth")))
    if drop:
        device.pop(drop, None)
    document = {"device": draw(st.sampled_from(([device], [device, device], device, [], [1])))}
    fmt = draw(st.sampled_from(("toml", "yaml")))
    if fmt == "toml":
        devices = document["device"] if isinstance(document["device"], list) else [document["device"]]
        text = "device = " + toml_value([d if isinstance(d, dict) else {} for d in devices]) + "\n"
    else:
        import json

        text = json.dumps(document, allow_nan=True).replace("NaN", ".nan").replace(
            "Infinity", ".inf") + "\n"  # JSON is YAML
    data = text.encode()
    if draw(st.integers(0, 4)) == 0:
        edit = draw(st.sampled_from(("truncate", "bytes", "nest", "tag")))
        if edit == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif edit == "bytes":
            data += draw(st.binary(min_size=1, max_size=8))
        elif edit == "nest":
            data = b"device: " + b"[" * 3000 + b"]" * 3000 + b"\n" if fmt == "yaml" else \
                b"device = " + b"[" * 3000 + b"]" * 3000 + b"\n"
        else:
            data = b"device: !!python/object/apply:os.system ['true']\n"
            fmt = "yaml"
    return f"hw.{fmt}", data


# -------------------------------------------------------------------------------------------
# Targets: what every input must end in


@dataclass
class Outcome:
    kind: str  # "report", "error" (one MemlintError line) or "crash"
    message: str = ""
    signature: str = ""  # crash: exception type and the innermost memlint frame
    details: str = ""  # crash: the traceback
    seconds: float = 0.0


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/memlint/" in f.filename or "/rules/" in f.filename]
    frame = (ours or frames or [None])[-1]
    where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
    return f"{type(exc).__name__} at {where}"


def guarded(action: Callable[[], object]) -> Outcome:
    """Run `action`; classify what it ended in. Warnings count as crashes (they would print a
    second line on the command line's stderr)."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            action()
        except MemlintError as exc:
            message = str(exc)
            seconds = time.perf_counter() - start
            if not message.strip() or "\n" in message or "\r" in message:
                return Outcome("crash", message, "MemlintError with a multi-line message",
                               traceback.format_exc(), seconds)
            return Outcome("error", message, seconds=seconds)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - what the fuzzer is looking for
            return Outcome("crash", f"{type(exc).__name__}: {exc}"[:500], _signature(exc),
                           traceback.format_exc(), time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if caught:
        first = caught[0]
        return Outcome("crash", str(first.message)[:500],
                       f"warning {first.category.__name__} at {Path(first.filename).name}:"
                       f"{first.lineno}", "", seconds)
    return Outcome("report", seconds=seconds)


def lint_and_render(model: Path, *, config: bool = False, hw: str = "a100",
                    hw_files: tuple[str, ...] = (), formats=FORMATS) -> None:  # noqa: ANN001
    """What `memlint MODEL --format F` does for every F (one lint, every renderer)."""
    from memlint.report import render
    from memlint.runner import LintRequest, lint_model

    request = LintRequest(isolated=not config, hw=hw, hw_files=hw_files)
    report, _ = lint_model(model, request)
    for fmt in formats:
        render(report, fmt)


def check_model_bytes(data: bytes, folder: Path, formats=FORMATS) -> Outcome:  # noqa: ANN001
    path = folder / "model.onnx"
    path.write_bytes(data)
    return guarded(lambda: lint_and_render(path, formats=formats))


_TINY_MODEL: bytes | None = None


def tiny_model_bytes() -> bytes:
    global _TINY_MODEL
    if _TINY_MODEL is None:
        _TINY_MODEL = _seed_mlp().SerializeToString()
    return _TINY_MODEL


def check_config(name: str, data: bytes, folder: Path) -> Outcome:
    """A config file beside a tiny model: found from the model's folder, then used."""
    for old in ("memlint.toml", "pyproject.toml"):
        (folder / old).unlink(missing_ok=True)
    (folder / name).write_bytes(data)
    model = folder / "model.onnx"
    model.write_bytes(tiny_model_bytes())
    return guarded(lambda: lint_and_render(model, config=True, formats=("json", "text")))


def check_hardware(name: str, data: bytes, folder: Path) -> Outcome:
    """A hardware file: parsed, listed, and every device it holds used to lint a tiny model."""
    from memlint.hardware import list_specs
    from memlint.hardware.loader import load_spec_file

    spec_file = folder / name
    spec_file.write_bytes(data)
    model = folder / "model.onnx"
    model.write_bytes(tiny_model_bytes())

    def action() -> None:
        specs = load_spec_file(spec_file)
        list_specs([spec_file])
        for spec in specs:
            lint_and_render(model, hw=spec.name, hw_files=(str(spec_file),),
                            formats=("json", "sarif", "text"))

    return guarded(action)


# -------------------------------------------------------------------------------------------
# The command line check: exit code 2, one line on stderr, no traceback, no hang


def cli_check(args: list[str], *, timeout_s: float = 60.0, env: dict | None = None) -> Outcome:
    import os
    import subprocess

    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "memlint.cli", *args], capture_output=True, text=True,
            timeout=timeout_s, env={**os.environ, **(env or {})}, check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome("crash", f"no exit after {timeout_s} s", "hang")
    seconds = time.perf_counter() - start
    stderr = done.stderr.strip().splitlines()
    if done.returncode == 2:
        if len(stderr) != 1 or "Traceback" in done.stderr or "internal error" in done.stderr:
            return Outcome("crash", done.stderr[-500:], "exit 2 without one clean stderr line",
                           done.stderr, seconds)
        return Outcome("error", stderr[0], seconds=seconds)
    if done.returncode in (0, 1):
        if "Traceback" in done.stderr or "warning" in done.stderr.lower():
            return Outcome("crash", done.stderr[-500:], "stderr noise on success", done.stderr,
                           seconds)
        return Outcome("report", seconds=seconds)
    return Outcome("crash", done.stderr[-500:], f"exit code {done.returncode}", done.stderr,
                   seconds)


# -------------------------------------------------------------------------------------------
# The runner: hypothesis generates, a crash is shrunk and saved, the search goes on


@dataclass
class Tally:
    cases: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    crashes: dict[str, tuple[bytes, Outcome]] = field(default_factory=dict)  # minimal inputs
    slowest: float = 0.0
    slow: int = 0  # cases over the --slow limit (saved, not shrunk)


class _Found(Exception):
    pass


def hunt(name: str, strategy: st.SearchStrategy, check: Callable[..., Outcome], cases: int,
         seed: int, slow_s: float, out: Path | None) -> Tally:
    """Run `cases` inputs; shrink and record each crash signature once, then carry on."""
    tally = Tally()
    known: set[str] = set()
    last: dict[str, object] = {}

    def run_one(value) -> None:  # noqa: ANN001
        with tempfile.TemporaryDirectory(prefix="memlint-fuzz-") as tmp:
            args = value if isinstance(value, tuple) else (value,)
            outcome = check(*args, Path(tmp))
        tally.cases += 1
        tally.slowest = max(tally.slowest, outcome.seconds)
        tally.kinds[outcome.kind] = tally.kinds.get(outcome.kind, 0) + 1
        if outcome.kind != "crash" and outcome.seconds > slow_s:
            tally.slow += 1
            print(f"[{name}] slow: {outcome.seconds:.1f} s", flush=True)
            if out is not None:
                _save(out, f"{name}-slow", value, Outcome("slow", f"{outcome.seconds:.1f} s"))
        if outcome.kind == "crash" and outcome.signature not in known:
            last["value"], last["outcome"] = value, outcome
            raise _Found(outcome.signature)

    remaining = cases
    while remaining > 0:
        before = tally.cases
        test = settings(
            max_examples=remaining, database=None, deadline=None, derandomize=False,
            suppress_health_check=list(HealthCheck), print_blob=False,
            report_multiple_bugs=False,
        )(given(strategy)(run_one))
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                _seeded(test, seed + len(known))()
            remaining = 0
        except Flaky as flaky:  # a failure that did not happen again on replay
            signature = f"flaky: {type(flaky).__name__}"
            known.add(signature)
            tally.crashes[signature] = (b"", Outcome("crash", str(flaky)[:500], signature))
            print(f"[{name}] {signature}: {str(flaky)[:200]}", flush=True)
            remaining -= max(1, tally.cases - before)
        except _Found as found:
            signature = str(found)
            known.add(signature)
            value, outcome = last["value"], last["outcome"]
            tally.crashes[signature] = (value, outcome)
            print(f"[{name}] crash: {signature}: {outcome.message[:200]}", flush=True)
            if out is not None:
                _save(out, name, value, outcome)
            remaining -= max(1, tally.cases - before)
    return tally


def _seeded(test, seed: int):  # noqa: ANN001, ANN202
    from hypothesis import seed as hypothesis_seed

    return hypothesis_seed(seed)(test)


def _save(out: Path, name: str, value, outcome: Outcome) -> None:  # noqa: ANN001
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(value, tuple):
        file_name, data = value
        suffix = Path(file_name).suffix
    else:
        data, suffix = value, ".onnx"
    digest = hashlib.sha256(data).hexdigest()[:10]
    (out / f"{name}-{digest}{suffix}").write_bytes(data)
    (out / f"{name}-{digest}.txt").write_text(
        f"{outcome.signature}\n{outcome.message}\n\n{outcome.details}", encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000, help="model cases")
    parser.add_argument("--config-cases", type=int, default=1000, help="config file cases")
    parser.add_argument("--hw-cases", type=int, default=1000, help="hardware file cases")
    parser.add_argument("--target", choices=("all", "model", "config", "hardware", "exports"),
                        default="all", help="'exports': structural mutants of real exports "
                        "(bench/fuzz_exports.py; not part of 'all': it builds seeds with torch)")
    parser.add_argument("--export-cases", type=int, default=10_000,
                        help="mutants of real exports (--target exports)")
    fuzz_exports.add_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow", type=float, default=10.0,
                        help="seconds after which a case is reported as slow")
    parser.add_argument("--cli", type=int, default=0,
                        help="also run this many model cases through the real command line")
    parser.add_argument("--out", type=Path, default=Path("fuzz-crashes"),
                        help="where minimal crashing inputs are saved")
    parser.add_argument("--max-memory-gb", type=float, default=4.0,
                        help="address-space limit: a case that needs more ends in MemoryError "
                        "(a crash) instead of the kernel's OOM killer")
    args = parser.parse_args(argv)
    logging_quiet()
    if args.max_memory_gb > 0:
        import resource

        limit = int(args.max_memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    plan = {
        "model": (model_inputs(), check_model_bytes, args.cases),
        "config": (config_documents(), check_config, args.config_cases),
        "hardware": (hardware_documents(), check_hardware, args.hw_cases),
    }
    total_crashes = 0
    for name, (strategy, check, cases) in plan.items():
        if args.target not in ("all", name) or cases <= 0:
            continue
        start = time.perf_counter()
        tally = hunt(name, strategy, check, cases, args.seed, args.slow, args.out)
        elapsed = time.perf_counter() - start
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(tally.kinds.items()))
        print(f"{name}: {tally.cases} cases in {elapsed:.0f} s ({kinds}); slowest "
              f"{tally.slowest:.2f} s, {tally.slow} over {args.slow:g} s; "
              f"{len(tally.crashes)} crash signature(s)")
        for signature, (_, outcome) in sorted(tally.crashes.items()):
            print(f"  {signature}: {outcome.message[:160]}")
        total_crashes += len(tally.crashes)
    if args.target == "exports":
        total_crashes += fuzz_exports.hunt_exports(
            args.export_cases, seed=args.seed, jobs=args.jobs, minutes=args.minutes,
            cache=args.cache, out=args.out)
    if args.cli:
        total_crashes += _cli_sample(args.cli, args.seed)
    return 1 if total_crashes else 0


def _cli_sample(count: int, seed: int) -> int:
    """`count` generated models through `python -m memlint.cli` (exit code, stderr, timeout)."""
    from hypothesis import seed as hypothesis_seed

    samples: list[bytes] = []

    @hypothesis_seed(seed)
    @settings(max_examples=count, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(model_inputs())
    def collect(data: bytes) -> None:
        samples.append(data)

    collect()
    crashes = 0
    kinds: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="memlint-fuzz-cli-") as tmp:
        model = Path(tmp) / "model.onnx"
        for data in samples[:count]:
            model.write_bytes(data)
            outcome = cli_check([str(model), "--isolated", "--fail-on", "never"])
            kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
            if outcome.kind == "crash":
                crashes += 1
                print(f"[cli] crash: {outcome.signature}: {outcome.message[:300]}")
    print(f"cli: {sum(kinds.values())} cases ({', '.join(f'{k} {v}' for k, v in kinds.items())})")
    return crashes


def logging_quiet() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
