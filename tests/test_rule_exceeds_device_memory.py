"""ML108 exceeds-device-memory on tiny graphs, with hand-computed bytes (a100: 80e9 B)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memlint.api import analyse, check, lint
from memlint.config import Config
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.rulebase import Example
from memlint.rules.exceeds_device_memory import ExceedsDeviceMemory

CODE = "ML108"
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
CAPACITY = 80e9

# The rule's example: an attention step plus a 128x128 fp16 weight (32768 B).
STEP = ExceedsDeviceMemory.bad.onnx_text

WIDE = """
g (float16[1,65536] x) => (float16[1,655360] y) <float16[65536,655360] w> {
    y = MatMul(x, w)
}
"""

KV_ONLY = """
g (float16["batch",8,"past",128] past_key) => (float16["batch",8,1,128] m) {
    axes = Constant<value = int64[1] {2}>()
    m = ReduceMax(past_key, axes)
}
"""


def _findings(text: str, dims: dict | None = None, **options):
    report = analyse(load_example(Example(text, dims=dims or {})), resolve("a100"))
    config = Config(select=(CODE,), min_share=0.0, min_saving_s=0.0,
                    rule_options={CODE: options} if options else {})
    return check(report, config).findings


def test_bad_example_numbers():
    (finding,) = _findings(STEP, {"batch": 256, "past": 131072})
    # KV inputs: 2 * 256*8*131072*128*2 = 137438953472 B, resident for the whole step (the
    # cache). Activations peak at the Softmax: scores s and probabilities p, each
    # 256*8*131072*2 = 536870912 (1073741824). Weights: wo 128*128*2 = 32768.
    # Total 138512728064 B; overflow 58512728064 B.
    weights, kv, act = 32_768, 137_438_953_472, 1_073_741_824
    total = weights + kv + act
    assert finding.metric("weight_bytes") == weights
    assert finding.metric("kv_cache_bytes") == kv
    assert finding.metric("activation_bytes") == act
    assert finding.metric("total_bytes") == total == 138_512_728_064
    assert finding.metric("capacity_bytes") == CAPACITY
    assert finding.metric("overflow_bytes") == total - CAPACITY
    # Tensor parallel: (weights + kv) / N + act <= 80e9 -> N >= 137438986240 / 78926258176
    # = 1.74 -> 2 devices.
    assert finding.metric("tensor_parallel_devices") == 2
    assert finding.nodes == ("Softmax_1",)
    assert finding.time_s is None
    assert finding.message == (
        "weights 32.8 kB + KV cache 137 GB + live activations 1.07 GB = 139 GB at Softmax_1 > "
        "80 GB of nvidia-a100-sxm4-80gb: 58.5 GB over"
    )
    texts = [f.text for f in finding.fixes]
    assert "int8" in texts[0] and "weights 16.4 kB" in texts[0] and "still 58.5 GB over" in texts[0]
    assert "int4" in texts[1] and "weights 8.19 kB" in texts[1]
    # Per device: 137438986240 / 2 + 1073741824 = 69793234944 B.
    assert "Shard over 2 devices" in texts[2] and "69.8 GB per device" in texts[2]


def test_quantized_weights_fit():
    (finding,) = _findings(WIDE)
    # w: 65536*655360*2 = 85899345920 B; x 131072 + y 1310720 = 1441792 B live at the MatMul.
    # int8: 42949672960 + 1441792 = 42951114752 <= 80e9 (fits); int4: 21474836480 + 1441792.
    assert finding.metric("weight_bytes") == 85_899_345_920
    assert finding.metric("activation_bytes") == 1_441_792
    texts = [f.text for f in finding.fixes]
    assert "weights 42.9 GB, total 43 GB: fits" in texts[0]
    assert "weights 21.5 GB, total 21.5 GB: fits" in texts[1]
    # TP: 85899345920 / (80e9 - 1441792) = 1.07 -> 2 devices.
    assert finding.metric("tensor_parallel_devices") == 2


def test_headroom_option():
    # Batch 128: 68719476736 + 32768 + 536870912 = 69256380416 B fits 80 GB, not 80% of it.
    assert _findings(STEP, {"batch": 128, "past": 131072}) == ()
    (finding,) = _findings(STEP, {"batch": 128, "past": 131072}, headroom=0.2)
    assert finding.metric("usable_bytes") == pytest.approx(64e9)
    assert finding.metric("overflow_bytes") == pytest.approx(69_256_380_416 - 64e9)
    assert "64 GB usable (80 GB of nvidia-a100-sxm4-80gb less 20.0% headroom)" in finding.message


def test_activations_alone_do_not_fit_at_any_device_count():
    # Prefill-style scores: q [1,8,s,128] @ k^T [1,8,128,s] with s = 65536: the scores tensor is
    # 8 * 65536^2 * 2 = 68719476736 B and Softmax writes another: 137 GB of activations.
    text = """
    g (float16[1,8,"seq",128] q, float16[1,8,128,"seq"] kt) => (float16[1,8,"seq","seq"] p) {
        s = MatMul(q, kt)
        p = Softmax(s)
    }
    """
    (finding,) = _findings(text, {"seq": 65536})
    assert finding.metric("activation_bytes") == 2 * 68_719_476_736
    assert finding.metric("tensor_parallel_devices") is None
    assert "does not fit it at any N" in finding.fixes[-1].text


def test_more_than_64_devices():
    # KV 32768*8*131072*128*2 = 8796093022208 B: over 64 devices still 137 GB each.
    (finding,) = _findings(KV_ONLY, {"batch": 32768, "past": 131072})
    assert finding.metric("kv_cache_bytes") == 8_796_093_022_208
    assert finding.metric("tensor_parallel_devices") is None
    assert "on up to 64 devices" in finding.fixes[-1].text


@pytest.mark.parametrize(
    "name, dims",
    [
        ("gpt2_decoder_step.onnx",
         {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 250}),
        ("gpt2_decoder_step.onnx",
         {"batch_size": 1, "sequence_length": 256, "past_sequence_length": 0}),
        ("bert_encoder.onnx", {"batch_size": 1, "sequence_length": 128}),
        ("small_cnn.onnx", {"batch_size": 1}),
        ("gpt2_small_graph_only.onnx", {}),
    ],
)
def test_sample_models_fit_at_batch_1(name, dims):
    report = lint(SAMPLES / name, hw="a100", dims=dims, config=Config(select=(CODE,)))
    assert [f.code for f in report.findings] == []
