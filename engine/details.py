"""What each method computes besides its maps, as one small frozen dataclass per method.

`Explanation.details` holds one of these; renderers, the report and the metrics dispatch on its
type (not on key names), and the JSON output serialises its fields under their names. A field that
is `None` was not computed and is left out of the JSON. Per-image arrays have the images as their
first dimension, so `take` can pick some images from all of them at once.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

SMALL = 4096  # 1-D arrays up to this size go into the whole call's JSON record


@dataclass(frozen=True)
class Details:
    """Base of the per-method details: the helpers every kind shares."""

    def items(self) -> dict[str, Any]:
        """The computed fields by name (those that are None were not computed)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def take(self, idx: np.ndarray, n: int) -> "Details":
        """The details of images `idx` out of `n`: every per-image array indexed, the rest kept."""
        def pick(v: Any) -> Any:
            if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == n:
                return v[idx]
            if isinstance(v, (list, tuple)) and len(v) == n:
                return type(v)(v[i] for i in idx.tolist())
            return v

        return replace(self, **{k: pick(v) for k, v in self.items().items()})

    def record(self) -> dict[str, Any]:
        """The fields small enough for the whole call's JSON record (scalars, short 1-D arrays)."""
        return {k: v for k, v in self.items().items() if _is_small(v)}

    def record_image(self, i: int, n: int) -> dict[str, Any]:
        """The per-image scalars of image `i` (the 1-D arrays with one value per image)."""
        return {k: v[i] for k, v in self.items().items()
                if isinstance(v, np.ndarray) and v.ndim == 1 and v.shape[0] == n}


@dataclass(frozen=True)
class SaliencyDetails(Details):
    """`attributions`: the raw gradient (N, *input shape) in the model's layout. (The saliency mask of
    the figures is `methods.saliency.masked_image` of the display images and the maps.)"""

    attributions: np.ndarray


@dataclass(frozen=True)
class SmoothGradDetails(Details):
    """`attributions`: the averaged (absolute or signed) gradient (N, *input shape); `noise_sd` (N,)."""

    attributions: np.ndarray
    noise_sd: np.ndarray


@dataclass(frozen=True)
class IGDetails(Details):
    """Integrated gradients: `attributions` and `baseline` (N, *input shape) in the model's layout;
    `delta` (N,) = sum(attributions) - (f(x) - f(baseline)); `completeness_error` (N,) = |delta| /
    |f(x) - f(baseline)|; `score_difference` (N,) = f(x) - f(baseline); `steps` (N,) used per image."""

    attributions: np.ndarray
    baseline: np.ndarray
    delta: np.ndarray
    completeness_error: np.ndarray
    score_difference: np.ndarray
    steps: np.ndarray


@dataclass(frozen=True)
class GradCamDetails(Details):
    """`layer`: the explained conv layer's name; `cam_lowres` (N, h, w) at that layer's resolution."""

    layer: str
    cam_lowres: np.ndarray


@dataclass(frozen=True)
class OcclusionDetails(Details):
    """`score_drops` (N, rows, cols): the target score's drop for each window position."""

    score_drops: np.ndarray


@dataclass(frozen=True)
class LimeDetails(Details):
    """LIME: `segments` (N, H, W) int32; `weights` (N, S_max) NaN-padded; `n_segments`, `r2`, `intercept`,
    `local_pred` (N,); `positive_mask` / `negative_mask` (N, H, W) bool (the top_k superpixels either way);
    `stability` (N,) how likely those top_k hold on other perturbations; `samples_used` (N,);
    `expected_jaccard` (N,) only with samples="auto"."""

    segments: np.ndarray
    weights: np.ndarray
    n_segments: np.ndarray
    r2: np.ndarray
    intercept: np.ndarray
    local_pred: np.ndarray
    positive_mask: np.ndarray
    negative_mask: np.ndarray
    stability: np.ndarray
    samples_used: np.ndarray
    expected_jaccard: np.ndarray | None = None


def _is_small(v: Any) -> bool:
    if isinstance(v, (int, float, str, bool)):
        return True
    return isinstance(v, np.ndarray) and v.ndim == 1 and v.size <= SMALL
