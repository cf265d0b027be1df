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
Baselines (`engine.baselines`, shared with integrated gradients and LIME): a pixel value 0..255 (0,
the default, is black; one number or one per channel), "black", "mean" (each image's per-channel
mean), "blur" (a Gaussian-blurred copy, sigma = 0.1 * max(H, W), reflected border), "noise" or an
array of the input's shape.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..baselines import Baseline, describe
from ..baselines import baseline_images
from ..errors import BadInputError
from ..details import OcclusionDetails
from ..explanation import Explanation, make_explanation
from ..perturbation import arrays_for, predict_perturbed
from ..registry import register

if TYPE_CHECKING:
    from ..model import Model

def hw_pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    """(height, width) from one positive integer or two; `what` names the parameter in the error."""
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


TEXT = ("A window slides over the image and hides what is under it; each pixel gets the average drop of the score "
        "over the windows that cover it. Red: hiding it lowers the score (the model needs it).")


def forward_passes(params: dict[str, Any], spec: Any) -> int:
    """Captum's window positions plus the unoccluded image, per image: the benchmarks' floor."""
    (wh, ww), (sh, sw) = hw_pair(params.get("window", 8), "window"), hw_pair(params.get("stride", 4), "stride")
    return len(window_starts(spec.height, wh, sh)) * len(window_starts(spec.width, ww, sw)) + 1


@register("occlusion", backend="onnxruntime", default_batch_size=None, title="Occlusion", text=TEXT,
          signed=True, bench_params={"window": 8, "stride": 4}, reference="captum Occlusion",
          forward_passes=forward_passes)
def occlusion(
    model: "Model",
    x: np.ndarray,
    targets: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    baseline: Baseline = 0.0,
) -> Explanation:
    """Occlusion: the drop in the target score when a sliding window shows the baseline, averaged per pixel.

    window/stride: int or (height, width); None: `default_window` of the input size (8 and 4 up to 48
    pixels a side). baseline: a pixel value 0..255 (0 = black) or a name of `engine.baselines`.
    maps: signed, positive where hiding the pixel lowers the score. details: `score_drops` (N, rows,
    cols), the drop for each window position.
    """
    spec = model.spec
    size = (spec.height, spec.width)
    auto_window, auto_stride = default_window(size)
    win = hw_pair(window, "window") if window is not None else auto_window
    step = hw_pair(stride, "stride") if stride is not None else (auto_stride if window is None else
                                                                tuple(max(1, w // 2) for w in win))
    for side, w, s, d in zip(("height", "width"), win, step, size):
        if w > d:
            raise BadInputError(f"window {win} is larger than the input ({d} pixels in {side})")
        if s > w and w < d:
            raise BadInputError(f"stride {step} is larger than window {win}: some pixels would never be occluded")
    rows, cols = cover_matrix(size[0], win[0], step[0]), cover_matrix(size[1], win[1], step[1])
    n_rows, n_cols = rows.shape[0], cols.shape[0]
    base = baseline_images(spec, x, baseline, seed)

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

    params = dict(window=list(win), stride=list(step), baseline=describe(baseline), batch_size=batch_size)
    return make_explanation(model, "occlusion", x, targets, maps, params=params, scores=target_scores[:, 0],
                            details=OcclusionDetails(score_drops=drops.astype(np.float32)))
