"""The one baseline vocabulary: the same names give the same reference images in IG, occlusion and LIME."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from onnxplain.engine import BadInputError, explain
from onnxplain.engine.baselines import NAMES, baseline_images, baseline_name, describe, pixel_constant
from onnxplain.engine.methods.ig import make_baseline
from onnxplain.engine.methods.lime import hidden_images, lime_hide_color
from onnxplain.engine.methods import occlusion
from tests.engine.forward_data import rgb_images, tiny_model  # noqa: F401  (fixtures)


@pytest.mark.parametrize("kind", ["gray_nchw", "rgb_nchw", "rgb_nhwc"])
def test_every_method_draws_the_same_baseline_for_a_name(tiny_onnx, rgb_images, kind) -> None:
    model = tiny_model(tiny_onnx, kind)
    x = model.spec.to_model_input([img[..., :1] if model.spec.channels == 1 else img for img in rgb_images])
    assert occlusion.baseline_images is baseline_images  # occlusion hides with the shared baselines
    whole = np.zeros((len(x), model.spec.height, model.spec.width), np.int32)  # one superpixel: the image
    for name in (*NAMES, 128.0):
        ref = baseline_images(model.spec, x, name, seed=3)
        assert ref.shape == x.shape and ref.dtype == np.float32
        np.testing.assert_array_equal(make_baseline(model.spec, x, name, 3), ref)
        lime_ref = hidden_images(model, x, whole, name, seed=3)
        if name == "mean":  # LIME's mean is each superpixel's; with one superpixel, the image's
            np.testing.assert_allclose(lime_ref, ref, rtol=0, atol=1e-5)
        else:
            np.testing.assert_array_equal(lime_ref, ref)


def test_the_one_blur_is_sigma_a_tenth_of_the_longer_side_with_a_reflected_border(tiny_onnx, rgb_images) -> None:
    model = tiny_model(tiny_onnx, "rgb_nchw")
    x = model.spec.to_model_input(rgb_images)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    expected = np.stack([cv2.GaussianBlur(img, (0, 0), 1.6, borderType=cv2.BORDER_REFLECT) for img in nhwc])
    np.testing.assert_allclose(baseline_images(model.spec, x, "blur"), expected.transpose(0, 3, 1, 2), atol=1e-6)
    np.testing.assert_array_equal(baseline_images(model.spec, x, "blurred"), baseline_images(model.spec, x, "blur"))


def test_names_aliases_and_records() -> None:
    assert baseline_name("blurred") == "blur" and baseline_name(0.0) is None
    with pytest.raises(BadInputError, match="known: black, blur, mean, noise"):
        baseline_name("grey")
    assert describe("blurred") == "blur" and describe(0) == 0.0 and describe([1, 2, 3]) == [1.0, 2.0, 3.0]
    assert describe(np.zeros((2, 1, 4, 4))) == "array [2, 1, 4, 4]"


def test_an_array_baseline_is_used_as_given(tiny_onnx, rgb_images) -> None:
    model = tiny_model(tiny_onnx, "gray_nchw")
    images = [img[..., :1] for img in rgb_images]
    black = explain(model, images, "ig", steps=8)
    given = explain(model, images, "ig", steps=8, baseline=make_baseline(model.spec, black.inputs, "black", 0)[0])
    np.testing.assert_array_equal(given.maps, black.maps)
    assert given.params["baseline"] == f"array {list(model.spec.shape)}"
    with pytest.raises(BadInputError, match="input shape"):
        explain(model, images, "ig", steps=8, baseline=np.zeros((2, 3, 5, 5), np.float32))


def test_lime_hide_color_is_its_baseline(tiny_onnx, rgb_images) -> None:
    model = tiny_model(tiny_onnx, "rgb_nhwc")
    old = explain(model, rgb_images, "lime", samples=60, seed=0, segments="grid", hide_color=0)
    new = explain(model, rgb_images, "lime", samples=60, seed=0, segments="grid", baseline="black")
    np.testing.assert_array_equal(old.maps, new.maps)
    default = explain(model, rgb_images, "lime", samples=60, seed=0, segments="grid")
    assert default.params["baseline"] == "mean"
    assert lime_hide_color(model, "mean") is None and lime_hide_color(model, None) is None
    assert lime_hide_color(model, "black") == 0 and lime_hide_color(model, [1, 2, 3]) == [1, 2, 3]


def test_pixel_constant(tiny_onnx) -> None:
    model = tiny_model(tiny_onnx, "rgb_nchw")
    const = pixel_constant(model.spec, [255, 0, 51], "baseline")
    assert const.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(const[0, :, 5, 7], [1.0, 0.0, 0.2], atol=1e-6)
    np.testing.assert_allclose(pixel_constant(model.spec, 255, "baseline"), 1.0)
    for bad in ([1, 2], "x", float("nan"), [[1, 2, 3]]):
        with pytest.raises(BadInputError, match="baseline"):
            pixel_constant(model.spec, bad, "baseline")
