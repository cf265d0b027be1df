"""`onnxplain filters`, `activations` and `dream`: files written, what the JSON says, layer errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli.helpers import assert_json, assert_ok, assert_user_error, invoke
from tests.conftest import DATA, zoo_path


def test_filters_by_gradient_ascent(tiny_onnx, tmp_path: Path) -> None:
    out = tmp_path / "f"
    doc = assert_json(invoke("filters", tiny_onnx(), "--layer", "features.0", "--filters", "0-3", "--steps", "20",
                             "--out", out, "--json"))
    assert doc["layer"] == "features.0" and doc["filters"] == [0, 1, 2, 3]
    images = np.load(out / "features.0.npy")
    assert images.shape[0] == 4 and images.min() >= 0.0 and images.max() <= 1.0
    assert np.mean(doc["final_activation"]) > np.mean(doc["start_activation"])  # the ascent went up
    assert (out / "features.0.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "features.0.json").read_text())["filters"] == [0, 1, 2, 3]


def test_filters_from_an_image_and_same_seed_same_images(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    args = ("filters", tiny_onnx(), "--layer", "features.4", "--filters", "0,5", "--steps", "5", "-q")
    assert_ok(invoke(*args, "--out", tmp_path / "a", "--seed", "1"))
    assert_ok(invoke(*args, "--out", tmp_path / "b", "--seed", "1"))
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "features.4.npy"), np.load(tmp_path / "b" / "features.4.npy"))
    doc = assert_json(invoke(*args, "--from-image", tiny_data["png"], "--out", tmp_path / "c", "--json"))
    assert doc["from_image"] == str(tiny_data["png"])


def test_activations_of_a_layer(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    doc = assert_json(invoke("activations", tiny_onnx(), tiny_data["png"], "--layer", "features.4", "--out", tmp_path,
                             "--json"))
    assert doc["layer"] == "features.4" and doc["channels"] == 16 and doc["map_shape"] == [8, 8]
    maps = np.load(doc["npy"])
    assert maps.shape == (16, 8, 8)
    np.testing.assert_allclose(doc["max_per_channel"], maps.reshape(16, -1).max(axis=1), rtol=1e-6)
    assert Path(doc["png"]).name == "features.4_face.png"


def test_dream_raises_the_objective(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    doc = assert_json(invoke("dream", tiny_onnx(), f"{tiny_data['csv']}:3", "--layer", "features.4", "--steps", "10",
                             "--octaves", "1", "--out", tmp_path, "--json"))
    assert doc["input"] == "train_3" and doc["final_objective"] > doc["start_objective"]
    assert Path(doc["png"]).exists() and np.load(doc["npy"]).ndim == 3


def test_unknown_layer_lists_the_conv_layers(tiny_onnx, tiny_data) -> None:
    for args in (("filters", tiny_onnx()), ("activations", tiny_onnx(), tiny_data["png"]),
                 ("dream", tiny_onnx(), tiny_data["png"])):
        assert_user_error(invoke(*args, "--layer", "conv2d_7"), "conv2d_7", "features.0", "features.4")


def test_one_image_only_and_bad_filter_list(tiny_onnx, tiny_data) -> None:
    assert_user_error(invoke("activations", tiny_onnx(), tiny_data["npy"]), "holds 2 images")
    assert_user_error(invoke("filters", tiny_onnx(), "--filters", "a-b"), "--filters 'a-b'")


@pytest.mark.slow
def test_real_keras_exported_model(tmp_path: Path) -> None:
    doc = assert_json(invoke("activations", zoo_path("o01"), DATA / "skimage_astronaut.png", "--layer", "conv2d",
                             "--out", tmp_path, "--json"))
    assert doc["channels"] == 32 and doc["map_shape"] == [46, 46]
