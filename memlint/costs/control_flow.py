"""Control flow: If, Loop and Scan are costed through the nodes of their subgraphs.

- If: an If whose condition is known before run time never gets here: the ONNX frontend
  inlines the branch it takes (memlint.frontends.onnx_control). One decided at run time is
  costed through both branches, the note gives each, and the more expensive (by bytes moved,
  then FLOPs) is counted: a worst case.
- Loop: the body times the trip count when the trip count `M` is known before run time;
  otherwise one iteration, said in the note (bind the dims the trip count depends on).
- Scan: the body times the length of the first scan input along its scan axis.

The node's own cost is the sum of its parts; `OpCost.parts` keeps each body node's cost
(multiplied by the trip count) so the roofline times them one by one.
"""

from __future__ import annotations

from memlint.costs.model import ZERO_BYTES, CostStatus, OpCost
from memlint.costs.registry import CostContext, OpInfo, cost_of, register
from memlint.ir import Graph

CONTROL_FLOW = OpInfo("control flow")


def _body_costs(body: Graph, trips: int) -> tuple[OpCost, ...]:
    return tuple(cost_of(node, body).scaled(trips) for node in body.nodes)


def _combine(parts: tuple[OpCost, ...], note: str) -> OpCost:
    flops = sum(p.flops for p in parts)
    bytes_read = sum((p.bytes_read for p in parts), ZERO_BYTES)
    bytes_written = sum((p.bytes_written for p in parts), ZERO_BYTES)
    gaps = [p for p in parts if not p.is_modelled]
    status = CostStatus.MODELLED
    if gaps:
        status = gaps[0].status
        note = f"{note}; {len(gaps)} subgraph node(s) not modelled ({gaps[0].note})"
    return OpCost(flops, bytes_read, bytes_written, status, note=note, parts=parts)


def _moved(cost: OpCost) -> tuple[int, int]:
    return (cost.bytes_moved, cost.flops)


@register("If", info=CONTROL_FLOW)
def if_cost(ctx: CostContext) -> OpCost:
    branches = {name: _combine(_body_costs(g, 1), "") for name, g in ctx.node.subgraphs.items()}
    if not branches:
        return _combine((), "If without branches")
    name, chosen = max(branches.items(), key=lambda item: _moved(item[1]))
    both = ", ".join(
        f"{n} {c.flops:,} FLOPs, {c.bytes_moved:,} B" for n, c in sorted(branches.items())
    )
    return _combine(
        chosen.parts,
        f"If decided at run time: both branches costed ({both}); counted as the more "
        f"expensive ({name})",
    )


@register("Loop", info=CONTROL_FLOW)
def loop_cost(ctx: CostContext) -> OpCost:
    body = ctx.node.subgraphs.get("body")
    trip = ctx.const(0)
    if trip is not None and trip.size == 1 and 0 <= int(trip.reshape(-1)[0]) < 2**31:
        trips, note = int(trip.reshape(-1)[0]), f"Loop: body x {int(trip.reshape(-1)[0])} iterations"
    else:
        trips, note = 1, "Loop: trip count unknown before run time, one iteration counted"
    return _combine(_body_costs(body, trips) if body else (), note)


@register("Scan", info=CONTROL_FLOW)
def scan_cost(ctx: CostContext) -> OpCost:
    body = ctx.node.subgraphs.get("body")
    n_state = len(ctx.node.inputs) - int(ctx.attr("num_scan_inputs", 0))
    axes = ctx.attr("scan_input_axes") or (0,)
    first_scan = ctx.input(n_state)
    trips = 1
    if first_scan is not None and first_scan.is_resolved and first_scan.shape:
        trips = first_scan.shape[axes[0] % len(first_scan.shape)]  # type: ignore[assignment]
    return _combine(_body_costs(body, trips) if body else (), f"Scan: body x {trips} iterations")
