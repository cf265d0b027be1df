"""Deletion and insertion curves (Petsiuk et al. 2018, "RISE") and their areas.

The pixels of each image are ranked by its map, highest value first (the map is taken as given:
a signed map ranks the strongest positive evidence first; take |map| before if magnitudes matter).

- deletion: starting from the image, the top-ranked pixels are replaced by the baseline, a growing
  fraction of them in `steps` equal steps; a faithful map makes the target score fall fast (low AUC);
- insertion: starting from the baseline, the top-ranked pixels of the image are revealed in the
  same order; a faithful map makes the score rise fast (high AUC).

Baselines are the named ones of `engine.baselines`, shared with the methods: "black" (pixel 0
mapped through the model's preprocessing), "blur" (Gaussian, sigma = 0.1 * max(H, W) pixels;
"blurred" is accepted as before), "mean" (the image's per-channel mean), "noise" (seeded uniform
pixel noise).

Score: the probability of the target class: the model's output when the graph ends in a softmax
(`Model.output_kind == "probabilities"`), the softmax of the output when it gives logits (so curves
of every model live on [0, 1] and can be compared). AUC: the trapezoid rule over the removed or
revealed fraction of pixels on [0, 1], so an AUC is in [0, 1] too.

Reference: the same two curves for a seeded random ranking of the pixels (image i uses
`numpy.random.default_rng([seed, i])`). A map says something about the model when it beats that:
insertion AUC above the random one and deletion AUC below it.

Every step of every curve of every image (the random reference included) is one row of a single
stream evaluated on onnxruntime in batches of `batch_size` rows (`engine.perturbation`, the loop
the forward-only methods share: batches span images, rows are built where the model runs, so on
cuda they never cross to the host).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..baselines import NAMES, baseline_images, baseline_name
from ..errors import BadInputError
from ..perturbation import arrays_for, predict_perturbed

if TYPE_CHECKING:
    from ..explanation import Explanation
    from ..model import Model

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class FaithfulnessCurves:
    """Deletion and insertion curves of N maps, `S = steps + 1` points each (fraction 0 included).

    `random_*` are the same curves for a seeded random pixel ranking (None when not asked for).
    `score` says what the curves measure: "probability" or "softmax(logits)".
    """

    method: str
    baseline: str
    fractions: np.ndarray                 # (S,) removed / revealed fraction of pixels, 0 .. 1
    deletion: np.ndarray                  # (N, S)
    insertion: np.ndarray                 # (N, S)
    score: str
    random_deletion: np.ndarray | None = None   # (N, S)
    random_insertion: np.ndarray | None = None  # (N, S)

    @property
    def deletion_auc(self) -> np.ndarray:
        return auc(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> np.ndarray:
        return auc(self.fractions, self.insertion)

    @property
    def random_deletion_auc(self) -> np.ndarray | None:
        return None if self.random_deletion is None else auc(self.fractions, self.random_deletion)

    @property
    def random_insertion_auc(self) -> np.ndarray | None:
        return None if self.random_insertion is None else auc(self.fractions, self.random_insertion)

    @property
    def beats_random(self) -> np.ndarray | None:
        """(N,) bool: insertion AUC above and deletion AUC below the random ranking's."""
        if self.random_deletion is None or self.random_insertion is None:
            return None
        return (self.insertion_auc > self.random_insertion_auc) & (self.deletion_auc < self.random_deletion_auc)

    def record(self) -> dict[str, Any]:
        """JSON-ready: per-image AUCs (and the curves, S numbers per image)."""
        out: dict[str, Any] = {
            "baseline": self.baseline, "steps": len(self.fractions) - 1, "score": self.score,
            "fractions": self.fractions.tolist(),
            "deletion_auc": self.deletion_auc.tolist(), "insertion_auc": self.insertion_auc.tolist(),
            "deletion": self.deletion.tolist(), "insertion": self.insertion.tolist(),
        }
        if self.random_deletion is not None and self.random_insertion is not None:
            out["random_deletion_auc"] = self.random_deletion_auc.tolist()  # type: ignore[union-attr]
            out["random_insertion_auc"] = self.random_insertion_auc.tolist()  # type: ignore[union-attr]
            out["beats_random"] = self.beats_random.tolist()  # type: ignore[union-attr]
        return out


def auc(fractions: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Trapezoid area under each row of `curves` (N, S) over `fractions` (S,) -> (N,) float32."""
    return np.trapezoid(np.asarray(curves, np.float64), np.asarray(fractions, np.float64), axis=-1).astype(np.float32)


def probabilities(model: "Model", outputs: np.ndarray) -> np.ndarray:
    """Model outputs (..., K) -> class probabilities: as they are, or softmax when the model gives logits."""
    from ..output_head import as_probabilities

    kind = "logit" if model.output_kind == "logits" else "probability"
    return as_probabilities(np.asarray(outputs, np.float64), kind).astype(np.float32)


def pixel_ranks(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, H*W) int: rank of each pixel when sorted by map value, highest first
    (ties keep raster order, so the ranking is deterministic)."""
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(flat.shape[1]), flat.shape), axis=1)
    return ranks


def random_ranks(n: int, pixels: int, seed: int) -> np.ndarray:
    """(n, pixels) seeded random rankings, image i from `default_rng([seed, i])`."""
    return np.stack([np.random.default_rng([seed, i]).permutation(pixels) for i in range(n)])


def perturbation_curves(
    model: "Model",
    x: np.ndarray,
    targets: np.ndarray,
    rankings: Sequence[np.ndarray],
    base: np.ndarray,
    fractions: np.ndarray,
    *,
    batch_size: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(deletion, insertion) curves, each (N, S), for every pixel ranking in `rankings` (each (N, H*W)).

    At fraction f the first round(f * H * W) ranked pixels (all channels) are replaced by `base`
    (deletion) or taken from `x` over `base` (insertion). Every row of every curve of every image is
    one perturbed input of `engine.perturbation.predict_perturbed` (batches of `batch_size` rows
    that may span images, built where the model runs).
    """
    spec = model.spec
    n, s, k = len(x), len(fractions), len(rankings)
    arrays = arrays_for(model)
    xs, bs = arrays.put(x), arrays.put(base)
    ranks = arrays.put(np.stack(rankings).reshape(k, n, spec.height, spec.width), dtype=np.int64)
    counts = np.rint(np.asarray(fractions) * spec.height * spec.width).astype(np.int64)

    def build(i: int, a: int, b: int) -> Any:
        rows = np.arange(a, b)
        curve, step = rows // s, rows % s               # curve 2j: deletion of ranking j, 2j+1: insertion
        inside = ranks[arrays.put(curve // 2), i] < arrays.put(counts[step].reshape(-1, 1, 1))
        from_base = inside != arrays.put((curve % 2 == 1).reshape(-1, 1, 1))
        return arrays.where(arrays.channel_mask(from_base), bs[i], xs[i])

    out = predict_perturbed(arrays, n, 2 * k * s, build, batch_size)          # (N, 2KS, classes)
    probs = probabilities(model, out)[np.arange(n), :, targets].reshape(n, k, 2, s)
    return [(probs[:, j, 0], probs[:, j, 1]) for j in range(k)]


def deletion_insertion(
    model: "Model",
    explanation: "Explanation",
    *,
    steps: int = 32,
    baseline: str = "black",
    batch_size: int = 256,
    random_reference: bool = True,
    seed: int = 0,
    reference: FaithfulnessCurves | None = None,
) -> FaithfulnessCurves:
    """Deletion and insertion curves of `explanation`'s maps on `model` (see the module docstring).

    `reference`: curves of another explanation of the same images and targets (with the same steps,
    baseline and seed) whose random-order curves are taken instead of being computed again: they do not
    depend on the maps, so a report computes them once for all its methods."""
    steps = int(steps)
    if steps < 1:
        raise BadInputError(f"deletion/insertion needs steps >= 1, got {steps}")
    if not isinstance(baseline, str):
        raise BadInputError(f"deletion/insertion takes a named baseline ({', '.join(NAMES)}), got {baseline!r}")
    kind = baseline_name(baseline)
    x = model.spec.check_model_input(explanation.inputs)
    maps = np.asarray(explanation.maps)
    if maps.shape != (len(x), model.spec.height, model.spec.width):
        raise BadInputError(
            f"maps have shape {maps.shape}; the model's input needs ({len(x)}, {model.spec.height}, {model.spec.width})"
        )
    targets = np.asarray(explanation.targets, np.int64)
    base = baseline_images(model.spec, x, kind, seed)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    rankings = [pixel_ranks(maps)]
    shared = None
    if reference is not None and random_reference:
        if (reference.baseline, len(reference.fractions), reference.random_deletion is None) != (kind, steps + 1, False) \
                or reference.deletion.shape[0] != len(x):
            raise BadInputError(f"the reference curves ({reference.baseline}, {len(reference.fractions) - 1} steps, "
                                f"{reference.deletion.shape[0]} images) do not match these ({kind}, {steps} steps, "
                                f"{len(x)} images)")
        shared = (reference.random_deletion, reference.random_insertion)
    elif random_reference:
        rankings.append(random_ranks(len(x), model.spec.height * model.spec.width, seed))
    curves = perturbation_curves(model, x, targets, rankings, base, fractions, batch_size=batch_size)
    deletion, insertion = curves[0]
    rnd_del, rnd_ins = shared or (curves[1] if random_reference else (None, None))
    score = "probability" if model.output_kind == "probabilities" else "softmax(logits)"
    return FaithfulnessCurves(method=explanation.method, baseline=kind, fractions=fractions.astype(np.float32),
                              deletion=deletion, insertion=insertion, score=score,
                              random_deletion=rnd_del, random_insertion=rnd_ins)
