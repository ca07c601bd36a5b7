"""`memlint fix` on real exports made in the test (conftest's small_exports: Optimum GPT-2 with
past, Llama with past, BERT): the output is written, loaded and run by onnxruntime, its outputs
stay within each transform's tolerance of the input's on the same synthetic inputs, and the
before/after report says what was resolved and what the prediction gained."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from memlint.cli import main

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def fix(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["fix", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_both(model: Path, fixed: Path) -> list[tuple[str, float]]:
    """(output, max |fixed - model| / max |model|) on memlint's synthetic inputs."""
    import onnxruntime as ort

    import memlint
    from memlint.confirm.inputs import synthesize_inputs

    feeds = synthesize_inputs(memlint.lint(str(model), hw="a100").model)
    before = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(str(fixed), providers=["CPUExecutionProvider"])
    names = [o.name for o in before.get_outputs()]
    old, new = before.run(names, feeds), after.run(names, feeds)
    return [(name, float(np.max(np.abs(b - a)) / np.max(np.abs(a))))
            for name, a, b in zip(names, old, new)]


def metric(data: dict, key: str) -> dict:
    return next(m for m in data["comparison"]["metrics"] if m["metric"] == key)


def test_gpt2_default_fix_end_to_end(small_exports, tmp_path, capsys):
    model, out = small_exports["gpt2"], tmp_path / "gpt2_fixed.onnx"
    code, stdout, stderr = fix(capsys, model, "-o", out, "--confirm", "--runs", "2",
                               "--format", "json")
    assert code == 0, stderr
    data = json.loads(stdout)
    status = {t["name"]: t["status"] for t in data["transforms"]}
    # ML102/ML103 -> the transformer optimizer's fusions; ML106 -> fp16 (the default precision)
    assert status == {"transformer-fusions": "applied", "fp16": "applied"}
    assert all(check["ok"] for check in data["confirm"]["checks"])
    assert [c["transform"] for c in data["confirm"]["checks"]] == ["transformer-fusions", "fp16"]
    # a decoder: the second feed pads the first half of the last row's attention_mask
    # (past 127 + 1 new token) at the left, as batched generation does
    assert data["confirm"]["feeds"] == ["all-ones mask", "left-padded mask"]
    # onnxruntime loads and runs the output; fusions are exact to float rounding and fp16
    # rounds to 11 bits: 2e-2 of the largest output value (memlint.fix.transforms)
    assert all(error < 2e-2 for _, error in run_both(model, out))
    # every element-wise chain was fused (Gelu, LayerNorm, SkipLayerNorm): no ML102 is left
    fixed_codes = {e["code"] for e in data["comparison"]["fixed"]}
    assert "ML102" in fixed_codes
    assert not any(f["code"] == "ML102" for f in data["comparison"]["new_findings"])
    # attention is fused where the optimizer knows the pattern; where it does not, the
    # finding is reported as still there, never dropped silently
    unresolved = {u["code"] for u in data["unresolved"]}
    assert "ML103" in fixed_codes or "ML103" in unresolved
    latency, kernels = metric(data, "latency"), metric(data, "kernels")
    assert latency["new"] < latency["old"] and kernels["new"] < kernels["old"]
    assert metric(data, "weights")["new"] == pytest.approx(metric(data, "weights")["old"] / 2,
                                                           rel=0.01)
    assert data["confirm"]["latency_before_s"] > 0 and data["confirm"]["latency_after_s"] > 0


def test_gpt2_fix_text_report(small_exports, tmp_path, capsys):
    model = small_exports["gpt2"]
    code, stdout, _ = fix(capsys, model, "-o", tmp_path / "out.onnx", "--select", "ML102")
    assert code == 0
    assert "applied     transformer-fusions (ML102" in stdout
    assert "optimize_model(MODEL, model_type=\"gpt2\"" in stdout
    for row in ("predicted latency ", "predicted latency, fused", "kernels ", "weight bytes moved"):
        assert row in stdout
    assert "findings resolved: ML102" in stdout
    code, markdown, _ = fix(capsys, model, "-o", tmp_path / "out2.onnx", "--select", "ML102",
                            "--format", "markdown")
    assert code == 0 and "| predicted latency |" in markdown and "| transformer-fusions |" in markdown


def test_bert_fp16_halves_the_weight_bytes(small_exports, tmp_path, capsys):
    # Every float32 weight becomes float16: 4 -> 2 bytes (the int64 shape constants are not
    # weights the report counts), so the weight bytes halve to within rounding.
    model, out = small_exports["bert"], tmp_path / "bert_fp16.onnx"
    code, stdout, stderr = fix(capsys, model, "-o", out, "--select", "ML106", "--confirm",
                               "--runs", "1", "--format", "json")
    assert code == 0, stderr
    data = json.loads(stdout)
    weights = metric(data, "weights")
    assert weights["new"] / weights["old"] == pytest.approx(0.5, abs=0.01)
    # at the bound sequence_length 1 the mask has one position: nothing to pad, one feed
    assert data["confirm"]["feeds"] == ["synthetic inputs"]
    assert all(error < 2e-2 for _, error in run_both(model, out))


def test_bert_fusions_hold_on_a_right_padded_mask(small_exports, tmp_path, capsys):
    # an encoder's batches pad at the right: onnxruntime's BERT attention fusion turns the mask
    # into key counts, exact there (it would not be for left padding, which encoders never get)
    model, out = small_exports["bert"], tmp_path / "bert_fused.onnx"
    code, stdout, stderr = fix(capsys, model, "-o", out, "--select", "ML102,ML103", "--dim",
                               "sequence_length=8", "--confirm", "--runs", "1", "--format", "json")
    assert code == 0, stderr
    data = json.loads(stdout)
    assert data["confirm"]["feeds"] == ["all-ones mask", "right-padded mask"]
    assert all(check["ok"] and check["error"] < 1e-3 for check in data["confirm"]["checks"])
    assert "Attention" in {n.op_type for n in onnx.load(str(out)).graph.node}


def test_int4_weight_only_cuts_the_decoder_weight_bytes_6x(small_exports, tmp_path, capsys):
    # MatMulNBits int4, symmetric, block 32: 0.5 B per weight + one fp32 scale per 32 weights
    # (4 / 32 = 0.125 B) = 0.625 B against fp32's 4 B: 6.4x. Every MatMul weight is
    # quantized, the LM head [64, 500] included; the embedding table (a Gather, not quantized)
    # is read one row per decoded token, and the RMSNorm scales stay fp32 (64 values each):
    # the whole step's weight bytes still fall more than 6x.
    model, out = small_exports["llama"], tmp_path / "llama_int4.onnx"
    code, stdout, stderr = fix(capsys, model, "-o", out, "--select", "ML106",
                               "--weights-dtype", "int4", "--confirm", "--runs", "1",
                               "--format", "json")
    assert code == 0, stderr
    data = json.loads(stdout)
    weights = metric(data, "weights")
    assert weights["old"] / weights["new"] >= 6
    assert all(check["ok"] for check in data["confirm"]["checks"])
    graph = onnx.load(str(out)).graph
    weights_of = {t.name for t in graph.initializer}
    assert any(n.op_type == "MatMulNBits" for n in graph.node)
    # no MatMul reads a float weight any more (those left multiply activations: attention)
    assert not [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights_of]


@pytest.fixture
def gpt2_split(small_exports, tmp_path) -> tuple[Path, Path]:
    """(the GPT-2 with its weights in model.onnx_data, the same graph alone in another
    folder: the weights file absent)."""
    whole, alone = tmp_path / "whole", tmp_path / "alone"
    whole.mkdir(), alone.mkdir()
    proto = onnx.load(str(small_exports["gpt2"]))
    onnx.save(proto, str(whole / "model.onnx"), save_as_external_data=True,
              location="model.onnx_data")
    shutil.copy(whole / "model.onnx", alone / "model.onnx")
    return whole / "model.onnx", alone / "model.onnx"


def test_weights_absent_refuses_precision_and_applies_graph_fixes(gpt2_split, capsys):
    whole, alone = gpt2_split
    out = alone.with_name("fixed.onnx")
    code, stdout, stderr = fix(capsys, alone, "-o", out)
    assert code == 0, stderr
    refused = [line for line in stderr.splitlines() if "refused" in line]
    assert refused == [("memlint: refused fp16: needs the weight values, and the weights file "
                        "model.onnx_data is absent")]
    assert "applied     transformer-fusions" in stdout and out.is_file()
    # the output refers to the input's weights file: with it beside the output, it runs and
    # matches the input (the fusions used no weight values)
    shutil.copy(whole.with_name("model.onnx_data"), out.with_name("model.onnx_data"))
    assert all(error < 1e-3 for _, error in run_both(whole, out))


def test_weights_absent_and_only_precision_selected_is_exit_2(gpt2_split, capsys):
    _, alone = gpt2_split
    out = alone.with_name("int4.onnx")
    code, _, stderr = fix(capsys, alone, "-o", out, "--select", "ML106", "--weights-dtype", "int4")
    assert code == 2 and not out.exists()
    assert "refused int4: needs the weight values" in stderr


def test_dry_run_lists_transforms_and_writes_nothing(small_exports, tmp_path, capsys):
    out = tmp_path / "never.onnx"
    code, stdout, _ = fix(capsys, small_exports["gpt2"], "-o", out, "--dry-run",
                          "--weights-dtype", "int8")
    assert code == 0 and not out.exists() and list(tmp_path.iterdir()) == []
    assert "dry run, nothing written" in stdout
    assert "would apply transformer-fusions" in stdout and "would apply int8" in stdout
    assert "predicted saving" in stdout and "bits=8" in stdout


def test_the_input_is_never_overwritten(small_exports, capsys):
    model = small_exports["gpt2"]
    before = model.read_bytes()
    code, _, stderr = fix(capsys, model, "-o", model)
    assert code == 2 and model.read_bytes() == before
    assert stderr.count("\n") == 1 and "must be a new file, not the input" in stderr


def test_missing_output_is_one_line_exit_2(small_exports, capsys):
    code, _, stderr = fix(capsys, small_exports["gpt2"])
    assert code == 2 and stderr == "memlint: error: memlint fix needs -o OUT (or --dry-run)\n"


def test_a_bad_precision_is_exit_2(small_exports, tmp_path, capsys):
    code, _, stderr = fix(capsys, small_exports["gpt2"], "-o", tmp_path / "x.onnx",
                          "--weights-dtype", "int3")
    assert code == 2 and "Invalid value for '--weights-dtype'" in stderr
    assert list(tmp_path.iterdir()) == []


def test_diverging_outputs_fail_naming_the_transform(small_exports, tmp_path, capsys,
                                                     monkeypatch):
    from memlint.fix import transforms

    strict = tuple(dataclasses.replace(t, tolerance=1e-12) if t.name == "fp16" else t
                   for t in transforms.TRANSFORMS)
    monkeypatch.setattr(transforms, "TRANSFORMS", strict)
    out = tmp_path / "out.onnx"
    code, _, stderr = fix(capsys, small_exports["bert"], "-o", out, "--select", "ML106",
                          "--confirm", "--runs", "1")
    assert code == 2 and not out.exists()
    assert "memlint: error: fp16: output 'last_hidden_state' moved by" in stderr
    assert "was not written" in stderr


CANCELLING = """<ir_version: 8, opset_import: ["" : 17]>
g (float[8,64,16,32] x) => (float[8,64,16,32] y) {
  t = Transpose<perm = [0, 2, 3, 1]>(x)
  u = Transpose<perm = [0, 3, 1, 2]>(t)
  y = Relu(u)
}"""


def test_cancelling_transposes_are_removed_by_onnxruntime(tmp_path, capsys):
    model, out = tmp_path / "t.onnx", tmp_path / "t_fixed.onnx"
    onnx.save(onnx.parser.parse_model(CANCELLING), str(model))
    code, stdout, stderr = fix(capsys, model, "-o", out, "--min-share", "0", "--min-saving-s", "0",
                               "--confirm", "--runs", "1", "--format", "json")
    assert code == 0, stderr
    data = json.loads(stdout)
    assert [t["name"] for t in data["transforms"]] == ["onnxruntime-graph-optimizations"]
    assert "Transpose" not in {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {e["code"] for e in data["comparison"]["fixed"]} == {"ML107"}
    assert data["confirm"]["checks"][0]["error"] == 0.0
    assert data["confirm"]["feeds"] == ["synthetic inputs"]  # no mask input: one feed


def test_external_data_stays_external(gpt2_split, capsys):
    whole, _ = gpt2_split
    out = whole.with_name("fixed.onnx")
    code, _, stderr = fix(capsys, whole, "-o", out, "--select", "ML102")
    assert code == 0, stderr
    assert out.with_name("fixed.onnx.data").is_file()  # the weights beside it, under its name
    assert sorted(p.name for p in whole.parent.iterdir()) == [
        "fixed.onnx", "fixed.onnx.data", "model.onnx", "model.onnx_data"]  # no temp left
    assert all(error < 1e-3 for _, error in run_both(whole, out))


def test_a_model_over_the_proto_limit_is_written_with_external_data(small_exports, tmp_path,
                                                                     capsys, monkeypatch):
    # a proto over 2 GB cannot be serialised: such a stage is saved with its weights beside it.
    # The limit lowered to 1 kB stands in for 2 GB: the embedded BERT comes out split.
    from memlint.fix import modelio

    monkeypatch.setattr(modelio, "PROTO_LIMIT", 1024)
    model, out = small_exports["bert"], tmp_path / "bert16.onnx"
    code, _, stderr = fix(capsys, model, "-o", out, "--select", "ML106")
    assert code == 0, stderr
    assert out.with_name("bert16.onnx.data").is_file()
    assert not (model.parent / "model.onnx.data").exists()  # the input's folder is untouched
    assert any(t.data_location == onnx.TensorProto.EXTERNAL
               for t in onnx.load(str(out), load_external_data=False).graph.initializer)
    assert all(error < 2e-2 for _, error in run_both(model, out))


FACTORY = """
import torch
from torch_blocks import Block

def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(Block(64, 4)).eval()

def inputs():
    return (torch.randn(1, 16, 64),)
"""


def test_a_torch_module_gets_the_fixes_as_code(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    (tmp_path / "memlint_fix_factory.py").write_text(FACTORY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = fix(capsys, "memlint_fix_factory:build", "--example-inputs",
                               "memlint_fix_factory:inputs", "-o", "never.onnx",
                               "--weights-dtype", "int4")
    assert code == 0, stderr
    assert "a torch module is not rewritten" in stdout
    assert "model = torch.compile(model)" in stdout
    assert "quantize_(model, Int4WeightOnlyConfig(group_size=32))" in stdout
    assert not (tmp_path / "never.onnx").exists()


def test_weights_absent_refuses_a_fusion_that_merges_weights(small_exports, tmp_path, capsys):
    # BERT's attention fusion concatenates the Q, K and V weights into one: on stand-in weights
    # the merged tensor differs between the two seeds, so the fusion needs the real values.
    alone = tmp_path / "model.onnx"
    onnx.save(onnx.load(str(small_exports["bert"])), str(alone), save_as_external_data=True,
              location="model.onnx_data")
    alone.with_name("model.onnx_data").unlink()
    code, _, stderr = fix(capsys, alone, "-o", tmp_path / "fixed.onnx")
    assert code == 2 and not (tmp_path / "fixed.onnx").exists()
    lines = stderr.splitlines()
    assert any(line.startswith("memlint: refused transformer-fusions: needs the weights (it "
                               "computes 'Attention_0_qkv_weight'") for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp folder left


def test_nan_in_the_same_place_agrees_and_nan_only_after_diverges():
    from memlint.fix.verify import OutputCheck, compare

    before = np.array([[np.nan, np.inf, 2.0], [1.0, -1.0, 4.0]], np.float32)
    # NaN and inf in the same places agree; the finite positions: max |4.004 - 4| / max |4| = 1e-3
    after = before.copy()
    after[1, 2] = 4.004
    same = compare(before, after)
    assert same.error == pytest.approx(1e-3, rel=1e-3) and same.nonfinite == 0
    assert compare(before, before).error == 0.0
    # one NaN appears (where 1.0 was), one disappears (where NaN was): beyond any tolerance
    after[1, 0], after[0, 0] = np.nan, 0.0
    moved = compare(before, after)
    assert moved.error == float("inf")
    assert (moved.nonfinite_after, moved.nonfinite_before) == (1, 1)
    check = OutputCheck("t", moved.error, "y", 1e9, "left-padded mask", 1, 1)
    assert not check.ok
    assert check.problem == ("is NaN or inf in 1 place(s) where the stage before is finite and "
                             "is finite in 1 place(s) where the stage before is NaN or inf")


def masked_softmax(guarded: bool, transposes: bool = False, decoder: bool = True):
    """y = Softmax(x + bias) over the last axis, x float[2, 4, 4] (batch, query, key), where bias
    is 0 where the key is both unpadded (attention_mask int64[2, 4]) and causal (key <= query),
    else -inf; `guarded`: y = Where(IsNaN(y), 0, y), as transformers' SDPA export writes it.
    (Where, not (1 - mask) * -inf: 0 * -inf is NaN.) `transposes`: x passes through two
    cancelling Transposes first, which memlint flags (ML102), so `memlint fix` plans the
    transformer fusions. `decoder`: x is also written as present.0.key, a KV-cache output, so
    the padded feed pads at the left, as batched generation does (else at the right)."""
    from onnx import TensorProto, helper, numpy_helper

    causal = np.tril(np.ones((4, 4), np.bool_))
    inits = [numpy_helper.from_array(causal, "causal"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(-np.inf, np.float32), "neginf")]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("Transpose", ["xt"], ["scores"], perm=[0, 2, 1])] if transposes \
        else [helper.make_node("Identity", ["x"], ["scores"])]
    nodes += [helper.make_node("Cast", ["attention_mask"], ["keep"], to=TensorProto.BOOL),
              helper.make_node("Unsqueeze", ["keep", "axis1"], ["keys"]),
              helper.make_node("And", ["keys", "causal"], ["seen"]),
              helper.make_node("Where", ["seen", "zero", "neginf"], ["bias"]),
              helper.make_node("Add", ["scores", "bias"], ["s"]),
              helper.make_node("Softmax", ["s"], ["p" if guarded else "y"], axis=-1)]
    if guarded:
        nodes += [helper.make_node("IsNaN", ["p"], ["nan"]),
                  helper.make_node("Where", ["nan", "zero", "p"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 4])]
    if decoder:
        nodes.append(helper.make_node("Identity", ["x"], ["present.0.key"]))
        outputs.append(helper.make_tensor_value_info("present.0.key", TensorProto.FLOAT,
                                                     [2, 4, 4]))
    graph = helper.make_graph(
        nodes, "masked_softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 4]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [2, 4])],
        outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_stage_that_differs_only_on_masked_rows_diverges_on_the_padded_mask(tmp_path):
    import memlint
    from memlint.fix.verify import confirm_stages, feeds_for

    guarded, bare = tmp_path / "guarded.onnx", tmp_path / "bare.onnx"
    onnx.save(masked_softmax(guarded=True), str(guarded))
    onnx.save(masked_softmax(guarded=False), str(bare))
    feeds = feeds_for(memlint.lint(str(guarded), hw="a100").model)
    assert [f.name for f in feeds] == ["all-ones mask", "left-padded mask"]
    # a decoder: the last batch row's first half is padding, the first row stays all ones
    assert feeds[1].values["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    stages = [("", 0.0, guarded), ("drop-nan-guard", 1e-3, bare)]
    # all-ones mask: every query sees at least its own key, no NaN: identical outputs
    ones = confirm_stages(stages, feeds[:1], runs=1)
    assert ones.checks[0].ok and ones.checks[0].error == 0.0
    # left-padded: batch row 1, queries 0 and 1 see only keys 0 and 1 (causal), which are
    # padding: 2 rows of 4 scores of -inf, Softmax gives 8 NaN; the guard makes them 0, the
    # bare model keeps them
    both = confirm_stages(stages, feeds, runs=1)
    assert both.feeds == ("all-ones mask", "left-padded mask")
    check = both.checks[0]
    assert not check.ok and check.feed == "left-padded mask" and check.output == "y"
    assert (check.nonfinite_after, check.nonfinite_before) == (8, 0)
    # the input model's own NaN is agreement: the bare model against itself
    assert confirm_stages([("", 0.0, bare), ("same", 0.0, bare)], feeds, runs=1).checks[0].ok


def test_an_encoders_padded_feed_pads_at_the_right(tmp_path):
    # no KV cache: batches of an encoder pad at the right, so every causal query row still
    # sees key 0 and no row is fully masked: the guard changes nothing, both stages agree
    import memlint
    from memlint.fix.verify import confirm_stages, feeds_for

    guarded, bare = tmp_path / "guarded.onnx", tmp_path / "bare.onnx"
    onnx.save(masked_softmax(guarded=True, decoder=False), str(guarded))
    onnx.save(masked_softmax(guarded=False, decoder=False), str(bare))
    feeds = feeds_for(memlint.lint(str(guarded), hw="a100").model)
    assert [f.name for f in feeds] == ["all-ones mask", "right-padded mask"]
    assert feeds[1].values["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    stages = [("", 0.0, guarded), ("drop-nan-guard", 1e-3, bare)]
    check = confirm_stages(stages, feeds, runs=1).checks[0]
    assert check.ok and check.error == 0.0 and check.nonfinite == 0


def test_fix_confirm_compares_the_padded_mask_and_names_the_transform(tmp_path, capsys,
                                                                      monkeypatch):
    from memlint.fix import transforms

    model = tmp_path / "attn.onnx"
    onnx.save(masked_softmax(guarded=True, transposes=True), str(model))
    args = ("--min-share", "0", "--min-saving-s", "0", "--confirm", "--runs", "1")
    code, stdout, stderr = fix(capsys, model, "-o", tmp_path / "ok.onnx", *args)
    assert code == 0, stderr
    assert "  outputs compared on 2 feeds: all-ones mask, left-padded mask\n" in stdout
    assert "outputs after transformer-fusions: max error 0 of the largest value (y, all-ones " \
           "mask)" in stdout  # no pattern matched: the graph as it was, exact on both feeds
    # the same step, its library call replaced by one that drops the NaN guard
    bare = masked_softmax(guarded=False)
    broken = tuple(dataclasses.replace(t, run=lambda path, facts: (bare, "dropped the guard"))
                   if t.name == "transformer-fusions" else t
                   for t in transforms.TRANSFORMS)
    monkeypatch.setattr(transforms, "TRANSFORMS", broken)
    out = tmp_path / "bad.onnx"
    code, _, stderr = fix(capsys, model, "-o", out, *args)
    assert code == 2 and not out.exists()
    assert stderr.splitlines()[-1] == (
        "memlint: error: transformer-fusions: output 'y' is NaN or inf in 8 place(s) "
        "where the stage before is finite, on the left-padded mask, beyond any tolerance; "
        f"{out} was not written")


def test_fix_html_page_holds_the_transforms_and_the_measured_checks(tmp_path, capsys):
    # the masked softmax behind two cancelling Transposes (ML102 -> the transformer fusions),
    # a decoder with a mask: --confirm compares two feeds, the page prints what the text does
    from test_diff import parse

    model, report = tmp_path / "attn.onnx", tmp_path / "fix.html"
    onnx.save(masked_softmax(guarded=True, transposes=True), str(model))
    args = ("--min-share", "0", "--min-saving-s", "0", "--confirm", "--runs", "1")
    code, text, stderr = fix(capsys, model, "-o", tmp_path / "text.onnx", *args)
    assert code == 0, stderr
    code, stdout, stderr = fix(capsys, model, "-o", tmp_path / "html.onnx", *args,
                               "--format", "html", "--report", report)
    assert code == 0 and stdout == "", stderr
    html = report.read_text()
    page = parse(html)
    assert "script" not in page.tags
    assert "<td class=\"name\">transformer-fusions</td>" in html and "ML102 x1" in html
    call = next(line.strip() for line in text.splitlines() if "optimize_model(" in line)
    assert call.replace('"', "&#34;") in html  # the library call, autoescaped
    assert "outputs compared on 2 feeds: all-ones mask, left-padded mask" in html
    assert ">ok</span> outputs after transformer-fusions: max error 0 of the largest value " \
           "(y, all-ones mask), tolerance 0.001" in html
    assert "measured on onnxruntime CPUExecutionProvider, median of 1 runs:" in html
    # memlint diff's table, before / after, without its gate column (fix sets no gates)
    assert page.cells[page.cells.index("metric"):][:5] == [
        "metric", "before", "after", "change", "predicted latency"]
    assert "fixed <code>ML102</code>" in html and "gates" not in html


def test_fix_html_dry_run_and_a_diverged_check(tmp_path, capsys):
    # a dry run: the transforms as "would apply", no table (nothing was written or linted)
    from test_diff import parse

    from memlint.fix import render
    from memlint.fix.apply import FixResult
    from memlint.fix.verify import Confirmation, OutputCheck

    model = tmp_path / "t.onnx"
    onnx.save(onnx.parser.parse_model(CANCELLING), str(model))
    code, html, stderr = fix(capsys, model, "--dry-run", "--min-share", "0", "--min-saving-s", "0",
                             "--format", "html")
    assert code == 0, stderr
    parse(html)
    assert "would apply</span>" in html and "onnxruntime-graph-optimizations" in html
    assert "dry run, nothing written" in html and "Before / after" not in html
    # a check that diverged prints DIVERGED, as _confirm_lines does, on one feed (no feeds line)
    run = Confirmation("CPUExecutionProvider", 1, 2e-6, 1e-6,
                       (OutputCheck("fp16", 0.5, "y", 1e-3, "synthetic inputs"),))
    result = FixResult("<m>.onnx", None, None, (), (), confirmation=run)
    html = render.render_html(result)
    parse(html)
    assert ">DIVERGED</span> outputs after fp16: max error 0.5 of the largest value (y), " \
           "tolerance 0.001" in html
    assert "outputs compared on" not in html and "&lt;m&gt;.onnx" in html
    assert "  outputs after fp16: max error 0.5 of the largest value (y), tolerance 0.001: " \
           "DIVERGED" in render.render_text(result)
