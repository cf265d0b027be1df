"""Gradient methods side by side: onnxplain vs Captum on real zoo models, with agreement checked.

    .venv/bin/python -m benchmarks.gradient_methods [--models o01,k01] [--images 1,16] [--repeats 5]
                                                    [--device cpu|cuda] [--out benchmarks/results]

Models: o01 (tf2onnx, NHWC 48x48x1) as it is and k01 (Keras 2.0.5 mini-Xception) exported through
`onnxplain.exporters.ensure_onnx` with the MANIFEST's preprocessing. Images: the first 1 and 16 real
LFW faces, resized by the model's spec; targets are the predicted classes, fixed before timing.
Rows, through `onnxplain.engine.benchmark` (the one harness: warm-up counted out, medians over
repeats): saliency, SmoothGrad (25 samples, sigma 0.15), IG (50 steps, black baseline,
Gauss-Legendre) and Grad-CAM (last conv layer), ours on `Model.torch_module` (the optimised module)
vs Captum on the plain onnx2torch module of the same file (`onnx2torch.convert(onnx.load(p)).eval()`).

Before timing, each of ours is run once beside its Captum call and the largest difference between
the two maps is recorded (SmoothGrad's noise differs by design: Captum draws its own, so its column
reports the difference of the means instead). Writes `<out>/gradient_methods-<device>.json` and `.md`
and prints the markdown.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.run import FACES, face_images, model_path, say
from onnxplain.engine import Model
from onnxplain.engine.benchmark import (GRADIENT_METHODS, BenchConfig, BenchReport, References, markdown, ours_call,
                                        parse_int_list, report_document, run_benchmark)
from onnxplain.engine.errors import OnnxplainError
from onnxplain.engine.registry import resolve_targets
from onnxplain.engine.sidecar import write_json_atomic, write_text_atomic


def make_config(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(methods=GRADIENT_METHODS, batch_sizes=parse_int_list(args.images, "--images"),
                       repeats=args.repeats, warmup=1, budget_s=args.budget, compare=True, floors=False,
                       backends=False, memory=False)


def agreement(model: Model, images: np.ndarray, config: BenchConfig) -> dict[str, dict[str, Any]]:
    """Per method, max |ours - Captum| on the maps (relative to the largest |map|) for the largest batch."""
    x = model.spec.to_model_input(images)
    targets = resolve_targets(model, x, None)
    refs = References(model)
    out: dict[str, dict[str, Any]] = {}
    for method in config.methods:
        params = config.method_params(method)
        ours = ours_call(model, method, x, targets, params, config.seed)().maps
        (ref_call,) = refs.build(method, x, targets, params, seed=config.seed).values()
        theirs = np.asarray(ref_call(), dtype=np.float32)
        if method == "smoothgrad":  # different noise draws: compare what both estimate, the mean map
            ours, theirs = ours.mean(axis=0), theirs.mean(axis=0)
        scale = float(max(np.abs(theirs).max(), 1e-12))
        out[method] = {"max_abs_diff": float(np.abs(ours - theirs).max()),
                       "relative": float(np.abs(ours - theirs).max() / scale)}
    return out


def ratio_table(reports: Sequence[BenchReport], agree: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| model | method | images | onnxplain ms | Captum ms | speedup | max diff (rel.) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for report in reports:
        for row in report.rows:
            ours = row.ours.timing.ms
            ref = row.reference.timing.ms if row.reference else None
            a = agree[report.model].get(row.method, {})
            lines.append(f"| {report.model} | {row.method} | {row.images} | {_ms(ours)} | {_ms(ref)} | "
                         f"{_x(row.speedup)} | {a.get('max_abs_diff', float('nan')):.1e} "
                         f"({a.get('relative', float('nan')):.1e}) |")
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gradient_methods", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="o01,k01", help="zoo keys or paths, comma-separated (o01,k01)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--images", default="1,16", help="images per call, comma-separated (1,16)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per measurement before repeating stops")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--cache", type=Path, default=None, help="export cache (default: $ONNXPLAIN_CACHE or ~/.cache)")
    args = ap.parse_args(argv)
    reports: list[BenchReport] = []
    agree: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        config = make_config(args)
        images = face_images(max(config.batch_sizes))
        for key in (k.strip() for k in args.models.split(",") if k.strip()):
            model = Model(model_path(key, args.cache), args.device)
            agree[key] = agreement(model, images, config)
            reports.append(run_benchmark(model, images, config, name=key, progress=say))
    except OnnxplainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    head = (f"## Gradient methods, onnxplain vs Captum, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
            f"{reports[0].device_name}. The first {max(config.batch_sizes)} faces of {FACES}; Captum on the plain "
            "onnx2torch module, onnxplain on Model.torch_module. Speedup = Captum median / onnxplain median.\n\n")
    md = head + ratio_table(reports, agree) + "\n" + "\n".join(markdown(r) for r in reports)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / f"gradient_methods-{args.device}.json", {**report_document(reports), "agreement": agree})
    write_text_atomic(args.out / f"gradient_methods-{args.device}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
