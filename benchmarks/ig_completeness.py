"""How complete integrated gradients is on real faces, at fixed steps and with a tolerance.

    .venv/bin/python -m benchmarks.ig_completeness [--models o01,k01] [--images 100] [--steps 64]
                                                  [--tolerance 0.01] [--target-output logit,probability]
                                                  [--cache DIR]

For each model (a zoo key or a path; k01 is exported with the MANIFEST's preprocessing) and the first
`--images` LFW faces: the completeness error |sum(attributions) - (f(x) - f(baseline))| / |f(x) - f(baseline)|
(black baseline, predicted class, Gauss-Legendre) with `--steps` steps, and again with
`tolerance=--tolerance` (the images above it integrated again with doubled steps, up to 1,024): the
median error, the share of images within the tolerance, the steps the images ended with, and the
seconds of each run, for each `--target-output` (the score explained: the logit, the default, or the
probability of these softmax models). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from onnxplain.engine import Model, explain

from .run import face_images, model_path


def row(name: str, model: Model, faces: np.ndarray, steps: int, tolerance: float | None, output: str) -> str:
    start = time.perf_counter()
    e = explain(model, list(faces), "ig", steps=steps, tolerance=tolerance, target_output=output)
    seconds = time.perf_counter() - start
    err = e.details.completeness_error
    limit = tolerance if tolerance is not None else 0.01
    used = dict(sorted(collections.Counter(e.details.steps.tolist()).items()))
    return (f"| {name} | {output} | {steps} | {tolerance if tolerance is not None else '-'} | {np.median(err):.4f} | "
            f"{(err <= limit).mean():.0%} | {err.max():.3g} | {', '.join(f'{k}: {v}' for k, v in used.items())} | "
            f"{seconds:.1f} |")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ig_completeness", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="o01,k01")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--target-output", default="logit,probability")
    ap.add_argument("--cache", type=Path, default=None, help="export cache (default: $ONNXPLAIN_CACHE or ~/.cache)")
    args = ap.parse_args(argv)
    faces = face_images(args.images)
    print("| model | target output | steps | tolerance | median error | within tolerance (1% without) | worst | images by final steps "
          "| seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in args.models.split(","):
        model = Model(model_path(key, args.cache))
        for output in args.target_output.split(","):
            for tolerance in (None, args.tolerance):
                print(row(key, model, faces, args.steps, tolerance, output), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
