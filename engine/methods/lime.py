"""LIME for images (Ribeiro et al., 2016), vectorised, with the lime package as the reference.

For each image: superpixels (`engine.segmentation`), a binary matrix of `samples` random
on/off patterns over them (row 0 all on, as lime does), each pattern rendered as an image whose
"off" superpixels show `hide_color` (None: each superpixel's mean colour, lime's default), the
model's outputs on all of them, lime's kernel on the cosine distance to the all-on row, and
lime's weighted ridge (see `engine.lime_fit`) solved in closed form for every class at once.

Differences from the lime package's loop, none of which changes the fitted model:
- the patterns come from `np.random.default_rng(seed)` once per image (`sample_masks`), so an
  image gets the same patterns whether it is explained alone or among others;
- the patterned images are built in batches on the Model's device and evaluated through
  onnxruntime IO binding; one batch spans images x patterns;
- the fit is `weighted_ridge`, equal to lime's `LimeBase.explain_instance_with_data` within
  floating-point error (tested against it).

The local model regresses the model's own outputs: probabilities when the graph ends in a
softmax (what lime users pass as `classifier_fn`), logits otherwise (as Captum would).
`impl="lime"` runs the lime package's `LimeImageExplainer` itself on the same superpixels,
batched through `Model.predict`, and returns the same fields.

Defaults: SLIC with `n_segments=50` (about 40-45 superpixels on a 48x48 face, 1-2 ms); lime's own
default, quickshift, gives 1-5 superpixels at that size (`segments="quickshift"` keeps it).
"""
from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..batching import batch_slices
from ..errors import BadInputError
from ..explanation import Explanation, make_explanation
from ..lime_fit import cosine_distance_to_ones, lime_kernel, weighted_ridge
from ..perturbation import DEFAULT_BATCH_SIZE, arrays_for, per_channel_constant, predict_perturbed
from ..registry import register
from ..segmentation import DEFAULT_N_SEGMENTS, SEGMENTERS, segment_batch

if TYPE_CHECKING:
    from ..model import Model

log = logging.getLogger(__name__)

IMPLS = ("ours", "lime")
RIDGE_ALPHA = 1.0  # lime's Ridge(alpha=1)
_FIT_ELEMENTS = 1 << 22  # float64 elements of one ridge sub-batch (images x samples x superpixels)


@dataclass(frozen=True)
class LimeResult:
    """Per image, for its target class: `weights` (N, S_max) NaN-padded, `intercept`, `r2`,
    `local_pred` (N,), and `outputs` (N, samples, classes), the model's outputs on the patterns."""

    weights: np.ndarray
    intercept: np.ndarray
    r2: np.ndarray
    local_pred: np.ndarray
    outputs: np.ndarray | None = None


def sample_masks(samples: int, n_features: int, seed: int) -> np.ndarray:
    """The (samples, n_features) uint8 on/off patterns our LIME uses for one image; row 0 is all ones."""
    masks = np.random.default_rng(seed).integers(0, 2, size=(samples, n_features), dtype=np.uint8)
    masks[0] = 1
    return masks


def hidden_images(model: "Model", x: np.ndarray, segments: np.ndarray,
                  hide_color: float | Sequence[float] | None) -> np.ndarray:
    """What an "off" superpixel shows, as model input (N, *spec.shape): each superpixel's mean
    (hide_color None, lime's default) or one pixel value 0..255 (a number, or one per channel)."""
    if hide_color is not None:
        const = per_channel_constant(model, hide_color, "hide_color")
        return np.ascontiguousarray(np.broadcast_to(const, x.shape))
    nhwc = x if model.spec.layout == "NHWC" else x.transpose(0, 2, 3, 1)
    out = np.empty(nhwc.shape, dtype=np.float32)
    for i, seg in enumerate(segments):
        flat = seg.ravel()
        counts = np.bincount(flat)
        for c in range(nhwc.shape[-1]):
            means = np.bincount(flat, weights=nhwc[i, ..., c].ravel().astype(np.float64)) / counts
            out[i, ..., c] = means[seg]
    return out if model.spec.layout == "NHWC" else np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def fit_lime(model: "Model", x: np.ndarray, targets: np.ndarray, segments: np.ndarray,
             masks: Sequence[np.ndarray], hidden: np.ndarray, *, kernel_width: float, batch_size: int) -> LimeResult:
    """Our LIME given its inputs: segments (N, H, W), one (samples, S_i) pattern matrix per image
    (row 0 all ones), the hidden images; evaluates every pattern and fits the local models."""
    n_img = x.shape[0]
    n_feat = np.array([m.shape[1] for m in masks], dtype=np.int64)
    samples = masks[0].shape[0]
    if any(m.shape[0] != samples for m in masks):
        raise ValueError("every image needs the same number of samples")
    s_max = int(n_feat.max())
    data = np.zeros((n_img, samples, s_max), dtype=bool)
    for i, m in enumerate(masks):
        data[i, :, : m.shape[1]] = m

    arrays = arrays_for(model)
    h, w = segments.shape[1:]
    data_d = arrays.put(data)
    seg_d = [arrays.put(seg.ravel(), np.int64) for seg in segments]
    x_d, hid_d = arrays.put(x, np.float32), arrays.put(hidden, np.float32)

    def build(i: int, a: int, b: int) -> Any:
        keep = arrays.take_columns(data_d[i, a:b], seg_d[i]).reshape(b - a, h, w)
        return arrays.where(arrays.channel_mask(keep), x_d[i], hid_d[i])

    outputs = predict_perturbed(arrays, n_img, samples, build, batch_size)

    kernel = lime_kernel(cosine_distance_to_ones(data, n_feat), kernel_width)
    weights = np.full((n_img, s_max), np.nan)
    intercept, r2, local_pred = np.empty(n_img), np.empty(n_img), np.empty(n_img)
    per_fit = max(1, _FIT_ELEMENTS // (samples * s_max))
    for s in batch_slices(n_img, per_fit):
        fit = weighted_ridge(data[s], outputs[s], kernel[s], alpha=RIDGE_ALPHA)
        rows = np.arange(s.stop - s.start)
        t = targets[s]
        weights[s] = fit.coef[rows, t]
        intercept[s], r2[s], local_pred[s] = fit.intercept[rows, t], fit.score[rows, t], fit.local_pred[rows, t]
    for i, k in enumerate(n_feat):
        weights[i, k:] = np.nan
    return LimeResult(weights, intercept, r2, local_pred, outputs)


def top_masks(segments: np.ndarray, weights: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) bool masks (N, H, W): the `top_k` superpixels of largest |weight| among
    the positive (negative) ones, what lime's `get_image_and_mask(positive_only / negative_only,
    num_features=top_k)` marks."""
    pos = np.zeros(segments.shape, dtype=bool)
    neg = np.zeros(segments.shape, dtype=bool)
    for i, (seg, w) in enumerate(zip(segments, weights)):
        w = w[~np.isnan(w)]
        order = np.argsort(-np.abs(w), kind="stable")
        pos[i] = np.isin(seg, order[w[order] > 0][:top_k])
        neg[i] = np.isin(seg, order[w[order] < 0][:top_k])
    return pos, neg


@contextlib.contextmanager
def quiet_lime_progress(lime_image: Any) -> Iterator[None]:
    """lime_image draws a tqdm bar on stderr for every image; the engine never prints (also used by the
    benchmark harness when it times the lime package itself)."""
    original = lime_image.tqdm
    lime_image.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        lime_image.tqdm = original


def run_lime_package(model: "Model", x: np.ndarray, targets: np.ndarray, segments: np.ndarray, *, samples: int,
                     kernel_width: float, hide_color: float | Sequence[float] | None, top_k: int, batch_size: int,
                     seed: int) -> tuple[LimeResult, np.ndarray, np.ndarray]:
    """The lime package's `LimeImageExplainer` on our superpixels, its images evaluated by `Model.predict`
    in its own batches of `batch_size`. Images go to lime as pixels 0..255 (gray as HxW, which lime turns
    to RGB), so `hide_color` means the same as ours. Returns the result and lime's own top-k masks."""
    from lime import lime_image

    spec = model.spec
    pixels = spec.model_to_pixels(x).astype(np.float64)
    n_img = x.shape[0]
    s_max = int(segments.reshape(n_img, -1).max(axis=1).max()) + 1
    weights = np.full((n_img, s_max), np.nan)
    intercept, r2, local_pred = np.empty(n_img), np.empty(n_img), np.empty(n_img)
    pos = np.zeros(segments.shape, dtype=bool)
    neg = np.zeros(segments.shape, dtype=bool)

    def classifier_fn(images: np.ndarray) -> np.ndarray:
        batch = images[..., :1] if spec.channels == 1 else images
        return model.predict(spec.pixels_to_model(batch), batch_size)

    for i in range(n_img):
        label = int(targets[i])
        explainer = lime_image.LimeImageExplainer(kernel_width=kernel_width, random_state=seed)
        image = pixels[i, ..., 0] if spec.channels == 1 else pixels[i]
        with quiet_lime_progress(lime_image):
            exp = explainer.explain_instance(
                image, classifier_fn, labels=(label,), hide_color=hide_color, top_labels=None,
                num_features=100000, num_samples=samples, batch_size=batch_size,
                segmentation_fn=lambda _image, seg=segments[i]: seg, random_seed=seed,
            )
        for feature, weight in exp.local_exp[label]:
            weights[i, feature] = weight
        intercept[i], r2[i], local_pred[i] = exp.intercept[label], exp.score, np.ravel(exp.local_pred)[0]
        pos[i] = exp.get_image_and_mask(label, positive_only=True, num_features=top_k, hide_rest=False)[1] > 0
        neg[i] = exp.get_image_and_mask(label, positive_only=False, negative_only=True, num_features=top_k,
                                        hide_rest=False)[1] > 0
    return LimeResult(weights, intercept, r2, local_pred), pos, neg


@register("lime", backend="onnxruntime", default_batch_size=DEFAULT_BATCH_SIZE)
def lime(
    model: "Model",
    x: np.ndarray,
    targets: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    samples: int = 1000,
    segments: str = "slic",
    n_segments: int = DEFAULT_N_SEGMENTS,
    kernel_width: float = 0.25,
    hide_color: float | Sequence[float] | None = None,
    top_k: int = 5,
    impl: str = "ours",
) -> Explanation:
    """LIME: signed superpixel weights of a local weighted ridge model fitted on random perturbations.

    maps: each pixel holds its superpixel's weight for the target class. extras: `segments` (N, H, W)
    int32, `weights` (N, S_max) NaN-padded, `n_segments` (N,), `r2`, `intercept`, `local_pred` (N,),
    `positive_mask` / `negative_mask` (N, H, W) bool (the top_k superpixels either way, as lime's
    get_image_and_mask). hide_color: None (superpixel mean) or a pixel value 0..255.
    """
    if impl not in IMPLS:
        raise BadInputError(f"unknown LIME impl {impl!r}; choose one of: {', '.join(IMPLS)}")
    if segments not in SEGMENTERS:
        raise BadInputError(f"unknown segmentation {segments!r}; choose one of: {', '.join(SEGMENTERS)}")
    if int(samples) < 2:
        raise BadInputError(f"samples must be at least 2 (the image itself and one perturbation), got {samples}")
    if not float(kernel_width) > 0:
        raise BadInputError(f"kernel_width must be positive, got {kernel_width}")
    if int(top_k) < 0:
        raise BadInputError(f"top_k must be 0 or more, got {top_k}")
    samples, top_k = int(samples), int(top_k)

    segs = segment_batch(model.spec.to_display(x), segments, n_segments, seed=seed)
    n_feat = segs.reshape(len(segs), -1).max(axis=1).astype(np.int64) + 1
    log.debug("lime: %s gave %s superpixels", segments, n_feat.tolist())
    scores = None
    if impl == "ours":
        hidden = hidden_images(model, x, segs, hide_color)
        masks = [sample_masks(samples, int(k), seed) for k in n_feat]
        result = fit_lime(model, x, targets, segs, masks, hidden, kernel_width=kernel_width, batch_size=batch_size)
        pos, neg = top_masks(segs, result.weights, top_k)
        assert result.outputs is not None
        scores = result.outputs[np.arange(len(targets)), 0, targets]  # row 0: the unperturbed image
    else:
        if hide_color is not None:
            per_channel_constant(model, hide_color, "hide_color")  # same validation as ours
        result, pos, neg = run_lime_package(model, x, targets, segs, samples=samples, kernel_width=kernel_width,
                                            hide_color=hide_color, top_k=top_k, batch_size=batch_size, seed=seed)

    weights = result.weights
    maps = np.stack([np.nan_to_num(w)[seg] for w, seg in zip(weights, segs)]).astype(np.float32)
    params = dict(samples=samples, segments=segments, n_segments=int(n_segments), kernel_width=float(kernel_width),
                  hide_color=hide_color, top_k=top_k, impl=impl, batch_size=batch_size, seed=seed)
    extras = dict(
        segments=segs, weights=weights, n_segments=n_feat, r2=result.r2, intercept=result.intercept,
        local_pred=result.local_pred, positive_mask=pos, negative_mask=neg,
    )
    return make_explanation(model, "lime", x, targets, maps, params=params, scores=scores, extras=extras)
