"""Grad-CAM: equal to Captum's LayerGradCam (+ bilinear upsampling) on the submodule computing the same
ONNX value of the plain onnx2torch module; default layer, layer names, errors, NHWC models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam

from onnxplain.engine import BadInputError, Model, explain
from tests.engine.gradient_data import (  # noqa: F401
    TINY, captum_inputs, module_computing, o01, ort_scores, plain_module, tiny_inputs,
)


def captum_gradcam(model: Model, layer_name: str, x: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    module = plain_module(model.score_onnx("logit"))  # the explained score: the logit, also on softmax models
    layer = module_computing(module, model.find_layer(layer_name).output)
    xt, tt = captum_inputs(x, targets)
    low = LayerGradCam(module, layer).attribute(xt, target=tt, relu_attributions=True)
    up = LayerAttribution.interpolate(low, (model.spec.height, model.spec.width), "bilinear")
    return low.detach().numpy()[:, 0], up.detach().numpy()[:, 0]


@pytest.mark.parametrize("kind", sorted(TINY))
def test_equals_captum_layer_gradcam(tiny_onnx, kind):
    model = Model(tiny_onnx(**TINY[kind]))
    x = tiny_inputs(model, 4)
    for layer in model.conv_layers():
        e = explain(model, x, "gradcam", preprocessed=True, layer=layer.name, batch_size=3)
        low, up = captum_gradcam(model, layer.name, x, e.targets)
        assert e.details.layer == layer.name and e.params["layer"] == layer.name
        assert e.details.cam_lowres.shape == (4, *layer.output_shape[1:])
        assert e.maps.shape == (4, 16, 16) and (e.maps >= 0).all()
        np.testing.assert_allclose(e.details.cam_lowres, low, rtol=0, atol=1e-5 * max(1.0, np.abs(low).max()))
        np.testing.assert_allclose(e.maps, up, rtol=0, atol=1e-5 * max(1.0, np.abs(up).max()))
        np.testing.assert_allclose(e.scores, ort_scores(model, x)[np.arange(4), e.targets], rtol=0, atol=1e-5)


def test_against_hooks_on_the_source_torch_model(tiny_onnx):
    """An independent Grad-CAM with forward hooks on the original PyTorch model (before any export)."""
    from tests.conftest import make_tiny_cnn

    spec = TINY["rgb_nchw"]
    model = Model(tiny_onnx(**spec))
    x = tiny_inputs(model, 3)
    e = explain(model, x, "gradcam", preprocessed=True, layer="features.4")
    net = make_tiny_cnn(channels=3, classes=4, seed=spec["seed"], softmax=spec["softmax"])
    seen = {}
    net.features[4].register_forward_hook(lambda m, i, o: seen.__setitem__("act", o))
    xt = torch.from_numpy(x).requires_grad_(True)
    scores = net(xt)[torch.arange(3), torch.from_numpy(e.targets)]
    (grads,) = torch.autograd.grad(scores.sum(), seen["act"])
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * seen["act"]).sum(1, keepdim=True))
    up = torch.nn.functional.interpolate(cam, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(e.maps, up.detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_o01_default_is_the_last_conv_layer(o01, faces):
    e = explain(o01, list(faces[:3]), "gradcam")
    assert e.details.layer == o01.conv_layers()[-1].name == "conv2d_1"
    assert e.details.cam_lowres.shape == (3, 21, 21)
    low, up = captum_gradcam(o01, "conv2d_1", e.inputs, e.targets)
    np.testing.assert_allclose(e.maps, up, rtol=0, atol=1e-5 * max(1.0, up.max()))
    first = explain(o01, list(faces[:3]), "gradcam", layer="conv2d")
    assert first.details.cam_lowres.shape == (3, 46, 46)


def test_unknown_and_non_conv_layers(tiny_onnx):
    model = Model(tiny_onnx(**TINY["gray_nchw"]))
    x = tiny_inputs(model, 1)
    with pytest.raises(BadInputError, match=r"unknown layer 'conv9'.*features\.0, features\.4"):
        explain(model, x, "gradcam", preprocessed=True, layer="conv9")
    dense = next(layer for layer in model.layers() if layer.kind == "dense")
    with pytest.raises(BadInputError, match=r"not a conv layer; conv layers: features\.0, features\.4"):
        explain(model, x, "gradcam", preprocessed=True, layer=dense.name)
