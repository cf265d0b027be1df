"""Saliency (Simonyan et al. 2014): the gradient of the target score w.r.t. the input pixels.

The score is the logit (pre-softmax score) by default, also for a model whose graph ends in a
softmax (`target_output="probability"` explains the probability instead; see engine.output_head).

map = max over channels of |gradient| (Captum's `Saliency(abs=True)` then a channel max).
With `signed=True` the map keeps the gradient's sign: at every pixel it is the gradient of the
channel with the largest |gradient| (for gray models simply the gradient), so |signed map| equals
the default map.

details (`SaliencyDetails`):
- `attributions`: the raw gradient (N, *input shape) in the model's layout;
- `mask`: the saliency mask some reports show: the display image (N, H, W, C) in [0, 1] weighted
  per pixel by |map| normalised to [0, 1] per image.
"""
from __future__ import annotations

import numpy as np

from ..details import SaliencyDetails
from ..explanation import Explanation, make_explanation
from ..model import Model
from ..registry import register
from ..torch_ops import channel_reduce, input_gradients, to_numpy


def masked_image(display: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """The display images (N, H, W, C) in [0, 1] weighted by |maps| (N, H, W) normalised to [0, 1] per
    image: the saliency mask some reports show. Figures compute it when they draw that panel, so a
    call that draws nothing does not pay for it."""
    weights = np.abs(maps)
    peak = weights.reshape(len(weights), -1).max(axis=1).reshape(-1, 1, 1)
    weights = np.divide(weights, peak, out=np.zeros_like(weights), where=peak > 0)
    return (np.asarray(display, np.float32) * weights[..., None]).astype(np.float32)


TEXT = ("The gradient of the predicted class's score with respect to the input pixels (largest |gradient| over the "
        "channels), for one image of each class. Bright pixels are those whose change moves the score most. The last "
        "column uses the map as a mask over the image, as some reports do.")


@register("saliency", backend="torch", default_batch_size=128, title="Saliency maps", text=TEXT,
          reference="captum Saliency")
def saliency(model: Model, x: np.ndarray, targets: np.ndarray | None, *, batch_size: int, seed: int,
             signed: bool = False, target_output: str = "logit") -> Explanation:
    """Gradient of the target score w.r.t. the input; map = max |gradient| over channels."""
    output = model.explained_output(target_output)
    grads, scores, tt = input_gradients(model, x, targets, batch_size=batch_size, target_output=output)
    grads, scores, targets = to_numpy(grads), to_numpy(scores), tt.cpu().numpy()
    maps = channel_reduce(grads, model.spec, "signed" if signed else "absmax")
    return make_explanation(
        model, "saliency", x, targets, maps, params={"signed": bool(signed), "target_output": output}, scores=scores,
        details=SaliencyDetails(attributions=grads),
    )
