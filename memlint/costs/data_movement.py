"""Data movement: metadata-only ops, copies, gathers and slices, resampling, scatter.

Metadata only (no FLOPs, no bytes): Reshape, Squeeze, Unsqueeze, Flatten, Identity, Shape, Size,
Constant, BitCast, Optional, OptionalGetElement, OptionalHasElement, SequenceEmpty,
SequenceLength, com.microsoft ExpandDims, and Dropout, which is the identity at inference (its
optional mask output is not counted).

Counts used (FLOPs per output element unless stated; everything on the vector unit):

| FLOPs      | ops                                                                                 |
|------------|-------------------------------------------------------------------------------------|
| 0          | Transpose, Concat, Split, Expand, Tile, Pad, CenterCropPad, DepthToSpace,           |
|            | SpaceToDepth, ReverseSequence, Trilu, Compress, OneHot, NonZero, Unique, Range,     |
|            | ConstantOfShape, EyeLike, TensorScatter, Gather, GatherElements, GatherND, Slice;   |
|            | Scatter, ScatterND and ScatterElements with reduction="none"; com.microsoft Trilu,  |
|            | Unique, Pad, Range, GatherND, QLinearConcat; com.microsoft.nchwc ReorderInput,      |
|            | ReorderOutput;                                                                      |
|            | nearest-mode Resize and Upsample                                                    |
| 1          | per update element: ScatterND, ScatterElements with a reduction (add, mul, min,     |
|            | max)                                                                                |
| 1          | per INPUT element: Col2Im (each column element added into the image)                |
| 3(2^d - 1) | Resize, Upsample, mode linear over d resized axes: 2^d - 1 lerps of 3 (sub, mul,    |
|            | add)                                                                                |
| 2*4^d      | Resize, Upsample, mode cubic: 4^d taps, a multiply and an add each                  |
| 2d + above | GridSample over d spatial dims: unnormalise each coordinate (mul, add), then as     |
|            | Resize for its mode (nearest: 0); also com.microsoft GridSample                     |
| NMS        | NonMaxSuppression, worst case (every box passes the score threshold): per batch and |
|            | class sort N scores (N*ceil(log2 N) comparisons), then each of M =                  |
|            | min(max_output_boxes, N) kept boxes tests IoU against the N candidates, 13 FLOPs a  |
|            | test (4 min/max, 2 sub, 2 clamp, mul, add, sub, div, compare)                       |

Bytes: each input read once and each output written once at its dtype ("as written": Scatter and
TensorScatter read and write the whole tensor they update), except:
- A scatter the frontend marks in place (attribute memlint.in_place: a torch graph's index_copy_
  into a StaticCache, functionalized by torch.export) reads its indices and updates and writes
  the updates into the buffer, under the buffer's kind (the KV cache's new tokens).
- ConstantOfShape and EyeLike only write: their input gives a shape.
- Gather, GatherElements, GatherND and Slice read only the part of `data` they return (output
  elements at data's dtype, under data's kind, at most all of it) plus their index inputs: an
  embedding lookup of one token reads one row, not the vocabulary; a slice of a KV cache is
  counted as KV-cache bytes.
- com.microsoft GatherBlockQuantized (a gather from a block-quantized table, dequantized on the
  fly: 2 FLOPs per output element, sub zero point and mul scale) reads the rows it returns at the
  table's stored width (`bits`, 4 by default: half a byte per element) and the same share of the
  scales and zero points, plus the indices.
"""

from __future__ import annotations

import dataclasses

import math

from memlint.costs.elementwise import text_attr
from memlint.costs.model import ZERO_BYTES, ByteCounts, OpCost
from memlint.costs.registry import (
    CostContext,
    Formula,
    OpInfo,
    add_formula,
    register,
    register_metadata,
)
from memlint.ir import IN_PLACE, Value, ValueKind

MS = "com.microsoft"
NCHWC = "com.microsoft.nchwc"
IOU_TEST_FLOPS = 13

COPY = OpInfo("data movement", copy=True)  # reads and writes, no arithmetic
MOVEMENT = OpInfo("data movement")

# Metadata only. Views: output 0 is input 0's buffer (allocates nothing; Dropout is the identity
# at inference). The rest make a new, tiny tensor (a shape, a constant, an empty sequence).
register_metadata(
    "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "BitCast", "Dropout", "Optional",
    "OptionalGetElement", view=True,
)  # fmt: skip
register_metadata("ExpandDims", domain=MS, view=True)
register_metadata(
    "Shape", "Size", "Constant", "OptionalHasElement", "SequenceEmpty", "SequenceLength"
)

COPIES: dict[str, tuple[str, ...]] = {
    "": (
        "Transpose", "Concat", "Split", "Expand", "Tile", "Pad", "CenterCropPad", "DepthToSpace",
        "SpaceToDepth", "ReverseSequence", "Trilu", "Compress", "OneHot", "NonZero", "Unique",
        "Range", "TensorScatter",
    ),
    MS: ("Trilu", "Unique", "Pad", "Range", "QLinearConcat"),
    NCHWC: ("ReorderInput", "ReorderOutput"),
}  # fmt: skip


def read_portion(value: Value, numel: int) -> ByteCounts:
    """`numel` elements of `value` at its dtype, under its kind, never more than all of it."""
    nbytes = value.nbytes
    if nbytes is None:
        return ZERO_BYTES
    return ByteCounts.single(value.kind, min((numel * value.dtype.bits + 7) // 8, nbytes))


# Copies that permute the element order (strided reads): a spec may time them at a bandwidth of
# their own (transpose_bandwidth, memlint.roofline)
PERMUTES = frozenset({"Transpose", "DepthToSpace", "SpaceToDepth"})


def _copy(ctx: CostContext) -> OpCost:
    cost = ctx.cost(0, bytes_written=_cache_update(ctx), note="a copy")
    if ctx.node.op_type in PERMUTES and not ctx.node.domain:
        cost = dataclasses.replace(cost, permutes=True)
    return cost


def _cache_update(ctx: CostContext) -> ByteCounts | None:
    """A Concat of the KV cache with the new tokens into a graph output (present = Concat(past,
    new)) writes the new tokens into the cache and copies the old ones: the cache written is the
    new tokens' bytes, the copy of what was cached is activation traffic (docs/cost-model.md,
    "the KV cache is the cache"). None for every other copy (each output written by its kind)."""
    if ctx.node.op_type != "Concat" or ctx.node.outputs[0] not in ctx.graph.outputs:
        return None
    cached = sum(v.nbytes or 0 for v in ctx.inputs
                 if v is not None and v.kind is ValueKind.KV_CACHE)
    out = ctx.outputs[0]
    if not cached or out is None or out.nbytes is None:
        return None
    return ByteCounts(activations=min(cached, out.nbytes), kv_cache=max(out.nbytes - cached, 0))


def _write_only(ctx: CostContext) -> OpCost:
    return ctx.cost(0, bytes_read=ZERO_BYTES, note="writes only; the input gives a shape")


def _partial_read(ctx: CostContext) -> OpCost:
    """Reads the returned part of input 0 (data) and all of its other (index) inputs."""
    data = ctx.input(0)
    others = ByteCounts.of(ctx.input(i) for i in range(1, len(ctx.node.inputs)))
    part = read_portion(data, ctx.out_numel()) if data is not None else ZERO_BYTES
    return ctx.cost(0, bytes_read=part + others, note="reads only the part of data it returns")


for _domain, _ops in COPIES.items():
    for _op in _ops:
        add_formula(_op, Formula(_copy, COPY), domain=_domain)
for _op in ("ConstantOfShape", "EyeLike"):
    add_formula(_op, Formula(_write_only, MOVEMENT))
for _op in ("Gather", "GatherElements", "GatherND", "Slice"):
    add_formula(_op, Formula(_partial_read, COPY))
add_formula("GatherND", Formula(_partial_read, COPY), domain=MS)


@register("GatherBlockQuantized", domain=MS, info=MOVEMENT)
def _gather_block_quantized(ctx: CostContext) -> OpCost:
    data, out = ctx.input(0), ctx.out_numel()
    bits = ctx.attr("bits", 4)
    table = (data.nbytes or 0) * 8 // bits if data is not None else 0  # elements, unpacked
    share = min(out / table, 1.0) if table else 1.0
    read = ByteCounts.of([ctx.input(1)])
    for value in (data, ctx.input(2), ctx.input(3)):
        if value is not None and value.nbytes is not None:
            read += ByteCounts.single(value.kind, math.ceil(value.nbytes * share))
    return ctx.cost(2 * out, bytes_read=read, note=f"{bits}-bit table, rows dequantized")


@register("Scatter", "ScatterElements", "ScatterND", info=MOVEMENT)
def _scatter(ctx: CostContext) -> OpCost:
    reduction = text_attr(ctx, "reduction", "none")
    updates = ctx.inputs[-1] if len(ctx.inputs) > 1 else None  # (data, [indices,] updates)
    flops = 0 if reduction == "none" or updates is None else updates.numel
    if ctx.attr(IN_PLACE, 0) and updates is not None and updates.nbytes is not None:
        # the update of a buffer in place (a torch graph's index_copy_ into a StaticCache):
        # reads the indices and the updates, writes the updates into the buffer's own bytes
        data = ctx.input(0)
        kind = data.kind if data is not None else updates.kind
        return ctx.cost(
            flops, bytes_read=ByteCounts.of(ctx.inputs[1:]),
            bytes_written=ByteCounts.single(kind, updates.nbytes),
            note="in place: the updates written into the buffer",
        )  # fmt: skip
    if reduction == "none":
        return ctx.cost(0, note="a copy")
    return ctx.cost(flops, note=f"reduction={reduction}")


def interpolation_flops(mode: str, axes: int) -> int:
    """FLOPs per output element of interpolating over `axes` dims (see the module docstring)."""
    if mode in ("linear", "bilinear", "trilinear"):
        return 3 * (2**axes - 1)
    if mode in ("cubic", "bicubic"):
        return 2 * 4**axes
    return 0  # nearest


def _resize(ctx: CostContext) -> OpCost:
    mode = text_attr(ctx, "mode", "nearest")
    axes = sum(1 for i, o in zip(ctx.shape(0), ctx.out_shape()) if i != o)
    return ctx.cost(interpolation_flops(mode, axes) * ctx.out_numel(), note=f"mode={mode}")


def _grid_sample(default_mode: str) -> Formula:
    def formula(ctx: CostContext) -> OpCost:
        mode = text_attr(ctx, "mode", default_mode)
        axes = len(ctx.shape(0)) - 2
        per = 2 * axes + interpolation_flops(mode, axes)
        return ctx.cost(per * ctx.out_numel(), note=f"mode={mode}")

    return Formula(formula, MOVEMENT)


for _op in ("Resize", "Upsample"):
    add_formula(_op, Formula(_resize, MOVEMENT))
add_formula("Upsample", Formula(_resize, MOVEMENT), domain=NCHWC)
add_formula("GridSample", _grid_sample("linear"))
add_formula("GridSample", _grid_sample("bilinear"), domain=MS)


@register("Col2Im", info=MOVEMENT)
def _col2im(ctx: CostContext) -> OpCost:
    return ctx.cost(math.prod(ctx.shape(0)))


@register("NonMaxSuppression", info=MOVEMENT)
def _non_max_suppression(ctx: CostContext) -> OpCost:
    batches, classes, boxes = ctx.shape(1)  # scores: [batch, classes, boxes]
    limit = ctx.const(2)
    kept = boxes if limit is None else min(int(limit.reshape(-1)[0]), boxes)
    sort = boxes * math.ceil(math.log2(boxes)) if boxes > 1 else 0
    per_class = sort + kept * boxes * IOU_TEST_FLOPS
    return ctx.cost(batches * classes * per_class, note="worst case: every box above threshold")
