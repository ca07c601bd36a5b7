"""What memlint reads from a Hugging Face config.json next to an exported model (an Optimum export
directory holds model.onnx and config.json): layers, heads, KV heads, hidden size, vocabulary and
positions, under their Hugging Face names and the common older spellings (GPT-2's n_layer,
n_head, n_embd, n_positions), also inside a multimodal model's text_config.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# config.json keys, first found wins (Hugging Face names and the common older spellings).
_CONFIG_KEYS = {
    # an encoder-decoder's decoder_* first: memlint lints its decoder (num_hidden_layers is
    # the encoder's in Whisper and BART configs)
    "num_hidden_layers": (
        "decoder_layers", "num_decoder_layers", "num_hidden_layers", "n_layer", "num_layers",
        "n_layers",
    ),
    "num_attention_heads": (
        "decoder_attention_heads", "num_attention_heads", "n_head", "num_heads", "n_heads",
    ),
    "num_key_value_heads": (
        "num_key_value_heads", "n_head_kv", "num_kv_heads", "multi_query_group_num",
    ),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
    "max_position_embeddings": (
        "max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length",
        "max_target_positions",  # Whisper's decoder
    ),
    "head_dim": ("head_dim",),
    # The encoder's fixed length where the model has one (Whisper: 1500 frames of 30 s audio).
    "max_source_positions": ("max_source_positions",),
    # A mixture of experts: routed experts per MoE layer and experts per token (top-k)
    "num_experts": ("num_local_experts", "n_routed_experts", "num_experts", "moe_num_experts"),
    "num_experts_per_tok": ("num_experts_per_tok", "moe_top_k", "num_selected_experts"),
    # Multi-head latent attention (DeepSeek-V2/V3): the compressed KV's rank, the decoupled
    # rotary dims (cached beside the latent), the per-head no-rope key and value dims
    "kv_lora_rank": ("kv_lora_rank",),
    "qk_rope_head_dim": ("qk_rope_head_dim",),
    "qk_nope_head_dim": ("qk_nope_head_dim",),
    "v_head_dim": ("v_head_dim",),
}  # fmt: skip


@dataclass(frozen=True)
class HfConfig:
    """The figures memlint reads from a Hugging Face config.json (None where absent)."""

    path: str
    model_type: str = ""
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    hidden_size: int | None = None
    vocab_size: int | None = None
    max_position_embeddings: int | None = None
    head_dim: int | None = None
    max_source_positions: int | None = None
    num_experts: int | None = None
    num_experts_per_tok: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    # Sliding-window attention: the window (positions a query sees), and which layers slide
    # (None: every layer when a window is set, as Mistral's config says it)
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None

    def windows(self, layers: int | None) -> dict[int, int]:
        """Per sliding layer (index), the window; {} for a model without one."""
        if not self.sliding_window:
            return {}
        if self.layer_types is not None:
            return {i: self.sliding_window for i, kind in enumerate(self.layer_types)
                    if kind == "sliding_attention"}  # fmt: skip
        return dict.fromkeys(range(layers or 0), self.sliding_window)


def config_file(source: str, given: str | Path | None) -> Path | None:
    """`given`, else the config.json beside the model file `source` (None when `source` is not
    a file: a torch module's name, an example)."""
    if given is not None:
        return Path(given)
    if not source or not Path(source).is_file():
        return None
    candidate = Path(source).parent / "config.json"
    return candidate if candidate.is_file() else None


def read_json_object(path: Path | None) -> dict | None:
    """A JSON file holding an object (config.json, preprocessor_config.json); None for no file.
    A file that is not a JSON object is logged and ignored (the graph's own figures still hold)."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        log.warning("%s: ignored, not a readable JSON file (%s)", path, exc)
        return None
    if not isinstance(data, dict):
        log.warning("%s: ignored, not a JSON object", path)
        return None
    return data


def read_config(path: Path | None) -> HfConfig | None:
    """The figures of a Hugging Face config.json; None for no file. A file that is not a JSON
    object is logged and ignored (the graph's own figures still hold)."""
    data = read_json_object(path)
    if data is None:
        return None
    return config_from_dict(data, str(path))


def config_from_dict(data: dict, path: str) -> HfConfig:
    """The figures of a config held in memory (a torch model's `config.to_dict()`); `path`
    names where it came from in reports."""
    text = data.get("text_config")
    scopes = [data] + ([text] if isinstance(text, dict) else [])

    def first(keys: tuple[str, ...]) -> int | None:
        for scope in scopes:
            for key in keys:
                value = scope.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
        return None

    values = {name: first(keys) for name, keys in _CONFIG_KEYS.items()}
    if values["num_key_value_heads"] is None and data.get("multi_query") is True:
        values["num_key_value_heads"] = 1  # Falcon-style multi-query attention
    window = first(("sliding_window",))
    if any(scope.get("use_sliding_window") is False for scope in scopes):
        window = None  # Qwen2: a window in the config that no layer uses
    types = next((scope.get("layer_types") for scope in scopes
                  if isinstance(scope.get("layer_types"), list)), None)  # fmt: skip
    return HfConfig(path=path, model_type=str(data.get("model_type", "")), **values,
                    sliding_window=window,
                    layer_types=None if types is None else tuple(map(str, types)))
