"""SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies of the input.

Each image gets `samples` copies x + N(0, (sigma * (max(x) - min(x)))^2), the range taken per image
in model space. The noise of the i-th image of a call comes from `numpy.random.default_rng([seed, i])`,
so it does not depend on the batch size, the device or the other images' values. All noisy copies of all images are
cut into chunks of `batch_size` (one forward/backward per chunk) and never held all at once.

The score is the logit by default, the probability with `target_output="probability"` (as saliency).

map = max over channels of mean(|gradient|) over the samples: Captum's
`NoiseTunnel(Saliency(abs=True)).attribute(nt_type="smoothgrad")` then a channel max.
With `signed=True` the signed gradients are averaged and the map keeps the sign of the channel
with the largest |mean gradient| (as saliency's `signed`).

details (`SmoothGradDetails`): `attributions` (N, *input shape), the averaged (absolute or signed) gradient in
the model's layout;
`noise_sd` (N,), the noise standard deviation used per image (model space).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..errors import BadInputError
from ..details import SmoothGradDetails
from ..explanation import Explanation, make_explanation
from ..model import Model
from ..registry import register
from ..torch_ops import channel_reduce, scores_and_targets, summed_gradients, to_numpy, to_tensor


def noise_sd(x: np.ndarray, sigma: float) -> np.ndarray:
    """Per-image noise standard deviation: sigma times the image's value range (model space)."""
    flat = x.reshape(len(x), -1)
    return (float(sigma) * (flat.max(axis=1) - flat.min(axis=1))).astype(np.float32)


def image_noise(shape: tuple[int, ...], samples: int, seed: int, index: int) -> np.ndarray:
    """Unit-variance noise (samples, *shape) for image `index`, from its own seeded generator."""
    return np.random.default_rng([seed, index]).standard_normal((samples, *shape), dtype=np.float32)


@register("smoothgrad", backend="torch", default_batch_size=128, title="SmoothGrad",
          text="Saliency averaged over noisy copies of each image: less speckle, the same question.",
          bench_params={"samples": 25, "sigma": 0.15}, reference="captum NoiseTunnel(Saliency)")
def smoothgrad(model: Model, x: np.ndarray, targets: np.ndarray | None, *, batch_size: int, seed: int,
               samples: int = 25, sigma: float = 0.15, signed: bool = False,
               target_output: str = "logit") -> Explanation:
    """Saliency averaged over `samples` noisy copies (noise sd = sigma * the image's value range)."""
    samples = int(samples)
    if samples < 1:
        raise BadInputError(f"smoothgrad needs samples >= 1, got {samples}")
    if not np.isfinite(sigma) or sigma < 0:
        raise BadInputError(f"smoothgrad needs sigma >= 0 (a fraction of the input range), got {sigma}")
    output = model.explained_output(target_output)
    sd = noise_sd(x, sigma)
    xt, sdt = to_tensor(model, x), to_tensor(model, sd)
    shape = model.spec.shape
    scores, tt = scores_and_targets(model, xt, targets, batch_size=batch_size, target_output=output)
    targets = tt.cpu().numpy()

    @lru_cache(maxsize=2)  # an image cut by a chunk boundary has its noise drawn once
    def noise(index: int) -> torch.Tensor:
        return to_tensor(model, image_noise(shape, samples, seed, index))

    def build_rows(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        # Each image's rows are a contiguous run of its samples: write x_i + sd_i * eps_i[lo:hi] once
        # per run into one batch, instead of gathering copies of x, sd and the noise row by row.
        out = torch.empty((len(rows), *shape), dtype=xt.dtype, device=xt.device)
        unique, counts = torch.unique_consecutive(images, return_counts=True)
        first = 0
        for i, count in zip(unique.tolist(), counts.tolist()):
            lo, run = int(rows[first]), out[first:first + count]
            torch.mul(noise(i)[lo:lo + count], sdt[i], out=run)
            run.add_(xt[i])
            first += count
        return out

    sums, _ = summed_gradients(model, targets, samples, build_rows, batch_size=batch_size,
                               transform=None if signed else (lambda g, _rows: g.abs()), target_output=output)
    attributions = to_numpy(sums / samples)
    maps = channel_reduce(attributions, model.spec, "signed" if signed else "absmax")
    return make_explanation(
        model, "smoothgrad", x, targets, maps,
        params={"samples": samples, "sigma": float(sigma), "signed": bool(signed), "target_output": output},
        scores=to_numpy(scores),
        details=SmoothGradDetails(attributions=attributions, noise_sd=sd),
    )
