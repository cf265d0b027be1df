"""What onnxplain's gradient methods cost around the torch module: ours vs Captum on our module vs
Captum on the plain onnx2torch module, at the default thread count, interleaved round by round.

    .venv/bin/python -m benchmarks.gradient_overhead [--models o01,k01,k02] [--images 1,16] [--rounds 7]
                                                     [--methods saliency,ig] [--threads N] [--quick]

Three calls per row, timed back to back in each round (the order rotating), in one process:
- ours: `explain(model, faces, method)` as a user writes it (targets None: the predicted class);
- Captum on ours: Captum's matching class on `Model.torch_scores(...)`, the module our methods run
  (what our method code would cost if it were Captum's), targets fixed before timing;
- Captum on plain: the same on `onnx2torch.convert(onnx.load(path))`, what a user would run instead.
"our overhead" is the median over rounds of ours / Captum-on-ours (goal <= 1.15), "vs plain" the
median of Captum-on-plain / ours (goal >= 1.5 at 1 image, >= 2 at 16). Torch's thread count is
left as torch sets it (printed) unless `--threads`. Writes `<out>/gradient_overhead-<device>.json` and
`.md`. `--quick` (o01, 1 image, 2 rounds) is a smoke test of the script, not a measurement.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

import numpy as np

from benchmarks.run import FACES, face_images, guarded, model_path, say
from onnxplain.engine import Model, explain
from onnxplain.engine.benchmark import (
    GRADIENT_METHODS, References, environment, paired_ratios, parse_int_list, parse_methods, time_calls,
)
from onnxplain.engine.errors import BadInputError
from onnxplain.engine.registry import resolve_targets
from onnxplain.engine.sidecar import write_json_atomic, write_text_atomic

PARAMS: dict[str, dict[str, Any]] = {"saliency": {}, "smoothgrad": {"samples": 25, "sigma": 0.15},
                                     "ig": {"steps": 50}, "gradcam": {}}
GOALS = {"overhead": 1.15, "plain": {1: 1.5, 16: 2.0}}
SIDES = ("ours", "captum on ours", "captum on plain")


class OurModuleReferences(References):
    """Captum's calls as `References` builds them, on onnxplain's own optimised module."""

    def scored(self, params: dict[str, Any]) -> Any:
        return self.model.torch_scores(params.get("target_output", "logit"))


def row_calls(model: Model, method: str, images: np.ndarray, seed: int = 0) -> list[Callable[[], Any]]:
    """The three prepared calls of one row (see the module doc), Captum's first run done."""
    params = PARAMS[method]
    x = model.spec.to_model_input(images)
    targets = resolve_targets(model, x, None)
    ours = lambda: explain(model, images, method, seed=seed, **params)  # noqa: E731
    refs = [next(iter(cls(model).build(method, x, targets, params, seed=seed).values()))
            for cls in (OurModuleReferences, References)]
    return [ours, *refs]


def measure(model: Model, key: str, methods: Sequence[str], sizes: Sequence[int], rounds: int,
            budget: float) -> list[dict[str, Any]]:
    rows = []
    for method in methods:
        for n in sizes:
            say(f"{key} {method} x{n}", None)
            timings = time_calls(row_calls(model, method, face_images(n)), repeats=rounds, warmup=1, images=n,
                                 budget_s=budget)
            ours, on_ours, on_plain = timings
            overhead = float(np.median(1.0 / paired_ratios(on_ours, ours)))
            plain = float(np.median(paired_ratios(on_plain, ours)))
            rows.append({"model": key, "method": method, "images": n, "params": PARAMS[method],
                         "ms": {s: t.ms for s, t in zip(SIDES, timings)},
                         "timings": {s: t.as_dict() for s, t in zip(SIDES, timings)},
                         "overhead": overhead, "vs_plain": plain,
                         "overhead_met": overhead <= GOALS["overhead"],
                         "vs_plain_met": plain >= GOALS["plain"].get(n, GOALS["plain"][16])})
    return rows


def table(rows: Sequence[dict[str, Any]], threads: int) -> str:
    head = (f"| model | method | images | ours ms | Captum on ours ms | Captum on plain ms | our overhead "
            f"(<= {GOALS['overhead']}) | vs plain (>= 1.5 / 2) | torch threads |\n|---|---|---|---|---|---|---|---|---|\n")
    mark = {True: "", False: " (missed)"}
    lines = [f"| {r['model']} | {r['method']} | {r['images']} | {r['ms']['ours']:.2f} | {r['ms']['captum on ours']:.2f} "
             f"| {r['ms']['captum on plain']:.2f} | {r['overhead']:.2f}x{mark[r['overhead_met']]} "
             f"| {r['vs_plain']:.2f}x{mark[r['vs_plain_met']]} | {threads} |" for r in rows]
    return head + "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    import torch

    if args.quick:
        args.models, args.images, args.rounds, args.methods = "o01", "1", 2, args.methods or "saliency,gradcam"
    methods = parse_methods(args.methods or ",".join(GRADIENT_METHODS))
    if not set(methods) <= set(GRADIENT_METHODS):
        raise BadInputError(f"--methods takes gradient methods only: {', '.join(GRADIENT_METHODS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"torch threads: {threads}", file=sys.stderr)
    sizes = parse_int_list(args.images, "--images")
    rows: list[dict[str, Any]] = []
    for key in (k.strip() for k in args.models.split(",") if k.strip()):
        model = Model(model_path(key, args.cache), "cpu", threads=args.threads)
        rows += measure(model, key, methods, sizes, args.rounds, args.budget)
    env = environment("cpu")
    command = "python -m benchmarks.gradient_overhead " + " ".join(sys.argv[1:])
    md = (f"## Gradient methods: our overhead around the module, at torch's default thread count\n\n"
          f"`{command}`; torch threads {threads} ({'set by --threads' if args.threads else 'torch default'}), "
          f"{env['usable_cores']} usable cores, {env['cpu']}. Images: the first faces of {FACES}. Each round times "
          "ours (`explain(model, faces, method)`, targets None), Captum on our `Model.torch_scores` module and Captum on "
          "the plain onnx2torch module back to back; ratios are medians of per-round ratios. On a shared box "
          "(other jobs running) single rows swing; rerun on a quiet one before quoting them.\n\n"
          + table(rows, threads) + "\n")
    stem = f"gradient_overhead{'-quick' if args.quick else ''}-cpu"
    write_json_atomic(args.out / f"{stem}.json", {"command": command, "torch_threads": threads, "environment": env,
                                                  "goals": GOALS, "rows": rows})
    write_text_atomic(args.out / f"{stem}.md", md)
    print(md)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from pathlib import Path

    ap = argparse.ArgumentParser(prog="python -m benchmarks.gradient_overhead", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="o01,k01,k02")
    ap.add_argument("--images", default="1,16")
    ap.add_argument("--methods", default=None, help=f"comma-separated subset of {', '.join(GRADIENT_METHODS)}")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per row (at least 3 unless --quick)")
    ap.add_argument("--budget", type=float, default=6.0, help="seconds per row after which rounds stop (>= 3 rounds)")
    ap.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: their own)")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--quick", action="store_true", help="smoke test: o01, 1 image, 2 rounds")
    return guarded(_run, ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
