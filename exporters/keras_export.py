"""Keras -> ONNX, in the child process only (this module imports TensorFlow).

Keras 1/2 `.h5` files load with tf_keras (Keras 2 semantics: Keras 3 cannot read some of them);
Keras 3 `.keras` and Keras-3-written `.h5` files load with Keras 3. Both convert with tf2onnx at
opset 17 with a fixed height and width (unknown sizes make tf2onnx emit `auto_pad=SAME_UPPER`,
which onnx2torch rejects); the batch axis stays dynamic. The model config is checked for Lambda
and custom layers before anything is deserialised (keras_config.py).
"""
from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from onnxplain.engine.errors import BadInputError, ConversionError, UnsupportedModelError, first_line

from . import keras1, sniff
from .flat_input import flat_forward, image_shape_for, with_image_input
from .keras_config import check_config, is_container, is_keras3_config, parse_config, read_arch_file
from .keras_names import rename_layers, restore_names
from .options import ExportOptions
from .result import Exported
from .source_summary import keras_summary

log = logging.getLogger(__name__)

OPSET = 17


def export_keras(src: Path, fmt: str, options: ExportOptions) -> Exported:
    """Load a Keras file without running code from it (unless trusted) and convert it to ONNX."""
    if fmt == sniff.KERAS3:
        model, source, flavour = _load_keras3_zip(src, options)
    else:
        model, source, flavour = _load_h5(src, options)
    _build_if_needed(model, options, src.name)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(
            f"{src.name} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "onnxplain explains single-input, single-output image classifiers"
        )
    summary = keras_summary(model, keras3=flavour == "keras3")
    if len(model.inputs[0].shape) == 2:
        return _export_flat(model, options, src.name, source, flavour, summary)
    layout = _layout(model)
    shape = _input_shape(model, layout, options, src.name)
    proto, layer_names = _convert(model, shape, flavour, src.name)
    return Exported(
        onnx=proto,
        forward=_forward(model),
        layout=layout,
        source=source,
        converter={"name": "tf2onnx", "opset": OPSET, "input_shape": [None, *shape[1:]], "loader": flavour},
        layer_names=layer_names,
        summary=summary,
    )


def _export_flat(model: Any, options: ExportOptions, name: str, source: dict[str, Any], flavour: str,
                 summary: dict[str, Any]) -> Exported:
    """A plain DNN on flattened pixels (the course's CNN-vs-DNN comparison): the ONNX file takes the
    image (N, H, W, C) and flattens it row by row, as `x.reshape(-1, H*W*C)` does, so every method
    and report treats it as an image model."""
    size = model.inputs[0].shape[1]
    if size is None:
        raise UnsupportedModelError(f"{name} takes input of shape (None, None), not an image or a flattened image")
    hwc = image_shape_for(int(size), options.input_shape, name)
    proto, layer_names = _convert(model, (None, int(size)), flavour, name)
    return Exported(
        onnx=with_image_input(proto, hwc),
        forward=flat_forward(_forward(model)),
        layout="NHWC",
        source=source,
        converter={"name": "tf2onnx", "opset": OPSET, "input_shape": [None, *hwc], "loader": flavour,
                   "flat_input": int(size)},
        layer_names=layer_names,
        summary=summary,
    )


_used: set[str] = set()  # which Keras flavours the current request touched


def cleanup() -> None:
    """Drop the Keras graphs of the last export so a long-lived worker does not grow. Only the flavours
    used are cleared: Keras 3's clear_session runs a full gc.collect (~1 s with TF and torch loaded)."""
    if "tf_keras" in _used:
        _tf_keras(False).backend.clear_session()
    if "keras3" in _used:
        _keras3(False).backend.clear_session()
    _used.clear()


# ----------------------------------------------------------------------------- loading
def _load_h5(src: Path, options: ExportOptions) -> tuple[Any, dict[str, Any], str]:
    import h5py

    try:
        with h5py.File(src, "r") as fh:
            attrs = fh.attrs
            version = _text(attrs.get("keras_version"))
            backend = _text(attrs.get("backend"))
            config_text = attrs.get("model_config")
            has_weights = "layer_names" in attrs or "model_weights" in fh
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError... on damaged files
        raise UnsupportedModelError(f"{src.name} is a damaged or truncated HDF5 file ({first_line(exc)})") from exc
    source: dict[str, Any] = {"framework": "keras", "framework_version": version, "backend": backend}
    if config_text is None:
        if not has_weights:
            raise UnsupportedModelError(
                f"{src.name} is an HDF5 file but holds no Keras model (no model_config, no weights)"
            )
        if options.arch is None:
            raise UnsupportedModelError(
                f"{src.name} holds Keras weights but no architecture (saved with save_weights); pass the model's "
                "architecture with arch='model.json' (the output of model.to_json())", params=("arch",))
        config = read_arch_file(options.arch)
        keras3 = is_keras3_config(config, version)
        check_config(config, trust=options.trust, what=f"`arch` {Path(options.arch).name}", known=_known(keras3))
        model = _guarded(src, lambda: _from_config(config, keras3, options.trust))
        _guarded(src, lambda: model.load_weights(str(src)), what="the weights do not fit `arch`",
                 params=("arch",))
        source.update(serialization="h5 weights + architecture", arch=options.arch)
        return model, source, "keras3" if keras3 else "tf_keras"
    config = parse_config(config_text, src.name)
    if keras1.is_keras1(config, version):
        return _load_keras1(src, config, backend, options, source)
    keras3 = is_keras3_config(config, version)
    check_config(config, trust=options.trust, what=src.name, known=_known(keras3))
    if options.arch is not None:
        log.warning("%s holds its own architecture; --arch %s is ignored", src.name, options.arch)
    source["serialization"] = "h5 full model"
    if keras3:
        keras = _keras3(options.trust)
        model = _guarded(src, lambda: keras.saving.load_model(str(src), compile=False, safe_mode=not options.trust))
        return model, source, "keras3"
    tf_keras = _tf_keras(options.trust)
    model = _guarded(src, lambda: tf_keras.models.load_model(str(src), compile=False))
    if backend == "theano":  # Keras 2 on Theano: its convolution flips kernels, TensorFlow's does not
        source["kernels_flipped"] = keras1.flip_theano_kernels(model)
    return model, source, "tf_keras"


def _load_keras1(src: Path, config: dict[str, Any], backend: str, options: ExportOptions,
                 source: dict[str, Any]) -> tuple[Any, dict[str, Any], str]:
    """A Keras 1 full model: its config in Keras 2 terms, built with tf_keras, its weights converted."""
    import h5py

    translated, ordering = _guarded(src, lambda: keras1.translate(config))
    check_config(translated, trust=options.trust, what=src.name, known=_known(False))
    theano = backend == "theano" or (not backend and ordering == "th")
    model = _guarded(src, lambda: _from_config(translated, False, options.trust))
    with h5py.File(src, "r") as fh:
        _guarded(src, lambda: keras1.load_weights(model, fh, theano=theano), what="the Keras 1 weights do not load")
    source.update(serialization="h5 full model (Keras 1, translated to Keras 2)",
                  backend=backend or ("theano (assumed: Keras 1 files do not record it; dim_ordering th)" if theano
                                      else "tensorflow (assumed: Keras 1 files do not record it)"),
                  kernels_flipped=theano)
    return model, source, "tf_keras"


def _load_keras3_zip(src: Path, options: ExportOptions) -> tuple[Any, dict[str, Any], str]:
    try:
        with zipfile.ZipFile(src) as zf:
            config_text = zf.read("config.json")
            meta = json.loads(zf.read("metadata.json")) if "metadata.json" in zf.namelist() else {}
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError) as exc:
        raise UnsupportedModelError(f"{src.name} is a damaged Keras 3 archive ({first_line(exc)})") from exc
    config = parse_config(config_text, src.name)
    check_config(config, trust=options.trust, what=src.name, known=_known(True))
    keras = _keras3(options.trust)
    model = _guarded(src, lambda: keras.saving.load_model(str(src), compile=False, safe_mode=not options.trust))
    source = {"framework": "keras", "framework_version": str(meta.get("keras_version", "")),
              "serialization": "keras3 zip"}
    return model, source, "keras3"


def _from_config(config: dict[str, Any], keras3: bool, trust: bool) -> Any:
    text = json.dumps(config)
    if keras3:
        return _keras3(trust).models.model_from_json(text)
    return _tf_keras(trust).models.model_from_json(text)


def _guarded(src: Path, action: Any, what: str | None = None, params: tuple[str, ...] = ()) -> Any:
    """Run a Keras loading step; its failure is the user's file, reported on one line."""
    try:
        return action()
    except (ConversionError, UnsupportedModelError, BadInputError):
        raise
    except Exception as exc:
        reason = what or "Keras cannot rebuild the model"
        raise UnsupportedModelError(f"{src.name}: {reason}: {first_line(exc)}", params=params) from exc


def _tf_keras(trust: bool) -> Any:
    import tf_keras

    _used.add("tf_keras")
    config = getattr(tf_keras, "config", None)
    if trust and hasattr(config, "enable_unsafe_deserialization"):
        config.enable_unsafe_deserialization()
    return tf_keras


def _keras3(trust: bool) -> Any:
    import keras

    _used.add("keras3")
    if trust:
        keras.config.enable_unsafe_deserialization()
    return keras


def _known(keras3: bool) -> Any:
    """Predicate: is this layer config a class Keras itself provides?"""
    if keras3:
        import keras

        layers = keras.layers

        def known3(layer: dict[str, Any]) -> bool:
            module = str(layer.get("module") or "keras")
            name = str(layer.get("class_name"))
            return module.startswith("keras") and (is_container(layer) or hasattr(layers, name))

        return known3
    import tf_keras

    def known2(layer: dict[str, Any]) -> bool:
        return is_container(layer) or hasattr(tf_keras.layers, str(layer.get("class_name")))

    return known2


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


# ----------------------------------------------------------------------------- input shape
def _build_if_needed(model: Any, options: ExportOptions, name: str) -> None:
    """A Sequential saved without any input shape has no inputs until built; --input-shape builds it."""
    try:
        if model.inputs:
            return
    except AttributeError:
        pass
    if options.input_shape is None:
        raise BadInputError(f"{name} does not record its input size; pass input_shape='1,48,48,1' (N,H,W,C)",
                            params=("input_shape",))
    model.build((None, *options.input_shape[1:]))


def _all_layers(model: Any) -> list[Any]:
    out: list[Any] = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def _layout(model: Any) -> str:
    formats = {getattr(layer, "data_format", None) for layer in _all_layers(model)}
    return "NCHW" if "channels_first" in formats else "NHWC"


def _input_shape(model: Any, layout: str, options: ExportOptions, name: str) -> tuple[Any, ...]:
    """(None, H, W, C) or (None, C, H, W) with every image dimension fixed."""
    dims = tuple(model.inputs[0].shape)
    if len(dims) != 4:
        raise UnsupportedModelError(
            f"{name} takes input of shape {_fmt(dims)}, not an image batch (N,H,W,C); onnxplain explains image models"
        )
    known = [int(d) if d is not None else None for d in dims[1:]]
    if options.input_shape is not None:
        given = list(options.input_shape[1:])
        channel_at = 2 if layout == "NHWC" else 0
        c = known[channel_at]
        if layout == "NHWC" and c is not None and given[0] == c and given[2] != c:
            given = [given[1], given[2], given[0]]  # the user gave N,C,H,W for a channels-last model
        for got, want in zip(known, given):
            if got is not None and got != want:
                raise BadInputError(
                    f"`input_shape` {list(options.input_shape)} does not match the model's input {_fmt(dims)}",
                    params=("input_shape",))
        known = given
    data = options.data_shape
    if any(d is None for d in known) and data is not None and data[1] > 0:  # the size of the data it is fed
        h_at, w_at = (0, 1) if layout == "NHWC" else (1, 2)
        known = list(known)
        known[h_at] = known[h_at] if known[h_at] is not None else data[1]
        known[w_at] = known[w_at] if known[w_at] is not None else data[2]
    if any(d is None for d in known):
        example = "1,48,48,1 (N,H,W,C)" if layout == "NHWC" else "1,1,48,48 (N,C,H,W)"
        raise BadInputError(
            f"{name} accepts images of any size {_fmt(dims)}; the export needs a fixed one: "
            f"pass input_shape='{example}'", params=("input_shape",))
    return (None, *known)


def _fmt(dims: tuple[Any, ...]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in dims) + ")"


# ----------------------------------------------------------------------------- conversion
def _convert(model: Any, shape: tuple[Any, ...], flavour: str, name: str) -> tuple[Any, dict[str, str]]:
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec(shape, tf.float32, name="input"),)
    tokens = rename_layers(_all_layers(model), keras3=flavour == "keras3")
    try:
        if flavour == "keras3":
            function = tf.function(lambda x: model(x, training=False))
            proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=OPSET)
        else:
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    except (ConversionError, UnsupportedModelError, BadInputError):
        raise
    except Exception as exc:
        raise ConversionError(f"tf2onnx cannot convert {name}: {first_line(exc)}") from exc
    finally:
        tokens.restore()
    return proto, restore_names(proto, tokens.names)


def _forward(model: Any) -> Any:
    def run(x: np.ndarray) -> np.ndarray:
        out = model(x, training=False)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return np.asarray(out)

    return run
