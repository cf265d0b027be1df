"""Keras -> ONNX: the zoo's real student files and generated ones, checked against independent oracles
(Keras outputs computed in another process, Keras layer names), never against the exporter's own word only."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxplain.engine import Model, explain
from onnxplain.engine.errors import BadInputError, UnsupportedModelError
from onnxplain.exporters import ExportWorker, export
from tests.conftest import zoo_path
from tests.exporters.export_helpers import onnx_outputs, read_sidecar

pytestmark = pytest.mark.slow

ZOO_KERAS = {  # key: (Keras version in the file, input height/width, classes)
    "k01": ("2.0.5", 48, 7), "k02": ("2.0.5", 64, 7), "k03": ("2.2.4", 48, 7), "k04": ("2.3.1", 48, 5),
}
KERAS_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@pytest.mark.parametrize("key", sorted(ZOO_KERAS))
def test_zoo_full_models_export_with_parity(key: str, export_worker: ExportWorker, tmp_path: Path) -> None:
    version, size, classes = ZOO_KERAS[key]
    out = export(zoo_path(key), tmp_path / f"{key}.onnx", worker=export_worker)
    side = read_sidecar(out)
    assert side["parity"]["max_abs_diff"] <= 1e-4 and side["parity"]["inputs"] == 16 and side["parity"]["passed"]
    assert side["source"]["format"] == "keras-h5" and side["source"]["framework_version"] == version
    assert side["opset"] == 17 and side["exporter"]["converter"]["name"] == "tf2onnx"
    assert {"tensorflow", "tf_keras", "tf2onnx"} <= set(side["exporter"]["versions"])
    assert side["input"] == {"name": "input", "layout": "NHWC", "channels": 1, "height": size, "width": size,
                             "dynamic_batch": True}
    assert "preprocessing" not in side  # none was given: a default must not pose as a fact
    # The file works on its own: softmax outputs over the right number of classes, any batch size.
    x = np.random.default_rng(0).uniform(0, 1, size=(3, size, size, 1)).astype(np.float32)
    y = onnx_outputs(out, x)
    assert y.shape == (3, classes)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    # Layers carry the Keras names (conv2d_7, separable_conv2d_1), never ONNX node names.
    names = [layer.name for layer in Model(out).layers()]
    assert names and all(KERAS_NAME.match(n) for n in names), names
    assert set(side["layer_names"].values()) >= {n for n in names if not re.search(r"_\d+_\d+$", n)}


def test_k01_layer_names_include_separable_convolutions(export_worker: ExportWorker, tmp_path: Path) -> None:
    out = export(zoo_path("k01"), tmp_path / "k01.onnx", worker=export_worker, labels="fer2013",
                 scale=2 / 255, mean=1.0, std=1.0)
    model = Model(out)
    convs = [layer.name for layer in model.conv_layers()]
    assert convs[:3] == ["conv2d_1", "conv2d_2", "conv2d_3"] and "separable_conv2d_1" in convs
    assert model.spec.labels is not None and model.spec.labels[3] == "Happy"
    assert model.spec.scale == pytest.approx(2 / 255) and model.spec.mean == (1.0,)


def test_k05_weights_only_without_arch_says_what_to_do(export_worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=r"weights but no architecture.*arch='model\.json'") as info:
        export(zoo_path("k05"), tmp_path / "k05.onnx", worker=export_worker)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "k05.onnx").exists()


def test_k05_with_its_arch_json_exports(export_worker: ExportWorker, tmp_path: Path) -> None:
    out = export(zoo_path("k05"), tmp_path / "k05.onnx", arch=zoo_path("k05_arch"), worker=export_worker)
    side = read_sidecar(out)
    assert side["parity"]["max_abs_diff"] <= 1e-4
    assert side["source"]["serialization"] == "h5 weights + architecture"
    assert side["source"]["framework_version"] == "2.4.0"
    assert onnx_outputs(out, np.zeros((2, 48, 48, 1), np.float32)).shape == (2, 7)


def test_generated_nested_functional_matches_keras(keras_files: Path, keras_names: dict, export_worker: ExportWorker,
                                                   tmp_path: Path) -> None:
    out = export(keras_files / "tfk_nested.h5", tmp_path / "nested.onnx", worker=export_worker)
    x, y = np.load(keras_files / "tfk_nested.x.npy"), np.load(keras_files / "tfk_nested.y.npy")
    np.testing.assert_allclose(onnx_outputs(out, x), y, atol=1e-5)
    side = read_sidecar(out)
    assert set(side["layer_names"].values()) <= set(keras_names["tfk_nested"])
    layers = {layer.name: layer for layer in Model(out).layers()}
    assert {"stem_conv", "inner_conv", "head"} <= set(layers)  # inner_conv sits inside the nested Sequential
    assert layers["inner_conv"].channels == 8 and layers["inner_conv"].output_shape == (8, 20, 20)


def test_keras3_nested_names_are_exact(keras_files: Path, keras_names: dict, export_worker: ExportWorker,
                                       tmp_path: Path) -> None:
    """TF scopes say inner_1/conv2d_1 for layer `conv2d` and inner_1/conv2d_1_1 for `conv2d_1`: the exporter
    must still name each ONNX conv after the right Keras layer (told apart here by their output channels)."""
    out = export(keras_files / "k3_nested.keras", tmp_path / "k3.onnx", worker=export_worker)
    x, y = np.load(keras_files / "k3_nested.x.npy"), np.load(keras_files / "k3_nested.y.npy")
    np.testing.assert_allclose(onnx_outputs(out, x), y, atol=1e-5)
    side = read_sidecar(out)
    assert side["source"]["format"] == "keras3" and side["source"]["framework_version"].startswith("3.")
    convs = {layer.name: layer.channels for layer in Model(out).conv_layers()}
    assert convs == {"conv2d_2": 6, "conv2d": 5, "conv2d_1": 4}
    assert set(side["layer_names"].values()) <= set(keras_names["k3_nested"])


def test_keras3_written_h5_loads_with_keras3(keras_files: Path, export_worker: ExportWorker, tmp_path: Path) -> None:
    out = export(keras_files / "k3_legacy.h5", tmp_path / "k3h5.onnx", worker=export_worker)
    x, y = np.load(keras_files / "k3_legacy.x.npy"), np.load(keras_files / "k3_legacy.y.npy")
    np.testing.assert_allclose(onnx_outputs(out, x), y, atol=1e-5)
    assert read_sidecar(out)["exporter"]["converter"]["loader"] == "keras3"


@pytest.mark.parametrize("arch", ["tfk_arch.json", "tfk_arch.yaml"])
def test_weights_only_with_json_or_yaml_arch(arch: str, keras_files: Path, export_worker: ExportWorker,
                                             tmp_path: Path) -> None:
    out = export(keras_files / "tfk_weights.h5", tmp_path / "w.onnx", arch=keras_files / arch, worker=export_worker)
    x, y = np.load(keras_files / "tfk_weights.x.npy"), np.load(keras_files / "tfk_weights.y.npy")
    np.testing.assert_allclose(onnx_outputs(out, x), y, atol=1e-5)


def test_lambda_layer_refused_unless_trusted(keras_files: Path, export_worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=r"Lambda layer.*'double'.*trust=True"):
        export(keras_files / "lambda_seq.h5", tmp_path / "lam.onnx", worker=export_worker)
    out = export(keras_files / "lambda_seq.h5", tmp_path / "lam.onnx", trust=True, worker=export_worker)
    x, y = np.load(keras_files / "lambda_seq.x.npy"), np.load(keras_files / "lambda_seq.y.npy")
    np.testing.assert_allclose(onnx_outputs(out, x), y, atol=1e-5)


def test_lambda_code_never_runs_without_trust(keras_files: Path, export_worker: ExportWorker, tmp_path: Path) -> None:
    """The Lambda's code writes a marker file when executed: refused, it must not exist; trusted, it does."""
    marker = keras_files / "lambda_ran.marker"
    with pytest.raises(UnsupportedModelError, match="Lambda"):
        export(keras_files / "marker_lambda.h5", tmp_path / "spy.onnx", worker=export_worker)
    assert not marker.exists()
    export(keras_files / "marker_lambda.h5", tmp_path / "spy.onnx", trust=True, worker=export_worker)
    assert marker.exists()  # proves the marker works: only the refusal kept the code from running
    marker.unlink()


def test_keras3_lambda_refused(keras_files: Path, export_worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="Lambda"):
        export(keras_files / "k3_lambda.keras", tmp_path / "k3lam.onnx", worker=export_worker)


def test_custom_layer_refused_and_named(keras_files: Path, export_worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="MyScale.*trust=True"):
        export(keras_files / "custom_layer.h5", tmp_path / "c.onnx", worker=export_worker)
    with pytest.raises(UnsupportedModelError, match="MyScale"):  # trusted, but its code is not in the file
        export(keras_files / "custom_layer.h5", tmp_path / "c.onnx", trust=True, worker=export_worker)


def test_any_size_model_needs_input_shape(keras_files: Path, export_worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="input_shape"):
        export(keras_files / "any_size.h5", tmp_path / "a.onnx", worker=export_worker)
    x, y = np.load(keras_files / "any_size.x.npy"), np.load(keras_files / "any_size.y.npy")
    for shape in ("1,24,24,1", "1,1,24,24"):  # N,H,W,C as the model takes it, or the N,C,H,W habit
        out = export(keras_files / "any_size.h5", tmp_path / "a.onnx", input_shape=shape, worker=export_worker)
        np.testing.assert_allclose(onnx_outputs(out, x), y, atol=1e-5)
        assert read_sidecar(out)["input"]["height"] == 24


def test_plain_dnn_on_flattened_pixels_exports_as_an_image_model(keras_files: Path, keras_names: dict,
                                                                   export_worker: ExportWorker, tmp_path: Path) -> None:
    """The DNN takes 144 values; its ONNX file takes a 12x12 gray image and flattens it row by row."""
    out = export(keras_files / "tfk_dnn.h5", tmp_path / "dnn.onnx", worker=export_worker)
    side = read_sidecar(out)
    assert side["input"]["layout"] == "NHWC" and (side["input"]["height"], side["input"]["width"],
                                                  side["input"]["channels"]) == (12, 12, 1)
    assert side["parity"]["max_abs_diff"] <= 1e-5 and side["exporter"]["converter"]["flat_input"] == 144
    x, y = np.load(keras_files / "tfk_dnn.x.npy"), np.load(keras_files / "tfk_dnn.y.npy")  # Keras on flat rows
    np.testing.assert_allclose(onnx_outputs(out, x.reshape(8, 12, 12, 1)), y, atol=1e-5)
    model = Model(out)
    assert [layer.name for layer in model.layers() if layer.kind == "dense"] == [
        n for n in keras_names["tfk_dnn"] if n.startswith("dense")]
    e = explain(model, x.reshape(8, 12, 12, 1)[:2], "saliency", preprocessed=True)
    assert e.maps.shape == (2, 12, 12) and np.abs(e.maps).max() > 0


def test_flat_input_that_is_no_square_image_needs_input_shape(keras_files: Path, export_worker: ExportWorker,
                                                               tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"150 values.*input_shape='1,H,W,C'"):
        export(keras_files / "tfk_dnn150.h5", tmp_path / "a.onnx", worker=export_worker)
    with pytest.raises(BadInputError, match=r"does not flatten to the 150 values"):
        export(keras_files / "tfk_dnn150.h5", tmp_path / "b.onnx", input_shape="1,12,12,1", worker=export_worker)
    out = export(keras_files / "tfk_dnn150.h5", tmp_path / "c.onnx", input_shape="1,10,15,1", worker=export_worker)
    assert onnx_outputs(out, np.zeros((2, 10, 15, 1), np.float32)).shape == (2, 3)


def test_parent_never_imports_tensorflow(export_worker: ExportWorker, tmp_path: Path) -> None:
    export(zoo_path("k04"), tmp_path / "k04.onnx", worker=export_worker)
    export(zoo_path("k03"), tmp_path / "k03.onnx")  # a one-shot worker too
    assert not {"tensorflow", "tf_keras", "tf2onnx", "keras"} & set(sys.modules)
