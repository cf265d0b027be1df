"""Explanation: the one result type. Raw float32 maps plus everything needed to reproduce them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .details import Details
from .sidecar import plain
from .versions import library_versions

if TYPE_CHECKING:
    from .model import Model


@dataclass(frozen=True)
class Explanation:
    """Renderers only read this. `maps` is (N, H, W) float32 in the model's input resolution.

    `details` holds what the method computed besides the maps (one `engine.details` dataclass per
    method: signed attributions, LIME weights and segments, completeness errors, ...); `params` the
    method parameters as called.
    """

    method: str
    maps: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    params: dict[str, Any]
    model_sha256: str
    versions: dict[str, str]
    labels: tuple[str, ...] | None = None
    seconds: float = 0.0
    device: str = "cpu"
    details: Details | None = None

    def __post_init__(self) -> None:
        if self.maps.ndim != 3 or self.maps.dtype != np.float32:
            raise ValueError(f"maps must be float32 (N, H, W), got {self.maps.dtype} {self.maps.shape}")
        if len(self.targets) != self.maps.shape[0]:
            raise ValueError("one target per map")

    def _repr_html_(self) -> str:
        """Jupyter shows the explanation inline as its grid figure."""
        from .render.notebook import explanation_html

        return explanation_html(self)

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def take(self, indices: Any) -> "Explanation":
        """The explanation of some of the images (figures that show a sample): every per-image array,
        the details' included (those whose first dimension is the number of images), indexed the same way."""
        from dataclasses import replace

        idx = np.asarray(indices, dtype=np.int64)
        details = self.details.take(idx, len(self)) if self.details is not None else None
        return replace(self, maps=self.maps[idx], inputs=self.inputs[idx], targets=self.targets[idx],
                       scores=self.scores[idx], details=details)

    def target_name(self, i: int) -> str:
        t = int(self.targets[i])
        return self.labels[t] if self.labels and t < len(self.labels) else str(t)

    def record(self, i: int | None = None) -> dict[str, Any]:
        """JSON-ready summary (no big arrays): per image when `i` is given, else for the whole call."""
        scalars = plain(self.details.record()) if self.details is not None else {}
        if i is not None:
            per_image = plain(self.details.record_image(i, len(self))) if self.details is not None else {}
            return {
                "method": self.method, "index": i, "target": int(self.targets[i]), "target_name": self.target_name(i),
                "score": float(self.scores[i]), "params": plain(self.params), "seconds": self.seconds,
                "device": self.device, "model_sha256": self.model_sha256, **per_image,
            }
        return {
            "method": self.method, "n": len(self), "targets": self.targets.tolist(),
            "target_names": [self.target_name(j) for j in range(len(self))],
            "scores": self.scores.tolist(), "params": plain(self.params), "seconds": self.seconds,
            "device": self.device, "model_sha256": self.model_sha256, "versions": self.versions,
            **scalars,
        }


def make_explanation(
    model: "Model",
    method: str,
    x: np.ndarray,
    targets: np.ndarray,
    maps: np.ndarray,
    *,
    params: dict[str, Any],
    scores: np.ndarray | None = None,
    details: Details | None = None,
) -> Explanation:
    """Fill in what every method shares (scores, model hash, versions) so methods only compute maps."""
    targets = np.asarray(targets, dtype=np.int64)
    if scores is None:
        probs = model.predict(x)
        scores = probs[np.arange(len(targets)), targets]
    return Explanation(
        method=method,
        maps=np.ascontiguousarray(maps, dtype=np.float32),
        inputs=x,
        targets=targets,
        scores=np.asarray(scores, dtype=np.float32),
        params=dict(params),
        model_sha256=model.sha256,
        versions=library_versions(),
        labels=model.spec.labels,
        device=model.device,
        details=details,
    )

