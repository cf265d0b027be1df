"""Grading a class: N homework-size Keras submissions, saliency + LIME + IG + the confusion matrix on
70 images each, `onnxplain grade --workers W`. Reports the wall time and the per-submission breakdown.

    .venv/bin/python -m benchmarks.grade_class --n 100 --workers 2            # the issue's setting
    .venv/bin/python -m benchmarks.grade_class --n 6 --samples 1000 --out /tmp/g  # a quick look

The models are the course's typical CNN (4 blocks Conv-BN-LeakyReLU-MaxPool-Dropout, 64-128-256-512
filters, Dense 512-512-7, about 4.2 M parameters), each with its own random weights, saved by tf_keras
as full-model .h5 files like a ModelCheckpoint writes. The images are 70 real faces (scikit-image's
LFW subset, resized to 48x48), 10 per class.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ONNXPLAIN_SHARED", ROOT.parent / "shared")) / "data"

MAKE_MODELS = textwrap.dedent('''
    import sys, tf_keras as keras
    out, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        keras.utils.set_random_seed(i)
        L = keras.layers
        blocks = [L.InputLayer(input_shape=(48, 48, 1))]
        for filters in (64, 128, 256, 512):
            blocks += [L.Conv2D(filters, 3, padding="same"), L.BatchNormalization(), L.LeakyReLU(0.1),
                       L.MaxPooling2D(), L.Dropout(0.25)]
        blocks += [L.Flatten(), L.Dense(512, activation="relu"), L.Dense(512, activation="relu"),
                   L.Dense(7, activation="softmax")]
        keras.Sequential(blocks).save(f"{out}/student{i:03d}/mcp-best-acc-0.{6500 + i}.h5")
''')


def make_class(folder: Path, n: int) -> None:
    for i in range(n):
        (folder / f"student{i:03d}").mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", MAKE_MODELS, str(folder), str(n)], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})


def make_data(path: Path) -> Path:
    faces = np.load(DATA / "skimage_lfw_subset_200x25x25.npy")[:70]
    x = np.stack([cv2.resize(f, (48, 48)) for f in faces])
    np.savez(path, x=(x * 255).astype(np.uint8), y=np.arange(70) % 7)
    return path


BREAKDOWN = ("export", "load", "evaluation", "methods", "figures_and_writing", "other", "not_methods", "total")


def breakdown(row: dict) -> dict:
    """Where one submission's seconds went. `methods`: the methods' own computation (their forward and
    backward passes); `figures_and_writing`: the rest of the report (figures, tables, HTML, maps.npz);
    `other`: what no timer covers (hashing, reading the data, the sidecar, result.json, the folder swap);
    `not_methods`: everything but `methods`, the export included."""
    methods = sum(v for v in (row.get("method_seconds") or {}).values() if v)
    explain = row.get("explain_seconds") or 0.0
    evaluation = row.get("evaluation_seconds") or 0.0
    export, load, total = row.get("export_seconds") or 0.0, row.get("load_seconds") or 0.0, row["total_seconds"]
    out = {"id": row["id"], "export": export, "load": load, "evaluation": evaluation, "methods": methods,
           "per_method": row.get("method_seconds"), "figures_and_writing": max(0.0, explain - methods - evaluation),
           "other": max(0.0, total - export - load - explain), "not_methods": total - methods, "total": total}
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def print_breakdown(rows: list, median: dict | None) -> None:
    print("| submission | " + " | ".join(BREAKDOWN) + " |\n|" + "---|" * (len(BREAKDOWN) + 1))
    for b in rows + ([{"id": "median", **median}] if median else []):
        print(f"| {b['id']} | " + " | ".join(f"{b[k]:.2f}" for k in BREAKDOWN) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=1000, help="LIME samples")
    ap.add_argument("--steps", type=int, default=50, help="IG steps")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--per-class", type=int, default=10, help="images of each class explained")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="onnxplain-grade-bench-"))
    subs = work / "subs"
    t0 = time.perf_counter()
    make_class(subs, args.n)
    data = make_data(work / "faces70.npz")
    made = time.perf_counter() - t0
    cmd = [str(Path(sys.executable).with_name("onnxplain")), "grade", str(subs), "--data", str(data),
           "--out", str(work / "out"), "--workers", str(args.workers), "--methods", "saliency,lime,ig",
           "--per-class", str(args.per_class), "--samples", str(args.samples), "--steps", str(args.steps), "--json", "--quiet"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    summary = json.loads((work / "out" / "summary.json").read_text())
    rows = summary["submissions"]
    ok = [r for r in rows if r["status"] == "ok"]
    med = {k: statistics.median(r[k] for r in ok) if ok else None
           for k in ("export_seconds", "explain_seconds", "total_seconds")}
    methods = {m: statistics.median(r["method_seconds"][m] for r in ok if r.get("method_seconds", {}).get(m))
               for m in ("saliency", "lime", "ig") if ok}
    result = {"n": args.n, "workers": args.workers, "cores": os.cpu_count(), "wall_seconds": round(wall, 1),
              "per_submission_median": med, "method_median_seconds": methods, "counts": summary["counts"],
              "lime_samples": args.samples, "ig_steps": args.steps, "models_made_in_seconds": round(made, 1),
              "projected_100_seconds": round(wall * 100 / args.n, 1), "grade_stdout": json.loads(done.stdout)}
    result["breakdown"] = [breakdown(r) for r in ok]
    result["breakdown_median"] = {k: round(statistics.median(b[k] for b in result["breakdown"]), 3)
                                  for k in BREAKDOWN} if ok else None
    print_breakdown(result["breakdown"], result["breakdown_median"])
    print(f"| submissions | workers | wall | per submission (median): export / explain+evaluate / total "
          f"| saliency / LIME / IG (median) | projected for 100 |\n|---|---|---|---|---|---|\n"
          f"| {args.n} | {args.workers} | {wall:.0f} s | {med['export_seconds']:.1f} / {med['explain_seconds']:.1f} / "
          f"{med['total_seconds']:.1f} s | " + " / ".join(f"{methods.get(m, float('nan')):.1f}" for m in
                                                           ("saliency", "lime", "ig"))
          + f" s | {wall * 100 / args.n / 60:.1f} min |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
