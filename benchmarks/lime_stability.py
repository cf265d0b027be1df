"""How stable LIME's top-5 superpixels are from seed to seed, and how many forward passes that costs.

    .venv/bin/python -m benchmarks.lime_stability [--models k01,o01,k02] [--faces 100] [--seeds 10]
                                                 [--samples 1000] [--max-samples 5000] [--stability 0.87]
                                                 [--configs lime,ours,auto] [--out benchmarks/results]

For each model (a zoo key or a path; k01 and k02 are exported with the MANIFEST's preprocessing) and
the first `--faces` LFW faces, explaining the predicted class (fixed once, given to every run), each
configuration runs with seeds 0..`--seeds`-1:
- `lime`: the lime package's LimeImageExplainer with `--samples` samples (on our superpixels, SLIC);
- `ours`: our LIME with `--samples` samples;
- `auto`: our LIME with samples="auto" (complementary pairs of patterns in rounds until the expected
  Jaccard index of the signed top-5 set with a redraw's reaches `--stability`, at most `--max-samples`).
The superpixels do not depend on the seed (SLIC is deterministic), so superpixel ids are comparable
across seeds. Stability: for each image, the Jaccard index of the top-5 superpixels by |weight|, as
(superpixel, sign) pairs, over every pair of seeds, averaged; then over the images. Also: the share of
seed pairs whose two signed sets are identical (what the recorded stability predicts), the mean
recorded stability, the forward passes per image (perturbed images the model evaluated) and the
seconds per image. Configurations run interleaved within each seed, so a shared machine's load
drifts over all of them alike. Writes `<out>/lime_stability.json` and `.md` after each model.
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from onnxplain.engine import Model, explain
from onnxplain.engine.methods.lime import AUTO_JACCARD
from onnxplain.engine.sidecar import write_json_atomic, write_text_atomic

from .run import face_images, model_path, say

TOP = 5
CONFIGS = ("lime", "ours", "auto")


def signed_top(weights: np.ndarray, k: int = TOP) -> list[frozenset[tuple[int, int]]]:
    """Per image, the k superpixels of largest |weight| with their signs (NaN padding ignored)."""
    out = []
    for w in weights:
        w = np.nan_to_num(w, nan=0.0)
        order = np.argsort(-np.abs(w), kind="stable")[:k]
        out.append(frozenset((int(j), int(np.sign(w[j]))) for j in order))
    return out


def pairwise(sets: list[list[frozenset]]) -> tuple[np.ndarray, np.ndarray]:
    """sets[seed][image] -> per image: mean Jaccard over seed pairs, and the share of identical pairs."""
    n_img = len(sets[0])
    jac, same = np.zeros(n_img), np.zeros(n_img)
    pairs = list(itertools.combinations(range(len(sets)), 2))
    for a, b in pairs:
        for i in range(n_img):
            x, y = sets[a][i], sets[b][i]
            jac[i] += len(x & y) / len(x | y) if x | y else 1.0
            same[i] += x == y
    return jac / len(pairs), same / len(pairs)


def run_config(model: Model, faces: np.ndarray, targets: np.ndarray, config: str, seed: int,
               args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"samples": args.samples}
    if config == "lime":
        params["impl"] = "lime"
    elif config == "auto":
        params = {"samples": "auto", "max_samples": args.max_samples, "stability": args.stability}
    start = time.perf_counter()
    e = explain(model, list(faces), "lime", targets=targets, seed=seed, **params)
    return {"seconds": time.perf_counter() - start, "weights": e.details.weights,
            "forwards": np.asarray(e.details.samples_used, dtype=np.int64),
            "stability": np.asarray(e.details.stability, dtype=np.float64)}


def bench_model(key: str, args: argparse.Namespace, configs: Sequence[str]) -> dict[str, Any]:
    model = Model(model_path(key, args.cache))
    faces = face_images(args.faces)
    x = model.spec.to_model_input(list(faces))
    targets = model.predict(x).argmax(axis=1)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for seed in range(args.seeds):
        order = configs if seed % 2 == 0 else list(reversed(configs))
        for c in order:
            say(f"{key}: seed {seed}, {c}", seed / args.seeds)
            runs[c].append(run_config(model, faces, targets, c, seed, args))
    out: dict[str, Any] = {"model": key, "faces": args.faces, "seeds": args.seeds, "targets": targets.tolist(),
                           "configs": {}}
    for c in configs:
        jac, same = pairwise([signed_top(r["weights"]) for r in runs[c]])
        forwards = np.stack([r["forwards"] for r in runs[c]])
        stab = np.stack([r["stability"] for r in runs[c]])
        seconds = np.array([r["seconds"] for r in runs[c]]) / args.faces
        out["configs"][c] = {
            "mean_jaccard": float(jac.mean()), "identical_pairs": float(same.mean()),
            "mean_recorded_stability": float(stab.mean()), "forwards_per_image": float(forwards.mean()),
            "seconds_per_image": float(np.median(seconds)),
            "per_image": {"jaccard": jac.round(4).tolist(), "identical_pairs": same.round(4).tolist(),
                          "forwards_mean": forwards.mean(axis=0).round(1).tolist(),
                          "stability_mean": stab.mean(axis=0).round(4).tolist()},
        }
    return out


LABELS = {"lime": "lime package, {samples}", "ours": "ours, {samples}", "auto": "ours, auto (E[Jaccard] ≥ {stability:.2f}, cap {max_samples})"}


def markdown(doc: dict[str, Any]) -> str:
    a = doc["args"]
    lines = [f"LIME seed-to-seed stability: {a['faces']} LFW faces x {a['seeds']} seeds, top-{TOP} superpixels by "
             f"|weight| with signs (SLIC), predicted class. {doc['when']}, {doc['machine']}.", "",
             f"`{doc['command']}`", "",
             "| model | configuration | mean Jaccard (10 seeds) | identical pairs | recorded stability | forwards / image "
             "| s / image |",
             "|---|---|---|---|---|---|---|"]
    for m in doc["models"]:
        for c, r in m["configs"].items():
            label = LABELS[c].format(samples=a["samples"], stability=a["stability"], max_samples=a["max_samples"])
            lines.append(f"| {m['model']} | {label} | {r['mean_jaccard']:.3f} | {r['identical_pairs']:.0%} | "
                         f"{r['mean_recorded_stability']:.0%} | {r['forwards_per_image']:.0f} | "
                         f"{r['seconds_per_image']:.3f} |")
    verdicts = [verdict(m) for m in doc["models"] if {"lime", "auto"} <= set(m["configs"])]
    if verdicts:
        lines += ["", *verdicts]
    return "\n".join(lines).replace("(10 seeds)", f"({a['seeds']} seeds)") + "\n"


def verdict(m: dict[str, Any]) -> str:
    """The issue's goal for one model: auto at least as stable as lime's, with at most a third of its forwards."""
    lime, auto = m["configs"]["lime"], m["configs"]["auto"]
    stable = auto["mean_jaccard"] >= lime["mean_jaccard"]
    cheap = auto["forwards_per_image"] <= lime["forwards_per_image"] / 3
    return (f"- {m['model']}: auto {'is' if stable else 'is NOT'} at least as stable as the lime package "
            f"({auto['mean_jaccard']:.3f} vs {lime['mean_jaccard']:.3f}) and uses "
            f"{auto['forwards_per_image'] / lime['forwards_per_image']:.2f}x its forwards "
            f"({'within' if cheap else 'NOT within'} a third): goal {'met' if stable and cheap else 'missed'}.")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lime_stability", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="k01,o01,k02")
    ap.add_argument("--faces", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--max-samples", type=int, default=5000)
    ap.add_argument("--stability", type=float, default=AUTO_JACCARD)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--machine", default="", help="a note on the machine (shared, load) for the results")
    ap.add_argument("--cache", type=Path, default=None, help="export cache (default: $ONNXPLAIN_CACHE or ~/.cache)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown or args.seeds < 2:
        ap.error(f"configs are {', '.join(CONFIGS)}; seeds must be at least 2")
    doc: dict[str, Any] = {
        "command": "python -m benchmarks.lime_stability " + shlex.join(sys.argv[1:] if argv is None else argv),
        "when": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": args.machine or "this machine",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "models": []}
    args.out.mkdir(parents=True, exist_ok=True)
    for key in args.models.split(","):
        doc["models"].append(bench_model(key, args, configs))
        write_json_atomic(args.out / "lime_stability.json", doc)
        write_text_atomic(args.out / "lime_stability.md", markdown(doc))
        print(markdown(doc), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
