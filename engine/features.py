"""Feature visualisation on a conv layer: filters by gradient ascent, activation maps, deep dream.

All three read the layer's values through `torch_ops.layer_values` (the model output, the layer's
pre-activation and activation in one autograd graph; one cached module per layer, shared with Grad-CAM). Conv values are NCHW inside the graph, also for NHWC models.
Images are optimised in display space, (B, C, H, W) in [0, 1], and mapped differentiably through
the model's preprocessing and layout (`torch_ops.display_to_model`), so gray and RGB, NCHW and
NHWC models all work the same way.

`visualize_filters` maximises each requested filter's mean activation, all filters of a call
optimised together as the rows of one batch (row i ascends filter i only; rows are independent in
eval mode, and Adam's update is element-wise). The objective ascended is the filter's mean
*pre-activation* when the layer ends in a monotone activation (ReLU, ELU, ...): the same maximiser
direction, but with a gradient also where a ReLU is dead (a grey start image leaves most ReLU
filters at exactly 0, where the post-ReLU mean has no gradient). `start_activation` and
`final_activation` report the filter's mean activation as the layer outputs it (post-activation,
the same numbers `activation_maps` shows), `start_objective` / `final_objective` the ascended
pre-activation means (equal to the activations when the layer ends in no activation). A filter
that no input can switch on (trained dead) keeps activation 0 while its objective still rises.
Regularisers, as in Lucent / Yosinski et al.:
- an FFT (decorrelated) parametrisation (`fft=True`): the image is sigmoid(irfft2(scale * spectrum))
  with scale ~ 1/frequency, and for RGB models colours decorrelated by Lucent's ImageNet colour
  matrix; `fft=False` optimises the pre-sigmoid pixels directly;
- jitter: every step the image is rolled by a random shift of up to `jitter` pixels;
- blur every `blur_every` steps: a Gaussian blur of sigma `blur_sigma` pixels applied to the
  pre-sigmoid image (in the FFT parametrisation: the spectrum multiplied by the Gaussian's transfer
  function exp(-2 pi^2 sigma^2 f^2), the same blur done circularly);
- L2 decay: Adam's `weight_decay` on the parameters.
Randomness is seeded: filter f's start comes from `numpy.random.default_rng([seed, f])` and the
jitter shifts from a torch CPU generator seeded with `seed`, so a filter's result does not depend on
which other filters are asked for or on `batch_size`, and repeated calls agree bit for bit on CPU.

`deep_dream` ascends the L2 norm of the layer's activation from a user image, with octaves (Mordvintsev
et al.): octave k works on a copy of the image resized to size / octave_scale^(octaves-1-k), coarse
to fine, carrying the accumulated detail up to the next scale. The model has a fixed input size, so
every forward resizes the working copy to the model size (bilinear, differentiable): coarse octaves
add large-scale patterns, the last one (at the model size) fine ones. Steps are normalised gradient
ascent: image += lr * g / mean|g|, clipped to [0, 1], with a seeded random roll of up to 2 pixels.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .batching import batch_slices
from .errors import BadInputError
from .layers import LayerInfo
from .model import Model
from .torch_ops import conv_layer, display_to_model, layer_values, to_numpy, to_tensor

log = logging.getLogger(__name__)

# Lucent's ImageNet colour correlation (square root of its covariance), columns normalised.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOR = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))
_FFT_MAGIC = 4.0    # Lucent's divisor of the irfft output
NOISE_SD = 1.0      # sd of the white-noise start before the sigmoid
_EDGE = 1e-3        # a start image is clipped to [_EDGE, 1 - _EDGE] before the logit
DREAM_JITTER = 2


@dataclass(frozen=True)
class FilterVisualization:
    layer: str
    filters: np.ndarray           # (F,) int64 filter indices
    images: np.ndarray            # (F, H, W, C) float32 display images in [0, 1]
    start_activation: np.ndarray  # (F,) mean activation of each filter on its start image
    final_activation: np.ndarray  # (F,) ... on its final image
    seconds: float
    # What the ascent maximised: the mean pre-activation (see the module docstring), (F,) each.
    start_objective: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    final_objective: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


@dataclass(frozen=True)
class ActivationMaps:
    layer: str
    maps: np.ndarray   # (C, h, w) float32, the layer's output for the image
    image: np.ndarray  # (H, W, C) float32 display image in [0, 1]


@dataclass(frozen=True)
class DeepDream:
    layer: str
    image: np.ndarray  # (H, W, C) float32 display image in [0, 1]
    start_objective: float
    final_objective: float
    seconds: float


# ---------------------------------------------------------------------------------- parametrisations
class _ImageParam:
    """Pre-sigmoid image parameters for a batch; `images()` gives (B, C, H, W) in [0, 1]."""

    def __init__(self, linear: torch.Tensor, *, fft: bool) -> None:
        b, c, h, w = linear.shape
        self.fft, self.size, self.channels = fft, (h, w), c
        dev = linear.device
        self.color = torch.from_numpy(_COLOR).to(dev) if c == 3 else None
        flat = self._correlate_inverse(linear)
        if fft:
            fy = np.fft.fftfreq(h)[:, None]
            fx = np.fft.rfftfreq(w)[None, :]
            freqs = np.sqrt(fx * fx + fy * fy)
            self.freqs = torch.from_numpy(freqs.astype(np.float32)).to(dev)
            self.scale = (1.0 / torch.clamp(self.freqs, min=1.0 / max(h, w)))[None, None, ..., None]
            spectrum = torch.view_as_real(torch.fft.rfft2(flat * _FFT_MAGIC, norm="ortho")) / self.scale
            self.param = spectrum.contiguous().requires_grad_(True)
        else:
            self.param = flat.contiguous().requires_grad_(True)

    def _correlate(self, t: torch.Tensor) -> torch.Tensor:
        if self.color is None:
            return t
        return torch.einsum("bchw,dc->bdhw", t, self.color)

    def _correlate_inverse(self, t: torch.Tensor) -> torch.Tensor:
        if self.color is None:
            return t
        return torch.einsum("bchw,dc->bdhw", t, torch.linalg.inv(self.color))

    def linear(self) -> torch.Tensor:
        if self.fft:
            spectrum = torch.view_as_complex((self.param * self.scale).contiguous())
            flat = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / _FFT_MAGIC
        else:
            flat = self.param
        return self._correlate(flat)

    def images(self) -> torch.Tensor:
        return torch.sigmoid(self.linear())

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        if self.fft:
            self.param.mul_(torch.exp(-2.0 * math.pi**2 * sigma**2 * self.freqs**2)[None, None, ..., None])
        else:
            self.param.copy_(gaussian_blur(self.param, sigma))


def gaussian_blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect padding (radius 3 sigma, at most H-1, W-1)."""
    c, h, w = t.shape[1:]
    radius = max(1, min(int(math.ceil(3 * sigma)), h - 1, w - 1))
    xs = torch.arange(-radius, radius + 1, dtype=t.dtype, device=t.device)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    k = k / k.sum()
    t = F.pad(t, (radius, radius, radius, radius), mode="reflect")
    t = F.conv2d(t, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(t, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _logit(images: np.ndarray) -> np.ndarray:
    p = np.clip(images, _EDGE, 1 - _EDGE)
    return np.log(p / (1 - p)).astype(np.float32)


def _display_nchw(model: Model, image: np.ndarray) -> np.ndarray:
    """One user image (pixel convention) -> (1, C, H, W) float32 display image in [0, 1]."""
    pixels = model.spec.to_pixels(image)
    if pixels.shape[0] != 1:
        raise BadInputError(f"expected one image, got a batch of {pixels.shape[0]}")
    return np.ascontiguousarray(np.transpose(pixels / 255.0, (0, 3, 1, 2)), dtype=np.float32)


def _layer_forward(model: Model, layer: LayerInfo):
    """images (B, C, H, W) in [0, 1] -> (pre-activation, activation) of the layer, (B, C', h, w) each."""
    run = layer_values(model, layer)
    spec = model.spec

    def forward(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return run(display_to_model(spec, images))[1:]

    return forward


def _roll(images: torch.Tensor, jitter: int, gen: torch.Generator) -> torch.Tensor:
    if jitter <= 0:
        return images
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))


# ---------------------------------------------------------------------------------- filters
ASCENT_STEPS = 128   # up to 64 pixels a side


def ascent_steps(height: int, width: int) -> int:
    """Default gradient-ascent steps for filter visualisation: 128 up to 64 pixels a side, then fewer in
    inverse proportion to the longer side, never below 32 (224x224 gets 37), so the cost, which grows
    with the pixels, grows with the side rather than its square. The start and final activations are
    recorded, so whether the ascent got far is on the page."""
    side = max(height, width)
    return ASCENT_STEPS if side <= 64 else max(32, round(ASCENT_STEPS * 64 / side))


def visualize_filters(
    model: Model,
    layer: str | None = None,
    filters: Sequence[int] | None = None,
    *,
    steps: int | None = None,
    lr: float = 0.05,
    seed: int = 0,
    from_image: np.ndarray | None = None,
    jitter: int = 2,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    decay: float = 1e-4,
    fft: bool = True,
    batch_size: int = 64,
) -> FilterVisualization:
    """Images that maximise each filter's mean activation (Adam, regularised), filters batched together.
    steps: None = `ascent_steps` of the input size."""
    start_time = time.perf_counter()
    steps = ascent_steps(model.spec.height, model.spec.width) if steps is None else steps
    info = conv_layer(model, layer)
    n_channels = info.channels or (info.output_shape[0] if info.output_shape else None)
    if filters is None:
        filters = range(min(16, n_channels or 16))
    idx = np.asarray(list(filters), dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise BadInputError("no filters asked for; give filter indices such as 0-15")
    bad = idx[(idx < 0) | (idx >= n_channels)] if n_channels else idx[idx < 0]
    if bad.size:
        raise BadInputError(f"filter {int(bad[0])} is out of range: layer {info.name!r} has {n_channels} filters "
                            f"(0..{(n_channels or 1) - 1})")
    if steps < 1 or lr <= 0 or batch_size < 1 or jitter < 0 or blur_every < 0 or blur_sigma <= 0 or decay < 0:
        raise BadInputError(f"filter visualisation needs steps >= 1, lr > 0, batch_size >= 1, jitter >= 0, "
                            f"blur_every >= 0, blur_sigma > 0, decay >= 0 (got steps={steps}, lr={lr}, "
                            f"batch_size={batch_size}, jitter={jitter}, blur_every={blur_every}, "
                            f"blur_sigma={blur_sigma}, decay={decay})")
    spec = model.spec
    shape = (spec.channels, spec.height, spec.width)
    start = _logit(_display_nchw(model, from_image)) if from_image is not None else None
    run = _layer_forward(model, info)
    images, first, last, first_obj, last_obj = [], [], [], [], []
    for s in batch_slices(len(idx), batch_size):
        group = idx[s]
        linear = _start_linear(group, shape, start, seed)
        param = _ImageParam(to_tensor(model, linear), fft=fft)
        rows = torch.arange(len(group), device=model.torch_device)
        cols = to_tensor(model, group, dtype=torch.int64)

        def filter_means(imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(pre-activation means, activation means) of each row's own filter."""
            pre_act, act = run(imgs)
            return pre_act[rows, cols].mean(dim=(1, 2)), act[rows, cols].mean(dim=(1, 2))

        with torch.no_grad():
            obj, act = filter_means(param.images())
            first_obj.append(to_numpy(obj))
            first.append(to_numpy(act))
        opt = torch.optim.Adam([param.param], lr=lr, weight_decay=decay)
        gen = torch.Generator().manual_seed(int(seed))
        for step in range(1, steps + 1):
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = -filter_means(_roll(param.images(), jitter, gen))[0].sum()
                loss.backward()
            opt.step()
            if blur_every and step % blur_every == 0 and step < steps:
                param.blur(blur_sigma)
        with torch.no_grad():
            final = param.images()
            obj, act = filter_means(final)
            last_obj.append(to_numpy(obj))
            last.append(to_numpy(act))
        images.append(np.transpose(to_numpy(final), (0, 2, 3, 1)))
    seconds = time.perf_counter() - start_time
    log.info("visualised %d filters of %s in %.2f s", len(idx), info.name, seconds)
    return FilterVisualization(
        layer=info.name, filters=idx, images=np.concatenate(images).astype(np.float32),
        start_activation=np.concatenate(first), final_activation=np.concatenate(last), seconds=seconds,
        start_objective=np.concatenate(first_obj), final_objective=np.concatenate(last_obj),
    )


def _start_linear(group: np.ndarray, shape: tuple[int, int, int], start: np.ndarray | None, seed: int) -> np.ndarray:
    """Pre-sigmoid start images (B, C, H, W): the given image, or per-filter seeded white noise.

    The noise has sd NOISE_SD before the sigmoid (pixels spread over most of [0, 1]): a near-grey
    start (Lucent's sd 0.01) leaves the first ReLUs of small student CNNs dead everywhere, so
    many filters get no gradient at all; white noise, as the assignment asks, activates them."""
    if start is not None:
        return np.repeat(start, len(group), axis=0)
    return np.stack([np.random.default_rng([int(seed), int(f)]).standard_normal(shape, dtype=np.float32) * NOISE_SD
                     for f in group])


# ---------------------------------------------------------------------------------- activations
def activation_maps(model: Model, image: np.ndarray, layer: str | None = None) -> ActivationMaps:
    """The outputs of a conv layer's filters for one user image (pixel convention)."""
    info = conv_layer(model, layer)
    display = _display_nchw(model, image)
    with torch.no_grad():
        act = _layer_forward(model, info)(to_tensor(model, display))[1]
    return ActivationMaps(layer=info.name, maps=np.ascontiguousarray(to_numpy(act[0])),
                          image=np.ascontiguousarray(np.transpose(display[0], (1, 2, 0))))


# ---------------------------------------------------------------------------------- deep dream
def deep_dream(
    model: Model,
    image: np.ndarray,
    layer: str | None = None,
    *,
    steps: int = 20,
    octaves: int = 3,
    octave_scale: float = 1.4,
    lr: float = 0.01,
    seed: int = 0,
) -> DeepDream:
    """Ascend the L2 norm of a layer's activation from `image`, over `octaves` scales (coarse to fine)."""
    start_time = time.perf_counter()
    info = conv_layer(model, layer)
    if steps < 1 or octaves < 1 or octave_scale < 1 or lr <= 0:
        raise BadInputError(f"deep dream needs steps >= 1, octaves >= 1, octave_scale >= 1 and lr > 0 "
                            f"(got steps={steps}, octaves={octaves}, octave_scale={octave_scale}, lr={lr})")
    run = _layer_forward(model, info)
    h, w = model.spec.height, model.spec.width

    def objective(imgs: torch.Tensor) -> torch.Tensor:
        if imgs.shape[-2:] != (h, w):
            imgs = F.interpolate(imgs, size=(h, w), mode="bilinear", align_corners=False)
        return torch.linalg.vector_norm(run(imgs)[1])

    base = to_tensor(model, _display_nchw(model, image))
    with torch.no_grad():
        start_obj = float(objective(base))
    gen = torch.Generator().manual_seed(int(seed))
    detail: torch.Tensor | None = None
    work = base
    for k in range(octaves):
        factor = octave_scale ** (octaves - 1 - k)
        size = (max(1, round(h / factor)), max(1, round(w / factor)))
        base_k = base if size == (h, w) else F.interpolate(base, size=size, mode="bilinear", align_corners=False,
                                                          antialias=True)
        if detail is not None:
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
        work = (base_k + detail).clamp(0, 1) if detail is not None else base_k.clone()
        for _ in range(steps):
            work = work.detach().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(objective(_roll(work, DREAM_JITTER, gen)), work)
            with torch.no_grad():
                work = (work + lr * grad / (grad.abs().mean() + 1e-12)).clamp(0, 1)
        detail = work.detach() - base_k
    final = work.detach()
    with torch.no_grad():
        final_obj = float(objective(final))
    seconds = time.perf_counter() - start_time
    log.info("deep dream on %s: %.4g -> %.4g in %.2f s", info.name, start_obj, final_obj, seconds)
    return DeepDream(layer=info.name, image=np.ascontiguousarray(np.transpose(to_numpy(final)[0], (1, 2, 0))),
                     start_objective=start_obj, final_objective=final_obj, seconds=seconds)
