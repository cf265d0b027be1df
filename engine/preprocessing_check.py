"""Which preprocessing was the model trained with? Asked of labelled data, never guessed silently.

A model fed pixels in another convention than the one it was trained on still predicts, confidently
and wrongly (a FER model trained on raw 0..255 pixels, fed x/255, called every face "Angry"), and
every map drawn from it explains nothing. With labelled data at hand, `check_preprocessing` runs
the model on a sample (200 images by default) under each usual convention (x/255, raw 0..255,
[-1, 1], ImageNet mean/std; RGB and BGR for colour models) and under the candidate read from the
student's code, if any (`onnxplain.exporters.preprocessing_scan`), and measures the accuracy of
each. The best one replaces the model's current preprocessing only when it is clearly better: by
at least MIN_GAIN in accuracy and by three standard errors of the difference of two accuracies
measured on the sample, so that a lucky sample of a model that works either way changes nothing.

The result (`PreprocessingCheck.record()`) holds the table of everything tried and one sentence
("chose raw 0..255: accuracy 0.61 vs 0.14 with x/255") that the report and grade show. It runs only
when the preprocessing is the x/255 default: flags and a sidecar written from the user's flags win.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from .data import Dataset
    from .input_spec import InputSpec
    from .model import Model

log = logging.getLogger(__name__)

SAMPLE = 200
MIN_GAIN = 0.05
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Convention:
    """One way of turning 0..255 pixels into model input: (pixel * scale - mean) / std, in `channel_order`."""

    name: str
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: str = "RGB"

    def apply(self, spec: "InputSpec") -> "InputSpec":
        c = spec.channels
        per = (lambda v: tuple(v) if len(v) == c else tuple(v[:1]) * c)  # noqa: E731
        return replace(spec, scale=float(self.scale), mean=per(self.mean), std=per(self.std),
                       channel_order=self.channel_order if c == 3 else "RGB")  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scale": self.scale, "mean": list(self.mean), "std": list(self.std),
                "channel_order": self.channel_order}


def usual_conventions(channels: int) -> list[Convention]:
    """The conventions students use: x/255, raw, [-1, 1] and, for colour models, ImageNet mean/std,
    each in RGB and (for colour models) BGR order."""
    base = [Convention("x/255", 1 / 255, (0.0,), (1.0,)), Convention("raw 0..255", 1.0, (0.0,), (1.0,)),
            Convention("[-1, 1]", 2 / 255, (1.0,), (1.0,))]
    if channels != 3:
        return base
    base.append(Convention("ImageNet mean/std", 1 / 255, IMAGENET_MEAN, IMAGENET_STD))
    return base + [replace(c, name=f"{c.name} BGR", channel_order="BGR") for c in base]


def current_convention(spec: "InputSpec") -> Convention:
    """The model's preprocessing now, named after the usual convention it equals (else 'custom')."""
    here = Convention("custom", spec.scale, spec.mean, spec.std, spec.channel_order)
    for c in usual_conventions(spec.channels):
        if _same(c.apply(spec), spec):
            return replace(here, name=c.name)
    return here


@dataclass(frozen=True)
class PreprocessingCheck:
    """What was tried on which sample, what it scored, and what was chosen."""

    tried: tuple[Convention, ...]
    accuracies: tuple[float, ...]
    sample: int
    current: int    # index into tried
    chosen: int     # index into tried
    scanned: dict[str, Any] | None = None

    @property
    def changed(self) -> bool:
        return self.chosen != self.current

    @property
    def message(self) -> str:
        cur, cho = self.tried[self.current], self.tried[self.chosen]
        acc = self.accuracies
        if self.changed:
            return f"chose {cho.name}: accuracy {acc[self.chosen]:.2f} vs {acc[self.current]:.2f} with {cur.name}"
        best = int(np.argmax(acc))
        if acc[best] > acc[self.current]:
            return (f"kept {cur.name} (accuracy {acc[self.current]:.2f}); the best other, {self.tried[best].name} "
                    f"({acc[best]:.2f}), is not clearly better on {self.sample} images")
        return f"kept {cur.name}: accuracy {acc[self.current]:.2f}, the best of {len(self.tried)} tried"

    def record(self) -> dict[str, Any]:
        return {"message": self.message, "changed": self.changed, "sample": self.sample,
                "current": self.tried[self.current].name, "chosen": self.tried[self.chosen].name,
                "min_gain": MIN_GAIN, "scanned": self.scanned,
                "tried": [{**c.as_dict(), "accuracy": round(a, 4)} for c, a in zip(self.tried, self.accuracies)]}


def check_preprocessing(model: "Model", dataset: "Dataset", *, sample: int = SAMPLE, seed: int = 0,
                        candidate: Convention | None = None, scanned: dict[str, Any] | None = None,
                        batch_size: int = 256) -> PreprocessingCheck | None:
    """Accuracy of each convention (and `candidate`) on `sample` labelled images; None without labels
    or when the data's classes do not match the model's."""
    data = _labelled(model, dataset)
    if data is None:
        return None
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(data))[:sample])
    pixels = model.spec.to_pixels(list(data.images[idx]))
    labels = np.asarray(data.labels)[idx]
    current = current_convention(model.spec)
    tried = [current] + [c for c in usual_conventions(model.spec.channels) if c.name != current.name]
    if candidate is not None:
        tried.append(candidate)
    accs = []
    for conv in tried:
        x = conv.apply(model.spec).pixels_to_model(pixels)
        accs.append(float((model.predict(x, batch_size).argmax(axis=1) == labels).mean()))
    best = max(range(len(tried)), key=lambda i: (accs[i], i == 0))  # ties keep the current one
    chosen = best if clearly_better(accs[best], accs[0], len(idx)) else 0
    return PreprocessingCheck(tuple(tried), tuple(accs), int(len(idx)), 0, chosen, scanned)


def clearly_better(a: float, b: float, n: int) -> bool:
    """Accuracy `a` beats `b` (both measured on the same `n` images) by MIN_GAIN and three standard errors."""
    se = math.sqrt((a * (1 - a) + b * (1 - b)) / max(n, 1))
    return a - b >= max(MIN_GAIN, 3 * se)


def detect_preprocessing(model: "Model", dataset: "Dataset", *, code: Sequence[str | Path] = (),
                         sample: int = SAMPLE, seed: int = 0) -> dict[str, Any] | None:
    """Check the model's default preprocessing on `dataset` and switch to a clearly better one.

    `code`: the student's .py files; the preprocessing they show (parsed, never run) is tried too.
    Does nothing (returns None) when the preprocessing came from the user (flags, or a sidecar
    written from flags) or the data has no usable labels. Otherwise sets `model.spec` to the chosen
    convention, `model.preprocessing_check` to the record (also when nothing changed) and returns it."""
    if model.preprocessing_source != "default":
        return None
    from onnxplain.exporters.preprocessing_scan import scan_preprocessing

    scanned = scan_preprocessing(code) if code else None
    candidate = convention_from(scanned.as_dict(), "from the student's code") if scanned else None
    check = check_preprocessing(model, dataset, sample=sample, seed=seed, candidate=candidate,
                                scanned=scanned.as_dict() if scanned else None)
    if check is None:
        return None
    record = check.record()
    if check.changed:
        model.spec = check.tried[check.chosen].apply(model.spec)
        model.preprocessing_source = "detected"
        log.warning("%s: %s", model.path.name, check.message)
    model.preprocessing_check = record
    return record


def preprocessing_row(model: "Model", dataset: "Dataset", code: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Detect (when the preprocessing is the default) and say what the model is fed: a grade row's
    `preprocessing` (one sentence) and `preprocessing_check` (the table of what was tried, or None)."""
    detect_preprocessing(model, dataset, code=code)
    return {"preprocessing": describe(model), "preprocessing_check": model.preprocessing_check}


SOURCES = {"flags": "given by the flags", "sidecar": "recorded in the sidecar at export",
           "default": "the x/255 default", "detected": "chosen on the labelled data"}


def describe(model: "Model") -> str:
    """One sentence: the convention, its formula, where it came from and what the check found."""
    spec = model.spec
    text = (f"{current_convention(spec).name}: model input = (pixel x {spec.scale:.6g} - {nums(spec.mean)}) / "
            f"{nums(spec.std)}, pixel in 0..255{', channels in BGR order' if spec.bgr else ''}; "
            f"{SOURCES.get(model.preprocessing_source, model.preprocessing_source)}")
    check = model.preprocessing_check
    return f"{text} ({check['message']})" if check else text


def nums(values: Sequence[float]) -> str:
    """One number when all channels agree, else the tuple."""
    vals = [f"{v:.4g}" for v in values]
    return vals[0] if len(set(vals)) == 1 else "(" + ", ".join(vals) + ")"


def _labelled(model: "Model", dataset: "Dataset") -> "Dataset | None":
    if dataset.labels is None or len(dataset) == 0:
        return None
    if model.spec.labels and dataset.class_names:
        dataset = dataset.relabel(model.spec.labels)
    if dataset.n_classes not in (None, model.n_classes) or int(np.max(dataset.labels)) >= model.n_classes:
        return None
    return dataset


def _same(a: "InputSpec", b: "InputSpec") -> bool:
    close = (lambda u, v: len(u) == len(v) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)  # noqa: E731
                                                    for x, y in zip(u, v)))
    return (math.isclose(a.scale, b.scale, rel_tol=1e-6) and close(a.mean, b.mean) and close(a.std, b.std)
            and a.channel_order == b.channel_order)


def convention_from(values: dict[str, Any], name: str) -> Convention:
    """A Convention from a scan's {scale, mean, std, channel_order} dict."""
    as_tuple = (lambda v: tuple(float(x) for x in (v if isinstance(v, Sequence) else [v])))  # noqa: E731
    return Convention(name, float(values.get("scale", 1 / 255)), as_tuple(values.get("mean", 0.0)),
                      as_tuple(values.get("std", 1.0)), str(values.get("channel_order", "RGB")))
