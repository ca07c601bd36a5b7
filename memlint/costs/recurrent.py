"""Recurrent layers: LSTM, GRU and RNN.

Counts used, per time step and per direction, with B the batch, I the input size, H the hidden
size and G the gates (LSTM 4, GRU 3, RNN 1); a multiply-accumulate is 2 FLOPs:

- Gate matmuls: `2 * B * (I + H) * G * H` (x @ W^T and h @ R^T as one product over [x, h]).
- Biases, when B is given: 2 per gate element (the input and the recurrent bias), `2 * B * G * H`.
- Gate activations and state updates, per hidden unit, counting a sigmoid or tanh as
  `ACTIVATION_FLOPS` = 4 (negate, exp, add, divide) whatever activations the node names:
  LSTM 24 (3 sigmoids + 2 tanh, c = f*c + i*g: 3, h = o*tanh(c): 1), plus 6 with peepholes P;
  GRU 17 (2 sigmoids + 1 tanh, r gating: 1, h = (1-z)*h~ + z*h: 4); RNN 4 (one tanh).

The time steps come from X's shape and the `layout` attribute (0: (T, B, I), 1: (B, T, I));
sequence_lens is not read, so shorter sequences make the count an upper bound. A bidirectional
node counts both directions. Bytes: each input read once (weights once per node, not per step) and
each output written once. Unit: tensor.
"""

from __future__ import annotations

from memlint.costs.model import OpCost
from memlint.costs.registry import CostContext, Formula, OpInfo, add_formula
from memlint.ir import ComputeUnit

ACTIVATION_FLOPS = 4
LSTM_UNIT_FLOPS = 5 * ACTIVATION_FLOPS + 4  # 3 sigmoid, 2 tanh; f*c + i*g: 3; o*tanh(c): 1
GRU_UNIT_FLOPS = 3 * ACTIVATION_FLOPS + 5  # 2 sigmoid, 1 tanh; r gating: 1; (1-z)*h~ + z*h: 4
RNN_UNIT_FLOPS = ACTIVATION_FLOPS
PEEPHOLE_FLOPS = 6  # i, f and o each add p * c: a multiply and an add
RECURRENT = OpInfo("matmul")  # the cells are gate matmuls


def _recurrent(gates: int, per_unit: int, peephole: int | None = None) -> Formula:
    """A formula for a recurrent op with `gates` gates and `per_unit` element-wise FLOPs per unit;
    `peephole` is the index of the peephole input, if the op has one."""

    def formula(ctx: CostContext) -> OpCost:
        x = ctx.shape(0)
        steps, batch = (x[1], x[0]) if ctx.attr("layout", 0) else (x[0], x[1])
        hidden = ctx.attr("hidden_size") or ctx.shape(2)[-1]
        directions = 2 if ctx.attr("direction", "forward") == "bidirectional" else 1
        gate_elems = batch * gates * hidden
        step = 2 * (x[2] + hidden) * gate_elems + per_unit * batch * hidden
        if ctx.input(3) is not None:
            step += 2 * gate_elems
        if peephole is not None and ctx.input(peephole) is not None:
            step += PEEPHOLE_FLOPS * batch * hidden
        return ctx.cost(directions * steps * step, unit=ComputeUnit.TENSOR)

    return Formula(formula, RECURRENT)


add_formula("LSTM", _recurrent(4, LSTM_UNIT_FLOPS, peephole=7))
add_formula("GRU", _recurrent(3, GRU_UNIT_FLOPS))
add_formula("RNN", _recurrent(1, RNN_UNIT_FLOPS))
