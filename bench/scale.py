"""Lint time and peak RSS on a 70B-parameter-shaped decoder whose weights are never read, and
issue 20's figures (figures, not a test).

    python bench/scale.py                        # done + scaling (below), min of 3 rounds
    python bench/scale.py --only done --repeat 3 # parts: done scaling 70b api default embedded growth
    python bench/scale.py --build DIR [--layers 80]   # write the model and stop
    python bench/scale.py --build-chain FILE --nodes 100000   # an element-wise chain
    python bench/scale.py --profile 70b|chain|gpt2|MODEL [--dim N=V] [--cli]  # cProfile

Issue 20's "done when", each a ratio to a bare `onnx.load(path, load_external_data=False)` of
the same file, whole processes measured in the same interleaved rounds (min of --repeat):

  done     the 70B-shaped decoder's CLI run (time <= 2.0x, peak RSS <= 300 MB; --format json
           beside it), Optimum exports of the tests' tiny GPT-2 and 2-layer Llama-GQA (their
           default decode step, <= 1.2x), element-wise chains of 100,000 (<= 4x, <= 1 GB) and
           200,000 nodes (time per node within 15% of the 100,000's), the 70B run with
           --sweep batch=1,2,4,8,16,32,64 against the same run without (<= 1.3x), and
           `memlint --version` (<= 0.15 s; what --version and --help import is listed).
           Beside them, per case, the floor any Python lint pays (Python, import onnx, the
           load, every node's fields read once), what the target leaves for memlint beyond it
           (in all and per node), what memlint spends there now, and how much of that its
           imports take (the floor importing the modules memlint's lint of the file imports).
           Then two fixed costs timed in a fresh process: one IR Node made against a tuple of
           its fields, and memlint's imports for a text lint, with the time Python spends
           creating dataclasses in them.
  scaling  the same builder at 10-160 layers and chains of 10k-200k nodes: memlint and the
           bare load of each, and memlint's time per 1,000 nodes beyond the load.

Before measuring, the bytecode of the memlint the children import is written (compileall), as
an installed package has it.

The model is Llama-2-70B in shape (80 layers, hidden 8192, 64 query heads and 8 KV heads of
128 (GQA), SwiGLU FFN 28672, vocab 32000, RMSNorm, rotary, fp16), one decode step with a KV
cache, written node for node in the idioms of an Optimum "text-generation-with-past" export
(Shape -> Gather -> Unsqueeze -> Concat reshape targets, rotary Slice ends from Shape -> Gather
-> Div, repeat_kv as Unsqueeze -> Expand -> Reshape, RMSNorm in fp32 between Casts,
scaled-dot-product attention with IsNaN guard) with a config.json beside it. Its 69 billion
weights (138 GB fp16) live in model.onnx_data, a sparse file made by truncate(): it takes no
disk, so reading a weight would be visible (page faults, time, RSS) and is checked directly:

- atime: the data file's atime is set before mtime before each run; ext4 (relatime) advances
  it on any read. A probe file read in the same folder shows that the check can fire.
- strace (when installed): one extra, untimed run records every openat of the lint process;
  the data file must never be opened.

Every measurement is a fresh process started from this small parent (which never imports onnx
or numpy), so the peak RSS (os.wait4's ru_maxrss, the same figure /usr/bin/time -v prints) is
the child's own. Parts:

  70b      `memlint model.onnx --hw h100 --dim batch_size=1 --dim sequence_length=1
           --dim past_sequence_length=4095` as a user runs it (CLI, LLM section, rules, text).
  api      memlint.lint(path, hw="h100", dims=...) alone, timed inside the process.
  default  `memlint model.onnx --hw h100` with no dims: the CLI loads the graph once to read
           its structure and again at the default scenario's dims (what the second load costs).
  embedded GPT-2 small with its weights in the file (sample_models/build.py, 653 MB):
           memlint.lint against a bare onnx.load of the same file (bench/lint_vs_load.py's
           measure; target <= 1.5x), and the two as whole processes.
  growth   time per 1,000 nodes at 1x, 4x, 16x graph sizes (5, 20, 80 layers).

The exit status is 1 when a target is missed (5 s and 500 MB for the 70B CLI run, weights
never read, embedded lint <= 1.5x load), so a script can watch it; the figures vary with the
machine's load, so compare runs made side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("done", "scaling", "70b", "api", "default", "embedded", "growth")
DEFAULT_PARTS = ("done", "scaling")
DIMS = ("batch_size=1", "sequence_length=1", "past_sequence_length=4095")
TARGET_S, TARGET_RSS_MB = 5.0, 500.0
TARGET_EMBEDDED = 1.5  # lint time / bare onnx.load time, embedded-weight models
# Issue 20's "done when" (each a ratio to a bare onnx.load of the same file in the same run,
# whole processes, min of the interleaved rounds)
DONE_70B_RATIO, DONE_70B_RSS_MB = 2.0, 300.0
DONE_SMALL_RATIO = 1.2  # Optimum GPT-2 decode step, 2-layer Llama-GQA block
DONE_CHAIN_RATIO, DONE_CHAIN_RSS_MB = 4.0, 1000.0  # 100,000-node element-wise chain
DONE_LINEAR = 1.15  # 200,000 nodes: time per node at most this times the 100,000-node one
DONE_SWEEP_RATIO = 1.3  # a 7-point LLM sweep / a single lint of the same model
DONE_VERSION_S = 0.15  # `memlint --version`
SWEEP = "batch=1,2,4,8,16,32,64"
CHAIN_SIZES = (10_000, 25_000, 50_000, 100_000, 200_000)
LAYER_SIZES = (10, 20, 40, 80, 160)

# Llama-2-70B (meta-llama/Llama-2-70b-hf config.json)
LLAMA_70B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
}


# ------------------------------------------------------------------------------------------------
# The model (built in a child process: the parent never imports onnx)
# ------------------------------------------------------------------------------------------------


def build_llama(out_dir: Path, layers: int, **overrides: int) -> dict:
    """Write out_dir/model.onnx, config.json and the sparse out_dir/model.onnx_data
    (overrides: config.json keys, e.g. hidden_size=64 for a graph onnxruntime can run)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    cfg = {**LLAMA_70B, "num_hidden_layers": layers, **overrides}
    hidden, ffn, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv_heads, head_dim = cfg["num_attention_heads"], cfg["num_key_value_heads"], \
        cfg["head_dim"]
    F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT
    I64, BOOL = TensorProto.INT64, TensorProto.BOOL
    np_of = {F16: np.float16, F32: np.float32, I64: np.int64, BOOL: np.bool_}
    data_name = "model.onnx_data"
    nodes: list = []
    inits: list = []
    used: dict[str, int] = {}
    offset = 0
    matmul_id = [1000]

    def name_of(scope: str, op: str) -> str:
        base = f"{scope}/{op}"
        n = used.get(base, 0)
        used[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def op(op_type: str, inputs: list[str], scope: str, out: str | None = None, **attrs) -> str:
        name = name_of(scope, op_type)
        output = out or f"{name}_output_0"
        nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output

    def const(value, scope: str, dtype: int = I64) -> str:
        name = name_of(scope, "Constant")
        tensor = numpy_helper.from_array(np.array(value, dtype=np_of[dtype]), "")
        nodes.append(helper.make_node("Constant", [], [f"{name}_output_0"], name=name,
                                      value=tensor))
        return f"{name}_output_0"

    def weight(name: str, shape: list[int]) -> str:
        nonlocal offset
        length = int(np.prod(shape)) * 2
        tensor = TensorProto(name=name, data_type=F16, dims=shape)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", data_name), ("offset", offset), ("length", length)):
            tensor.external_data.add(key=key, value=str(value))
        offset += length
        inits.append(tensor)
        return name

    def matmul_weight(shape: list[int]) -> str:
        matmul_id[0] += 1
        return weight(f"onnx::MatMul_{matmul_id[0]}", shape)

    def dim(x: str, axis: int, scope: str) -> str:  # Shape -> Gather: a scalar int64
        return op("Gather", [op("Shape", [x], scope), const(axis, scope)], scope, axis=0)

    def unsq(x: str, scope: str, axes=(0,)) -> str:
        return op("Unsqueeze", [x, const(list(axes), scope)], scope)

    def concat(pieces: list[str], scope: str) -> str:
        return op("Concat", pieces, scope, axis=0)

    def rms_norm(x: str, w: str, scope: str) -> str:
        x32 = op("Cast", [x], scope, to=F32)
        sq = op("Pow", [x32, const(2.0, scope, F32)], scope)
        mean = op("ReduceMean", [sq], scope, axes=[-1], keepdims=1)
        var = op("Add", [mean, const(cfg["rms_norm_eps"], scope, F32)], scope)
        inv = op("Div", [const(1.0, scope, F32), op("Sqrt", [var], scope)], scope)
        y = op("Cast", [op("Mul", [x32, inv], scope)], scope, to=F16)
        return op("Mul", [w, y], scope)

    def rotate(x: str, cos: str, sin: str, scope: str) -> str:
        """x * cos + rotate_half(x) * sin, the half computed from x's runtime shape."""
        half = op("Cast", [op("Cast", [op("Div", [dim(x, 3, scope), const(2, scope)], scope)],
                                 scope, to=I64)], scope, to=I64)
        first = op("Slice", [x, const([0], scope), unsq(half, scope), const([3], scope),
                             const([1], scope)], scope)
        second = op("Slice", [x, unsq(half, scope), const([9223372036854775807], scope),
                              const([3], scope), const([1], scope)], scope)
        rotated = op("Concat", [op("Neg", [second], scope), first], scope, axis=-1)
        return op("Add", [op("Mul", [x, cos], scope), op("Mul", [rotated, sin], scope)], scope)

    def repeat_kv(x: str, scope: str) -> str:
        """[b, kv, s, d] -> [b, kv * n_rep, s, d]: Unsqueeze, Expand, Reshape (exporter style)."""
        b, h, s, d = (dim(x, i, scope) for i in range(4))
        target = concat([unsq(b, scope), unsq(h, scope), const([heads // kv_heads], scope),
                         unsq(s, scope), unsq(d, scope)], scope)
        expanded = op("Expand", [unsq(x, scope, (2,)), target], scope)
        rows = op("Mul", [h, const(heads // kv_heads, scope)], scope)
        shape = concat([unsq(b, scope), unsq(rows, scope), unsq(s, scope), unsq(d, scope)], scope)
        return op("Reshape", [expanded, shape], scope)

    def layer(i: int, x: str, cos: str, sin: str, mask: str) -> str:
        scope, prefix = f"/model/layers.{i}", f"model.layers.{i}"
        attn, mlp = f"{scope}/self_attn", f"{scope}/mlp"
        h = rms_norm(x, weight(f"{prefix}.input_layernorm.weight", [hidden]),
                     f"{scope}/input_layernorm")
        bsz, q_len = dim(h, 0, attn), dim(h, 1, attn)

        def heads_of(t: str, n: int, proj: str) -> str:
            y = op("MatMul", [t, matmul_weight([hidden, n * head_dim])], f"{attn}/{proj}")
            shape = concat([unsq(bsz, attn), unsq(q_len, attn), const([n], attn),
                            const([head_dim], attn)], attn)
            return op("Transpose", [op("Reshape", [y, shape], attn)], attn, perm=[0, 2, 1, 3])

        q, k, v = heads_of(h, heads, "q_proj"), heads_of(h, kv_heads, "k_proj"), \
            heads_of(h, kv_heads, "v_proj")
        cos4, sin4 = unsq(cos, attn, (1,)), unsq(sin, attn, (1,))
        q, k = rotate(q, cos4, sin4, attn), rotate(k, cos4, sin4, attn)
        present_k = op("Concat", [f"past_key_values.{i}.key", k], attn, f"present.{i}.key",
                       axis=-2)
        present_v = op("Concat", [f"past_key_values.{i}.value", v], attn, f"present.{i}.value",
                       axis=-2)
        keys, values = repeat_kv(present_k, attn), repeat_kv(present_v, attn)
        kv_len = dim(keys, 2, attn)
        causal = op("Slice", [mask, const([0], attn), unsq(kv_len, attn), const([3], attn),
                              const([1], attn)], attn)
        scale = float(head_dim) ** -0.25  # sdpa's export scales q and k by sqrt(scale) each
        qs = op("Mul", [q, const(scale, attn, F16)], attn)
        ks = op("Mul", [op("Transpose", [keys], attn, perm=[0, 1, 3, 2]),
                        const(scale, attn, F16)], attn)
        bias = op("Where", [causal, const(0.0, attn, F16), const(-np.inf, attn, F16)], attn)
        scores = op("Add", [op("MatMul", [qs, ks], attn), bias], attn)
        probs = op("Softmax", [scores], attn, axis=-1)
        probs = op("Where", [op("IsNaN", [probs], attn), const(0.0, attn, F16), probs], attn)
        ctx = op("Transpose", [op("MatMul", [probs, values], attn)], attn, perm=[0, 2, 1, 3])
        ctx = op("Reshape", [ctx, concat([unsq(bsz, attn), unsq(q_len, attn),
                                          const([hidden], attn)], attn)], attn)
        x = op("Add", [x, op("MatMul", [ctx, matmul_weight([hidden, hidden])],
                             f"{attn}/o_proj")], scope)
        h = rms_norm(x, weight(f"{prefix}.post_attention_layernorm.weight", [hidden]),
                     f"{scope}/post_attention_layernorm")
        gate = op("MatMul", [h, matmul_weight([hidden, ffn])], f"{mlp}/gate_proj")
        act = op("Mul", [gate, op("Sigmoid", [gate], f"{mlp}/act_fn")], f"{mlp}/act_fn")
        up = op("MatMul", [h, matmul_weight([hidden, ffn])], f"{mlp}/up_proj")
        down = op("MatMul", [op("Mul", [act, up], mlp), matmul_weight([ffn, hidden])],
                  f"{mlp}/down_proj")
        return op("Add", [x, down], scope)

    # Embedding, positions, the 4-D causal mask and the rotary tables (computed once).
    top, rot = "/model", "/model/rotary_emb"
    x = op("Gather", [weight("model.embed_tokens.weight", [vocab, hidden]), "input_ids"],
           "/model/embed_tokens")
    past_len, q_len = dim("past_key_values.0.key", 2, top), dim(x, 1, top)
    total = op("Add", [past_len, q_len], top)
    cache_pos = op("Range", [past_len, total, const(1, top)], top)
    kv_idx = op("Range", [const(0, top), total, const(1, top)], top)
    causal = op("LessOrEqual", [unsq(kv_idx, top, (0, 1, 2)), unsq(cache_pos, top, (0, 1, 3))],
                top)  # [1, 1, q, k]
    padding = op("Cast", [unsq("attention_mask", top, (1, 2))], top, to=BOOL)  # [b, 1, 1, k]
    mask = op("And", [causal, padding], top)  # [b, 1, q, k]
    inv_freq = const((1.0 / 10000.0 ** (np.arange(0, head_dim, 2) / head_dim)).reshape(1, -1, 1),
                     rot, F32)
    pos = op("Cast", [unsq("position_ids", rot, (1,))], rot, to=F32)  # [b, 1, s]
    freqs = op("Transpose", [op("MatMul", [inv_freq, pos], rot)], rot, perm=[0, 2, 1])
    emb = op("Concat", [freqs, freqs], rot, axis=-1)  # [b, s, head_dim]
    cos = op("Cast", [op("Cos", [emb], rot)], rot, to=F16)
    sin = op("Cast", [op("Sin", [emb], rot)], rot, to=F16)
    for i in range(layers):
        x = layer(i, x, cos, sin, mask)
    x = rms_norm(x, weight("model.norm.weight", [hidden]), "/model/norm")
    op("MatMul", [x, matmul_weight([hidden, vocab])], "/lm_head", "logits")

    total_dim = "past_sequence_length + sequence_length"
    inputs = [
        helper.make_tensor_value_info("input_ids", I64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", I64, ["batch_size", total_dim]),
        helper.make_tensor_value_info("position_ids", I64, ["batch_size", "sequence_length"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", F16,
                                             ["batch_size", "sequence_length", vocab])]
    for i in range(layers):
        for part in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(
                f"past_key_values.{i}.{part}", F16,
                ["batch_size", kv_heads, "past_sequence_length", head_dim]))
            outputs.append(helper.make_tensor_value_info(
                f"present.{i}.{part}", F16, ["batch_size", kv_heads, total_dim, head_dim]))
    graph = helper.make_graph(nodes, "main_graph", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)],
                              producer_name="pytorch", producer_version="2.13.0")
    model.ir_version = 7
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    path.write_bytes(model.SerializeToString())
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    data = out_dir / data_name
    with data.open("wb") as handle:
        handle.truncate(offset)  # sparse: the size of the weights, no block on disk
    params = offset // 2
    return {"path": str(path), "nodes": len(nodes), "params": params, "data_bytes": offset,
            "data_blocks": os.stat(data).st_blocks, "model_bytes": path.stat().st_size}


CHAIN_OPS = ("Add", "Mul", "Relu", "Sigmoid", "Sub", "Tanh", "Div", "Neg")


def build_chain(path: Path, count: int) -> dict:
    """Write an element-wise chain of `count` nodes: x [8, 4096] fp32 through Add/Mul/Sub/Div
    by shared [4096] weights and Relu/Sigmoid/Tanh/Neg, one node after another (the graph a
    fusing runtime makes one kernel of; per-node costs dominate its lint)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    width = 4096
    weights = [numpy_helper.from_array(np.full(width, 0.5 + i, dtype=np.float32), f"w{i}")
               for i in range(4)]
    nodes, x = [], "x"
    for i in range(count):
        op = CHAIN_OPS[i % len(CHAIN_OPS)]
        inputs = [x, f"w{i % 4}"] if op in ("Add", "Mul", "Sub", "Div") else [x]
        y = "y" if i == count - 1 else f"t{i}"
        nodes.append(helper.make_node(op, inputs, [y], name=f"/chain/{op}_{i}"))
        x = y
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, width])], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return {"path": str(path), "nodes": count, "model_bytes": path.stat().st_size}


def build_optimum(root: Path) -> dict:
    """Optimum "text-generation-with-past" exports of the tests' tiny random models (no hub):
    GPT-2 (2 layers, hidden 64, 4 heads) and a Llama with grouped-query attention (2 layers,
    hidden 64, 4 query and 2 KV heads), as tests/test_llm_exports.py builds them."""
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    import transformers
    from clitools import optimum_export  # tests/clitools.py

    torch.manual_seed(0)
    models = {
        "gpt2": (transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=2, n_embd=64, n_head=4, vocab_size=500, n_positions=128,
        )), "text-generation-with-past"),
        "llama": (transformers.LlamaForCausalLM(transformers.LlamaConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=500, max_position_embeddings=128,
        )), "text-generation-with-past"),
    }  # fmt: skip
    folders = optimum_export(root, models)
    return {name: str(folder / "model.onnx") for name, folder in folders.items()}


def build_in_child(out_dir: Path, layers: int) -> dict:
    """Build in a fresh process so that this parent stays small (its RSS would leak into the
    children's ru_maxrss through fork)."""
    out = subprocess.run([sys.executable, __file__, "--build", str(out_dir), "--layers",
                          str(layers), "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def chain_in_child(work: Path, count: int) -> dict:
    path = work / f"chain_{count}.onnx"
    out = subprocess.run([sys.executable, __file__, "--build-chain", str(path), "--nodes",
                          str(count)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def optimum_in_child(work: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--build-optimum", str(work / "optimum")],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# Measuring a child process
# ------------------------------------------------------------------------------------------------


def memlint_command() -> list[str]:
    exe = shutil.which("memlint", path=str(Path(sys.executable).parent)) or shutil.which("memlint")
    return [exe] if exe else [sys.executable, "-m", "memlint.cli"]


def run_child(argv: list[str]) -> dict:
    """Wall seconds, peak RSS (MB, this child alone: os.wait4) and exit status of argv."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # cwd: a folder with no memlint/ in it, so that `python -c` imports the installed
        # package (or PYTHONPATH's), as a user's shell would
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=tempfile.gettempdir())
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"seconds": seconds, "rss_mb": usage.ru_maxrss / 1024, "rc": proc.returncode,
                "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def self_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def median_run(argv: list[str], repeat: int) -> dict:
    runs = [run_child(argv) for _ in range(repeat)]
    for r in runs:
        if r["rc"] not in (0, 1):  # 1: findings at --fail-on, the normal outcome
            raise SystemExit(f"{' '.join(argv)} exited {r['rc']}:\n{r['stderr'][-2000:]}")
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "min_s": min(r["seconds"] for r in runs),
            "rss_mb": max(r["rss_mb"] for r in runs), "last": runs[-1]}


# ------------------------------------------------------------------------------------------------
# "Weights are never read"
# ------------------------------------------------------------------------------------------------


def reset_atime(path: Path) -> None:
    """atime one hour before mtime: relatime (and strictatime) advance it on the next read."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_mtime_ns - 3_600_000_000_000, st.st_mtime_ns))


def was_read(path: Path) -> bool:
    st = os.stat(path)
    return st.st_atime_ns > st.st_mtime_ns - 3_600_000_000_000


def atime_check_works(folder: Path) -> bool:
    """Does a read of a file in `folder` show in its atime (no noatime mount)?"""
    probe = folder / "atime_probe.bin"
    probe.write_bytes(b"x" * 4096)
    reset_atime(probe)
    subprocess.run([sys.executable, "-c", f"open({str(probe)!r}, 'rb').read()"], check=True)
    works = was_read(probe)
    probe.unlink()
    return works


def strace_opens(argv: list[str], data: Path, model: Path) -> str:
    """'' when an strace'd run opens `model` but never `data`; else what it saw (or why it
    could not tell)."""
    strace = shutil.which("strace")
    if not strace:
        return "skipped (no strace)"
    with tempfile.NamedTemporaryFile(suffix=".strace") as log:
        subprocess.run([strace, "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", log.name,
                        *argv], capture_output=True)
        text = Path(log.name).read_text(errors="replace")
    if model.name not in text:
        return "skipped (strace did not see the model opened: ptrace not permitted?)"
    hits = [line for line in text.splitlines() if data.name in line]
    return "; ".join(hits[:3])


# ------------------------------------------------------------------------------------------------
# Parts
# ------------------------------------------------------------------------------------------------

API_CHILD = """
import json, sys, time
start = time.perf_counter()
import memlint.api
imported = time.perf_counter()
dims = {k: int(v) for k, v in (d.split("=") for d in sys.argv[2:])}
report = memlint.api.lint(sys.argv[1], hw="h100", dims=dims)
done = time.perf_counter()
rchar = next(int(l.split()[1]) for l in open("/proc/self/io") if l.startswith("rchar"))
print(json.dumps({"import_s": imported - start, "lint_s": done - imported, "nodes":
    len(report.nodes), "findings": len(report.findings), "rchar": rchar,
    "latency_s": report.summary.predicted_latency_s}))
"""


def part_70b(model: Path, repeat: int, data: Path) -> dict:
    """The CLI `repeat` times, each with the data file's atime reset before and read after;
    then one untimed run under strace."""
    argv = memlint_command() + [str(model), "--hw", "h100", "--fail-on", "never"]
    for d in DIMS:
        argv += ["--dim", d]
    runs, reads = [], []
    for _ in range(repeat):
        reset_atime(data)
        runs.append(median_run(argv, 1))
        reads.append(was_read(data))
    timed = {"seconds": statistics.median(r["seconds"] for r in runs),
             "min_s": min(r["seconds"] for r in runs),
             "rss_mb": max(r["rss_mb"] for r in runs), "last": runs[-1]["last"]}
    reset_atime(data)
    verdict = strace_opens(argv, data, model)
    return {"argv": argv, "timed": timed, "atime_works": atime_check_works(model.parent),
            "atime_read": any(reads) or was_read(data), "strace": verdict}


def part_embedded(work: Path, repeat: int) -> dict:
    """bench/lint_vs_load.py's measure (memlint.lint vs a bare onnx.load, each in a fresh
    process, interleaved) on GPT-2 small with embedded weights; and the CLI's wall time."""
    import lint_vs_load  # bench/lint_vs_load.py

    path = build_gpt2_small(work)
    dims = ["batch_size=1", "sequence_length=1", "past_sequence_length=128"]
    lint_vs_load._warm_page_cache(path)
    runs: dict[str, list[dict]] = {"load": [], "lint": []}
    for _ in range(repeat):
        for mode in runs:
            runs[mode].append(lint_vs_load._measure(mode, str(path), dims))
    argv = memlint_command() + [str(path), "--fail-on", "never"]
    for d in dims:
        argv += ["--dim", d]
    cli = median_run(argv, repeat)
    load = [sys.executable, "-c",
            f"import onnx; onnx.load({str(path)!r}, load_external_data=False)"]
    bare = median_run(load, repeat)
    return {
        "path": path, "mb": path.stat().st_size / 1e6,
        **{f"{mode}_s": statistics.median(r["seconds"] for r in rs) for mode, rs in runs.items()},
        **{f"{mode}_rss": max(r["peak_rss_mb"] for r in rs) for mode, rs in runs.items()},
        "cli_s": cli["seconds"], "cli_rss": cli["rss_mb"], "bare_s": bare["seconds"],
    }


def build_gpt2_small(out_dir: Path) -> Path:
    """GPT-2 small (12 layers, hidden 768, vocab 50257, fp32) with its weights in the file,
    from sample_models/build.py (seeded: the same bytes every time)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]); import build; "
        "m = build.build_decoder(build.GPT2_SMALL, build.EmbeddedWeights(0), 'gpt2_small'); "
        "open(sys.argv[1], 'wb').write(m.SerializeToString())"
    )
    path = out_dir / "gpt2_small_embedded.onnx"
    if not path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", code, str(path), str(ROOT / "sample_models")],
                       check=True)
    return path


LOAD_CODE = "import sys, onnx; onnx.load(sys.argv[1], load_external_data=False)"


def load_command(path: Path | str) -> list[str]:
    """A bare `onnx.load(path, load_external_data=False)` in a fresh process."""
    return [sys.executable, "-c", LOAD_CODE, str(path)]


def lint_command(path: Path | str, *extra: str, dims: tuple[str, ...] = ()) -> list[str]:
    return memlint_command() + [str(path), "--hw", "h100", "--fail-on", "never",
                                *(a for d in dims for a in ("--dim", d)), *extra]


class Rounds:
    """Commands run as fresh processes in interleaved rounds (each round runs every command
    once, in the same order), so that slow spells of a noisy machine hit all of them alike.
    Figures: the minimum wall time and the largest peak RSS of each command's runs."""

    def __init__(self) -> None:
        self.runs: dict[str, list[dict]] = {}
        self.argv: dict[str, list[str]] = {}

    def measure(self, commands: dict[str, list[str]], repeat: int, watch=None) -> None:  # noqa: ANN001
        """`watch(key, run)` wraps each run (the weights-never-read check)."""
        for _ in range(repeat):
            for key, argv in commands.items():
                self.argv[key] = argv
                result = watch(key, lambda a=argv: run_child(a)) if watch else run_child(argv)
                if result["rc"] not in (0, 1):  # 1: findings at --fail-on
                    raise SystemExit(f"{' '.join(argv)} exited {result['rc']}:\n"
                                     f"{result['stderr'][-3000:]}")
                self.runs.setdefault(key, []).append(result)

    def seconds(self, key: str) -> float:
        return min(r["seconds"] for r in self.runs[key])

    def rss(self, key: str) -> float:
        return max(r["rss_mb"] for r in self.runs[key])

    def count(self, key: str) -> int:
        return len(self.runs.get(key, ()))


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


HELP_CODE = """
import contextlib, io, sys
from memlint.cli import main
for args in (["--version"], ["--help"]):
    with contextlib.redirect_stdout(io.StringIO()):
        main(args)
print(" ".join(m for m in ("onnx", "numpy", "rich", "jinja2", "memlint.api") if m in sys.modules))
"""


MODULES_CODE = """
import contextlib, io, json, sys
before = set(sys.modules)
from memlint.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[2:])
json.dump([m for m in sys.modules if m not in before], open(sys.argv[1], "w"))
sys.exit(code)
"""

# The least any Python lint of the file does: start Python, import onnx, load the file and read
# every node's fields once into one tuple per node; with argv[2], first import the modules a
# memlint lint of the file imports, in the order it imports them.
FLOOR_CODE = """
import importlib, json, sys
for name in json.load(open(sys.argv[2])) if len(sys.argv) > 2 else ():
    importlib.import_module(name)
import onnx
graph = onnx.load(sys.argv[1], load_external_data=False).graph
nodes = [(n.name, n.op_type, n.domain, tuple(n.input), tuple(n.output)) for n in graph.node]
"""


def floor_commands(work: Path, tag: str, lint_argv: list[str]) -> dict[str, list[str]]:
    """The two floor processes of one case (FLOOR_CODE): without memlint's modules, and with
    those its lint imports, recorded by one untimed in-process run of that lint."""
    names = work / f"modules_{tag}.json"
    args = lint_argv[len(memlint_command()):]
    subprocess.run([sys.executable, "-c", MODULES_CODE, str(names), *args], check=True,
                   capture_output=True, cwd=tempfile.gettempdir())
    floor = [sys.executable, "-c", FLOOR_CODE, args[0]]
    return {f"floor:{tag}": floor, f"imports:{tag}": [*floor, str(names)]}


# Two fixed costs under every lint, timed in a fresh process: creating one IR Node (a frozen
# dataclass) against a tuple of the same fields, and memlint's imports for a text lint with the
# part of them that is Python creating dataclasses.
UNIT_COSTS_CODE = """
import dataclasses, time
import onnx, numpy
made = []
real = dataclasses._process_class
def timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return real(*args, **kwargs)
    finally:
        made.append(time.perf_counter() - start)
dataclasses._process_class = timed
start = time.perf_counter()
import memlint.cli, memlint.runner, memlint.report.text, memlint.llm.session, memlint.engine
imports = time.perf_counter() - start
from memlint.ir import Node
empty = {}
best = [float("inf")] * 2
for _ in range(5):
    for i, make in enumerate((Node, lambda *a: a)):
        start = time.perf_counter()
        for _ in range(100_000):
            make("n", "Add", "", ("a", "b"), ("c",), empty, empty, None)
        best[i] = min(best[i], (time.perf_counter() - start) / 100_000)
print(f"one IR Node {best[0] * 1e6:.2f} us (the same 8 fields as a tuple {best[1] * 1e6:.2f} "
      f"us; 100,000 made, best of 5); memlint's imports for a text lint {imports * 1e3:.0f} ms, "
      f"{sum(made) * 1e3:.0f} ms of it creating {len(made)} dataclasses")
"""


def unit_costs() -> str:
    out = subprocess.run([sys.executable, "-c", UNIT_COSTS_CODE], capture_output=True, text=True,
                         check=False, cwd=tempfile.gettempdir())
    return out.stdout.strip() or out.stderr.strip()[-300:]


def floor_lines(rounds: Rounds, cases: list[tuple[str, str, int, float]]) -> None:
    """Per case: what its target leaves for memlint (its imports and its work) beyond the floor
    any Python lint pays, against what memlint spends there now."""
    print("\n  what each target leaves for memlint beyond the floor of any Python lint (Python, "
          "import onnx, the load, every node's fields read once), in the same rounds; memlint's "
          "imports: the same floor importing the modules its lint imports")
    print(f"  {'':<34} {'floor':>13} | {'target':>6} | {'left for memlint':>16} | "
          f"{'memlint spends':>14} | {'of which imports':>16} | per node: left / spent")
    for label, tag, nodes, target in cases:
        load, floor = rounds.seconds(f"load:{tag}"), rounds.seconds(f"floor:{tag}")
        lint, imports = rounds.seconds(f"lint:{tag}"), rounds.seconds(f"imports:{tag}")
        left, spent = target * load - floor, lint - floor
        print(f"  {label:<34} {floor:5.2f}s {floor / load:5.2f}x | {target * load:5.2f}s | "
              f"{left:15.3f}s | {spent:13.3f}s | {imports - floor:15.3f}s | "
              f"{left / nodes * 1e6:.1f} / {spent / nodes * 1e6:.1f} us")


def part_done(work: Path, rounds: Rounds, repeat: int, layers: int) -> bool:
    """Every figure of issue 20's "done when", as ratios measured in one run."""
    built = build_cached(work, layers)
    model, data = Path(built["path"]), Path(built["path"]).with_name("model.onnx_data")
    optimum = optimum_in_child(work)
    chains = {n: chain_cached(work, n) for n in (100_000, 200_000)}
    commands = {
        "load:70b": load_command(model),
        "lint:70b": lint_command(model, dims=DIMS),
        "sweep:70b": lint_command(model, "--sweep", SWEEP, dims=DIMS),
        "json:70b": lint_command(model, "--format", "json", "--output",
                                 str(work / "70b.json"), dims=DIMS),
        "load:gpt2": load_command(optimum["gpt2"]),
        "lint:gpt2": lint_command(optimum["gpt2"]),
        "load:llama": load_command(optimum["llama"]),
        "lint:llama": lint_command(optimum["llama"]),
        "version": memlint_command() + ["--version"],
        "help": memlint_command() + ["--help"],
    }
    for n, info in chains.items():
        commands[f"load:chain{n}"] = load_command(info["path"])
        commands[f"lint:chain{n}"] = lint_command(info["path"])
    for tag in ("70b", "gpt2", "llama", "chain100000"):
        commands.update(floor_commands(work, tag, commands[f"lint:{tag}"]))
    reads: list[str] = []

    def watch(key: str, run):  # noqa: ANN001, ANN202 - the data file's atime around 70B runs
        if not key.endswith(":70b"):
            return run()
        reset_atime(data)
        result = run()
        if was_read(data):
            reads.append(key)
        return result

    print(f"\n[done] issue 20's targets: whole processes, min of {repeat} interleaved rounds; "
          "ratio = memlint's time / a bare `onnx.load(path, load_external_data=False)` of the "
          "same file in the same round")
    rounds.measure(commands, repeat, watch)
    reset_atime(data)
    traced = strace_opens(commands["lint:70b"], data, model)
    imported = subprocess.run([sys.executable, "-c", HELP_CODE], capture_output=True, text=True,
                              check=False,
                              cwd=tempfile.gettempdir()).stdout.strip()
    ok = True

    def line(label: str, key: str, target: float | None = None, rss: float | None = None,
             base: str | None = None) -> bool:
        base = base or key.replace("lint:", "load:")
        ratio = rounds.seconds(key) / rounds.seconds(base)
        met = (target is None or ratio <= target) and (rss is None or rounds.rss(key) <= rss)
        goal = "" if target is None else f"target <= {target:.1f}x" + (
            f", <= {rss:.0f} MB" if rss is not None else "") + f": {verdict(met)}"
        print(f"  {label:<34} {rounds.seconds(key):7.2f} s {rounds.rss(key):6.0f} MB | load "
              f"{rounds.seconds(base):6.2f} s {rounds.rss(base):5.0f} MB | {ratio:5.2f}x  {goal}")
        return met

    print(f"  {'':<34} {'memlint':>16} | {'bare onnx.load':>21} | ratio")
    ok &= line(f"70B-shaped ({built['nodes']:,} nodes)", "lint:70b", DONE_70B_RATIO,
               DONE_70B_RSS_MB)
    line("  same, --format json", "json:70b", base="load:70b")
    ok &= line("Optimum GPT-2 decode step", "lint:gpt2", DONE_SMALL_RATIO)
    ok &= line("Optimum Llama-GQA, 2 layers", "lint:llama", DONE_SMALL_RATIO)
    ok &= line("element-wise chain, 100,000 nodes", "lint:chain100000", DONE_CHAIN_RATIO,
               DONE_CHAIN_RSS_MB)
    line("element-wise chain, 200,000 nodes", "lint:chain200000")
    per = [rounds.seconds(f"lint:chain{n}") / n for n in (100_000, 200_000)]
    linear = per[1] / per[0]
    print(f"  200,000 nodes linear in time: {per[1] * 1e6:.0f} us per node against "
          f"{per[0] * 1e6:.0f} us at 100,000 ({linear:.2f}x; target <= {DONE_LINEAR:.2f}x): "
          f"{verdict(linear <= DONE_LINEAR)}")
    ok &= linear <= DONE_LINEAR
    sweep = rounds.seconds("sweep:70b") / rounds.seconds("lint:70b")
    print(f"  70B with --sweep {SWEEP}: {rounds.seconds('sweep:70b'):.2f} s, {sweep:.2f}x the "
          f"single lint (target <= {DONE_SWEEP_RATIO:.1f}x): "
          f"{verdict(sweep <= DONE_SWEEP_RATIO)}")
    ok &= sweep <= DONE_SWEEP_RATIO
    version = rounds.seconds("version")
    print(f"  memlint --version {version:.3f} s (target <= {DONE_VERSION_S:.2f} s: "
          f"{verdict(version <= DONE_VERSION_S)}); memlint --help {rounds.seconds('help'):.3f} "
          f"s; imported by --version and --help: {imported or 'none of onnx, numpy, rich'}")
    ok &= version <= DONE_VERSION_S
    never = not reads
    print(f"  70B weights read: atime {'never advanced' if never else 'ADVANCED in ' + ', '.join(reads)}"
          f" (a probe read {'does' if atime_check_works(model.parent) else 'does NOT'} advance "
          f"atime here); strace: {traced or 'model.onnx_data never opened'}")
    ok &= never and (not traced or traced.startswith("skipped"))
    floor_lines(rounds, [
        ("70B-shaped", "70b", built["nodes"], DONE_70B_RATIO),
        ("Optimum GPT-2 decode step", "gpt2", nodes_of(optimum["gpt2"]), DONE_SMALL_RATIO),
        ("Optimum Llama-GQA, 2 layers", "llama", nodes_of(optimum["llama"]), DONE_SMALL_RATIO),
        ("element-wise chain, 100,000 nodes", "chain100000", 100_000, DONE_CHAIN_RATIO),
    ])
    print(f"  fixed costs, in a fresh process: {unit_costs()}")
    return ok


def nodes_of(path: Path | str) -> int:
    """The node count of an ONNX file's top graph (read in a child: the parent never imports
    onnx)."""
    code = "import sys, onnx; print(len(onnx.load(sys.argv[1], load_external_data=False).graph.node))"
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                         capture_output=True, text=True)
    return int(out.stdout)


def part_scaling(work: Path, rounds: Rounds, repeat: int) -> None:
    """The scaling table: the 70B-shaped builder at 10-160 layers and chains of 10k-200k nodes,
    memlint and a bare load of each, whole processes (runs made by `done` are reused)."""
    print(f"\n[scaling] whole processes, min of {repeat} interleaved round(s) (or of the runs "
          "[done] made); per 1,000 nodes: memlint's time less the bare load's")
    cases = [(f"{n} layers", "70b" if n == 80 else f"layers{n}", DIMS, build_cached(work, n))
             for n in LAYER_SIZES]
    cases += [(f"chain {n:,}", f"chain{n}", (), chain_cached(work, n)) for n in CHAIN_SIZES]
    keys = {}
    for label, tag, dims, info in cases:
        keys[label] = (f"load:{tag}", f"lint:{tag}", info)
        commands = {f"load:{tag}": load_command(info["path"]),
                    f"lint:{tag}": lint_command(info["path"], dims=dims)}
        rounds.measure(commands, max(0, repeat - min(rounds.count(k) for k in commands)))
    print(f"  {'':<14} {'nodes':>8} {'memlint':>9} {'RSS':>8} {'load':>7} {'RSS':>7} "
          f"{'ratio':>6} {'ms/1k nodes':>12}")
    for label, (load, lint, info) in keys.items():
        extra = rounds.seconds(lint) - rounds.seconds(load)
        print(f"  {label:<14} {info['nodes']:8,} {rounds.seconds(lint):8.2f}s "
              f"{rounds.rss(lint):6.0f}MB {rounds.seconds(load):6.2f}s {rounds.rss(load):5.0f}MB "
              f"{rounds.seconds(lint) / rounds.seconds(load):5.2f}x "
              f"{extra / info['nodes'] * 1000 * 1000:11.1f}")


_BUILT: dict[tuple, dict] = {}


def build_cached(work: Path, layers: int) -> dict:
    key = ("llama", layers)
    if key not in _BUILT:
        _BUILT[key] = build_in_child(work / f"llama_{layers}", layers)
    return _BUILT[key]


def chain_cached(work: Path, count: int) -> dict:
    key = ("chain", count)
    if key not in _BUILT:
        _BUILT[key] = chain_in_child(work, count)
    return _BUILT[key]


def part_api(model: Path, repeat: int) -> dict:
    argv = [sys.executable, "-c", API_CHILD, str(model), *DIMS]
    runs = [run_child(argv) for _ in range(repeat)]
    stats = [json.loads(r["stdout"].strip().splitlines()[-1]) for r in runs]
    return {"lint_s": statistics.median(s["lint_s"] for s in stats),
            "import_s": statistics.median(s["import_s"] for s in stats),
            "wall_s": statistics.median(r["seconds"] for r in runs),
            "rss_mb": max(r["rss_mb"] for r in runs), "stats": stats[-1]}


def part_default(model: Path, repeat: int) -> dict:
    argv = memlint_command() + [str(model), "--hw", "h100", "--fail-on", "never"]
    timed = median_run(argv, repeat)
    header = next((line for line in timed["last"]["stdout"].splitlines()
                   if line.startswith("dims:")), "")
    return {"timed": timed, "dims": header}


def part_growth(work: Path, repeat: int, sizes: tuple[int, ...]) -> list[dict]:
    rows = []
    for layers in sizes:
        built = build_in_child(work / f"llama_{layers}", layers)
        api = part_api(Path(built["path"]), repeat)
        rows.append({"layers": layers, "nodes": built["nodes"], **api})
    return rows


def profile(target: str, layers: int, dims: tuple[str, ...] | None, nodes: int = 100_000,
            cli: bool = False) -> None:
    """cProfile of one memlint.lint call (imports warmed first): `target` is 70b (the graph
    built here), chain (an element-wise chain of `nodes` nodes, built here), gpt2 (GPT-2 small
    with embedded weights, built here) or a model path. cli=True profiles the whole command
    line run instead (`memlint MODEL --hw h100 --dim ...`: lint, LLM sections, text report)."""
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory(prefix="memlint-scale-") as tmp:
        if target == "70b":
            path = Path(build_in_child(Path(tmp), layers)["path"])
        elif target == "chain":
            path = Path(chain_in_child(Path(tmp), nodes)["path"])
            dims = dims or ()
        elif target == "gpt2":
            path = build_gpt2_small(Path(tmp))
            dims = dims or ("batch_size=1", "sequence_length=1", "past_sequence_length=128")
        else:
            path = Path(target)
        import memlint.api

        dims = DIMS if dims is None else dims
        binding = {k: int(v) for k, v in (d.split("=") for d in dims)}
        memlint.api.lint(str(ROOT / "sample_models/gpt2_decoder_step.onnx"), hw="h100",
                         dims={"batch_size": 1, "sequence_length": 1,
                               "past_sequence_length": 8})  # warm the imports
        profiler = cProfile.Profile()
        start = time.perf_counter()
        if cli:
            import contextlib
            import io

            from memlint.cli import main as cli_main

            argv = lint_command(path, dims=dims)[1:] if memlint_command()[0].endswith(
                "memlint") else lint_command(path, dims=dims)[3:]
            with contextlib.redirect_stdout(io.StringIO()):
                profiler.runcall(cli_main, argv)
            print(f"memlint {' '.join(argv)}: {time.perf_counter() - start:.3f} s under cProfile")
        else:
            profiler.runcall(memlint.api.lint, str(path), hw="h100", dims=binding)
            print(f"memlint.lint({path.name}): {time.perf_counter() - start:.3f} s under "
                  "cProfile")
        stats = pstats.Stats(profiler).strip_dirs().sort_stats("cumulative")
        stats.print_stats(25)
        stats.sort_stats("tottime").print_stats(20)


# ------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=PARTS, action="append")
    parser.add_argument("--build", type=Path, help="write the model into this folder and stop")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build-chain", type=Path, metavar="FILE",
                        help="write an element-wise chain of --nodes nodes and stop")
    parser.add_argument("--nodes", type=int, default=100_000, help="--build-chain, --profile chain")
    parser.add_argument("--build-optimum", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="70b|chain|gpt2|MODEL",
                        help="cProfile one memlint.lint of this model and stop")
    parser.add_argument("--cli", action="store_true",
                        help="--profile the whole command line run, not memlint.lint alone")
    parser.add_argument("--dim", action="append", help="--profile at these dims")
    parser.add_argument("--keep", type=Path, help="build into (and keep) this folder")
    parser.add_argument("--scale-repeat", type=int, default=1,
                        help="rounds per point of the scaling table (default 1)")
    args = parser.parse_args()
    if args.build_chain:
        print(json.dumps(build_chain(args.build_chain, args.nodes)))
        return 0
    if args.build_optimum:
        print(json.dumps(build_optimum(args.build_optimum)))
        return 0
    if args.build:
        info = build_llama(args.build, args.layers)
        print(json.dumps(info) if args.json else
              f"wrote {info['path']}: {info['nodes']:,} nodes, {info['params'] / 1e9:.1f} B "
              f"parameters, {info['data_bytes'] / 1e9:.1f} GB data file in "
              f"{info['data_blocks']} blocks")
        return 0
    if args.profile:
        profile(args.profile, args.layers, tuple(args.dim) if args.dim else None, args.nodes,
                args.cli)
        return 0
    parts = args.only or list(DEFAULT_PARTS)
    work = args.keep or Path(tempfile.mkdtemp(prefix="memlint-scale-"))
    try:
        return report(work, args.layers, args.repeat, parts, args.scale_repeat)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


COMPILE_CODE = """
import compileall, os, sys, memlint, memlint.rules
folders = {os.path.dirname(memlint.__file__), *memlint.rules.__path__}
ok = all(compileall.compile_dir(f, quiet=2, force=False) for f in sorted(folders))
print(" ".join(sorted(folders)) if ok else "FAILED")
"""


def compile_memlint() -> str:
    """Write the bytecode of the memlint the children import (as pip does when it installs a
    package), so that no child compiles memlint's sources: with PYTHONDONTWRITEBYTECODE set (as
    in some sandboxes) every process would otherwise compile them again (about 0.1 s each)."""
    out = subprocess.run([sys.executable, "-c", COMPILE_CODE], capture_output=True, text=True,
                         check=False,
                         cwd=tempfile.gettempdir())
    return out.stdout.strip() or out.stderr.strip()[-300:]


IMPORT_CODE = """
import time
start = time.perf_counter()
import numpy
numpy_s = time.perf_counter() - start
import ml_dtypes
ml_dtypes_s = time.perf_counter() - start - numpy_s
import onnx
print(f"onnx {onnx.__version__}, ml_dtypes {ml_dtypes.__version__}: import onnx "
      f"{time.perf_counter() - start:.3f} s, of which numpy {numpy_s:.3f} s and ml_dtypes "
      f"{ml_dtypes_s:.3f} s")
"""


def import_costs() -> str:
    """What every bare load imports, timed in a fresh process: the floor under each ratio."""
    out = subprocess.run([sys.executable, "-c", IMPORT_CODE], capture_output=True, text=True,
                         check=False, cwd=tempfile.gettempdir())
    return out.stdout.strip() or out.stderr.strip()[-300:]


def report(work: Path, layers: int, repeat: int, parts: list[str], scale_repeat: int = 1) -> int:
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, bench parent RSS "
          f"{self_rss_mb():.0f} MB (the floor of every child's peak RSS figure)")
    print(f"bare load's imports: {import_costs()}")
    print(f"memlint bytecode written for {compile_memlint()} (PYTHONDONTWRITEBYTECODE="
          f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})")
    start = time.perf_counter()
    built = build_cached(work, layers)
    model, data = Path(built["path"]), Path(built["path"]).with_name("model.onnx_data")
    print(f"model: {layers} layers, {built['nodes']:,} nodes, {built['params'] / 1e9:.2f} B "
          f"parameters fp16; model.onnx {built['model_bytes'] / 1e6:.1f} MB; "
          f"model.onnx_data {built['data_bytes'] / 1e9:.1f} GB sparse, "
          f"{built['data_blocks']} blocks on disk (built in {time.perf_counter() - start:.1f} s)")
    ok = True
    cli_70b = None
    rounds = Rounds()
    if "done" in parts:
        ok &= part_done(work, rounds, repeat, layers)
    if "scaling" in parts:
        part_scaling(work, rounds, scale_repeat)
    if "70b" in parts:
        r = part_70b(model, repeat, data)
        t = r["timed"]
        print(f"\n[70b] {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(r['argv']))}")
        print(f"  wall {t['seconds']:.2f} s (median of {repeat}, min {t['min_s']:.2f} s), peak "
              f"RSS {t['rss_mb']:.0f} MB; targets <= {TARGET_S:.0f} s, <= {TARGET_RSS_MB:.0f} MB: "
              f"{'met' if t['seconds'] <= TARGET_S and t['rss_mb'] <= TARGET_RSS_MB else 'MISSED'}")
        ok &= t["seconds"] <= TARGET_S and t["rss_mb"] <= TARGET_RSS_MB
        never = not r["atime_read"]
        print(f"  weights read: atime {'unchanged' if never else 'ADVANCED'} (a probe read "
              f"{'does' if r['atime_works'] else 'does NOT'} advance atime here); "
              f"strace: {r['strace'] or 'model.onnx_data never opened'}")
        ok &= never and (not r["strace"] or r["strace"].startswith("skipped"))
        cli_70b = t["seconds"]
        first = next((line for line in t["last"]["stdout"].splitlines()
                      if line.startswith("predicted latency")), "")
        print(f"  {' '.join(first.split())}")
    if "api" in parts:
        r = part_api(model, repeat)
        s = r["stats"]
        print("\n[api] memlint.lint(model.onnx, hw='h100', dims=...) in one process")
        print(f"  lint {r['lint_s']:.2f} s + import {r['import_s']:.2f} s (process wall "
              f"{r['wall_s']:.2f} s), peak RSS {r['rss_mb']:.0f} MB; {s['nodes']:,} nodes, "
              f"{s['findings']} findings; the process read {s['rchar'] / 1e6:.1f} MB in all "
              f"(rchar; the weights are {built['data_bytes'] / 1e9:.0f} GB)")
    if "default" in parts:
        r = part_default(model, repeat)
        t = r["timed"]
        print("\n[default] memlint model.onnx --hw h100 (no --dim: the default LLM scenario)")
        print(f"  wall {t['seconds']:.2f} s (median of {repeat}), peak RSS {t['rss_mb']:.0f} MB; "
              f"{r['dims']}")
        if cli_70b is not None:
            print(f"  the second load at the scenario's dims costs {t['seconds'] - cli_70b:+.2f} s "
                  f"over the run with every dim given")
    if "embedded" in parts:
        r = part_embedded(work, repeat)
        ratio = r["lint_s"] / r["load_s"]
        print(f"\n[embedded] GPT-2 small, weights in the file ({r['mb']:,.0f} MB); "
              f"bench/lint_vs_load.py's measure, median of {repeat}")
        print(f"  onnx.load(load_external_data=False) {r['load_s']:.2f} s, peak RSS "
              f"{r['load_rss']:.0f} MB")
        print(f"  memlint.lint(hw='a100')              {r['lint_s']:.2f} s, peak RSS "
              f"{r['lint_rss']:.0f} MB")
        print(f"  ratio {ratio:.2f}x time (target <= {TARGET_EMBEDDED:.1f}x: "
              f"{'met' if ratio <= TARGET_EMBEDDED else 'MISSED'}), "
              f"{r['lint_rss'] / r['load_rss']:.2f}x RSS")
        print(f"  whole processes: `memlint` CLI {r['cli_s']:.2f} s (peak RSS {r['cli_rss']:.0f} "
              f"MB) vs `python -c 'import onnx; onnx.load(...)'` {r['bare_s']:.2f} s "
              f"({r['cli_s'] / r['bare_s']:.2f}x)")
        ok &= ratio <= TARGET_EMBEDDED
    if "growth" in parts:
        sizes = (max(1, layers // 16), max(1, layers // 4), layers)
        print(f"\n[growth] memlint.lint time per 1,000 nodes (median of {repeat})")
        rows = part_growth(work, repeat, sizes)
        for row in rows:
            per = row["lint_s"] / row["nodes"] * 1000
            print(f"  {row['layers']:3d} layers {row['nodes']:7,} nodes: lint {row['lint_s']:6.2f} "
                  f"s  {per * 1000:6.1f} ms per 1,000 nodes  peak RSS {row['rss_mb']:5.0f} MB")
        base = rows[0]["lint_s"] / rows[0]["nodes"]
        print("  per-node cost relative to the smallest: " + ", ".join(
            f"{r['lint_s'] / r['nodes'] / base:.2f}x" for r in rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
