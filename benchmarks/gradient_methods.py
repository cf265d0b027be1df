"""Gradient methods side by side: onnxplain vs Captum on real zoo models, timed in interleaved pairs.

    .venv/bin/python -m benchmarks.gradient_methods [--models o01,k01] [--images 1,16] [--pairs 7]
                                                    [--methods saliency,ig] [--threads N]
                                                    [--device cpu|cuda] [--out benchmarks/results]

Models: o01 (tf2onnx, NHWC 48x48x1) as it is and k01 (Keras 2.0.5 mini-Xception) exported through
`onnxplain.exporters.ensure_onnx` with the MANIFEST's preprocessing. Images: the first 1 and 16 real
LFW faces, resized by the model's spec; targets are the predicted classes, fixed before timing.
Methods: saliency, SmoothGrad (25 samples, sigma 0.15), IG (50 steps, black baseline,
Gauss-Legendre) and Grad-CAM (last conv layer): ours (`explain` on `Model.torch_module`, the
optimised module) vs Captum on the plain onnx2torch module of the same file
(`onnx2torch.convert(onnx.load(p)).eval()`), both built by `onnxplain.engine.benchmark` (the harness
and its references, the calls `benchmarks.run` times).

Timing: after one warm-up call of each, `--pairs` pairs of calls, ours and Captum back to back in
alternating order, each call timed by the harness's `time_call` (device synchronised around it).
On a shared machine the load changes from second to second; a pair sees nearly the same load, so
the median of the per-pair ratios (Captum / ours) is the speedup reported, with the medians of each
side beside it. Before timing, ours is run beside Captum once on the same images and the largest
difference of the maps is recorded (SmoothGrad's noise differs by design: Captum draws its own, so
that column compares the mean maps). `--threads 1` runs both sides single-threaded: on a 2-core box
shared with other jobs, two OpenMP threads per side oversubscribe the cores and small calls swing
by 10x or more, while one thread gives pair ratios that repeat. Writes
`<out>/gradient_methods-<device>.json` and `.md`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from benchmarks.run import FACES, face_images, model_path, say
from onnxplain.engine import Model
from onnxplain.engine.benchmark import (DEFAULT_PARAMS, GRADIENT_METHODS, References, device_sync, environment,
                                        ours_call, parse_int_list, parse_methods, time_call)
from onnxplain.engine.errors import OnnxplainError
from onnxplain.engine.registry import resolve_targets
from onnxplain.engine.sidecar import write_json_atomic, write_text_atomic

SPEEDUP_TARGET = 2.0  # issue 8, 2-core CPU


def paired_times(ours: Callable[[], Any], ref: Callable[[], Any], pairs: int, device: str) -> dict[str, Any]:
    """Seconds of `pairs` interleaved calls of each (order alternating), after one warm-up call each."""
    sync = device_sync(device)
    ours()
    ref()
    t_ours, t_ref = [], []
    for i in range(pairs):
        for which in ((ours, t_ours), (ref, t_ref)) if i % 2 == 0 else ((ref, t_ref), (ours, t_ours)):
            which[1].append(time_call(which[0], repeats=1, warmup=0, sync=sync).median)
    ratios = np.asarray(t_ref) / np.asarray(t_ours)
    return {"ours_s": t_ours, "captum_s": t_ref, "ours_ms": float(np.median(t_ours)) * 1e3,
            "captum_ms": float(np.median(t_ref)) * 1e3, "speedup": float(np.median(ratios)),
            "speedup_iqr": [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))]}


def map_difference(method: str, ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    if method == "smoothgrad":  # different noise draws: compare what both estimate, the mean map
        ours, theirs = ours.mean(axis=0), theirs.mean(axis=0)
    diff = float(np.abs(ours - theirs).max())
    return {"max_abs_diff": diff, "relative": diff / float(max(np.abs(theirs).max(), 1e-12))}


def bench_model(key: str, model: Model, images: np.ndarray, sizes: Sequence[int], pairs: int,
                methods: Sequence[str] = GRADIENT_METHODS) -> list[dict[str, Any]]:
    refs = References(model)
    rows = []
    for n in sizes:
        x = model.spec.to_model_input(images[np.arange(n) % len(images)])
        targets = resolve_targets(model, x, None)
        for method in methods:
            params = dict(DEFAULT_PARAMS[method])
            say(f"{key}: {method} on {n} image(s)", None)
            ours = ours_call(model, method, x, targets, params, seed=0)
            (name, ref), = refs.build(method, x, targets, params, seed=0).items()
            agree = map_difference(method, ours().maps, np.asarray(ref(), dtype=np.float32))
            rows.append({"model": key, "method": method, "images": n, "params": params, "reference": name,
                         **paired_times(ours, ref, pairs, model.device), **agree})
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| model | method | images | onnxplain ms | Captum ms | speedup (IQR of pairs) | max diff (rel.) | "
             f">= {SPEEDUP_TARGET:g}x |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lo, hi = r["speedup_iqr"]
        met = "met" if r["speedup"] >= SPEEDUP_TARGET else "**missed**"
        lines.append(f"| {r['model']} | {r['method']} | {r['images']} | {r['ours_ms']:.1f} | {r['captum_ms']:.1f} | "
                     f"{r['speedup']:.2f}x ({lo:.2f}-{hi:.2f}) | {r['max_abs_diff']:.1e} ({r['relative']:.1e}) | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gradient_methods", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="o01,k01", help="zoo keys or paths, comma-separated (o01,k01)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--images", default="1,16", help="images per call, comma-separated (1,16)")
    ap.add_argument("--pairs", type=int, default=7, help="interleaved (ours, Captum) timing pairs per row")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--cache", type=Path, default=None, help="export cache (default: $ONNXPLAIN_CACHE or ~/.cache)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads for both sides (default: torch's own, the core count)")
    ap.add_argument("--methods", default=",".join(GRADIENT_METHODS), help="comma-separated subset of the four")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    try:
        sizes = parse_int_list(args.images, "--images")
        images = face_images(max(sizes))
        for key in (k.strip() for k in args.models.split(",") if k.strip()):
            model = Model(model_path(key, args.cache), args.device)
            rows += bench_model(key, model, images, sizes, max(1, args.pairs), parse_methods(args.methods))
    except OnnxplainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env = environment(args.device)
    where = env.get("gpu") if args.device == "cuda" else f"{env['cpu']}, {env['usable_cores']} cores"
    md = (f"## Gradient methods, onnxplain vs Captum, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
          f"{where}, torch threads {env['torch_threads']}. The first {max(sizes)} faces of {FACES}. Captum on the "
          "plain onnx2torch module, onnxplain on Model.torch_module; medians of "
          f"{args.pairs} interleaved pairs after a warm-up; speedup = median over pairs of Captum / onnxplain.\n\n"
          + markdown_table(rows))
    write_json_atomic(args.out / f"gradient_methods-{args.device}.json",
                      {"onnxplain_gradient_benchmark": 1, "environment": env, "rows": rows})
    write_text_atomic(args.out / f"gradient_methods-{args.device}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
