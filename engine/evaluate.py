"""Evaluation: accuracy, per-class precision/recall, the confusion matrix and the most-confused pairs.

Forward-only (onnxruntime). `evaluation_from_predictions` is the pure part, checked against
scikit-learn's metrics; `evaluate` runs the model over a dataset in batches and calls it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .batching import batch_slices
from .data import Dataset
from .errors import BadInputError
from .progress import Progress

if TYPE_CHECKING:
    from .model import Model

TOP_PAIRS = 5


@dataclass(frozen=True)
class ConfusedPair:
    true: int
    predicted: int
    true_name: str
    predicted_name: str
    rate: float   # share of the true class predicted as `predicted` (row-normalised confusion)
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {"true": self.true, "predicted": self.predicted, "true_name": self.true_name,
                "predicted_name": self.predicted_name, "rate": self.rate, "count": self.count}


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Rows of `confusion` are true classes, columns predicted classes."""

    class_names: tuple[str, ...]
    labels: np.ndarray          # (N,) int64 true classes
    predictions: np.ndarray     # (N,) int64 predicted classes
    confusion: np.ndarray       # (K, K) int64 counts
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return int(len(self.labels))

    @property
    def n_classes(self) -> int:
        return int(self.confusion.shape[0])

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.n) if self.n else 0.0

    @property
    def support(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        """Per class; 0 where the class was never predicted (scikit-learn's zero_division=0)."""
        return _safe_divide(np.diag(self.confusion), self.confusion.sum(axis=0))

    @property
    def recall(self) -> np.ndarray:
        """Per class; 0 where the class has no images."""
        return _safe_divide(np.diag(self.confusion), self.support)

    @property
    def f1(self) -> np.ndarray:
        p, r = self.precision, self.recall
        return _safe_divide(2 * p * r, p + r)

    @property
    def confusion_normalized(self) -> np.ndarray:
        """Row-normalised confusion: row i is how images of class i were classified (rows sum to 1,
        or are all 0 for a class without images)."""
        return _safe_divide(self.confusion, self.support[:, None])

    def most_confused(self, top: int = TOP_PAIRS) -> list[ConfusedPair]:
        """Off-diagonal cells with the highest rates (ties: more images first), rate > 0."""
        norm = self.confusion_normalized
        cells = [(float(norm[t, p]), int(self.confusion[t, p]), t, p)
                 for t in range(self.n_classes) for p in range(self.n_classes) if t != p and self.confusion[t, p] > 0]
        cells.sort(key=lambda c: (-c[0], -c[1], c[2], c[3]))
        return [ConfusedPair(t, p, self.class_names[t], self.class_names[p], rate, count)
                for rate, count, t, p in cells[:top]]

    def as_dict(self) -> dict[str, Any]:
        support = self.support
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "classes": list(self.class_names),
            "per_class": [
                {"class": i, "name": name, "precision": float(self.precision[i]), "recall": float(self.recall[i]),
                 "f1": float(self.f1[i]), "support": int(support[i])}
                for i, name in enumerate(self.class_names)
            ],
            "confusion": self.confusion.tolist(),
            "confusion_normalized": self.confusion_normalized.round(6).tolist(),
            "most_confused": [pair.as_dict() for pair in self.most_confused()],
            "seconds": self.seconds,
        }


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def evaluation_from_predictions(
    labels: Sequence[int] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    n_classes: int,
    class_names: Sequence[str] | None = None,
    *,
    seconds: float = 0.0,
) -> Evaluation:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if y.shape != p.shape:
        raise BadInputError(f"{len(y)} labels for {len(p)} predictions")
    if n_classes < 1:
        raise BadInputError(f"n_classes must be at least 1, got {n_classes}")
    for what, arr in (("label", y), ("prediction", p)):
        out = arr[(arr < 0) | (arr >= n_classes)]
        if out.size:
            raise BadInputError(f"{what} {int(out[0])} is out of range; the model has {n_classes} classes (0..{n_classes - 1})")
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(n_classes))
    if len(names) != n_classes:
        raise BadInputError(f"{len(names)} class names for {n_classes} classes")
    confusion = np.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return Evaluation(names, y, p, confusion.astype(np.int64), seconds)


def evaluate(
    model: "Model",
    images_or_dataset: Dataset | np.ndarray | Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray | None = None,
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> Evaluation:
    """Classify every image (pixel convention) and compare with `labels` (or the dataset's labels,
    mapped into the model's label order when both carry class names)."""
    names = model.spec.labels
    if isinstance(images_or_dataset, Dataset):
        ds = images_or_dataset
        if labels is None:
            if ds.labels is None:
                raise BadInputError(f"{ds.source} has no labels to evaluate against (e.g. the `id,feature` test CSV)")
            if names and ds.class_names:
                ds = ds.relabel(names)
            labels = ds.labels
        names = names or ds.class_names
        images: np.ndarray | Sequence[np.ndarray] = ds.images
    else:
        images = images_or_dataset
        if labels is None:
            raise BadInputError("evaluate needs the true labels of the images")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(images):
        raise BadInputError(f"{len(y)} labels for {len(images)} images")
    if batch_size < 1:
        raise BadInputError(f"batch size must be at least 1, got {batch_size}")
    k = model.n_classes
    if len(y) and y.max() >= k:
        raise BadInputError(f"the data has class {int(y.max())} but the model has {k} outputs (classes 0..{k - 1})")
    if names is not None and len(names) != k:
        names = None
    start = time.perf_counter()
    predictions = np.empty(len(y), dtype=np.int64)
    slices = list(batch_slices(len(y), batch_size))
    for done, s in enumerate(slices, start=1):
        # A list, so that a batch of 1 or 3 gray images is never mistaken for one CxHxW image.
        scores = model.predict(model.spec.to_model_input(list(images[s])), batch_size)
        predictions[s] = scores.argmax(axis=1)
        if progress is not None:
            progress(f"evaluating {len(y)} images", done / len(slices))
    return evaluation_from_predictions(y, predictions, k, names, seconds=time.perf_counter() - start)
