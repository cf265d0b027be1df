"""Forward-only methods' shared loop: many perturbed copies of each image, built batch by batch and
evaluated through onnxruntime.

A method describes its perturbations of image i, numbers a..b, through `build(i, a, b)`, which
returns those (b - a) model inputs. Batches run over the flat range images x perturbations, so a
batch may span several images (many small images fill a batch as well as one image does).

Arrays live where the model runs (`Arrays`): on cpu in numpy, fed to `Model.predict`; on cuda in
torch tensors on the GPU, fed to `Model.predict_tensor` (onnxruntime IO binding), so perturbed
batches never cross to the host and only the (N, classes) outputs come back. Measured on a 2-core
CPU, building a batch with numpy fancy indexing costs ~1 ms per 256 48x48 images, torch's CPU
indexing ~25-60 ms, hence numpy there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .batching import batch_slices

if TYPE_CHECKING:
    from .model import Model

Array = Any  # np.ndarray on cpu, torch.Tensor on the model's cuda device
# Forward-only methods run at most 1024 rows per batch (LIME's 1000 samples of a 48x48 image in one
# onnxruntime call); without a caller's batch_size, each model runs at its own fastest batch size up
# to that, measured once (Model.forward_batch_size). Big inputs are capped so that a batch holds at
# most 64 MiB of model input (64x64x3: 1365 rows, 224x224x3: 111), whatever batch_size asks for.
DEFAULT_BATCH_SIZE = 1024
MAX_BATCH_BYTES = 64 * 1024 * 1024
BuildFn = Callable[[int, int, int], Array]


@dataclass(frozen=True)
class Arrays:
    """The few array operations the perturbation builders need, in numpy or in torch on a device."""

    model: "Model"
    torch: bool

    def put(self, a: np.ndarray, dtype: Any = None) -> Array:
        """A host array where the builders work (a read-only view is copied)."""
        a = np.ascontiguousarray(a, dtype=dtype)
        if not self.torch:
            return a
        import torch

        return torch.from_numpy(a if a.flags.writeable else a.copy()).to(self.model.torch_device)

    def take_columns(self, a: Array, index: Array) -> Array:
        """a[:, index], C-contiguous (numpy's fancy `a[:, index]` comes out column-major, which made
        every later step copy: ~50 ms per 1000 LIME images on the busy 2-core CPU)."""
        if self.torch:
            return a.index_select(1, index)
        return np.take(a, index, axis=1)

    def where(self, cond: Array, a: Array, b: Array) -> Array:
        if self.torch:
            import torch

            return torch.where(cond, a, b)
        return np.where(cond, a, b)

    def cat(self, parts: Sequence[Array]) -> Array:
        if len(parts) == 1:
            return parts[0]
        if self.torch:
            import torch

            return torch.cat(list(parts))
        return np.concatenate(parts)

    def predict(self, batch: Array, batch_size: int) -> np.ndarray:
        return self.model.predict_tensor(batch, batch_size) if self.torch else self.model.predict(batch, batch_size)

    def channel_mask(self, mask: Array) -> Array:
        """(B, H, W) mask -> broadcastable against (B, *spec.shape) in the model's layout."""
        if self.model.spec.layout == "NCHW":
            return mask[:, None]
        return mask[..., None]


def arrays_for(model: "Model") -> Arrays:
    """numpy on cpu, torch on the model's device (IO binding) on cuda."""
    return Arrays(model, torch=model.device_kind == "cuda")


def batch_for(model: "Model", batch_size: int) -> int:
    """`batch_size`, capped so that one batch of model input stays within MAX_BATCH_BYTES."""
    per_image = 4 * int(np.prod(model.spec.shape))
    return max(1, min(int(batch_size), MAX_BATCH_BYTES // per_image))


def predict_perturbed(arrays: Arrays, n_images: int, per_image: int, build: BuildFn, batch_size: int) -> np.ndarray:
    """Outputs (n_images, per_image, classes) float32 of every perturbed input `build` makes, in
    batches of `batch_for(model, batch_size)` rows."""
    model = arrays.model
    batch_size = batch_for(model, batch_size)
    total = n_images * per_image
    out = np.empty((total, model.n_classes), dtype=np.float32)
    for s in batch_slices(total, batch_size):
        parts, pos = [], s.start
        while pos < s.stop:
            i, a = divmod(pos, per_image)
            b = min(per_image, a + s.stop - pos)
            parts.append(build(i, a, b))
            pos += b - a
        out[s] = arrays.predict(arrays.cat(parts), batch_size)
    return out.reshape(n_images, per_image, model.n_classes)

