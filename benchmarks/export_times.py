"""Export wall time per zoo model with a warm export worker (target: < 5 s per homework-size Keras model).

    .venv/bin/python -m benchmarks.export_times [--models k01,k02,...] [--repeats 3] [--out benchmarks/results]

One ExportWorker is started (its start-up, TensorFlow and torch imports included, is timed once and
reported apart); then each model is exported `--repeats` times after one warm-up export, into a
temporary folder, through `onnxplain.exporters.export` (the parent's view: request, conversion,
parity check, atomic writes). Timing goes through `onnxplain.benchmarks.timing.time_call`.
Prints a markdown table; with `--out`, also writes `export_times.md` and `export_times.json` there.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import psutil

from onnxplain.benchmarks.timing import time_call
from onnxplain.engine.sidecar import write_json_atomic, write_text_atomic
from onnxplain.exporters import ExportWorker, export

from .run import zoo_file

DEFAULT_MODELS = "k01,k02,k03,k04,k05,t04,t06,o01,o02,o03"
TARGET_S = 5.0  # per homework-size Keras model, warm worker
# What each zoo model needs to export (the MANIFEST's facts the files do not hold).
OPTIONS: dict[str, dict[str, Any]] = {"t04": {"input_shape": "1,1,28,28"}, "t06": {"input_shape": "1,1,120,120"}}


def zoo_options(key: str) -> dict[str, Any]:
    options = dict(OPTIONS.get(key, {}))
    if key == "k05":  # weights only: the architecture sits beside it
        weights = zoo_file(key)
        options["arch"] = weights.with_name(weights.name.replace(".h5", ".arch.json"))
    return options


def measure(keys: Sequence[str], repeats: int) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnxplain-export-bench-") as tmp, ExportWorker() as worker:
        started = time.perf_counter()
        worker.start()
        startup = time.perf_counter() - started
        for key in keys:
            src, options = zoo_file(key), zoo_options(key)
            out = Path(tmp) / f"{key}.onnx"
            cpu_before = _cpu_s(worker)
            timing = time_call(lambda: export(src, out, worker=worker, **options), repeats=repeats, warmup=1)
            cpu = (_cpu_s(worker) - cpu_before) / (repeats + 1)
            side = json.loads(Path(str(out) + ".json").read_text())
            rows.append({
                "model": key, "format": side["source"]["format"], "size_mb": src.stat().st_size / 1e6,
                "median_s": timing.median, "min_s": min(timing.samples), "max_s": max(timing.samples),
                "worker_cpu_s": cpu,
                "parity": (side.get("parity") or {}).get("max_abs_diff"),
                "converter": side["exporter"]["converter"]["name"],
            })
    return {"startup_s": startup, "repeats": repeats, "rows": rows, "machine": platform.platform(),
            "cpus": _cpu_count(), "load_average": os.getloadavg()[0],
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _cpu_s(worker: ExportWorker) -> float:
    """CPU seconds the worker process has used: a load-independent companion to wall time."""
    times = psutil.Process(worker.pid).cpu_times() if worker.pid else None
    return times.user + times.system if times else 0.0


def _cpu_count() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Export wall time with a warm worker (start-up {result['startup_s']:.1f} s, once), "
        f"median of {result['repeats']} after 1 warm-up; {result['cpus']} CPUs, load average "
        f"{result['load_average']:.1f}, {result['when']}. Worker CPU s: the export process's CPU time per export.",
        "",
        "| model | format | file MB | median s | min-max s | worker CPU s | parity | converter | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in result["rows"]:
        keras = row["format"].startswith("keras")
        target = (f"< {TARGET_S:g} s: {'met' if row['median_s'] < TARGET_S else 'MISSED'}") if keras else ""
        parity = f"{row['parity']:.1e}" if row["parity"] is not None else "-"
        lines.append(f"| {row['model']} | {row['format']} | {row['size_mb']:.1f} | {row['median_s']:.2f} | "
                     f"{row['min_s']:.2f}-{row['max_s']:.2f} | {row['worker_cpu_s']:.2f} | {parity} | "
                     f"{row['converter']} | {target} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated zoo keys")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="folder for export_times.md/.json")
    args = parser.parse_args(argv)
    result = measure([k.strip() for k in args.models.split(",") if k.strip()], args.repeats)
    text = to_markdown(result)
    print(text)
    if args.out is not None:
        write_text_atomic(args.out / "export_times.md", text)
        write_json_atomic(args.out / "export_times.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
