"""Occlusion on onnxruntime against `captum.attr.Occlusion` on the same model's torch module."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from captum.attr import Occlusion

from onnxplain.engine import BadInputError, Model, explain
from onnxplain.engine.methods import occlusion as occlusion_method
from onnxplain.engine.methods.occlusion import cover_matrix, window_starts
from onnxplain.engine.perturbation import Arrays
from tests.engine.forward_data import images_for, o01, rgb_images, tiny_model  # noqa: F401  (fixtures)


def captum_occlusion(model: Model, x: np.ndarray, targets: np.ndarray, window: tuple[int, int], stride: tuple[int, int],
                     baseline: float | np.ndarray) -> np.ndarray:
    """Captum's Occlusion over all channels at once, as (N, H, W) (every channel holds the same value)."""
    c = model.spec.channels
    if model.spec.layout == "NCHW":
        shapes, strides = (c, *window), (c, *stride)
    else:
        shapes, strides = (*window, c), (*stride, c)
    base = torch.from_numpy(np.ascontiguousarray(baseline, dtype=np.float32)) if isinstance(baseline, np.ndarray) else baseline
    attr = Occlusion(model.torch_module).attribute(
        torch.from_numpy(x), sliding_window_shapes=shapes, strides=strides, baselines=base,
        target=torch.from_numpy(targets), perturbations_per_eval=64,
    ).numpy()
    attr = attr if model.spec.layout == "NHWC" else attr.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(attr, np.repeat(attr[..., :1], c, axis=-1))
    return attr[..., 0]


def captum_baseline(model: Model, e, baseline) -> float | np.ndarray:
    """The same baseline in model-input space, written independently of our code."""
    spec = model.spec
    if baseline == "mean":
        axes = (2, 3) if spec.layout == "NCHW" else (1, 2)
        return np.broadcast_to(e.inputs.mean(axis=axes, keepdims=True), e.inputs.shape)
    if baseline == "blur":  # the blur every method shares: sigma 0.1 * the longer side, reflected border
        sigma = 0.1 * max(spec.height, spec.width)
        pix = spec.model_to_pixels(e.inputs)  # our images lie inside 0..255, so the clip is a no-op
        blurred = np.stack([cv2.GaussianBlur(p, (0, 0), sigma, borderType=cv2.BORDER_REFLECT).reshape(p.shape)
                            for p in pix])
        return spec.pixels_to_model(blurred)
    value = np.asarray(spec.pixels_to_model(np.full((1, 1, 1, spec.channels), baseline, np.float32))).ravel()
    return float(value[0]) if spec.channels == 1 else np.broadcast_to(
        spec.pixels_to_model(np.full((1, spec.height, spec.width, spec.channels), baseline, np.float32)), e.inputs.shape)


CASES = [
    ("gray_nchw", 4, 2, 0.0),
    ("gray_nchw", 5, 3, "mean"),       # 16 is not a multiple: Captum clips the last window
    ("gray_nchw", (4, 6), (2, 3), 128.0),
    ("rgb_nchw", 4, 4, "blur"),
    ("rgb_nhwc", 6, 2, 0.0),
    ("rgb_nhwc", 3, 1, "mean"),
    ("logits_nchw", 8, 4, "blur"),
]


@pytest.mark.parametrize("kind, window, stride, baseline", CASES)
def test_equals_captum_on_tiny_models(kind, window, stride, baseline, tiny_onnx, faces, rgb_images) -> None:
    model = tiny_model(tiny_onnx, kind)
    e = explain(model, images_for(model, faces, rgb_images, 4), "occlusion", window=window, stride=stride,
                baseline=baseline, batch_size=50)
    ref = captum_occlusion(model, e.inputs, e.targets, tuple(e.params["window"]), tuple(e.params["stride"]),
                           captum_baseline(model, e, baseline))
    np.testing.assert_allclose(e.maps, ref, rtol=0, atol=1e-5)
    # tiny random CNNs move their scores little (drops ~1e-4..1e-3): also hold the error to 0.1% of the signal
    assert np.abs(e.maps - ref).max() <= 1e-3 * np.abs(ref).max()


@pytest.mark.slow
@pytest.mark.parametrize("baseline", [0.0, "mean", "blur"])
def test_equals_captum_on_o01(baseline, o01: Model, faces: np.ndarray) -> None:
    e = explain(o01, list(faces[:3]), "occlusion", window=8, stride=4, baseline=baseline)
    ref = captum_occlusion(o01, e.inputs, e.targets, (8, 8), (4, 4), captum_baseline(o01, e, baseline))
    np.testing.assert_allclose(e.maps, ref, rtol=0, atol=1e-5)
    assert np.abs(ref).max() > 1e-2


@pytest.mark.slow
def test_equals_captum_on_k01_exported(exported_zoo, faces: np.ndarray) -> None:
    model = Model(exported_zoo("k01"))  # Keras 2.0.5 mini-Xception, NHWC, (x/255 - 0.5) * 2
    for baseline in (0.0, "blur"):
        e = explain(model, list(faces[:2]), "occlusion", window=8, stride=4, baseline=baseline)
        ref = captum_occlusion(model, e.inputs, e.targets, (8, 8), (4, 4), captum_baseline(model, e, baseline))
        np.testing.assert_allclose(e.maps, ref, rtol=0, atol=1e-5)
        assert np.abs(ref).max() > 1e-2


def test_window_positions_follow_captum() -> None:
    np.testing.assert_array_equal(window_starts(48, 8, 4), np.arange(11) * 4)
    np.testing.assert_array_equal(window_starts(16, 5, 3), [0, 3, 6, 9, 12])  # the last is clipped to 12..15
    cover = cover_matrix(16, 5, 3)
    assert cover.shape == (5, 16) and cover[-1, 12:].all() and cover[-1].sum() == 4
    assert cover.any(axis=0).all()


def test_non_overlapping_windows_tile_the_drops(tiny_onnx, faces) -> None:
    model = tiny_model(tiny_onnx, "gray_nchw")
    e = explain(model, list(faces[:2]), "occlusion", window=4, stride=4)
    drops = e.details.score_drops
    assert drops.shape == (2, 4, 4)
    np.testing.assert_allclose(e.maps, np.stack([np.kron(d, np.ones((4, 4))) for d in drops]), atol=1e-7)
    # the drop is unperturbed minus occluded score
    x = e.inputs[:1].copy()
    x[:, :, 4:8, 8:12] = 0.0
    occluded = model.predict(x)[0, e.targets[0]]
    assert abs(drops[0, 1, 2] - (e.scores[0] - occluded)) < 1e-6


def test_same_inputs_same_bits(tiny_onnx, faces) -> None:
    model = tiny_model(tiny_onnx, "gray_nchw")
    a = explain(model, list(faces[:4]), "occlusion", window=4, stride=2, baseline="blur")
    b = explain(model, list(faces[:4]), "occlusion", window=4, stride=2, baseline="blur")
    assert a.maps.tobytes() == b.maps.tobytes()


def test_many_images_in_one_call_equal_one_by_one(tiny_onnx, faces) -> None:
    model = tiny_model(tiny_onnx, "logits_nchw")
    together = explain(model, list(faces[:4]), "occlusion", window=6, stride=3, batch_size=40)
    for i in range(4):
        alone = explain(model, faces[i], "occlusion", window=6, stride=3, batch_size=40)
        np.testing.assert_allclose(together.maps[i], alone.maps[0], atol=1e-6)


@pytest.mark.parametrize("kind", ["gray_nchw", "rgb_nhwc"])
def test_device_array_path_equals_numpy_path(kind: str, tiny_onnx, faces, rgb_images, monkeypatch) -> None:
    """The cuda path (torch tensors, IO binding) run on the CPU gives the numpy path's result."""
    model = tiny_model(tiny_onnx, kind)
    images = images_for(model, faces, rgb_images)
    plain = explain(model, images, "occlusion", window=4, stride=2, baseline="mean", batch_size=30)
    monkeypatch.setattr(occlusion_method, "arrays_for", lambda m: Arrays(m, torch=True))
    bound = explain(model, images, "occlusion", window=4, stride=2, baseline="mean", batch_size=30)
    np.testing.assert_allclose(bound.maps, plain.maps, atol=1e-6)


def test_per_channel_baseline(tiny_onnx, rgb_images) -> None:
    model = tiny_model(tiny_onnx, "rgb_nhwc")
    e = explain(model, rgb_images, "occlusion", window=4, stride=4, baseline=[255, 0, 0])
    x = e.inputs[:1].copy()
    x[:, 0:4, 4:8, :] = np.array([1.0, 0.0, 0.0], np.float32)
    assert abs(e.details.score_drops[0, 0, 1] - (e.scores[0] - model.predict(x)[0, e.targets[0]])) < 1e-6


@pytest.mark.parametrize("params, match", [
    (dict(window=17), "larger than the input"),
    (dict(window=4, stride=5), "stride"),
    (dict(window=0), "window"),
    (dict(window=(2, 3, 4)), "window"),
    (dict(baseline="grey"), "baseline"),  # "noise" is a baseline of every method now
    (dict(baseline=[1, 2]), "baseline"),
])
def test_errors(params: dict, match: str, tiny_onnx, faces) -> None:
    model = tiny_model(tiny_onnx, "gray_nchw")
    with pytest.raises(BadInputError, match=match):
        explain(model, faces[0], "occlusion", **params)
