"""The onnxruntime batch size that gives a model its best throughput, measured once and cached.

Forward-only methods (LIME, occlusion) run thousands of perturbed copies through onnxruntime. One
big batch is not the fastest per image on every model: on a CPU, a 64x64 Xception ran its 1,000-row
batches ~1.4x slower per image than its best batch size (activations that no longer fit the caches).
So the first forward-only call on a model sweeps a few batch sizes on synthetic inputs (doubling
from 8, up to three timed runs each, the minimum kept, within a 1.5 s budget; see `sweep`)
and keeps the largest within 10% of the fastest. The result is cached per
ONNX file hash, input shape, device, thread count and onnxruntime version under
`<cache>/batch_sizes/`, so later processes reuse it.

The batch size changes only how rows are grouped into onnxruntime calls: each row's output is the
same up to float rounding (tested), so results do not depend on it.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .cache import cache_root
from .sidecar import write_json_atomic

if TYPE_CHECKING:
    from .model import Model

log = logging.getLogger(__name__)

CANDIDATES = (8, 16, 32, 64, 128, 256, 512, 1024)
SWEEP_BUDGET_S = 1.5  # what the sweep may spend on a model's first forward-only call
TIMED_RUNS = 3  # per size, the minimum kept (the budget allowing)
NEAR_BEST = 1.1


@dataclass(frozen=True)
class Sweep:
    """The chosen batch size, seconds per image (the minimum) of each size tried, and what the sweep cost."""

    best: int
    per_image_s: dict[int, float]
    seconds: float

    def as_dict(self) -> dict:
        return {"best": self.best, "per_image_s": {str(k): v for k, v in self.per_image_s.items()},
                "seconds": self.seconds}


def sweep(run: Callable[[np.ndarray], object], pool: np.ndarray, *, budget_s: float = SWEEP_BUDGET_S,
          clock: Callable[[], float] = time.perf_counter) -> Sweep:
    """Time `run` on the first b rows of `pool` for b in CANDIDATES (up to len(pool)); the best b.

    First pass: each size once after an untimed run (the first at a new shape allocates), in
    increasing order, while its predicted cost (at the best rate seen so far) fits in what is left of
    `budget_s`. Then, while the budget lasts, rounds over the sizes tried, each timed again; a size's
    time is its minimum. No size is ruled out on one slow run: on a busy machine single runs swing
    several-fold (seen on the shared 2-core box), so the sweep goes as far as the budget allows."""
    start = clock()
    per_image: dict[int, float] = {}
    best = CANDIDATES[0]

    def fits(b: int, runs: int) -> bool:
        return not per_image or clock() - start + runs * b * per_image[best] <= budget_s

    def time_one(b: int) -> None:
        nonlocal best
        t0 = clock()
        run(pool[:b])
        per_image[b] = min(per_image.get(b, float("inf")), (clock() - t0) / b)
        best = min(per_image, key=per_image.__getitem__)

    for b in (c for c in CANDIDATES if c <= len(pool)):
        if not fits(b, 2):
            break
        run(pool[:b])
        time_one(b)
    for _ in range(TIMED_RUNS - 1):
        for b in sorted(per_image):
            if fits(b, 1):
                time_one(b)
    # The largest size within NEAR_BEST of the fastest: fewer calls, and timing noise of a few percent
    # must not pick a small batch that a quieter moment would show slower.
    chosen = max(b for b, t in per_image.items() if t <= NEAR_BEST * per_image[best])
    return Sweep(chosen, per_image, clock() - start)


def synthetic_pool(model: "Model", n: int, seed: int = 0) -> np.ndarray:
    """`n` model inputs from uniform random pixels: any input costs a CNN the same to run."""
    spec = model.spec
    pixels = np.random.default_rng(seed).uniform(0, 255, (n, spec.height, spec.width, spec.channels))
    return spec.pixels_to_model(pixels.astype(np.float32))


def cache_key(model: "Model") -> str:
    import onnxruntime as ort

    shape = "x".join(map(str, model.spec.shape))
    return f"{model.sha256[:32]}-{shape}-{model.device}-t{model.threads or 0}-ort{ort.__version__}"


def tuned_batch_size(model: "Model", cap: int) -> int:
    """The model's fastest onnxruntime batch size (at most `cap`), from the cache or measured now."""
    path = cache_root() / "batch_sizes" / f"{cache_key(model)}.json"
    try:
        found = json.loads(path.read_text())
        if int(found["cap"]) == cap:
            return int(found["best"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    result = sweep(lambda batch: model.predict(batch, batch_size=len(batch)), synthetic_pool(model, cap))
    log.info("%s: onnxruntime batch size %d (sweep of %s took %.2f s)", model.path.name, result.best,
             ", ".join(map(str, result.per_image_s)), result.seconds)
    try:
        write_json_atomic(path, {**result.as_dict(), "cap": cap})
    except OSError as exc:  # a read-only cache costs a sweep per process, not the call
        log.debug("cannot cache the batch size in %s: %s", path, exc)
    return result.best
