"""Lint time and peak RSS next to a bare onnx.load of the same file (figures, not a test).

    python bench/lint_vs_load.py MODEL [--dim NAME=VALUE ...] [--repeat 3]
    python bench/lint_vs_load.py --make-embedded /tmp/gpt2_medium.onnx   # builds a ~1.6 GB model

Each measurement runs in a fresh subprocess so that its peak RSS is its own. The target
(issue: core engine) is lint time <= 1.5x the bare load for embedded-weight models.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child(mode: str, model: str, dims: list[str]) -> None:
    start = time.perf_counter()
    if mode == "load":
        import onnx

        onnx.load(model, load_external_data=False)
    else:
        import memlint.api
        from memlint.dims import parse_dim_flags

        memlint.api.lint(model, hw="a100", dims=parse_dim_flags(dims))
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss_mb}))


def _measure(mode: str, model: str, dims: list[str]) -> dict[str, float]:
    args = [sys.executable, __file__, "--child", mode, model] + [f"--dim={d}" for d in dims]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _warm_page_cache(path: Path) -> None:
    """Read the file once so that the first timed run does not pay for the disk."""
    with path.open("rb") as handle:
        while handle.read(1 << 24):
            pass


def _make_embedded(path: Path) -> None:
    sys.path.insert(0, str(ROOT / "sample_models"))
    import onnx

    from build import DecoderConfig, EmbeddedWeights, build_decoder  # type: ignore[import-not-found]

    cfg = DecoderConfig(n_layer=24, n_embd=1024, n_head=16, vocab_size=50257, n_positions=1024)
    model = build_decoder(cfg, EmbeddedWeights(0), "gpt2_medium")
    onnx.save(model, str(path))
    print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?")
    parser.add_argument("--dim", action="append", default=[])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["load", "lint"])
    parser.add_argument("--make-embedded", type=Path)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.model, args.dim)
        return 0
    if args.make_embedded:
        _make_embedded(args.make_embedded)
        args.model = str(args.make_embedded)
    if not args.model:
        parser.error("name a MODEL or --make-embedded PATH")
    size_mb = Path(args.model).stat().st_size / 1e6
    _warm_page_cache(Path(args.model))
    runs: dict[str, list[dict[str, float]]] = {"load": [], "lint": []}
    for _ in range(args.repeat):  # interleaved, so both see the same machine state
        for mode in runs:
            runs[mode].append(_measure(mode, args.model, args.dim))
    results = {
        mode: (statistics.median(r["seconds"] for r in rs), max(r["peak_rss_mb"] for r in rs))
        for mode, rs in runs.items()
    }
    (load_s, load_rss), (lint_s, lint_rss) = results["load"], results["lint"]
    print(f"model {args.model} ({size_mb:,.1f} MB file), median of {args.repeat}")
    print(f"  onnx.load(load_external_data=False): {load_s:7.3f} s  peak RSS {load_rss:8.1f} MB")
    print(f"  memlint lint (a100):                 {lint_s:7.3f} s  peak RSS {lint_rss:8.1f} MB")
    print(f"  ratio lint / load: {lint_s / load_s:.2f}x time, {lint_rss / load_rss:.2f}x RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
