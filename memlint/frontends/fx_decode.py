"""The inputs of a Hugging Face model's serving step, built by memlint for a scenario.

`memlint.lint(model, decode=1023)` (or a scenario, or no example inputs at all) lints a
transformers model at a decode step after `context` cached tokens, or a prefill of `prompt`
tokens after `context` cached ones, at `batch` sequences. The cache is the model's own: a prefill
of `context` tokens is run on fake tensors (no arithmetic, no memory: shapes only), so the cache
has the classes, layer kinds (sliding window, static, hybrid) and shapes that `generate()` would
give, and its tensors are then made as zeros (or on the meta device, for a model built there).
An encoder-decoder (T5, BART, Whisper) gets its encoder's output as `encoder_outputs` at the
scenario's encoder length, and its EncoderDecoderCache holds the cross-attention K/V of that
length.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from memlint.errors import ModelLoadError, first_line
from memlint.frontends.fx_fake import fake_meta_state
from memlint.frontends.fx_moe import expected_routing


@dataclass(frozen=True)
class Step:
    """A step to build: sequences, new tokens per sequence, cached tokens, encoder length."""

    batch: int = 1
    new_tokens: int = 1
    context: int = 0
    encoder_length: int | None = None


def is_hf_generative(obj: Any) -> bool:
    """A transformers model that generates with a KV cache (memlint can build its steps)."""
    config = getattr(obj, "config", None)
    can_generate = getattr(obj, "can_generate", None)
    try:
        generates = bool(can_generate()) if callable(can_generate) else False
    except Exception:  # noqa: BLE001 - a model that cannot say is not one memlint builds for
        generates = False
    return (
        isinstance(obj, torch.nn.Module) and generates and config is not None
        and hasattr(config, "to_dict") and bool(getattr(config, "use_cache", True))
    )  # fmt: skip


def is_encoder_decoder(obj: Any) -> bool:
    """An encoder-decoder (T5, BART, Whisper): its step is the decoder's, fed the encoder's
    output."""
    return bool(getattr(getattr(obj, "config", None), "is_encoder_decoder", False))


def config_dict(obj: Any) -> dict[str, Any] | None:
    """The model's Hugging Face config as a dict (what config.json would hold), or None."""
    config = getattr(obj, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    try:
        data = config.to_dict()
    except Exception:  # noqa: BLE001 - a config that cannot be read is no config
        return None
    return data if isinstance(data, dict) else None


def step_inputs(model: torch.nn.Module, step: Step) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(args, kwargs) of `model`'s forward for `step`; ModelLoadError (one line) when the model
    cannot take them."""
    if step.batch < 1 or step.new_tokens < 1 or step.context < 0:
        raise ModelLoadError(f"cannot build a step of {step}: sizes must be positive")
    config = model.config
    meta = _on_meta(model)
    encoder_decoder = is_encoder_decoder(model)
    tokens = "decoder_input_ids" if encoder_decoder else "input_ids"
    encoder = None
    if encoder_decoder:
        encoder = (step.batch, step.encoder_length or 1, _first(config, "d_model", "hidden_size"))
    kwargs: dict[str, Any] = {tokens: _zeros((step.batch, step.new_tokens), torch.long, meta)}
    if encoder is not None:
        kwargs["encoder_outputs"] = (_zeros(encoder, _dtype(model), meta),)
    state_cache, key = _state_cache_class(model)
    if state_cache is not None:  # a state-space model: its state does not depend on the context
        device = "meta" if meta else "cpu"
        try:
            cache = state_cache(config, step.batch, dtype=_dtype(model), device=device)
            if key == "past_key_values":  # a hybrid (Jamba): its attention layers hold the context
                _fill_attention(cache, config, step, meta)
        except Exception as exc:  # noqa: BLE001 - user model code: one line
            raise ModelLoadError(
                f"{type(model).__name__}: cannot build its {state_cache.__name__} "
                f"({first_line(exc)}); pass example_inputs with the cache instead"
            ) from None
        kwargs[key] = cache
        kwargs["cache_position"] = _arange(step.context, step.new_tokens, False)
        kwargs["use_cache"] = True
        return (), kwargs
    if step.context:  # the prefill runs on fake tensors made from real (CPU) ones
        prefill: dict[str, Any] = {tokens: torch.zeros((step.batch, step.context), dtype=torch.long)}
        if encoder is not None:
            prefill["encoder_outputs"] = (torch.zeros(encoder, dtype=_dtype(model)),)
        key, cache = _fake_cache(model, {**prefill, "use_cache": True}, step.context)
        kwargs[key] = _materialise(cache, meta)
        if key == "cache_params":  # a state-space model steps from its position
            kwargs["cache_position"] = _arange(step.context, step.new_tokens, meta)
    kwargs["use_cache"] = True
    return (), kwargs


def _fake_cache(model: torch.nn.Module, kwargs: dict[str, Any], tokens: int) -> tuple[str, Any]:
    """The cache a prefill with `kwargs` leaves, computed on fake tensors, and the argument
    that takes it (past_key_values, or a state-space model's cache_params)."""
    training = model.training
    model.eval()
    try:
        with fake_meta_state(model) as mode, expected_routing(model):
            mode = mode or FakeTensorMode(allow_non_fake_inputs=True)
            with mode, torch.no_grad():
                fake = {k: _to_fake(mode, v) for k, v in kwargs.items()}
                out = model(**fake)
    except Exception as exc:  # noqa: BLE001 - user model code: one line
        raise ModelLoadError(
            f"{type(model).__name__}: cannot build its KV cache by a prefill of {tokens} tokens "
            f"({first_line(exc)}); pass example_inputs with past_key_values instead"
        ) from None
    finally:
        model.train(training)
    for key in ("past_key_values", "cache_params"):  # attention caches; a state-space model's
        cache = getattr(out, key, None)
        if cache is not None:
            return key, cache
    raise ModelLoadError(
        f"{type(model).__name__}: returned no past_key_values or cache_params with "
        "use_cache=True; pass example_inputs for the step to lint"
    )


def _to_fake(mode: FakeTensorMode, value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return mode.from_tensor(value)
    if isinstance(value, tuple):
        return tuple(_to_fake(mode, v) for v in value)
    return value


def _state_cache_class(model: torch.nn.Module) -> tuple[Any, str]:
    """A state-space model's cache class, built from the config and the batch and holding zero
    states (MambaCache, Mamba2Cache: taken as `cache_params`; a hybrid's
    HybridMambaAttentionDynamicCache: taken as `past_key_values`), and the argument that takes
    it; (None, "") for any other model."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None, ""
    module = sys.modules.get(type(model).__module__)
    if module is None:
        return None, ""
    for name, cls in vars(module).items():
        if not (name.endswith("Cache") and isinstance(cls, type)
                and cls.__module__ == module.__name__):  # fmt: skip
            continue
        init = list(inspect.signature(cls.__init__).parameters)
        if init[1:3] not in (["config", "batch_size"], ["config", "max_batch_size"]):
            continue
        if "cache_params" in parameters:
            return cls, "cache_params"
        if "past_key_values" in parameters and "Hybrid" in name:
            return cls, "past_key_values"
    return None, ""


def _fill_attention(cache: Any, config: Any, step: Step, meta: bool) -> None:
    """A hybrid cache's attention layers holding `step.context` tokens of keys and values."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    for layer in getattr(cache, "transformer_layers", ()):
        shape = (step.batch, heads, step.context, head_dim)
        cache.key_cache[layer] = _zeros(shape, cache.dtype, meta)
        cache.value_cache[layer] = _zeros(shape, cache.dtype, meta)
    if step.context:
        cache.has_previous_state = True


def _arange(start: int, count: int, meta: bool) -> torch.Tensor:
    return torch.arange(start, start + count, device="meta" if meta else "cpu")


def _materialise(cache: Any, meta: bool) -> Any:
    """The fake cache with every tensor made real (zeros) or on the meta device."""
    for attr in ("conv_states", "ssm_states"):  # a state-space model's cache
        states = getattr(cache, attr, None)
        if isinstance(states, list):
            setattr(cache, attr, [_zeros(tuple(int(d) for d in t.shape), t.dtype, meta)
                                  for t in states])  # fmt: skip
    parts = [cache]
    if hasattr(cache, "self_attention_cache"):
        parts = [cache.self_attention_cache, cache.cross_attention_cache]
    for part in parts:
        for layer in getattr(part, "layers", ()):
            for attr in ("keys", "values"):
                tensor = getattr(layer, attr, None)
                if isinstance(tensor, torch.Tensor):
                    setattr(layer, attr, _zeros(tuple(int(d) for d in tensor.shape), tensor.dtype, meta))
            if hasattr(layer, "device"):
                layer.device = torch.device("meta" if meta else "cpu")
    return cache


def _zeros(shape: tuple[int, ...], dtype: torch.dtype, meta: bool) -> torch.Tensor:
    if meta:
        return torch.empty(shape, dtype=dtype, device="meta")
    return torch.zeros(shape, dtype=dtype)


def _on_meta(model: torch.nn.Module) -> bool:
    return any(p.device.type == "meta" for p in model.parameters())


def _dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ModelLoadError(
        f"{type(config).__name__}: no {' or '.join(names)} to size the encoder's output; pass "
        "example_inputs"
    )


__all__ = ["Step", "config_dict", "is_encoder_decoder", "is_hf_generative", "step_inputs"]
