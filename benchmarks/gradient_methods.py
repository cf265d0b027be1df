"""Gradient methods side by side: onnxplain vs Captum on real zoo models, timed in interleaved pairs.

    .venv/bin/python -m benchmarks.gradient_methods [--models o01,k01] [--images 1,16] [--pairs 7]
                                                    [--methods saliency,ig] [--threads N]
                                                    [--device cpu|cuda] [--out benchmarks/results]

Models: o01 (tf2onnx, NHWC 48x48x1) as it is and k01 (Keras 2.0.5 mini-Xception) exported through
`onnxplain.exporters.ensure_onnx` with the MANIFEST's preprocessing. Images: the first 1 and 16 real
LFW faces, resized by the model's spec; targets are the predicted classes, fixed before timing.
Methods: saliency, SmoothGrad (25 samples, sigma 0.15), IG (50 steps, black baseline,
Gauss-Legendre) and Grad-CAM (last conv layer): ours (`explain` on `Model.torch_scores`, the
optimised module) vs Captum on the plain onnx2torch module of the same file
(`onnx2torch.convert(onnx.load(p)).eval()`), and the same Captum call on our own module
(`Model.torch_scores`: the "vs Captum on our module" column, what our method code costs around it).

This is `benchmarks.run` restricted to the gradient methods (no floors, no memory probes), through
the one harness, `onnxplain.benchmarks`: after a warm-up call of each, `--pairs` rounds time
ours and Captum back to back, the order alternating; on a shared machine the load changes from
second to second and a pair sees nearly the same load, so the speedup is the median of the
per-pair ratios (Captum / ours), with their IQR. What both sides returned on their warm-up call
is compared (the `map diff` column; SmoothGrad's noise differs by design: Captum draws its own, so
the mean maps are compared). Threads: torch's and onnxruntime's defaults, what `explain` uses (the
headline); `--threads N` pins both sides to N (on a 2-core box shared with other jobs, `--threads 1`
gives pair ratios that repeat where two OpenMP threads per side swing by 10x). Every table says which. Writes `<out>/gradient_methods-<device>.json`
and `.md` (the same format as `benchmarks.run`).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from onnxplain.benchmarks.output import threads_text
from onnxplain.benchmarks.runner import parse_methods
from onnxplain.engine.errors import BadInputError
from onnxplain.engine.registry import method_infos

from .run import FACES, add_common_arguments, bench_models, config_from, face_images, guarded, write_results


def gradient_methods() -> tuple[str, ...]:
    """The methods on the torch module, from the registry."""
    return tuple(i.name for i in method_infos() if i.backend == "torch")


def _run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods or ",".join(gradient_methods()))
    if not set(methods) <= set(gradient_methods()):
        raise BadInputError(f"--methods takes gradient methods only: {', '.join(gradient_methods())}")
    config = config_from(args, methods=methods, compare=True, floors=False, backends=False, memory=False)
    reports = bench_models(args, face_images(max(config.batch_sizes)), config)
    head = (f"## Gradient methods, onnxplain vs Captum, on {reports[0].device_name}\n\n"
            f"{threads_text(reports[0])}. The first {max(config.batch_sizes)} faces of {FACES}; Captum on the plain "
            "onnx2torch module, onnxplain on Model.torch_scores; speedup = median over interleaved pairs of Captum / "
            "onnxplain; vs Captum on our module = the same with Captum on Model.torch_scores, in the same rounds.")
    write_results("benchmarks.gradient_methods", args.out, f"gradient_methods-{args.device}", reports, head)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gradient_methods", description=__doc__.split("\n\n")[0])
    add_common_arguments(ap, models="o01,k01", repeats=7, budget=60.0)
    ap.add_argument("--methods", default=None, help="comma-separated gradient methods (default: all of them)")
    return guarded(_run, ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
