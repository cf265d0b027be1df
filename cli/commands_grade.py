"""`grade`: every submission of a class exported, evaluated and explained, isolated and resumable."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .options import (
    DataOpt, DeviceOpt, IgStepsOpt, IgToleranceOpt, JsonOpt, LayoutOpt, LimeSamplesOpt, LimitOpt, OutOpt,
    QuietOpt, SeedOpt, TargetOutputOpt, TrustOpt, report_params,
)
from .output import OUT_ROOT, command_output, say


def register(app: typer.Typer) -> None:
    app.command("grade")(grade_command)


def grade_command(
    submissions: Annotated[Path, typer.Argument(
        help="A folder with one model file or one folder per student (the name is the student id).",
        show_default=False)],
    data: DataOpt,
    out: OutOpt = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Submissions graded in parallel processes "
                                         "(with --ray: Ray tasks in flight at once).")] = 1,
    ray: Annotated[bool, typer.Option("--ray", help="Grade each submission as a Ray task, on a local Ray "
                                      "instance or the cluster of --ray-address (needs onnxplain[ray]).")] = False,
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray-address", help="A running Ray cluster for --ray: HOST:6379 from `ray start --head`, or auto; "
        "OUT must be a folder every node sees at the same path.", show_default=False)] = None,
    gpu_per_task: Annotated[float, typer.Option(
        "--gpu-per-task", min=0.01, max=1.0, help="With --ray and --device cuda: the GPU fraction each task "
        "asks Ray for.")] = 0.25,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated methods for every student.")]
    = "saliency,lime,ig",
    per_class: Annotated[int, typer.Option("--per-class", min=1, help="Images of each class to explain.")] = 1,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Export time limit per submission, seconds.")]
    = 120.0,
    memory_gb: Annotated[float, typer.Option("--memory-gb", min=0.5, help="Export memory limit per submission.")]
    = 4.0,
    arch_name: Annotated[Optional[str], typer.Option(
        "--arch-name", help="Only this model class, for state_dict submissions (without it the class whose "
        "weights fit is found in each student's .py files; class code runs only with --trust, isolated).",
        show_default=False)] = None,
    input_shape: Annotated[Optional[str], typer.Option(
        "--input-shape", help="Input shape for PyTorch submissions that do not carry one: 1,1,48,48 (default: "
        "the data's size, else the one size the model runs on).", show_default=False)] = None,
    overrides: Annotated[Optional[Path], typer.Option(
        "--overrides", help="Per-student settings (CSV or TOML; id plus any of class, arch_args, input_shape, "
        "weights_key, scale, mean, std, labels) where inference cannot reach.", show_default=False)] = None,
    layout: LayoutOpt = None,
    labels: Annotated[Optional[str], typer.Option(
        "--labels", help="Class names for every model: fer2013, food11, digits or a,b,c.", show_default=False)] = None,
    samples: LimeSamplesOpt = None,
    steps: IgStepsOpt = None,
    tolerance: IgToleranceOpt = None,
    target_output: TargetOutputOpt = None,
    limit: LimitOpt = None,
    trust: TrustOpt = False,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Grade a class: export (isolated, time- and memory-limited), evaluate on the same data and explain the
    same images for every submission; writes OUT/<id>/report.html, summary.csv, summary.json and index.html.
    Re-running skips submissions whose files and options are unchanged."""
    from onnxplain.engine.errors import BadInputError
    from onnxplain.engine.grading import GradeOptions, discover_submissions, run_pool, status_counts, write_summary

    from .flags import grade_row
    from onnxplain.engine.grading.overrides import read_overrides
    from onnxplain.engine.registry import method_names

    from .loading import resolve_device

    if not data.exists():
        raise BadInputError(f"{data}: no such file or folder")
    if ray_address and not ray:
        raise BadInputError("--ray-address needs --ray")
    if ray:
        from onnxplain.engine.grading.ray_pool import import_ray

        import_ray()  # a missing extra fails here, before any work
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = [m for m in chosen if m not in method_names()]
    if unknown:
        raise BadInputError(f"unknown method {unknown[0]!r}; known methods: {', '.join(method_names())}")
    params = report_params(steps, tolerance, samples, target_output)
    options = GradeOptions(
        data=str(data.resolve()), methods=chosen, per_class=per_class, limit=limit, seed=seed, timeout=timeout,
        memory_gb=memory_gb, trust=trust, arch_name=arch_name, input_shape=input_shape, labels=labels,
        layout=layout.value if layout else None,
        device=resolve_device(device), method_params=params,
        overrides=read_overrides(overrides) if overrides is not None else {},
    )
    subs = discover_submissions(submissions)
    strangers = sorted(set(options.overrides) - {s.id for s in subs})
    if strangers:
        raise BadInputError(f"--overrides names {', '.join(strangers[:5])}, not among the submissions in "
                            f"{submissions}; check the ids (folder or file names)")
    folder = out or OUT_ROOT / "grade" / submissions.resolve().name
    folder.mkdir(parents=True, exist_ok=True)
    with command_output(json_mode=json_out, quiet=quiet) as run:
        done = 0

        def progress(row: dict[str, Any]) -> None:
            nonlocal done
            done += 1
            note = "unchanged, skipped" if row.get("skipped") else row["status"]
            run.progress(f"graded {done}/{len(subs)}: {row['id']} ({note})", done / len(subs))

        if ray:
            from onnxplain.engine.grading.ray_pool import run_ray

            run.progress(f"grading {len(subs)} submissions as Ray tasks, {workers} at a time", 0.0)
            rows = run_ray(subs, options, folder, address=ray_address, workers=workers, progress=progress,
                           gpu_per_task=gpu_per_task)
        else:
            run.progress(f"grading {len(subs)} submissions with {workers} worker(s)", 0.0)
            rows = run_pool(subs, options, folder, workers=workers, progress=progress)
        rows = [grade_row(r) for r in rows]
        index = write_summary(folder, rows, options)
        doc = {"command": "grade", "out": str(folder), "index": str(index), "counts": status_counts(rows),
               "skipped": sum(1 for r in rows if r.get("skipped")), "submissions": len(rows)}
        run.result(doc, paths=[index, folder / "summary.csv"], human=lambda console: _print(console, rows))


def _print(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} submissions", title_justify="left")
    for col in ("student", "status", "accuracy", "parameters", "reason"):
        table.add_column(col, justify="right" if col in ("accuracy", "parameters") else "left")
    for r in rows:
        acc = r.get("accuracy")
        table.add_row(r["id"], r["status"] + (" (cached)" if r.get("skipped") else ""),
                      "" if acc is None else f"{acc:.3f}", str(r.get("parameters") or ""),
                      r.get("reason") or r.get("note") or "")
    console.print(table)
    say(console, "summary:")
