"""The torch frontend: nn.Module / GraphModule / ExportedProgram / .pt2 -> IR, through torch.

Tiny modules with FLOPs and bytes derived by hand; a meta-device module; source lines pointing
into this file; unmapped ops that stay unmodelled; views vs copies; KV-cache inputs; the
fallback when torch.export fails; load_factory; the ONNX consistency check (a transformer block
through fx and through its own torch.onnx.export); and the Done-when check on a small Hugging
Face GPT-2 (matmul FLOPs against torch.utils.flop_counter, findings in the transformers source).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from memlint.analysis.kv_copies import copies  # noqa: E402
from memlint.api import lint  # noqa: E402
from memlint.costs import CostStatus  # noqa: E402
from memlint.errors import DimError, ModelLoadError  # noqa: E402
from memlint.frontends.fx import load_factory  # noqa: E402
from memlint.frontends.fx_graph import source_location  # noqa: E402
from memlint.ir import ValueKind  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THIS_FILE = str(Path(__file__).resolve())


def only(report, op_type: str):
    """The one node of `op_type` (with its IR node)."""
    nodes = [n for n in report.nodes if n.op_type == op_type]
    assert len(nodes) == 1, [(n.name, n.op_type) for n in report.nodes]
    return nodes[0]


def ir_node(report, name: str):
    return next(n for n in report.model.graph.nodes if n.name == name)


def line_of(marker: str) -> int:
    """The line of this file that holds `marker` (a comment on the op's line)."""
    lines = Path(__file__).read_text(encoding="utf-8").splitlines()
    hits = [i + 1 for i, text in enumerate(lines) if marker in text and "line_of" not in text]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


# --- tiny modules, hand-derived counts --------------------------------------------------------


def test_linear_is_a_gemm_with_bias():
    report = lint(nn.Linear(64, 32), example_inputs=(torch.randn(4, 64),))
    gemm = only(report, "Gemm")
    node = ir_node(report, gemm.name)
    assert node.attributes["transB"] == 1  # torch's weight is [out, in]
    # 2*M*N*K + M*N (bias) = 2*4*32*64 + 4*32 = 16,384 + 128
    assert gemm.cost.flops == 16_512
    # x 4*64*4 B, W 32*64*4 B, b 32*4 B read; y 4*32*4 B written
    assert gemm.cost.bytes_read.weights == 8_192 + 128
    assert gemm.cost.bytes_read.activations == 1_024
    assert gemm.cost.bytes_written.activations == 512


def test_linear_on_3d_input_flattens_like_torch():
    report = lint(nn.Linear(64, 32), example_inputs=(torch.randn(2, 3, 64),))
    assert [n.op_type for n in report.nodes] == ["Reshape", "Gemm", "Reshape"]
    # M = 2*3 rows: 2*6*32*64 + 6*32
    assert only(report, "Gemm").cost.flops == 24_576 + 192
    assert report.summary.flops == 24_768


class Bmm(nn.Module):
    def forward(self, a, b):
        return torch.bmm(a, b)


def test_bmm_is_a_matmul():
    report = lint(Bmm(), example_inputs=(torch.randn(2, 8, 16), torch.randn(2, 16, 4)))
    # 2 * (2*8*4 outputs) * K=16
    assert only(report, "MatMul").cost.flops == 2_048


class Sdpa(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # marker: sdpa-line


def test_sdpa_is_fused_attention():
    q = torch.randn(1, 2, 8, 16)
    report = lint(Sdpa(), example_inputs=(q, q, q))
    attention = only(report, "Attention")
    node = ir_node(report, attention.name)
    assert (node.attributes["q_num_heads"], node.attributes["kv_num_heads"]) == (2, 2)
    # B=1, H=2, S=T=8, d=16: 2*B*S*T*(H*d + H*d) + 5*B*H*S*T = 8,192 + 640 (causal not shrunk)
    assert attention.cost.flops == 8_832
    # Q, K, V read and Y written, 1*2*8*16*4 B each; the 8x8 scores stay on chip
    assert attention.cost.bytes_moved == 4 * 1_024


class GqaSdpa(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)


def test_sdpa_gqa_heads():
    q, kv = torch.randn(1, 4, 8, 16), torch.randn(1, 2, 8, 16)
    report = lint(GqaSdpa(), example_inputs=(q, kv, kv))
    node = ir_node(report, only(report, "Attention").name)
    assert (node.attributes["q_num_heads"], node.attributes["kv_num_heads"]) == (4, 2)
    # every query head scores: 2*1*8*8*(64 + 64) + 5*1*4*8*8
    assert only(report, "Attention").cost.flops == 16_384 + 1_280


def test_layer_norm():
    report = lint(nn.LayerNorm(16), example_inputs=(torch.randn(2, 8, 16),))
    # 8 FLOPs per element (docs/cost-model.md) * 2*8*16
    assert only(report, "LayerNormalization").cost.flops == 2_048


def test_conv2d():
    report = lint(nn.Conv2d(3, 8, 3, padding=1), example_inputs=(torch.randn(1, 3, 16, 16),))
    conv = only(report, "Conv")
    # 2 * (1*8*16*16 outputs) * (3*3*3) + 2,048 for the bias
    assert conv.cost.flops == 110_592 + 2_048
    assert ir_node(report, conv.name).attributes["pads"] == [1, 1, 1, 1]


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 16)

    def forward(self, x):
        return F.silu(self.up(x))  # marker: silu-line


def test_silu_is_swish_and_sources_point_here():
    report = lint(Mlp(), example_inputs=(torch.randn(2, 8),))
    swish = only(report, "Swish")
    assert swish.cost.flops == 5 * 2 * 16  # x*sigmoid(x): 5 per element
    line = line_of("marker: silu-line")
    for node in report.nodes:  # the nn.Linear frame is torch's: the user frame is this line
        assert (node.source.file, node.source.line) == (THIS_FILE, line), node


def test_findings_carry_the_user_line():
    q = torch.randn(1, 2, 8, 16)
    report = lint(Sdpa(), example_inputs=(q, q, q))
    assert only(report, "Attention").source.line == line_of("marker: sdpa-line")


def test_source_location_skips_torch_and_stdlib_frames():
    torch_dir = Path(torch.__file__).parent
    trace = (
        f'  File "{THIS_FILE}", line 10, in forward\n    y = self.up(x)\n'
        f'  File "{torch_dir / "nn/modules/linear.py"}", line 134, in forward\n    return F.linear\n'
    )
    assert source_location(trace).line == 10
    assert source_location("") is None


class Flips(nn.Module):
    def forward(self, x):
        return torch.flip(x, (0,)) + 1


def test_unmapped_op_stays_unmodelled():
    report = lint(Flips(), example_inputs=(torch.randn(4, 8),))
    flip = next(n for n in report.nodes if n.domain == "aten")
    assert (flip.op_type, flip.cost.status) == ("flip", CostStatus.UNMODELLED)
    assert flip.cost.bytes_moved == 2 * 4 * 8 * 4  # a lower bound, never zero
    assert dict(report.coverage.unmodelled_ops) == {"aten::flip": 1}
    assert "ML901" in {f.code for f in report.findings}


class Rolls(nn.Module):
    def forward(self, x):
        return torch.roll(x, 1, 0) + 1


def test_roll_moves_every_element_once():
    report = lint(Rolls(), example_inputs=(torch.randn(4, 8),))
    roll = only(report, "Slice")
    # reads the 4 x 8 fp32 tensor and writes it rolled: 128 B each way, no FLOPs
    assert (roll.cost.flops, roll.cost.bytes_read.total, roll.cost.bytes_written.total) == (
        0, 128, 128)
    assert report.coverage.nodes_modelled == report.coverage.nodes_total


# --- views and copies -------------------------------------------------------------------------


class HeadMerge(nn.Module):
    def forward(self, x):  # [b, h, s, d] -> [b, s, h*d]: a permuted view made dense
        return x.transpose(1, 2).contiguous().view(2, 8, 64)


def test_contiguous_of_a_permuted_view_is_a_transpose():
    report = lint(HeadMerge(), example_inputs=(torch.randn(2, 4, 8, 16),))
    copy = only(report, "Transpose")
    assert ir_node(report, copy.name).attributes["perm"] == [0, 2, 1, 3]
    assert copy.cost.bytes_moved == 2 * 2 * 4 * 8 * 16 * 4  # read and written once
    views = [n for n in report.nodes if n.op_type != "Transpose"]
    assert views and all(n.cost.status is CostStatus.METADATA for n in views)


class ScoresOnView(nn.Module):
    def forward(self, q, k):
        return q @ k.transpose(-2, -1)  # a view: matmul reads it transposed


def test_transpose_view_moves_no_bytes():
    q = torch.randn(1, 2, 8, 16)
    report = lint(ScoresOnView(), example_inputs=(q, q))
    assert {n.op_type for n in report.nodes} <= {"Identity", "Reshape", "MatMul"}
    assert report.summary.flops == only(report, "MatMul").cost.flops == 2 * 2 * 8 * 8 * 16


class RepeatKv(nn.Module):
    def forward(self, past_key):  # transformers' repeat_kv: expand, then reshape (a copy)
        b, h, s, d = past_key.shape
        return past_key[:, :, None].expand(b, h, 3, s, d).reshape(b, h * 3, s, d)


def test_materialised_expand_reads_its_source():
    report = lint(RepeatKv(), example_inputs=(torch.randn(1, 8, 512, 64),))
    expand = only(report, "Expand")
    # reads the 1*8*512*64 fp32 source (1 MiB) of the KV cache (the input is named past_key),
    # writes 3x that: a copy of the cache, activation traffic as in an ONNX graph ("the KV
    # cache is the cache")
    assert expand.cost.bytes_read.kv_cache == 1_048_576
    assert expand.cost.bytes_written.kv_cache == 0
    assert expand.cost.bytes_written.activations == 3 * 1_048_576
    copy = next(f for f in report.findings if f.code == "ML107")
    assert "GQA repeat_kv" in copy.message


class Decoder(nn.Module):
    def forward(self, q, past_key_values, k):
        keys = torch.cat([past_key_values, k], dim=2)
        return q @ keys.transpose(-2, -1), keys


def test_kv_cache_inputs_and_what_passes_them_on():
    args = (torch.randn(1, 2, 1, 8), torch.randn(1, 2, 16, 8), torch.randn(1, 2, 1, 8))
    report = lint(Decoder(), example_inputs=args)
    values = report.model.graph.values
    assert values["past_key_values"].kind is ValueKind.KV_CACHE
    assert values["k"].kind is ValueKind.ACTIVATION
    concat = only(report, "Concat")
    # the cat of the cache and the new key is a copy of the cache (as an ONNX present),
    # activation traffic, which memlint.analysis.kv_copies finds again
    out = ir_node(report, concat.name).outputs[0]
    assert values[out].kind is ValueKind.ACTIVATION
    assert out in copies(report.model.graph)
    assert "ML105" in {f.code for f in report.findings}  # copied-kv-cache sees the Concat


def test_parameters_and_buffers_are_weights():
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8)).eval()
    report = lint(model, example_inputs=(torch.randn(2, 8),))
    weights = {n: v for n, v in report.model.graph.values.items() if v.kind is ValueKind.WEIGHT}
    assert {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean"} <= set(weights)
    assert report.model.graph.inputs == ("input",)


# --- meta device, other sources ----------------------------------------------------------------


def test_meta_device_module_needs_no_weights():
    with torch.device("meta"):
        big = nn.Linear(8192, 8192)
    report = lint(big, example_inputs=(torch.randn(1, 8192),), hw="h100")
    gemm = only(report, "Gemm")
    assert gemm.cost.flops == 2 * 8192 * 8192 + 8192
    assert gemm.cost.bytes_read.weights == 8192 * 8192 * 4 + 8192 * 4  # 268 MB, never allocated
    assert "ML101" in {f.code for f in report.findings}  # GEMV at M = 1


class Rotary(nn.Module):
    """Like transformers' rotary embeddings: autocast on the input's device type."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(64, 64)
        self.register_buffer("inv_freq", torch.ones(32))

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):  # refuses "meta"
            return self.proj(x) * self.inv_freq.repeat(2)


def test_meta_module_is_captured_on_fake_cpu_tensors_and_left_as_it_was():
    with torch.device("meta"):
        model = Rotary()
    report = lint(model, example_inputs=(torch.randn(2, 64),))
    assert only(report, "Gemm").cost.flops == 2 * 2 * 64 * 64 + 2 * 64
    assert report.model.graph.values["inv_freq"].kind is ValueKind.WEIGHT
    state = [*model.parameters(), *model.buffers()]
    assert all(type(t) in (torch.Tensor, nn.Parameter) and t.is_meta for t in state)
    assert isinstance(model.proj.weight, nn.Parameter)


def test_exported_program_graph_module_and_pt2(tmp_path):
    q = torch.randn(1, 2, 8, 16)
    program = torch.export.export(Sdpa(), (q, q, q))
    expected = lint(Sdpa(), example_inputs=(q, q, q)).summary.flops
    assert lint(program).summary.flops == expected
    torch.export.save(program, tmp_path / "sdpa.pt2")
    report = lint(tmp_path / "sdpa.pt2")
    assert (report.model.format, report.summary.flops) == ("fx", expected)
    from torch.fx.experimental.proxy_tensor import make_fx

    aten = make_fx(Sdpa(), tracing_mode="fake")(q, q, q)  # an aten GraphModule with metas
    assert lint(aten).summary.flops == expected


def test_dynamic_dims_bind_by_input_axis():
    from torch.export import Dim

    args = (torch.randn(1, 2, 1, 16), torch.randn(1, 2, 32, 16), torch.randn(1, 2, 32, 16))
    past = Dim("past", max=4096)
    program = torch.export.export(Sdpa(), args, dynamic_shapes=({}, {2: past}, {2: past}))
    assumed = lint(program)
    assert [(d.name, d.value, d.assumed) for d in assumed.model.dims] == [("k[2]", 32, True)]
    bound = lint(program, dims={"k[2]": 100})
    # T = 100 keys: 2*1*1*100*(32 + 32) + 5*1*2*1*100
    assert only(bound, "Attention").cost.flops == 12_800 + 1_000
    assert lint(program, default_dims={"k[2]": 100, "batch": 3}).summary.flops == (
        bound.summary.flops
    )
    with pytest.raises(DimError, match="no such dim in the model"):
        lint(program, dims={"batch": 3})
    with pytest.raises(DimError, match="example values: --dim k\\[2\\]=N"):
        lint(program, strict_dims=True)


def test_dims_of_a_module_are_its_example_shapes():
    with pytest.raises(DimError, match="a module is linted at the shapes of its example inputs"):
        lint(nn.Linear(4, 4), example_inputs=(torch.randn(2, 4),), dims={"batch": 1})
    with pytest.raises(DimError, match="input shapes apply to ONNX models"):
        lint(nn.Linear(4, 4), example_inputs=(torch.randn(2, 4),), input_shapes={"x": (2, 4)})


def test_bad_sources_raise_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="needs example inputs"):
        lint(nn.Linear(2, 2))
    with pytest.raises(ModelLoadError, match="cannot lint a dict"):
        lint({"not": "a model"})
    (tmp_path / "bad.pt2").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="not a readable torch.export program") as err:
        lint(tmp_path / "bad.pt2")
    assert "\n" not in str(err.value)


class Opts:
    def __init__(self, scale: float) -> None:
        self.scale = scale


class WithOpts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 4)

    def forward(self, x, opts):
        return self.proj(x) * opts.scale  # marker: fallback-line


def test_export_failure_falls_back_to_symbolic_trace(caplog):
    with caplog.at_level(logging.WARNING, logger="memlint"):
        report = lint(WithOpts(), example_inputs=(torch.randn(2, 8), Opts(2.0)))
    assert "captured with torch.fx.symbolic_trace" in caplog.text
    assert report.model.metadata["capture"].startswith("torch.fx.symbolic_trace")
    assert only(report, "Gemm").cost.flops == 2 * 2 * 4 * 8 + 2 * 4
    assert report.model.graph.inputs == ("x",)
    assert only(report, "Mul").source.line == line_of("marker: fallback-line")


FACTORY = """
import torch

def build():
    return torch.nn.Linear(16, 4)

def inputs():
    return (torch.randn(3, 16),)

def inputs_and_kwargs():
    return (torch.randn(3, 16),), {}

def exits():
    raise SystemExit(0)
"""


def test_load_factory(tmp_path, monkeypatch):
    (tmp_path / "memlint_factory_mod.py").write_text(FACTORY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = load_factory("memlint_factory_mod:build", "memlint_factory_mod:inputs")
    assert only(lint(source), "Gemm").cost.flops == 2 * 3 * 4 * 16 + 3 * 4
    both = load_factory("memlint_factory_mod:build", "memlint_factory_mod:inputs_and_kwargs")
    assert both.args[0].shape == (3, 16) and dict(both.kwargs) == {}
    for spec, message in [
        ("no_colon", "expected the model as 'package.module:attribute'"),
        ("memlint_no_such_module:build", "cannot import 'memlint_no_such_module'"),
        ("memlint_factory_mod:nothing", "has no attribute 'nothing'"),
    ]:
        with pytest.raises(ModelLoadError, match=message):
            load_factory(spec, "memlint_factory_mod:inputs")
    with pytest.raises(ModelLoadError, match="needs --example-inputs"):
        load_factory("memlint_factory_mod:build")
    # a factory that exits does not end memlint with its exit code (0 would pass a CI gate)
    with pytest.raises(ModelLoadError, match=r"exits: called sys.exit\(0\) instead of returning"):
        load_factory("memlint_factory_mod:exits", "memlint_factory_mod:inputs")
    (tmp_path / "memlint_exiting_mod.py").write_text("raise SystemExit(3)\n", encoding="utf-8")
    exiting = r"importing 'memlint_exiting_mod' called sys.exit\(3\)"
    with pytest.raises(ModelLoadError, match=exiting):
        load_factory("memlint_exiting_mod:build", "memlint_factory_mod:inputs")


def test_linting_onnx_never_imports_torch():
    code = textwrap.dedent(
        """
        import sys
        import memlint
        memlint.lint("sample_models/small_cnn.onnx")
        from memlint.cli import run
        sys.argv = ["memlint", "sample_models/small_cnn.onnx", "--fail-on", "never"]
        try:
            run()
        except SystemExit:
            pass
        assert "torch" not in sys.modules, "torch was imported"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


# --- consistency with the ONNX export ----------------------------------------------------------


from torch_blocks import Block  # noqa: E402 - the block the ONNX tests export too


def test_block_through_fx_matches_its_onnx_export(tmp_path):
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    block, x = Block(128, 4).eval(), torch.randn(1, 4, 128)  # a 4-token prefill
    path = tmp_path / "block.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(block, (x,), str(path), dynamo=True, verbose=False)
    via_onnx = lint(path, hw="a100")
    via_fx = lint(block, example_inputs=(x,), hw="a100")
    assert via_fx.summary.flops == pytest.approx(via_onnx.summary.flops, rel=0.01)
    # The exporter writes each nn.Linear as MatMul + Add (the bias add a kernel of its own) and
    # the head split as Split + Transpose copies; in torch the bias is in addmm and the head
    # split is a view. Those copies are the whole difference; at 4 tokens the weights dominate.
    assert via_fx.summary.bytes_moved == pytest.approx(via_onnx.summary.bytes_moved, rel=0.10)
    assert via_fx.summary.bytes_by_kind.weights == pytest.approx(
        via_onnx.summary.bytes_by_kind.weights, rel=1e-3
    )
    # The exporter's separate bias Adds make longer unfused chains (bias Add + GELU); torch's
    # addmm has the bias inside, and the chain left (residual Add + LayerNorm) saves the
    # bytes of one tensor (~1 ns) and its launches (2.4 us each on a100): ML102 on both.
    fx_codes, onnx_codes = {f.code for f in via_fx.findings}, {f.code for f in via_onnx.findings}
    assert fx_codes == onnx_codes
    assert "ML102" in onnx_codes
    saving = {r: max(f.saving_s for f in rep.findings if f.code == "ML102")
              for r, rep in (("fx", via_fx), ("onnx", via_onnx))}  # fmt: skip
    assert saving["onnx"] > saving["fx"]


# --- the Done-when check: Hugging Face GPT-2 ---------------------------------------------------


@pytest.fixture(scope="module")
def gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=256
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 1000, (1, 128))
    report = lint(model, example_inputs=(ids,), example_kwargs={"use_cache": False}, hw="h100")
    return model, ids, report, Path(transformers.__file__).parent


def test_gpt2_matmul_flops_match_flop_counter(gpt2):
    from torch.utils.flop_counter import FlopCounterMode

    model, ids, report, _ = gpt2
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(ids, use_cache=False)
    expected = counter.get_total_flops()  # addmm and mm; CPU sdpa is not counted by torch
    # By hand: per layer c_attn 2*128*128*384 + c_proj 2*128*128*128 + c_fc 2*128*128*512 +
    # mlp c_proj 2*128*512*128 = 50,331,648; two layers + lm_head 2*128*128*1000 = 133,431,296.
    assert expected == 133_431_296
    products = [n for n in report.nodes if n.op_type in ("Gemm", "MatMul")]
    memlint_flops = sum(n.cost.flops for n in products)
    # memlint also counts the bias add, 1 per output element (+0.22%)
    assert memlint_flops == pytest.approx(expected, rel=0.01)
    assert memlint_flops - expected == 2 * 128 * (384 + 128 + 512 + 128)
    # attention: torch's sdpa_flop_count (the two batched matmuls) + memlint's 5 per score
    from torch.utils.flop_counter import sdpa_flop_count

    shape = (1, 4, 128, 32)
    for node in (n for n in report.nodes if n.op_type == "Attention"):
        assert node.cost.flops == sdpa_flop_count(shape, shape, shape) + 5 * 4 * 128 * 128


def test_gpt2_is_fully_resolved_and_weights_are_its_parameters(gpt2):
    model, _, report, _ = gpt2
    assert report.coverage.tensors_resolved == report.coverage.tensors_total
    assert report.coverage.unresolved_nodes == 0
    assert dict(report.coverage.unmodelled_ops) == {}  # position ids' diff is a Sub
    values = report.model.graph.values
    params = dict(model.named_parameters())  # lm_head.weight is tied to wte: listed once
    assert len(params) == 2 + 2 * 12 + 2
    for name, param in params.items():
        assert values[name].kind is ValueKind.WEIGHT, name
        assert values[name].nbytes == param.numel() * 4, name
    assert report.model.graph.inputs == ("input_ids",)


def test_gpt2_findings_point_into_transformers(gpt2):
    _, _, report, transformers_dir = gpt2
    assert report.findings
    for finding in report.findings:
        assert finding.source is not None, finding.code
        assert Path(finding.source.file).is_relative_to(transformers_dir), finding.source
        assert finding.source.line > 0
    codes = {f.code for f in report.findings}
    assert "ML102" in codes  # the decomposed tanh GELU of transformers' NewGELUActivation
    gelu = next(f for f in report.findings if "GELU" in f.message)
    assert Path(gelu.source.file).name == "activations.py"
    # a torch user is pointed at torch's fused op and torch.compile, not at an ONNX optimizer
    assert "approximate='tanh'" in gelu.fixes[0].text and "torch.compile" in gelu.fixes[0].text
    assert "onnxruntime" not in gelu.fixes[0].text
