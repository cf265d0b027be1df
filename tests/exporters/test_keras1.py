"""Keras 1 files: the real 2016 Theano homework model (zoo k06) exports, and what it computes is what
Theano computed, checked against a forward pass written here from the file's raw weights."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from onnxplain.exporters import ExportWorker, export
from onnxplain.exporters.keras1 import is_keras1, translate
from tests.conftest import zoo_path
from tests.exporters.export_helpers import onnx_outputs, read_sidecar


def _theano_forward(path: Path, x: np.ndarray, flip: bool = True) -> np.ndarray:
    """k06 as Keras 1 on Theano ran it: `th` ordering, true convolution (the kernel flipped), flatten in
    (C, H, W) order, softmax at the end. Written from the config's layer list, not from any converter."""
    with h5py.File(path, "r") as fh:
        config = json.loads(fh.attrs["model_config"])
        weights = {name: {w: np.asarray(fh["model_weights"][name][w]) for w in fh["model_weights"][name]}
                   for name in fh["model_weights"]}
    t = torch.from_numpy(x)
    for layer in config["config"]:
        kind, cfg = layer["class_name"], layer["config"]
        w = weights.get(cfg["name"], {})
        if kind == "Convolution2D":
            kernel = torch.from_numpy(w[cfg["name"] + "_W"])
            kernel = kernel.flip(2, 3) if flip else kernel  # Theano convolves: the kernel is flipped
            t = F.conv2d(t, kernel, torch.from_numpy(w[cfg["name"] + "_b"]), padding=cfg["nb_row"] // 2)
            t = F.relu(t) if cfg["activation"] == "relu" else t
        elif kind == "MaxPooling2D":
            t = F.max_pool2d(t, cfg["pool_size"], cfg["strides"])
        elif kind == "Flatten":
            t = t.reshape(t.shape[0], -1)
        elif kind == "Dense":
            t = t @ torch.from_numpy(w[cfg["name"] + "_W"]) + torch.from_numpy(w[cfg["name"] + "_b"])
        elif kind == "Activation":
            t = {"relu": F.relu, "linear": lambda v: v, "softmax": lambda v: F.softmax(v, dim=1)}[cfg["activation"]](t)
        elif kind != "Dropout":
            raise AssertionError(f"the reference does not know {kind}")
    return t.numpy()


def test_translation_of_the_config() -> None:
    with h5py.File(zoo_path("k06"), "r") as fh:
        config = json.loads(fh.attrs["model_config"])
        version = fh.attrs["keras_version"]
    assert is_keras1(config, version.decode() if isinstance(version, bytes) else str(version))
    translated, ordering = translate(config)
    assert ordering == "th"
    conv = translated["config"][0]
    assert conv["class_name"] == "Conv2D" and conv["config"]["filters"] == 64
    assert conv["config"]["kernel_size"] == [5, 5] and conv["config"]["padding"] == "same"
    assert conv["config"]["data_format"] == "channels_first" and "W_regularizer" not in conv["config"]
    dense = next(layer for layer in translated["config"] if layer["class_name"] == "Dense")
    assert dense["config"]["units"] == 64 and "output_dim" not in dense["config"]
    assert next(layer for layer in translated["config"] if layer["class_name"] == "Dropout")["config"]["rate"] == 0.3
    assert not is_keras1(translated)  # nothing of Keras 1 is left


@pytest.mark.slow
def test_k06_exports_and_computes_what_theano_did(export_worker: ExportWorker, tmp_path: Path) -> None:
    out = export(zoo_path("k06"), tmp_path / "k06.onnx", worker=export_worker)
    side = read_sidecar(out)
    assert side["parity"]["passed"] and side["source"]["framework_version"] == "1.1.1"
    assert side["source"]["kernels_flipped"] is True and "theano" in side["source"]["backend"]
    assert (side["input"]["layout"], side["input"]["channels"], side["input"]["height"]) == ("NCHW", 3, 32)
    # raw 0..255 pixels, as the model was trained (MANIFEST): confident, varied predictions
    x = np.random.default_rng(0).uniform(0, 255, size=(8, 3, 32, 32)).astype(np.float32)
    ours = onnx_outputs(out, x)
    np.testing.assert_allclose(ours, _theano_forward(zoo_path("k06"), x), atol=1e-5)
    # the check can tell: TensorFlow's reading of the same weights (no flip) computes something else
    assert np.abs(_theano_forward(zoo_path("k06"), x, flip=False) - ours).max() > 0.05


@pytest.mark.slow
def test_keras2_file_saved_on_theano(keras_files: Path, export_worker: ExportWorker, tmp_path: Path) -> None:
    """A Keras 2 file whose `backend` is theano stores kernels Theano flips when it convolves: made here from
    a TensorFlow one by flipping them, it must compute what the original computes."""
    src = tmp_path / "theano.h5"
    src.write_bytes((keras_files / "any_size.h5").read_bytes())
    with h5py.File(src, "r+") as fh:
        fh.attrs["backend"] = "theano"
        group = fh["model_weights"]
        for name in group:
            for weight in list(group[name].attrs.get("weight_names", [])):
                weight = weight.decode() if isinstance(weight, bytes) else weight
                if "kernel" in weight and group[name][weight].ndim == 4:
                    group[name][weight][...] = np.asarray(group[name][weight])[::-1, ::-1]
    x, y = np.load(keras_files / "any_size.x.npy"), np.load(keras_files / "any_size.y.npy")
    # its input is (None, None, 1): the size comes from the data it will be fed
    out = export(src, tmp_path / "t.onnx", data_shape=(1, 24, 24), worker=export_worker)
    assert read_sidecar(out)["source"]["kernels_flipped"] is True
    np.testing.assert_allclose(onnx_outputs(out, x), y, atol=1e-5)
