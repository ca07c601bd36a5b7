"""What the linted artifact is, so that a fix fits it: who produced the graph, what it already
fuses, and whether it is an LLM decoder. The one place rules ask (`artifact(index)`); nothing
else reads producer names or exporter idioms.

- Producer, from the model's format, its ONNX producer_name and the graph's idioms:
  TORCH_MODULE for a graph the fx frontend captured (an nn.Module, a .pt2); ORT_OPTIMIZED for a
  graph onnxruntime's transformer optimizer wrote (producer "onnxruntime.transformers", or
  com.microsoft fused ops of its fusions); TORCH_ONNX for torch.onnx.export and the exporters
  built on it (Optimum): producer "pytorch", or, where the producer was rewritten, the
  exporter's naming (TorchScript: nodes "/scope/Op_N" writing "/scope/Op_N_output_0";
  dynamo: nodes "node_*" writing "val_N"); ONNX for any other graph.
- Fused: the kinds of fusion the graph already holds (attention, norm, gelu), from its fused
  ops in any domain (com.microsoft's, and ONNX's own Attention of opset 23): a rule does not
  advise a fusion the graph already took.
- LLM decoder: a KV cache among the graph inputs, as analysis.structure reads it (the same test
  that gives a model its LLM serving section).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from memlint.analysis.graph_index import GraphIndex
from memlint.analysis.structure import detect
from memlint.ir import Model

MS = "com.microsoft::"
# Fused ops by the fusion they stand for (qualified op names).
FUSED_OPS = {
    "attention": frozenset({
        "Attention", MS + "Attention", MS + "MultiHeadAttention", MS + "GroupQueryAttention",
        MS + "PackedAttention", MS + "PackedMultiHeadAttention", MS + "SparseAttention",
        MS + "DecoderMaskedMultiHeadAttention", MS + "DecoderMaskedSelfAttention",
        MS + "PagedAttention", MS + "QAttention",
    }),
    "norm": frozenset({
        MS + "SkipLayerNormalization", MS + "SkipSimplifiedLayerNormalization",
        MS + "EmbedLayerNormalization", "SimplifiedLayerNormalization",
    }),
    "gelu": frozenset({
        MS + "FastGelu", MS + "BiasGelu", MS + "Gelu", MS + "QuickGelu", MS + "GemmFastGelu",
        MS + "BiasSplitGelu",
    }),
}
_TORCHSCRIPT_OUTPUT = re.compile(r"_output_\d+$")
_DYNAMO_VALUE = re.compile(r"^val_\d+$")


class Producer(enum.Enum):
    TORCH_ONNX = "torch.onnx export"  # torch.onnx.export (TorchScript or dynamo), Optimum
    ORT_OPTIMIZED = "onnxruntime-optimised graph"  # onnxruntime.transformers optimizer output
    TORCH_MODULE = "torch module"  # captured by the fx frontend
    ONNX = "ONNX graph"  # any other producer


@dataclass(frozen=True)
class Artifact:
    producer: Producer
    fused: frozenset[str]  # kinds of fusion already in the graph: "attention", "norm", "gelu"
    llm_decoder: bool

    @property
    def is_torch(self) -> bool:
        """A torch module: fixes name torch APIs (torch.compile, F.*), not ONNX tools."""
        return self.producer is Producer.TORCH_MODULE

    @property
    def ort_model_type(self) -> str:
        """The transformer optimizer's --model_type: gpt2 for a decoder, else bert."""
        return "gpt2" if self.llm_decoder else "bert"


def producer(model: Model) -> Producer:
    """Who produced `model` (see the module docstring)."""
    if model.format == "fx":
        return Producer.TORCH_MODULE
    name = model.producer.split(" ", 1)[0].lower()
    if name.startswith("onnxruntime.transformers"):
        return Producer.ORT_OPTIMIZED
    ops = {n.qualified_op for n in model.graph.nodes}
    if any(op.startswith(MS) for kind in FUSED_OPS.values() for op in kind & ops):
        return Producer.ORT_OPTIMIZED
    if name == "pytorch" or _torch_idioms(model):
        return Producer.TORCH_ONNX
    return Producer.ONNX


def _torch_idioms(model: Model) -> bool:
    """Most nodes named as torch.onnx's TorchScript or dynamo exporter names them."""
    nodes = [n for n in model.graph.nodes if n.outputs and n.outputs[0]]
    if not nodes:
        return False
    torchscript = sum(n.name.startswith("/") and bool(_TORCHSCRIPT_OUTPUT.search(n.outputs[0]))
                      for n in nodes)
    dynamo = sum(n.name.startswith("node_") and bool(_DYNAMO_VALUE.match(n.outputs[0]))
                 for n in nodes)
    return max(torchscript, dynamo) * 2 > len(nodes)


def artifact(index: GraphIndex) -> Artifact:
    """The artifact of the linted graph, computed once per graph for every rule that asks."""
    def compute() -> Artifact:
        model = index.model
        ops = {n.qualified_op for n in model.graph.nodes}
        structure = index.shared("llm.structure", lambda: detect(model, use_config=False))
        return Artifact(
            producer=producer(model),
            fused=frozenset(kind for kind, fused in FUSED_OPS.items() if fused & ops),
            llm_decoder=structure.has_kv_cache,
        )

    return index.shared("artifact", compute)


def optimizer_command(index: GraphIndex) -> str:
    """onnxruntime's transformer optimizer on this model, with the --num_heads and
    --hidden_size its attention fusion needs where the graph gives them."""
    structure = index.shared("llm.structure", lambda: detect(index.model, use_config=False))
    known = [f"--{flag} {value}" for flag, value in (
        ("num_heads", structure.heads), ("hidden_size", structure.hidden_size)) if value]
    return " ".join([
        "python -m onnxruntime.transformers.optimizer --input model.onnx --output opt.onnx",
        f"--model_type {artifact(index).ort_model_type}", *known,
    ])
