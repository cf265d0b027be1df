"""The torch pieces every gradient method shares.

- numpy <-> tensor on the Model's device (`to_tensor`, `to_numpy`);
- target-score selection (`select_scores`) and one forward/backward (`grad_and_scores`);
- batched input gradients (`input_gradients`) and batched, per-image *summed* gradients over
  many derived rows (`summed_gradients`: SmoothGrad's noisy copies, integrated gradients' path
  points), both through `engine.batching.torch_batched`, the one batching helper;
- display images <-> model input as differentiable torch ops (`display_to_model`), for the
  feature-visualisation optimisers that work on images in [0, 1];
- conv layers by name (`conv_layer`) and their values inside the model's autograd graph
  (`layer_values`: output, pre-activation, activation), shared by Grad-CAM and engine.features.

Scores are those of `Model.torch_scores(target_output)`: the logit (pre-softmax score) by default,
also of a model whose graph ends in a softmax, or the probability; Captum takes them from that module.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from .batching import torch_batched
from .errors import BadInputError

if TYPE_CHECKING:
    from .input_spec import InputSpec
    from .layers import LayerInfo
    from .model import Model

Forward = Callable[[torch.Tensor], torch.Tensor]


def to_tensor(model: "Model", x: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A contiguous tensor on the Model's torch device."""
    if isinstance(x, torch.Tensor):
        return x.to(device=model.torch_device, dtype=dtype)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=model.torch_device, dtype=dtype)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """float32 numpy array on the host (detached)."""
    return t.detach().to(device="cpu", dtype=torch.float32).numpy()


def targets_tensor(model: "Model", targets: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(targets, torch.Tensor):
        return to_tensor(model, targets, dtype=torch.int64)
    return to_tensor(model, np.asarray(targets, dtype=np.int64), dtype=torch.int64)


def select_scores(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """outputs (B, K), targets (B,) int64 -> (B,) the target class's score of each row."""
    return outputs.gather(1, targets.view(-1, 1)).squeeze(1)


def predicted(outputs: torch.Tensor) -> torch.Tensor:
    """(B,) int64: each row's highest-scoring class (the first on ties, as numpy's argmax)."""
    return outputs.detach().argmax(dim=1)


def grad_and_scores(forward: Forward, inputs: torch.Tensor,
                    targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient of each row's target score w.r.t. that row, the scores (detached) and the targets.

    The rows of a batch are independent (eval mode), so the gradient of the summed scores is the
    per-row gradient: one backward pass for the whole batch. `targets` None takes each row's
    predicted class from this same forward pass: no onnxruntime forward first, whose idle worker
    threads would compete with torch's for the cores.
    """
    inputs = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        outputs = forward(inputs)
        targets = predicted(outputs) if targets is None else targets
        scores = select_scores(outputs, targets)
        (grads,) = torch.autograd.grad(scores.sum(), inputs)
    return grads, scores.detach(), targets


def input_gradients(model: "Model", x: np.ndarray | torch.Tensor, targets: np.ndarray | None, *,
                    batch_size: int, target_output: str = "logit") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(d score[target_i] / d x_i, score[target_i], target_i) for every image, in the model's layout,
    in batches; targets None = the predicted classes. The scores come from the same forward pass
    (no second one to fill `Explanation.scores`)."""
    forward = model.torch_scores(target_output)
    return batched_with_targets(model, lambda xs, ts: grad_and_scores(forward, xs, ts), to_tensor(model, x), targets,
                                batch_size=batch_size)


def batched_with_targets(model: "Model", fn: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, ...]],
                         x: torch.Tensor, targets: np.ndarray | None, *, batch_size: int) -> tuple[torch.Tensor, ...]:
    """`torch_batched(fn, x, targets)`, where targets None gives `fn(batch, None)` (it predicts them)."""
    if targets is None:
        return torch_batched(lambda xs: fn(xs, None), x, batch_size=batch_size)
    return torch_batched(fn, x, targets_tensor(model, targets), batch_size=batch_size)


def scores_and_targets(model: "Model", x: torch.Tensor, targets: np.ndarray | None, *, batch_size: int,
                       target_output: str = "logit", groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(target scores, targets) of `x` on the torch module of `target_output`, no gradient. `x` holds
    `groups` stacked versions of the same n images (integrated gradients: the images, then their
    baselines), all scored for image i's target; targets None = the predicted classes of the first
    group, taken from this forward (the one a method needs for its scores anyway)."""
    forward = model.torch_scores(target_output)
    with torch.no_grad():
        outputs = torch_batched(forward, x, batch_size=batch_size)
    n = len(x) // groups
    tt = predicted(outputs[:n]) if targets is None else targets_tensor(model, targets)
    return select_scores(outputs, tt.repeat(groups)), tt


RowBuilder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
RowTransform = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SumFinisher = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def summed_gradients(
    model: "Model",
    targets: np.ndarray,
    rows_per_image: int,
    build_rows: RowBuilder,
    *,
    batch_size: int,
    transform: RowTransform | None = None,
    row_weights: torch.Tensor | None = None,
    forward: Forward | None = None,
    finish: SumFinisher | None = None,
    target_output: str = "logit",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the sum over `rows_per_image` derived inputs of (transformed) input gradients.

    Rows are numbered image-major: row r belongs to image r // rows_per_image and is its
    (r % rows_per_image)-th derived input. `build_rows(images, rows)` makes the model inputs of a
    chunk of rows (so the N * rows_per_image inputs never exist all at once), `transform(grads, rows)`
    maps their gradients before summation (e.g. a quadrature weight, an absolute value). All rows of
    all images are cut into chunks of `batch_size`: one forward and one backward pass per chunk, no
    Python loop per step or per sample.

    `row_weights` (rows_per_image,) makes the sums weighted (a quadrature), in one pass over the
    gradients. `forward` (default: `model.torch_scores(target_output)`) is what the rows go through; when it is only the
    tail of the network (integrated gradients' affine split), rows live in its input space and
    `finish(sums, images)` maps each chunk's per-image sums back to the model input.

    Returns (sums (N, *shape), row_scores (N * rows_per_image,)). The summation order is fixed,
    so results are reproducible bit for bit for the same arguments on the same device.
    """
    forward = forward or model.torch_scores(target_output)
    n = len(targets)
    tt = targets_tensor(model, targets)
    total = torch.zeros((n, *model.spec.shape), dtype=torch.float32, device=model.torch_device)
    rows = torch.arange(n * rows_per_image, device=model.torch_device)

    def chunk(r: torch.Tensor) -> torch.Tensor:
        images = torch.div(r, rows_per_image, rounding_mode="floor")
        grads, scores, _ = grad_and_scores(forward, build_rows(images, r % rows_per_image), tt[images])
        if transform is not None:
            grads = transform(grads, r % rows_per_image)
        # Rows are image-major, so the images of a chunk are first, first + 1, ... each with a
        # contiguous run of rows: sum each run (deterministic, unlike index_add_ on CUDA).
        first = int(images[0])
        counts = torch.bincount(images - first).tolist()
        if row_weights is None:
            sums = torch.stack([run.sum(dim=0) for run in grads.split(counts)])
        else:
            weights = row_weights[r % rows_per_image].split(counts)
            sums = torch.stack([weighted_sum(w, run) for w, run in zip(weights, grads.split(counts))])
        if finish is not None:
            sums = finish(sums, torch.arange(first, first + len(counts), device=sums.device))
        total[first:first + len(counts)] += sums
        return scores

    scores = torch_batched(chunk, rows, batch_size=batch_size)
    return total, scores


def weighted_sum(weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """sum_k weights[k] * rows[k] in one pass (a matrix-vector product), without copying a
    channels-last batch into the standard layout first."""
    if rows.dim() == 4 and not rows.is_contiguous() and rows.is_contiguous(memory_format=torch.channels_last):
        return torch.tensordot(weights, rows.permute(0, 2, 3, 1), dims=1).permute(2, 0, 1)
    return torch.tensordot(weights, rows, dims=1)


def channel_reduce(a: np.ndarray, spec: "InputSpec", how: str) -> np.ndarray:
    """(N, *shape) in the model layout -> (N, H, W): 'absmax' max |a| over channels, 'signed' the
    value at the channel of largest |a| (its sign kept), 'sum' the sum over channels, 'abssum' sum of |a|."""
    axis = spec.channel_axis
    if how == "absmax":
        return np.abs(a).max(axis=axis)
    if how == "signed":
        idx = np.expand_dims(np.abs(a).argmax(axis=axis), axis)
        return np.take_along_axis(a, idx, axis=axis).squeeze(axis)
    if how == "sum":
        return a.sum(axis=axis)
    if how == "abssum":
        return np.abs(a).sum(axis=axis)
    raise ValueError(f"unknown channel reduction {how!r}")


def display_to_model(spec: "InputSpec", images: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] -> the model's preprocessed input, differentiably."""
    dev, dt = images.device, images.dtype
    mean = torch.tensor(spec.mean, device=dev, dtype=dt).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=dev, dtype=dt).view(1, -1, 1, 1)
    if spec.bgr:
        images = images.flip(1)
    x = (images * (255.0 * spec.scale) - mean) / std
    return x.permute(0, 2, 3, 1) if spec.layout == "NHWC" else x


# ---------------------------------------------------------------------------------- layers
# Element-wise, non-decreasing activations: ascending their input ascends their output.
MONOTONE_ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Clip", "HardSigmoid",
                                  "Softplus", "Celu"})


def conv_layer(model: "Model", name: str | None) -> "LayerInfo":
    """The conv layer `name` (None: the last one); a non-conv layer is a user error listing the conv layers."""
    layer = model.find_layer(name, kind="conv")
    if layer.kind != "conv":
        known = ", ".join(c.name for c in model.conv_layers()) or "none"
        raise BadInputError(f"layer {layer.name!r} is a {layer.kind} layer, not a conv layer; conv layers: {known}")
    return layer


def pre_activation(model: "Model", layer: "LayerInfo") -> str:
    """The ONNX value feeding the layer's final monotone activation, or the layer output itself
    (looked up once per layer: a graph scan costs a one-image Grad-CAM ~10%)."""
    cache = model.__dict__.setdefault("_pre_activations", {})
    if layer.output not in cache:
        node = next((n for n in model.onnx.graph.node if layer.output in n.output), None)
        cache[layer.output] = (node.input[0] if node is not None and node.op_type in MONOTONE_ACTIVATIONS
                               else layer.output)
    return cache[layer.output]


def as_nchw(act: torch.Tensor, layer: "LayerInfo") -> torch.Tensor:
    """A conv layer's value as (B, C, h, w): ONNX convs are NCHW, but a value taken after a layout
    Transpose (NHWC) is moved back."""
    if act.ndim != 4:
        raise BadInputError(f"layer {layer.name!r} outputs shape {tuple(act.shape)}, not a 4-D feature map")
    if layer.channels and act.shape[1] != layer.channels and act.shape[3] == layer.channels:
        return act.permute(0, 3, 1, 2)
    return act


LayerValues = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor, torch.Tensor]"]


def layer_values(model: "Model", layer: "LayerInfo", target_output: str | None = None) -> LayerValues:
    """x (model input) -> (model output, pre-activation, activation), the last two (B, C, h, w), all in
    one autograd graph; the output is the explained score of `target_output` when given. One module
    per layer and output (cached by the Model), whichever method asks."""
    pre = pre_activation(model, layer)
    values = [layer.output] if pre == layer.output else [pre, layer.output]
    forward = model.torch_module_with(values, target_output)

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, *values = forward(x)
        acts = [as_nchw(v, layer) for v in values]
        return out, acts[0], acts[-1]

    return run
