"""ML105 copied-kv-cache: Concat(past, new) -> present, with hand-derived bytes and times.

Device: a100 = nvidia-a100-sxm4-80gb, 2.039e12 B/s, as replayed in a CUDA graph (memlint.api.graph_replay, --cuda-graphs: no per-kernel launch cost). Concat does no
arithmetic; it reads every input once and writes its output once.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from memlint.api import graph_replay
from memlint.api import analyse, check, load
from memlint.config import Config
from memlint.frontends.onnx import load_onnx_proto
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.rulebase import Example

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
BW = 2.039e12
ALL = Config(select=("ML105",), min_share=0.0, min_saving_s=0.0)


def _step(past: str = "past_key_values.0.key", present: str = "present.0.key",
          via: str | None = None) -> onnx.ModelProto:
    """One decoder step's key cache: [batch, 4 heads, past, 32] fp32 + one new token.
    `via` puts a metadata-only op (Identity) between the past input and the Concat."""
    f32 = TensorProto.FLOAT
    nodes = []
    source = past
    if via:
        nodes.append(helper.make_node(via, [past], ["past_view"], name="View"))
        source = "past_view"
    nodes.append(helper.make_node("Concat", [source, "k"], [present], name="Concat_3", axis=-2))
    graph = helper.make_graph(
        nodes,
        "step",
        [
            helper.make_tensor_value_info(past, f32, ["batch_size", 4, "past_sequence_length", 32]),
            helper.make_tensor_value_info("k", f32, ["batch_size", 4, 1, 32]),
        ],
        [helper.make_tensor_value_info(present, f32, ["batch_size", 4, "total", 32])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _findings(proto: onnx.ModelProto, config: Config = ALL, **dims: int):
    model = load_onnx_proto(proto, Path("step.onnx"), dims=dims)
    return check(analyse(model, graph_replay(resolve("a100"))), config).findings


def test_device_constants() -> None:
    spec = graph_replay(resolve("a100"))
    assert spec.memory_bandwidth_bytes_per_s == BW
    assert not spec.kernel_overhead_s


def test_decoder_step_concat() -> None:
    (f,) = _findings(_step(), batch_size=2, past_sequence_length=127)
    assert f.code == "ML105"
    assert f.nodes == ("Concat_3",)
    # past [2,4,127,32] fp32 = 130048 B; new [2,4,1,32] = 1024 B; present [2,4,128,32] = 131072 B.
    # Concat moves 130048 + 1024 + 131072 = 262144 B: 262144 / BW = 129 ns.
    assert f.metric("past_bytes") == 130048
    assert f.metric("new_bytes") == 1024
    assert f.metric("bytes_moved") == 262144
    assert f.metric("copy_time_s") == pytest.approx(262144 / BW)
    assert f.time_s == pytest.approx(262144 / BW)
    assert f.metric("share") == pytest.approx(1.0)  # the Concat is the whole model
    # Per token per sequence: 131072 / (2 * 128) = 512 B (4 heads x 32 x 4 B).
    assert f.metric("kv_bytes_per_token") == 512
    # In place: read the new token and write it into the cache once: 2 * 1024 B.
    assert f.metric("in_place_bytes") == 2048
    assert len(f.fixes) == 2
    assert all(fix.saving_s == pytest.approx((262144 - 2048) / BW) for fix in f.fixes)
    assert "GroupQueryAttention" in f.fixes[0].text
    assert "past_present_share_buffer" in f.fixes[0].text
    assert "StaticCache" in f.fixes[1].text
    assert "Concat copies a 130 kB KV cache to append 1.02 kB of new tokens" in f.message


def test_copy_grows_with_context() -> None:
    (short,) = _findings(_step(), batch_size=1, past_sequence_length=127)
    (long,) = _findings(_step(), batch_size=1, past_sequence_length=1023)
    # bytes moved = 512 * (past + 1 + past + 1) per sequence: 2 * 512 * 128 and 2 * 512 * 1024.
    assert short.metric("bytes_moved") == 2 * 512 * 128
    assert long.metric("bytes_moved") == 2 * 512 * 1024
    assert short.metric("kv_bytes_per_token") == long.metric("kv_bytes_per_token") == 512
    assert short.metric("in_place_bytes") == long.metric("in_place_bytes") == 2 * 512


def test_past_through_metadata_op_and_other_names() -> None:
    (f,) = _findings(_step("past_key", "present_key", via="Identity"),
                     batch_size=1, past_sequence_length=15)
    assert f.nodes == ("Concat_3",)
    assert f.metric("past_bytes") == 15 * 512


def test_prompt_step_with_empty_past_is_quiet() -> None:
    assert _findings(_step(), batch_size=1, past_sequence_length=0) == ()


def test_concat_of_activations_is_quiet() -> None:
    text = (
        "g (float[1,4,127,32] a, float[1,4,1,32] b) => (float[1,4,128,32] c) "
        "{ c = Concat <axis = 2> (a, b) }"
    )
    report = analyse(load_example(Example(text)), graph_replay(resolve("a100")))
    assert check(report, ALL).findings == ()


@pytest.mark.parametrize("past", [128, 250])
def test_gpt2_sample_groups_layers_and_key_value(past: int) -> None:
    # Default noise thresholds: the 4 copies take about 16% of this tiny model's predicted time,
    # above min_share (1%), so the group is shown although it saves well under 1 ms.
    dims = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": past}
    model = load(SAMPLES / "gpt2_decoder_step.onnx", dims=dims)
    report = check(analyse(model, graph_replay(resolve("a100"))), Config(select=("ML105",)))
    (f,) = report.findings
    assert f.count == 4  # 2 layers x key and value
    assert f.nodes == (
        "/transformer/h.0/attn/Concat_3", "/transformer/h.0/attn/Concat_4",
        "/transformer/h.1/attn/Concat_3", "/transformer/h.1/attn/Concat_4",
    )
    # Each: past [1,4,past,32] fp32 + new [1,4,1,32] -> present [1,4,past+1,32].
    assert f.metric("past_bytes") == 4 * past * 32 * 4
    assert f.metric("new_bytes") == 512
    assert f.metric("bytes_moved") == 2 * 4 * (past + 1) * 32 * 4
    assert f.metric("kv_bytes_per_token") == 512
