"""InputSpec: what a model expects, and the two-way mapping between user images and model input.

Pixel space is 0..255 (what an 8-bit image holds), colour images in RGB order. The model sees
`(pixel * scale - mean) / std` in its own layout (NCHW or NHWC) and channel count, with the colour
channels reversed first when it was trained on BGR (OpenCV's `cv2.imread` order): `channel_order`;
`mean` and `std` are then in the model's (BGR) order, as the student wrote them.
Float images whose values all lie in [0, 1] are taken as pixel / 255.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

import cv2
import numpy as np
import onnx

from .errors import BadInputError, UnsupportedModelError
from .labels import parse_labels

Layout = Literal["NCHW", "NHWC"]
ChannelOrder = Literal["RGB", "BGR"]
CHANNEL_ORDERS = ("RGB", "BGR")
_CHANNEL_COUNTS = (1, 3)


@dataclass(frozen=True)
class InputSpec:
    layout: Layout
    channels: int
    height: int
    width: int
    dynamic_batch: bool = True
    input_name: str = "input"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    labels: tuple[str, ...] | None = field(default=None)
    channel_order: ChannelOrder = "RGB"

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_onnx(
        cls,
        model: onnx.ModelProto,
        sidecar: dict[str, Any] | None = None,
        *,
        layout: str | None = None,
        input_shape: Sequence[int] | None = None,
        scale: float | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        labels: str | Sequence[str] | None = None,
        channel_order: str | None = None,
    ) -> "InputSpec":
        """Explicit arguments win over the sidecar, which wins over what the graph shows."""
        sidecar = sidecar or {}
        side_in = sidecar.get("input") or {}
        side_pre = sidecar.get("preprocessing") or {}
        inputs = graph_inputs(model)
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs) or "none"
            raise UnsupportedModelError(
                f"the model has {len(inputs)} inputs ({names}); onnxplain explains single-image-input classifiers"
            )
        value = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in value.type.tensor_type.shape.dim]
        if input_shape is not None:
            shape = [int(v) for v in input_shape]
            if len(shape) == 3:
                shape = [None, *shape]
            if len(shape) != 4:
                raise BadInputError(f"`input_shape` {list(input_shape)} must have 4 numbers (N,C,H,W or N,H,W,C)",
                                    params=("input_shape",))
            if len(dims) == 4:
                for got, want in zip(dims[1:], shape[1:]):
                    if got is not None and got != want:
                        raise BadInputError(
                            f"`input_shape` {shape[1:]} does not match the model's input {dims}; leave it out or fix it",
                            params=("input_shape",))
            dims = [dims[0] if dims else None, *shape[1:]]
        if len(dims) != 4:
            raise UnsupportedModelError(
                f"input {value.name!r} has shape {dims}; onnxplain needs a 4-D image input (N,C,H,W or N,H,W,C)"
            )
        chosen = layout or side_in.get("layout")
        chosen = _resolve_layout(dims, chosen)
        if chosen == "NCHW":
            c, h, w = dims[1], dims[2], dims[3]
        else:
            h, w, c = dims[1], dims[2], dims[3]
        h = h or side_in.get("height")
        w = w or side_in.get("width")
        c = c or side_in.get("channels")
        if not h or not w or not c:
            raise BadInputError(
                f'input {value.name!r} has dynamic size {dims}; pass input_shape="1,C,H,W" (or "1,H,W,C" for NHWC)',
                params=("input_shape",))
        if c not in _CHANNEL_COUNTS:
            raise UnsupportedModelError(f"input {value.name!r} has {c} channels; onnxplain explains 1- or 3-channel images")
        pre_scale = scale if scale is not None else side_pre.get("scale", 1.0 / 255.0)
        pre_mean = _per_channel(mean if mean is not None else side_pre.get("mean", 0.0), c, "mean")
        pre_std = _per_channel(std if std is not None else side_pre.get("std", 1.0), c, "std")
        if any(s == 0 for s in pre_std):
            raise BadInputError("`std` must not contain 0", params=("std",))
        names = parse_labels(labels) if labels is not None else parse_labels(sidecar.get("labels"))
        order = str(channel_order or side_pre.get("channel_order") or "RGB").upper()
        if order not in CHANNEL_ORDERS:
            raise BadInputError(f"channel order {order!r} is not RGB or BGR")
        return cls(
            layout=chosen, channels=int(c), height=int(h), width=int(w),
            dynamic_batch=dims[0] is None, input_name=value.name,
            scale=float(pre_scale), mean=pre_mean, std=pre_std, labels=names,
            channel_order=order if c == 3 else "RGB",  # type: ignore[arg-type]
        )

    def with_labels(self, labels: str | Sequence[str] | None) -> "InputSpec":
        return replace(self, labels=parse_labels(labels)) if labels is not None else self

    def to_sidecar(self) -> dict[str, Any]:
        """The `input`, `preprocessing` and `labels` parts of a sidecar."""
        out: dict[str, Any] = {
            "input": {"name": self.input_name, "layout": self.layout, "channels": self.channels,
                      "height": self.height, "width": self.width, "dynamic_batch": self.dynamic_batch},
            "preprocessing": self.preprocessing(),
        }
        if self.labels:
            out["labels"] = list(self.labels)
        return out

    def preprocessing(self) -> dict[str, Any]:
        """The sidecar's `preprocessing` entry (channel_order only for BGR colour models)."""
        out: dict[str, Any] = {"scale": self.scale, "mean": list(self.mean), "std": list(self.std)}
        if self.channel_order != "RGB":
            out["channel_order"] = self.channel_order
        return out

    @property
    def bgr(self) -> bool:
        return self.channels == 3 and self.channel_order == "BGR"

    # ----------------------------------------------------------------- geometry
    @property
    def channel_axis(self) -> int:
        return 1 if self.layout == "NCHW" else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-image shape in the model's layout."""
        if self.layout == "NCHW":
            return (self.channels, self.height, self.width)
        return (self.height, self.width, self.channels)

    def to_nhwc(self, x: np.ndarray) -> np.ndarray:
        """A batch in the model's layout as (N, H, W, C) (a view when the model is NHWC or NCHW alike)."""
        return x if self.layout == "NHWC" else x.transpose(0, 2, 3, 1)

    def from_nhwc(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W, C) back to the model's layout, C-contiguous."""
        return np.ascontiguousarray(x if self.layout == "NHWC" else x.transpose(0, 3, 1, 2))

    def label(self, index: int) -> str:
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return str(index)

    def class_index(self, target: int | str, n_classes: int | None = None) -> int:
        """A class index from an int, a digit string or a label name (case-insensitive)."""
        if isinstance(target, (int, np.integer)):
            idx = int(target)
        elif isinstance(target, str) and target.strip().lstrip("-").isdigit():
            idx = int(target)
        else:
            lowered = [n.lower() for n in (self.labels or ())]
            if str(target).lower() not in lowered:
                known = ", ".join(self.labels) if self.labels else "none (give `labels`)"
                raise BadInputError(f"unknown class {target!r}; known labels: {known}", params=("labels",))
            idx = lowered.index(str(target).lower())
        limit = n_classes if n_classes is not None else (len(self.labels) if self.labels else None)
        if idx < 0 or (limit is not None and idx >= limit):
            raise BadInputError(f"class index {idx} is out of range; the model has {limit} classes (0..{(limit or 1) - 1})")
        return idx

    # ----------------------------------------------------------------- images <-> model input
    def to_pixels(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """User images of any size/colour/dtype -> float32 (N, H, W, C) pixels in 0..255 at model size."""
        if isinstance(images, np.ndarray) and images.ndim in (2, 3) and not _is_batch(images, self):
            images = [images]
        out = np.empty((len(images), self.height, self.width, self.channels), dtype=np.float32)
        for i, img in enumerate(images):
            out[i] = self._one_to_pixels(np.asarray(img), i)
        return out

    def _one_to_pixels(self, img: np.ndarray, index: int) -> np.ndarray:
        if img.ndim == 3 and img.shape[0] in _CHANNEL_COUNTS and img.shape[-1] not in _CHANNEL_COUNTS:
            img = np.transpose(img, (1, 2, 0))  # CHW array from a torch user
        if img.ndim == 3 and img.shape[-1] == 4:
            img = img[..., :3]  # drop alpha
        if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in _CHANNEL_COUNTS):
            raise BadInputError(
                f"image {index} has shape {img.shape}; expected HxW, HxWx1 or HxWx3 (or CxHxW)"
            )
        if img.size == 0:
            raise BadInputError(f"image {index} is empty")
        if img.dtype == np.uint8:
            pix = img.astype(np.float32)
        elif img.dtype == np.uint16:
            pix = img.astype(np.float32) / 257.0
        else:
            pix = img.astype(np.float32)
            if not np.all(np.isfinite(pix)):
                raise BadInputError(f"image {index} contains NaN or infinite values")
            if pix.min() >= 0.0 and pix.max() <= 1.0:
                pix = pix * 255.0
        if pix.ndim == 3 and pix.shape[-1] == 1:
            pix = pix[..., 0]
        if pix.shape[:2] != (self.height, self.width):
            inter = cv2.INTER_AREA if pix.shape[0] > self.height else cv2.INTER_LINEAR
            pix = cv2.resize(pix, (self.width, self.height), interpolation=inter)
        if pix.ndim == 2:
            pix = pix[..., None]
        if pix.shape[-1] == 3 and self.channels == 1:
            pix = cv2.cvtColor(pix, cv2.COLOR_RGB2GRAY)[..., None]
        elif pix.shape[-1] == 1 and self.channels == 3:
            pix = np.repeat(pix, 3, axis=-1)
        return pix

    def pixels_to_model(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, C) pixels 0..255 (RGB) -> float32 model input in the model's layout and channel order."""
        if self.bgr:
            pixels = pixels[..., ::-1]
        x = (pixels.astype(np.float32) * np.float32(self.scale) - np.asarray(self.mean, np.float32)) / np.asarray(
            self.std, np.float32
        )
        x = x if self.layout == "NHWC" else x.transpose(0, 3, 1, 2)  # (from_nhwc would copy twice)
        # A fresh C-order copy: ascontiguousarray keeps odd strides on a size-1 channel axis, which torch
        # then reads as channels_last, and a student's x.view(-1, n) fails on it.
        return np.array(x, dtype=np.float32, order="C", copy=True)

    def to_model_input(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        return self.pixels_to_model(self.to_pixels(images))

    def model_to_pixels(self, x: np.ndarray) -> np.ndarray:
        """Model input -> (N, H, W, C) float32 pixels 0..255 (clipped), for display."""
        x = self.to_nhwc(np.asarray(x, dtype=np.float32))
        pix = (x * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)) / np.float32(self.scale)
        if self.bgr:
            pix = pix[..., ::-1]
        return np.clip(pix, 0.0, 255.0)

    def to_display(self, x: np.ndarray) -> np.ndarray:
        """Model input -> (N, H, W, C) float32 in [0, 1] for renderers."""
        return self.model_to_pixels(x) / 255.0

    def check_model_input(self, x: np.ndarray) -> np.ndarray:
        """Validate an already-preprocessed batch (e.g. from a `.npy`) against the model's shape."""
        x = np.asarray(x)
        if x.ndim == 3 and x.shape == self.shape:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise BadInputError(f"input batch has shape {tuple(x.shape)}; the model expects (N, {', '.join(map(str, self.shape))})")
        return np.ascontiguousarray(x, dtype=np.float32)


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: graph inputs that are not initializers (old exporters list weights as inputs)."""
    init = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init]


def _resolve_layout(dims: list[int | None], chosen: str | None) -> Layout:
    if chosen is not None:
        chosen = chosen.upper()
        if chosen not in ("NCHW", "NHWC"):
            raise BadInputError(f"layout {chosen!r} is not NCHW or NHWC")
        return chosen  # type: ignore[return-value]
    first, last = dims[1], dims[3]
    first_is_c = first in _CHANNEL_COUNTS
    last_is_c = last in _CHANNEL_COUNTS
    if first_is_c and not last_is_c:
        return "NCHW"
    if last_is_c and not first_is_c:
        return "NHWC"
    raise BadInputError(
        f'cannot tell the layout of input shape {dims} (channels first or last?); pass layout="NCHW" or layout="NHWC"',
        params=("layout",))


def _per_channel(value: Sequence[float] | float, channels: int, what: str) -> tuple[float, ...]:
    vals = [float(value)] if np.isscalar(value) else [float(v) for v in value]  # type: ignore[arg-type]
    if len(vals) == 1:
        return tuple(vals * channels)
    if len(vals) != channels:
        raise BadInputError(f"`{what}` has {len(vals)} values but the model has {channels} channels", params=(what,))
    return tuple(vals)


def _is_batch(arr: np.ndarray, spec: InputSpec) -> bool:
    """A 3-D array is a batch of gray images when it is not a single HxWxC / CxHxW image.

    A last axis of 1-4 is a channel axis (gray, gray+alpha, RGB, RGBA: an HxWx4 image is one image,
    never 'H images 4 pixels wide'); a first axis of 1 or 3 is a CxHxW image. So (3, H, W) means
    one RGB image, not three gray ones: pass a list to mean three images.
    """
    if arr.ndim != 3:
        return False
    return arr.shape[-1] > 4 and arr.shape[0] not in _CHANNEL_COUNTS
