"""LIME and occlusion side by side on one real face: onnxplain vs the lime package and Captum, and
each method's floor (the same number of forward passes through onnxruntime at its best batch size).

    .venv/bin/python -m benchmarks.forward_methods [--models o01,k01] [--repeats 7] [--out benchmarks/results]

Models: o01 (tf2onnx, NHWC 48x48x1) as it is, and k01 (Keras 2.0.5 mini-Xception) exported through
`onnxplain.exporters.ensure_onnx` with the preprocessing the zoo's MANIFEST gives. Image: one face
cropped from oarriaga_12_angry_men.jpg (inside its annotation box), resized to the model's input.
Rows (through `onnxplain.engine.benchmark`, the one timing harness; medians over repeats):
our LIME (1000 samples, SLIC) vs the lime package (1000 samples, the same superpixels, its best of
batch_size 10 and 1000); our occlusion (8x8 window, stride 4, black) vs `captum.attr.Occlusion`
(perturbations_per_eval=256) on the plain onnx2torch module of the same file. Writes
`<out>/forward_methods-<device>.json` and `.md` and prints the markdown.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from benchmarks.run import SHARED, model_path, say
from onnxplain.engine import Model, explain
from onnxplain.engine.benchmark import BenchConfig, markdown, parse_int_list, report_document, run_benchmark
from onnxplain.engine.errors import OnnxplainError
from onnxplain.engine.sidecar import write_json_atomic, write_text_atomic

PHOTO = "oarriaga_12_angry_men.jpg"
FACE_BOX = (146, 272, 447, 573)  # rows, columns: the face in the middle, inside its red annotation box


def face_image() -> np.ndarray:
    """The 126x126 RGB face crop (8-bit); each model's spec resizes it and makes it gray if needed."""
    img = cv2.imread(str(SHARED / "data" / PHOTO))
    if img is None:
        raise OnnxplainError(f"cannot read {SHARED / 'data' / PHOTO}")
    r0, r1, c0, c1 = FACE_BOX
    return np.ascontiguousarray(img[r0:r1, c0:c1, ::-1])


def make_config(args: argparse.Namespace) -> BenchConfig:
    """Both methods, ours and the references, with the issue's parameters; floors on onnxruntime only."""
    return BenchConfig(methods=("lime", "occlusion"), batch_sizes=parse_int_list(args.images, "--images"),
                       repeats=args.repeats, warmup=1, budget_s=args.budget, compare=True, backends=False, memory=False,
                       params={"lime": {"samples": 1000}, "occlusion": {"window": 8, "stride": 4, "baseline": 0.0}})


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.forward_methods", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="o01,k01", help="zoo keys or paths, comma-separated (o01,k01)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--images", default="1", help="images per call, comma-separated (1); the face is repeated")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per measurement before repeating stops")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--cache", type=Path, default=None, help="export cache (default: $ONNXPLAIN_CACHE or ~/.cache)")
    args = ap.parse_args(argv)
    sections, reports = [], []
    try:
        image, config = face_image(), make_config(args)
        for key in (k.strip() for k in args.models.split(",") if k.strip()):
            model = Model(model_path(key, args.cache), args.device)
            report = run_benchmark(model, [image], config, name=key, progress=say)
            lime = explain(model, [image], "lime", seed=config.seed)
            sections.append(markdown(report) + f"\nOur LIME's superpixels on this face at {model.spec.height}x"
                            f"{model.spec.width}: {int(lime.extras['n_segments'][0])} (SLIC, n_segments=50).\n")
            reports.append(report)
    except OnnxplainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    head = (f"## LIME and occlusion, onnxplain vs references, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
            f"One face cropped from {PHOTO} (rows {FACE_BOX[0]}:{FACE_BOX[1]}, columns {FACE_BOX[2]}:{FACE_BOX[3]}), "
            "repeated when a call takes several images.\n\n")
    md = head + "\n".join(sections)
    write_json_atomic(args.out / f"forward_methods-{args.device}.json",
                      {**report_document(reports), "image": {"file": PHOTO, "box": list(FACE_BOX)}})
    write_text_atomic(args.out / f"forward_methods-{args.device}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
