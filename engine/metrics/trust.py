"""`trust_metrics`: everything "Can these maps be trusted?" shows for one Explanation.

- deletion / insertion curves and AUCs against a random ranking (`faithfulness`);
- the integrated-gradients completeness error per image, when the method recorded one;
- the cascading model-parameter randomisation check (`randomisation`), re-running the method with
  the Explanation's own parameters and targets on at most `randomisation_images` images (it runs the
  method once per randomised layer, the costly part).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..details import IGDetails
from ..registry import get_method
from .faithfulness import FaithfulnessCurves, deletion_insertion
from .randomisation import FLAG_THRESHOLD, RandomisationResult, randomisation_check

if TYPE_CHECKING:
    from ..explanation import Explanation
    from ..model import Model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrustMetrics:
    method: str
    curves: FaithfulnessCurves
    completeness_error: np.ndarray | None = None      # (N,), integrated gradients only
    randomisation: RandomisationResult | None = None
    randomisation_images: int = 0                      # how many of the N images the check used
    seconds: float = 0.0
    curve_seconds: float = 0.0                         # of `seconds`, the deletion/insertion curves

    def record(self) -> dict[str, Any]:
        """JSON-ready summary (what `explain --metrics` adds)."""
        out: dict[str, Any] = {"method": self.method, "deletion_insertion": self.curves.record(),
                               "seconds": self.seconds, "curve_seconds": self.curve_seconds}
        if self.completeness_error is not None:
            out["completeness_error"] = self.completeness_error.tolist()
        if self.randomisation is not None:
            out["randomisation"] = {**self.randomisation.record(), "images": self.randomisation_images}
        return out


def trust_metrics(
    model: "Model",
    explanation: "Explanation",
    *,
    steps: int = 32,
    baseline: str = "black",
    batch_size: int = 256,
    randomise: bool = True,
    randomisation_images: int | None = 4,
    layers: list[str] | None = None,
    seed: int = 0,
    keep_maps: bool = True,
    stages: int | None = None,
    reference: FaithfulnessCurves | None = None,
) -> TrustMetrics:
    """Faithfulness curves, IG completeness and (when `randomise`) the randomisation check of `explanation`.

    The randomisation check re-runs `explanation.method` with `explanation.params` (those the method
    takes) and `seed`, on the first `randomisation_images` images (None: all of them), at `stages`
    cascading stages (None: one per layer with parameters). The maps of the unmodified model are the
    explanation's own (the methods seed image i the same whatever the batch), not computed again.
    `reference`: curves of another explanation of the same images whose random-order curves are reused.
    """
    start = time.perf_counter()
    curves = deletion_insertion(model, explanation, steps=steps, baseline=baseline, batch_size=batch_size, seed=seed,
                                reference=reference)
    curve_seconds = time.perf_counter() - start
    error = explanation.details.completeness_error if isinstance(explanation.details, IGDetails) else None
    result = None
    n_rand = 0
    if randomise:
        info = get_method(explanation.method)
        params = {k: v for k, v in explanation.params.items() if k in info.params}
        n_rand = len(explanation) if randomisation_images is None else min(len(explanation), int(randomisation_images))
        result = randomisation_check(
            model, explanation.inputs[:n_rand], explanation.method, targets=explanation.targets[:n_rand],
            seed=seed, layers=layers, preprocessed=True, keep_maps=keep_maps, threshold=FLAG_THRESHOLD,
            stages=stages, original=explanation.maps[:n_rand], **params,
        )
    seconds = time.perf_counter() - start
    log.info("trust metrics for %s on %d image(s) took %.3f s", explanation.method, len(explanation), seconds)
    return TrustMetrics(
        method=explanation.method, curves=curves,
        completeness_error=None if error is None else np.asarray(error, np.float32),
        randomisation=result, randomisation_images=n_rand, seconds=seconds, curve_seconds=curve_seconds,
    )
