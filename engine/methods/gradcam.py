"""Grad-CAM (Selvaraju et al. 2017) on a conv layer, upsampled to the input size.

cam = ReLU(sum_k w_k A_k) with w_k = the mean over space of d score / d A_k, where A is the
layer's output (activation, after its bias/activation ops, as `Model.layers()` groups them). The
low-resolution cam is upsampled bilinearly (torch `interpolate`, align_corners=False, as Captum's
`LayerAttribution.interpolate`) to the model's input size. Equal to Captum's
`LayerGradCam(..., relu_attributions=True)` + `LayerAttribution.interpolate(..., "bilinear")`.

The score is the logit by default, the probability with `target_output="probability"` (as saliency).
`layer`: the name the student knows (Keras `conv2d_7`, PyTorch `features.3`); None = the last conv layer.
details (`GradCamDetails`): `layer` (the layer's name), `cam_lowres` (N, h, w) float32 at the layer's resolution.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..details import GradCamDetails
from ..explanation import Explanation, make_explanation
from ..layers import LayerInfo
from ..model import Model
from ..registry import register
from ..torch_ops import batched_with_targets, conv_layer, layer_values, predicted, select_scores, to_numpy, to_tensor


def gradcam_lowres(model: Model, layer: LayerInfo, x: torch.Tensor, targets: torch.Tensor | None,
                   target_output: str = "logit") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, h, w) Grad-CAM at the layer's resolution for one batch, the target scores (B,) and the
    targets (B,) (None: each image's predicted class, from this forward pass)."""
    inputs = x.detach().requires_grad_(True)  # so the graph reaches the layer even if it has no parameters
    with torch.enable_grad():
        out, _, act = layer_values(model, layer, target_output)(inputs)
        targets = predicted(out) if targets is None else targets
        scores = select_scores(out, targets)
        (grads,) = torch.autograd.grad(scores.sum(), act)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * act.detach()).sum(dim=1)), scores.detach(), targets


TEXT = ("The last conv layer's feature maps weighted by the mean gradient of the score, rectified and upsampled to "
        "the input: where in the image the evidence for the class lies, at that layer's resolution.")


@register("gradcam", backend="torch", default_batch_size=64, title="Grad-CAM", text=TEXT,
          reference="captum LayerGradCam")
def gradcam(model: Model, x: np.ndarray, targets: np.ndarray | None, *, batch_size: int, seed: int,
            layer: str | None = None, target_output: str = "logit") -> Explanation:
    """Grad-CAM on a conv layer (default: the last one), upsampled to the input size."""
    output = model.explained_output(target_output)
    info = conv_layer(model, layer)
    low, scores, tt = batched_with_targets(model, lambda xs, ts: gradcam_lowres(model, info, xs, ts, output),
                                           to_tensor(model, x), targets, batch_size=batch_size)
    targets = tt.cpu().numpy()
    up = F.interpolate(low.unsqueeze(1), size=(model.spec.height, model.spec.width), mode="bilinear",
                       align_corners=False).squeeze(1)
    return make_explanation(
        model, "gradcam", x, targets, to_numpy(up), params={"layer": info.name, "target_output": output}, scores=to_numpy(scores),
        details=GradCamDetails(layer=info.name, cam_lowres=to_numpy(low)),
    )
