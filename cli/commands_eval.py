"""`evaluate` (accuracy, per-class precision/recall, confusion matrix), `report` (the whole assignment
as one HTML page) and `demo` (train, export and report with no arguments)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .loading import ModelOptions, check_model_path, model_options, open_dataset, open_model, resolve_device
from .options import (
    DataOpt, DeviceOpt, HistoryOpt, IgStepsOpt, IgToleranceOpt, JsonOpt, LayerOpt, LimeSamplesOpt, LimitOpt,
    MethodsOpt, ModelArg, OutOpt, PerClassOpt, QuietOpt, SeedOpt, TargetOutputOpt, parse_methods, report_params,
)
from .output import OUT_ROOT, command_output, default_out, save_json, say


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
    app.command("report")(report_command)
    app.command("demo")(demo_command)


def _check_data(data: Path) -> None:
    from onnxplain.engine.errors import BadInputError

    if not data.exists():
        raise BadInputError(f"{data}: no such file or folder")


@model_options
def evaluate_command(
    model: ModelArg,
    data: DataOpt,
    limit: LimitOpt = None,
    out: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    """Accuracy, per-class precision/recall, confusion matrix and most-confused pairs on a dataset.

    Writes confusion.png (row-normalised) and evaluation.json into --out."""
    from onnxplain.engine.evaluate import evaluate
    from onnxplain.engine.render import render_confusion

    check_model_path(model)
    _check_data(data)
    with command_output(json_mode=json_out, quiet=quiet) as run:
        m = open_model(model, model_opts, run.progress, data=data)
        ds = open_dataset(m, data, run.progress, limit=limit)
        ev = evaluate(m, ds, batch_size=model_opts.batch_size or 256, progress=run.progress)
        folder = out or default_out(model, "evaluate")
        png = render_confusion(ev.confusion_normalized, folder / "confusion.png", labels=list(ev.class_names),
                               title=f"{model.name} on {data.name}: accuracy {ev.accuracy:.3f} (rows sum to 1)")
        doc = {"command": "evaluate", "model": str(model), "data": str(data), "device": m.device, **ev.as_dict(),
               "confusion_png": str(png), "json": str(folder / "evaluation.json")}
        save_json(folder / "evaluation.json", doc)
        run.result(doc, paths=[png, folder / "evaluation.json"], human=lambda console: _print_evaluation(console, doc))


def _print_evaluation(console: Console, doc: dict[str, Any]) -> None:
    table = Table(title=f"{Path(doc['model']).name} on {Path(doc['data']).name}: accuracy {doc['accuracy']:.4f} "
                        f"({doc['n']} images, {doc['seconds']:.1f} s)", title_justify="left")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in doc["per_class"]:
        table.add_row(f"{c['class']} {c['name']}" if c["name"] != str(c["class"]) else c["name"],
                      f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"]))
    console.print(table)
    if doc["most_confused"]:
        say(console, "most confused: " + "; ".join(
            f"{p['true_name']} -> {p['predicted_name']} {p['rate']:.0%} ({p['count']})" for p in doc["most_confused"]))


@model_options
def report_command(
    model: ModelArg,
    data: DataOpt,
    per_class: PerClassOpt = 1,
    methods: MethodsOpt = None,
    sections: Annotated[Optional[str], typer.Option(
        "--sections", help="Only these sections, comma-separated: training, evaluation, methods (or method "
        "names), comparison, trust, filters, activations, dream (default: all; the summary is always there).",
        show_default=False)] = None,
    no_trust: Annotated[bool, typer.Option(
        "--no-trust", help="Leave out \"Can these maps be trusted?\", the costliest section.")] = False,
    layer: LayerOpt = None,
    history: HistoryOpt = None,
    steps: IgStepsOpt = None,
    tolerance: IgToleranceOpt = None,
    target_output: TargetOutputOpt = None,
    samples: LimeSamplesOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    """The whole assignment as one HTML page (report.html).

    Model summary, evaluation and confusion matrix, per-class saliency, LIME, integrated gradients,
    occlusion, Grad-CAM, filter visualisation, activation maps and deep dream."""
    from onnxplain.engine.errors import BadInputError
    from onnxplain.engine.history import read_history
    from onnxplain.engine.preprocessing_check import detect_preprocessing
    from onnxplain.exporters.student_code import files_in
    from onnxplain.engine.report import build_report

    check_model_path(model)
    _check_data(data)
    if history and len(history) > 1:
        raise BadInputError(f"report takes one --history, got {len(history)} (compare takes one per model)")
    training = {"history": read_history(history[0]), "source": history[0]} if history else None
    chosen = parse_methods(methods)
    with command_output(json_mode=json_out, quiet=quiet) as run:
        m = open_model(model, model_opts, run.progress, data=data)
        ds = open_dataset(m, data, run.progress, limit=limit)
        # No preprocessing from the flags or the sidecar: check x/255 against the usual conventions and the
        # one the .py files beside the model show, on the labelled data (the report says what it chose).
        run.progress("checking the preprocessing on the labelled data", None)
        detect_preprocessing(m, ds, code=files_in(model.resolve().parent))
        folder = out or default_out(model)
        page = build_report(m, ds, folder, per_class=per_class, methods=chosen, layer=layer, seed=seed,
                            progress=run.progress,
                            method_params=report_params(steps, tolerance, samples, target_output), training=training,
                            trust=not no_trust, sections=parse_methods(sections))
        doc = {"command": "report", "model": str(model), "data": str(data), "report": str(page), "out": str(folder)}
        run.result(doc, paths=[page], human=lambda console: say(console, f"report for {model.name} on {data.name}:"))


def demo_command(
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a small CNN on real digits, export it and write the full report: no arguments needed.

    Trains on scikit-learn's digits with PyTorch, exports through the PyTorch ONNX exporter and
    prints the path of the report."""
    from onnxplain.engine.demo import run_demo

    folder = out or OUT_ROOT / "demo"
    with command_output(json_mode=json_out, quiet=quiet) as run:
        page = run_demo(folder, progress=run.progress, device=resolve_device(device))
        doc = {"command": "demo", "report": str(page), "out": str(folder)}
        run.result(doc, paths=[page], human=lambda console: say(console, "demo report:"))
