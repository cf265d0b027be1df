"""What onnxplain's gradient methods cost around the torch module: ours vs Captum on our module vs
Captum on the plain onnx2torch module, at the default thread count, interleaved round by round.

    .venv/bin/python -m benchmarks.gradient_overhead [--models o01,k01,k02] [--images 1,16] [--rounds 7]
                                                     [--methods saliency,ig] [--threads N] [--quick]
                                                     [--profile-missed]

Three calls per row, timed back to back in each round (the order rotating), in one process:
- ours: `explain(model, x, method, preprocessed=True)`, targets None (the predicted class), on the
  model input `x` Captum gets too (preprocessing the faces, a resize each, is not method code);
- Captum on ours: Captum's matching class on `Model.torch_scores(...)`, the module our methods run
  (what our method code would cost if it were Captum's), targets fixed before timing;
- Captum on plain: the same on `onnx2torch.convert(onnx.load(path))`, what a user would run instead.
"our overhead" is the median over rounds of ours / Captum-on-ours (goal <= 1.15), "vs plain" the
median of Captum-on-plain / ours (goal >= 1.5 at 1 image, >= 2 at 16). Torch's thread count is
left as torch sets it (printed) unless `--threads`. Writes `<out>/gradient_overhead-<device>.json` and
`.md`; with `--profile-missed`, cProfiles of ours and Captum-on-ours for each row that misses a goal
in `<out>/profiles/`. `--quick` (o01, 1 image, 2 rounds) is a smoke test of the script, not a measurement.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from onnxplain.benchmarks.references import References
from onnxplain.benchmarks.runner import environment, parse_int_list, parse_methods
from onnxplain.benchmarks.timing import paired_ratios, profile_call, time_calls
from onnxplain.engine import Model, explain
from onnxplain.engine.errors import BadInputError
from onnxplain.engine.registry import get_method, resolve_targets
from onnxplain.engine.sidecar import write_json_atomic, write_text_atomic

from .gradient_methods import gradient_methods
from .run import FACES, face_images, guarded, model_path, say

GOALS = {"overhead": 1.15, "plain": {1: 1.5, 16: 2.0}}
SIDES = ("ours", "captum on ours", "captum on plain")


def row_calls(model: Model, method: str, images: np.ndarray, seed: int = 0) -> list[Callable[[], Any]]:
    """The three prepared calls of one row (see the module doc), Captum's first run done."""
    params = get_method(method).bench_params
    x = model.spec.to_model_input(images)
    targets = resolve_targets(model, x, None)
    # The same model input as Captum's: preprocessing the faces (a resize each) is not method code.
    ours = lambda: explain(model, x, method, preprocessed=True, seed=seed, **params)  # noqa: E731
    refs = [next(iter(References(model, own_module=own).build(method, x, targets, params, seed=seed).values()))
            for own in (True, False)]
    return [ours, *refs]


def write_profile(folder: Path, key: str, method: str, n: int, calls: Sequence[Callable[[], Any]],
                  why: str) -> Path:
    """cProfile of ours and of Captum on our module (by internal time), one after the other, warm."""
    parts = [f"# {method} on {n} image(s) of {key}, cpu, torch threads {torch_threads()}: {why}"]
    for side, call in zip(SIDES[:2], calls):
        parts.append(f"\n## {side}\n\n" + profile_call(lambda: [call() for _ in range(5)], top=25, sort="tottime"))
    return write_text_atomic(folder / f"{key}-cpu-{method}-{n}-overhead.txt", "\n".join(parts))


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def measure(model: Model, key: str, methods: Sequence[str], sizes: Sequence[int], rounds: int,
            budget: float, profiles: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    for method in methods:
        for n in sizes:
            say(f"{key} {method} x{n}", None)
            calls = row_calls(model, method, face_images(n))
            timings = time_calls(calls, repeats=rounds, warmup=1, images=n, budget_s=budget)
            ours, on_ours, on_plain = timings
            overhead = float(np.median(1.0 / paired_ratios(on_ours, ours)))
            plain = float(np.median(paired_ratios(on_plain, ours)))
            rows.append({"model": key, "method": method, "images": n, "params": get_method(method).bench_params,
                         "ms": {s: t.ms for s, t in zip(SIDES, timings)},
                         "timings": {s: t.as_dict() for s, t in zip(SIDES, timings)},
                         "overhead": overhead, "vs_plain": plain,
                         "overhead_met": overhead <= GOALS["overhead"],
                         "vs_plain_met": plain >= GOALS["plain"].get(n, GOALS["plain"][16])})
            if profiles is not None and not (rows[-1]["overhead_met"] and rows[-1]["vs_plain_met"]):
                rows[-1]["profile"] = str(write_profile(profiles, key, method, n, calls,
                                                        f"overhead {overhead:.2f}x, vs plain {plain:.2f}x"))
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
    if args.quick:
        args.models, args.images, args.rounds, args.methods = "o01", "1", 2, args.methods or "saliency,gradcam"
    methods = parse_methods(args.methods or ",".join(gradient_methods()))
    if not set(methods) <= set(gradient_methods()):
        raise BadInputError(f"--methods takes gradient methods only: {', '.join(gradient_methods())}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    threads = torch_threads()
    print(f"torch threads: {threads}", file=sys.stderr)
    sizes = parse_int_list(args.images, "--images")
    rows: list[dict[str, Any]] = []
    for key in (k.strip() for k in args.models.split(",") if k.strip()):
        model = Model(model_path(key, args.cache), "cpu", threads=args.threads)
        rows += measure(model, key, methods, sizes, args.rounds, args.budget,
                        args.out / "profiles" if args.profile_missed else None)
    env = environment("cpu")
    command = "python -m benchmarks.gradient_overhead " + " ".join(sys.argv[1:])
    md = (f"## Gradient methods: our overhead around the module, at torch's default thread count\n\n"
          f"`{command}`; torch threads {threads} ({'set by --threads' if args.threads else 'torch default'}), "
          f"{env['usable_cores']} usable cores, {env['cpu']}. Images: the first faces of {FACES}. Each round times "
          "ours (`explain(model, x, method, preprocessed=True)`, targets None, on the model input Captum gets), "
          "Captum on our `Model.torch_scores` module and Captum on the plain onnx2torch module back to back; ratios are medians of per-round ratios. On a shared box "
          "(other jobs running) single rows swing; rerun on a quiet one before quoting them.\n\n"
          + table(rows, threads) + "\n")
    stem = f"gradient_overhead{'-quick' if args.quick else ''}-cpu"
    write_json_atomic(args.out / f"{stem}.json", {"command": command, "torch_threads": threads, "environment": env,
                                                  "goals": GOALS, "rows": rows})
    write_text_atomic(args.out / f"{stem}.md", md)
    print(md)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gradient_overhead", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="o01,k01,k02")
    ap.add_argument("--images", default="1,16")
    ap.add_argument("--methods", default=None, help=f"comma-separated subset of {', '.join(gradient_methods())}")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per row (at least 3 unless --quick)")
    ap.add_argument("--budget", type=float, default=6.0, help="seconds per row after which rounds stop (>= 3 rounds)")
    ap.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: their own)")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--quick", action="store_true", help="smoke test: o01, 1 image, 2 rounds")
    ap.add_argument("--profile-missed", action="store_true",
                    help="cProfile ours and Captum-on-ours (5 calls each) for every row that misses a goal")
    return guarded(_run, ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
