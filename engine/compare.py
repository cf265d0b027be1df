"""Models side by side (the course's CNN vs DNN, trained vs untrained): the same data, the same images.

`build_comparison` evaluates every model on the same labelled dataset, explains the same images
(picked once, per class, with `seed`) with every chosen method, takes the activation maps of one
layer per model for the same image, overlays the training curves given, and writes `compare.html`
(one self-contained page, through the report's template) and `compare.json` (the numbers) into
`out_dir`. Figures are drawn by the renderers; this module only computes and arranges.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import BadInputError, OnnxplainError
from .progress import Progress
from .registry import explain, get_method
from .render import figures
from .render.compare import render_activation_rows, render_model_rows
from .render.html import Section, render_report_html
from .report import _resolve_methods, middle_conv_layer, summary_tables
from .sidecar import write_json_atomic
from .versions import library_versions

if TYPE_CHECKING:
    from .data import Dataset
    from .evaluate import Evaluation
    from .model import Model

log = logging.getLogger(__name__)
DEFAULT_METHODS = ("saliency", "gradcam")


@dataclass(frozen=True)
class Comparison:
    """The written page and its numbers; shows the page inline in a notebook."""

    page: Path
    numbers: dict[str, Any]

    def _repr_html_(self) -> str:
        from .render.html import iframe

        return iframe(self.page.read_text(encoding="utf-8"))


def build_comparison(
    models: Sequence["Model"],
    datasets: Sequence["Dataset"],
    out_dir: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    layers: Sequence[str | None] | None = None,
    histories: Sequence[list[dict[str, float]] | None] | None = None,
    per_class: int = 1,
    seed: int = 0,
    progress: Progress | None = None,
) -> Comparison:
    """Compare `models`, each on its copy of one dataset (`datasets[i]` at model i's input size).

    names: row labels (default: the file names); methods: attribution methods (default saliency and
    Grad-CAM); layers: one conv layer per model for the activation maps (None: its middle conv
    layer); histories: one training history per model, in order (None where there is none)."""
    if len(models) < 2:
        raise BadInputError(f"compare needs at least two models, got {len(models)}")
    if len(datasets) != len(models):
        raise BadInputError(f"{len(datasets)} datasets for {len(models)} models")
    names = list(names) if names else _names(models)
    chosen = _resolve_methods(list(methods) if methods else list(DEFAULT_METHODS))
    layer_names = list(layers or [])
    if len(layer_names) > len(models):
        raise BadInputError(f"{len(layer_names)} `layers` for {len(models)} models; give one per model, in order",
                            params=("layers",))
    layer_names += [None] * (len(models) - len(layer_names))
    feature_layers = [m.find_layer(n, kind="conv") if n else middle_conv_layer(m) for m, n in zip(models, layer_names)]
    datasets = [_check_data(m, d, datasets[0]) for m, d in zip(models, datasets)]
    say = progress or (lambda _what, _frac: None)
    out = Path(out_dir)
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    from .data import select_per_class
    from .evaluate import evaluate

    say("evaluating every model on the same data", 0.0)
    evaluations = [evaluate(m, d) for m, d in zip(models, datasets)]
    picked = select_per_class(datasets[0], per_class, seed)
    summaries = [m.summary() for m in models]
    sections = [_models_section(names, summaries, evaluations), _confusion_section(names, evaluations, img, out)]
    numbers: dict[str, Any] = {
        "models": [{"name": n, "path": str(m.path), "sha256": m.sha256, "total_params": s["total_params"],
                    "trainable_params": s["trainable_params"], "source_summary": s["source_summary"],
                    "evaluation": ev.as_dict()} for n, m, s, ev in zip(names, models, summaries, evaluations)],
        "picked": picked.tolist(), "methods": {}, "activations": [],
    }
    if histories and any(histories):
        sections.append(_training_section(names, histories, img, out))
        numbers["histories"] = list(histories)
    ids = [datasets[0].ids[i] for i in picked.tolist()]
    display = models[0].spec.to_display(models[0].spec.to_model_input(list(datasets[0].images[picked])))
    for k, method in enumerate(chosen):
        say(f"{method} on {len(picked)} images, every model", (k + 1) / (len(chosen) + 2))
        section, record = _method_section(method, names, models, datasets, picked, ids, display, seed, img, out)
        sections.append(section)
        numbers["methods"][method] = record
    say("activation maps", (len(chosen) + 1) / (len(chosen) + 2))
    section, numbers["activations"] = _activations_section(names, models, datasets, picked[0], feature_layers,
                                                           img, out)
    sections.append(section)
    sections.append(_summaries_section(names, summaries))
    page = _write(out, names, models, datasets[0], sections, numbers, per_class, seed)
    say("comparison written", 1.0)
    return Comparison(page=page, numbers=numbers)


def _names(models: Sequence["Model"]) -> list[str]:
    """File names of the source files (an exported model's cache name is model.onnx), made unique."""
    raw = [Path(str((m.sidecar.get("source") or {}).get("path") or m.path)).name for m in models]
    return [n if raw.count(n) == 1 else f"{i + 1}: {n}" for i, n in enumerate(raw)]


def _check_data(model: "Model", ds: "Dataset", first: "Dataset") -> "Dataset":
    if ds.labels is None:
        raise BadInputError(f"{ds.source} has no labels; compare needs labelled data (accuracy, confusion matrices)")
    if len(ds) != len(first):
        raise BadInputError(f"the models see different datasets ({len(ds)} vs {len(first)} images)")
    if model.spec.labels and ds.class_names:
        ds = ds.relabel(model.spec.labels)
    return ds


def _models_section(names: list[str], summaries: list[dict[str, Any]], evs: list["Evaluation"]) -> Section:
    s = Section("models", "Parameters and accuracy")
    s.text("Parameters as the source framework counts them (Keras model.summary(), torch's parameters()); for an "
           "ONNX file, the weights of its layers. Accuracy on the same data for every model.")
    s.table(["model", "from", "parameters", "trainable", "accuracy", "images"],
            [(n, _framework(sm), f"{sm['total_params']:,}",
              f"{sm['trainable_params']:,}" if sm["trainable_params"] is not None else "-",
              f"{ev.accuracy:.4f}", ev.n) for n, sm, ev in zip(names, summaries, evs)], numeric=[2, 3, 4, 5])
    s.heading("Accuracy per class (recall: the share of each class's images classified right)")
    classes = evs[0].class_names
    s.table(["class", *names],
            [(c, *(f"{ev.recall[i]:.3f}" if i < ev.n_classes else "-" for ev in evs)) for i, c in enumerate(classes)],
            numeric=range(1, len(names) + 1))
    return s


def _framework(summary: dict[str, Any]) -> str:
    source = summary.get("source") or {}
    return " ".join(str(source[k]) for k in ("framework", "framework_version") if source.get(k)) or "ONNX"


def _confusion_section(names: list[str], evs: list["Evaluation"], img: Path, out: Path) -> Section:
    s = Section("confusion", "Confusion matrices side by side")
    pngs = [figures.render_confusion(ev.confusion_normalized, img / f"confusion_{i}.png", labels=ev.class_names,
                                     title=f"{n}: accuracy {ev.accuracy:.3f}")
            for i, (n, ev) in enumerate(zip(names, evs))]
    s.figure_row(pngs, [f"{n}: rows are the true classes and sum to 1." for n in names], relative_to=out)
    return s


def _training_section(names: list[str], histories: Sequence[Any], img: Path, out: Path) -> Section:
    s = Section("training", "Training curves")
    given = [(n, h) for n, h in zip(names, histories) if h]
    png = figures.render_histories(given, img / "training.png", title="training curves, overlaid")
    s.figure(png, "One colour per model; solid and dashed lines are its metrics (e.g. training and validation).",
             relative_to=out)
    missing = [n for n, h in zip(names, histories) if not h]
    if missing:
        s.text(f"No history given for {', '.join(missing)}.")
    return s


def _method_section(method: str, names: list[str], models: Sequence["Model"], datasets: Sequence["Dataset"],
                    picked: np.ndarray, ids: list[str], display: np.ndarray, seed: int, img: Path,
                    out: Path) -> tuple[Section, dict[str, Any]]:
    title = get_method(method).title
    s = Section(method, f"{title}, every model on the same images", params={"seed": seed})
    rows, record, failed = [], {}, []
    for name, model, ds in zip(names, models, datasets):
        try:
            expl = explain(model, list(ds.images[picked]), method, seed=seed)
        except OnnxplainError as exc:  # e.g. Grad-CAM on a DNN without conv layers: that row says why
            failed.append(f"{name}: {exc}")
            continue
        rows.append((name, expl))
        record[name] = {"targets": expl.targets.tolist(), "scores": expl.scores.tolist(), "seconds": expl.seconds}
    s.text("Each row is a model, each column the same image; every model explains the class it predicts "
           "(titles: that class and its score).")
    for reason in failed:
        s.text(f"Not shown: {reason}")
    if rows:
        labels = np.asarray(datasets[0].labels)
        columns = [f"{datasets[0].class_name(int(labels[i]))}\n{_short(ident)}" for i, ident in zip(picked.tolist(), ids)]
        png = render_model_rows(rows, display, img / f"{method}.png", column_labels=columns,
                                title=f"{title}: one row per model")
        s.figure(png, f"{title}: the first row shows the images (true class above), then one row per model.",
                 relative_to=out)
    return s, {"models": record, "failed": failed}


def _short(text: str, width: int = 14) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


def _activations_section(names: list[str], models: Sequence["Model"], datasets: Sequence["Dataset"], index: int,
                         layers: list[Any], img: Path, out: Path) -> tuple[Section, list[dict[str, Any]]]:
    from .features import activation_maps

    s = Section("activations", "Activation maps of one layer per model, same image",
                params={"image": datasets[0].ids[index]})
    s.text("The first channels of each model's chosen conv layer (--layer, one per model; default its middle conv "
           "layer) for the same image: a trained model's filters respond to parts of the face, an untrained one's "
           "barely differ from the image.")
    rows, record = [], []
    for name, model, ds, layer in zip(names, models, datasets, layers):
        if layer is None:
            s.text(f"{name} has no conv layer, so it has no activation maps.")
            rows.append((name, None))
            continue
        acts = activation_maps(model, ds.images[index], layer=layer.name)
        rows.append((name, acts))
        maps = np.asarray(acts.maps)
        record.append({"model": name, "layer": acts.layer, "channels": int(maps.shape[0]),
                       "mean_activation": float(maps.mean())})
    if any(a is not None for _, a in rows):
        png = render_activation_rows(rows, img / "activations.png", title="activation maps, one row per model")
        s.figure(png, "Each row: the image, then the first channels of the model's layer, each on its own scale.",
                 relative_to=out)
    return s, record


def _summaries_section(names: list[str], summaries: list[dict[str, Any]]) -> Section:
    s = Section("summaries", "Model summaries")
    for name, summary in zip(names, summaries):
        s.heading(f"{name}: {summary['total_params']:,} parameters")
        summary_tables(s, summary)
    return s


def _write(out: Path, names: list[str], models: Sequence["Model"], ds: "Dataset", sections: list[Section],
           numbers: dict[str, Any], per_class: int, seed: int) -> Path:
    versions = library_versions()
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    facts = [("models", ", ".join(names)), ("dataset", f"{ds.source}: {len(ds)} images"),
             ("explained", f"{len(numbers['picked'])} images, {per_class} per class (seed {seed}), the same for "
                           "every model and method"),
             ("device", models[0].device), ("generated", f"{now} by onnxplain {versions.get('onnxplain', '?')}")]
    page = render_report_html(out / "compare.html", title=" vs ".join(names), kind="comparison",
                              lead="Models side by side on the same data and the same images.", facts=facts,
                              sections=sections, footer="Numbers: compare.json; figures: img/. " + ", ".join(
                                  f"{k} {v}" for k, v in versions.items()))
    numbers.update(generated=now, versions=versions, dataset={"source": ds.source, "images": len(ds)},
                   per_class=per_class, seed=seed,
                   sections={sec.id: {"title": sec.title, "figures": [f["file"] for f in sec.figures]}
                             for sec in sections})
    write_json_atomic(out / "compare.json", numbers)
    return page
