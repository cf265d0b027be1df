"""Grad-CAM (Selvaraju et al. 2017) on a conv layer, upsampled to the input size.

cam = ReLU(sum_k w_k A_k) with w_k = the mean over space of d score / d A_k, where A is the
layer's output (activation, after its bias/activation ops, as `Model.layers()` groups them). The
low-resolution cam is upsampled bilinearly (torch `interpolate`, align_corners=False, as Captum's
`LayerAttribution.interpolate`) to the model's input size. Equal to Captum's
`LayerGradCam(..., relu_attributions=True)` + `LayerAttribution.interpolate(..., "bilinear")`.

`layer`: the name the student knows (Keras `conv2d_7`, PyTorch `features.3`); None = the last conv layer.
extras: `layer` (the layer's name), `cam_lowres` (N, h, w) float32 at the layer's resolution.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInputError
from ..explanation import Explanation, make_explanation
from ..layers import LayerInfo
from ..model import Model
from ..registry import register
from ..batching import torch_batched
from ..torch_ops import select_scores, targets_tensor, to_numpy, to_tensor


def conv_layer(model: Model, name: str | None) -> LayerInfo:
    """The conv layer `name` (None: the last one); a non-conv layer is a user error listing the conv layers."""
    layer = model.find_layer(name, kind="conv")
    if layer.kind != "conv":
        known = ", ".join(c.name for c in model.conv_layers()) or "none"
        raise BadInputError(f"layer {layer.name!r} is a {layer.kind} layer, not a conv layer; conv layers: {known}")
    return layer


def as_nchw(act: torch.Tensor, layer: LayerInfo) -> torch.Tensor:
    """A conv layer's value as (B, C, h, w): ONNX convs are NCHW, but a value taken after a layout
    Transpose (NHWC) is moved back."""
    if act.ndim != 4:
        raise BadInputError(f"layer {layer.name!r} outputs shape {tuple(act.shape)}, not a 4-D feature map")
    if layer.channels and act.shape[1] != layer.channels and act.shape[3] == layer.channels:
        return act.permute(0, 3, 1, 2)
    return act


def gradcam_lowres(model: Model, layer: LayerInfo, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, h, w) Grad-CAM at the layer's resolution for one batch."""
    forward = model.torch_module_with([layer.output])
    inputs = x.detach().requires_grad_(True)  # so the graph reaches the layer even if it has no parameters
    with torch.enable_grad():
        out, act = forward(inputs)
        act = as_nchw(act, layer)
        (grads,) = torch.autograd.grad(select_scores(out, targets).sum(), act)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * act.detach()).sum(dim=1))


@register("gradcam", backend="torch", default_batch_size=64)
def gradcam(model: Model, x: np.ndarray, targets: np.ndarray, *, batch_size: int, seed: int,
            layer: str | None = None) -> Explanation:
    """Grad-CAM on a conv layer (default: the last one), upsampled to the input size."""
    info = conv_layer(model, layer)
    xt, tt = to_tensor(model, x), targets_tensor(model, targets)
    low = torch_batched(lambda xs, ts: gradcam_lowres(model, info, xs, ts), xt, tt, batch_size=batch_size)
    up = F.interpolate(low.unsqueeze(1), size=(model.spec.height, model.spec.width), mode="bilinear",
                       align_corners=False).squeeze(1)
    return make_explanation(
        model, "gradcam", x, targets, to_numpy(up), params={"layer": info.name},
        extras={"layer": info.name, "cam_lowres": to_numpy(low)},
    )
