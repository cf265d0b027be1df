"""`compare`: models side by side on the same data and images (CNN vs DNN, trained vs untrained)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .loading import ModelOptions, check_model_path, model_options, open_dataset, open_model
from .options import (
    DataOpt, HistoryOpt, JsonOpt, LimitOpt, MethodsOpt, OutOpt, PerClassOpt, QuietOpt, SeedOpt, parse_methods,
)
from .output import command_output, default_out, say


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)


@model_options
def compare_command(
    models: Annotated[list[Path], typer.Argument(help="Two or more model files (any supported format).",
                                                 show_default=False)],
    data: DataOpt,
    history: HistoryOpt = None,
    methods: MethodsOpt = None,
    layer: Annotated[Optional[list[str]], typer.Option(
        "--layer", help="A conv layer for the activation maps, one per model in order (default: each model's middle "
        "conv layer).", show_default=False)] = None,
    per_class: PerClassOpt = 1,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    """Models side by side on the same data and images, as one HTML page (compare.html).

    Parameters, accuracy and per-class accuracy, confusion matrices next to each other, each method's
    maps in one row per model, activation maps of one layer per model, training curves overlaid."""
    from onnxplain.engine.compare import build_comparison
    from onnxplain.engine.errors import BadInputError
    from onnxplain.engine.history import read_histories

    if len(models) < 2:
        raise BadInputError(f"compare needs at least two models, got {len(models)}")
    for path in models:
        check_model_path(path)
    if not data.exists():
        raise BadInputError(f"{data}: no such file or folder")
    histories = read_histories(history, len(models))  # bad files fail before any export
    chosen = parse_methods(methods)
    with command_output(json_mode=json_out, quiet=quiet) as run:
        loaded = [open_model(path, model_opts, run.progress) for path in models]
        datasets = [open_dataset(m, data, run.progress, limit=limit) for m in loaded]
        folder = out or default_out(models[0], "compare")
        result = build_comparison(loaded, datasets, folder, methods=chosen, layers=layer, histories=histories,
                                  per_class=per_class, seed=seed, progress=run.progress)
        doc = {"command": "compare", "models": [str(p) for p in models], "data": str(data),
               "page": str(result.page), "json": str(folder / "compare.json"), "out": str(folder),
               "summary": [{k: m[k] for k in ("name", "total_params", "trainable_params")}
                           | {"accuracy": m["evaluation"]["accuracy"]} for m in result.numbers["models"]]}
        run.result(doc, paths=[result.page], human=lambda console: say(
            console, "; ".join(f"{m['name']}: {m['total_params']:,} params, accuracy {m['accuracy']:.4f}"
                               for m in doc["summary"]) + "\ncomparison:"))
