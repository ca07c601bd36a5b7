"""memlint on graphs written by the exporters users run, not by hand.

Every model here is tiny, has random weights and is exported inside the test (into a temporary
directory, once per module): torch.onnx with the TorchScript exporter (dynamo=False) and with the
dynamo exporter (dynamo=True), optimum's main_export of Hugging Face GPT-2 and BERT configs, and
onnxruntime's transformer optimizer run on those exports. Nothing is downloaded.

Each graph is linted with every symbolic dim bound (strict_dims=True, so a dim the exporter named
differently from what we bind makes the test fail loudly), and checked for:

- coverage: every tensor resolved, no unmodelled and no unresolved node;
- FLOPs of the matrix-product family against an independent count: torch.utils.flop_counter on
  the same module with the same shapes, or a hand formula.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from exportcheck import (  # noqa: E402
    MATMUL_FAMILY,
    assert_fully_modelled,
    bias_adds,
    matmul_family_flops,
    torch_flops,
)
from torch import nn  # noqa: E402
from torch_blocks import Block  # noqa: E402

from memlint.api import lint  # noqa: E402
from memlint.config import Config  # noqa: E402
from memlint.core.document import document as to_dict  # noqa: E402
from memlint.roofline import Bound  # noqa: E402

# --- helpers ----------------------------------------------------------------------------------


def input_dims(path: Path) -> dict[str, list]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in graph.input
    }


def contrib_ops(report) -> dict[str, int]:
    ops = Counter(n.op_type for n in report.nodes if n.domain == "com.microsoft")
    return dict(sorted(ops.items()))


# --- torch modules ----------------------------------------------------------------------------

VOCAB, D_MODEL, HEADS, LAYERS, MAX_POS = 100, 64, 4, 2, 64


class TinyGPT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D_MODEL), nn.Embedding(MAX_POS, D_MODEL)
        self.blocks = nn.ModuleList(Block(D_MODEL, HEADS) for _ in range(LAYERS))
        self.ln = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, VOCAB, bias=False)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, groups=4), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def _tiny_gpt() -> nn.Module:
    torch.manual_seed(0)
    return TinyGPT().eval()


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = SmallCNN()
    for module in model.modules():  # non-trivial running stats, so folding BN changes weights
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-1, 1)
    return model.eval()


# Exported with these example shapes, linted with *other* bound values, so a shape the exporter
# baked in as a constant instead of deriving it from the symbolic dims shows up as a FLOP mismatch.
GPT_EXAMPLE, GPT_BOUND = (2, 16), {"batch": 3, "sequence": 24}
CNN_EXAMPLE, CNN_BOUND = (2, 3, 32, 32), {"batch": 3}


def _export(module, args, path: Path, dynamic: dict[str, dict[int, str]], dynamo: bool) -> Path:
    names = list(dynamic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            from torch.export import Dim

            # Named Dims: the dynamo exporter writes these names as the inputs' dim_params
            # (with Dim.AUTO it would write its own symbols, 's23', 's27').
            shapes = {
                name: {axis: Dim(label, max=MAX_POS) if label == "sequence" else Dim(label)
                       for axis, label in axes.items()}
                for name, axes in dynamic.items()
            }  # fmt: skip
            torch.onnx.export(
                module, args, str(path), dynamo=True, input_names=names, dynamic_shapes=shapes,
                verbose=False,
            )
        else:
            torch.onnx.export(
                module, args, str(path), dynamo=False, input_names=names, output_names=["out"],
                dynamic_axes=dynamic, opset_version=17,
            )
    return path


@pytest.fixture(scope="module", params=[False, True], ids=["torchscript", "dynamo"])
def torch_exports(request, tmp_path_factory):
    """(exporter id, gpt path, cnn path) for one torch.onnx exporter."""
    dynamo = request.param
    if dynamo:
        pytest.importorskip("onnxscript")
    out = tmp_path_factory.mktemp("dynamo" if dynamo else "torchscript")
    gpt = _export(
        _tiny_gpt(), (torch.randint(0, VOCAB, GPT_EXAMPLE),), out / "gpt.onnx",
        {"ids": {0: "batch", 1: "sequence"}}, dynamo,
    )  # fmt: skip
    cnn = _export(
        _small_cnn(), (torch.randn(*CNN_EXAMPLE),), out / "cnn.onnx", {"x": {0: "batch"}}, dynamo
    )
    return ("dynamo" if dynamo else "torchscript"), gpt, cnn


# --- 1. torch.onnx exports --------------------------------------------------------------------


def test_torch_export_dim_names(torch_exports):
    _, gpt, cnn = torch_exports
    # Both exporters keep the names we gave (dynamic_axes / named torch.export Dims).
    assert input_dims(gpt) == {"ids": ["batch", "sequence"]}
    assert input_dims(cnn) == {"x": ["batch", 3, 32, 32]}


def test_torch_gpt_fully_modelled(torch_exports):
    exporter, gpt, _ = torch_exports
    report = lint(gpt, hw="a100", dims=GPT_BOUND, strict_dims=True)
    assert_fully_modelled(report, f"{exporter} TinyGPT")


def test_torch_gpt_matmul_flops_match_flop_counter(torch_exports):
    exporter, gpt, _ = torch_exports
    report = lint(gpt, hw="a100", dims=GPT_BOUND, strict_dims=True)
    ids = torch.randint(0, VOCAB, (GPT_BOUND["batch"], GPT_BOUND["sequence"]))
    expected, by_op = torch_flops(_tiny_gpt(), ids)
    # Both exporters write nn.Linear on a 3-D input as MatMul + Add, so no bias is inside a
    # matrix-product node and the counts agree exactly. By hand (B=3, S=24, D=64, 4 heads, V=100):
    # per block qkv 2*72*64*192 + proj 2*72*64*64 + mlp 2 * 2*72*64*256 + attention
    # 2 * 2*3*4*24*24*16 = 1,769,472 + 589,824 + 4,718,592 + 442,368 = 7,520,256; two blocks and
    # the head 2*72*64*100 = 921,600: 15,962,112.
    assert expected == 15_962_112, by_op
    assert matmul_family_flops(report) - bias_adds(report) == expected, (exporter, by_op)


def test_torch_cnn_fully_modelled(torch_exports):
    exporter, _, cnn = torch_exports
    report = lint(cnn, hw="a100", dims=CNN_BOUND, strict_dims=True)
    assert_fully_modelled(report, f"{exporter} SmallCNN")


def test_torch_cnn_conv_flops_match_flop_counter(torch_exports):
    exporter, _, cnn = torch_exports
    report = lint(cnn, hw="a100", dims=CNN_BOUND, strict_dims=True)
    expected, by_op = torch_flops(_small_cnn(), torch.randn(CNN_BOUND["batch"], *CNN_EXAMPLE[1:]))
    ops = Counter(n.op_type for n in report.nodes)
    # Both exporters fold eval-mode BatchNorm into the preceding Conv's weight and bias, so the
    # graph has no BatchNormalization; the folded bias is an add per output element that memlint
    # counts (conv.py) and torch's counter does not (it counts aten.convolution without bias and
    # BatchNorm not at all). bias_adds() takes exactly those out, so the rest must agree exactly.
    # By hand (N=3): conv1 2*3*16*32*32*27 + conv2 2*3*32*16*16*36 + depthwise 2*3*32*16*16*9 +
    # fc 2*3*32*10 = 2,654,208 + 1,769,472 + 442,368 + 1,920 = 4,867,968.
    assert expected == 4_867_968, by_op
    assert ops["Conv"] == 3 and "BatchNormalization" not in ops, dict(ops)
    got = matmul_family_flops(report) - bias_adds(report)
    assert got == expected, (exporter, dict(ops), by_op)


# --- 2. optimum exports of Hugging Face models ------------------------------------------------

GPT2_LAYERS, GPT2_HIDDEN, GPT2_HEADS = 2, 64, 4
BERT_LAYERS, BERT_HIDDEN, BERT_HEADS, BERT_INTERMEDIATE = 2, 64, 4, 128
DECODE_DIMS = {"batch_size": 1, "sequence_length": 1, "past_sequence_length": 63}
BERT_DIMS = {"batch_size": 1, "sequence_length": 32}


@pytest.fixture(scope="module")
def optimum_exports(tmp_path_factory):
    """{"gpt2": model.onnx with past, "bert": model.onnx}, exported by optimum from local dirs."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("optimum.exporters.onnx")
    from optimum.exporters.onnx import main_export

    root = tmp_path_factory.mktemp("optimum")
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_layer=GPT2_LAYERS, n_embd=GPT2_HIDDEN, n_head=GPT2_HEADS, vocab_size=500,
            n_positions=128,
        )
    )  # fmt: skip
    bert = transformers.BertModel(
        transformers.BertConfig(
            num_hidden_layers=BERT_LAYERS, hidden_size=BERT_HIDDEN,
            num_attention_heads=BERT_HEADS, intermediate_size=BERT_INTERMEDIATE, vocab_size=500,
        )
    )  # fmt: skip
    paths = {}
    for name, model, task in (
        ("gpt2", gpt2, "text-generation-with-past"),
        ("bert", bert, "feature-extraction"),
    ):
        model.save_pretrained(root / f"{name}-hf")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main_export(
                str(root / f"{name}-hf"), output=root / f"{name}-onnx", task=task,
                local_files_only=True,
            )  # fmt: skip
        paths[name] = root / f"{name}-onnx" / "model.onnx"
    return paths


@pytest.fixture(scope="module")
def gpt2_decode(optimum_exports):
    return lint(optimum_exports["gpt2"], hw="a100", dims=DECODE_DIMS, strict_dims=True)


@pytest.fixture(scope="module")
def bert_report(optimum_exports):
    return lint(optimum_exports["bert"], hw="a100", dims=BERT_DIMS, strict_dims=True)


def test_optimum_gpt2_decode_fully_modelled(gpt2_decode):
    assert_fully_modelled(gpt2_decode, "optimum GPT-2 with past, decode step")


def test_optimum_gpt2_decode_matmuls_memory_bound(gpt2_decode):
    products = [n for n in gpt2_decode.nodes if n.op_type in ("MatMul", "Gemm")]
    # 4 Gemm (c_attn, c_proj, c_fc, mlp c_proj) + 2 attention MatMul per layer, and the lm_head
    assert len(products) == 6 * GPT2_LAYERS + 1, [n.name for n in products]
    not_memory = [
        f"{n.name} ({n.op_type}, intensity {n.intensity:.2f} FLOP/B)"
        for n in products
        if n.timing.bound is not Bound.MEMORY
    ]
    assert not not_memory, f"decode-step products not memory-bound on a100: {not_memory}"


def _kv_breakdown(report) -> list[str]:
    return [
        f"{n.name} {n.op_type}: read {n.cost.bytes_read.kv_cache}, "
        f"written {n.cost.bytes_written.kv_cache}"
        for n in report.nodes
        if n.cost.bytes_read.kv_cache or n.cost.bytes_written.kv_cache
    ]


# KV-cache sizes of the decode step, fp32: B=1, N=4 heads, head size d=16, P=63, S=1, T=P+S=64.
PAST_BYTES = 1 * GPT2_HEADS * 63 * 16 * 4  # 16,128 per K or V tensor of one layer
PRESENT_BYTES = 1 * GPT2_HEADS * 64 * 16 * 4  # 16,384


def test_optimum_gpt2_attention_matmuls_read_copies_of_the_cache(gpt2_decode):
    """Both attention products of each layer read a (B, N, T, d) operand copied from the cache:
    Q @ K^T the transposed, scaled present keys, P @ V the present values (Concat copies). The
    KV cache is the cache (the past inputs read): copies are activation traffic (DESIGN.md)."""
    graph = gpt2_decode.model.graph
    attention = [
        (n, node)
        for n, node in zip(gpt2_decode.nodes, graph.nodes)
        if n.op_type == "MatMul" and "/attn/" in n.name
    ]
    assert len(attention) == 2 * GPT2_LAYERS, [n.name for n, _ in attention]
    wrong = [
        f"{n.name}: kv read {n.cost.bytes_read.kv_cache}, activations read "
        f"{n.cost.bytes_read.activations}; operand kinds "
        f"{[(name, graph.value(name).kind.value) for name in node.inputs]}"
        for n, node in attention
        if n.cost.bytes_read.kv_cache != 0 or n.cost.bytes_read.activations < PRESENT_BYTES
    ]
    assert not wrong, (
        "attention MatMuls whose copied K/V operand is counted as KV cache (expected "
        f"activations >= {PRESENT_BYTES} B each): {wrong}"
    )


def test_optimum_gpt2_decode_kv_cache_bytes(gpt2_decode):
    kv = gpt2_decode.summary.bytes_by_kind.kv_cache
    assert kv > 0, "no KV-cache bytes in a decode step with past_key_values inputs"
    # What the optimum/transformers 4.57 GPT-2 graph does per layer (the sdpa-style eager path,
    # which scales both q and k by sqrt(1/sqrt(d)) before the product):
    #   Concat(past_k, k_new) -> present.k:  read PAST 16,128 (the cache), write the new token
    #                                        into it (4 heads x 16 x 4 B = 256) and a copy
    #   Concat(past_v, v_new) -> present.v:  the same
    #   Transpose, Mul by sqrt(scale), both MatMuls: read and write copies of the cache
    # The KV cache is the cache (DESIGN.md): the past inputs read, 2*16,128 per layer, and the
    # new token written, 2*256; the rest of the presents, K^T and its scaled copy are
    # activation traffic (ML105 names the Concats).
    new_token = 1 * GPT2_HEADS * 1 * 16 * 4
    expected = GPT2_LAYERS * 2 * (PAST_BYTES + new_token)
    assert expected == 65_536
    breakdown = "\n".join(_kv_breakdown(gpt2_decode))
    assert kv == expected, f"kv_cache bytes {kv}, expected {expected}:\n{breakdown}"


def test_optimum_bert_fully_modelled(bert_report):
    assert_fully_modelled(bert_report, "optimum BERT feature-extraction")


def test_optimum_bert_matmul_flops_match_formula(bert_report):
    s, h, i = BERT_DIMS["sequence_length"], BERT_HIDDEN, BERT_INTERMEDIATE
    # Per layer: Q, K, V and output projections 4 * 2*S*H*H, the MLP 2 * 2*S*H*I, attention
    # Q @ K^T and P @ V 2 * 2*S*S*H. B=1, S=32, H=64, I=128: 1,048,576 + 1,048,576 + 262,144 =
    # 2,359,296; two layers 4,718,592 (the pooler is not in the feature-extraction graph; the
    # optimum export writes every Linear as MatMul + Add, so today the match is exact).
    per_layer = 4 * 2 * s * h * h + 2 * 2 * s * h * i + 2 * 2 * s * s * h
    expected = BERT_LAYERS * per_layer
    assert expected == 4_718_592
    got = matmul_family_flops(bert_report)
    assert got == pytest.approx(expected, rel=0.01), {
        n.name: n.cost.flops for n in bert_report.nodes if n.op_type in MATMUL_FAMILY
    }


# --- 3. onnxruntime transformer optimizer -----------------------------------------------------


@pytest.fixture(scope="module")
def ort_optimized(optimum_exports, tmp_path_factory):
    """optimize_model(opt_level=1) of the optimum BERT and GPT-2 exports, saved to files."""
    pytest.importorskip("onnxruntime")
    optimizer = pytest.importorskip("onnxruntime.transformers.optimizer")
    root = tmp_path_factory.mktemp("ort-optimized")
    paths = {}
    for name in ("bert", "gpt2"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = optimizer.optimize_model(
                str(optimum_exports[name]), model_type=name, num_heads=4, hidden_size=64,
                opt_level=1, use_gpu=False,
            )  # fmt: skip
        paths[name] = root / f"{name}_optimized.onnx"
        model.save_model_to_file(str(paths[name]))
    return paths


@pytest.mark.parametrize(
    ("name", "dims"), [("bert", BERT_DIMS), ("gpt2", DECODE_DIMS)], ids=["bert", "gpt2"]
)
def test_ort_optimized_fully_modelled(ort_optimized, name, dims):
    report = lint(ort_optimized[name], hw="a100", dims=dims, strict_dims=True)
    fused = contrib_ops(report)
    # Without fused ops the test would not exercise the contrib-op shapes and formulas at all.
    assert fused, f"optimize_model({name}) produced no com.microsoft ops"
    assert_fully_modelled(report, f"ort-optimized {name}", extra=f"com.microsoft ops {fused}")


# --- rules on real exports ----------------------------------------------------------------------

ALL_FINDINGS = Config(min_share=0.0, min_saving_s=0.0)  # every finding, however small


def assert_findings_agree_with_node_data(report) -> None:
    """A finding's time is the sum of its nodes' predicted times (the roofline's; launch costs
    are the summary's); a single-node finding's FLOPs and bytes are that node's, as the JSON
    report prints them."""
    nodes = {n["name"]: n for n in to_dict(report)["nodes"]}
    for finding in report.findings:
        assert set(finding.nodes) <= set(nodes), (finding.code, finding.nodes)
        if finding.time_s is not None and finding.nodes:
            total = sum(nodes[n]["predicted_latency_s"] for n in finding.nodes)
            assert finding.time_s == pytest.approx(total), finding.code
            # a fix saves at most what its nodes take, their launches included (GPU specs)
            launches = (report.hardware.kernel_overhead_s or 0.0) * sum(
                1 for n in finding.nodes if nodes[n]["bound"] != "none")
            assert finding.saving_s <= (finding.time_s + launches) * (1 + 1e-9), finding.code
        if len(finding.nodes) == 1:
            (node,) = (nodes[n] for n in finding.nodes)
            for metric, key in (("flops", "flops"), ("bytes_moved", None)):
                value = finding.metric(metric)
                if value is not None:
                    expected = node[key] if key else node["bytes_read"] + node["bytes_written"]
                    assert value == expected, (finding.code, metric)


def _codes_on(report, prefix: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in report.findings:
        found.setdefault(finding.code, set()).update(n for n in finding.nodes if prefix in n)
    return found


def test_rules_on_torch_exports_agree_with_node_data(torch_exports):
    _, gpt, cnn = torch_exports
    for path, dims in ((gpt, {"batch": 1, "sequence": 16}), (cnn, {"batch": 1})):
        report = lint(path, hw="a100", dims=dims, strict_dims=True, config=ALL_FINDINGS)
        assert report.rules_run  # every rule ran without crashing
        assert_findings_agree_with_node_data(report)


def test_rules_on_optimum_gpt2_decode_step(optimum_exports):
    report = lint(optimum_exports["gpt2"], hw="a100", dims=DECODE_DIMS, config=ALL_FINDINGS)
    assert_findings_agree_with_node_data(report)
    codes = {f.code for f in report.findings}
    # the projections stream their weights for one token; the cache is appended by Concat
    low = {n for f in report.findings if f.code == "ML101" for n in f.nodes}
    assert any("/mlp/c_fc/" in n for n in low) and any("/attn/c_attn/" in n for n in low)
    assert {"ML101", "ML105", "ML103"} <= codes
    copies = [f for f in report.findings if f.code == "ML105"]
    assert sum(f.count for f in copies) == 2 * GPT2_LAYERS  # key and value of every layer


def test_rule_101_is_quiet_on_large_batch_prefill(optimum_exports):
    # 64 x 128 rows share each weight read: [8192, 64] x [64, 256] has intensity ~25 FLOP/B,
    # over the fp32 ridge of 9.56 FLOP/B on an A100.
    dims = {"batch_size": 64, "sequence_length": 128, "past_sequence_length": 0}
    report = lint(optimum_exports["gpt2"], hw="a100", dims=dims, config=ALL_FINDINGS)
    assert_findings_agree_with_node_data(report)
    low = {n for f in report.findings if f.code == "ML101" for n in f.nodes}
    assert not [n for n in low if "/h." in n], low
    assert "ML105" not in {f.code for f in report.findings}  # no cache to copy in a prefill
    assert "ML102" in {f.code for f in report.findings}  # the decomposed tanh GELU


def test_rules_on_optimum_bert(optimum_exports):
    report = lint(optimum_exports["bert"], hw="a100", dims={"batch_size": 8, "sequence_length": 128},
                  config=ALL_FINDINGS)
    assert_findings_agree_with_node_data(report)
    attention = [f for f in report.findings if f.code == "ML103"]
    assert sum(f.count for f in attention) == BERT_LAYERS
    gelu = [f for f in report.findings if f.code == "ML102" and "GELU (erf)" in f.message]
    assert gelu


@pytest.mark.parametrize(
    ("name", "dims"), [("bert", BERT_DIMS), ("gpt2", DECODE_DIMS)], ids=["bert", "gpt2"]
)
def test_rules_on_ort_optimized_graphs(ort_optimized, name, dims):
    report = lint(ort_optimized[name], hw="a100", dims=dims, config=ALL_FINDINGS)
    assert_findings_agree_with_node_data(report)
    # The optimizer fused GELU into BiasGelu / FastGelu and residual Add + LayerNorm into
    # SkipLayerNormalization: no such chain is left to report (GPT-2's embedding Add + LayerNorm
    # stays unfused: EmbedLayerNormalization is BERT's).
    chains = [f.message for f in report.findings if f.code == "ML102"]
    assert not [m for m in chains if "GELU" in m or "residual" in m], chains
    if name == "bert":  # attention fused into com.microsoft Attention (not for GPT-2 with past)
        assert "ML103" not in {f.code for f in report.findings}
