"""The report: everything the course asks of a student's CNN (ASSIGNMENT.md), for one model, on one page.

`build_report` computes each section with the engine (evaluation, every method on the same images,
filters, activations, deep dream), has the renderers draw the figures into `out_dir/img/`, and
writes `out_dir/report.html` (figures embedded, so the page is self-contained), `report.json`
(the numbers) and `maps.npz` (every method's raw maps). A section whose computation is impossible
for this model (say, Grad-CAM on a model without a conv layer) says why on the page; any other
failure propagates.
"""
from __future__ import annotations

import datetime as _dt
import inspect
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .details import GradCamDetails, IGDetails, LimeDetails
from .errors import BadInputError, OnnxplainError
from .preprocessing_check import nums
from .progress import Progress
from .registry import explain, get_method, method_infos, method_names
from .render import figures
from .render.html import Section, render_report_html, summary_table
from .sidecar import atomic_path, write_json_atomic
from .versions import library_versions

if TYPE_CHECKING:
    from .data import Dataset
    from .evaluate import Evaluation
    from .explanation import Explanation
    from .layers import LayerInfo
    from .model import Model

log = logging.getLogger(__name__)


FILTERS_SHOWN = 32


@dataclass
class _Run:
    """What one report run has produced so far: the sections, the numbers, the timings."""

    out: Path
    img: Path
    sections: list[Section] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    figure_per_class: int | None = None   # grid figures: at most this many images of each class

    def figure(self, name: str) -> Path:
        return self.img / f"{name}.png"

    def add(self, section: Section, numbers: dict[str, Any] | None = None, *, at: int | None = None) -> Section:
        self.sections.insert(len(self.sections) if at is None else at, section)
        entry = {"title": section.title, "params": section.params, "seconds": round(section.seconds, 4),
                 "error": section.error, "figures": [b["file"] for b in section.figures]}
        self.numbers.setdefault("sections", {})[section.id] = {**entry, **(numbers or {})}
        return section


def build_report(
    model: "Model",
    dataset: "Dataset",
    out_dir: str | os.PathLike[str],
    *,
    per_class: int = 1,
    methods: Sequence[str] | None = None,
    layer: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    training: dict[str, Any] | None = None,
    features: bool = True,
    picked: Sequence[int] | np.ndarray | None = None,
    method_params: dict[str, dict[str, Any]] | None = None,
    trust: bool = True,
    sections: Sequence[str] | None = None,
    figure_per_class: int | None = None,
) -> Path:
    """Write the report for `model` on `dataset` into `out_dir`; returns the path of `report.html`.

    per_class: images per class (the same images for every method, chosen with `seed`);
    methods: which attribution methods (default: all, in the registry's order); layer: the conv layer
    for filters, activation maps and deep dream (default: the middle conv layer); training: an
    optional record of how the model was trained (`history`: per-epoch loss/accuracy) to plot;
    features: include filters, activation maps and deep dream (grading leaves them out for speed);
    picked: the dataset indices to explain (grading passes the same ones for every student);
    method_params: per-method parameters, e.g. {"lime": {"samples": 500}}, over each method's `report_params` (registry);
    trust: include "Can these maps be trusted?" (deletion/insertion curves and the randomisation check of
    every method, which runs each method again at TRUST_STAGES stages on a few images);
    sections: only these sections (ids of SECTIONS, "methods" for every chosen method; None: all). The
    model summary is always there; the evaluation is computed either way, since it picks the images;
    figure_per_class: grid figures show at most this many images of each class (None: all up to
    FIGURE_ROWS rows; see `figure_rows`); the tables, report.json and maps.npz keep every image.
    """
    started = time.perf_counter()
    chosen_methods, shown = resolve_sections(sections, _resolve_methods(methods))
    trust = trust and "trust" in shown
    features = features and bool({"filters", "activations", "dream"} & shown)
    feature_layer = _feature_layer(model, layer)  # unknown layers fail here, before any work
    if per_class < 1:
        raise BadInputError(f"`per_class` must be at least 1, got {per_class}", params=("per_class",))
    if len(dataset) == 0:
        raise BadInputError(f"{dataset.source} holds no images")
    if model.spec.labels and dataset.class_names and dataset.labels is not None:
        dataset = dataset.relabel(model.spec.labels)
    out = Path(out_dir)
    run = _Run(out=out, img=out / "img", figure_per_class=figure_per_class)
    run.img.mkdir(parents=True, exist_ok=True)
    steps = 3 + len(chosen_methods) + 5
    step = 0

    def tick(what: str) -> None:
        nonlocal step
        if progress is not None:
            progress(what, step / steps)
        step += 1

    tick("evaluating the model on the dataset")
    evaluation = _evaluate(model, dataset)
    rows, picked = _pick_images(model, dataset, evaluation, per_class, seed, picked)
    images = dataset.images[picked]
    run.numbers["selection"] = rows

    tick("model summary")
    summary_placeholder = len(run.sections)
    if training and training.get("history") and "training" in shown:
        _training_section(run, training)
    if "evaluation" not in shown:
        pass
    elif evaluation is not None:
        _evaluation_section(run, evaluation)
    else:
        run.add(Section("evaluation", "Evaluation", error=f"{dataset.source} has no labels, so accuracy and the "
                        "confusion matrix cannot be computed; images were picked per predicted class."))

    explanations: dict[str, Explanation] = {}
    for name in chosen_methods:
        tick(f"{name} on {len(images)} images")
        params = {**get_method(name).report_params, **(method_params or {}).get(name, {})}
        expl = _method_section(run, model, name, images, rows, evaluation, seed, params)
        if expl is not None:
            explanations[name] = expl
    if len(explanations) > 1 and "comparison" in shown:
        tick("all methods side by side")
        _comparison_section(run, model, list(explanations.values()), rows)
    if trust and explanations:
        tick("can these maps be trusted?")
        _trust_section(run, model, list(explanations.values()), rows, seed)

    if features:
        display = model.spec.to_display(model.spec.to_model_input(list(images)))
        if "filters" in shown:
            tick(f"filters of {feature_layer.name if feature_layer else 'a conv layer'}")
            _filters_section(run, model, feature_layer, seed)
        if "activations" in shown:
            tick("activation maps")
            _activations_section(run, model, feature_layer, images[0], rows[0])
        if "dream" in shown:
            tick("deep dream")
            _dream_section(run, model, feature_layer, images[0], display[0], rows[0], seed)

    tick("writing the report")
    # The summary goes first but is taken last: building the torch module fills in its parity.
    _summary_section(run, model, list(explanations.values()), at=summary_placeholder)
    total = time.perf_counter() - started
    page = _write(run, model, dataset, per_class=per_class, seed=seed, seconds=total, training=training,
                  evaluation=evaluation)
    if progress is not None:
        progress("report written", 1.0)
    log.info("report for %s written to %s in %.1f s", model.path.name, page, total)
    return page


# ------------------------------------------------------------------------------------ selection
SECTIONS = ("training", "evaluation", "methods", "comparison", "trust", "filters", "activations", "dream")


def resolve_sections(sections: Sequence[str] | None, methods: list[str]) -> tuple[list[str], set[str]]:
    """(the methods to run, the section ids to show) for `report --sections a,b`: SECTIONS' ids, "methods"
    for all of `methods`, or method names (only those of `methods` run; comparison or trust without a method
    name run them all). Unknown ids list the known ones."""
    everything = set(SECTIONS) - {"methods"}
    if sections is None:
        return methods, everything
    wanted = [x.strip() for x in sections if x.strip()]
    known = set(SECTIONS) | set(method_names())
    unknown = [x for x in wanted if x not in known]
    if unknown or not wanted:
        what = f"unknown section {unknown[0]!r}" if unknown else "no sections chosen"
        raise BadInputError(f"{what}; choose from {', '.join(SECTIONS)} or method names "
                            f"({', '.join(method_names())})")
    named = [m for m in wanted if m in method_names()]
    if named:
        chosen = [m for m in methods if m in named]
    else:  # the comparison and the trust section are about the methods' maps: they need them all
        chosen = methods if {"methods", "comparison", "trust"} & set(wanted) else []
    return chosen, everything & set(wanted)


def _resolve_methods(methods: Sequence[str] | None) -> list[str]:
    known = method_names()
    if methods is None:
        return [info.name for info in method_infos()]
    chosen = []
    for name in methods:
        get_method(name)  # unknown names raise, listing the known ones
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise BadInputError(f"no methods chosen; known methods: {', '.join(known)}")
    return chosen


def middle_conv_layer(model: "Model") -> "LayerInfo | None":
    """The conv layer in the middle of the network (of 4 convs, the third), or None without convs."""
    convs = model.conv_layers()
    return convs[len(convs) // 2] if convs else None


def _feature_layer(model: "Model", layer: str | None) -> "LayerInfo | None":
    if layer is None:
        return middle_conv_layer(model)
    return model.find_layer(layer, kind="conv")


def _evaluate(model: "Model", dataset: "Dataset") -> "Evaluation | None":
    from .evaluate import evaluate

    if dataset.labels is None:
        return None
    return evaluate(model, dataset)


def _pick_images(model: "Model", dataset: "Dataset", evaluation: "Evaluation | None", per_class: int,
                 seed: int, given: Sequence[int] | np.ndarray | None = None) -> tuple[list[dict[str, Any]], np.ndarray]:
    """`per_class` images of each class (by true label; by predicted class when there are no labels)."""
    from .data import select_per_class

    if given is not None:
        picked = np.asarray(given, dtype=np.int64)
        if evaluation is not None:
            predicted = evaluation.predictions
        else:
            predicted = np.zeros(len(dataset), np.int64)
            predicted[picked] = model.predict(model.spec.to_model_input(list(dataset.images[picked]))).argmax(axis=1)
    elif evaluation is not None:
        predicted = evaluation.predictions
        picked = select_per_class(dataset, per_class, seed)
    else:
        predicted = model.predict(model.spec.to_model_input(list(dataset.images))).argmax(axis=1)
        picked = select_per_class(replace(dataset, labels=predicted.astype(np.int64)), per_class, seed)
    rows = []
    for i in picked.tolist():
        true = None if dataset.labels is None else int(dataset.labels[i])
        rows.append({"index": i, "id": dataset.ids[i], "true": true,
                     "true_name": None if true is None else _class_name(model, dataset, true),
                     "predicted": int(predicted[i]), "predicted_name": _class_name(model, dataset, int(predicted[i]))})
    return rows, picked


def _class_name(model: "Model", dataset: "Dataset", k: int) -> str:
    if model.spec.labels and k < len(model.spec.labels):
        return model.spec.labels[k]
    return dataset.class_name(k)


FIGURE_ROWS = 24  # a grid figure draws 4-7 matplotlib axes per row, 10-40 ms each: 70 rows cost a minute


def figure_rows(rows: list[dict[str, Any]], limit: int = FIGURE_ROWS, per_class: int | None = None) -> list[int]:
    """The rows a grid figure shows: all of them up to `limit`, else the first k images of each class
    (k = limit // classes, at least 1; or `per_class` when given), in their order. The tables, report.json
    and maps.npz keep every image."""
    key = [r["true"] if r["true"] is not None else r["predicted"] for r in rows]
    if per_class is None:
        if len(rows) <= limit:
            return list(range(len(rows)))
        per_class = max(1, limit // len(set(key)))
    seen: dict[Any, int] = {}
    shown = []
    for i, k in enumerate(key):
        seen[k] = seen.get(k, 0) + 1
        if seen[k] <= per_class:
            shown.append(i)
    return shown


def _shown_text(rows: list[dict[str, Any]], shown: list[int]) -> str:
    if len(shown) == len(rows):
        return "the images of each class"
    return (f"{len(shown)} of the {len(rows)} images, the first of each class (every image is in the table "
            "below and in maps.npz)")


def _row_label(row: dict[str, Any], expl: "Explanation | None" = None, i: int = 0) -> str:
    true = f"true {row['true_name']}" if row["true"] is not None else "no label"
    pred = f"pred {row['predicted_name']}"
    if expl is not None:
        pred += f", score {expl.scores[i]:.3g}"
    return f"{true}\n{pred}\n{_short(row['id'])}"


def _short(text: str, width: int = 18) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


# ------------------------------------------------------------------------------------ sections
def _summary_section(run: _Run, model: "Model", expls: Sequence["Explanation"], *, at: int) -> None:
    from .preprocessing_check import describe

    t0 = time.perf_counter()
    summary = model.summary()
    run.numbers["model"] = summary
    outputs = {e.method: explained_output(model, e) for e in expls}
    run.numbers["maps"] = {"preprocessing": describe(model), "preprocessing_source": model.preprocessing_source,
                           "outputs": outputs}
    s = Section("summary", "Model summary")
    inp = summary["input"]
    check = summary["preprocessing"]["check"]
    s.kv([
        ("file", Path(summary["path"]).name),
        ("input", f"{inp['layout']} {inp['channels']}x{inp['height']}x{inp['width']}"
                  f"{' (dynamic batch)' if inp['dynamic_batch'] else ''}"),
        ("preprocessing (every map)", describe(model)),
        ("classes", f"{summary['classes']}: {', '.join(summary['labels'])}" if summary["labels"] else summary["classes"]),
        ("output", summary["output_kind"]),
        ("explained score", "; ".join(f"{m}: {o}" for m, o in outputs.items()) or "no maps"),
        ("parameters", _parameters_text(summary)),
        ("ONNX", f"opset {summary['opset']}, {summary['producer'] or 'unknown producer'}"),
        ("parity", _parity(summary)),
    ])
    summary_tables(s, summary)
    if check:
        s.heading(f"Preprocessing conventions tried on {check['sample']} labelled images")
        s.table(["convention", "model input", "accuracy", ""],
                [(t["name"], f"(pixel x {t['scale']:.6g} - {nums(t['mean'])}) / {nums(t['std'])}"
                  + (", BGR" if t["channel_order"] == "BGR" else ""), f"{t['accuracy']:.3f}",
                  "chosen" if t["name"] == check["chosen"] else "") for t in check["tried"]], numeric=[2])
    s.seconds = time.perf_counter() - t0
    run.add(s, at=at)


def _parameters_text(summary: dict[str, Any]) -> str:
    if summary.get("source_summary"):
        return (f"{summary['total_params']:,} (trainable {summary['trainable_params']:,}, non-trainable "
                f"{summary['non_trainable_params']:,}), as {summary['source_summary']['style']} counts them")
    return f"{summary['total_params']:,} in the layers below ({summary['all_params']:,} float weights in the file)"


def summary_tables(s: Section, summary: dict[str, Any]) -> None:
    """The framework's own summary when the exporter recorded it, else the ONNX layers with the reason."""
    source = summary.get("source_summary")
    s.text(f"The model as {source['style']} shows it." if source else f"Note: {summary['summary_note']}.")
    headers, rows, numeric = summary_table(summary)
    s.table(headers, rows, numeric=numeric)
    choices = summary["layer_choices"]
    s.text("--layer accepts: " + (", ".join(choices["conv"]) or "no conv layer") + " (conv layers).")


def _parity(summary: dict[str, Any]) -> str:
    parts = []
    if summary.get("export_parity") is not None:
        parts.append(f"source framework vs ONNX max |diff| {summary['export_parity']:.2e}")
    if summary.get("torch_parity") is not None:
        parts.append(f"onnxruntime vs torch (gradients) max |diff| {summary['torch_parity']:.2e}")
    return "; ".join(parts) or "not measured"


def explained_output(model: "Model", expl: "Explanation") -> str:
    """What a map explains: the logit or the probability (gradient methods say which in their params);
    forward-only methods take the model's output as it is."""
    if "target_output" in expl.params:
        return str(expl.params["target_output"])
    return "probability (model output)" if model.output_kind == "probabilities" else "logit (model output)"


def _training_section(run: _Run, training: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    history = training["history"]
    params = {k: training[k] for k in ("epochs", "seed", "train_images", "test_images") if k in training}
    s = Section("training", "Training", params=params, seconds=float(training.get("seconds", 0.0)))
    if "data" in training:
        s.text(f"Data: {training['data']}. Architecture: {training.get('arch', 'n/a')}.")
    if "source" in training:
        s.text(f"Read from {training['source']}.")
    path = figures.render_training(history, run.figure("training"))
    s.figure(path, "Loss and accuracy per epoch.", relative_to=run.out)
    keys = list(history[0])
    s.table(keys, [[_fmt(r[k]) for k in keys] for r in history], numeric=range(len(keys)))
    log.debug("training section drawn in %.2f s", time.perf_counter() - t0)
    run.add(s, {"history": history})


def _evaluation_section(run: _Run, ev: "Evaluation") -> None:
    t0 = time.perf_counter()
    s = Section("evaluation", "Evaluation and confusion matrix", params={"images": ev.n}, seconds=ev.seconds)
    s.text(f"Accuracy {ev.accuracy:.4f} on {ev.n} images ({int(np.trace(ev.confusion))} right).")
    path = figures.render_confusion(ev.confusion_normalized, run.figure("confusion"), labels=ev.class_names,
                                    title=f"confusion matrix, rows normalised (accuracy {ev.accuracy:.3f}, n={ev.n})")
    s.figure(path, "Rows are the true classes and sum to 1; columns the predicted classes.", relative_to=run.out)
    pairs = ev.most_confused()
    s.heading("Most confused pairs")
    if pairs:
        s.table(["true class", "predicted as", "share of the class", "images"],
                [(p.true_name, p.predicted_name, f"{p.rate:.1%}", p.count) for p in pairs], numeric=[2, 3])
    else:
        s.text("None: every image was classified correctly.")
    s.heading("Per class")
    s.table(["class", "precision", "recall", "F1", "images"],
            [(name, f"{ev.precision[i]:.3f}", f"{ev.recall[i]:.3f}", f"{ev.f1[i]:.3f}", int(ev.support[i]))
             for i, name in enumerate(ev.class_names)], numeric=[1, 2, 3, 4])
    log.debug("evaluation section drawn in %.2f s", time.perf_counter() - t0)
    run.add(s, {"evaluation": ev.as_dict()})


def _method_section(run: _Run, model: "Model", name: str, images: np.ndarray, rows: list[dict[str, Any]],
                    ev: "Evaluation | None", seed: int, params: dict[str, Any] | None = None) -> "Explanation | None":
    title, text = get_method(name).title, get_method(name).text
    s = Section(name, title, params=dict(get_method(name).params))
    s.text(text)
    expl = _attempt(run, s, f"{name} could not run on this model", explain, model, list(images), name, seed=seed,
                    **(params or {}))
    if expl is None:
        return None
    s.params = {**s.params, **{k: v for k, v in expl.params.items() if k not in ("batch_size", "seed")}, "seed": seed}
    s.seconds = expl.seconds
    if isinstance(expl.details, GradCamDetails):
        s.params["layer"] = expl.details.layer
    run.maps[name] = expl.maps
    shown = figure_rows(rows, per_class=run.figure_per_class)
    labels = [_row_label(rows[i], expl, i) for i in shown]
    path = figures.render_grid(expl.take(shown), run.figure(name), spec=model.spec, row_labels=labels,
                               title=f"{title}: images of each class, explaining the predicted class")
    s.figure(path, f"{title} for {_shown_text(rows, shown)} (rows); columns: the image, the map, the overlay"
             + ("" if len(figures.explanation_panels(expl)) == 3 else ", and the method's own view") + ".",
             relative_to=run.out)
    records = [expl.record(i) for i in range(len(expl))]
    headers = ["image", "true", "explained (predicted)", "score"]
    extra_cols = _detail_columns(expl)
    table_rows = []
    for i, r in enumerate(rows):
        cells: list[Any] = [r["id"], r["true_name"] or "-", expl.target_name(i), f"{expl.scores[i]:.3f}"]
        cells += [cell(i) for _, cell in extra_cols]
        table_rows.append(cells)
    headers += [header for header, _ in extra_cols]
    if name == "lime" and ev is not None:
        headers += ["recall of the true class", "most often mistaken for"]
        for cells, r in zip(table_rows, rows):
            cells += _confusion_cells(ev, r["true"])
    s.table(headers, table_rows, numeric=range(3, len(headers)))
    run.add(s, {"method": name, "images": records})
    return expl


def _confusion_cells(ev: "Evaluation", true: int | None) -> list[str]:
    if true is None or true >= ev.n_classes:
        return ["-", "-"]
    row = ev.confusion_normalized[true].copy()
    recall = f"{ev.recall[true]:.3f}"
    row[true] = 0.0
    if row.max() <= 0:
        return [recall, "nothing"]
    worst = int(row.argmax())
    return [recall, f"{ev.class_names[worst]} ({row[worst]:.1%})"]


def _comparison_section(run: _Run, model: "Model", expls: list["Explanation"], rows: list[dict[str, Any]]) -> None:
    t0 = time.perf_counter()
    s = Section("comparison", "All methods side by side", params={"methods": ", ".join(e.method for e in expls)})
    s.text("The same images, each method's overlay: do the methods agree on where the evidence is?")
    shown = figure_rows(rows, per_class=run.figure_per_class)
    path = figures.render_grid([e.take(shown) for e in expls], run.figure("comparison"), spec=model.spec,
                               row_labels=[_row_label(rows[i]) for i in shown], title="every method on the same images")
    s.figure(path, f"Rows: {_shown_text(rows, shown)}; columns: the image, then each method's overlay.",
             relative_to=run.out)
    s.seconds = time.perf_counter() - t0
    run.add(s)


TRUST_TEXT = (
    "Does a map say something about the model, or only about the image? Deletion: the pixels the map ranks "
    "highest are blacked out first; if the map is faithful, the probability of the explained class falls fast (a "
    "low area under the curve). Insertion: starting from a black image, the top-ranked pixels are revealed first; "
    "the probability should rise fast (a high area). Both are compared with a random pixel order (dashed). "
    "Randomisation (Adebayo et al., 2018): the network's weights are replaced by random ones layer by layer from "
    "the output down and the maps are computed again; maps that still look the same once every layer is random "
    "(mean Spearman rank correlation above {threshold:g}) do not depend on what the model learnt and are flagged.")


def _trust_section(run: _Run, model: "Model", expls: list["Explanation"], rows: list[dict[str, Any]],
                   seed: int) -> None:
    from .metrics import FLAG_THRESHOLD, trust_metrics
    from .render.trust import render_curves, render_randomisation

    t0 = time.perf_counter()
    n_rand = min(randomisation_images(model), len(rows))
    s = Section("trust", "Can these maps be trusted?", params={"steps": 32, "baseline": "black", "seed": seed,
                                                                "randomised images": n_rand,
                                                                "randomisation stages": TRUST_STAGES})
    s.text(TRUST_TEXT.format(threshold=FLAG_THRESHOLD))
    s.text(f"Cost: the random pixel order's curves are computed once for every method (same images, same "
           f"targets); the randomisation check computes the maps at {TRUST_STAGES} stages of the cascade spread "
           f"from the top layer to the last (every layer random, the stage the check reads), on the first "
           f"{n_rand} image(s): {RANDOMISATION_RULE}")
    results, table = {}, []
    reference = None
    for expl in expls:
        shared = reference if reference is not None and _same_inputs(reference[0], expl) else None
        try:
            tm = trust_metrics(model, expl, seed=seed, randomisation_images=n_rand, stages=TRUST_STAGES,
                               reference=shared[1].curves if shared else None)
        except OnnxplainError as exc:
            table.append([expl.method, f"could not run: {exc}", "-", "-", "-", "-", "-"])
            continue
        results[expl.method] = (expl, tm)
        reference = reference or (expl, tm)
        c, r = tm.curves, tm.randomisation
        table.append([expl.method, f"{c.deletion_auc.mean():.3f} ({c.random_deletion_auc.mean():.3f})",
                      f"{c.insertion_auc.mean():.3f} ({c.random_insertion_auc.mean():.3f})",
                      f"{int(c.beats_random.sum())} of {len(expl)}", f"{r.final_spearman:.2f} / {r.ssim[-1].mean():.2f}",
                      "FLAGGED: the maps do not depend on the weights" if r.flagged else "passes",
                      f"{tm.curve_seconds:.1f} / {tm.seconds - tm.curve_seconds:.1f}"])
    s.table(["method", "deletion AUC (random order)", "insertion AUC (random order)", "images better than random",
             "Spearman / SSIM, every layer random", "randomisation check", "seconds: curves / randomisation"],
            table, numeric=[1, 2, 3, 4, 6])
    for name, (expl, tm) in results.items():
        title = get_method(name).title
        s.heading(title)
        s.figure(render_curves(tm.curves, run.figure(f"trust_{name}_curves")), f"{title}: deletion and insertion "
                 "curves of every image (thin), their mean (thick) and a random pixel order (dashed).", relative_to=run.out)
        s.figure(render_randomisation(tm.randomisation, run.figure(f"trust_{name}_randomisation")),  # type: ignore[arg-type]
                 f"{title}: the first image's map as the layers are randomised from the top, and the similarity "
                 "of all the maps to the original ones.", relative_to=run.out)
        if tm.completeness_error is not None:
            s.text("Completeness: the attributions of each image should add up to f(image) - f(baseline).")
            diff = (expl.details.score_difference if isinstance(expl.details, IGDetails)
                    else np.full(len(expl), np.nan))
            s.table(["image", "f(image) - f(baseline)", "completeness error"],
                    [(r["id"], _fmt(d), _fmt(e, percent=True)) for r, d, e in zip(rows, diff, tm.completeness_error)],
                    numeric=[1, 2])
    s.seconds = time.perf_counter() - t0
    run.add(s, {"trust": {name: tm.record() for name, (_, tm) in results.items()}})


TRUST_STAGES = 6  # randomisation stages computed; a 4-conv course CNN has 6-8 layers with parameters
RANDOMISATION_RULE = "4 images up to 64 pixels a side, 2 above (each stage re-runs the method on them)."


def randomisation_images(model: "Model") -> int:
    """How many images the report's randomisation check re-explains at each stage (RANDOMISATION_RULE)."""
    return 4 if max(model.spec.height, model.spec.width) <= 64 else 2


def _same_inputs(a: "Explanation", b: "Explanation") -> bool:
    """True when two explanations are of the same model inputs and targets (their random-order curves match)."""
    return a.inputs.shape == b.inputs.shape and np.array_equal(a.targets, b.targets) and \
        np.array_equal(a.inputs, b.inputs)


def _feature_params(fn: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
    """The keyword parameters `fn` runs with: its defaults, overridden by what we pass."""
    defaults = {n: p.default for n, p in inspect.signature(fn).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}
    return {**defaults, **given}


def _attempt(run: _Run, section: Section, failure: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, or None after recording a user-level error (OnnxplainError) on the
    section and adding it: the page then says why this part is missing. Other errors propagate."""
    try:
        return fn(*args, **kwargs)
    except OnnxplainError as exc:
        section.error = f"{failure}: {exc}"
        run.add(section)
        return None


def _no_conv(section: Section) -> Section:
    section.error = "the model has no conv layer, so there is nothing to show here"
    return section


def _filters_section(run: _Run, model: "Model", layer: "LayerInfo | None", seed: int) -> None:
    from .features import ascent_steps, visualize_filters

    s = Section("filters", "Filter visualisation (gradient ascent)")
    if layer is None:
        run.add(_no_conv(s))
        return
    count = min(int(layer.channels or FILTERS_SHOWN), FILTERS_SHOWN)
    steps = ascent_steps(model.spec.height, model.spec.width)
    s.params = {"layer": layer.name, **_feature_params(visualize_filters, {"seed": seed, "steps": steps}),
                "filters": f"0-{count - 1} of {layer.channels}"}
    s.text("Each picture starts from faint noise and is changed by gradient ascent to maximise the mean "
           "activation of one filter of the layer: the pattern that filter responds to. Titles give the "
           "filter's index and its final mean activation. Each filter is shown with its own contrast (its 1st to "
           "99th percentile stretched to black..white, as Lucent does), so the grey levels of two filters are "
           "not comparable. Steps: 128 up to 64 pixels a side, fewer in proportion to the side above that "
           "(at least 32).")
    vis = _attempt(run, s, f"filter visualisation failed on {layer.name}", visualize_filters, model,
                   layer=layer.name, filters=list(range(count)), seed=seed, steps=steps)
    if vis is None:
        return
    s.seconds = vis.seconds
    path = figures.render_filters(vis, run.figure("filters"))
    s.figure(path, f"{len(vis.filters)} filters of {vis.layer}, each on its own contrast.", relative_to=run.out)
    run.add(s, {"layer": vis.layer, "filters": list(map(int, vis.filters)),
                "start_activation": np.asarray(vis.start_activation).tolist(),
                "final_activation": np.asarray(vis.final_activation).tolist()})


def _activations_section(run: _Run, model: "Model", layer: "LayerInfo | None", image: np.ndarray,
                         row: dict[str, Any]) -> None:
    from .features import activation_maps

    s = Section("activations", "Activation maps (filter outputs) for one image")
    if layer is None:
        run.add(_no_conv(s))
        return
    s.params = {"layer": layer.name, "image": row["id"]}
    s.text(f"The outputs of {layer.name}'s filters for one real image ({row['id']}, true class "
           f"{row['true_name'] or 'unknown'}): which parts of the image each filter responds to.")
    t0 = time.perf_counter()
    acts = _attempt(run, s, f"activation maps failed on {layer.name}", activation_maps, model, image, layer=layer.name)
    if acts is None:
        return
    s.seconds = time.perf_counter() - t0
    path = figures.render_activations(acts, run.figure("activations"))
    s.figure(path, f"The image, then the first {min(len(acts.maps), 64)} of {len(acts.maps)} channels of "
             f"{acts.layer} (each on its own colour scale).", relative_to=run.out)
    maps = np.asarray(acts.maps)
    run.add(s, {"layer": acts.layer, "channels": int(maps.shape[0]), "map_size": list(maps.shape[1:]),
                "mean_activation": maps.reshape(len(maps), -1).mean(axis=1).tolist()})


def _dream_section(run: _Run, model: "Model", layer: "LayerInfo | None", image: np.ndarray, before: np.ndarray,
                   row: dict[str, Any], seed: int) -> None:
    from .features import deep_dream

    s = Section("dream", "Deep dream")
    if layer is None:
        run.add(_no_conv(s))
        return
    s.params = {"layer": layer.name, "image": row["id"], **_feature_params(deep_dream, {"seed": seed})}
    s.text(f"Starting from the same image, gradient ascent on the mean activation of {layer.name} "
           "exaggerates what that layer sees in it.")
    dream = _attempt(run, s, f"deep dream failed on {layer.name}", deep_dream, model, image, layer=layer.name,
                     seed=seed)
    if dream is None:
        return
    s.seconds = dream.seconds
    path = figures.render_dream(dream, run.figure("dream"), original=before)
    s.figure(path, f"Before and after; the layer's objective went from {dream.start_objective:.4g} to "
             f"{dream.final_objective:.4g}.", relative_to=run.out)
    run.add(s, {"layer": dream.layer, "start_objective": float(dream.start_objective),
                "final_objective": float(dream.final_objective)})


# ------------------------------------------------------------------------------------ writing
def _write(run: _Run, model: "Model", dataset: "Dataset", *, per_class: int, seed: int, seconds: float,
           training: dict[str, Any] | None, evaluation: "Evaluation | None") -> Path:
    versions = library_versions()
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    n_picked = len(run.numbers["selection"])
    facts = [
        ("model", f"{model.path.name} (sha256 {model.sha256[:16]}...)"),
        ("from", _source(model)),
        ("dataset", f"{dataset.source}: {len(dataset)} images"),
        ("explained", f"{n_picked} images, {per_class} per class (seed {seed}), the same for every method"),
        ("accuracy", f"{evaluation.accuracy:.4f}" if evaluation is not None else "n/a (no labels)"),
        ("device", model.device),
        ("generated", f"{now} in {seconds:.1f} s by onnxplain {versions.get('onnxplain', '?')}"),
        ("cost", section_costs(run.numbers.get("sections", {}), seconds)),
    ]
    page = run.out / "report.html"
    render_report_html(
        page, title=model.path.name,
        lead="What the course asks students to show about their CNN, computed by onnxplain from the model file.",
        facts=facts, sections=run.sections,
        footer="Raw numbers: report.json; raw maps: maps.npz; figures: img/. " + ", ".join(
            f"{k} {v}" for k, v in versions.items()),
    )
    if run.maps:
        with atomic_path(run.out / "maps.npz") as tmp:
            np.savez_compressed(tmp, **run.maps)
    write_json_atomic(run.out / "report.json", {
        "generated": now, "seconds": seconds, "versions": versions,
        "model": run.numbers.get("model"),
        "maps": run.numbers.get("maps"),  # the preprocessing and the explained score (logit/probability) per method
        "dataset": {"source": dataset.source, "images": len(dataset),
                    "class_names": list(dataset.class_names) if dataset.class_names else None},
        "per_class": per_class, "seed": seed, "selection": run.numbers["selection"],
        "evaluation": evaluation.as_dict() if evaluation is not None else None,
        "training": training,
        "sections": run.numbers.get("sections", {}),
    })
    return page


def section_costs(sections: dict[str, dict[str, Any]], total: float) -> str:
    """What each section's computation cost, costliest first, then the rest (figures, tables, writing).
    The training section's seconds are the training's own, not the report's: left out."""
    timed = sorted(((v.get("seconds") or 0.0, k) for k, v in sections.items() if k != "training"), reverse=True)
    rest = max(0.0, total - sum(t for t, _ in timed))
    return ", ".join(f"{k} {t:.1f} s" for t, k in timed if t >= 0.05) + f"; figures and writing {rest:.1f} s"


def _source(model: "Model") -> str:
    src = model.sidecar.get("source") or {}
    if not src:
        return "an ONNX file (no sidecar)"
    parts = [str(src.get(k)) for k in ("framework", "framework_version", "format") if src.get(k)]
    name = Path(str(src.get("path", ""))).name
    return " ".join(parts) + (f", {name}" if name else "")


def _detail_columns(expl: "Explanation") -> list[tuple[str, Callable[[int], str]]]:
    """The method table's extra columns (header, cell of image i), chosen by the type of its details."""
    d = expl.details
    if isinstance(d, IGDetails):
        return [("completeness error", lambda i: _fmt(d.completeness_error[i], percent=True))]
    if isinstance(d, LimeDetails):
        return [("R² of the local model", lambda i: _fmt(d.r2[i])), ("superpixels", lambda i: _fmt(d.n_segments[i])),
                (f"top-{expl.params.get('top_k', 5)} stable at",
                 lambda i: figures.lime_stability_text(expl, i, prefix=False))]
    return []


def _fmt(value: Any, *, percent: bool = False) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    if percent:
        return f"{v:.2%}"
    return f"{v:.4g}"
