"""Structural mutants of real exports (the `exports` target of bench/fuzz.py; figures, not a test).

    python bench/fuzz.py --target exports --export-cases 10000 --jobs 2
    python bench/fuzz_exports.py --cases 2000 --minutes 15      # the same, run directly

Seeds are real exports built once from tiny configs into a cache folder (--cache, reused when
there): an Optimum GPT-2 with past (text-generation-with-past), an Optimum BERT
(feature-extraction) and that BERT quantized by onnxruntime's `quantize_static` in QDQ format
(bench/quantized.py's export and QDQ steps). Each mutant applies one to three structural edits
that an exporter or a hand edit can leave behind:

delete a node, rewire an input to another value, retype a value (an input's element type or a
Cast's `to`), re-dim a graph input (0, -1, -5, a name, an expression, a huge value), make a
node write a value another node writes, swap an op type (within and across families) or a
domain, break a subgraph (an If/Loop attribute put on another op or emptied).

Every mutant is linted as the command line does (memlint.runner.lint_model, every renderer) and
ends in one outcome: `report` (exit 0/1), `error` (a MemlintError of one line: exit 2), or a
`crash`: another exception, a multi-line message, a warning, or an internal failure surfaced
as a MemlintError ("crashed", "failed", "internal"). The run prints counts per outcome, the
refusals grouped by their first words, and one example per crash signature (saved under --out).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import multiprocessing
import random
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

SEEDS = ("gpt2-with-past", "bert", "bert-qdq")
INTERNAL = re.compile(r"crashed|failed on node|cost formula|internal error|Traceback")


# -------------------------------------------------------------------------------------------
# Seeds: tiny real exports, built once


def build_seeds(cache: Path) -> dict[str, Path]:
    """{seed name: model.onnx}, exported into `cache` when not there yet (about a minute)."""
    paths = {
        "gpt2-with-past": cache / "gpt2" / "model.onnx",
        "bert": cache / "bert" / "model.onnx",
        "bert-qdq": cache / "bert-qdq" / "model.onnx",
    }
    if all(p.exists() for p in paths.values()):
        return paths
    import torch
    import transformers
    from optimum.exporters.onnx import main_export

    cache.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    models = {
        "gpt2": (transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=2, n_embd=64, n_head=4, vocab_size=500, n_positions=128)),
            "text-generation-with-past"),
        "bert": (transformers.BertModel(transformers.BertConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
            vocab_size=500)), "feature-extraction"),
    }  # fmt: skip
    for name, (model, task) in models.items():
        if (cache / name / "model.onnx").exists():
            continue
        model.save_pretrained(cache / f"{name}-hf")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main_export(str(cache / f"{name}-hf"), output=cache / name, task=task,
                        local_files_only=True)
    if not paths["bert-qdq"].exists():
        import quantized  # bench/quantized.py: the QDQ step of its build()

        paths["bert-qdq"].parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized._qdq(str(paths["bert"]), str(paths["bert-qdq"]), 2)
    return paths


# -------------------------------------------------------------------------------------------
# Structural edits

OP_SWAPS = (
    "MatMul", "Gemm", "Add", "Mul", "Relu", "Softmax", "Transpose", "Reshape", "Concat", "Gather",
    "Conv", "LayerNormalization", "Where", "Cast", "Slice", "Expand", "ReduceMean", "Identity",
    "If", "Loop", "TopK", "Split", "Unsqueeze", "Squeeze", "Shape", "Erf", "Pow", "Sqrt",
    "QuantizeLinear", "DequantizeLinear", "Attention", "MatMulNBits", "SkipLayerNormalization",
)  # fmt: skip
DOMAINS = ("", "com.microsoft", "ai.onnx.ml", "ai.onnx", "com.example")
DIMS = (0, -1, -5, 1, 2**31, 2**62, "0", "n", "batch_size", "2 - 3", "past_sequence_length + 1",
        "?", "")
ELEM_TYPES = (TensorProto.FLOAT16, TensorProto.INT64, TensorProto.INT8, TensorProto.BOOL,
              TensorProto.STRING, TensorProto.DOUBLE, 0, 99)
EDITS = ("delete_node", "rewire", "retype", "redim", "duplicate_output", "swap_op",
         "swap_domain", "break_subgraph")


def _values(graph: onnx.GraphProto) -> list[str]:
    names = [i.name for i in graph.input] + [i.name for i in graph.initializer]
    return names + [o for n in graph.node for o in n.output if o]


def mutate(model: onnx.ModelProto, rng: random.Random) -> list[str]:
    """Apply one to three structural edits to `model` in place; returns what was done."""
    graph, done = model.graph, []
    for _ in range(rng.randint(1, 3)):
        edit = rng.choice(EDITS)
        nodes = graph.node
        if not nodes:
            break
        i = rng.randrange(len(nodes))
        node = nodes[i]
        if edit == "delete_node":
            del nodes[i]
        elif edit == "rewire" and node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(_values(graph))
        elif edit == "retype":
            if rng.random() < 0.5 and graph.input:
                info = rng.choice(list(graph.input))
                info.type.tensor_type.elem_type = rng.choice(ELEM_TYPES)
            else:
                cast = [n for n in nodes if n.op_type == "Cast"] or [node]
                target = rng.choice(cast)
                del target.attribute[:]
                target.attribute.append(helper.make_attribute("to", rng.choice(ELEM_TYPES)))
        elif edit == "redim" and graph.input:
            info = rng.choice(list(graph.input))
            shape = info.type.tensor_type.shape
            if not shape.dim:
                continue
            dim = shape.dim[rng.randrange(len(shape.dim))]
            value = rng.choice(DIMS)
            if isinstance(value, int):
                dim.dim_value = value
            else:
                dim.dim_param = value
        elif edit == "duplicate_output" and node.output:
            node.output[0] = rng.choice([o for n in nodes for o in n.output if o] or ["x"])
        elif edit == "swap_op":
            node.op_type = rng.choice(OP_SWAPS)
        elif edit == "swap_domain":
            node.domain = rng.choice(DOMAINS)
        elif edit == "break_subgraph":
            subs = [n for n in nodes if any(a.type == onnx.AttributeProto.GRAPH
                                            for a in n.attribute)]
            if subs and rng.random() < 0.5:  # an existing subgraph emptied or its op swapped
                target = rng.choice(subs)
                if rng.random() < 0.5:
                    target.op_type = rng.choice(OP_SWAPS)
                else:
                    for attr in target.attribute:
                        if attr.type == onnx.AttributeProto.GRAPH:
                            del attr.g.node[:]
            else:  # an If's branches put on another op (what an If swapped for it leaves)
                outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                        for o in node.output if o]
                branch = helper.make_graph([], "branch", [], outs)
                node.attribute.append(helper.make_attribute("then_branch", branch))
                node.attribute.append(helper.make_attribute("else_branch", branch))
        else:
            continue
        done.append(f"{edit}@{node.name or node.op_type}")
    return done


# -------------------------------------------------------------------------------------------
# Running one mutant


def _classify(data: bytes, folder: Path) -> tuple[str, str, str]:
    """(outcome, message, signature) of linting `data` as the command line does."""
    import fuzz  # bench/fuzz.py

    outcome = fuzz.check_model_bytes(data, folder)
    if outcome.kind == "error" and INTERNAL.search(outcome.message):
        return "crash", outcome.message, "internal: " + _bucket(outcome.message)
    return outcome.kind, outcome.message, outcome.signature


def _bucket(message: str) -> str:
    """The first words of a message without names and numbers: refusals grouped by kind."""
    text = re.sub(r"^\S*model\.onnx:\s*", "", message)
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", text)
    return " ".join(text.split()[:8])


_SEED_BYTES: dict[str, bytes] = {}


def _worker_init(paths: dict[str, str]) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    for name, path in paths.items():
        _SEED_BYTES[name] = onnx.load(path, load_external_data=True).SerializeToString()


def run_case(case: int) -> tuple[int, str, str, str, str, bytes, float]:
    rng = random.Random(case)
    seed = SEEDS[case % len(SEEDS)]
    model = onnx.ModelProto()
    model.ParseFromString(_SEED_BYTES[seed])
    edits = mutate(model, rng)
    data = model.SerializeToString()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memlint-fuzz-exports-") as tmp:
        kind, message, signature = _classify(data, Path(tmp))
    seconds = time.perf_counter() - start
    label = f"{seed}: {', '.join(edits)}"
    return case, kind, message, signature, label, data if kind == "crash" else b"", seconds


def hunt_exports(cases: int, *, seed: int = 0, jobs: int = 2, minutes: float = 0.0,
                 cache: Path, out: Path | None) -> int:
    """Run up to `cases` mutants (stop after `minutes` when > 0); print the tally; the number of
    crash signatures is returned."""
    paths = {k: str(v) for k, v in build_seeds(cache).items()}
    kinds: collections.Counter[str] = collections.Counter()
    refusals: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    crashes: dict[str, tuple[str, str]] = {}
    start, slowest, ran = time.perf_counter(), 0.0, 0
    deadline = start + minutes * 60 if minutes > 0 else float("inf")
    with multiprocessing.get_context("fork").Pool(jobs, _worker_init, (paths,)) as pool:
        results = pool.imap_unordered(  # chunks of 1: only then can it wait with a timeout
            run_case, range(seed * 1_000_000, seed * 1_000_000 + cases)
        )
        while True:
            try:  # wait in steps, so that a case that never ends cannot outlast the deadline
                item = results.next(timeout=5)
            except StopIteration:
                break
            except multiprocessing.TimeoutError:
                if time.perf_counter() > deadline:
                    pool.terminate()
                    break
                continue
            case, kind, message, signature, label, data, seconds = item
            ran += 1
            kinds[kind] += 1
            slowest = max(slowest, seconds)
            if kind == "error":
                refusals[_bucket(message)] += 1
                examples.setdefault(_bucket(message), message)
            if kind == "crash" and signature not in crashes:
                crashes[signature] = (label, message)
                print(f"[exports] crash #{case}: {signature}: {message[:200]} ({label})",
                      flush=True)
                if out is not None:
                    out.mkdir(parents=True, exist_ok=True)
                    digest = hashlib.sha256(data).hexdigest()[:10]
                    (out / f"exports-{digest}.onnx").write_bytes(data)
                    (out / f"exports-{digest}.txt").write_text(
                        f"{signature}\n{message}\n{label}\n", encoding="utf-8")
            if ran % 500 == 0:
                print(f"[exports] {ran} cases, {time.perf_counter() - start:.0f} s", flush=True)
            if time.perf_counter() > deadline:
                pool.terminate()
                break
    elapsed = time.perf_counter() - start
    if ran < cases:
        print(f"[exports] stopped at the time limit: {cases - ran} of {cases} mutants not run "
              "or not finished (a case still running then is slow, or hangs)")
    print(f"exports: {ran} mutants in {elapsed:.0f} s with {jobs} job(s) "
          f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); slowest "
          f"{slowest:.2f} s; {len(crashes)} crash signature(s)")
    print("refusals by kind:")
    for bucket, count in refusals.most_common():
        print(f"  {count:6d}  {examples[bucket][:300]}")
    for signature, (label, message) in sorted(crashes.items()):
        print(f"  CRASH {signature}: {message[:160]} ({label})")
    return len(crashes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", type=Path, default=Path("/tmp/memlint-fuzz-exports"),
                        help="where the seed exports are built (reused when there)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="stop after this many minutes (0: run every case)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("fuzz-crashes"))
    add_arguments(parser)
    args = parser.parse_args(argv)
    found = hunt_exports(args.cases, seed=args.seed, jobs=args.jobs, minutes=args.minutes,
                         cache=args.cache, out=args.out)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
