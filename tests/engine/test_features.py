"""Feature visualisation: filters by gradient ascent (objective up for every filter, seeded, rows
independent), activation maps (equal to onnxruntime), deep dream (objective up, octaves)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from onnxplain.engine import BadInputError, Model
from onnxplain.engine.features import (ActivationMaps, DeepDream, FilterVisualization, activation_maps, deep_dream,
                                       visualize_filters)
from onnxplain.engine.torch_ops import layer_values
from tests.engine.gradient_data import TINY, mnist_digits, o01, o02, o03  # noqa: F401

PURE_ASCENT = dict(jitter=0, blur_every=0, decay=0.0)


def noise_objective_max(model: Model, layer: str, filters, n: int = 32) -> np.ndarray:
    """Per filter, the best mean pre-activation over `n` random white-noise images."""
    forward = layer_values(model, model.find_layer(layer))
    pixels = np.random.default_rng(123).uniform(0, 255, (n, model.spec.height, model.spec.width, model.spec.channels))
    with torch.no_grad():
        act = forward(torch.from_numpy(model.spec.pixels_to_model(pixels.astype(np.float32))))[1]
    return act[:, list(filters)].mean(dim=(2, 3)).amax(dim=0).numpy()


def image_for(model: Model, faces: np.ndarray) -> np.ndarray:
    if model.spec.height == 28:
        return mnist_digits(1)[0]
    img = faces[0]
    return np.repeat(img[..., None], 3, axis=2) if model.spec.channels == 3 else img


# ---------------------------------------------------------------------------------- filters
@pytest.mark.slow
@pytest.mark.parametrize("name, fft", [("o01", True), ("o02", True), ("o03", False)])
def test_ascent_raises_every_filter_well_above_its_start(request, name, fft):
    model = request.getfixturevalue(name)
    layer = model.conv_layers()[-1].name
    vis = visualize_filters(model, None, range(8), steps=48, fft=fft)
    assert isinstance(vis, FilterVisualization) and vis.layer == layer
    assert vis.images.shape == (8, model.spec.height, model.spec.width, model.spec.channels)
    assert vis.images.dtype == np.float32 and vis.images.min() >= 0 and vis.images.max() <= 1
    start, final = vis.start_objective, vis.final_objective
    margin = np.maximum(0.1, 0.25 * np.abs(start))
    assert (final >= start + margin).all(), (start, final)
    # ... and beyond what any of 32 random noise images reaches.
    assert (final >= noise_objective_max(model, layer, range(8)) + margin).all()
    # The reported activations are the layer's own outputs (post-ReLU) and never fall.
    assert (vis.final_activation >= vis.start_activation).all()
    assert vis.final_activation.max() > 0.01


@pytest.mark.parametrize("kind", sorted(TINY))
def test_pure_ascent_on_tiny_models(tiny_onnx, kind):
    model = Model(tiny_onnx(**TINY[kind]))
    for layer in model.conv_layers():
        vis = visualize_filters(model, layer.name, None, steps=24, lr=0.1, fft=kind.startswith("gray"), **PURE_ASCENT)
        assert list(vis.filters) == list(range(min(16, layer.channels)))
        assert vis.images.shape == (len(vis.filters), 16, 16, model.spec.channels)
        assert (vis.final_objective > vis.start_objective).all()
        assert (vis.final_objective > noise_objective_max(model, layer.name, vis.filters)).all()


def test_seeded_bit_for_bit(tiny_onnx):
    model = Model(tiny_onnx(**TINY["rgb_nhwc"]))
    a = visualize_filters(model, "features.4", [0, 5, 9], steps=10, seed=3)
    b = visualize_filters(model, "features.4", [0, 5, 9], steps=10, seed=3)
    c = visualize_filters(model, "features.4", [0, 5, 9], steps=10, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.final_activation, b.final_activation)
    assert not np.allclose(a.images, c.images)


def test_filters_are_independent_rows(tiny_onnx):
    """A filter's picture depends on its own index and the seed, not on the other filters or batch_size."""
    model = Model(tiny_onnx(**TINY["gray_nhwc"]))
    together = visualize_filters(model, "features.0", [1, 3, 6], steps=10)
    alone = visualize_filters(model, "features.0", [3], steps=10)
    split = visualize_filters(model, "features.0", [1, 3, 6], steps=10, batch_size=2)
    np.testing.assert_allclose(alone.images[0], together.images[1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(split.images, together.images, rtol=0, atol=1e-5)
    np.testing.assert_allclose(split.final_objective, together.final_objective, rtol=1e-5, atol=1e-6)


def test_from_image_starts_at_the_image(tiny_onnx, faces):
    model = Model(tiny_onnx(**TINY["gray_nchw"]))
    image = faces[3]
    acts = activation_maps(model, image, "features.4")
    vis = visualize_filters(model, "features.4", [2, 7], from_image=image, steps=1, lr=1e-6, **PURE_ASCENT)
    np.testing.assert_allclose(vis.start_activation, acts.maps[[2, 7]].mean(axis=(1, 2)), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(vis.images[0], acts.image, atol=2e-3)  # logits of [1e-3, 1 - 1e-3]
    moved = visualize_filters(model, "features.4", [2, 7], from_image=image, steps=20, **PURE_ASCENT)
    assert (moved.final_objective > moved.start_objective).all()


def test_filter_errors(tiny_onnx):
    model = Model(tiny_onnx(**TINY["gray_nchw"]))
    with pytest.raises(BadInputError, match=r"filter 8 is out of range: layer 'features\.0' has 8 filters"):
        visualize_filters(model, "features.0", [0, 8])
    with pytest.raises(BadInputError, match="filter -1 is out of range"):
        visualize_filters(model, "features.0", [-1])
    with pytest.raises(BadInputError, match="no filters"):
        visualize_filters(model, "features.0", [])
    with pytest.raises(BadInputError, match=r"unknown layer 'nope'.*features\.0, features\.4"):
        visualize_filters(model, "nope")
    with pytest.raises(BadInputError, match="steps >= 1"):
        visualize_filters(model, None, [0], steps=0)


# ---------------------------------------------------------------------------------- activations
def onnxruntime_value(model: Model, value: str, x: np.ndarray) -> np.ndarray:
    """An intermediate value computed by onnxruntime (the value added as a graph output)."""
    m = onnx.ModelProto()
    m.CopyFrom(model.onnx)
    m.graph.output.append(onnx.helper.make_empty_tensor_value_info(value))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([value], {model.spec.input_name: x})[0]


@pytest.mark.parametrize("name", ["gray_nchw", "rgb_nhwc", "o01", "o03"])
def test_activation_maps_equal_onnxruntime(request, tiny_onnx, faces, name):
    model = request.getfixturevalue(name) if name in ("o01", "o03") else Model(tiny_onnx(**TINY[name]))
    image = image_for(model, faces)
    for layer in model.conv_layers():
        acts = activation_maps(model, image, layer.name)
        assert isinstance(acts, ActivationMaps) and acts.layer == layer.name
        assert acts.maps.shape == layer.output_shape and acts.maps.dtype == np.float32
        x = model.spec.to_model_input(image)
        np.testing.assert_allclose(acts.maps, onnxruntime_value(model, layer.output, x)[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(acts.image, model.spec.to_display(x)[0], atol=1e-6)
    assert activation_maps(model, image).layer == model.conv_layers()[-1].name


def test_activation_maps_take_one_image(tiny_onnx, faces):
    model = Model(tiny_onnx(**TINY["gray_nchw"]))
    with pytest.raises(BadInputError, match="one image"):
        activation_maps(model, faces[:2])


# ---------------------------------------------------------------------------------- deep dream
@pytest.mark.slow
def test_deep_dream_raises_the_layer_norm_on_o01(o01, faces):
    image = faces[5]
    dream = deep_dream(o01, image, "conv2d_1", steps=10)
    assert isinstance(dream, DeepDream) and dream.layer == "conv2d_1"
    assert dream.image.shape == (48, 48, 1) and dream.image.dtype == np.float32
    assert dream.image.min() >= 0 and dream.image.max() <= 1
    assert dream.final_objective >= 1.5 * dream.start_objective
    # The objective is the L2 norm of the layer's output, as activation_maps sees it.
    start = activation_maps(o01, image, "conv2d_1").maps
    np.testing.assert_allclose(dream.start_objective, np.linalg.norm(start), rtol=1e-4)
    final = activation_maps(o01, dream.image, "conv2d_1").maps
    np.testing.assert_allclose(dream.final_objective, np.linalg.norm(final), rtol=1e-3)
    # The dream keeps the picture recognisable: most of it stays close to the face.
    assert np.median(np.abs(dream.image - activation_maps(o01, image).image)) < 0.25


@pytest.mark.parametrize("kind", ["gray_nhwc", "rgb_nchw"])
def test_deep_dream_octaves_and_seed(tiny_onnx, faces, kind):
    model = Model(tiny_onnx(**TINY[kind]))
    image = np.repeat(faces[1][..., None], 3, axis=2) if "rgb" in kind else faces[1]
    a = deep_dream(model, image, steps=6, octaves=3, seed=1)
    b = deep_dream(model, image, steps=6, octaves=3, seed=1)
    one = deep_dream(model, image, steps=6, octaves=1, seed=1)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.shape == (16, 16, model.spec.channels)
    assert a.final_objective > a.start_objective and one.final_objective > one.start_objective
    assert not np.allclose(a.image, one.image)
    with pytest.raises(BadInputError, match="octaves >= 1"):
        deep_dream(model, image, octaves=0)
