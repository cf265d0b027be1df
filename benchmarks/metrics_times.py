"""How long "Can these maps be trusted?" takes, per model and method.

    .venv/bin/python -m benchmarks.metrics_times [--models o01,tiny] [--methods saliency,ig,...]
                                                [--images 8] [--rand-images 4] [--device cpu] [--out FILE.md]

For each model (a zoo key, a path, or `tiny`: the tests' seeded TinyCNN, 16x16 gray, 4 classes) and
each method (its default parameters, as the report runs it), on real faces: the method itself (`explain`), the deletion/insertion curves
(32 steps, black baseline, with the random-ranking reference: 4 x 33 rows per image on
onnxruntime) and the cascading randomisation check (every layer with parameters, one randomised
ONNX model and one run of the method per layer). Timed through `onnxplain.benchmarks.timing.time_call`
(median of the timed runs after one warm-up; the randomisation check builds fresh models every run,
so it gets no warm-up). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from onnxplain.engine import Model, explain, method_names
from onnxplain.benchmarks.timing import device_sync, time_call
from onnxplain.engine.metrics import deletion_insertion, randomisation_check
from onnxplain.engine.metrics.randomisation import top_down_layers

from .run import face_images, zoo_file

def tiny_model(folder: Path) -> Path:
    from tests.conftest import export_onnx, make_tiny_cnn

    return export_onnx(make_tiny_cnn(seed=0), folder / "tiny.onnx", (2, 1, 16, 16))


def rows_for(model: Model, name: str, methods: Sequence[str], n_images: int, n_rand: int) -> list[str]:
    sync = device_sync(model.device)
    faces = face_images(max(n_images, n_rand))
    layers = len(top_down_layers(model))
    out = []
    for method in methods:
        t_explain = time_call(lambda: explain(model, faces[:n_images], method), repeats=3, sync=sync,
                              images=n_images, budget_s=30)
        e = explain(model, faces[:n_images], method)
        t_curves = time_call(lambda: deletion_insertion(model, e, steps=32), repeats=3, sync=sync,
                             images=n_images, budget_s=20)
        t_rand = time_call(lambda: randomisation_check(model, faces[:n_rand], method, keep_maps=False),
                           repeats=2, warmup=0, sync=sync, images=n_rand, budget_s=30)
        out.append(f"| {name} | {method} | {t_explain.median:.2f} | {t_curves.median:.2f} "
                   f"({t_curves.ms_per_image:.0f} ms/image) | {layers} | {t_rand.median:.2f} "
                   f"({t_rand.median / layers:.2f} s/layer) |")
        print(out[-1], file=sys.stderr)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="o01,tiny")
    p.add_argument("--methods", default=",".join(method_names()))
    p.add_argument("--images", type=int, default=8, help="images for explain and the curves")
    p.add_argument("--rand-images", type=int, default=4, help="images for the randomisation check")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    lines = [f"Metrics timing on {platform.processor() or platform.machine()} ({args.device}); "
             f"{args.images} faces for explain and the curves, {args.rand_images} for the randomisation check; "
             "seconds (median).", "",
             "| model | method | explain | deletion+insertion, 32 steps + random ref | layers | "
             "randomisation check |", "| --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models.split(","):
            path = tiny_model(Path(tmp)) if key == "tiny" else zoo_file(key)
            model = Model(path, args.device)
            lines += rows_for(model, key, methods, args.images, args.rand_images)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
