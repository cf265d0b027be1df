"""One baseline vocabulary for every method that compares an image with a reference: integrated
gradients (the path's start), occlusion (what a window shows), LIME (what an "off" superpixel shows)
and the deletion/insertion curves (what a removed pixel becomes).

- "black": a black image (pixel 0) mapped through the model's preprocessing (not necessarily 0);
- "blur": the image blurred with a Gaussian of sigma = BLUR_SIGMA * max(H, W) pixels, reflected
  border (blurring commutes with the per-channel affine preprocessing, so it is done in model space);
- "mean": the image's per-channel mean (LIME: each superpixel's mean colour, as the lime package's
  `hide_color=None`: a superpixel is the region LIME hides);
- "noise": uniform pixel noise in [0, 255] from `numpy.random.default_rng([seed, i])` for image i;
- a number, or one per channel: that pixel value 0..255 everywhere;
- an array of the model's input shape, (N, *shape) or (*shape): the baseline itself, in model space.

Earlier spellings still work: "blurred" (integrated gradients, the curves) is "blur"; LIME's
`hide_color` is its `baseline` (None there meant "mean").
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, Union

import cv2
import numpy as np

from .errors import BadInputError

if TYPE_CHECKING:
    from .input_spec import InputSpec

NAMES = ("black", "blur", "mean", "noise")
ALIASES = {"blurred": "blur"}
BLUR_SIGMA = 0.1  # of the longer side: 4.8 pixels on a 48x48 face, 22 on a 224x224 photo

Baseline = Union[str, float, Sequence[float], np.ndarray]


def baseline_name(baseline: Baseline) -> str | None:
    """The canonical name of a named baseline (aliases mapped), None for a pixel value or an array;
    an unknown name raises, listing the known ones."""
    if not isinstance(baseline, str):
        return None
    name = ALIASES.get(baseline, baseline)
    if name not in NAMES:
        raise BadInputError(f"unknown `baseline` {baseline!r}; known: {', '.join(NAMES)}, a pixel value 0..255 "
                            "(one or one per channel) or an array of the model's input shape", params=("baseline",))
    return name


def describe(baseline: Baseline) -> str | float | list[float]:
    """The baseline as an Explanation's params record it: its canonical name, the pixel value(s), or the
    shape of a given array (never the array itself)."""
    name = baseline_name(baseline)
    if name is not None:
        return name
    arr = np.asarray(baseline, dtype=float)
    if arr.ndim == 0:
        return float(arr)
    if arr.ndim == 1:
        return arr.tolist()
    return f"array {list(arr.shape)}"


def baseline_images(spec: "InputSpec", x: np.ndarray, baseline: Baseline, seed: int = 0) -> np.ndarray:
    """The baseline of each image of `x` (N, *spec.shape), as float32 model input."""
    n = len(x)
    name = baseline_name(baseline)
    if name == "black":
        return spec.pixels_to_model(np.zeros((n, spec.height, spec.width, spec.channels), np.float32))
    if name == "noise":
        pixels = np.stack([np.random.default_rng([seed, i]).uniform(0.0, 255.0, (spec.height, spec.width, spec.channels))
                           for i in range(n)]).astype(np.float32)
        return spec.pixels_to_model(pixels)
    if name == "blur":
        return blur(spec, x)
    if name == "mean":
        nhwc = spec.to_nhwc(x)
        means = np.broadcast_to(nhwc.mean(axis=(1, 2), keepdims=True, dtype=np.float64), nhwc.shape)
        return spec.from_nhwc(means.astype(np.float32))
    arr = np.asarray(baseline, dtype=np.float32) if not isinstance(baseline, str) else None
    if arr is not None and arr.ndim >= 2:
        if arr.shape == tuple(spec.shape):
            arr = arr[None]
        if arr.shape[1:] != tuple(spec.shape) or len(arr) not in (1, n) or not np.all(np.isfinite(arr)):
            raise BadInputError(f"a `baseline` array must be finite and of the model's input shape {list(spec.shape)} "
                                f"(one, or one per image: {n}), got {list(arr.shape)}", params=("baseline",))
        return np.ascontiguousarray(np.broadcast_to(arr, (n, *spec.shape)))
    return np.ascontiguousarray(np.broadcast_to(pixel_constant(spec, baseline, "baseline"), x.shape))


def blur(spec: "InputSpec", x: np.ndarray) -> np.ndarray:
    """The one blur: each image Gaussian-blurred with sigma = BLUR_SIGMA * max(H, W) pixels, reflected border."""
    sigma = BLUR_SIGMA * max(spec.height, spec.width)
    nhwc = spec.to_nhwc(x)
    out = np.stack([cv2.GaussianBlur(np.ascontiguousarray(img), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
                    .reshape(img.shape) for img in nhwc])
    return spec.from_nhwc(out.astype(np.float32))


def pixel_constant(spec: "InputSpec", value: float | Sequence[float], what: str) -> np.ndarray:
    """A pixel value (0..255; one number or one per channel) as a model-input image (1, *spec.shape), a
    read-only broadcast of the one converted pixel."""
    try:
        vals = np.atleast_1d(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError):
        vals = np.array([np.nan], dtype=np.float32)
    if vals.ndim != 1 or vals.size not in (1, spec.channels) or not np.all(np.isfinite(vals)):
        raise BadInputError(f"`{what}` {value!r} must be one pixel value (0..255) or one per channel ({spec.channels})",
                            params=(what,))
    one_pixel = spec.pixels_to_model(np.broadcast_to(vals, (1, 1, 1, spec.channels)))
    return np.broadcast_to(one_pixel, (1, *spec.shape))
