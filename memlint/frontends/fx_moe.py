"""Mixture-of-experts blocks captured at their expected routing.

A served MoE block (Hugging Face Mixtral, Qwen2-MoE, OLMoE, DeepSeek-V2/V3, gpt-oss; the three
kinds are in `moe_blocks`) picks its experts from the data: `nonzero` over the routing mask, then
a Python loop over the experts hit. torch.export cannot trace that (the number of experts hit
and the tokens each gets are data-dependent), and fake tensors have no data to route.

While memlint captures a model, such a block's routed part is replaced by one with the same
operators (router, softmax, top-k, renormalisation, per-expert gather of its tokens, expert MLP,
weighting, index_add back) whose routing is static and equals the expectation under uniform
routing: a step of T tokens sends T*k token-slots to the experts; it touches
    n = min(E, ceil(E * (1 - (1 - k/E) ** T)))
distinct experts on average, and each of those gets an even share of the T*k slots. So the
step's FLOPs are exactly those of any routing (every token runs k experts) and its expert
weight bytes are those of the n experts an average step reads. The chosen n is recorded in
the model's metadata ("moe"). Why not the alternatives: torch.export with hints still has to
guard on the loop's length; running every expert on every token costs E/k times the FLOPs and
all expert weights at batch 1, the opposite of what a decode step does.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class Routing:
    """What the captured MoE blocks ran: per block, (tokens, experts E, top-k, experts run)."""

    blocks: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    mode: str = "expected"

    def run(self, experts: int, top_k: int, tokens: int) -> int:
        return experts_run(experts, top_k, tokens, self.mode)

    def describe(self) -> str:
        if not self.blocks:
            return ""
        _, tokens, experts, k, run = self.blocks[0]
        why = {
            "expected": "the expected number under uniform routing (E(1-(1-k/E)^T) rounded up)",
            "all": "every expert (--moe-routing all: each given at least one token-slot)",
            "top-k": "only k (--moe-routing top-k: every token routed to the same experts)",
        }[self.mode]
        return (
            f"{len(self.blocks)} MoE blocks of {experts} experts, top-{k}: a step of {tokens} "
            f"token(s) runs {run} experts per block, {why}, each on an even share of the "
            f"{tokens * k} token-slots"
        )


ROUTINGS = ("expected", "all", "top-k")


def experts_run(experts: int, top_k: int, tokens: int, routing: str = "expected") -> int:
    """Experts a captured step runs per block: the expectation (below), every expert ("all":
    the worst case, each expert given at least one token-slot), or k ("top-k": the best case,
    every token routed to the same k experts)."""
    if routing == "all":
        return experts
    if routing == "top-k":
        return min(top_k, experts)
    return expected_experts(experts, top_k, tokens)


def expected_experts(experts: int, top_k: int, tokens: int) -> int:
    """Distinct experts a step of `tokens` tokens touches on average under uniform top-k
    routing, rounded up: E(1 - (1 - k/E)^T)."""
    if tokens <= 0:
        return 0
    expected = experts * (1.0 - (1.0 - top_k / experts) ** tokens)
    return max(min(experts, math.ceil(expected - 1e-9)), min(top_k, experts))


def moe_blocks(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module, str, int]]:
    """The MoE blocks of `module` memlint re-routes: (qualified name, block, the method
    replaced, k). Three kinds, as transformers writes them:
    - "forward" of a block with a `gate` (or `router`) Linear over its `experts` list and
      `top_k` (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, Jamba);
    - "moe" of a block whose own router gives (indices, weights) to a `moe(hidden, indices,
      weights)` method over its `experts` list (DeepSeek-V2/V3; the router and the shared
      experts run as written);
    - "forward" of a batched experts module, its weights stacked per expert (`gate_up_proj`
      [E, hidden, 2 x inner], `down_proj` [E, inner, hidden]) and called with the router's
      indices and weights (gpt-oss); k is the indices' width."""
    found = []
    for name, sub in module.named_modules():
        gate, experts = _gate(sub), getattr(sub, "experts", None)
        k = getattr(sub, "top_k", None) or getattr(sub, "num_experts_per_tok", None)
        k = k or getattr(gate, "top_k", None)
        listed = isinstance(experts, torch.nn.ModuleList) and isinstance(k, int)
        if listed and isinstance(gate, torch.nn.Linear) and 0 < k <= len(experts) == (
            gate.out_features
        ):
            found.append((name, sub, "forward", k))
        elif listed and callable(getattr(sub, "moe", None)) and 0 < k <= len(experts):
            found.append((name, sub, "moe", k))
        elif _stacked(sub):
            found.append((name, sub, "forward", 0))
    return found


@contextlib.contextmanager
def expected_routing(module: torch.nn.Module, mode: str = "expected") -> Iterator[Routing]:
    """While inside, every MoE block of `module` runs its expected routing (above), or the
    routing `mode` names (ROUTINGS: experts_run)."""
    if mode not in ROUTINGS:
        raise ValueError(f"MoE routing {mode!r}: one of {', '.join(ROUTINGS)}")
    routing = Routing(mode=mode)
    blocks = moe_blocks(module)
    had = [(block, method, method in block.__dict__, getattr(block, method))
           for _, block, method, _ in blocks]  # fmt: skip
    for name, block, method, k in blocks:
        if method == "moe":
            replacement = _static_moe(name, block, k, routing)
        elif _stacked(block):
            replacement = _static_stacked(name, block, routing)
        else:
            replacement = _static_forward(name, block, k, routing)
        setattr(block, method, replacement)
    try:
        yield routing
    finally:
        for block, method, own, real in had:
            if own:
                setattr(block, method, real)
            else:
                delattr(block, method)


def _gate(block: torch.nn.Module) -> Any:
    """The block's router: `gate` (Mixtral, Qwen, OLMoE, DeepSeek), or a `router` Linear
    (Jamba)."""
    gate = getattr(block, "gate", None)
    router = getattr(block, "router", None)
    return gate if gate is not None or not isinstance(router, torch.nn.Linear) else router


def _stacked(block: torch.nn.Module) -> bool:
    up, down = getattr(block, "gate_up_proj", None), getattr(block, "down_proj", None)
    return (
        isinstance(up, torch.Tensor) and isinstance(down, torch.Tensor)
        and up.dim() == 3 and down.dim() == 3 and up.shape[0] == down.shape[0]
    )  # fmt: skip


def _slots(tokens: int, k: int, run: int, device: torch.device) -> Iterator[tuple[int, Any, Any]]:
    """(expert, token index, choice index) of each of the `run` experts a step of `tokens`
    tokens runs: an even share of the tokens x k slots each (static, so export can trace it);
    when there are fewer slots than experts, each expert still gets one (wrapping round)."""
    slots, start = tokens * k, 0
    for index in range(run):
        share = max(slots // run + (index < slots % run), 1)
        slot = torch.arange(start, start + share, device=device) % slots
        start += share
        yield index, slot // k, slot % k


def _static_moe(name: str, block: torch.nn.Module, k: int, routing: Routing) -> Any:
    experts = block.experts

    def moe(hidden_states: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> Any:
        tokens = int(hidden_states.shape[0])
        run = routing.run(len(experts), k, tokens)
        routing.blocks.append((name, tokens, len(experts), k, run))
        out = torch.zeros_like(hidden_states, dtype=weights.dtype)
        for index, token, choice in _slots(tokens, k, run, hidden_states.device):
            state = experts[index](hidden_states[token])
            out.index_add_(0, token, state * weights[token, choice, None])
        return out.type(hidden_states.dtype)

    return moe


def _static_stacked(name: str, block: torch.nn.Module, routing: Routing) -> Any:
    """gpt-oss's batched experts at the expected routing: its per-token path (a gathered
    expert's weights, the clamped GLU, the down projection, the router's weight, index_add)."""
    count = int(block.gate_up_proj.shape[0])
    alpha, limit = getattr(block, "alpha", 1.702), getattr(block, "limit", 7.0)

    def forward(hidden_states: torch.Tensor, router_indices: Any = None,
                routing_weights: Any = None) -> torch.Tensor:  # fmt: skip
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, int(block.gate_up_proj.shape[1]))
        tokens = int(x.shape[0])
        k = int(router_indices.shape[-1]) if router_indices is not None else 1
        run = routing.run(count, k, tokens)
        routing.blocks.append((name, tokens, count, k, run))
        out = torch.zeros_like(x)
        up_bias = getattr(block, "gate_up_proj_bias", None)
        down_bias = getattr(block, "down_proj_bias", None)
        for index, token, _ in _slots(tokens, k, run, x.device):
            gate_up = x[token] @ block.gate_up_proj[index]
            if up_bias is not None:
                gate_up = gate_up + up_bias[index]
            gate, up = gate_up[..., ::2], gate_up[..., 1::2]
            gate, up = gate.clamp(max=limit), up.clamp(min=-limit, max=limit)
            state = ((up + 1) * (gate * torch.sigmoid(gate * alpha))) @ block.down_proj[index]
            if down_bias is not None:
                state = state + down_bias[index]
            weight = routing_weights[token, index, None] if routing_weights is not None else 1.0
            out.index_add_(0, token, (state * weight).to(x.dtype))
        return out.view(shape)

    return forward


def _static_forward(name: str, block: torch.nn.Module, k: int, routing: Routing) -> Any:
    experts = block.experts
    count = len(experts)

    def forward(hidden_states: torch.Tensor) -> Any:
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, shape[-1])
        tokens = int(x.shape[0])
        logits = _gate(block)(x)
        weights = F.softmax(logits, dim=1, dtype=torch.float)
        weights, _ = torch.topk(weights, k, dim=-1)
        if getattr(block, "norm_topk_prob", True):
            weights = weights / weights.sum(dim=-1, keepdim=True)
        weights = weights.to(x.dtype)
        out = torch.zeros_like(x)
        run = routing.run(count, k, tokens)
        routing.blocks.append((name, tokens, count, k, run))
        for index, token, choice in _slots(tokens, k, run, x.device):  # experts 0..run-1
            state = experts[index](x[token])  # stand for the ones a step hits
            out.index_add_(0, token, state * weights[token, choice, None])
        shared = getattr(block, "shared_expert", None)
        if shared is not None:  # Qwen2-MoE: an expert every token runs, gated
            extra = shared(x)
            gate = getattr(block, "shared_expert_gate", None)
            if gate is not None:
                extra = torch.sigmoid(gate(x)) * extra
            out = out + extra
        out = out.reshape(shape)
        return (out, logits) if _returns_logits(block) else out

    return forward


def _returns_logits(block: torch.nn.Module) -> bool:
    """Does the block's own forward return (hidden, router_logits), as Mixtral's, Qwen2-MoE's
    and OLMoE's do, rather than the hidden states alone? Read from its source."""
    try:
        source = inspect.getsource(type(block).forward)
    except (OSError, TypeError):
        return False
    return re.search(r"return\s+\w+\s*,\s*\w*logits", source) is not None


__all__ = ["Routing", "expected_experts", "expected_routing", "moe_blocks"]
