"""Integrated gradients (Sundararajan et al. 2017), computed as Captum's `IntegratedGradients`.

attributions = (x - baseline) * sum_k w_k * grad f(baseline + a_k (x - baseline)), with the
quadrature points a_k and weights w_k of `integration` (Captum's `method`, renamed because
`explain(model, images, method=...)` names the attribution method; Captum's names: "gausslegendre" (default, as
Captum), "riemann_trapezoid" (alias "riemann"), "riemann_left", "riemann_right", "riemann_middle").

Baselines (baseline): the shared vocabulary of `engine.baselines`: "black" (the default), "blur"
("blurred" as before), "mean", "noise", a pixel value 0..255 or an array of the input's shape.

All steps of all images are rows of one stream cut into chunks of `batch_size`: one forward and one
backward pass per chunk, and no Python loop per step. When the network starts with affine ops (the
input layout op and the first conv), the path points are made after them: those ops run on the image
and its baseline only, and their backward once per image (`Model.torch_affine_split`).

map = the sum over channels of the signed attributions: completeness (sum of attributions =
f(x) - f(baseline)) then holds for the map itself, and the sign says whether a pixel pushed the
score up or down; take |map| to display magnitudes.

details (`IGDetails`): `attributions` (N, *input shape) in the model's layout; `baseline` (N, *input shape);
`delta` (N,) = sum(attributions) - (f(x) - f(baseline)) (Captum's convergence delta);
`completeness_error` (N,) = |delta| / |f(x) - f(baseline)| (the denominator floored at 1e-12);
`score_difference` (N,) = f(x) - f(baseline); `steps` (N,) the steps each image was integrated with.
f is the target score of the torch module: the logit (pre-softmax score) by default, also for a
model whose graph ends in a softmax, or the probability with `target_output="probability"`; the
completeness error is measured on that same f.

Completeness with a fixed number of steps: on the zoo's FER CNNs (o01, k01) and 100 LFW faces, 64
Gauss-Legendre steps leave a median error of 1-2%: the integrand (the path derivative of f) jumps at
every ReLU and max-pool switch, thousands of times between baseline and image, and 4,096 midpoint
steps bring it to 1e-5. `tolerance` doubles the steps of just the images that need it.
"""
from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from ..baselines import Baseline, baseline_images, describe
from ..errors import BadInputError
from ..details import IGDetails
from ..explanation import Explanation, make_explanation
from ..input_spec import InputSpec
from ..model import Model
from ..registry import register
from ..torch_ops import channel_reduce, scores_and_targets, summed_gradients, to_numpy, to_tensor

log = logging.getLogger(__name__)

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) as float32 arrays, the same numbers Captum's approximation_parameters gives."""
    alphas, weights = _quadrature("riemann_trapezoid" if method == "riemann" else method, int(steps))
    return alphas.copy(), weights.copy()


@functools.lru_cache(maxsize=64)  # numpy's leggauss takes ~1 ms at 50 steps, a tenth of a one-image IG
def _quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    if method not in METHODS:
        raise BadInputError(f"unknown integration method {method!r}; known: riemann, {', '.join(METHODS)}")
    if method == "gausslegendre":
        if steps < 1:
            raise BadInputError(f"ig needs steps >= 1, got {steps}")
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (1 + nodes)).astype(np.float32), (0.5 * weights).astype(np.float32)
    if steps < 2:
        raise BadInputError(f"ig with {method} needs steps >= 2, got {steps}")
    w = np.full(steps, 1.0 / steps)
    kind = method.split("_")[1]
    if kind == "trapezoid":
        w[0] /= 2
        w[-1] /= 2
        a = torch.linspace(0, 1, steps)
    elif kind == "left":
        a = torch.linspace(0, 1 - 1 / steps, steps)
    elif kind == "right":
        a = torch.linspace(1 / steps, 1, steps)
    else:
        a = torch.linspace(1 / (2 * steps), 1 - 1 / (2 * steps), steps)
    return a.numpy().astype(np.float32), w.astype(np.float32)


def make_baseline(spec: InputSpec, x: np.ndarray, kind: Baseline, seed: int) -> np.ndarray:
    """The baseline batch (N, *shape) in model space (`engine.baselines`)."""
    return baseline_images(spec, x, kind, seed)


TEXT = ("Gradients averaged along the straight path from a baseline to the image, multiplied by (image - baseline). "
        "Signed: red raises the score, blue lowers it. The attributions should add up to f(image) - f(baseline); "
        "the completeness error says how far they are from it.")


@register("ig", backend="torch", default_batch_size=128, title="Integrated gradients", text=TEXT, signed=True,
          bench_params={"steps": 50}, reference="captum IntegratedGradients")
def integrated_gradients(model: Model, x: np.ndarray, targets: np.ndarray | None, *, batch_size: int, seed: int,
                         steps: int = 50, baseline: Baseline = "black", integration: str = "gausslegendre",
                         tolerance: float | None = None, max_steps: int = 1024,
                         target_output: str = "logit") -> Explanation:
    """Integrated gradients from a baseline (black, blur, mean, noise, a pixel value, an array); records the
    completeness error.

    With `tolerance` (e.g. 0.01), each image whose completeness error is above it is integrated
    again with twice the steps, until it is within or `max_steps` is reached: ReLU and max-pool
    networks have gradients that jump thousands of times along the path, so the steps one image
    needs are not known in advance."""
    steps = int(steps)
    if tolerance is not None and not tolerance > 0:
        raise BadInputError(f"ig `tolerance` must be a positive fraction such as 0.01, got {tolerance}",
                            params=("tolerance",))
    quadrature(integration, steps)  # a bad method or step count fails before any work
    output = model.explained_output(target_output)
    base = make_baseline(model.spec, x, baseline, seed)
    attributions, scores, score_diff, targets = _integrate(model, x, base, targets, steps, integration, batch_size,
                                                           output)
    error = completeness_error(attributions, score_diff)
    used = np.full(len(x), steps, dtype=np.int64)
    todo = error > tolerance if tolerance is not None else np.zeros(len(x), bool)
    while todo.any() and used[todo].max() * 2 <= max_steps:
        more = int(used[todo].max() * 2)
        idx = np.flatnonzero(todo)
        attributions[idx], _, score_diff[idx], _ = _integrate(model, x[idx], base[idx], targets[idx], more,
                                                              integration, batch_size, output)
        error[idx] = completeness_error(attributions[idx], score_diff[idx])
        used[idx] = more
        todo[idx] = error[idx] > tolerance
    if todo.any():
        log.warning("ig: %d image(s) still above the completeness tolerance %g at %d steps (worst %.3g)",
                    int(todo.sum()), tolerance, max_steps, float(error[todo].max()))
    delta = attributions.reshape(len(x), -1).sum(axis=1, dtype=np.float64) - score_diff
    maps = channel_reduce(attributions, model.spec, "sum")
    params: dict = {"steps": steps, "baseline": describe(baseline), "integration": integration, "target_output": output}
    if tolerance is not None:
        params.update(tolerance=float(tolerance), max_steps=int(max_steps))
    return make_explanation(
        model, "ig", x, targets, maps, params=params, scores=scores,
        details=IGDetails(attributions=attributions, baseline=base, delta=delta.astype(np.float32),
                          completeness_error=error.astype(np.float32),
                          score_difference=score_diff.astype(np.float32), steps=used),
    )


def completeness_error(attributions: np.ndarray, score_diff: np.ndarray) -> np.ndarray:
    """|sum(attributions) - (f(x) - f(baseline))| / |f(x) - f(baseline)| per image (denominator floored at 1e-12)."""
    total = attributions.reshape(len(attributions), -1).sum(axis=1, dtype=np.float64)
    return np.abs(total - score_diff) / np.maximum(np.abs(score_diff), 1e-12)


def _integrate(model: Model, x: np.ndarray, base: np.ndarray, targets: np.ndarray | None, steps: int,
               integration: str, batch_size: int,
               output: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(attributions, f(x), f(x) - f(baseline), targets) with `steps` points of the `integration`
    quadrature; targets None = the predicted classes (from the forward that scores x and baseline)."""
    alphas, weights = quadrature(integration, steps)
    xt, bt = to_tensor(model, x), to_tensor(model, base)
    end_scores, tt = scores_and_targets(model, torch.cat([xt, bt]), targets, batch_size=batch_size,
                                        target_output=output, groups=2)
    ends, targets = to_numpy(end_scores), tt.cpu().numpy()
    diff = xt - bt
    at, wt = to_tensor(model, alphas), to_tensor(model, weights)
    ndim = len(model.spec.shape)
    split = model.torch_affine_split(output)
    if split is None:
        def build_rows(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return bt[images] + at[rows].view(-1, *([1] * ndim)) * diff[images]

        sums, _ = summed_gradients(model, targets, steps, build_rows, batch_size=batch_size, row_weights=wt,
                                   target_output=output)
    else:
        # The path through the affine prefix is a line too: its points are made after the prefix,
        # which runs on each image and its baseline once; its backward runs once per image, on the
        # weighted sum of the gradients (see torch_bridge.affine_split).
        def build_cut_rows(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            unique, counts = torch.unique_consecutive(images, return_counts=True)
            with torch.no_grad():
                ends = split.prefix(torch.cat([bt[unique], xt[unique]]))
            start, delta = ends[: len(unique)], ends[len(unique):] - ends[: len(unique)]
            alpha = at[rows].view(-1, *([1] * (ends.dim() - 1)))
            # The cut is much larger than the input (32 maps of 46x46 for a 48x48 gray image): write
            # each image's rows once, broadcasting its start and delta instead of indexing copies.
            # Keep the prefix's memory format: a channels-last conv output pools several times faster.
            last = ends.dim() == 4 and ends.is_contiguous(memory_format=torch.channels_last)
            out = torch.empty((len(rows), *ends.shape[1:]), dtype=ends.dtype, device=ends.device,
                              memory_format=torch.channels_last if last else torch.contiguous_format)
            first = 0
            for i, count in enumerate(counts.tolist()):
                run = slice(first, first + count)
                torch.addcmul(start[i:i + 1], alpha[run], delta[i:i + 1], out=out[run])
                first += count
            return out

        def to_input(cut_sums: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
            inputs = xt[images].detach().requires_grad_(True)
            with torch.enable_grad():
                (grads,) = torch.autograd.grad(split.prefix(inputs), inputs, cut_sums)
            return grads

        sums, _ = summed_gradients(model, targets, steps, build_cut_rows, batch_size=batch_size,
                                   row_weights=wt, forward=split.suffix, finish=to_input)
    attributions = to_numpy(sums * diff)
    return attributions, ends[: len(x)], (ends[: len(x)] - ends[len(x):]).astype(np.float64), targets
