"""Occlusion (Zeiler & Fergus, 2014) as `captum.attr.Occlusion` defines it, on onnxruntime.

A window of `window` pixels slides over the image in steps of `stride` (all channels at once);
for each position the window's pixels are replaced by the baseline and the drop in the target
score (unperturbed minus occluded) is credited to every pixel under the window. A pixel's value
is the average drop over the windows that cover it. Positions follow Captum: along a side of D
pixels the window starts at 0, s, 2s, ... for ceil((D - w) / s) + 1 positions, the last one
clipped at the border, so every pixel is covered when stride <= window.

Every window of every image is evaluated in batches through onnxruntime (the unperturbed image
rides along as perturbation 0); a batch spans images x windows. Scores are the model's outputs
(probabilities when the graph ends in a softmax, logits otherwise), as Captum takes them.
Baselines: a pixel value 0..255 (0 = black; one number or one per channel), "mean" (each
image's per-channel mean) or "blur" (a Gaussian-blurred copy, sigma = half the window's longer
side, OpenCV's default reflected border).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from ..errors import BadInputError
from ..explanation import Explanation, make_explanation
from ..perturbation import arrays_for, per_channel_constant, predict_perturbed
from ..registry import register

if TYPE_CHECKING:
    from ..model import Model

NAMED_BASELINES = ("mean", "blur")


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    vals = [value, value] if np.isscalar(value) else list(value)  # type: ignore[arg-type]
    if len(vals) != 2 or any(int(v) != v or int(v) < 1 for v in vals):
        raise BadInputError(f"{what} {value!r} must be a positive integer or two of them (height, width)")
    return int(vals[0]), int(vals[1])


def default_window(size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(window, stride) that scale with the input: a window of 1/6 of each side (at least 8 pixels) and
    a stride of half the window, so a 48x48 face keeps 8 and 4 while a 224x224 photo gets 37 and 18:
    about 12x12 window positions whatever the size, where a fixed 8x8 window would need 55x55."""
    win = tuple(max(8, round(d / 6)) if d >= 8 else d for d in size)
    return win, tuple(max(1, w // 2) for w in win)  # type: ignore[return-value]


def window_starts(size: int, window: int, stride: int) -> np.ndarray:
    """Captum's window positions along one side: ceil((size - window) / stride) + 1 starts."""
    return np.arange(math.ceil((size - window) / stride) + 1) * stride


def cover_matrix(size: int, window: int, stride: int) -> np.ndarray:
    """(positions, size) bool: which pixels along one side each window position covers."""
    starts = window_starts(size, window, stride)
    pix = np.arange(size)
    return (pix[None, :] >= starts[:, None]) & (pix[None, :] < starts[:, None] + window)


def baseline_images(model: "Model", x: np.ndarray, baseline: float | str | Sequence[float],
                    window: tuple[int, int]) -> np.ndarray:
    """The occluding content as model input (N, *spec.shape)."""
    spec = model.spec
    if isinstance(baseline, str):
        if baseline == "mean":
            axes = (2, 3) if spec.layout == "NCHW" else (1, 2)
            return np.ascontiguousarray(np.broadcast_to(x.mean(axis=axes, keepdims=True, dtype=np.float64), x.shape),
                                        dtype=np.float32)
        if baseline == "blur":
            # Preprocessing is a per-channel affine map and the kernel sums to 1: blurring the model
            # input equals blurring the pixels, without clipping values outside 0..255.
            sigma = max(window) / 2.0
            nhwc = x if spec.layout == "NHWC" else x.transpose(0, 2, 3, 1)
            out = np.stack([cv2.GaussianBlur(np.ascontiguousarray(img), (0, 0), sigmaX=sigma, sigmaY=sigma)
                            .reshape(img.shape) for img in nhwc])
            return out if spec.layout == "NHWC" else np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        raise BadInputError(f"baseline {baseline!r} is not a pixel value (0..255) or one of: {', '.join(NAMED_BASELINES)}")
    const = per_channel_constant(model, baseline, "baseline")
    return np.ascontiguousarray(np.broadcast_to(const, x.shape))


@register("occlusion", backend="onnxruntime", default_batch_size=None)
def occlusion(
    model: "Model",
    x: np.ndarray,
    targets: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    baseline: float | str | Sequence[float] = 0.0,
) -> Explanation:
    """Occlusion: the drop in the target score when a sliding window shows the baseline, averaged per pixel.

    window/stride: int or (height, width); None: `default_window` of the input size (8 and 4 up to 48
    pixels a side). baseline: a pixel value 0..255 (0 = black), "mean" or "blur".
    maps: signed, positive where hiding the pixel lowers the score. extras: `score_drops` (N, rows,
    cols), the drop for each window position.
    """
    spec = model.spec
    size = (spec.height, spec.width)
    auto_window, auto_stride = default_window(size)
    win = _pair(window, "window") if window is not None else auto_window
    step = _pair(stride, "stride") if stride is not None else (auto_stride if window is None else
                                                                tuple(max(1, w // 2) for w in win))
    for side, w, s, d in zip(("height", "width"), win, step, size):
        if w > d:
            raise BadInputError(f"window {win} is larger than the input ({d} pixels in {side})")
        if s > w and w < d:
            raise BadInputError(f"stride {step} is larger than window {win}: some pixels would never be occluded")
    rows, cols = cover_matrix(size[0], win[0], step[0]), cover_matrix(size[1], win[1], step[1])
    n_rows, n_cols = rows.shape[0], cols.shape[0]
    base = baseline_images(model, x, baseline, win)

    arrays = arrays_for(model)
    # Perturbation 0 hides nothing (the unperturbed score); p >= 1 is window row (p-1)//cols, column (p-1)%cols.
    pert = np.arange(n_rows * n_cols)
    row_of = arrays.put(np.concatenate([[0], 1 + pert // n_cols]), np.int64)
    col_of = arrays.put(np.concatenate([[0], 1 + pert % n_cols]), np.int64)
    rows_d = arrays.put(np.concatenate([np.zeros((1, size[0]), bool), rows]))
    cols_d = arrays.put(np.concatenate([np.zeros((1, size[1]), bool), cols]))
    x_d, base_d = arrays.put(x, np.float32), arrays.put(base, np.float32)

    def build(i: int, a: int, b: int) -> Any:
        hide = rows_d[row_of[a:b]][:, :, None] & cols_d[col_of[a:b]][:, None, :]
        return arrays.where(arrays.channel_mask(hide), base_d[i], x_d[i])

    outputs = predict_perturbed(arrays, x.shape[0], 1 + n_rows * n_cols, build, batch_size)
    target_scores = outputs[np.arange(x.shape[0]), :, targets]  # (N, 1 + windows)
    drops = (target_scores[:, :1] - target_scores[:, 1:]).reshape(-1, n_rows, n_cols)
    # Sum over windows of drop x coverage = R' D C; coverage counts factor the same way. (Two plain
    # einsums: these products are tiny, and BLAS threads or einsum's path search cost more than they do.)
    r64, c64 = rows.astype(np.float64), cols.astype(np.float64)
    total = np.einsum("nhc,cw->nhw", np.einsum("rh,nrc->nhc", r64, drops.astype(np.float64)), c64)
    counts = r64.sum(axis=0)[:, None] * c64.sum(axis=0)[None, :]
    maps = (total / counts).astype(np.float32)

    params = dict(window=list(win), stride=list(step), baseline=baseline if isinstance(baseline, str) else
                  np.asarray(baseline, dtype=float).tolist(), batch_size=batch_size)
    return make_explanation(model, "occlusion", x, targets, maps, params=params, scores=target_scores[:, 0],
                            extras={"score_drops": drops.astype(np.float32)})
