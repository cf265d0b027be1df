"""The full side-by-side benchmark: every method, onnxplain vs its reference, on real zoo models.

    .venv/bin/python -m benchmarks.run --models k01,o01 --device cpu --out benchmarks/results

For each model (a zoo key such as k01 or o01, or a path; Keras/PyTorch files are exported through
`onnxplain.exporters.ensure_onnx` into the export cache): saliency, SmoothGrad, IG, Grad-CAM,
occlusion and LIME, ours vs Captum / the lime package on 1 and 16 real faces, the forward-pass
floors on onnxruntime and on the torch module, the targets of `targets.toml`. Writes
`<out>/<device>.json` (one document) and `<out>/<device>.md` (the tables); with `--profile-missed`,
a cProfile of onnxplain's call for every row that misses a target, in `<out>/profiles/`.
All timing goes through `onnxplain.benchmarks`, the one harness; `forward_methods.py` and
`gradient_methods.py` are this run restricted to a few methods, and share its pieces below.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from onnxplain.engine import Model
from onnxplain.benchmarks.output import markdown, report_document
from onnxplain.benchmarks.results import BenchReport
from onnxplain.benchmarks.runner import BenchConfig, ours_call, parse_int_list, parse_methods, run_benchmark
from onnxplain.benchmarks.timing import profile_call
from onnxplain.engine.errors import OnnxplainError
from onnxplain.engine.sidecar import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ONNXPLAIN_SHARED", ROOT.parent / "shared"))
FACES = "skimage_lfw_subset_200x25x25.npy"  # 100 real faces (then 100 non-faces), 25x25 gray
DEFAULT_MODELS = "k01,o01"
# The zoo MANIFEST's preprocessing for the Keras models, given to the exporter: (x/255 - 0.5) * 2.
_KERAS_FER = dict(labels="fer2013", scale=2.0 / 255.0, mean=1.0, std=1.0)
EXPORT_OPTIONS = {"k01": _KERAS_FER, "k02": _KERAS_FER}


def zoo_file(key: str) -> Path:
    """A zoo model by its key (the file name's prefix, e.g. k01), or a path as it is."""
    path = Path(key)
    if path.exists():
        return path
    matches = sorted(p for p in (SHARED / "zoo").glob(f"{key}_*") if not p.name.endswith((".json", ".md")))
    if len(matches) != 1:
        known = sorted({p.name.split("_", 1)[0] for p in (SHARED / "zoo").glob("*_*")})
        raise OnnxplainError(f"model {key!r} is not a file or one zoo key; zoo keys: {', '.join(known) or 'none'} "
                             f"(in {SHARED / 'zoo'})")
    return matches[0]


def model_path(key: str, cache: Path | None) -> Path:
    """The ONNX file for a zoo key or path: itself, or its export (cached) with the MANIFEST's preprocessing."""
    from onnxplain.exporters import ensure_onnx

    return Path(ensure_onnx(zoo_file(key), cache_dir=cache, **EXPORT_OPTIONS.get(key, {})))


def face_images(n: int) -> np.ndarray:
    """The first `n` real faces of scikit-image's LFW subset (floats in [0, 1], resized by the model's spec)."""
    faces = np.load(SHARED / "data" / FACES)[:100]
    return faces[np.arange(n) % len(faces)]


def say(message: str, fraction: float | None) -> None:
    done = "" if fraction is None else f"[{fraction:4.0%}] "
    print(f"{done}{message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ shared by the scripts
def add_common_arguments(ap: argparse.ArgumentParser, *, models: str = DEFAULT_MODELS, images: str = "1,16",
                         repeats: int = 5, budget: float = 30.0) -> None:
    """The options every benchmark script here takes."""
    ap.add_argument("--models", default=models, help=f"zoo keys or paths, comma-separated ({models})")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--images", "--batch-sizes", dest="images", default=images,
                    help=f"images per call, comma-separated ({images})")
    ap.add_argument("--repeats", "--pairs", dest="repeats", type=int, default=repeats,
                    help="timed rounds per measurement; with references, each round times ours and theirs back to "
                         "back (interleaved pairs)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    ap.add_argument("--budget", type=float, default=budget,
                    help="seconds per measurement after which repeating stops (at least 3 timed runs)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--cache", type=Path, default=None, help="export cache (default: $ONNXPLAIN_CACHE or ~/.cache)")
    ap.add_argument("--threads", type=int, default=None,
                    help="pin torch's and onnxruntime's intra-op threads to N, both sides (default: not pinned, their "
                         "own defaults, as `explain` runs; every table says which); 1 keeps a 2-core box shared with "
                         "other jobs from oversubscribing, so ratios repeat")


def bench_models(args: argparse.Namespace, images: Any, config: BenchConfig,
                 after: Callable[[Model, BenchReport], None] | None = None) -> list[BenchReport]:
    """`run_benchmark` on each model of `--models`, on `--device`; `after(model, report)` runs per model."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    reports = []
    for key in (k.strip() for k in args.models.split(",") if k.strip()):
        model = Model(model_path(key, args.cache), args.device, threads=args.threads)
        reports.append(run_benchmark(model, images, config, name=key, progress=say))
        if after is not None:
            after(model, reports[-1])
    return reports


def write_results(module: str, out: Path, stem: str, reports: Sequence[BenchReport], head: str, *,
                  sections: Sequence[str] | None = None, extra: dict[str, Any] | None = None) -> list[Path]:
    """`<out>/<stem>.json` (the one JSON document, plus `extra` and the command) and `<out>/<stem>.md`
    (`head`, then each report's tables, or `sections` when given); prints the markdown. `module` is
    the script's module name, for the command line recorded with the results."""
    command = "python -m " + " ".join(shlex.quote(a) for a in [module, *sys.argv[1:]])
    stamp = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, `{command}`."
    md = f"{head}\n\n{stamp}\n\n" + "\n".join(sections if sections is not None else [markdown(r) for r in reports])
    paths = [write_json_atomic(out / f"{stem}.json", {**report_document(reports), "command": command, **(extra or {})}),
             write_text_atomic(out / f"{stem}.md", md)]
    print(md)
    for p in paths:
        print(p, file=sys.stderr)
    return paths


def config_from(args: argparse.Namespace, **kwargs: Any) -> BenchConfig:
    """A BenchConfig from the common options; `kwargs` set the rest (methods, compare, floors, ...)."""
    return BenchConfig(batch_sizes=parse_int_list(args.images, "--images"), repeats=args.repeats, warmup=args.warmup,
                       budget_s=args.budget, **kwargs)


def guarded(main: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a script's body; an OnnxplainError becomes one `error: ...` line and exit 2."""
    try:
        return main(args)
    except OnnxplainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------------------------ this script
def parse_params(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """['lime.samples=100', 'ig.baseline=noise'] -> {'lime': {'samples': 100}, 'ig': {'baseline': 'noise'}}."""
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        method, dot, name = key.strip().partition(".")
        if not (sep and dot and method and name):
            raise OnnxplainError(f"--param wants METHOD.NAME=VALUE (e.g. lime.samples=100), got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        params.setdefault(method, {})[name] = value
    return params


def write_profiles(report: BenchReport, model: Model, images: np.ndarray, folder: Path) -> list[Path]:
    """A cProfile of onnxplain's call for each row that missed a target: where its time goes."""
    from onnxplain.engine.registry import get_method, resolve_targets

    written = []
    for row in report.rows:
        missed = [c.target for c in row.checks if c.met is False]
        if not missed:
            continue
        x = model.spec.to_model_input(images[: row.images])
        t = resolve_targets(model, x, None)
        call = ours_call(model, row.method, x, t, row.params, int(report.config["seed"]),
                         report.config.get("method_batch_size") or get_method(row.method).default_batch_size)
        call()  # warm, as the timed runs were
        text = profile_call(call, top=30)
        path = folder / f"{report.model}-{report.device}-{row.method}-{row.images}.txt"
        write_text_atomic(path, f"# {row.method} on {row.images} image(s) of {report.model}, {report.device}\n"
                                f"# missed: {'; '.join(missed)}\n\n{text}")
        written.append(path)
    return written


def _run(args: argparse.Namespace) -> int:
    config = config_from(args, methods=parse_methods(args.methods), compare=not args.no_compare,
                         floors=not args.no_floors, params=parse_params(args.param))
    images = face_images(max(config.batch_sizes))
    profiles: list[Path] = []

    def profile(model: Model, report: BenchReport) -> None:
        if args.profile_missed:
            profiles.extend(write_profiles(report, model, images, args.out / "profiles"))

    reports = bench_models(args, images, config, after=profile)
    head = (f"## onnxplain benchmarks on {args.device}: {reports[0].device_name}\n\n"
            f"Images: the first {max(config.batch_sizes)} faces of {FACES}, resized by each model's input spec.")
    write_results("benchmarks.run", args.out, args.device, reports, head)
    for p in profiles:
        print(p, file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    add_common_arguments(ap)
    ap.add_argument("--methods", default=None, help="comma-separated (default: all six)")
    ap.add_argument("--no-compare", action="store_true", help="skip Captum and the lime package")
    ap.add_argument("--no-floors", action="store_true",
                    help="skip the forward-throughput floors (1,024 images per batch size: minutes on a CPU)")
    ap.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                    help="override a method's parameter, e.g. lime.samples=100 (repeatable; VALUE is read as JSON, "
                         "else as text)")
    ap.add_argument("--profile-missed", action="store_true", help="profile every row that misses a target")
    return guarded(_run, ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
