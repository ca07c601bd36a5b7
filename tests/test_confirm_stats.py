"""Figures --confirm derives from the measured nodes: the rank correlation (Spearman's rho with
ties, identical layers taken as one) and the cost of kernels with next to no work."""

from __future__ import annotations

import math

import pytest

from memlint.confirm import Measurement, NodeMeasurement, rank_correlation
from memlint.core.measurement import spearman


def node(name: str, op: str, predicted: float, measured: float) -> NodeMeasurement:
    return NodeMeasurement(name, op, measured, predicted, 0, 0, 0.0, predicted)


def test_spearman_orders_and_ties():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # ranks [1.5, 1.5, 3, 4] vs [1, 2, 3, 4]: deviations from 2.5 are [-1, -1, .5, 1.5] and
    # [-1.5, -.5, .5, 1.5]; sum of products 4.5, sums of squares 4.5 and 5: 4.5 / sqrt(22.5)
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))


def test_spearman_is_undefined_without_spread_or_pairs():
    assert spearman([2, 2, 2], [1, 2, 3]) is None  # one prediction for all: no ranks to compare
    assert spearman([1, 2], [1, 2]) is None  # two points always give +-1
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


# Four identical "layers" of a big matmul, three of a small one, two adds, a softmax, a reshape.
# Measured total: 12.2 + 2.1 + 0.5 + 0.05 + 0.001 = 14.851.
NODES = [
    *(node(f"l{i}/ffn", "MatMul", 4.0, t) for i, t in enumerate((3.0, 3.1, 2.9, 3.2))),
    *(node(f"l{i}/proj", "MatMul", 1.0, 0.7) for i in range(3)),
    *(node(f"l{i}/add", "Add", 0.2, 0.25) for i in range(2)),
    node("softmax", "Softmax", 0.1, 0.05),
    node("reshape", "Reshape", 0.0, 0.001),
]


def test_identical_predictions_are_one_group():
    # >= 1% (0.1485): groups MatMul 4.0 (16 vs 12.2), MatMul 1.0 (3 vs 2.1), Add (0.4 vs 0.5);
    # the softmax (0.05) and the reshape stay out. Same order on both sides: rho 1.
    rank = rank_correlation(NODES)
    assert (rank.rho, rank.groups, rank.nodes, rank.share, rank.grouped) == (
        pytest.approx(1.0), 3, 9, 0.01, True)


def test_per_node_ranks_include_the_noise_among_equal_predictions():
    # The same nine nodes one by one. Ranks of the predictions: 7.5 x4, 4 x3, 1.5 x2; of the
    # measurements: 7, 8, 6, 9, 4, 4, 4, 1.5, 1.5 (both mean 5). Products of the deviations
    # 25 + 3 + 24.5 = 52.5; squares 52.5 and 4 + 9 + 1 + 16 + 3 + 24.5 = 57.5.
    rank = rank_correlation(NODES, grouped=False)
    assert rank.groups == rank.nodes == 9
    assert rank.rho == pytest.approx(math.sqrt(52.5 / 57.5))


def test_only_equal_predictions_over_the_share_is_undefined():
    # >= 10% (1.4851): per node only the four big matmuls, all predicted 4.0: undefined (the
    # BERT-base case); grouped, two groups: too few for a correlation.
    assert rank_correlation(NODES, 0.1, grouped=False).rho is None
    assert rank_correlation(NODES, 0.1, grouped=False).groups == 4
    grouped = rank_correlation(NODES, 0.1)
    assert (grouped.rho, grouped.groups, grouped.nodes) == (None, 2, 7)


def test_a_wrong_order_shows():
    swapped = [node("a", "MatMul", 1.0, 3.0), node("b", "Add", 2.0, 2.0),
               node("c", "Mul", 3.0, 1.0)]
    assert rank_correlation(swapped).rho == pytest.approx(-1.0)


def test_different_nodes_with_one_prediction_stay_apart():
    # FFN up and down projections cost the same but are different nodes of the layer: groups
    # up (8 vs 5.9), down (8 vs 6.5), proj (2 vs 1.4), softmax (0.1 vs 0.2). Ranks of the
    # predictions 3.5, 3.5, 2, 1 and of the measurements 3, 4, 2, 1: as in the tie example
    # above, 4.5 / sqrt(22.5).
    layers = [
        *(node(f"h.{i}/up", "MatMul", 4.0, t) for i, t in enumerate((3.0, 2.9))),
        *(node(f"h.{i}/down", "MatMul", 4.0, t) for i, t in enumerate((3.3, 3.2))),
        *(node(f"h.{i}/proj", "MatMul", 1.0, 0.7) for i in range(2)),
        node("softmax", "Softmax", 0.1, 0.2),
    ]
    rank = rank_correlation(layers)
    assert (rank.groups, rank.nodes) == (4, 7)
    assert rank.rho == pytest.approx(4.5 / math.sqrt(22.5))


def _measurement(nodes: list[NodeMeasurement]) -> Measurement:
    return Measurement(
        provider="CPUExecutionProvider", device="cpu", hardware="local-cpu", runs=1, warmup=0,
        threads=0, weights="real", predicted_latency_s=1.0, unoptimised_latency_s=1.0,
        optimised_latency_s=1.0, measured_nodes_s=1.0, nodes=tuple(nodes), not_run=(),
        unmapped_s=0.0, unmapped_kernels=(), kernels=(), findings=(), kernel_overhead_s=2.6e-7,
    )


def test_small_kernels_are_the_ones_with_under_half_a_microsecond_of_work():
    # roofline work max(compute, memory): 0 (a Reshape), 0.4 us (a scalar Add) and 0.2 us count;
    # 0.5 us and 4 us do not. Measured 2, 3 and 1 us: median 2 us.
    def timed(name: str, work: float, measured: float) -> NodeMeasurement:
        return NodeMeasurement(name, "Add", measured, work, 0, 0, 0.0, work)

    nodes = [timed("reshape", 0.0, 2e-6), timed("add", 0.4e-6, 3e-6), timed("gather", 0.2e-6, 1e-6),
             timed("mul", 0.5e-6, 9e-6), timed("matmul", 4e-6, 5e-6)]
    assert _measurement(nodes).small_kernels == (3, pytest.approx(2e-6))
    assert _measurement(nodes[:2]).small_kernels == (2, pytest.approx(2.5e-6))
    assert _measurement(nodes[3:]).small_kernels == (0, None)


def test_the_fused_estimate_is_compared_with_the_optimised_run():
    from dataclasses import replace

    from memlint.core.document import measurement_dict
    from memlint.report.sections import measured_blocks

    plain = _measurement([])
    assert plain.predicted_fused_latency_s is None and plain.fused_error is None
    assert measurement_dict(plain)["fused_error"] is None
    # fused estimate 0.8 s against the optimised run's 1.0 s: (0.8 - 1.0) / 1.0 = -20%
    fused = replace(plain, predicted_fused_latency_s=0.8)
    assert fused.fused_error == pytest.approx(-0.2)
    document = measurement_dict(fused)
    assert document["predicted_fused_latency_s"] == 0.8
    assert document["fused_error"] == pytest.approx(-0.2)
    rows = dict(measured_blocks(fused)[0].rows)
    assert rows["fused estimate"] == "800 ms (against the optimised run: error -20.0%)"
    assert "fused estimate" not in dict(measured_blocks(plain)[0].rows)
    # no optimised run (torch): nothing to compare the fused estimate with
    assert replace(fused, optimised_latency_s=None).fused_error is None
