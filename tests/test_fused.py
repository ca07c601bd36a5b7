"""The two estimates (memlint.analysis.fused): as written, every node a kernel with the spec's
launch cost, and as a fusing runtime runs the graph. Formulas pinned on hand-written graphs,
then checked on exports made here by the real tools (Optimum, onnxruntime's optimizer) and on a
Llama-2-7B-shaped decode step against (weights + KV cache read once) / bandwidth."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import memlint
from memlint.api import graph_replay
from memlint.cli import main
from memlint.config import Config
from memlint.core.report import analyse
from memlint.frontends.onnx_text import load_example
from memlint.hardware import resolve
from memlint.rulebase import Example

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
A100 = resolve("a100")  # 2.039e12 B/s, 2.4 us launch per kernel
BW, LAUNCH = 2.039e12, 2.4e-6
A100_GRAPHS = graph_replay(A100)


def test_a100_carries_the_sourced_launch_cost_and_cuda_graphs_drop_it():
    assert A100.kernel_overhead_s == LAUNCH
    assert "cuda.juliagpu.org" in A100.sources["kernel_overhead"]
    assert A100_GRAPHS.kernel_overhead_s is None
    assert A100_GRAPHS.memory_bandwidth_bytes_per_s == BW


# x[1,1024] fp32 @ W[1024,1024] + b[1024] -> Relu.
# As written, three kernels:
#   MatMul reads x 4,096 + W 4,194,304, writes 4,096      =  4,202,496
#   Add    reads 4,096 + b 4,096, writes 4,096             =     12,288
#   Relu   reads 4,096, writes 4,096                       =      8,192  -> 4,222,976 B
# Fused, one kernel (the bias and the Relu are the GEMM's epilogue):
#   reads x 4,096 + W 4,194,304 + b 4,096, writes y 4,096  -> 4,206,592 B
GEMV_EPILOGUE = """
g (float[1,1024] x) => (float[1,1024] y) <float[1024,1024] w, float[1024] b> {
  h = MatMul(x, w)
  z = Add(h, b)
  y = Relu(z)
}
"""


def test_a_product_with_its_bias_and_activation_is_one_kernel():
    report = analyse(load_example(Example(GEMV_EPILOGUE)), A100)
    summary, fused = report.summary, report.summary.fused
    assert summary.bytes_moved == 4_222_976 and summary.kernels == 3
    assert fused.kernels == 1 and dict(fused.groups)["epilogue"] == 1
    assert fused.bytes_moved == 4_206_592
    # memory-bound: bytes / bandwidth, plus one launch per kernel
    assert summary.predicted_latency_s == pytest.approx(
        sum(n.timing.predicted_latency_s for n in report.nodes) + 3 * LAUNCH)
    assert fused.latency_s == pytest.approx(4_206_592 / BW + LAUNCH)
    assert summary.launch_s == pytest.approx(3 * LAUNCH)


# Four element-wise ops on x[1,262144] fp32 (1 MiB): as written each reads and writes 1 MiB
# (the Add reads a second 1 MiB operand); fused, one kernel reads x and c and writes y.
CHAIN = """
g (float[1,262144] x, float[1,262144] c) => (float[1,262144] y) {
  a = Add(x, c)
  b = Relu(a)
  d = Sigmoid(b)
  y = Neg(d)
}
"""


def test_a_chains_saving_holds_the_launches_it_removes():
    # ML102's saving: the bytes the fused kernel does not move, and 3 of its 4 launches
    model = load_example(Example(CHAIN))
    findings = {}
    for spec in (A100, A100_GRAPHS):
        report = memlint.api.check(analyse(model, spec), Config(select=("ML102",)))
        (findings[spec.kernel_overhead_s],) = report.findings
    with_launch, without = findings[LAUNCH], findings[None]
    assert with_launch.saving_s == pytest.approx(without.saving_s + 3 * LAUNCH)
    assert with_launch.estimate == "as_written"  # a fusing runtime already does it
    fused = analyse(model, A100).summary.fused
    # x + c read once (2 MiB), y written (1 MiB): one kernel
    assert fused.kernels == 1 and fused.bytes_moved == 3 * 1_048_576


def test_the_sample_decoder_reads_its_cache_once_and_appends_in_place():
    # GPT-2 sample: 2 layers, 4 heads of 32, fp32, batch 1, 255 cached tokens.
    # The cache: 2 layers x (K + V) x 255 x 128 x 4 B = 522,240 B read once by the attention
    # kernels; the present outputs written in place: 2 x 2 x 1 new token x 128 x 4 = 2,048 B.
    dims = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 255}
    report = memlint.lint(SAMPLES / "gpt2_decoder_step.onnx", hw=A100, dims=dims)
    fused = report.summary.fused
    assert dict(fused.groups)["attention"] == 2
    assert fused.bytes_read.kv_cache == 2 * 2 * 255 * 128 * 4
    assert fused.bytes_written.kv_cache == 2 * 2 * 1 * 128 * 4
    # as written, each present Concat writes the whole cache again (as activations: a copy)
    assert report.summary.bytes_written.activations > 2 * 2 * 256 * 128 * 4
    assert fused.kernels < report.summary.kernels
    assert fused.latency_s < report.summary.predicted_latency_s
    assert fused.gap_s["attention"] > 0


def test_convolution_batchnorm_relu_is_one_kernel():
    report = memlint.lint(SAMPLES / "small_cnn.onnx", hw=A100, dims={"batch_size": 1})
    fused = report.summary.fused
    # stem, block1.dw, block1.pw and block2: Conv + BatchNormalization + Relu each; MaxPool,
    # GlobalAveragePool and the classifier Gemm stay kernels of their own (Flatten is a view)
    assert dict(fused.groups)["epilogue"] == 4
    assert (report.summary.kernels, fused.kernels) == (15, 7)


def test_json_text_and_cuda_graphs(tmp_path, capsys):
    model = SAMPLES / "gpt2_decoder_step.onnx"
    assert main([str(model), "--isolated", "--format", "json", "--fail-on", "never"]) == 0
    document = json.loads(capsys.readouterr().out)
    summary, hardware = document["summary"], document["hardware"]
    assert hardware["kernel_launch_s"] == LAUNCH and hardware["cuda_graphs"] is False
    assert summary["predicted_latency_s"] >= summary["kernels"] * LAUNCH
    assert summary["kernels_fused"] < summary["kernels"]
    assert summary["predicted_latency_fused_s"] < summary["predicted_latency_s"]
    assert set(summary["fused_groups"]) == {"attention", "chain", "epilogue", "projections"}
    estimates = {f["code"]: f["estimate"] for f in document["findings"]}
    assert estimates["ML102"] == "as_written" and estimates.get("ML106", "both") == "both"

    assert main([str(model), "--isolated", "--format", "json", "--fail-on", "never",
                 "--cuda-graphs"]) == 0  # fmt: skip
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["hardware"]["kernel_launch_s"] == 0.0
    assert replayed["hardware"]["cuda_graphs"] is True
    assert replayed["summary"]["predicted_latency_s"] == pytest.approx(
        summary["predicted_latency_s"] - summary["kernels"] * LAUNCH)

    assert main([str(model), "--isolated", "--fail-on", "never"]) == 0
    text = capsys.readouterr().out
    assert "as written: 105 kernels, 2.4 us launch each" in text
    assert "fused estimate" in text and "as written +" in text


def test_cuda_graphs_on_a_cpu_spec_is_one_line_and_exit_2(capsys):
    code = main([str(SAMPLES / "small_cnn.onnx"), "--hw", "cpu", "--cuda-graphs", "--isolated"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--cuda-graphs" in err[0] and "GPU" in err[0]


# --- on exports made by the real tools -----------------------------------------------------------

DECODE = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 63}


@pytest.mark.parametrize("name", ["gpt2", "llama", "gpt2_ort"])
def test_exports_run_fewer_kernels_fused(small_exports, name):
    from conftest import SMALL_L

    report = memlint.lint(small_exports[name], hw=A100, dims=DECODE)
    summary, fused = report.summary, report.summary.fused
    assert fused.kernels < summary.kernels
    assert summary.predicted_latency_s >= summary.kernels * LAUNCH
    assert fused.latency_s < summary.predicted_latency_s
    assert dict(fused.groups)["attention"] == SMALL_L  # one attention kernel per layer
    # the cache is read once whatever the copies: the fused kv read is the past's bytes
    assert fused.bytes_read.kv_cache == summary.bytes_read.kv_cache
    # and the FLOPs are the graph's (fusion moves bytes, not arithmetic), but for the few of
    # the shape arithmetic the host does
    assert 0.999 * summary.flops <= fused.flops <= summary.flops


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_one_fusion_search_serves_the_estimate_and_ml102_on_an_export(small_exports, name,
                                                                    monkeypatch):
    # An Optimum export has shape glue (scalar ops on shape vectors): the searches without
    # and with glue part there, and one pass over the graph finds both for the summary's fused
    # estimate and rule ML102; every ML102 finding is chains without glue (one per layer when
    # grouped).
    from memlint.analysis import fusion
    from memlint.analysis.graph_index import GraphIndex

    calls = []
    search = fusion._search
    monkeypatch.setattr(fusion, "_search", lambda *a: calls.append(1) or search(*a))
    report = memlint.lint(small_exports[name], hw=A100, dims=DECODE,
                          config=Config(select=("ML102",), min_share=0.0, min_saving_s=0.0))
    assert calls == [1]
    ctx = GraphIndex(report.model, report.nodes)
    plain, glue = fusion.find_chains(ctx), fusion.find_chains(ctx, glue=True)
    assert calls == [1]
    assert [c.nodes for c in plain] != [c.nodes for c in glue]
    chains = [{n.name for n in c.nodes} for c in plain]
    findings = [f for f in report.findings if f.code == "ML102"]
    assert findings
    for finding in findings:  # one chain, or the same chain of each layer (grouped)
        named = set(finding.nodes)
        assert set().union(*(c for c in chains if c & named)) == named


def test_the_fused_estimate_of_an_export_runs_no_more_kernels_than_the_optimizer_leaves(
        small_exports):
    # onnxruntime's transformer optimizer fuses LayerNorm, GELU and bias Adds of the Optimum
    # GPT-2 export: the kernels it leaves, as written, are at least the fused estimate's of
    # the raw export (which also fuses attention and epilogues, and computes shapes on the
    # host), and the optimized graph's own fused estimate agrees with the raw one's.
    raw = memlint.lint(small_exports["gpt2"], hw=A100, dims=DECODE).summary
    optimized = memlint.lint(small_exports["gpt2_ort"], hw=A100, dims=DECODE).summary
    assert raw.fused.kernels <= optimized.kernels < raw.kernels
    assert optimized.fused.kernels == pytest.approx(raw.fused.kernels, rel=0.2)
    assert optimized.fused.bytes_moved == pytest.approx(raw.fused.bytes_moved, rel=0.05)


# --- Llama-2-7B-shaped fp16 decode step (batch 1, 1023 cached tokens) on a100 -------------------

LLAMA_7B = {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 32,
            "head_dim": 128, "intermediate_size": 11008, "vocab_size": 32000}  # fmt: skip


@pytest.fixture(scope="module")
def llama_7b(tmp_path_factory):
    """bench/scale.py's Llama builder at Llama-2-7B's shape: 32 layers, fp16 weights in a
    sparse external file that is never read."""
    spec = importlib.util.spec_from_file_location("memlint_bench_scale", ROOT / "bench" / "scale.py")
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    info = scale.build_llama(tmp_path_factory.mktemp("llama-7b"), 32, **LLAMA_7B)
    return Path(info["path"]), info["data_bytes"]


def test_a_7b_decode_step_fused_is_weights_and_cache_once_over_bandwidth(llama_7b):
    path, weight_bytes = llama_7b
    dims = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 1023}
    # By hand: the weights are read once, but the 32000 x 4096 fp16 embedding table only for
    # its one row; the KV cache once: 32 layers x (K + V) x 32 heads x 1023 x 128 x 2 B.
    table = 32000 * 4096 * 2
    weights = weight_bytes - table + 4096 * 2
    cache = 32 * 2 * 32 * 1023 * 128 * 2
    floor = (weights + cache) / BW  # 6.744 ms
    replayed = memlint.lint(path, hw=A100, dims=dims, cuda_graphs=True)
    fused = replayed.summary.fused
    assert fused.latency_s == pytest.approx(floor, rel=0.02)
    assert fused.bytes_read.kv_cache == cache
    # as written it is well above: copies of the cache (present Concat, repeat_kv Expand) and
    # the unfused kernels, named by the fusion that removes each
    summary = replayed.summary
    assert summary.predicted_latency_s > 1.15 * fused.latency_s
    assert max(fused.gap_s, key=fused.gap_s.get) == "attention"
    assert fused.kernels < summary.kernels
    # without CUDA graphs, every kernel is launched: 2.4 us each
    launched = memlint.lint(path, hw=A100, dims=dims).summary
    assert launched.predicted_latency_s == pytest.approx(
        summary.predicted_latency_s + summary.kernels * LAUNCH)
    assert launched.fused.latency_s == pytest.approx(fused.latency_s + fused.kernels * LAUNCH)


def test_a_torch_decode_step_gets_both_estimates():
    # a Hugging Face Llama (GQA) captured by torch.export at a decode step after 63 tokens: its
    # attention is one scaled_dot_product_attention node already; the element-wise chains
    # (RMSNorm, SiLU x up), the projections sharing an input (q/k/v, gate/up) and the epilogues
    # fuse, and the cache is read once either way
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=500, max_position_embeddings=128)).eval()  # fmt: skip
    summary = memlint.lint(model, decode=63, hw=A100).summary
    fused = summary.fused
    assert fused.kernels < summary.kernels
    assert summary.predicted_latency_s >= summary.kernels * LAUNCH
    assert fused.latency_s < summary.predicted_latency_s
    assert dict(fused.groups)["projections"] == 4  # q/k/v and gate/up in each of 2 layers
    # 2 layers x (K + V) x 2 KV heads x 63 tokens x 16 dims x 4 B = 32,256 B, read once
    assert fused.bytes_read.kv_cache == summary.bytes_read.kv_cache == 2 * 2 * 2 * 63 * 16 * 4
