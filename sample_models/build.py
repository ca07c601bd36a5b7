"""Generate the sample ONNX models that memlint's tests, docs and golden reports use.

    python sample_models/build.py [--out DIR]

The graphs copy what Hugging Face Optimum (torch.onnx.export underneath) emits for GPT-2
"text-generation-with-past" and BERT "feature-extraction": the same input/output names, the same
symbolic dim names, node names scoped like "/transformer/h.0/attn/MatMul", reshape targets computed
at run time from Shape -> Gather -> Unsqueeze -> Concat chains, unfused LayerNorm/Gelu/attention.
Only onnx.helper and numpy are used; weights come from a fixed seed, so every run writes
byte-identical files. See README.md in this folder for what each file holds.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; fixed so output does not track onnx
SEED = 0
FLOAT_MIN = float(np.finfo(np.float32).min)  # what transformers uses as the additive mask value
PAST_PLUS_SEQ = "past_sequence_length + sequence_length"  # Optimum's dim name, verbatim

F32, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
_NP_DTYPE = {F32: np.dtype("<f4"), I64: np.dtype("<i8"), BOOL: np.dtype("bool")}


# ----------------------------------------------------------------------------------------------
# Weights: embedded (random, seeded) or external (descriptors only, data file never written)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    """How to fill a weight: normal | ones | zeros | arange | causal | transpose (of `source`)."""

    kind: str
    std: float = 0.02
    source: str = ""


class EmbeddedWeights:
    """Initializers with their values in the model file, drawn from one seeded generator."""

    def __init__(self, seed: int = SEED) -> None:
        self._rng = np.random.default_rng(seed)
        self._arrays: dict[str, np.ndarray] = {}

    def make(self, name: str, shape: Sequence[int], dtype: int, fill: Fill) -> TensorProto:
        array = self._array(tuple(shape), fill).astype(_NP_DTYPE[dtype])
        self._arrays[name] = array
        return numpy_helper.from_array(array, name)

    def _array(self, shape: tuple[int, ...], fill: Fill) -> np.ndarray:
        if fill.kind == "normal":
            return self._rng.normal(0.0, fill.std, size=shape)
        if fill.kind == "ones":
            return np.ones(shape)
        if fill.kind == "zeros":
            return np.zeros(shape)
        if fill.kind == "arange":
            return np.arange(math.prod(shape)).reshape(shape)
        if fill.kind == "causal":
            return np.tril(np.ones(shape[-2:], dtype=bool)).reshape(shape)
        if fill.kind == "transpose":
            return np.ascontiguousarray(self._arrays[fill.source].T)
        raise ValueError(f"unknown fill {fill.kind!r}")


class ExternalWeights:
    """Initializers that point into `location` with the offset/length they would have there.

    Tensors are laid out back to back, in creation order, as onnx.save_model would write them.
    No values are generated and the data file is never written.
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self._offset = 0

    def make(self, name: str, shape: Sequence[int], dtype: int, fill: Fill) -> TensorProto:
        del fill  # no values: only the layout is recorded
        length = math.prod(shape) * _NP_DTYPE[dtype].itemsize
        tensor = TensorProto(name=name, data_type=dtype, dims=list(shape))
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", self._offset),
                           ("length", length)):
            tensor.external_data.add(key=key, value=str(value))
        self._offset += length
        return tensor


# ----------------------------------------------------------------------------------------------
# Graph builder with torch-exporter style naming
# ----------------------------------------------------------------------------------------------


@dataclass
class GraphBuilder:
    weights: EmbeddedWeights | ExternalWeights
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)
    _used: dict[str, int] = field(default_factory=dict)

    def _name(self, scope: str, op_type: str) -> str:
        base = f"{scope}/{op_type}"
        count = self._used.get(base, 0)
        self._used[base] = count + 1
        return base if count == 0 else f"{base}_{count}"

    def op(self, op_type: str, inputs: Sequence[str], scope: str, n_out: int = 1,
           **attrs: object) -> str | list[str]:
        name = self._name(scope, op_type)
        outputs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=name, **attrs))
        return outputs[0] if n_out == 1 else outputs

    def const(self, value: float | int | Sequence[int], scope: str, dtype: int = F32) -> str:
        """A Constant node (how the exporter emits scalars and shape pieces)."""
        array = np.array(value, dtype=_NP_DTYPE[dtype])
        name = self._name(scope, "Constant")
        out = f"{name}_output_0"
        tensor = numpy_helper.from_array(array, "")
        self.nodes.append(helper.make_node("Constant", [], [out], name=name, value=tensor))
        return out

    def weight(self, name: str, shape: Sequence[int], fill: Fill = Fill("normal"),
               dtype: int = F32) -> str:
        self.initializers.append(self.weights.make(name, shape, dtype, fill))
        return name

    # -- recurring exporter idioms ------------------------------------------------------------

    def dim(self, tensor: str, index: int, scope: str) -> str:
        """Shape(x) -> Gather(index) -> Unsqueeze: one runtime dim as a 1-D int64 tensor."""
        shape = self.op("Shape", [tensor], scope)
        scalar = self.op("Gather", [shape, self.const(index, scope, I64)], scope, axis=0)
        return self.op("Unsqueeze", [scalar, self.const([0], scope, I64)], scope)

    def reshape_tail(self, x: str, tail: Sequence[int], scope: str) -> str:
        """Reshape x to x.shape[:2] + tail, with the target computed from x's runtime shape."""
        pieces = [self.dim(x, 0, scope), self.dim(x, 1, scope)]
        pieces += [self.const([d], scope, I64) for d in tail]
        target = self.op("Concat", pieces, scope, axis=0)
        return self.op("Reshape", [x, target], scope)

    def linear(self, x: str, prefix: str, scope: str, n_in: int, n_out: int,
               transposed_name: bool = False) -> str:
        """MatMul + Add with a [n_in, n_out] weight (GPT-2 Conv1D / exported nn.Linear)."""
        w_name = f"onnx::MatMul_{prefix}.weight" if transposed_name else f"{prefix}.weight"
        w = self.weight(w_name, [n_in, n_out])
        y = self.op("MatMul", [x, w], scope)
        b = self.weight(f"{prefix}.bias", [n_out], Fill("zeros"))
        return self.op("Add", [b, y], scope)

    def layer_norm(self, x: str, prefix: str, scope: str, width: int, eps: float) -> str:
        g = self.weight(f"{prefix}.weight", [width], Fill("ones"))
        b = self.weight(f"{prefix}.bias", [width], Fill("zeros"))
        return self.op("LayerNormalization", [x, g, b], scope, axis=-1, epsilon=eps)

    def additive_mask(self, attention_mask: str, scope: str) -> str:
        """[b, k] int64 -> [b, 1, 1, k] float: (1 - mask) * finfo.min (the extended mask)."""
        m = self.op("Unsqueeze", [attention_mask, self.const([1, 2], scope, I64)], scope)
        m = self.op("Cast", [m], scope, to=F32)
        m = self.op("Sub", [self.const(1.0, scope), m], scope)
        return self.op("Mul", [m, self.const(FLOAT_MIN, scope)], scope)


def _value(name: str, dtype: int, dims: Sequence[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, list(dims))


def _model(b: GraphBuilder, name: str, inputs: list, outputs: list, doc: str) -> onnx.ModelProto:
    graph = helper.make_graph(b.nodes, name, inputs, outputs, initializer=b.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="memlint sample_models/build.py",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    return model


# ----------------------------------------------------------------------------------------------
# GPT-2 decoder with KV cache (Optimum "text-generation-with-past")
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderConfig:
    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int
    n_positions: int
    layer_norm_epsilon: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


GPT2_TINY = DecoderConfig(n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=256)
GPT2_SMALL = DecoderConfig(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)


def _gelu_tanh(b: GraphBuilder, x: str, scope: str) -> str:
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3))), in torch's export order."""
    half_x = b.op("Mul", [x, b.const(0.5, scope)], scope)
    cube = b.op("Pow", [x, b.const(3.0, scope)], scope)
    t = b.op("Mul", [cube, b.const(0.044715, scope)], scope)
    t = b.op("Add", [x, t], scope)
    t = b.op("Mul", [t, b.const(math.sqrt(2.0 / math.pi), scope)], scope)
    t = b.op("Tanh", [t], scope)
    t = b.op("Add", [b.const(1.0, scope), t], scope)
    return b.op("Mul", [half_x, t], scope)


def _causal_slice(b: GraphBuilder, cfg: DecoderConfig, input_ids: str, attention_mask: str) -> str:
    """bias[:, :, k - q : k, :k] of the lower-triangular buffer -> [1, 1, q, k] bool."""
    scope = "/transformer"
    bias = b.weight("transformer.causal_bias", [1, 1, cfg.n_positions, cfg.n_positions],
                    Fill("causal"), BOOL)
    q_len = b.dim(input_ids, 1, scope)
    k_len = b.dim(attention_mask, 1, scope)
    start = b.op("Sub", [k_len, q_len], scope)
    zero = b.const([0], scope, I64)
    rows = b.op("Slice", [bias, start, k_len, b.const([2], scope, I64)], scope)
    return b.op("Slice", [rows, zero, k_len, b.const([3], scope, I64)], scope)


def _decoder_block(b: GraphBuilder, cfg: DecoderConfig, i: int, x: str, causal: str,
                   mask: str) -> tuple[str, str, str]:
    scope, prefix = f"/transformer/h.{i}", f"transformer.h.{i}"
    attn, mlp = f"{scope}/attn", f"{scope}/mlp"
    d, h, hd = cfg.n_embd, cfg.n_head, cfg.head_dim

    ln1 = b.layer_norm(x, f"{prefix}.ln_1", f"{scope}/ln_1", d, cfg.layer_norm_epsilon)
    qkv = b.linear(ln1, f"{prefix}.attn.c_attn", f"{attn}/c_attn", d, 3 * d)
    q, k, v = b.op("Split", [qkv, b.const([d, d, d], attn, I64)], attn, n_out=3, axis=2)
    q, k, v = (b.op("Transpose", [b.reshape_tail(t, [h, hd], attn)], attn, perm=[0, 2, 1, 3])
               for t in (q, k, v))
    present_k = b.op("Concat", [f"past_key_values.{i}.key", k], attn, axis=-2)
    present_v = b.op("Concat", [f"past_key_values.{i}.value", v], attn, axis=-2)
    k_t = b.op("Transpose", [present_k], attn, perm=[0, 1, 3, 2])
    scores = b.op("MatMul", [q, k_t], attn)
    scores = b.op("Div", [scores, b.const(math.sqrt(hd), attn)], attn)
    scores = b.op("Where", [causal, scores, b.const(FLOAT_MIN, attn)], attn)
    scores = b.op("Add", [scores, mask], attn)
    probs = b.op("Softmax", [scores], attn, axis=-1)
    ctx = b.op("MatMul", [probs, present_v], attn)
    ctx = b.op("Transpose", [ctx], attn, perm=[0, 2, 1, 3])
    ctx = b.reshape_tail(ctx, [d], attn)
    attn_out = b.linear(ctx, f"{prefix}.attn.c_proj", f"{attn}/c_proj", d, d)
    x = b.op("Add", [attn_out, x], scope)

    ln2 = b.layer_norm(x, f"{prefix}.ln_2", f"{scope}/ln_2", d, cfg.layer_norm_epsilon)
    hidden = b.linear(ln2, f"{prefix}.mlp.c_fc", f"{mlp}/c_fc", d, 4 * d)
    hidden = _gelu_tanh(b, hidden, f"{mlp}/act")
    mlp_out = b.linear(hidden, f"{prefix}.mlp.c_proj", f"{mlp}/c_proj", 4 * d, d)
    x = b.op("Add", [x, mlp_out], scope)
    return x, present_k, present_v


def build_decoder(cfg: DecoderConfig, weights: EmbeddedWeights | ExternalWeights,
                  name: str) -> onnx.ModelProto:
    """GPT-2 LM head model with past: logits + present.{i}.key/value, Optimum's I/O layout."""
    b = GraphBuilder(weights)
    d, h, hd = cfg.n_embd, cfg.n_head, cfg.head_dim
    kv_past = ["batch_size", h, "past_sequence_length", hd]
    kv_present = ["batch_size", h, PAST_PLUS_SEQ, hd]
    inputs = [
        _value("input_ids", I64, ["batch_size", "sequence_length"]),
        _value("attention_mask", I64, ["batch_size", PAST_PLUS_SEQ]),
        _value("position_ids", I64, ["batch_size", "sequence_length"]),
    ]
    for i in range(cfg.n_layer):
        inputs += [_value(f"past_key_values.{i}.{kv}", F32, kv_past) for kv in ("key", "value")]

    wte = b.weight("transformer.wte.weight", [cfg.vocab_size, d])
    wpe = b.weight("transformer.wpe.weight", [cfg.n_positions, d])
    tok = b.op("Gather", [wte, "input_ids"], "/transformer/wte")
    pos = b.op("Gather", [wpe, "position_ids"], "/transformer/wpe")
    x = b.op("Add", [tok, pos], "/transformer")
    mask = b.additive_mask("attention_mask", "/transformer")
    causal = _causal_slice(b, cfg, "input_ids", "attention_mask")

    presents = []
    for i in range(cfg.n_layer):
        x, present_k, present_v = _decoder_block(b, cfg, i, x, causal, mask)
        presents += [present_k, present_v]

    x = b.layer_norm(x, "transformer.ln_f", "/transformer/ln_f", d, cfg.layer_norm_epsilon)
    # lm_head is tied to wte; the exporter folds wte.T into its own [d, vocab] initializer.
    lm_w = b.weight("onnx::MatMul_lm_head.weight", [d, cfg.vocab_size],
                    Fill("transpose", source="transformer.wte.weight"))
    logits = b.op("MatMul", [x, lm_w], "/lm_head")

    # Rename graph outputs to Optimum's names (the exporter does the same).
    renames = {logits: "logits"}
    for i in range(cfg.n_layer):
        renames[presents[2 * i]] = f"present.{i}.key"
        renames[presents[2 * i + 1]] = f"present.{i}.value"
    _rename_values(b.nodes, renames)
    outputs = [_value("logits", F32, ["batch_size", "sequence_length", cfg.vocab_size])]
    for i in range(cfg.n_layer):
        outputs += [_value(f"present.{i}.{kv}", F32, kv_present) for kv in ("key", "value")]
    doc = (f"GPT-2 style decoder with KV cache: {cfg.n_layer} layers, hidden {d}, {h} heads of "
           f"{hd}, vocab {cfg.vocab_size}, n_positions {cfg.n_positions}")
    return _model(b, name, inputs, outputs, doc)


def _rename_values(nodes: list[onnx.NodeProto], renames: dict[str, str]) -> None:
    for node in nodes:
        for seq in (node.input, node.output):
            for j, value in enumerate(seq):
                if value in renames:
                    seq[j] = renames[value]


# ----------------------------------------------------------------------------------------------
# BERT encoder (Optimum "feature-extraction")
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderConfig:
    num_hidden_layers: int = 2
    hidden_size: int = 128
    num_attention_heads: int = 4
    intermediate_size: int = 512
    vocab_size: int = 1000
    max_position_embeddings: int = 128
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def _gelu_erf(b: GraphBuilder, x: str, scope: str) -> str:
    """x * 0.5 * (1 + erf(x / sqrt(2))), in torch's export order."""
    t = b.op("Div", [x, b.const(math.sqrt(2.0), scope)], scope)
    t = b.op("Erf", [t], scope)
    t = b.op("Add", [t, b.const(1.0, scope)], scope)
    t = b.op("Mul", [x, t], scope)
    return b.op("Mul", [t, b.const(0.5, scope)], scope)


def _encoder_layer(b: GraphBuilder, cfg: EncoderConfig, i: int, x: str, mask: str) -> str:
    scope, prefix = f"/encoder/layer.{i}", f"encoder.layer.{i}"
    attn = f"{scope}/attention/self"
    d, h, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim

    def heads(name: str, perm: list[int]) -> str:
        y = b.linear(x, f"{prefix}.attention.self.{name}", f"{attn}/{name}", d, d,
                     transposed_name=True)
        return b.op("Transpose", [b.reshape_tail(y, [h, hd], attn)], attn, perm=perm)

    q = heads("query", [0, 2, 1, 3])
    k_t = heads("key", [0, 2, 3, 1])  # permute + transpose(-1, -2), folded by the exporter
    v = heads("value", [0, 2, 1, 3])
    scores = b.op("MatMul", [q, k_t], attn)
    scores = b.op("Div", [scores, b.const(math.sqrt(hd), attn)], attn)
    scores = b.op("Add", [scores, mask], attn)
    probs = b.op("Softmax", [scores], attn, axis=-1)
    ctx = b.op("MatMul", [probs, v], attn)
    ctx = b.op("Transpose", [ctx], attn, perm=[0, 2, 1, 3])
    ctx = b.reshape_tail(ctx, [d], attn)

    out = f"{scope}/attention/output"
    y = b.linear(ctx, f"{prefix}.attention.output.dense", f"{out}/dense", d, d,
                 transposed_name=True)
    y = b.op("Add", [y, x], out)
    x = b.layer_norm(y, f"{prefix}.attention.output.LayerNorm", f"{out}/LayerNorm", d,
                     cfg.layer_norm_eps)

    inter = f"{scope}/intermediate"
    y = b.linear(x, f"{prefix}.intermediate.dense", f"{inter}/dense", d,
                 cfg.intermediate_size, transposed_name=True)
    y = _gelu_erf(b, y, f"{inter}/intermediate_act_fn")
    out = f"{scope}/output"
    y = b.linear(y, f"{prefix}.output.dense", f"{out}/dense", cfg.intermediate_size, d,
                 transposed_name=True)
    y = b.op("Add", [y, x], out)
    return b.layer_norm(y, f"{prefix}.output.LayerNorm", f"{out}/LayerNorm", d,
                        cfg.layer_norm_eps)


def build_encoder(cfg: EncoderConfig, weights: EmbeddedWeights, name: str) -> onnx.ModelProto:
    b = GraphBuilder(weights)
    d = cfg.hidden_size
    inputs = [_value(n, I64, ["batch_size", "sequence_length"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    emb = "/embeddings"
    word = b.weight("embeddings.word_embeddings.weight", [cfg.vocab_size, d])
    pos_table = b.weight("embeddings.position_embeddings.weight", [cfg.max_position_embeddings, d])
    type_table = b.weight("embeddings.token_type_embeddings.weight", [cfg.type_vocab_size, d])
    pos_ids = b.weight("embeddings.position_ids", [1, cfg.max_position_embeddings],
                       Fill("arange"), I64)

    x = b.op("Gather", [word, "input_ids"], f"{emb}/word_embeddings")
    t = b.op("Gather", [type_table, "token_type_ids"], f"{emb}/token_type_embeddings")
    x = b.op("Add", [x, t], emb)
    seq = b.dim("input_ids", 1, emb)
    ids = b.op("Slice", [pos_ids, b.const([0], emb, I64), seq, b.const([1], emb, I64)], emb)
    p = b.op("Gather", [pos_table, ids], f"{emb}/position_embeddings")
    x = b.op("Add", [x, p], emb)
    x = b.layer_norm(x, "embeddings.LayerNorm", f"{emb}/LayerNorm", d, cfg.layer_norm_eps)
    mask = b.additive_mask("attention_mask", "")

    for i in range(cfg.num_hidden_layers):
        x = _encoder_layer(b, cfg, i, x, mask)
    _rename_values(b.nodes, {x: "last_hidden_state"})
    outputs = [_value("last_hidden_state", F32, ["batch_size", "sequence_length", d])]
    doc = (f"BERT style encoder: {cfg.num_hidden_layers} layers, hidden {d}, "
           f"{cfg.num_attention_heads} heads, intermediate {cfg.intermediate_size}, "
           f"vocab {cfg.vocab_size}")
    return _model(b, name, inputs, outputs, doc)


# ----------------------------------------------------------------------------------------------
# Small CNN (image classification)
# ----------------------------------------------------------------------------------------------

# (name, in_channels, out_channels, kernel, stride, group)
_CNN_BLOCKS = (
    ("stem", 3, 16, 3, 2, 1),
    ("block1.dw", 16, 16, 3, 1, 16),
    ("block1.pw", 16, 32, 1, 1, 1),
    ("block2", 32, 64, 3, 2, 1),
)


def build_cnn(weights: EmbeddedWeights, name: str, num_classes: int = 10) -> onnx.ModelProto:
    b = GraphBuilder(weights)
    x = "pixel_values"
    for block, c_in, c_out, k, stride, group in _CNN_BLOCKS:
        scope = f"/{block}"
        w = b.weight(f"{block}.conv.weight", [c_out, c_in // group, k, k], Fill("normal", 0.1))
        x = b.op("Conv", [x, w], f"{scope}/conv", group=group, kernel_shape=[k, k],
                 pads=[k // 2] * 4, strides=[stride, stride], dilations=[1, 1])
        bn = [b.weight(f"{block}.bn.{p}", [c_out], Fill(f))
              for p, f in (("weight", "ones"), ("bias", "zeros"), ("running_mean", "zeros"),
                           ("running_var", "ones"))]
        x = b.op("BatchNormalization", [x, *bn], f"{scope}/bn", epsilon=1e-5, momentum=0.9)
        x = b.op("Relu", [x], f"{scope}/act")
        if block == "block1.pw":
            x = b.op("MaxPool", [x], "/pool", kernel_shape=[2, 2], strides=[2, 2],
                     pads=[0, 0, 0, 0])
    x = b.op("GlobalAveragePool", [x], "/head")
    x = b.op("Flatten", [x], "/head", axis=1)
    c = _CNN_BLOCKS[-1][2]
    w = b.weight("classifier.weight", [num_classes, c], Fill("normal", 0.1))
    bias = b.weight("classifier.bias", [num_classes], Fill("zeros"))
    b.op("Gemm", [x, w, bias], "/classifier", alpha=1.0, beta=1.0, transB=1)
    _rename_values(b.nodes, {b.nodes[-1].output[0]: "logits"})
    inputs = [_value("pixel_values", F32, ["batch_size", 3, 64, 64])]
    outputs = [_value("logits", F32, ["batch_size", num_classes])]
    return _model(b, name, inputs, outputs, "small CNN: conv/bn/relu, one depthwise conv")


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------

GRAPH_ONLY_DATA = "gpt2_small_graph_only.onnx.data"


def build_models() -> dict[str, onnx.ModelProto]:
    """File name -> model, in a fixed order. Each embedded model has its own seeded generator."""
    return {
        "gpt2_decoder_step.onnx": build_decoder(GPT2_TINY, EmbeddedWeights(SEED), "gpt2_tiny"),
        "bert_encoder.onnx": build_encoder(EncoderConfig(), EmbeddedWeights(SEED), "bert_tiny"),
        "small_cnn.onnx": build_cnn(EmbeddedWeights(SEED), "small_cnn"),
        "gpt2_small_graph_only.onnx": build_decoder(
            GPT2_SMALL, ExternalWeights(GRAPH_ONLY_DATA), "gpt2_small"),
    }


def check(model: onnx.ModelProto) -> None:
    """onnx.checker with full_check (strict shape inference) on a model.

    The checker insists that an external data file exists, so a model with external weights is
    checked from a temporary folder holding a sparse placeholder of the layout's exact size (no
    disk blocks are written, and nothing is ever read from it).
    """
    external = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if not external:
        onnx.checker.check_model(model, full_check=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model.SerializeToString())
        ends: dict[str, int] = {}
        for tensor in external:
            info = {e.key: e.value for e in tensor.external_data}
            end = int(info["offset"]) + int(info["length"])
            ends[info["location"]] = max(ends.get(info["location"], 0), end)
        for location, size in ends.items():
            with open(Path(tmp) / location, "wb") as placeholder:
                placeholder.truncate(size)
        onnx.checker.check_model(str(path), full_check=True)


def build_all(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, model in build_models().items():
        check(model)
        path = out_dir / file_name
        path.write_bytes(model.SerializeToString(deterministic=True))
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: this script's folder)")
    args = parser.parse_args(argv)
    for path in build_all(args.out):
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
