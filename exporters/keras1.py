"""Keras 1 files (2016-2017 homework): the config rewritten in Keras 2 terms, the weights converted.

Keras 2 renamed most layer arguments (`nb_filter` -> `filters`, `border_mode` -> `padding`,
`dim_ordering: th` -> `data_format: channels_first`...), and today's Keras cannot read the old names, so
such a file fails to load at all. The rewrite covers the layers of image classifiers of that time; a
layer it does not know is refused by name. Weights are read from the file with h5py and converted the
way Keras 2's own loader did: `th` kernels (filters, in, rows, cols) become (rows, cols, in, filters),
and kernels trained with Theano, whose convolution flips the kernel, are flipped. Keras 1 files do not
record their backend; `th` ordering was Theano's (its default), so a `th` model is taken as Theano
unless the file says otherwise, and the sidecar says which was assumed. Regularizers, constraints and
initialisers do not change inference and are dropped.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator

import numpy as np

from onnxplain.engine.errors import UnsupportedModelError

_RENAMED = {
    "Convolution2D": "Conv2D", "Convolution1D": "Conv1D", "AtrousConvolution2D": "Conv2D",
    "SeparableConvolution2D": "SeparableConv2D",
}
_SUPPORTED = frozenset({
    "Conv2D", "Conv1D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Dense",
    "Dropout", "SpatialDropout2D", "Activation", "Flatten", "Reshape", "Permute", "BatchNormalization", "InputLayer",
    "LeakyReLU", "PReLU", "ELU", "GaussianNoise", "GaussianDropout",
})
_ARG_NAMES = {
    "nb_filter": "filters", "subsample": "strides", "border_mode": "padding", "bias": "use_bias",
    "output_dim": "units", "input_dtype": "dtype", "atrous_rate": "dilation_rate", "sigma": "stddev",
}
_DROPPED = ("init", "inner_init", "W_regularizer", "b_regularizer", "activity_regularizer", "W_constraint",
            "b_constraint", "gamma_regularizer", "beta_regularizer", "depthwise_regularizer",
            "pointwise_regularizer", "depthwise_constraint", "pointwise_constraint", "mode", "input_length")
_KEYWORDS = frozenset({"nb_filter", "nb_row", "border_mode", "dim_ordering", "output_dim", "subsample", "W_regularizer"})
_ORDERING = {"th": "channels_first", "tf": "channels_last"}


def is_keras1(config: dict[str, Any], file_version: str = "") -> bool:
    """Saved by Keras 1? The version stamp says so, or (files without one) the Keras 1 argument names."""
    if file_version:
        return file_version.startswith("1")
    return any(_KEYWORDS & set(_inner(layer)) for layer in _layers(config))


def translate(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(Keras 2 config, the dim_ordering it used: th or tf)."""
    out = copy.deepcopy(config)
    orderings: set[str] = set()
    for layer in _layers(out):
        name = str(layer.get("class_name"))
        inner = _inner(layer)
        if name in ("Sequential", "Model"):
            continue
        if name == "Merge":
            raise UnsupportedModelError("the Keras 1 Merge layer is not supported; save the model with Keras 2")
        layer["class_name"] = name = _RENAMED.get(name, name)
        if name not in _SUPPORTED:
            raise UnsupportedModelError(f"the Keras 1 layer {name} is not one onnxplain can translate")
        if name == "BatchNormalization" and inner.get("mode", 0) != 0:
            raise UnsupportedModelError(f"Keras 1 BatchNormalization mode {inner['mode']} has no Keras 2 equivalent")
        ordering = inner.pop("dim_ordering", None)
        if ordering is not None:
            orderings.add(ordering)
            if name not in ("Flatten",):  # Flatten flattens the tensor as it is, as Keras 1 did
                inner["data_format"] = _ORDERING.get(ordering, "channels_first")
        if "nb_row" in inner:
            inner["kernel_size"] = [inner.pop("nb_row"), inner.pop("nb_col")]
        if name == "Conv1D" and "filter_length" in inner:
            inner["kernel_size"] = inner.pop("filter_length")
        if name in ("Dropout", "SpatialDropout2D", "GaussianDropout") and "p" in inner:
            inner["rate"] = inner.pop("p")
        if name == "LeakyReLU" and "alpha" in inner:
            inner["alpha"] = float(inner["alpha"])
        for old, new in _ARG_NAMES.items():
            if old in inner:
                inner[new] = inner.pop(old)
        for key in _DROPPED:
            inner.pop(key, None)
        if "input_dim" in inner:
            dim = inner.pop("input_dim")
            if dim is not None and "batch_input_shape" not in inner:
                inner["batch_input_shape"] = [None, dim]
    ordering = "th" if orderings <= {"th", "default"} and orderings else "tf"
    return out, ordering


def load_weights(model: Any, h5: Any, *, theano: bool) -> None:
    """Set every layer's weights from a Keras 1 file (h5py File), converting kernels to Keras 2."""
    group = h5["model_weights"] if "model_weights" in h5 else h5
    for layer in _model_layers(model):
        if not layer.weights:
            continue
        if layer.name not in group:
            raise UnsupportedModelError(f"the file holds no weights for layer {layer.name}")
        g = group[layer.name]
        names = [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
        values = [np.asarray(g[n]) for n in names]
        kind = type(layer).__name__
        if kind in ("Conv2D", "SeparableConv2D") and values:
            values = _convert_kernels(layer, values, theano)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise UnsupportedModelError(f"layer {layer.name}: the file's weights {got} do not fit {expected}")
        layer.set_weights(values)


_FLIPPED_BY_THEANO = ("Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose")  # what Keras 2's own loader flipped


def flip_theano_kernels(model: Any) -> bool:
    """Flip the spatial axes of the kernels of a Keras 2 model saved on Theano (its `backend` attribute),
    as Keras 2.0-2.3 did when loading such a file under TensorFlow; today's loaders no longer do."""
    flipped = False
    for layer in _model_layers(model):
        if type(layer).__name__ in _FLIPPED_BY_THEANO and layer.get_weights():
            values = layer.get_weights()
            k = values[0]
            values[0] = np.ascontiguousarray(k[(slice(None, None, -1),) * (k.ndim - 2)])
            layer.set_weights(values)
            flipped = True
    return flipped


def _convert_kernels(layer: Any, values: list[np.ndarray], theano: bool) -> list[np.ndarray]:
    """Keras 1 `th` kernels are (filters, in, rows, cols); Keras 2 wants (rows, cols, in, filters).
    A Theano convolution flips its kernel, TensorFlow's does not: flip when the file came from Theano."""
    out = list(values)
    kernel_count = 2 if type(layer).__name__ == "SeparableConv2D" else 1
    for i in range(kernel_count):
        k = out[i]
        if k.ndim == 4 and tuple(k.shape[2:]) == tuple(layer.kernel_size) and k.shape[:2] != tuple(layer.kernel_size):
            k = np.transpose(k, (2, 3, 1, 0))
        if theano:
            k = k[::-1, ::-1, :, :]
        out[i] = np.ascontiguousarray(k)
    return out


def _layers(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from .keras_config import layer_configs

    yield from layer_configs(config)


def _inner(layer: dict[str, Any]) -> dict[str, Any]:
    inner = layer.get("config")
    return inner if isinstance(inner, dict) else {}


def _model_layers(model: Any) -> Iterator[Any]:
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _model_layers(layer)
        else:
            yield layer
