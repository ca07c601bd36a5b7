"""HTML report of a synthetic 6,000-node model: file size, render time, node count (figures,
not a test).

    python bench/html_large.py [--blocks 300] [--distinct | --gemvs] [--repeat 3] [--out FILE]

The model is 300 repeated 20-node blocks (LayerNorm, an MLP with a decomposed tanh-GELU,
a residual, a reshape/transpose/softmax detour) written as ONNX text; its weights are declared
but absent (external data that is never read), so it costs no memory. Identical blocks land on
the same spots of the roofline chart; --distinct widens each block's MLP by 16 so that every
block has spots of its own; --gemvs instead builds 20 x --blocks GEMVs of distinct widths, each
a spot of its own (the worst case for the chart). Lint time is reported apart from render time;
the render time is the median of --repeat renders.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

HIDDEN, FFN, ROWS = 512, 2048, 4

_BLOCK = """
  ln{i} = LayerNormalization <axis = -1> (h{i}, g{i}, b{i})
  u{i} = MatMul (ln{i}, w1_{i})
  ub{i} = Add (u{i}, c1_{i})
  p{i} = Mul (ub{i}, half)
  q{i} = Pow (ub{i}, three)
  r{i} = Mul (q{i}, k0044)
  s{i} = Add (ub{i}, r{i})
  t{i} = Mul (s{i}, k0797)
  th{i} = Tanh (t{i})
  o{i} = Add (th{i}, one)
  gl{i} = Mul (p{i}, o{i})
  d{i} = MatMul (gl{i}, w2_{i})
  db{i} = Add (d{i}, c2_{i})
  res{i} = Add (db{i}, h{i})
  rs{i} = Reshape (res{i}, heads)
  tr{i} = Transpose <perm = [0, 2, 1]> (rs{i})
  sm{i} = Softmax <axis = -1> (tr{i})
  tb{i} = Transpose <perm = [0, 2, 1]> (sm{i})
  rr{i} = Reshape (tb{i}, flat)
  h{j} = Add (rr{i}, res{i})"""

_WEIGHTS = (
    "float16[{h}] g{i}, float16[{h}] b{i}, float16[{h},{f}] w1_{i}, float16[{f}] c1_{i}, "
    "float16[{f},{h}] w2_{i}, float16[{h}] c2_{i}"
)


def model_text(blocks: int, distinct: bool = False) -> str:
    weights = ", ".join(
        _WEIGHTS.format(i=i, h=HIDDEN, f=FFN + (16 * i if distinct else 0)) for i in range(blocks)
    )
    constants = (
        "float16 half, float16 three, float16 k0044, float16 k0797, float16 one, "
        f"int64[3] heads = {{{ROWS}, 8, {HIDDEN // 8}}}, int64[2] flat = {{{ROWS}, {HIDDEN}}}"
    )
    body = "".join(_BLOCK.format(i=i, j=i + 1) for i in range(blocks))
    return (
        f"large (float16[{ROWS},{HIDDEN}] h0) => (float16[{ROWS},{HIDDEN}] h{blocks})\n"
        f"<{constants}, {weights}>\n{{{body}\n}}\n"
    )


def gemvs_text(count: int) -> str:
    outputs = ", ".join(f"float16[1,{64 + i}] y{i}" for i in range(count))
    weights = ", ".join(f"float16[{HIDDEN},{64 + i}] w{i}" for i in range(count))
    body = "\n".join(f"  y{i} = MatMul(x, w{i})" for i in range(count))
    return f"gemvs (float16[1,{HIDDEN}] x) => ({outputs}) <{weights}> {{\n{body}\n}}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=300)
    parser.add_argument("--distinct", action="store_true", help="a different MLP width per block")
    parser.add_argument("--gemvs", action="store_true", help="distinct GEMVs: one spot each")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="/tmp/memlint_large.html")
    args = parser.parse_args()

    from memlint import api
    from memlint.frontends.onnx import load_onnx_proto
    from memlint.frontends.onnx_text import parse_example
    from memlint.report import html, view

    start = time.perf_counter()
    text = gemvs_text(20 * args.blocks) if args.gemvs else model_text(args.blocks, args.distinct)
    model = load_onnx_proto(parse_example(text), Path("large.onnx"))
    report = api.lint(model, hw="a100")
    lint_s = time.perf_counter() - start

    times, text = [], ""
    for _ in range(args.repeat):
        start = time.perf_counter()
        text = html.render(report)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    chart = view.build(report).chart
    view_s = time.perf_counter() - start
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"nodes:          {len(report.nodes):,}")
    print(f"findings:       {len(report.findings):,}")
    print(f"lint:           {lint_s:.2f} s")
    print(f"render (html):  {statistics.median(times):.2f} s median of {args.repeat}")
    print(f"  view build:   {view_s:.2f} s")
    print(f"file size:      {len(text.encode()):,} bytes ({len(text.encode()) / 1e6:.2f} MB)")
    print(f"chart:          {len(chart.points):,} circles + {len(chart.dots):,} dots")
    print(f"written to:     {args.out}")


if __name__ == "__main__":
    main()
