"""LIME and occlusion side by side on one real face: onnxplain vs the lime package and Captum, and
each method's floor (the same number of forward passes through onnxruntime at its best batch size).

    .venv/bin/python -m benchmarks.forward_methods [--models o01,k01] [--repeats 7] [--out benchmarks/results]

Models: o01 (tf2onnx, NHWC 48x48x1) as it is, and k01 (Keras 2.0.5 mini-Xception) exported through
`onnxplain.exporters.ensure_onnx` with the preprocessing the zoo's MANIFEST gives. Image: one face
cropped from oarriaga_12_angry_men.jpg (inside its annotation box), resized to the model's input.
Rows (through `onnxplain.benchmarks`, the one timing harness; medians over repeats):
our LIME (1000 samples, SLIC) vs the lime package (1000 samples, the same superpixels, its best of
batch_size 10 and 1000); our occlusion (8x8 window, stride 4, black) vs `captum.attr.Occlusion`
(perturbations_per_eval=256) on the plain onnx2torch module of the same file. Writes
`<out>/forward_methods-<device>.json` and `.md` and prints the markdown.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import cv2
import numpy as np

from onnxplain.engine import Model, explain
from onnxplain.benchmarks.output import markdown
from onnxplain.benchmarks.results import BenchReport
from onnxplain.engine.errors import OnnxplainError

from .run import SHARED, add_common_arguments, bench_models, config_from, guarded, write_results

PHOTO = "oarriaga_12_angry_men.jpg"
FACE_BOX = (146, 272, 447, 573)  # rows, columns: the face in the middle, inside its red annotation box


def face_image() -> np.ndarray:
    """The 126x126 RGB face crop (8-bit); each model's spec resizes it and makes it gray if needed."""
    img = cv2.imread(str(SHARED / "data" / PHOTO))
    if img is None:
        raise OnnxplainError(f"cannot read {SHARED / 'data' / PHOTO}")
    r0, r1, c0, c1 = FACE_BOX
    return np.ascontiguousarray(img[r0:r1, c0:c1, ::-1])


def _run(args: argparse.Namespace) -> int:
    """Both methods, ours and the references, with the issue's parameters; floors on onnxruntime only."""
    config = config_from(args, methods=("lime", "occlusion"), compare=True, backends=False, memory=False,
                         params={"lime": {"samples": 1000},
                                 "occlusion": {"window": 8, "stride": 4, "baseline": 0.0}})
    image = face_image()
    sections: list[str] = []

    def superpixels(model: Model, report: BenchReport) -> None:
        lime = explain(model, [image], "lime", seed=config.seed)
        sections.append(markdown(report) + f"\nOur LIME's superpixels on this face at {model.spec.height}x"
                        f"{model.spec.width}: {int(lime.details.n_segments[0])} (SLIC, n_segments=50).\n")

    reports = bench_models(args, [image], config, after=superpixels)
    head = (f"## LIME and occlusion, onnxplain vs references, on {reports[0].device_name}\n\n"
            f"One face cropped from {PHOTO} (rows {FACE_BOX[0]}:{FACE_BOX[1]}, columns {FACE_BOX[2]}:{FACE_BOX[3]}), "
            "repeated when a call takes several images.")
    write_results("benchmarks.forward_methods", args.out, f"forward_methods-{args.device}", reports, head,
                  sections=sections, extra={"image": {"file": PHOTO, "box": list(FACE_BOX)}})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.forward_methods", description=__doc__.split("\n\n")[0])
    add_common_arguments(ap, models="o01,k01", images="1", repeats=7, budget=60.0)
    return guarded(_run, ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
