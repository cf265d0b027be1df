"""summary.csv, summary.json and index.html for a graded class."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import numpy as np

from ..render.class_grid import render_class_grid
from ..render.html import Link, Section, render_report_html
from ..sidecar import write_json_atomic, write_text_atomic
from .unit import STATUS_OK, GradeOptions, load_common_data

CSV_COLUMNS = ("id", "status", "reason", "framework", "framework_version", "format", "parameters", "classes",
               "accuracy", "per_class_accuracy", "parity", "torch_parity", "export_seconds", "explain_seconds",
               "total_seconds", "reused", "model_file", "report", "note", "preprocessing")
GRID_PAGE = 30  # students per side-by-side figure


def status_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return dict(sorted(counts.items()))


def write_summary(out_root: str | Path, rows: Sequence[dict[str, Any]], options: GradeOptions) -> Path:
    """Write the three summary files; returns index.html."""
    out = Path(out_root)
    # `reused`: the row comes from an earlier run (same files, same options that reach this submission).
    clean = [{**{k: v for k, v in row.items() if k != "skipped"}, "reused": bool(row.get("skipped"))} for row in rows]
    write_json_atomic(out / "summary.json", {"options": _options(options), "counts": status_counts(clean),
                                             "submissions": clean})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in clean:
        writer.writerow({k: json.dumps(v) if isinstance(v, dict) else ("" if v is None else v)
                         for k, v in row.items()})
    write_text_atomic(out / "summary.csv", buffer.getvalue())
    return _write_index(out, clean, options)


def _write_index(out: Path, rows: Sequence[dict[str, Any]], options: GradeOptions) -> Path:
    table = Section("summary", "Submissions", params={"data": options.data, "methods": ", ".join(options.methods)})
    counts = status_counts(rows)
    table.text("Status counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ". A student's name links "
               "to their page (`<id>/report.html`); the numbers are in summary.csv and summary.json.")
    table.table(["student", "status", "framework", "parameters", "accuracy", "parity", "export s", "explain s",
                 "reason"],
                [[_student(out, r), r["status"], " ".join(str(x) for x in (r.get("framework"), r.get("framework_version")) if x),
                  _num(r.get("parameters")), _num(r.get("accuracy"), ".3f"), _num(r.get("parity"), ".1e"),
                  _num(r.get("export_seconds"), ".1f"), _num(r.get("explain_seconds"), ".1f"),
                  r.get("reason") or r.get("note") or ""] for r in rows], numeric=[3, 4, 5, 6, 7])
    sections = [table, *_grid_sections(out, rows, options)]
    return render_report_html(
        out / "index.html", title="Class summary",
        lead="Every submission exported, evaluated on the same data and explained on the same images.",
        facts=[("submissions", len(rows)), ("ok", counts.get(STATUS_OK, 0)), ("data", options.data),
               ("methods", ", ".join(options.methods))],
        sections=sections, footer="onnxplain grade",
    )


def _student(out: Path, row: dict[str, Any]) -> Link | str:
    """The student's id, linked to their report when there is one."""
    report = out / row["id"] / "report.html"
    return Link(row["id"], f"{quote(row['id'])}/report.html") if report.exists() else row["id"]


def _grid_sections(out: Path, rows: Sequence[dict[str, Any]], options: GradeOptions) -> list[Section]:
    ok = [r for r in rows if r["status"] == STATUS_OK and (out / r["id"] / "maps.npz").exists()]
    if not ok:
        return []
    dataset, picked = load_common_data(options)
    images = dataset.images[picked].astype(np.float32)
    images = images / 255.0 if images.max() > 1.0 else images
    labels = [dataset.class_name(int(dataset.labels[i])) if dataset.labels is not None else str(i) for i in picked]
    sections = []
    for method in options.methods:
        maps: dict[str, np.ndarray] = {}
        for r in ok:
            with np.load(out / r["id"] / "maps.npz") as npz:
                if method in npz.files:
                    maps[r["id"]] = npz[method]
        if not maps:
            continue
        s = Section(f"grid-{method}", f"{method}: side by side")
        s.text("Rows are students, columns the same images for everyone (true class above each column).")
        ids = list(maps)
        for page, start in enumerate(range(0, len(ids), GRID_PAGE)):
            chunk = {k: maps[k] for k in ids[start:start + GRID_PAGE]}
            png = render_class_grid(images, chunk, method, out / "grids" / f"{method}-{page}.png", column_labels=labels)
            s.figure(png, f"{method}, students {start + 1}-{start + len(chunk)}", relative_to=out)
        sections.append(s)
    return sections


def _options(options: GradeOptions) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(options)


def _num(value: Any, fmt: str = "") -> str:
    if value is None:
        return ""
    return format(value, fmt) if fmt else str(value)
