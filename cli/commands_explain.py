"""`explain MODEL INPUTS... --method M`: one PNG, raw map (.npy) and JSON record per image, plus a
per-class grid and one JSON record for the whole call."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from onnxplain.engine.errors import BadInputError

from .loading import ModelOptions, check_model_path, model_options, open_dataset, open_model
from .options import (
    METHOD_PANEL, IgStepsOpt, IgToleranceOpt, JsonOpt, LayerOpt, ModelArg, OptionalDataOpt, OutOpt, QuietOpt,
    RegistryHelpOption, SamplesOpt, SeedOpt, Segments, TargetOutputOpt, method_help,
)
from .output import CommandOutput, command_output, default_out, save_json, save_npy, say, unique_names

if TYPE_CHECKING:
    from onnxplain.engine.explanation import Explanation
    from onnxplain.engine.model import Model


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_command)


@dataclass(frozen=True)
class Inputs:
    names: list[str]
    images: list[np.ndarray]
    labels: list[int] | None = None   # true classes, when the images come from a labelled dataset


@model_options
def explain_command(
    model: ModelArg,
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Images (PNG/JPG), .npy/.npz arrays, or dataset rows DATA:ROWS such as train.csv:0,299,5.",
        show_default=False)] = None,
    method: Annotated[str, RegistryHelpOption("--method", "-m", make_help=method_help)] = "saliency",
    target: Annotated[str, typer.Option(
        "--target", help="pred (the predicted class), true (the dataset's label, with --data), a class index "
                         "or a class name.")] = "pred",
    data: OptionalDataOpt = None,
    per_class: Annotated[Optional[int], typer.Option(
        "--per-class", min=1, help="With --data: explain K images of each class (default 1).",
        show_default=False)] = None,
    samples: SamplesOpt = None,
    segments: Annotated[Optional[Segments], typer.Option(
        "--segments", help="LIME superpixels.", rich_help_panel=METHOD_PANEL, show_default=False)] = None,
    impl: Annotated[Optional[str], typer.Option(
        "--impl", help="LIME implementation: ours (batched) or lime (the lime package).",
        rich_help_panel=METHOD_PANEL, show_default=False)] = None,
    steps: IgStepsOpt = None,
    tolerance: IgToleranceOpt = None,
    target_output: TargetOutputOpt = None,
    baseline: Annotated[Optional[str], typer.Option(
        "--baseline", help="IG, occlusion, LIME: black, blur, mean, noise or a pixel value 0..255 (defaults: IG black, "
                          "occlusion 0, LIME mean: each superpixel's mean colour).",
        rich_help_panel=METHOD_PANEL, show_default=False)] = None,
    sigma: Annotated[Optional[float], typer.Option(
        "--sigma", min=0.0, help="SmoothGrad noise (a fraction of the input range).", rich_help_panel=METHOD_PANEL,
        show_default=False)] = None,
    window: Annotated[Optional[int], typer.Option(
        "--window", min=1, help="Occlusion window (pixels).", rich_help_panel=METHOD_PANEL, show_default=False)] = None,
    stride: Annotated[Optional[int], typer.Option(
        "--stride", min=1, help="Occlusion stride (pixels).", rich_help_panel=METHOD_PANEL, show_default=False)] = None,
    layer: LayerOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    metrics: Annotated[bool, typer.Option(
        "--metrics", help="Also check whether the maps can be trusted: deletion/insertion curves against a random "
                          "pixel order, and the model-parameter randomisation check (runs the method again once "
                          "per layer, on up to 4 images); adds 'metrics' to the JSON and two figures.")] = False,
    *,
    model_opts: ModelOptions,
) -> None:
    """Explain images with one attribution method (--method).

    Per image: a PNG (image, map, overlay), the raw map (.npy) and a JSON record; grid.png for
    several images; explanation.json for the whole call."""
    from onnxplain.engine.registry import get_method

    info = get_method(method)  # an unknown method fails here, listing the known ones
    given = {"samples": samples, "segments": segments.value if segments else None, "impl": impl, "steps": steps,
             "tolerance": tolerance, "baseline": _number_or_text(baseline), "sigma": sigma, "window": window,
             "stride": stride, "layer": layer, "target_output": target_output.value if target_output else None}
    params = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(params) - set(info.params))
    if unknown:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in unknown)
        own = ", ".join(f"--{k.replace('_', '-')}" for k in sorted(info.params) if k in given) or "none"
        raise BadInputError(f"{flags} does not apply to --method {method}; its options: {own}")
    if samples == "auto" and method != "lime":
        raise BadInputError(f"--samples auto applies to --method lime only; give --method {method} a number")
    if not inputs and data is None:
        raise BadInputError("give INPUTS (images, arrays, DATA:ROWS) or --data PATH with --per-class K")
    if per_class is not None and data is None:
        raise BadInputError("--per-class needs --data PATH (a labelled dataset)")
    if target == "true" and data is None:
        raise BadInputError("--target true needs --data PATH (the dataset's labels)")
    check_model_path(model)
    if data is not None and not data.exists():
        raise BadInputError(f"{data}: no such file or folder")
    given_inputs = _read_inputs(inputs) if inputs else None

    with command_output(json_mode=json_out, quiet=quiet) as run:
        m = open_model(model, model_opts, run.progress, data=data)
        chosen = given_inputs or _per_class_inputs(m, data, per_class or 1, seed, run)  # type: ignore[arg-type]
        targets: Any = target
        if target == "true":
            if chosen.labels is None:
                raise BadInputError("--target true needs labelled images: use --data with --per-class")
            targets = chosen.labels
        run.progress(f"{method} on {len(chosen.images)} image(s)", None)
        expl = _explain(m, chosen.images, method, targets, model_opts.batch_size, seed, params)
        folder = out or default_out(model, method)
        records, grid = write_explanation(expl, m, chosen, folder, run)
        summary = {k: v for k, v in expl.record().items() if k not in ("method", "targets", "target_names", "scores")}
        doc = {"command": "explain", "model": str(model), "method": method, "out": str(folder), **summary,
               "images": records, "grid": str(grid) if grid else None}
        trust_paths = _trust(m, expl, folder, seed, model_opts.batch_size, doc, run) if metrics else []
        save_json(folder / "explanation.json", doc)
        paths = [r["png"] for r in records] + ([grid] if grid else []) + trust_paths
        run.result(doc, paths=paths, human=lambda console: _print_table(console, doc))


def _trust(m: "Model", expl: "Explanation", folder: Path, seed: int, batch_size: int | None, doc: dict[str, Any],
           run: CommandOutput) -> list[Path]:
    """`--metrics`: trust metrics into doc["metrics"]; the curves and randomisation figures into `folder`."""
    from onnxplain.engine.metrics import trust_metrics
    from onnxplain.engine.render.trust import render_curves, render_randomisation

    run.progress(f"trust metrics for {expl.method}", None)
    tm = trust_metrics(m, expl, seed=seed, **({"batch_size": batch_size} if batch_size else {}))
    curves = render_curves(tm.curves, folder / "trust_curves.png")
    rand = render_randomisation(tm.randomisation, folder / "trust_randomisation.png")  # type: ignore[arg-type]
    doc["metrics"] = {**tm.record(), "figures": [str(curves), str(rand)]}
    return [curves, rand]


def _number_or_text(value: str | None) -> float | str | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _read_inputs(items: list[str]) -> Inputs:
    from onnxplain.engine.data import parse_inputs

    pairs = parse_inputs(items)
    return Inputs(names=[n for n, _ in pairs], images=[img for _, img in pairs])


def _per_class_inputs(m: "Model", data: Path, k: int, seed: int, run: CommandOutput) -> Inputs:
    from onnxplain.engine.data import select_per_class

    ds = open_dataset(m, data, run.progress)
    idx = select_per_class(ds, k, seed)
    picked = ds.subset(idx)
    labels = [int(c) for c in picked.labels]  # type: ignore[union-attr]
    names = [f"{m.spec.label(c)}_{ident}" for c, ident in zip(labels, picked.ids)]
    return Inputs(names=names, images=list(picked.images), labels=labels)


def _explain(m: "Model", images: list[np.ndarray], method: str, targets: Any, batch_size: int | None, seed: int,
             params: dict[str, Any]) -> "Explanation":
    from onnxplain.engine.registry import explain

    return explain(m, images, method, targets, batch_size=batch_size, seed=seed, **params)


def write_explanation(expl: "Explanation", m: "Model", chosen: Inputs, folder: Path,
                      run: CommandOutput) -> tuple[list[dict[str, Any]], Path | None]:
    """Per image: NAME.png (figure), NAME.npy (raw map), NAME.json (record); grid.png for several."""
    from onnxplain.engine.render import render_explanation, render_grid

    folder.mkdir(parents=True, exist_ok=True)
    names = unique_names(chosen.names)
    records = []
    for i, name in enumerate(names):
        run.progress(f"writing {len(names)} figure(s)", i / len(names))
        png = render_explanation(expl, folder / f"{name}.png", i, spec=m.spec)
        npy = save_npy(folder / f"{name}.npy", expl.maps[i])
        record = {"input": chosen.names[i], **expl.record(i), "png": str(png), "npy": str(npy),
                  "json": str(folder / f"{name}.json")}
        if chosen.labels is not None:
            record["label"] = chosen.labels[i]
            record["label_name"] = m.spec.label(chosen.labels[i])
        save_json(folder / f"{name}.json", record)
        records.append(record)
    run.progress(f"writing {len(names)} figure(s)", 1.0)
    grid = None
    if len(names) > 1:
        grid = render_grid(expl, folder / "grid.png", spec=m.spec, row_labels=[_row_label(r) for r in records])
    return records, grid


def _row_label(record: dict[str, Any]) -> str:
    label = f"{record['input']}\n→ {record['target_name']} ({record['score']:.2f})"
    if "label_name" in record:
        label = f"{record['input']}\ntrue {record['label_name']}\n→ {record['target_name']} ({record['score']:.2f})"
    return label


def _print_table(console: Console, doc: dict[str, Any]) -> None:
    table = Table(title=f"{doc['method']} on {Path(doc['model']).name} ({doc['seconds']:.2f} s, {doc['device']})",
                  title_justify="left")
    stability = all("stability" in r for r in doc["images"])
    for col in ("input", "target", "score", *(["top-k stable at"] if stability else []), "figure"):
        table.add_column(col, overflow="fold")
    for r in doc["images"]:
        name = r["target_name"] if r["target_name"] == str(r["target"]) else f"{r['target']} {r['target_name']}"
        stable = [f"{r['stability']:.0%}, {r['samples_used']:,} samples"] if stability else []
        table.add_row(r["input"], name, f"{r['score']:.3f}", *stable, Path(r["png"]).name)
    console.print(table)
    if "metrics" in doc:
        say(console, _trust_line(doc["metrics"]))
    say(console, f"written to {doc['out']}")


def _trust_line(metrics: dict[str, Any]) -> str:
    auc = {k: float(np.mean(v)) for k, v in metrics["deletion_insertion"].items() if k.endswith("_auc")}
    line = (f"deletion AUC {auc['deletion_auc']:.3f} (random order {auc['random_deletion_auc']:.3f}), "
            f"insertion AUC {auc['insertion_auc']:.3f} (random order {auc['random_insertion_auc']:.3f})")
    rnd = metrics.get("randomisation")
    if rnd:
        verdict = "FLAGGED: the maps do not depend on the weights" if rnd["flagged"] else "passes"
        line += f"; randomisation check: Spearman {rnd['final_spearman']:.2f} with every layer random, {verdict}"
    return line
