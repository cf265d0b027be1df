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

The harness keeps what each side returned on its first (untimed) run and records the largest
difference between the two maps, relative to the largest |Captum map| (the "map diff" column;
SmoothGrad's noise differs by design: Captum draws its own, so the mean maps are compared). This is
`benchmarks.run` restricted to the gradient methods, without floors or memory probes; writes
`<out>/gradient_methods-<device>.json` and `.md` and prints the markdown.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from benchmarks.run import FACES, add_common_arguments, bench_models, config_from, face_images, guarded, write_results
from onnxplain.engine.benchmark import GRADIENT_METHODS


def _run(args: argparse.Namespace) -> int:
    config = config_from(args, methods=GRADIENT_METHODS, compare=True, floors=False, backends=False, memory=False)
    reports = bench_models(args, face_images(max(config.batch_sizes)), config)
    head = (f"## Gradient methods, onnxplain vs Captum, on {reports[0].device_name}\n\n"
            f"The first {max(config.batch_sizes)} faces of {FACES}; Captum on the plain onnx2torch module, onnxplain "
            "on Model.torch_module. Speedup = Captum median / onnxplain median.")
    write_results("benchmarks.gradient_methods", args.out, f"gradient_methods-{args.device}", reports, head)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gradient_methods", description=__doc__.split("\n\n")[0])
    add_common_arguments(ap, models="o01,k01", budget=60.0)
    return guarded(_run, ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
