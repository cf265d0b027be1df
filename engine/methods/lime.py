"""LIME for images (Ribeiro et al., 2016), vectorised, with the lime package as the reference.

For each image: superpixels (`engine.segmentation`), a binary matrix of `samples` random
on/off patterns over them (row 0 all on, as lime does), each pattern rendered as an image whose
"off" superpixels show `baseline` ("mean": each superpixel's mean colour, lime's default hide_color=None;
or any other baseline of `engine.baselines`; `hide_color`, lime's name, still works), the
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

Every explanation records how likely its top-k superpixels and their signs are to hold on another draw
of the perturbations (`engine.lime_stability`); `samples="auto"` draws in rounds until that is likely
enough (`fit_lime_auto`). A fixed sample count runs exactly as before: the stability is computed after
the fit from the same samples and changes nothing else.

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
from ..baselines import Baseline, baseline_images, baseline_name, describe, pixel_constant
from ..errors import BadInputError
from ..details import LimeDetails
from ..explanation import Explanation, make_explanation
from ..lime_fit import cosine_distance_to_ones, lime_kernel, weighted_ridge
from ..lime_stability import image_stability, paired_stability
from ..perturbation import arrays_for, predict_perturbed
from ..registry import register
from ..segmentation import DEFAULT_N_SEGMENTS, SEGMENTERS, segment_batch

if TYPE_CHECKING:
    from ..model import Model

log = logging.getLogger(__name__)

IMPLS = ("ours", "lime")
RIDGE_ALPHA = 1.0  # lime's Ridge(alpha=1)
_FIT_ELEMENTS = 1 << 22  # float64 elements of one ridge sub-batch (images x samples x superpixels)
AUTO = "auto"
AUTO_FIRST = 50  # samples="auto": the first round's perturbations, and the least any later round adds
AUTO_JACCARD = 0.87  # samples="auto" stops at this expected Jaccard of the top-k set (lime's level at 1,000 samples)


@dataclass(frozen=True)
class LimeResult:
    """Per image, for its target class: `weights` (N, S_max) NaN-padded, `intercept`, `r2`,
    `local_pred` (N,), `outputs` (N, samples, classes), the model's outputs on the patterns (NaN past an
    image's `samples`), `stability` (N,) the probability that the top-k signed set holds
    (`engine.lime_stability`), `samples` (N,) the perturbations each image used and, for samples="auto",
    `expected_jaccard` (N,) the expected Jaccard index of that set with a redraw's."""

    weights: np.ndarray
    intercept: np.ndarray
    r2: np.ndarray
    local_pred: np.ndarray
    outputs: np.ndarray | None = None
    stability: np.ndarray | None = None
    samples: np.ndarray | None = None
    expected_jaccard: np.ndarray | None = None


def sample_masks(samples: int, n_features: int, seed: int) -> np.ndarray:
    """The (samples, n_features) uint8 on/off patterns our LIME uses for one image; row 0 is all ones."""
    masks = np.random.default_rng(seed).integers(0, 2, size=(samples, n_features), dtype=np.uint8)
    masks[0] = 1
    return masks


def paired_masks(samples: int, n_features: int, seed: int) -> np.ndarray:
    """samples="auto"'s (samples, n_features) uint8 patterns: complementary pairs (rows 2j and 2j+1 add up to
    all ones), row 0 all ones (so row 1 all off, a pattern lime's kernel weighs at exp(-8)). Each row on its own
    is as uniform as `sample_masks`' rows, so the local model they estimate is LIME's; a pair's two halves
    cancel the interactions of even order that make most of an unpaired fit's seed-to-seed variance (the
    paired sampling of KernelSHAP, Covert and Lee 2021), and every superpixel is on in exactly half of
    each pair. An odd `samples` ends on half a pair."""
    half = np.random.default_rng(seed).integers(0, 2, size=((samples + 1) // 2, n_features), dtype=np.uint8)
    half[0] = 1
    masks = np.empty((2 * len(half), n_features), dtype=np.uint8)
    masks[0::2], masks[1::2] = half, 1 - half
    return masks[:samples]


def hidden_images(model: "Model", x: np.ndarray, segments: np.ndarray, baseline: Baseline | None,
                  seed: int = 0) -> np.ndarray:
    """What an "off" superpixel shows, as model input (N, *spec.shape): each superpixel's mean ("mean" or
    None, lime's default) or any other baseline of `engine.baselines` (a pixel value 0..255, "black", ...)."""
    if baseline is not None and baseline_name(baseline) != "mean":
        return baseline_images(model.spec, x, baseline, seed)
    nhwc = model.spec.to_nhwc(x)
    out = np.empty(nhwc.shape, dtype=np.float32)
    for i, seg in enumerate(segments):
        flat = seg.ravel()
        counts = np.bincount(flat)
        for c in range(nhwc.shape[-1]):
            means = np.bincount(flat, weights=nhwc[i, ..., c].ravel().astype(np.float64)) / counts
            out[i, ..., c] = means[seg]
    return model.spec.from_nhwc(out)


def lime_hide_color(model: "Model", baseline: Baseline | None) -> float | Sequence[float] | None:
    """The lime package's `hide_color` for `baseline`: None for "mean", 0 for "black", a pixel value as is;
    the package has no other baselines."""
    name = baseline_name(baseline) if baseline is not None else "mean"
    if name is None and np.ndim(baseline) <= 1:
        pixel_constant(model.spec, baseline, "baseline")  # validated as ours validates it
        return baseline  # type: ignore[return-value]
    if name in ("mean", "black"):
        return None if name == "mean" else 0
    raise BadInputError(f"impl='lime' (the lime package) takes baseline 'mean', 'black' or a pixel value, "
                        f"not {describe(baseline)!r}")


class _Perturbed:
    """The patterned images of a set of images, on the model's device: `outputs(rows, images)` evaluates
    pattern rows a..b of the given images (one batch may span images) and returns (images, b - a, classes)."""

    def __init__(self, model: "Model", x: np.ndarray, segments: np.ndarray, data: np.ndarray, hidden: np.ndarray,
                 batch_size: int) -> None:
        self.arrays = arrays_for(model)
        self.batch_size = batch_size
        self.shape = segments.shape[1:]
        self.data_d = self.arrays.put(data)
        self.seg_d = [self.arrays.put(seg.ravel(), np.int64) for seg in segments]
        self.x_d, self.hid_d = self.arrays.put(x, np.float32), self.arrays.put(hidden, np.float32)

    def _build(self, i: int, a: int, b: int) -> Any:
        keep = self.arrays.take_columns(self.data_d[i, a:b], self.seg_d[i]).reshape(b - a, *self.shape)
        return self.arrays.where(self.arrays.channel_mask(keep), self.x_d[i], self.hid_d[i])

    def outputs(self, rows: slice, images: np.ndarray) -> np.ndarray:
        a, b = rows.start, rows.stop
        return predict_perturbed(self.arrays, len(images), b - a,
                                 lambda j, lo, hi: self._build(int(images[j]), a + lo, a + hi), self.batch_size)


def _padded(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One (N, samples, S_max) bool array of the images' patterns, zero-padded, and each image's S."""
    n_feat = np.array([m.shape[1] for m in masks], dtype=np.int64)
    samples = masks[0].shape[0]
    if any(m.shape[0] != samples for m in masks):
        raise ValueError("every image needs the same number of samples")
    data = np.zeros((len(masks), samples, int(n_feat.max())), dtype=bool)
    for i, m in enumerate(masks):
        data[i, :, : m.shape[1]] = m
    return data, n_feat


def _fit_rows(data: np.ndarray, outputs: np.ndarray, kernel: np.ndarray, targets: np.ndarray, n_feat: np.ndarray, *,
              top_k: int, seed: int, paired: bool = False) -> tuple[np.ndarray, ...]:
    """The ridge fits of these images on all their rows: (weights NaN-padded, intercept, r2, local_pred, stability,
    expected Jaccard); with `paired` rows (`paired_masks`) the last two come from `paired_stability`, else the
    Jaccard is NaN."""
    n_img, samples, s_max = data.shape
    weights = np.full((n_img, s_max), np.nan)
    intercept, r2, local_pred, stable = (np.empty(n_img) for _ in range(4))
    jac = np.full(n_img, np.nan)
    per_fit = max(1, _FIT_ELEMENTS // (samples * s_max))
    for s in batch_slices(n_img, per_fit):
        fit = weighted_ridge(data[s], outputs[s], kernel[s], alpha=RIDGE_ALPHA)
        rows = np.arange(s.stop - s.start)
        t = targets[s]
        weights[s] = fit.coef[rows, t]
        intercept[s], r2[s], local_pred[s] = fit.intercept[rows, t], fit.score[rows, t], fit.local_pred[rows, t]
    for i, k in enumerate(n_feat):
        weights[i, k:] = np.nan
        args = (data[i, :, :k], outputs[i, :, targets[i]], kernel[i], weights[i, :k], intercept[i])
        if paired:
            jac[i], stable[i] = paired_stability(*args, alpha=RIDGE_ALPHA, k=top_k, seed=seed)
        else:
            stable[i] = image_stability(*args, alpha=RIDGE_ALPHA, k=top_k, seed=seed)
    return weights, intercept, r2, local_pred, stable, jac


def fit_lime(model: "Model", x: np.ndarray, targets: np.ndarray, segments: np.ndarray,
             masks: Sequence[np.ndarray], hidden: np.ndarray, *, kernel_width: float, batch_size: int,
             top_k: int = 5, seed: int = 0) -> LimeResult:
    """Our LIME given its inputs: segments (N, H, W), one (samples, S_i) pattern matrix per image
    (row 0 all ones), the hidden images; evaluates every pattern and fits the local models.
    `top_k` and `seed` serve only the stability estimate."""
    data, n_feat = _padded(masks)
    n_img, samples, _ = data.shape
    outputs = _Perturbed(model, x, segments, data, hidden, batch_size).outputs(slice(0, samples), np.arange(n_img))
    kernel = lime_kernel(cosine_distance_to_ones(data, n_feat), kernel_width)
    fitted = _fit_rows(data, outputs, kernel, targets, n_feat, top_k=top_k, seed=seed)
    return LimeResult(*fitted[:4], outputs=outputs, stability=fitted[4], samples=np.full(n_img, samples))


def fit_lime_auto(model: "Model", x: np.ndarray, targets: np.ndarray, segments: np.ndarray,
                  masks: Sequence[np.ndarray], hidden: np.ndarray, *, kernel_width: float, batch_size: int,
                  top_k: int, seed: int, threshold: float) -> LimeResult:
    """`fit_lime` in rounds over the rows of `masks` (`paired_masks`, each up to the cap): AUTO_FIRST rows, then a
    quarter more each round (at least AUTO_FIRST), whole pairs, refitting after each; an image stops once the
    expected Jaccard of its top-k set with a redraw's reaches `threshold` (or the rows run out). With its first n
    rows an image gets the weights `fit_lime` gives on those n rows."""
    data, n_feat = _padded(masks)
    n_img, cap, s_max = data.shape
    if cap % 2:
        raise ValueError(f"samples='auto' draws whole pairs of patterns, got {cap} rows")
    perturbed = _Perturbed(model, x, segments, data, hidden, batch_size)
    kernel = lime_kernel(cosine_distance_to_ones(data, n_feat), kernel_width)
    outputs = np.full((n_img, cap, model.n_classes), np.nan, dtype=np.float32)  # rows an image never used stay NaN
    weights = np.full((n_img, s_max), np.nan)
    intercept, r2, local_pred, stable, jac = (np.empty(n_img) for _ in range(5))
    used = np.zeros(n_img, dtype=np.int64)
    active, done = np.arange(n_img), 0
    while active.size:
        n = min(cap, max(AUTO_FIRST, done + max(AUTO_FIRST, done // 4)))
        n += n % 2  # whole pairs (cap is even)
        outputs[active, done:n] = perturbed.outputs(slice(done, n), active)
        fitted = _fit_rows(data[active, :n], outputs[active, :n], kernel[active, :n], targets[active], n_feat[active],
                           top_k=top_k, seed=seed, paired=True)
        for dest, value in zip((weights, intercept, r2, local_pred, stable, jac), fitted):
            dest[active] = value
        used[active], done = n, n
        log.debug("lime auto: %d rows, expected Jaccard %s", n, np.round(fitted[5], 3).tolist())
        active = active[(fitted[5] < threshold) & (n < cap)]
    return LimeResult(weights, intercept, r2, local_pred, outputs=outputs, stability=stable, samples=used,
                      expected_jaccard=jac)


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
    to RGB), so `hide_color` means the same as ours. Returns the result and lime's own top-k masks.
    The stability comes from lime's own samples: its patterns are RandomState(seed)'s (as lime draws them)
    and its outputs those `classifier_fn` returned."""
    from lime import lime_image

    spec = model.spec
    pixels = spec.model_to_pixels(x).astype(np.float64)
    n_img = x.shape[0]
    s_max = int(segments.reshape(n_img, -1).max(axis=1).max()) + 1
    weights = np.full((n_img, s_max), np.nan)
    intercept, r2, local_pred, stable = (np.empty(n_img) for _ in range(4))
    pos = np.zeros(segments.shape, dtype=bool)
    neg = np.zeros(segments.shape, dtype=bool)
    seen: list[np.ndarray] = []

    def classifier_fn(images: np.ndarray) -> np.ndarray:
        batch = images[..., :1] if spec.channels == 1 else images
        seen.append(model.predict(spec.pixels_to_model(batch), batch_size))
        return seen[-1]

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
        n_feat = int(segments[i].max()) + 1
        data = np.random.RandomState(seed).randint(0, 2, samples * n_feat).reshape((samples, n_feat))
        data[0] = 1
        kernel = lime_kernel(cosine_distance_to_ones(data, n_feat), kernel_width)
        outputs = np.concatenate(seen)
        seen.clear()
        stable[i] = image_stability(data, outputs[:, label], kernel, weights[i, :n_feat], intercept[i],
                                    alpha=RIDGE_ALPHA, k=top_k, seed=seed)
    result = LimeResult(weights, intercept, r2, local_pred, stability=stable, samples=np.full(n_img, samples))
    return result, pos, neg


def _sample_count(samples: Any) -> int:
    """A fixed sample count from an int or its text; anything else is a one-line error."""
    try:
        if isinstance(samples, bool) or float(samples) != int(samples):
            raise ValueError
        return int(samples)
    except (TypeError, ValueError):
        raise BadInputError(f"samples must be a whole number (at least 2) or {AUTO!r}, got {samples!r}") from None


TEXT = ("LIME splits each image into superpixels, hides random subsets of them, and fits a weighted linear model to "
        "the network's outputs. Red superpixels push the predicted class up, blue ones push it down, in the map, the "
        "overlay and the last column (which marks the top ones). \"Top-k stable at\" is the probability that the k "
        "superpixels of largest weight, with their signs, come out the same on another draw of the perturbations. "
        "Reports draw them in rounds (samples=auto) until another draw's top set is expected to overlap this one's by "
        "87% (Jaccard), as much as the lime package's 1,000 samples give, at most 5,000 samples. The table relates "
        "each class to the confusion matrix: how often the model gets the class right (recall) and what it mistakes "
        "it for.")


def forward_passes(params: dict[str, Any], spec: Any) -> int:
    """One forward pass per sample (the first is the image itself): the benchmarks' floor."""
    return int(params.get("samples", 1000))


# Report and grade: LIME in rounds until its top-5 is as stable as the lime package's at 1,000 samples,
# with 20-44% fewer forwards (benchmarks/results/lime_stability.md).
@register("lime", backend="onnxruntime", default_batch_size=None, title="LIME", text=TEXT,
          signed=True, report_params={"samples": AUTO}, bench_params={"samples": 1000},
          reference="lime LimeImageExplainer", forward_passes=forward_passes,
          aliases={"hide_color": "baseline"})
def lime(
    model: "Model",
    x: np.ndarray,
    targets: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    samples: int | str = 1000,
    segments: str = "slic",
    n_segments: int = DEFAULT_N_SEGMENTS,
    kernel_width: float = 0.25,
    baseline: Baseline | None = "mean",
    top_k: int = 5,
    impl: str = "ours",
    max_samples: int = 5000,
    stability: float = AUTO_JACCARD,
) -> Explanation:
    """LIME: signed superpixel weights of a local weighted ridge model fitted on random perturbations.

    maps: each pixel holds its superpixel's weight for the target class. details (`LimeDetails`): `segments` (N, H, W)
    int32, `weights` (N, S_max) NaN-padded, `n_segments` (N,), `r2`, `intercept`, `local_pred` (N,),
    `positive_mask` / `negative_mask` (N, H, W) bool (the top_k superpixels either way, as lime's
    get_image_and_mask), `stability` (N,) the probability that those top_k superpixels and their signs
    hold on other perturbations (`engine.lime_stability`), `samples_used` (N,). baseline: "mean"
    (each superpixel's mean, lime's hide_color=None; None means the same), or a baseline of `engine.baselines`.

    samples="auto": complementary pairs of perturbations (`paired_masks`) in rounds until the expected
    Jaccard index of the signed top_k set with another draw's reaches `stability` (recorded as the detail
    `expected_jaccard`), at most `max_samples` (rounded down to whole pairs) of them (`fit_lime_auto`);
    a number: exactly that many, as the lime package draws.
    """
    if impl not in IMPLS:
        raise BadInputError(f"unknown LIME impl {impl!r}; choose one of: {', '.join(IMPLS)}")
    if segments not in SEGMENTERS:
        raise BadInputError(f"unknown segmentation {segments!r}; choose one of: {', '.join(SEGMENTERS)}")
    auto = samples == AUTO
    count = int(max_samples) if auto else _sample_count(samples)
    if count < 2:
        what = "max_samples" if auto else "samples"
        raise BadInputError(f"{what} must be at least 2 (the image itself and one perturbation), got {count}")
    if auto and impl != "ours":
        raise BadInputError("samples='auto' needs impl='ours' (the lime package draws a fixed number of samples)")
    if not 0 < float(stability) < 1:
        raise BadInputError(f"stability must be a probability between 0 and 1 (exclusive), got {stability}")
    if not float(kernel_width) > 0:
        raise BadInputError(f"kernel_width must be positive, got {kernel_width}")
    if int(top_k) < 0:
        raise BadInputError(f"top_k must be 0 or more, got {top_k}")
    top_k = int(top_k)

    segs = segment_batch(model.spec.to_display(x), segments, n_segments, seed=seed)
    n_feat = segs.reshape(len(segs), -1).max(axis=1).astype(np.int64) + 1
    log.debug("lime: %s gave %s superpixels", segments, n_feat.tolist())
    scores = None
    if impl == "ours":
        hidden = hidden_images(model, x, segs, baseline, seed)
        if auto:
            count -= count % 2
            masks = [paired_masks(count, int(k), seed) for k in n_feat]
            result = fit_lime_auto(model, x, targets, segs, masks, hidden, kernel_width=kernel_width,
                                   batch_size=batch_size, top_k=top_k, seed=seed, threshold=float(stability))
        else:
            masks = [sample_masks(count, int(k), seed) for k in n_feat]
            result = fit_lime(model, x, targets, segs, masks, hidden, kernel_width=kernel_width, batch_size=batch_size,
                              top_k=top_k, seed=seed)
        pos, neg = top_masks(segs, result.weights, top_k)
        assert result.outputs is not None
        scores = result.outputs[np.arange(len(targets)), 0, targets]  # row 0: the unperturbed image
    else:
        result, pos, neg = run_lime_package(model, x, targets, segs, samples=count, kernel_width=kernel_width,
                                            hide_color=lime_hide_color(model, baseline), top_k=top_k,
                                            batch_size=batch_size, seed=seed)

    weights = result.weights
    maps = np.stack([np.nan_to_num(w)[seg] for w, seg in zip(weights, segs)]).astype(np.float32)
    params = dict(samples=AUTO if auto else count, segments=segments, n_segments=int(n_segments),
                  kernel_width=float(kernel_width), baseline=describe(baseline if baseline is not None else "mean"),
                  top_k=top_k, impl=impl,
                  batch_size=batch_size, seed=seed)
    if auto:
        params.update(max_samples=count, stability=float(stability))
    details = LimeDetails(
        segments=segs, weights=weights, n_segments=n_feat, r2=result.r2, intercept=result.intercept,
        local_pred=result.local_pred, positive_mask=pos, negative_mask=neg, stability=result.stability,
        samples_used=result.samples, expected_jaccard=result.expected_jaccard,
    )
    return make_explanation(model, "lime", x, targets, maps, params=params, scores=scores, details=details)
