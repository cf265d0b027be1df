"""Flat-input models (a DNN on `x.reshape(-1, H*W*C)`) as image models.

The course's plain DNN takes the 2,304 pixels of a 48x48 face as one vector. onnxplain explains
images, so the exported graph gets a new image input (N, H, W, C) and a Reshape to (N, H*W*C) in
front of the original one: row-major, channels last, which is how a FER2013 `feature` string or a
flattened image array is laid out. The image size comes from `--input-shape` (Keras) or, for a
square image, from the vector's length (2,304 = 48x48 gray, 784 = 28x28, 6,912 = 48x48x3). Both
exporters use it: Keras models whose input is (None, K), PyTorch modules exported with
`--input-shape 1,K`.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxplain.engine.errors import BadInputError


def image_shape_for(size: int, input_shape: Sequence[int] | None, name: str,
                    hint: str = "pass input_shape='1,H,W,C' for the image it flattens") -> tuple[int, int, int]:
    """(H, W, C) of the image whose row-major flattening has `size` values (`hint`: what to do if unsure)."""
    if input_shape is not None and len(input_shape) == 2:  # 1,K: the vector, not the image
        if int(input_shape[1]) != size:
            raise BadInputError(f"`input_shape` {list(input_shape)} does not match the {size} values {name} takes",
                                params=("input_shape",))
    elif input_shape is not None:
        hwc = tuple(int(d) for d in input_shape[1:])
        if len(hwc) != 3 or math.prod(hwc) != size:
            raise BadInputError(f"`input_shape` {list(input_shape)} does not flatten to the {size} values {name} "
                                f"takes per image; give N,H,W,C with H*W*C = {size}", params=("input_shape",))
        return hwc  # type: ignore[return-value]
    for channels in (1, 3):
        side = math.isqrt(size // channels)
        if size % channels == 0 and side * side * channels == size:
            return side, side, channels
    raise BadInputError(f"{name} takes {size} values per image, not a square gray or colour image; {hint}",
                        params=("input_shape",))


def with_image_input(model: onnx.ModelProto, hwc: tuple[int, int, int]) -> onnx.ModelProto:
    """A copy of `model` whose single flat input is fed by Reshape(image (N, H, W, C))."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    initializers = {init.name for init in graph.initializer}
    (flat,) = [i for i in graph.input if i.name not in initializers]
    elem_type = flat.type.tensor_type.elem_type
    size = int(np.prod(hwc))
    image_name = f"{flat.name}__image"  # derived from the flat input's name: no clash with the graph's values
    shape_name = f"{flat.name}__flatten_shape"
    graph.initializer.append(numpy_helper.from_array(np.array([-1, size], np.int64), shape_name))
    graph.node.insert(0, helper.make_node("Reshape", [image_name, shape_name], [flat.name],
                                          name=f"{flat.name}__flatten"))
    image = helper.make_tensor_value_info(image_name, elem_type, ["N", *hwc])
    position = list(graph.input).index(flat)
    graph.input.remove(flat)
    graph.input.insert(position, image)
    onnx.checker.check_model(out)
    return out


def flat_forward(forward: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """The source model's forward on images (N, H, W, C), flattened row by row as the ONNX file does."""
    return lambda x: forward(np.ascontiguousarray(x).reshape(len(x), -1))
