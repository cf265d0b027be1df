"""Saliency: equal to Captum's Saliency (abs, max over channels) on the same torch module, for every
input kind; the signed variant, the mask, batching and targets."""
from __future__ import annotations

import numpy as np
import pytest
from captum.attr import Saliency

from onnxplain.engine import Model, explain
from onnxplain.engine.methods.saliency import masked_image
from tests.engine.gradient_data import (  # noqa: F401
    BRIDGES, TINY, captum_inputs, mnist_digits, o01, o02, o03, ort_scores, score_module, tiny_inputs,
)


def captum_saliency(model: Model, x: np.ndarray, targets: np.ndarray, *, abs: bool = True,
                    target_output: str = "logit", bridge: str = "ours") -> np.ndarray:
    """Captum on the module of the explained score (the logit by default, also on softmax models)."""
    xt, tt = captum_inputs(x, targets)
    return Saliency(score_module(model, bridge, target_output)).attribute(xt, target=tt, abs=abs).numpy()


@pytest.mark.parametrize("bridge", BRIDGES)
@pytest.mark.parametrize("kind", sorted(TINY))
def test_equals_captum_on_tiny_models(tiny_onnx, kind, bridge):
    model = Model(tiny_onnx(**TINY[kind]))
    x = tiny_inputs(model, 5)
    e = explain(model, x, "saliency", preprocessed=True, batch_size=2)  # chunks of 2, 2, 1
    ref = captum_saliency(model, x, e.targets, bridge=bridge).max(axis=model.spec.channel_axis)
    assert e.maps.shape == (5, model.spec.height, model.spec.width)
    np.testing.assert_allclose(e.maps, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
    np.testing.assert_array_equal(e.targets, model.predict(x).argmax(1))
    # Scores come from the same torch forward pass, batched (tuples through torch_batched): onnxruntime agrees.
    assert e.params["target_output"] == "logit"
    np.testing.assert_allclose(e.scores, ort_scores(model, x)[np.arange(5), e.targets], rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("bridge", BRIDGES)
@pytest.mark.parametrize("name", ["o01", "o02", "o03"])
def test_equals_captum_on_zoo_models(request, faces, name, bridge):
    model = request.getfixturevalue(name)
    images = mnist_digits(6) if name == "o03" else list(faces[:6])
    e = explain(model, images, "saliency")
    ref = captum_saliency(model, e.inputs, e.targets, bridge=bridge).max(axis=model.spec.channel_axis)
    np.testing.assert_allclose(e.maps, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
    assert e.details.attributions.shape == e.inputs.shape


def test_signed_keeps_the_sign_of_the_strongest_channel(tiny_onnx):
    model = Model(tiny_onnx(**TINY["rgb_nhwc"]))
    x = tiny_inputs(model, 3)
    plain = explain(model, x, "saliency", preprocessed=True)
    signed = explain(model, x, "saliency", preprocessed=True, signed=True)
    raw = captum_saliency(model, x, plain.targets, abs=False)  # (N, H, W, C)
    np.testing.assert_allclose(np.abs(signed.maps), plain.maps, rtol=0, atol=1e-7)
    assert (signed.maps < 0).any() and (signed.maps > 0).any()
    pick = np.abs(raw).argmax(axis=3)[..., None]
    np.testing.assert_allclose(signed.maps, np.take_along_axis(raw, pick, axis=3)[..., 0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(signed.details.attributions, plain.details.attributions)


def test_gray_signed_map_is_the_gradient(tiny_onnx):
    model = Model(tiny_onnx(**TINY["gray_nchw"]))
    x = tiny_inputs(model, 2)
    e = explain(model, x, "saliency", preprocessed=True, signed=True)
    np.testing.assert_array_equal(e.maps, e.details.attributions[:, 0])


def test_mask_is_the_image_weighted_by_the_normalised_map(tiny_onnx):
    model = Model(tiny_onnx(**TINY["rgb_nchw"]))
    x = tiny_inputs(model, 3)
    e = explain(model, x, "saliency", preprocessed=True)
    mask = masked_image(model.spec.to_display(x), e.maps)
    assert mask.shape == (3, 16, 16, 3) and mask.dtype == np.float32
    weights = e.maps / e.maps.reshape(3, -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(mask, model.spec.to_display(x) * weights[..., None], rtol=1e-6, atol=1e-7)
    # The strongest pixel keeps its full brightness; the mask never brightens the image.
    peak = np.unravel_index(e.maps[0].argmax(), e.maps[0].shape)
    np.testing.assert_allclose(mask[0][peak], model.spec.to_display(x)[0][peak], rtol=1e-6)
    assert (mask <= model.spec.to_display(x) + 1e-7).all()


def test_targets_batching_and_determinism(tiny_onnx):
    model = Model(tiny_onnx(**TINY["gray_nhwc"]))
    x = tiny_inputs(model, 4)
    targets = np.array([0, 1, 2, 3])
    a = explain(model, x, "saliency", targets=targets, preprocessed=True, batch_size=1)
    b = explain(model, x, "saliency", targets=targets, preprocessed=True, batch_size=64)
    c = explain(model, x, "saliency", targets=targets, preprocessed=True, batch_size=64)
    np.testing.assert_array_equal(b.maps, c.maps)  # same call, same bits
    np.testing.assert_allclose(a.maps, b.maps, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.maps, captum_saliency(model, x, targets).max(axis=3), rtol=0, atol=1e-5)
    other = explain(model, x, "saliency", targets=0, preprocessed=True)
    assert not np.allclose(other.maps[1:], b.maps[1:])
