"""SmoothGrad: the mean |gradient| over seeded noisy copies, equal to Captum's Saliency averaged over the
same noisy inputs; seeded, independent of batching, sigma=0 is saliency."""
from __future__ import annotations

import numpy as np
import pytest
from captum.attr import Saliency

from onnxplain.engine import BadInputError, Model, explain
from onnxplain.engine.methods.smoothgrad import image_noise, noise_sd
from tests.engine.gradient_data import BRIDGES, TINY, captum_inputs, o01, score_module, tiny_inputs  # noqa: F401


def reference(model: Model, x: np.ndarray, targets: np.ndarray, samples: int, sigma: float, seed: int,
              bridge: str = "ours") -> np.ndarray:
    """Captum Saliency(abs) on each noisy copy, averaged, then the channel max."""
    sd = noise_sd(x, sigma)
    module = score_module(model, bridge)
    out = []
    for i in range(len(x)):
        noisy = x[i] + sd[i] * image_noise(model.spec.shape, samples, seed, i)
        xt, tt = captum_inputs(noisy, np.full(samples, targets[i]))
        out.append(Saliency(module).attribute(xt, target=tt, abs=True).numpy().mean(axis=0))
    return np.stack(out).max(axis=model.spec.channel_axis)


@pytest.mark.parametrize("bridge", BRIDGES)
@pytest.mark.parametrize("kind", ["gray_nchw", "rgb_nhwc"])
def test_equals_saliency_averaged_over_the_same_noise(tiny_onnx, kind, bridge):
    model = Model(tiny_onnx(**TINY[kind]))
    x = tiny_inputs(model, 3)
    e = explain(model, x, "smoothgrad", preprocessed=True, samples=7, sigma=0.2, seed=5, batch_size=4)
    ref = reference(model, x, e.targets, 7, 0.2, 5, bridge)
    np.testing.assert_allclose(e.maps, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
    np.testing.assert_allclose(e.details.noise_sd, 0.2 * (x.reshape(3, -1).max(1) - x.reshape(3, -1).min(1)),
                               rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("bridge", BRIDGES)
def test_equals_reference_on_o01(o01, faces, bridge):
    e = explain(o01, list(faces[:2]), "smoothgrad", samples=10, seed=1)
    ref = reference(o01, e.inputs, e.targets, 10, 0.15, 1, bridge)
    np.testing.assert_allclose(e.maps, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_seeded_and_independent_of_batching(tiny_onnx):
    model = Model(tiny_onnx(**TINY["rgb_nchw"]))
    x = tiny_inputs(model, 3)
    a = explain(model, x, "smoothgrad", preprocessed=True, samples=5, seed=3, batch_size=64)
    b = explain(model, x, "smoothgrad", preprocessed=True, samples=5, seed=3, batch_size=64)
    c = explain(model, x, "smoothgrad", preprocessed=True, samples=5, seed=3, batch_size=3)  # chunks span images
    d = explain(model, x, "smoothgrad", preprocessed=True, samples=5, seed=4, batch_size=64)
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_allclose(a.maps, c.maps, rtol=1e-5, atol=1e-7)
    assert not np.allclose(a.maps, d.maps)
    # The i-th image's noise depends on (seed, i) only, not on the images after it.
    first = explain(model, x[:1], "smoothgrad", preprocessed=True, samples=5, seed=3)
    np.testing.assert_allclose(first.maps[0], a.maps[0], rtol=1e-5, atol=1e-7)


def test_zero_sigma_is_saliency_and_signed_mode(tiny_onnx):
    model = Model(tiny_onnx(**TINY["gray_nhwc"]))
    x = tiny_inputs(model, 2)
    sal = explain(model, x, "saliency", preprocessed=True)
    sg = explain(model, x, "smoothgrad", preprocessed=True, sigma=0.0, samples=3)
    np.testing.assert_allclose(sg.maps, sal.maps, rtol=1e-6, atol=1e-7)
    signed = explain(model, x, "smoothgrad", preprocessed=True, sigma=0.0, samples=3, signed=True)
    np.testing.assert_allclose(signed.maps, sal.details.attributions[..., 0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("params", [{"samples": 0}, {"sigma": -0.1}, {"sigma": float("nan")}])
def test_bad_parameters(tiny_onnx, params):
    model = Model(tiny_onnx(**TINY["gray_nchw"]))
    with pytest.raises(BadInputError):
        explain(model, tiny_inputs(model, 1), "smoothgrad", preprocessed=True, **params)
