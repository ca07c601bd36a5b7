"""ML108 exceeds-device-memory: weights + KV cache + live activations overflow the device."""

from __future__ import annotations

import math
from collections.abc import Iterator

from memlint import units
from memlint.analysis.artifact import Artifact, artifact
from memlint.analysis.attention import attention_node_names
from memlint.analysis.liveness import MemoryFootprint, resident_weights
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.rulebase import Example, Option, Rule, RuleContext

MAX_DEVICES = 64  # the largest tensor-parallel group a fix proposes

_STEP = """
g (float16["batch",8,1,128] q, float16["batch",8,128,"past"] past_key,
   float16["batch",8,"past",128] past_value) => (float16["batch",8,1,128] y)
  <float16[128,128] wo> {
    s = MatMul(q, past_key)
    p = Softmax(s)
    a = MatMul(p, past_value)
    y = MatMul(a, wo)
}
"""


class ExceedsDeviceMemory(Rule):
    """Weights, KV cache and live activations together need more memory than the device has.

    ## What it does
    Adds the resident weights, the KV-cache tensors and the other tensors live at the peak of one
    run (memlint.analysis.liveness: each tensor live from its producer to its last consumer, views free)
    and flags a total above the device's memory capacity, less the `headroom` fraction kept free
    for the runtime and allocator (default 0).

    ## Why is this bad?
    The model cannot run at this batch x context on one device: the runtime fails to allocate, or
    a framework that offloads to host memory runs at PCIe instead of HBM bandwidth, tens of times
    slower. Every time prediction for this configuration is moot.

    ## How to fix
    Quantize the weights (int8 / int4 weight-only: the message says whether the total then fits),
    shard the model over N devices with tensor parallelism (N is the smallest count where
    weights/N + KV/N + activations fit), or lower batch x context (see ML104 for the largest batch).
    The tools named fit the model: onnxruntime's quantizer for an ONNX graph, torchao for a torch
    module; serving stacks (vLLM, TensorRT-LLM) and GPTQ/AWQ only for an LLM decoder.

    ## Known limits
    The liveness model is an unfused runtime without in-place buffer reuse; runtimes with memory
    planning or fused attention need less for activations, and allocator slack and workspaces
    need more (use `headroom`). Tensor parallelism is assumed to split weights and KV cache evenly
    and to replicate activations. Quantized sizes leave out scales and zero points. A capacity
    finding carries no predicted time (time_s is None).
    """

    code = "ML108"
    name = "exceeds-device-memory"
    severity = Severity.ERROR
    op_types = None
    options = {
        "headroom": Option(
            0.0, "Fraction of device memory kept free for the runtime and allocator (0.1 = 10%)."
        ),
    }
    fix = (
        "Quantize the weights, shard over several devices (tensor parallelism), or lower the "
        "batch x context."
    )
    bad = Example(_STEP, dims={"batch": 256, "past": 131072})
    good = Example(_STEP, dims={"batch": 1, "past": 4096})

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        mem = ctx.memory
        capacity = ctx.spec.memory_capacity_bytes
        headroom = ctx.options["headroom"]
        usable = capacity * (1.0 - headroom)
        total = mem.peak_total_bytes
        if total <= usable:
            return
        room = f"{units.nbytes(capacity)} of {ctx.spec.name}"
        if headroom:
            room = f"{units.nbytes(usable)} usable ({room} less {units.percent(headroom)} headroom)"
        message = (
            f"weights {units.nbytes(mem.weight_bytes)} + KV cache "
            f"{units.nbytes(mem.kv_cache_bytes)} + live activations "
            f"{units.nbytes(mem.peak_activation_bytes)} = {units.nbytes(total)} at "
            f"{mem.peak_node or 'the graph inputs'} > {room}: {units.nbytes(total - usable)} over"
        )
        if mem.unresolved_tensors:
            message += f" ({mem.unresolved_tensors} tensors of unknown size counted as 0 B)"
        devices = _devices(mem, usable)
        evidence = [
            Metric("weight_bytes", mem.weight_bytes, "B"),
            Metric("kv_cache_bytes", mem.kv_cache_bytes, "B"),
            Metric("activation_bytes", mem.peak_activation_bytes, "B"),
            Metric("total_bytes", total, "B"),
            Metric("capacity_bytes", capacity, "B"),
            Metric("usable_bytes", usable, "B"),
            Metric("overflow_bytes", total - usable, "B"),
            Metric("unresolved_tensors", mem.unresolved_tensors),
        ]
        if devices is not None:
            evidence.append(Metric("tensor_parallel_devices", devices))
        yield self.finding(
            ctx,
            message,
            nodes=[mem.peak_node] if mem.peak_node else [],
            evidence=evidence,
            fixes=[*_quantization_fixes(ctx, mem, usable),
                   _parallel_fix(ctx, mem, usable, devices)],
        )


def _devices(mem: MemoryFootprint, usable: float) -> int | None:
    """Smallest N with (weights + KV) / N + activations <= usable, up to MAX_DEVICES."""
    spare = usable - mem.peak_activation_bytes
    if spare <= 0:
        return None
    devices = max(math.ceil((mem.weight_bytes + mem.kv_cache_bytes) / spare), 1)
    return devices if devices <= MAX_DEVICES else None


def _quantization_fixes(ctx: RuleContext, mem: MemoryFootprint, usable: float) -> list[Fix]:
    fixes, made = [], artifact(ctx)
    weights = resident_weights(ctx.graph)
    for bits in (8, 4):
        quantized = sum(
            (v.nbytes or 0) * bits // v.dtype.bits
            if v.dtype.is_float and v.dtype.bits > bits and len(v.shape or ()) >= 2
            else (v.nbytes or 0)
            for v in weights
        )
        if quantized >= mem.weight_bytes:
            continue
        total = quantized + mem.kv_cache_bytes + mem.peak_activation_bytes
        verdict = "fits" if total <= usable else f"still {units.nbytes(total - usable)} over"
        fixes.append(Fix(
            f"int{bits} weight-only quantization of the matrices ({_quantizers(made)}): "
            f"weights {units.nbytes(quantized)}, total {units.nbytes(total)}: {verdict}."
        ))
    return fixes


def _quantizers(made: Artifact) -> str:
    tools = "torchao" if made.is_torch else "onnxruntime MatMulNBits"
    return tools + (", GPTQ/AWQ" if made.llm_decoder else "")


def _parallel_fix(ctx: RuleContext, mem: MemoryFootprint, usable: float,
                  devices: int | None) -> Fix:
    """Tensor parallelism; serving stacks and batch x context for an LLM decoder; fused
    attention where the graph materialises attention scores."""
    made = artifact(ctx)
    lower = "batch x context" if made.llm_decoder else "batch"
    if mem.peak_activation_bytes >= usable:
        fused = (", or use fused attention (FlashAttention) so score tensors are not materialised"
                 if attention_node_names(ctx) else "")
        return Fix(
            f"Tensor parallelism does not fit it at any N: live activations alone "
            f"({units.nbytes(mem.peak_activation_bytes)} at {mem.peak_node}) exceed "
            f"{units.nbytes(usable)}; lower the {lower}{fused}."
        )
    if devices is None:
        return Fix(
            f"Tensor parallelism does not fit it on up to {MAX_DEVICES} devices; lower the "
            f"{lower}" + (" or shrink the KV cache (see ML104)." if made.llm_decoder else ".")
        )
    per_device = (mem.weight_bytes + mem.kv_cache_bytes) / devices + mem.peak_activation_bytes
    how = (f"vLLM --tensor-parallel-size {devices}, TensorRT-LLM tp_size" if made.llm_decoder
           else "torch.distributed.tensor.parallel, DeepSpeed")
    return Fix(
        f"Shard over {devices} devices with tensor parallelism ({how}): "
        f"{units.nbytes(per_device)} per device."
    )
