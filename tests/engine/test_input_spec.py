"""InputSpec: layout detection, sidecar/argument precedence, user images -> model input and back, labels."""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper

from onnxplain.engine import BadInputError, InputSpec, UnsupportedModelError
from onnxplain.engine.labels import PRESETS


def graph_with_input(dims: list[int | str | None], n_inputs: int = 1) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info(f"in{i}" if i else "input", onnx.TensorProto.FLOAT, dims)
              for i in range(n_inputs)]
    node = helper.make_node("Identity", ["input"], ["y"])
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, dims)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# ---------------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("dims,layout,shape", [
    (["n", 1, 28, 28], "NCHW", (1, 28, 28)),
    (["n", 3, 32, 40], "NCHW", (3, 32, 40)),
    (["n", 48, 48, 1], "NHWC", (48, 48, 1)),
    ([1, 64, 32, 3], "NHWC", (64, 32, 3)),
])
def test_layout_is_detected_from_the_shape(dims: list, layout: str, shape: tuple) -> None:
    spec = InputSpec.from_onnx(graph_with_input(dims))
    assert spec.layout == layout and spec.shape == shape
    assert spec.dynamic_batch == (dims[0] == "n")
    assert spec.channel_axis == (1 if layout == "NCHW" else 3)


@pytest.mark.parametrize("dims", [["n", 3, 32, 3], ["n", 1, 5, 1], ["n", 8, 8, 8]])
def test_ambiguous_layout_names_the_parameter(dims: list) -> None:
    with pytest.raises(BadInputError, match='layout="NCHW" or layout="NHWC"') as err:
        InputSpec.from_onnx(graph_with_input(dims))
    assert "\n" not in str(err.value)


def test_ambiguous_layout_is_decided_by_flag_or_sidecar() -> None:
    model = graph_with_input(["n", 3, 32, 3])
    assert InputSpec.from_onnx(model, layout="nhwc").shape == (3, 32, 3)
    assert InputSpec.from_onnx(model, {"input": {"layout": "NCHW"}}).shape == (3, 32, 3)
    spec = InputSpec.from_onnx(model, {"input": {"layout": "NCHW"}}, layout="NHWC")  # the flag wins
    assert spec.layout == "NHWC" and (spec.height, spec.width, spec.channels) == (3, 32, 3)
    with pytest.raises(BadInputError, match="not NCHW or NHWC"):
        InputSpec.from_onnx(model, layout="CHWN")


def test_dynamic_size_needs_input_shape() -> None:
    model = graph_with_input(["n", 1, "h", "w"])
    with pytest.raises(BadInputError, match="input_shape"):
        InputSpec.from_onnx(model)
    spec = InputSpec.from_onnx(model, input_shape=[1, 1, 40, 30])
    assert spec.shape == (1, 40, 30)
    with pytest.raises(BadInputError, match="does not match"):
        InputSpec.from_onnx(graph_with_input(["n", 1, 28, 28]), input_shape=[1, 1, 32, 32])


def test_unsupported_inputs() -> None:
    with pytest.raises(UnsupportedModelError, match="4 channels"):
        InputSpec.from_onnx(graph_with_input(["n", 4, 28, 28]), layout="NCHW")
    with pytest.raises(UnsupportedModelError, match="2 inputs"):
        InputSpec.from_onnx(graph_with_input(["n", 1, 28, 28], n_inputs=2))
    with pytest.raises(UnsupportedModelError, match="4-D"):
        InputSpec.from_onnx(graph_with_input(["n", 784]))


# ---------------------------------------------------------------------------------------------- preprocessing
def test_preprocessing_defaults_sidecar_and_arguments() -> None:
    model = graph_with_input(["n", 3, 8, 8])
    default = InputSpec.from_onnx(model)
    assert default.scale == pytest.approx(1 / 255) and default.mean == (0, 0, 0) and default.std == (1, 1, 1)
    sidecar = {"preprocessing": {"scale": 2 / 255, "mean": 1.0, "std": [0.5, 0.25, 1.0]}, "labels": "a,b"}
    from_sidecar = InputSpec.from_onnx(model, sidecar)
    assert from_sidecar.scale == pytest.approx(2 / 255) and from_sidecar.mean == (1, 1, 1)
    assert from_sidecar.std == (0.5, 0.25, 1.0) and from_sidecar.labels == ("a", "b")
    from_args = InputSpec.from_onnx(model, sidecar, scale=1.0, mean=[0.485, 0.456, 0.406], std=0.2, labels="food11")
    assert from_args.scale == 1.0 and from_args.mean == (0.485, 0.456, 0.406) and from_args.std == (0.2,) * 3
    assert from_args.labels == PRESETS["food11"]
    with pytest.raises(BadInputError, match="`mean` has 2 values"):
        InputSpec.from_onnx(model, mean=[0.1, 0.2])
    with pytest.raises(BadInputError, match="`std` must not contain 0"):
        InputSpec.from_onnx(model, std=0)


def test_sidecar_round_trip() -> None:
    spec = InputSpec.from_onnx(graph_with_input(["n", 48, 48, 1]), scale=2 / 255, mean=1.0, labels="fer2013")
    again = InputSpec.from_onnx(graph_with_input(["n", 48, 48, 1]), spec.to_sidecar())
    assert again == spec


def test_bgr_models_get_their_channels_reversed_and_keep_it_in_the_sidecar() -> None:
    model = graph_with_input(["n", 3, 4, 5])
    spec = InputSpec.from_onnx(model, channel_order="bgr", mean=(0.1, 0.2, 0.3))
    rgb = InputSpec.from_onnx(model, mean=(0.1, 0.2, 0.3))
    assert spec.channel_order == "BGR" and spec.preprocessing()["channel_order"] == "BGR"
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(spec.pixels_to_model(pixels), rgb.pixels_to_model(pixels[..., ::-1].copy()))
    np.testing.assert_allclose(spec.model_to_pixels(spec.pixels_to_model(pixels)), pixels, atol=1e-3)
    assert InputSpec.from_onnx(model, spec.to_sidecar()) == spec
    assert "channel_order" not in rgb.to_sidecar()["preprocessing"]  # RGB, the default, is not written
    assert InputSpec.from_onnx(graph_with_input(["n", 1, 4, 5]), channel_order="BGR").channel_order == "RGB"
    with pytest.raises(BadInputError, match="RGB or BGR"):
        InputSpec.from_onnx(model, channel_order="GBR")


# ---------------------------------------------------------------------------------------------- images
GRAY = InputSpec(layout="NCHW", channels=1, height=20, width=30)
RGB = InputSpec(layout="NHWC", channels=3, height=20, width=30)


def test_any_size_is_resized_to_the_model() -> None:
    rng = np.random.default_rng(0)
    for shape in [(20, 30), (7, 5), (200, 90), (21, 31, 3)]:
        pixels = GRAY.to_pixels(rng.integers(0, 256, shape, dtype=np.uint8))
        assert pixels.shape == (1, 20, 30, 1) and pixels.dtype == np.float32
    same = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    np.testing.assert_array_equal(GRAY.to_pixels(same)[0, ..., 0], same.astype(np.float32))
    big = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    np.testing.assert_allclose(GRAY.to_pixels(big)[0, ..., 0],
                               cv2.resize(big.astype(np.float32), (30, 20), interpolation=cv2.INTER_AREA))


def test_gray_and_rgb_conversions() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    gray = GRAY.to_pixels(rgb)[0, ..., 0]
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(gray, expected, atol=0.01)
    g = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    out = RGB.to_pixels(g)[0]
    assert out.shape == (20, 30, 3) and all(np.array_equal(out[..., c], g.astype(np.float32)) for c in range(3))
    rgba = np.dstack([rgb, np.full((20, 30), 7, np.uint8)])
    np.testing.assert_array_equal(RGB.to_pixels(rgba), RGB.to_pixels(rgb))
    chw = np.transpose(rgb, (2, 0, 1))  # a torch user's CxHxW array
    np.testing.assert_array_equal(RGB.to_pixels(chw), RGB.to_pixels(rgb))


def test_dtypes_and_value_ranges() -> None:
    rng = np.random.default_rng(2)
    u8 = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    ref = GRAY.to_pixels(u8)
    np.testing.assert_allclose(GRAY.to_pixels(u8 / 255.0), ref, atol=1e-3)  # float in [0, 1] means x/255
    np.testing.assert_allclose(GRAY.to_pixels(u8.astype(np.float64)), ref)  # float 0..255 kept
    np.testing.assert_allclose(GRAY.to_pixels(u8.astype(np.uint16) * 257), ref, atol=1e-3)
    with pytest.raises(BadInputError, match="NaN"):
        GRAY.to_pixels(np.full((20, 30), np.nan, np.float32))
    with pytest.raises(BadInputError, match="image 0 has shape"):
        GRAY.to_pixels(np.zeros((4, 20, 30, 2), np.uint8)[0])
    with pytest.raises(BadInputError, match="empty"):
        GRAY.to_pixels([np.zeros((0, 5), np.uint8)])


def test_batches_and_lists() -> None:
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 256, (5, 20, 30), dtype=np.uint8)  # N gray images
    assert GRAY.to_pixels(batch).shape == (5, 20, 30, 1)
    mixed = [batch[0], rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)]
    assert RGB.to_pixels(mixed).shape == (2, 20, 30, 3)


@pytest.mark.parametrize("spec", [
    InputSpec(layout="NCHW", channels=1, height=12, width=10, scale=2 / 255, mean=(1.0,), std=(1.0,)),
    InputSpec(layout="NHWC", channels=3, height=12, width=10, scale=1 / 255, mean=(0.485, 0.456, 0.406),
              std=(0.229, 0.224, 0.225)),
], ids=["gray-nchw-keras-scaling", "rgb-nhwc-imagenet"])
def test_round_trip_to_model_input_and_back(spec: InputSpec) -> None:
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, 12, 10, spec.channels), dtype=np.uint8)
    x = spec.to_model_input(list(images))
    assert x.shape == (3, *spec.shape) and x.dtype == np.float32 and x.flags.c_contiguous
    if spec.layout == "NCHW":
        np.testing.assert_allclose(x[:, 0], images[..., 0] * spec.scale - spec.mean[0], atol=1e-6)
    np.testing.assert_allclose(spec.model_to_pixels(x), images.astype(np.float32), atol=1e-3)
    display = spec.to_display(x)
    assert display.min() >= 0 and display.max() <= 1
    np.testing.assert_array_equal(spec.check_model_input(x[0]), x[:1])
    with pytest.raises(BadInputError, match="expects"):
        spec.check_model_input(x[:, :1, :1])


# ---------------------------------------------------------------------------------------------- labels
def test_label_presets_lists_and_class_lookup() -> None:
    spec = GRAY.with_labels("fer2013")
    assert spec.labels == ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
    assert len(GRAY.with_labels("food11").labels) == 11
    assert GRAY.with_labels(" a, b ,c").labels == ("a", "b", "c")
    assert GRAY.with_labels(["x", "y"]).labels == ("x", "y")
    assert GRAY.with_labels(None) is GRAY
    assert spec.class_index("happy") == 3 and spec.class_index("6") == 6 and spec.class_index(2) == 2
    assert spec.label(5) == "Surprise" and spec.label(9) == "9"
    with pytest.raises(BadInputError, match="known labels: Angry"):
        spec.class_index("bored")
    with pytest.raises(BadInputError, match="out of range"):
        spec.class_index(7)
    with pytest.raises(BadInputError, match="preset"):
        GRAY.with_labels("fer")
