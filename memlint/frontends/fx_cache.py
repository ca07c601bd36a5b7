"""Decode steps with a KV cache: transformers' Cache objects and tuple caches as named tensors.

torch.export takes inputs that are pytrees of tensors; a transformers `Cache` (DynamicCache,
StaticCache, EncoderDecoderCache, the sliding-window and hybrid caches) is not one, and only
DynamicCache has a pytree registration in transformers (process-global, so memlint does not add
its own). Instead, while a step is captured, the module's `forward` takes the cache's tensors as
plain inputs, named as Optimum names an export's (`past_key_values.N.key` / `.value`;
`past_key_values.N.decoder.key` / `.encoder.key` for an encoder-decoder's self- and
cross-attention caches), rebuilds a cache of the same classes around them (copies of the example's
layers, so sliding windows, static lengths and offsets are kept) and calls the real forward; the
cache the step returns comes back as tensors too. Those names are what memlint's structure
analysis reads, so the LLM features (scenario, serving figures, KV rules) work on a torch decode
step as on an ONNX one.

A tuple cache (`past_key_values=((k, v), ...)`, or 4-tuples with the cross-attention K/V) is a
pytree already; it is flattened the same way so that its tensors get the same names and roles.
A state-space model's cache (transformers' MambaCache: per layer a convolution state and an SSM
state, updated in place) becomes `cache_params.N.conv_state` / `cache_params.N.ssm_state`: a
recurrent state, constant in the context (memlint.analysis.structure.StateTensor).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from memlint.frontends.onnx import KV_NAME

_KV = ("key", "value")


@dataclass(frozen=True)
class Flat:
    """A call with its caches as tensors: the tensors in order with their names, and how to
    make the call's (args, kwargs) again from tensors in that order."""

    names: tuple[str, ...]
    tensors: tuple[torch.Tensor, ...]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]

    def call(self, flat: Sequence[torch.Tensor]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        it = iter(flat)
        args = tuple(_fill(a, it) for a in self.args)
        kwargs = {k: _fill(v, it) for k, v in self.kwargs.items()}
        return args, kwargs


class _Slot:
    """Where a tensor goes back when the call is rebuilt."""

    __slots__ = ()


_SLOT = _Slot()


@dataclass(frozen=True)
class _Const:
    """A small integer tensor made again, from its values, each time the call is rebuilt."""

    values: tuple[int, ...]
    dtype: torch.dtype
    shape: tuple[int, ...]

    def make(self) -> torch.Tensor:
        return torch.tensor(self.values, dtype=self.dtype).reshape(self.shape)


def holds_cache(args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Does the call pass a transformers cache object (which torch.export cannot take), or a
    tuple cache under a cache-like name, or ask for the cache back (`use_cache=True`: a
    transformers model returns a cache object, which torch.export cannot return)?"""
    return any(_is_cache(v) or _is_state_cache(v) for v in (*args, *kwargs.values())) or any(
        _is_tuple_cache(k, v) for k, v in kwargs.items()
    ) or kwargs.get("use_cache") is True


def flatten(forward: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Flat:
    """The call `forward(*args, **kwargs)` with every tensor as a named input: cache tensors by
    their layer and role, other tensors by the argument that holds them."""
    names: list[str] = []
    tensors: list[torch.Tensor] = []
    arg_names = _positional_names(forward, len(args))
    templates_args = tuple(
        _template(name, value, names, tensors)
        for name, value in zip(arg_names, args)
    )
    templates_kwargs = {k: _template(k, v, names, tensors) for k, v in kwargs.items()}
    return Flat(tuple(names), tuple(tensors), templates_args, templates_kwargs)


def _positional_names(forward: Any, count: int) -> list[str]:
    """The names of the first `count` positional parameters of `forward` (input0, input1, ...
    past a *args or where the signature cannot be read)."""
    try:
        parameters = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    names = []
    for parameter in parameters:
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            break
        names.append(parameter.name)
    return [names[i] if i < len(names) else f"input{i}" for i in range(count)]


@contextlib.contextmanager
def flat_forward(module: torch.nn.Module, flat: Flat) -> Iterator[None]:
    """While inside, `module.forward` takes `flat.tensors` positionally and returns the tensors
    of its output (caches flattened). The module itself is captured, so parameter names and
    module paths are its own."""
    had = "forward" in module.__dict__
    real = module.forward

    def forward(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args, kwargs = flat.call(tensors)
        return tuple(_output_tensors(real(*args, **kwargs)))

    forward.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(f"t{i}", inspect.Parameter.POSITIONAL_ONLY)
         for i in range(len(flat.tensors))]
    )
    module.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        if had:
            module.forward = real  # type: ignore[method-assign]
        else:
            del module.forward


# --- templates --------------------------------------------------------------------------------


def _template(name: str, value: Any, names: list[str], tensors: list[torch.Tensor]) -> Any:
    """`value` with each tensor replaced by a slot (recorded in `names`/`tensors` in order)."""
    if _is_state_cache(value):
        made = copy.copy(value)
        for attr, role in _STATES:
            held = getattr(value, attr)
            if isinstance(held, torch.Tensor):  # stacked over layers (Mamba-2): one input
                names.append(f"{name}.{attr}")
                tensors.append(held)
                setattr(made, attr, _SLOT)
                continue
            states = []
            for index, tensor in enumerate(held):
                if tensor.numel() == 0:  # an attention layer's place in a hybrid cache
                    states.append(tensor)
                    continue
                names.append(f"{name}.{index}.{role}")
                tensors.append(tensor)
                states.append(_SLOT)
            setattr(made, attr, states)
        for attr, role in (("key_cache", "key"), ("value_cache", "value")):  # hybrid (Jamba)
            held = getattr(value, attr, None)
            if isinstance(held, list):
                made_list = []
                for index, tensor in enumerate(held):
                    if isinstance(tensor, torch.Tensor) and tensor.numel() > 0:
                        names.append(f"{name}.{index}.{role}")
                        tensors.append(tensor)
                        made_list.append(_SLOT)
                    else:
                        made_list.append(tensor)
                setattr(made, attr, made_list)
        return made
    if _is_cache(value):
        return _cache_template(name, value, names, tensors)
    if _is_tuple_cache(name, value):
        return _tuple_template(name, value, names, tensors)
    return _generic(name, value, names, tensors)


def _generic(name: str, value: Any, names: list[str], tensors: list[torch.Tensor]) -> Any:
    if name == "cache_position" and isinstance(value, torch.Tensor) and not value.is_floating_point():
        # the step's position, a constant of the step: models branch on its value
        # (`cache_position[0] > 0` in Mamba-2), which an input's value could not answer; made
        # in forward from Python ints, so that export knows the values
        return _Const(tuple(int(v) for v in value.reshape(-1).tolist()), value.dtype,
                      tuple(value.shape))  # fmt: skip
    if isinstance(value, torch.Tensor):
        names.append(name)
        tensors.append(value)
        return _SLOT
    if isinstance(value, (tuple, list)):
        made = [_generic(f"{name}.{i}", v, names, tensors) for i, v in enumerate(value)]
        return type(value)(made) if isinstance(value, list) else tuple(made)
    if isinstance(value, dict):
        return {k: _generic(f"{name}.{k}", v, names, tensors) for k, v in value.items()}
    return value


def _cache_template(name: str, cache: Any, names: list[str], tensors: list[torch.Tensor]) -> Any:
    """A shallow copy of the cache whose layers' key/value tensors are slots."""
    made = copy.copy(cache)
    if hasattr(cache, "self_attention_cache"):  # EncoderDecoderCache
        made.self_attention_cache = _layers(
            name, "decoder.", cache.self_attention_cache, names, tensors
        )
        made.cross_attention_cache = _layers(
            name, "encoder.", cache.cross_attention_cache, names, tensors
        )
        made.is_updated = dict(getattr(cache, "is_updated", {}))
        return made
    return _layers(name, "", cache, names, tensors)


def _layers(name: str, role: str, cache: Any, names: list[str], tensors: list[torch.Tensor]) -> Any:
    made = copy.copy(cache)
    made.layers = []
    for index, layer in enumerate(cache.layers):
        layer = copy.copy(layer)
        for kv in _KV:
            attr = kv + "s"  # layer.keys, layer.values
            tensor = getattr(layer, attr, None)
            if isinstance(tensor, torch.Tensor) and tensor.numel() > 0:
                names.append(f"{name}.{index}.{role}{kv}")
                tensors.append(tensor)
                setattr(layer, attr, _SLOT)
        made.layers.append(layer)
    return made


def _tuple_template(name: str, value: Any, names: list[str], tensors: list[torch.Tensor]) -> Any:
    """((k, v), ...) per layer; a 4-tuple layer holds the cross-attention K/V after its own."""
    layers = []
    for index, layer in enumerate(value):
        roles = ("key", "value") if len(layer) == 2 else (
            "decoder.key", "decoder.value", "encoder.key", "encoder.value")
        made = []
        for role, tensor in zip(roles, layer):
            names.append(f"{name}.{index}.{role}")
            tensors.append(tensor)
            made.append(_SLOT)
        layers.append(type(layer)(made) if isinstance(layer, list) else tuple(made))
    return type(value)(layers) if isinstance(value, list) else tuple(layers)


def _fill(template: Any, it: Iterator[torch.Tensor]) -> Any:
    """The template with its slots filled from `it`, in the order they were made."""
    if template is _SLOT:
        return next(it)
    if isinstance(template, _Const):
        return template.make()
    if _is_state_cache(template):
        made = copy.copy(template)
        for attr, _ in _STATES:
            held = getattr(template, attr)
            setattr(made, attr, next(it) if held is _SLOT else [
                next(it) if t is _SLOT else t for t in held])
        for attr in ("key_cache", "value_cache"):
            held = getattr(template, attr, None)
            if isinstance(held, list):
                setattr(made, attr, [next(it) if t is _SLOT else t for t in held])
        return made
    if isinstance(template, (tuple, list)):
        made = [_fill(v, it) for v in template]
        return type(template)(made) if isinstance(template, list) else tuple(made)
    if isinstance(template, dict):
        return {k: _fill(v, it) for k, v in template.items()}
    if _is_cache(template):
        made = copy.copy(template)
        if hasattr(template, "self_attention_cache"):
            made.self_attention_cache = _fill_layers(template.self_attention_cache, it)
            made.cross_attention_cache = _fill_layers(template.cross_attention_cache, it)
            made.is_updated = dict(template.is_updated)
            return made
        return _fill_layers(template, it)
    return template


def _fill_layers(cache: Any, it: Iterator[torch.Tensor]) -> Any:
    made = copy.copy(cache)
    made.layers = []
    for layer in cache.layers:
        layer = copy.copy(layer)
        for kv in _KV:
            if getattr(layer, kv + "s", None) is _SLOT:
                setattr(layer, kv + "s", next(it))
        made.layers.append(layer)
    return made


# --- outputs ----------------------------------------------------------------------------------


def _output_tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif _is_state_cache(value):
        for attr, _ in _STATES:
            held = getattr(value, attr)
            if isinstance(held, torch.Tensor):
                yield held
            else:
                yield from (t for t in held if isinstance(t, torch.Tensor) and t.numel())
        for attr in ("key_cache", "value_cache"):
            held = getattr(value, attr, None)
            if isinstance(held, list):
                yield from (t for t in held if isinstance(t, torch.Tensor) and t.numel())
    elif _is_cache(value):
        parts = (value.self_attention_cache, value.cross_attention_cache) if hasattr(
            value, "self_attention_cache") else (value,)
        for part in parts:
            for layer in part.layers:
                for kv in _KV:
                    tensor = getattr(layer, kv + "s", None)
                    if isinstance(tensor, torch.Tensor):
                        yield tensor
    elif isinstance(value, Mapping):  # dicts and transformers' ModelOutput
        for item in value.values():
            yield from _output_tensors(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _output_tensors(item)


# --- recognising caches -----------------------------------------------------------------------


_STATES = (("conv_states", "conv_state"), ("ssm_states", "ssm_state"))


def _is_state_cache(value: Any) -> bool:
    """A state-space model's cache (transformers' MambaCache, Mamba2Cache), duck-typed: per-layer
    lists of convolution and SSM states, or one tensor each stacked over the layers."""

    def held(attr: str) -> bool:
        states = getattr(value, attr, None)
        if states is _SLOT or isinstance(states, torch.Tensor):
            return True
        return isinstance(states, list) and all(
            isinstance(t, torch.Tensor) or t is _SLOT for t in states)

    return not isinstance(value, torch.Tensor) and all(held(attr) for attr, _ in _STATES)


def _is_cache(value: Any) -> bool:
    """A transformers Cache (duck-typed: transformers is not imported for this)."""
    if hasattr(value, "self_attention_cache") and hasattr(value, "cross_attention_cache"):
        return True
    layers = getattr(value, "layers", None)
    return (
        isinstance(layers, list) and bool(layers)
        and all(hasattr(layer, "keys") and hasattr(layer, "values")
                and not isinstance(layer, Mapping) for layer in layers)
        and not isinstance(value, torch.nn.Module)
    )  # fmt: skip


def _is_tuple_cache(name: str, value: Any) -> bool:
    return (
        bool(KV_NAME.search(name)) and isinstance(value, (tuple, list)) and bool(value)
        and all(
            isinstance(layer, (tuple, list)) and len(layer) in (2, 4)
            and all(isinstance(t, torch.Tensor) for t in layer)
            for layer in value
        )
    )  # fmt: skip


__all__ = ["Flat", "flat_forward", "flatten", "holds_cache"]
