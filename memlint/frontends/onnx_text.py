"""Models written in ONNX text (onnx.parser syntax): the rules' tiny `bad`/`good` examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import onnx.parser
from onnx import TensorProto

from memlint.errors import ModelLoadError
from memlint.frontends.onnx import load_onnx_proto
from memlint.ir import Model

DEFAULT_HEADER = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>\n'


def parse_example(text: str) -> onnx.ModelProto:
    """Parse ONNX text; a tensor declared in the graph's `<...>` list without a value becomes a
    weight of that shape stored as absent external data (so it costs no memory here)."""
    source = text if text.lstrip().startswith("<") else DEFAULT_HEADER + text
    try:
        proto = onnx.parser.parse_model(source)
    except Exception as exc:  # noqa: BLE001 - the parser raises a bare ParseError
        reason = " ".join(str(exc).split()) or type(exc).__name__  # the parser's are multi-line
        raise ModelLoadError(f"example model does not parse: {reason}") from None
    graph = proto.graph
    produced = {out for node in graph.node for out in node.output}
    declared = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    keep = []
    for info in graph.value_info:
        if info.name in produced or info.name in declared:
            keep.append(info)
            continue
        tensor = TensorProto(
            name=info.name,
            data_type=info.type.tensor_type.elem_type,
            dims=[d.dim_value for d in info.type.tensor_type.shape.dim],
            data_location=TensorProto.EXTERNAL,
        )
        tensor.external_data.add(key="location", value="absent-example-weights.bin")
        graph.initializer.append(tensor)
    del graph.value_info[:]
    graph.value_info.extend(keep)
    return proto


def load_example(example: Any) -> Model:
    """The IR of a rule's example (anything with `onnx_text` and `dims`, such as
    memlint.rulebase.Example), with its dims bound."""
    return load_onnx_proto(
        parse_example(example.onnx_text),
        Path("<example>") / "example.onnx",
        dims=dict(example.dims),
    )
