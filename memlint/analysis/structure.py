"""What a decoder graph says about itself: its KV cache, the role of each symbolic dim, layers,
heads and KV heads; in an Optimum export directory also what config.json says.

Everything is read from a loaded `ir.Model` (any binding of its dims will do: the figures read
here do not depend on batch or sequence lengths):

- KV cache: graph inputs of kind KV_CACHE (the frontend marks past_key_values.N.key/value,
  past_key/past_value, *key_cache, ...), and the KV-cache graph outputs (present.*). Per input,
  the batch and sequence axes come from the declared dim names (batch; past/sequence/length),
  else from the usual layouts [batch, heads, seq, head_dim] and [2, batch, heads, seq, head_dim].
- Dim roles, from which inputs carry each name first and its spelling second: the names on the
  KV inputs' batch and sequence axes are BATCH and PAST (tokens already cached); the second axis
  of input_ids (or inputs_embeds, position_ids) is NEW_TOKENS; the last axis of an attention mask
  is TOTAL (past + new), either an expression of the other names ("past_sequence_length +
  sequence_length", evaluated by the frontend) or a symbol of its own, which scenarios bind to
  past + new. Any other name containing "batch" is BATCH.
- Layers: distinct layer numbers in the KV input names (else key inputs, else inputs / 2).
- KV heads and head size: the axes of a key input other than batch and sequence
  ([b, kv_heads, s, head_dim]). Query heads: an attention op's head attribute, else axis 1 of the
  query in the Q @ K^T MatMul (the operand that is not KV cache), else config.json.
- Hidden size and vocabulary: the embedding table gathered by input_ids ([vocab, hidden]);
  maximum positions: a position table gathered by position_ids, else config.json.

Where graph and config.json disagree the graph wins (it is what runs) and a note says so.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from memlint.analysis.graph_index import structure_of
from memlint.analysis.hfconfig import HfConfig, config_file, read_config
from memlint.analysis.kv_copies import cache_outputs, is_cache_or_copy
from memlint.costs.registry import op_info_of
from memlint.dims import dim_names_in
from memlint.ir import EMPTY, DType, Graph, Model, Node, Value, ValueKind, per_graph

_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]*$")
_BATCH = re.compile(r"batch", re.I)
_PAST = re.compile(r"past|cache", re.I)
_SEQ = re.compile(r"seq|length|len|context|tokens|ctx", re.I)
_LAYER = re.compile(r"(\d+)")
# A state-space layer's recurrent state (memlint.frontends.fx_cache names MambaCache's tensors)
_STATE = re.compile(r"(conv|ssm)_states?$|recurrent_state", re.IGNORECASE)
# Cross-attention caches: past_key_values.N.encoder.key (Optimum seq2seq), *cross_attn*, ...
_CROSS = re.compile(r"(^|[._/:-])(encoder|cross(_?attn|_attention)?)([._/:-]|$)", re.I)
# Inputs of a decoder that carry the encoder's length on axis 1 (encoder_attention_mask: last).
ENCODER_INPUTS = ("encoder_hidden_states", "encoder_outputs", "encoder_attention_mask")
# A bool input that picks a merged decoder's branch (Optimum: use_cache_branch).
_CACHE_FLAG = re.compile(r"use_cache|cache_branch", re.I)
TOKEN_INPUTS = ("input_ids", "inputs_embeds", "decoder_input_ids", "position_ids")
# Attention ops that carry their head counts as attributes: (query heads attr, kv heads attr).
_HEAD_ATTRS = {
    "Attention": ("q_num_heads", "kv_num_heads"),
    "com.microsoft::GroupQueryAttention": ("num_heads", "kv_num_heads"),
    "com.microsoft::MultiHeadAttention": ("num_heads", None),
    "com.microsoft::Attention": ("num_heads", None),
}


class DimRole(enum.Enum):
    BATCH = "batch"
    NEW_TOKENS = "new_tokens"  # tokens this step processes (the prompt in a prefill, 1 in decode)
    PAST = "past"  # tokens already in the KV cache: the context
    TOTAL = "total"  # past + new, where the graph names it as a symbol of its own
    ENCODER = "encoder"  # the encoder's length that cross-attention reads (encoder_sequence_length)


@dataclass(frozen=True)
class LatentAttention:
    """Multi-head latent attention (DeepSeek-V2/V3), from the config: keys and values are
    up-projected from a latent of `rank` per token, with `rope` rotary dims cached beside it.

    A serving engine caches the latent, rank + rope elements per token and layer, and runs
    decode *absorbed*: W_UK folds into the query and W_UV into the output, so attention reads
    the latent once. transformers caches the decompressed keys (nope + rope per head) and values
    (v per head) and attends to them (*naive*). `attention()` counts both per step."""

    rank: int
    rope: int
    nope: int
    v_dim: int
    heads: int

    @property
    def latent_per_token(self) -> int:
        """Cached elements per token and layer as a serving engine stores them."""
        return self.rank + self.rope

    @property
    def decompressed_per_token(self) -> int:
        """Cached elements per token and layer as transformers stores them (keys and values)."""
        return self.heads * (self.nope + self.rope + self.v_dim)

    def attention(self, tokens: int, context: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((FLOPs, cache elements read) naive, (the same) absorbed) of one layer for `tokens`
        new tokens (over the batch) after `context` cached ones per sequence (T = batch x new
        tokens queries, each over C + 1 keys; for a batch the cache read is per sequence, so
        the caller scales the elements read by the batch):
        naive: scores 2T h (C+1)(nope+rope), values 2T h (C+1) v; reads (C+1) h (nope+rope+v);
        absorbed: W_UK into the query 2T h nope rank, scores 2T h (C+1)(rank+rope), values
        2T h (C+1) rank, W_UV out 2T h rank v; reads (C+1)(rank+rope)."""
        h, keys = self.heads, context + 1
        naive = (2 * tokens * h * keys * (self.nope + self.rope + self.v_dim),
                 keys * self.decompressed_per_token)
        absorbed = (2 * tokens * h * (self.nope * self.rank + keys * (2 * self.rank + self.rope)
                                      + self.rank * self.v_dim),
                    keys * self.latent_per_token)
        return naive, absorbed


@dataclass(frozen=True)
class StateTensor:
    """A state-space layer's recurrent state (cache_params.N.conv_state / .ssm_state): one per
    sequence, the same size whatever the context."""

    name: str
    layer: int | None  # its layer; None for a state stacked over every layer
    layers: int  # the layers it holds: 1, or all of them when stacked
    bytes_per_sequence: int


@dataclass(frozen=True)
class KvTensor:
    """One KV-cache graph input and how its axes read."""

    name: str
    layer: int | None
    part: str  # "key", "value" or "kv" (both in one tensor)
    dtype: DType
    batch_axis: int
    seq_axis: int | None
    elements_per_token: int | None  # product of the axes other than batch and sequence
    heads: int | None  # KV heads, for [b, h, s, d], [b, s, h, d] and [2, b, h, s, d]
    head_dim: int | None
    # Cross-attention K/V of an encoder-decoder (past_key_values.N.encoder.key): its sequence
    # axis is the encoder's length; read every step, never appended.
    cross: bool = False


@dataclass(frozen=True)
class Pinned:
    """A role held by an axis that no dim name sets: a fixed size (input_ids [batch, 1], a static
    cache), or an unnamed dynamic axis (the frontend assumed 1; --input-shape sets it)."""

    value: int  # its size in the loaded graph
    axis: str  # "input[axis]"
    unnamed: bool

    def why(self, what: str) -> str:
        if self.unnamed:
            return (
                f"{what} is held by {self.axis}, an axis with no dim name; set that input's whole "
                f"shape with --input-shape instead"
            )
        return f"the graph fixes {what} at {self.value} ({self.axis})"


@dataclass(frozen=True)
class LlmStructure:
    """A decoder's structure as memlint sees it; `sources` names where each figure came from."""

    model: str  # the model's source path
    kv_inputs: tuple[KvTensor, ...]
    kv_outputs: tuple[str, ...]
    dim_roles: Mapping[str, DimRole]  # symbolic dim name -> role
    derived_dims: tuple[str, ...]  # dim expressions the frontend evaluates (past + new)
    pinned: Mapping[DimRole, Pinned]  # roles no symbolic dim name can set
    token_inputs: tuple[str, ...]
    layers: int | None
    heads: int | None
    kv_heads: int | None
    head_dim: int | None
    hidden_size: int | None
    vocab_size: int | None
    max_positions: int | None
    kv_dtype: DType | None
    activation_dtype: DType
    config: HfConfig | None = None
    sources: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    notes: tuple[str, ...] = ()
    # Bool graph inputs that pick the graph's branch (Optimum merged decoders' use_cache_branch):
    # True runs the decode step with past, False the first pass without.
    cache_flags: tuple[str, ...] = ()
    # The encoder's length when the model fixes it (Whisper's max_source_positions, 1500).
    encoder_positions: int | None = None
    # A mixture of experts (from the config): routed experts per MoE layer, experts per token
    experts: int | None = None
    experts_per_token: int | None = None
    # Sliding-window layers (from the config): layer index -> window W. Such a layer's cache
    # keeps the last W - 1 tokens (what transformers' sliding caches keep; the step attends to
    # them and the new token), whatever the context.
    windows: Mapping[int, int] = field(default_factory=lambda: EMPTY)
    latent: LatentAttention | None = None  # multi-head latent attention (from the config)
    # State-space layers' recurrent states (Mamba): constant in the context
    state_inputs: tuple[StateTensor, ...] = ()

    @property
    def state_layers(self) -> int:
        """State-space layers: those a stacked state holds, else the distinct layer indices."""
        stacked = max((t.layers for t in self.state_inputs if t.layer is None), default=0)
        return stacked or len({t.layer for t in self.state_inputs})

    @property
    def state_bytes_per_sequence(self) -> int | None:
        """Every state-space layer's state for one sequence (None without any)."""
        if not self.state_inputs:
            return None
        return sum(t.bytes_per_sequence for t in self.state_inputs)

    @property
    def has_kv_cache(self) -> bool:
        """A step with a cache: KV-cache inputs, or a state-space model's recurrent states (the
        LLM scenario and serving figures apply to both)."""
        return bool(self.kv_inputs or self.state_inputs)

    @property
    def has_cross_attention(self) -> bool:
        """An encoder-decoder's decoder: cross-attention K/V among its KV-cache inputs."""
        return any(t.cross for t in self.kv_inputs)

    def dims_of(self, role: DimRole) -> tuple[str, ...]:
        """The symbolic dim names that play `role`, sorted."""
        return tuple(sorted(name for name, r in self.dim_roles.items() if r is role))

    @property
    def kv_elements_per_token(self) -> int | None:
        """KV-cache elements per token of one sequence, over every layer, key and value."""
        counts = [t.elements_per_token for t in self.kv_inputs]
        if not counts or any(c is None for c in counts):
            return None
        return sum(counts)  # type: ignore[arg-type]

    def kv_bytes_per_token(self, dtype: DType | None = None) -> int | float | None:
        """KV-cache bytes per token of one sequence (2 x layers x kv_heads x head_dim x bytes for
        separate key and value inputs); at `dtype` instead of the graph's when given. With
        multi-head latent attention, the latent a serving engine caches: layers x (rank + rope)
        x bytes (the graph's own cache: captured_kv_bytes_per_token)."""
        captured = self.captured_kv_bytes_per_token(dtype)
        if self.latent is None or captured is None or not self.layers:
            return captured
        bits = self.latent.latent_per_token * self.layers * _width(self.kv_dtype, dtype)
        return bits // 8 if bits % 8 == 0 else bits / 8

    def captured_kv_bytes_per_token(self, dtype: DType | None = None) -> int | float | None:
        """The graph's self-attention KV-cache inputs per token of one sequence."""
        return _bytes_per_position([t for t in self.kv_inputs if not t.cross], dtype)

    def kv_bytes_at(self, context: int, dtype: DType | None = None) -> int | float | None:
        """Self-attention KV-cache bytes of one sequence after `context` tokens: each layer at
        min(context, W - 1) tokens where it slides over a window W, else at the context (a
        latent-attention cache: its latent at the context)."""
        if self.latent is not None:
            per = self.kv_bytes_per_token(dtype)
            return None if per is None else per * context
        total: int | float = 0
        for tensor in self.kv_inputs:
            if tensor.cross:
                continue
            per = _bytes_per_position([tensor], dtype)
            if per is None:
                return None
            window = self.windows.get(tensor.layer) if tensor.layer is not None else None
            total += per * (context if window is None else min(context, window - 1))
        return total if self.kv_inputs else None

    def cross_kv_bytes_per_position(self, dtype: DType | None = None) -> int | float | None:
        """Cross-attention K/V bytes per encoder position of one sequence (every layer, key
        and value): written once from the encoder's output, read whole by every decode step."""
        return _bytes_per_position([t for t in self.kv_inputs if t.cross], dtype)

    @property
    def attention_kind(self) -> str:
        """'multi-head', 'grouped-query (G query heads per KV head)', 'multi-query' or ''."""
        if not self.heads or not self.kv_heads:
            return ""
        if self.kv_heads == self.heads:
            return "multi-head"
        if self.kv_heads == 1:
            return "multi-query"
        return f"grouped-query ({self.heads // self.kv_heads} query heads per KV head)"


def detect(
    model: Model, *, config_path: str | Path | None = None, use_config: bool = True,
    config: HfConfig | None = None,
) -> LlmStructure:
    """The structure of `model`. config.json next to the model file is read when it exists
    (or `config_path` when given, or `config` when the caller holds it: a torch model's own);
    use_config=False reads the graph alone (no file access, as a rule would want)."""
    graph = model.graph
    if config is None and use_config:
        config = read_config(config_file(model.source, config_path))
    said = "config.json" if config is None or config.path.endswith(".json") else config.path
    states = tuple(_state_tensor(v) for v in _kv_inputs(graph) if _STATE.search(v.name))
    kv = tuple(_kv_tensor(v, model) for v in _kv_inputs(graph) if not _STATE.search(v.name))
    kv_outputs = cache_outputs(graph)
    tokens = tuple(name for name in TOKEN_INPUTS if name in model.input_dim_names)
    roles, derived, pinned = _roles(model, kv, tokens)
    notes: list[str] = []
    sources: dict[str, str] = {}
    figures: dict[str, int | None] = {}

    def settle(key: str, graph_value: int | None, how: str, config_value: int | None) -> None:
        if graph_value is not None:
            figures[key], sources[key] = graph_value, f"graph ({how})"
            if config_value is not None and config_value != graph_value:
                notes.append(
                    f"{key}: the graph has {graph_value} ({how}), {said} says "
                    f"{config_value}; using the graph's"
                )
        elif config_value is not None:
            figures[key], sources[key] = config_value, said
        else:
            figures[key] = None

    cfg = config or HfConfig(path="")
    keys = [t for t in kv if t.part in ("key", "kv")] or list(kv)
    kv_heads = next((t.heads for t in keys if t.heads), None)
    head_dim = next((t.head_dim for t in keys if t.head_dim), None)
    settle("layers", _layers(kv), "KV-cache inputs", cfg.num_hidden_layers)
    cfg_kv_heads = cfg.num_key_value_heads or cfg.num_attention_heads
    settle("kv_heads", kv_heads, "KV-cache input shape", cfg_kv_heads if config else None)
    cfg_head_dim = cfg.head_dim or (
        cfg.hidden_size // cfg.num_attention_heads
        if cfg.hidden_size and cfg.num_attention_heads else None
    )
    settle("head_dim", head_dim, "KV-cache input shape", cfg_head_dim)
    settle("heads", _query_heads(graph), "attention", cfg.num_attention_heads)
    table = _gathered_table(graph, ("input_ids",))
    settle("hidden_size", table[1] if table else None, "embedding table", cfg.hidden_size)
    vocab = table[0] if table else _logits_width(graph)
    settle("vocab_size", vocab, "embedding table" if table else "logits", cfg.vocab_size)
    positions = _gathered_table(graph, ("position_ids",)) or _sliced_position_table(graph)
    settle("max_positions", positions[0] if positions else None, "position table",
           cfg.max_position_embeddings)  # fmt: skip
    kv_dtype = max((t.dtype for t in kv), key=lambda d: d.bits, default=None)
    return LlmStructure(
        model=model.source,
        kv_inputs=kv,
        kv_outputs=kv_outputs,
        dim_roles=MappingProxyType(roles),
        derived_dims=tuple(sorted(derived)),
        pinned=MappingProxyType(pinned),
        token_inputs=tokens,
        layers=figures["layers"],
        heads=figures["heads"],
        kv_heads=figures["kv_heads"],
        head_dim=figures["head_dim"],
        hidden_size=figures["hidden_size"],
        vocab_size=figures["vocab_size"],
        max_positions=figures["max_positions"],
        kv_dtype=kv_dtype,
        activation_dtype=_activation_dtype(graph, kv_dtype),
        config=config,
        sources=MappingProxyType(sources),
        notes=tuple(notes),
        cache_flags=tuple(
            name for name in graph.inputs
            if (v := graph.value(name)) is not None and v.dtype is DType.BOOL
            and (v.numel or 0) <= 1 and _CACHE_FLAG.search(name)
        ),
        encoder_positions=cfg.max_source_positions if any(t.cross for t in kv) else None,
        **_experts(cfg),
        windows=MappingProxyType(cfg.windows(figures["layers"])),
        latent=_latent(cfg, figures["heads"]),
        state_inputs=states,
    )


def _state_tensor(value: Value) -> StateTensor:
    """One layer's state [batch, ...] (cache_params.N.conv_state), or every layer's stacked
    [layers, batch, ...] (cache_params.conv_states, Mamba-2)."""
    shape = value.shape or ()
    index = re.search(r"\.(\d+)\.", value.name)
    stacked = index is None and len(shape) >= 2
    layers = (shape[0] or 1) if stacked else 1
    batch = shape[1] if stacked else (shape[0] if shape else 1)
    per = (value.nbytes or 0) // max(batch or 1, 1)
    return StateTensor(value.name, None if index is None else int(index.group(1)), layers, per)


def _latent(cfg: HfConfig, heads: int | None) -> LatentAttention | None:
    """Multi-head latent attention where the config gives all its dims."""
    dims = (cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim)
    heads = heads or cfg.num_attention_heads
    if heads is None or any(d is None for d in dims):
        return None
    rank, rope, nope, v_dim = dims
    return LatentAttention(rank, rope, nope, v_dim, heads)  # type: ignore[arg-type]


def _experts(cfg: HfConfig) -> dict[str, int]:
    """A mixture of experts' routed experts and top-k, where the config says both (E > 1)."""
    experts, k = cfg.num_experts, cfg.num_experts_per_tok
    if experts is None or k is None or experts < 2 or not 0 < k <= experts:
        return {}
    return {"experts": experts, "experts_per_token": k}


# --- KV-cache inputs --------------------------------------------------------------------------


def _kv_inputs(graph: Graph) -> list[Value]:
    return [
        v for name in graph.inputs
        if (v := graph.value(name)) is not None and v.kind is ValueKind.KV_CACHE
        and v.shape is not None
    ]


def kv_axes(value: Value, names: tuple[str | None, ...]) -> tuple[int, int | None]:
    """(batch axis, sequence axis) of a KV-cache tensor: from the declared dim names, else the
    layouts [batch, heads, seq, head_dim] and [2, batch, heads, seq, head_dim]; seq None when
    neither tells."""
    rank = len(value.shape or ())
    named = [(i, n) for i, n in enumerate(names) if n and i < rank]
    batch = next((i for i, n in named if _BATCH.search(n)), None)
    seq = next((i for i, n in named if _PAST.search(n) and i != batch), None)
    if seq is None:
        seq = next((i for i, n in named if _SEQ.search(n) and i != batch), None)
    if seq is not None:
        return (0 if batch is None else batch), seq
    layout = {4: (0, 2), 5: (1, 3)}.get(rank)
    if layout is None or batch not in (None, layout[0]):
        return (0 if batch is None else batch), None
    return layout


def _kv_tensor(value: Value, model: Model) -> KvTensor:
    shape = value.shape or ()
    batch, seq = kv_axes(value, model.input_dim_names.get(value.name, ()))
    rest = [i for i in range(len(shape)) if i not in (batch, seq)]
    per_token = None
    if seq is not None and all(shape[i] is not None for i in rest):
        per_token = math.prod(shape[i] for i in rest)  # type: ignore[misc]
    if len(rest) == 3 and shape[rest[0]] == 2:  # [2, b, h, s, d]: key and value stacked
        rest = rest[1:]
    heads = head_dim = None
    if seq is not None and len(rest) == 2:
        heads, head_dim = shape[rest[0]], shape[rest[1]]
    part = "kv"  # the last word that says key or value wins: past_key_values.0.value is a value
    for word in reversed(re.split(r"[._/:-]+", value.name.lower())):
        if word in ("key", "keys", "k"):
            part = "key"
            break
        if word in ("value", "values", "v"):
            part = "value"
            break
    number = _LAYER.search(value.name)
    return KvTensor(
        name=value.name,
        layer=int(number.group(1)) if number else None,
        part=part,
        dtype=value.dtype,
        batch_axis=batch,
        seq_axis=seq,
        elements_per_token=per_token,
        heads=heads,
        head_dim=head_dim,
        cross=bool(_CROSS.search(value.name)),
    )


def _width(have: DType | None, what_if: DType | None) -> int:
    """Bits per cached element: the graph's, or a narrower float what-if (as whatif retypes)."""
    width = have.bits if have is not None else 32
    if what_if is not None and (have is None or have.is_float) and what_if.bits < width:
        width = what_if.bits
    return width


def _bytes_per_position(tensors: list[KvTensor], dtype: DType | None) -> int | float | None:
    bits = 0
    for tensor in tensors:
        if tensor.elements_per_token is None:
            return None
        width = tensor.dtype.bits
        if dtype is not None and tensor.dtype.is_float and dtype.bits < width:
            width = dtype.bits  # as memlint.llm.whatif retypes: narrower floats only
        bits += tensor.elements_per_token * width
    if not tensors:
        return None
    return bits // 8 if bits % 8 == 0 else bits / 8


def _layers(kv: tuple[KvTensor, ...]) -> int | None:
    if not kv:
        return None
    if all(t.layer is not None for t in kv):
        return len({t.layer for t in kv})
    keys = sum(1 for t in kv if t.part == "key")
    if keys:
        return keys
    return len(kv) if all(t.part == "kv" for t in kv) else max(len(kv) // 2, 1)


# --- dim roles --------------------------------------------------------------------------------


def _roles(
    model: Model, kv: tuple[KvTensor, ...], tokens: tuple[str, ...]
) -> tuple[dict[str, DimRole], set[str], dict[DimRole, Pinned]]:
    declared = model.input_dim_names
    unnamed_labels = {b.name for b in model.dims if b.assumed}
    roles: dict[str, DimRole] = {}
    derived: set[str] = set()
    pinned: dict[DimRole, Pinned] = {}

    def claim(tensor: str, axis: int | None, role: DimRole) -> None:
        if axis is None:
            return
        names = declared.get(tensor, ())
        name = names[axis] if axis < len(names) else None
        if name is None:
            label = f"{tensor}[{axis}]"
            value = model.graph.value(tensor)
            if value is not None and value.shape and axis < len(value.shape):
                size = value.shape[axis]
                have = pinned.get(role)
                # the context is the longest self-attention cache: sliding layers keep fewer
                if size is not None and (have is None or (role is DimRole.PAST
                                                          and size > have.value)):
                    pinned[role] = Pinned(size, label, label in unnamed_labels)
        elif _SYMBOL.match(name):
            roles.setdefault(name, role)
        else:
            derived.add(name)

    for tensor in kv:
        claim(tensor.name, tensor.batch_axis, DimRole.BATCH)
        claim(tensor.name, tensor.seq_axis, DimRole.ENCODER if tensor.cross else DimRole.PAST)
    for name in ENCODER_INPUTS:
        if declared.get(name):
            claim(name, 0, DimRole.BATCH)
            claim(name, 1, DimRole.ENCODER)
    for name in tokens:
        claim(name, 0, DimRole.BATCH)
        claim(name, 1, DimRole.NEW_TOKENS)
    for name, names in declared.items():
        if "mask" in name.lower() and names and name not in ENCODER_INPUTS:
            claim(name, len(names) - 1, DimRole.TOTAL)
    for names in declared.values():
        for name in names:
            if not name:
                continue
            if not _SYMBOL.match(name):
                derived.add(name)
            elif name not in roles and _BATCH.search(name):
                roles[name] = DimRole.BATCH
    # An expression of the other names is evaluated by the frontend; its symbols need no role.
    for expression in derived:
        for symbol in dim_names_in(expression):
            roles.setdefault(symbol, DimRole.PAST if _PAST.search(symbol) else DimRole.NEW_TOKENS)
    named = set(roles.values())
    return roles, derived, {r: p for r, p in pinned.items() if r not in named}


# --- heads, tables, dtypes --------------------------------------------------------------------


@per_graph
def _query_heads(graph: Graph) -> int | None:
    """Query heads: an attention op's attribute, or axis 1 of the query in Q @ K^T."""
    for node in graph.nodes:
        attrs = _HEAD_ATTRS.get(node.qualified_op)
        if attrs and node.attributes.get(attrs[0]):
            return int(node.attributes[attrs[0]])
    for node in graph.nodes:
        if node.op_type != "MatMul" or node.domain or len(node.inputs) < 2:
            continue
        a, b = graph.value(node.inputs[0]), graph.value(node.inputs[1])
        if a is None or b is None or not (a.is_resolved and b.is_resolved):
            continue
        a_kv, b_kv = is_cache_or_copy(graph, a.name), is_cache_or_copy(graph, b.name)
        if len(a.shape) == 4 and len(b.shape) == 4 and a_kv != b_kv:
            query = b if a_kv else a
            return query.shape[1]
    return None


def _table_gathers(graph: Graph) -> Iterator[tuple[Node, Value, dict[str, Node]]]:
    """Each Gather that reads rows of a 2-D weight table (axis 0), with the table and the map
    from a tensor to its producer."""
    gathers, producers = _gathers(graph)
    for node, table in gathers:
        yield node, table, producers


@per_graph
def _gathers(graph: Graph) -> tuple[tuple[tuple[Node, Value], ...], dict[str, Node]]:
    """_table_gathers' Gathers and producer map, found once per graph (every detect of the
    same graph, with and without config, reads them)."""
    producers = structure_of(graph).producers
    found = []
    for node in graph.nodes:
        if node.op_type != "Gather" or node.domain or len(node.inputs) < 2:
            continue
        table = graph.value(node.inputs[0])
        if table is None or table.kind is not ValueKind.WEIGHT or not table.is_resolved:
            continue
        axis = node.attributes.get("axis", 0)
        if len(table.shape) == 2 and isinstance(axis, int) and axis == 0:
            found.append((node, table))
    return tuple(found), producers


def _gathered_table(graph: Graph, index_inputs: tuple[str, ...]) -> tuple[int, int] | None:
    """(rows, width) of a 2-D weight table that a Gather indexes with one of `index_inputs`
    (directly, or through views (Reshape, Unsqueeze, ...) and Casts of it)."""
    for node, table, producers in _table_gathers(graph):
        source, hops = node.inputs[1], 0
        while source not in index_inputs and source in producers and hops < 3:
            producer = producers[source]
            info = op_info_of(producer)
            if not (producer.op_type == "Cast" or info is not None and info.view):
                break
            source, hops = producer.inputs[0], hops + 1
        if source in index_inputs:
            return table.shape[0], table.shape[1]  # type: ignore[return-value]
    return None


def _sliced_position_table(graph: Graph) -> tuple[int, int] | None:
    """(rows, width) of a 2-D position table gathered by a Slice of a position-ids buffer (BERT
    exports: Gather(position_embeddings, Slice(position_ids buffer, 0, sequence_length)))."""
    for node, table, producers in _table_gathers(graph):
        index = producers.get(node.inputs[1])
        if index is None or index.op_type != "Slice" or not index.inputs:
            continue
        buffer = graph.value(index.inputs[0])
        if buffer is not None and buffer.kind is ValueKind.WEIGHT and "position" in (
            buffer.name.lower()
        ):
            return table.shape[0], table.shape[1]  # type: ignore[return-value]
    return None


def _logits_width(graph: Graph) -> int | None:
    for name in graph.outputs:
        value = graph.value(name)
        if value is not None and "logits" in name.lower() and value.shape and value.is_resolved:
            return value.shape[-1]
    return None


def _activation_dtype(graph: Graph, kv_dtype: DType | None) -> DType:
    """The dtype hidden states travel in: the first floating, non-KV graph output's."""
    for name in graph.outputs:
        value = graph.value(name)
        if value is not None and value.dtype.is_float and not is_cache_or_copy(graph, name):
            return value.dtype
    return kv_dtype or DType.FLOAT32


def describe(structure: LlmStructure) -> dict[str, Any]:
    """The structure as plain data (for the JSON report and debugging)."""
    return {
        "kv_inputs": [t.name for t in structure.kv_inputs],
        "kv_outputs": list(structure.kv_outputs),
        "dim_roles": {name: role.value for name, role in sorted(structure.dim_roles.items())},
        "layers": structure.layers,
        "heads": structure.heads,
        "kv_heads": structure.kv_heads,
        "head_dim": structure.head_dim,
        "hidden_size": structure.hidden_size,
        "vocab_size": structure.vocab_size,
        "max_positions": structure.max_positions,
        "attention": structure.attention_kind,
        "kv_dtype": structure.kv_dtype.label if structure.kv_dtype else None,
        "kv_bytes_per_token": structure.kv_bytes_per_token(),
        "sources": dict(structure.sources),
        "config": structure.config.path if structure.config else None,
        "notes": list(structure.notes),
    } | _encoder_decoder(structure)


def _encoder_decoder(structure: LlmStructure) -> dict[str, Any]:
    """The keys of an encoder-decoder's decoder (absent for a decoder-only model), and the
    branch flags of a merged decoder."""
    extra: dict[str, Any] = {}
    if structure.has_cross_attention:
        extra["cross_kv_inputs"] = [t.name for t in structure.kv_inputs if t.cross]
        extra["cross_kv_bytes_per_position"] = structure.cross_kv_bytes_per_position()
        extra["encoder_positions"] = structure.encoder_positions
    if structure.cache_flags:
        extra["cache_flags"] = list(structure.cache_flags)
    if structure.experts:
        extra["experts"] = structure.experts
        extra["experts_per_token"] = structure.experts_per_token
    if structure.windows:
        extra["sliding_windows"] = {str(layer): w for layer, w in structure.windows.items()}
    if structure.latent is not None:
        m = structure.latent
        extra["latent_attention"] = {"kv_lora_rank": m.rank, "rope_dim": m.rope,
                                     "nope_dim": m.nope, "v_head_dim": m.v_dim,
                                     "heads": m.heads}  # fmt: skip
    return extra
