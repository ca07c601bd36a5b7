"""Quantized BERT-base: the weight bytes and predicted latency memlint gives each quantized form.

    python bench/quantized.py                      # build into /tmp/memlint-quantized, then measure
    python bench/quantized.py --dir DIR --hw a100  # keep the exports elsewhere (reused when there)

Builds, with the real tools, a BERT-base (transformers.BertConfig() defaults, random weights)
exported by optimum (`main_export(task="feature-extraction")`) and four quantized forms of it:

- QDQ int8: onnxruntime `quantize_static`, QuantFormat.QDQ, a small random calibration reader;
- dynamic int8: onnxruntime `quantize_dynamic` (MatMulInteger + DynamicQuantizeLinear);
- int4: onnxruntime `MatMulNBitsQuantizer` (MatMulNBits, block 32);
- fp16: onnxruntime.transformers optimizer (model_type bert) then `convert_float_to_float16`.

For each it prints the bytes the file stores for its weights (initializers), the weight bytes
memlint counts read, their ratio (embedding tables that are only gathered from left out of both:
a Gather reads rows, not the table), memlint's total weight bytes (read + written), the
predicted latency and the kernel count (nodes that run), at batch 1, sequence 128.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx

DIMS = {"batch_size": 1, "sequence_length": 128}
FORMS = ("fp32", "qdq-int8", "dynamic-int8", "int4-matmulnbits", "fp16")


def build(root: Path, *, config=None, calibration_samples: int = 4) -> dict[str, Path]:
    """Export a BERT (default: BERT-base) with optimum and write its quantized forms into root;
    forms already there are reused. Returns {form: model path}."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {form: root / form / "model.onnx" for form in FORMS}
    if not paths["fp32"].exists():
        _export(root, config)
    fp32 = str(paths["fp32"])
    for form, make in (
        ("qdq-int8", lambda out: _qdq(fp32, out, calibration_samples)),
        ("dynamic-int8", lambda out: _dynamic(fp32, out)),
        ("int4-matmulnbits", lambda out: _nbits(fp32, out)),
        ("fp16", lambda out: _fp16(fp32, out, config)),
    ):
        if not paths[form].exists():
            paths[form].parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                make(str(paths[form]))
    return paths


def _export(root: Path, config) -> None:
    import torch
    import transformers
    from optimum.exporters.onnx import main_export

    torch.manual_seed(0)
    model = transformers.BertModel(config or transformers.BertConfig())
    model.save_pretrained(root / "hf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(
            str(root / "hf"), output=root / "fp32", task="feature-extraction",
            local_files_only=True,
        )  # fmt: skip


def _inputs(model_path: str, samples: int, seq: int = 16) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    names = [i.name for i in onnx.load(model_path, load_external_data=False).graph.input]
    feeds = []
    for _ in range(samples):
        feed = {}
        for name in names:
            if name == "input_ids":
                feed[name] = rng.integers(0, 100, (1, seq), dtype=np.int64)
            elif name == "attention_mask":
                feed[name] = np.ones((1, seq), dtype=np.int64)
            else:  # token_type_ids
                feed[name] = np.zeros((1, seq), dtype=np.int64)
        feeds.append(feed)
    return feeds


def _qdq(fp32: str, out: str, samples: int) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(_inputs(fp32, samples))

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(fp32, out, Reader(), quant_format=QuantFormat.QDQ)


def _dynamic(fp32: str, out: str) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(fp32, out)


def _nbits(fp32: str, out: str) -> None:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(fp32), bits=4, block_size=32, is_symmetric=True)
    quantizer.process()
    quantizer.model.save_model_to_file(out, use_external_data_format=False)


def _fp16(fp32: str, out: str, config) -> None:
    from onnxruntime.transformers import optimizer

    heads = config.num_attention_heads if config is not None else 12
    hidden = config.hidden_size if config is not None else 768
    model = optimizer.optimize_model(
        fp32, model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0
    )
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(out, use_external_data_format=False)


# --- measuring ---------------------------------------------------------------------------------


def stored_weights(path: Path) -> tuple[int, int]:
    """(bytes the file stores for its initializers, of them the tables only gathered from)."""
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = {}
    for init in graph.initializer:
        bits = 4 if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4) else (
            8 * helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        )
        sizes[init.name] = (int(np.prod(init.dims, dtype=np.int64)) * bits + 7) // 8
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))

    def gathered_only(name: str) -> bool:
        uses = consumers.get(name, [])
        return bool(uses) and all(
            (n.op_type == "Gather" and i == 0)
            or (n.op_type == "EmbedLayerNormalization" and i in (2, 3, 4))
            or (n.op_type == "DequantizeLinear" and i == 0 and gathered_only(n.output[0]))
            for n, i in uses
        )

    tables = sum(size for name, size in sizes.items() if gathered_only(name))
    return sum(sizes.values()), tables


def gathered_table_reads(report, path: Path) -> int:
    """Weight bytes memlint counts for reading rows of embedding tables: Gather's, and
    EmbedLayerNormalization's less its gamma and beta."""
    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = {i.name: int(np.prod(i.dims)) * onnx.helper.tensor_dtype_to_np_dtype(i.data_type).itemsize
             for i in graph.initializer}  # fmt: skip
    embed = {n.name: n for n in graph.node if n.op_type == "EmbedLayerNormalization"}
    total = 0
    for n in report.nodes:
        if n.op_type == "Gather":
            total += n.cost.bytes_read.weights
        elif n.name in embed:
            norm = sum(sizes.get(name, 0) for name in embed[n.name].input[5:7])
            total += n.cost.bytes_read.weights - norm
    return total


def measure(path: Path, hw: str) -> dict[str, float]:
    import memlint

    start = time.perf_counter()
    report = memlint.lint(str(path), hw=hw, dims=DIMS)
    lint_s = time.perf_counter() - start
    stored, tables = stored_weights(path)
    read = report.summary.bytes_read.weights
    ratio = (read - gathered_table_reads(report, path)) / (stored - tables)
    kernels = sum(1 for n in report.nodes if n.timing.predicted_latency_s > 0)
    matmuls = sorted(
        {n.timing.peak_key for n in report.nodes if n.cost.unit.value == "tensor" and n.cost.flops}
    )
    return {
        "stored": stored,
        "tables": tables,
        "read": read,
        "ratio": ratio,
        "weights_total": report.summary.bytes_by_kind.weights,
        "latency_ms": report.summary.predicted_latency_s * 1e3,
        "kernels": kernels,
        "nodes": len(report.nodes),
        "peaks": ", ".join(matmuls),
        "lint_s": lint_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/memlint-quantized"))
    parser.add_argument("--hw", default="a100")
    args = parser.parse_args(argv)
    paths = build(args.dir)
    rows = {form: measure(path, args.hw) for form, path in paths.items()}
    base = rows["fp32"]
    print(f"BERT-base, {args.hw}, batch 1, sequence 128 ({args.dir})")
    header = (
        f"{'form':18} {'file weights':>13} {'gathered':>10} {'weights read':>13} "
        f"{'read/file*':>10} {'weights r+w':>12} {'x fp32':>6} {'latency':>9} {'x fp32':>6} "
        f"{'kernels':>7}  tensor peaks"
    )
    print(header)
    for form, row in rows.items():
        print(
            f"{form:18} {row['stored'] / 1e6:10.1f} MB {row['tables'] / 1e6:7.1f} MB "
            f"{row['read'] / 1e6:10.1f} MB {row['ratio']:10.3f} "
            f"{row['weights_total'] / 1e6:9.1f} MB {row['weights_total'] / base['weights_total']:6.3f} "
            f"{row['latency_ms']:6.3f} ms {row['latency_ms'] / base['latency_ms']:6.3f} "
            f"{row['kernels']:7d}  {row['peaks']}"
        )
    print("* weight bytes read / file weight bytes, embedding tables only gathered from left out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
