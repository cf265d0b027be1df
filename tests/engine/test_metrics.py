"""Faithfulness curves and the randomisation sanity check, on tiny seeded models with known answers
(see `metrics_models`): LeftHalf's saliency must beat a random ranking by far on deletion and
insertion, a noise map must not; SquareSum's saliency (the image times a constant), an edge
detector and a noise 'method' must be flagged by the randomisation check; the conftest TinyCNN's
and a real zoo CNN's saliency must not.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import numpy_helper
from scipy.stats import spearmanr

from onnxplain.engine import BadInputError, Model, explain, make_explanation
from onnxplain.engine.metrics import (FLAG_THRESHOLD, auc, deletion_insertion, randomisation_check, spearman, ssim,
                                      trust_metrics)
from onnxplain.engine.metrics import faithfulness
from onnxplain.engine.metrics.randomisation import cascading_models, layer_parameters, top_down_layers
from tests.conftest import export_onnx, zoo_path
from tests.engine.metrics_models import SIZE, LeftHalf, SquareSum, edge_detector, noise_maps


@pytest.fixture(scope="module")
def left_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    path = tmp_path_factory.mktemp("metrics") / "left.onnx"
    return Model(export_onnx(LeftHalf().eval(), path, (2, 1, SIZE, SIZE)))


@pytest.fixture(scope="module")
def square_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    path = tmp_path_factory.mktemp("metrics") / "square.onnx"
    return Model(export_onnx(SquareSum().eval(), path, (2, 1, SIZE, SIZE)))


@pytest.fixture(scope="module")
def tiny_model(tiny_onnx) -> Model:
    return Model(tiny_onnx(softmax=True))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 255, (6, SIZE, SIZE)).astype(np.uint8)


@pytest.fixture(scope="module")
def left_saliency(left_model: Model, images: np.ndarray):
    return explain(left_model, images, "saliency", targets=0)


# ------------------------------------------------------------------ deletion / insertion
def test_auc_is_the_trapezoid_area_on_0_1() -> None:
    f = np.linspace(0, 1, 11)
    curves = np.stack([f, np.ones_like(f), f ** 2])
    np.testing.assert_allclose(auc(f, curves), [0.5, 1.0, 0.335], atol=1e-6)


def test_pixel_ranks_put_the_highest_value_first_and_break_ties_in_raster_order() -> None:
    maps = np.array([[[0.1, 0.9], [0.5, 0.5]]], np.float32)
    np.testing.assert_array_equal(faithfulness.pixel_ranks(maps), [[3, 0, 1, 2]])


def test_curves_start_and_end_at_the_image_and_the_baseline(left_model: Model, left_saliency) -> None:
    c = deletion_insertion(left_model, left_saliency, steps=8)
    x = left_saliency.inputs
    logits = left_model.predict(x)
    full = np.exp(logits[:, 0]) / np.exp(logits).sum(axis=1)
    black = 1.0 / (1.0 + np.exp(5.0))  # logits (0, 5) on a black image
    assert c.score == "softmax(logits)"
    np.testing.assert_allclose(c.deletion[:, 0], full, rtol=1e-5)
    np.testing.assert_allclose(c.insertion[:, -1], full, rtol=1e-5)
    np.testing.assert_allclose(c.deletion[:, -1], black, rtol=1e-4)
    np.testing.assert_allclose(c.insertion[:, 0], black, rtol=1e-4)
    np.testing.assert_allclose(c.fractions, np.linspace(0, 1, 9), atol=1e-7)
    # The left half (the first 50% of the ranking) holds all the evidence: from there on the curves are flat.
    np.testing.assert_allclose(c.insertion[:, 4:], full[:, None].repeat(5, 1), rtol=1e-5)
    np.testing.assert_allclose(c.deletion[:, 4:], black, rtol=1e-4)


def test_left_half_saliency_beats_a_random_ranking_by_far(left_model: Model, left_saliency) -> None:
    c = deletion_insertion(left_model, left_saliency)
    assert np.all(c.insertion_auc - c.random_insertion_auc > 0.2)
    assert np.all(c.random_deletion_auc - c.deletion_auc > 0.2)
    assert c.beats_random.all()


def test_a_noise_map_does_no_better_than_random(left_model: Model, left_saliency) -> None:
    noise = make_explanation(left_model, "noise", left_saliency.inputs, left_saliency.targets,
                             noise_maps(left_model, left_saliency.inputs, None, batch_size=1, seed=5), params={})
    good = deletion_insertion(left_model, left_saliency)
    bad = deletion_insertion(left_model, noise)
    assert abs(float(bad.insertion_auc.mean() - bad.random_insertion_auc.mean())) < 0.08
    assert abs(float(bad.deletion_auc.mean() - bad.random_deletion_auc.mean())) < 0.08
    assert np.all(good.insertion_auc - bad.insertion_auc > 0.2)
    assert np.all(bad.deletion_auc - good.deletion_auc > 0.2)


def test_probability_models_are_scored_by_their_own_output(tiny_model: Model, images: np.ndarray) -> None:
    e = explain(tiny_model, images, "saliency")
    c = deletion_insertion(tiny_model, e, steps=4, random_reference=False)
    assert c.score == "probability" and c.random_deletion is None and c.beats_random is None
    probs = tiny_model.predict(e.inputs)
    np.testing.assert_allclose(c.deletion[:, 0], probs[np.arange(len(e)), e.targets], rtol=1e-5)
    assert np.all((c.deletion >= 0) & (c.deletion <= 1))


def test_batch_size_does_not_change_the_curves(left_model: Model, left_saliency) -> None:
    ref = deletion_insertion(left_model, left_saliency, steps=6, batch_size=256)
    for bs in (1, 5):  # 5 rows: batches that span two images and two curves
        other = deletion_insertion(left_model, left_saliency, steps=6, batch_size=bs)
        np.testing.assert_allclose(other.deletion, ref.deletion, rtol=1e-5)
        np.testing.assert_allclose(other.insertion, ref.insertion, rtol=1e-5)
        np.testing.assert_allclose(other.random_insertion, ref.random_insertion, rtol=1e-5)
        np.testing.assert_allclose(other.random_deletion, ref.random_deletion, rtol=1e-5)


def test_blurred_baseline_keeps_the_image_content(tiny_model: Model, images: np.ndarray) -> None:
    e = explain(tiny_model, images, "saliency")
    black = deletion_insertion(tiny_model, e, steps=4, baseline="black", random_reference=False)
    blur = deletion_insertion(tiny_model, e, steps=4, baseline="blur", random_reference=False)
    assert blur.baseline == "blur" == deletion_insertion(tiny_model, e, steps=1, baseline="blurred",
                                                         random_reference=False).baseline
    np.testing.assert_allclose(blur.deletion[:, 0], black.deletion[:, 0], rtol=1e-6)
    assert not np.allclose(blur.deletion[:, -1], black.deletion[:, -1])


@pytest.mark.parametrize("channels", [1, 3])
def test_layouts_give_the_same_curves(tiny_onnx, channels: int) -> None:
    """The same seeded network with NCHW and NHWC input: every pixel is removed with all its channels,
    in either layout, so the curves agree."""
    rng = np.random.default_rng(2)
    imgs = rng.uniform(0, 255, (4, SIZE, SIZE, channels)).astype(np.uint8)
    curves = []
    for layout in ("NCHW", "NHWC"):
        model = Model(tiny_onnx(channels=channels, layout=layout))
        e = explain(model, list(imgs), "saliency")
        curves.append(deletion_insertion(model, e, steps=8, baseline="blurred"))
    np.testing.assert_allclose(curves[0].deletion, curves[1].deletion, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(curves[0].insertion, curves[1].insertion, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(curves[0].random_insertion, curves[1].random_insertion, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [({"baseline": "white"}, "unknown `baseline`"), ({"steps": 0}, "steps")])
def test_bad_arguments_say_what_is_allowed(left_model: Model, left_saliency, kwargs, message) -> None:
    with pytest.raises(BadInputError, match=message):
        deletion_insertion(left_model, left_saliency, **kwargs)


# ------------------------------------------------------------------ similarity
def test_spearman_matches_scipy_with_ties_and_is_zero_for_a_constant_map() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (3, 6, 6)).astype(np.float32)  # many ties
    b = a + rng.normal(0, 2, a.shape).astype(np.float32)
    ours = spearman(a, b)
    ref = [spearmanr(np.abs(p).ravel(), np.abs(q).ravel())[0] for p, q in zip(a, b)]
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    assert spearman(a[:1], np.ones_like(a[:1]))[0] == 0.0
    np.testing.assert_allclose(spearman(a, -a), 1.0)  # |map|: sign flips do not count


def test_ssim_is_one_for_the_same_map_up_to_scale_and_low_for_noise() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (2, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(ssim(a, 3 * a), 1.0, atol=1e-6)
    assert np.all(ssim(a, rng.uniform(0, 1, a.shape)) < 0.3)


# ------------------------------------------------------------------ ONNX-level randomisation
def test_layer_parameters_are_each_layers_own_weights(tiny_model: Model) -> None:
    inits = {t.name for t in tiny_model.onnx.graph.initializer}
    seen: set[str] = set()
    for layer in tiny_model.layers():
        names = layer_parameters(tiny_model.onnx, layer)
        assert names and set(names) <= inits
        size = sum(int(np.prod(next(t.dims for t in tiny_model.onnx.graph.initializer if t.name == n))) for n in names)
        assert size == layer.params, layer.name
        assert not seen & set(names)
        seen |= set(names)


@pytest.mark.slow
def test_layer_parameters_follow_tf2onnx_bias_adds() -> None:
    model = Model(zoo_path("o01"))
    for layer in model.layers():
        names = layer_parameters(model.onnx, layer)
        sizes = {t.name: int(np.prod(t.dims)) for t in model.onnx.graph.initializer}
        assert sum(sizes[n] for n in names) == layer.params, layer.name  # kernel + bias (the Add's vector)


def test_cascading_randomisation_changes_only_the_named_layers_and_keeps_earlier_stages(tiny_model: Model) -> None:
    layers = top_down_layers(tiny_model)
    assert [layer.name for layer in layers] == [layer.name for layer in tiny_model.layers()][::-1]
    original = {t.name: numpy_helper.to_array(t) for t in tiny_model.onnx.graph.initializer}
    stages = []
    for k, (name, random_model) in enumerate(cascading_models(tiny_model, layers, seed=0)):
        assert name == layers[k].name
        assert random_model.spec == tiny_model.spec and random_model.output_kind == tiny_model.output_kind
        now = {t.name: numpy_helper.to_array(t) for t in random_model.onnx.graph.initializer}
        random = {n for n in now if not np.array_equal(now[n], original[n])}
        expected = {p for layer in layers[: k + 1] for p in layer_parameters(tiny_model.onnx, layer)}
        assert random == expected
        for n in random:  # same scale: the std of the random values is near the original's
            assert np.std(now[n]) == pytest.approx(np.std(original[n]), rel=0.6, abs=1e-3)
        stages.append(now)
    for n in layer_parameters(tiny_model.onnx, layers[0]):
        np.testing.assert_array_equal(stages[0][n], stages[-1][n])


def test_positive_parameters_stay_positive() -> None:
    from onnxplain.engine.metrics.randomisation import random_like

    var = np.random.default_rng(0).uniform(0.5, 2.0, 64).astype(np.float32)
    out = random_like(var, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.min() >= 0.5 and out.max() <= 2.0 and not np.array_equal(out, var)


def test_unknown_layer_lists_the_known_ones(tiny_model: Model, images: np.ndarray) -> None:
    with pytest.raises(BadInputError, match="features.0"):
        randomisation_check(tiny_model, images, "saliency", layers=["nope"])


# ------------------------------------------------------------------ the sanity check, known answers
def test_a_real_cnns_saliency_is_not_flagged(tiny_model: Model, faces: np.ndarray) -> None:
    r = randomisation_check(tiny_model, faces[:6], "saliency")
    assert r.layers == ("classifier", "features.4", "features.0")
    assert r.spearman.shape == r.ssim.shape == (3, 6)
    assert not r.flagged and r.final_spearman < FLAG_THRESHOLD
    assert r.ssim[-1].mean() < 0.5
    assert r.maps.shape == (4, 6, SIZE, SIZE)
    np.testing.assert_allclose(r.maps[0], explain(tiny_model, faces[:6], "saliency").maps, rtol=1e-5)


def test_input_times_constant_is_flagged(square_model: Model, faces: np.ndarray) -> None:
    r = randomisation_check(square_model, faces[:4], "saliency")
    assert len(r.layers) == 1
    np.testing.assert_allclose(r.spearman, 1.0, atol=1e-5)
    np.testing.assert_allclose(r.ssim, 1.0, atol=1e-4)
    assert r.flagged
    # The map really is the image times a constant.
    assert spearman(r.maps[0], square_model.spec.to_model_input(faces[:4])[:, 0]).min() > 0.9999


@pytest.mark.parametrize("method", [edge_detector, noise_maps])
def test_methods_that_ignore_the_model_are_flagged(tiny_model: Model, faces: np.ndarray, method) -> None:
    r = randomisation_check(tiny_model, faces[:4], method)
    np.testing.assert_allclose(r.spearman, 1.0, atol=1e-6)
    assert r.flagged and r.method == method.__name__


def test_the_check_is_deterministic(tiny_model: Model, faces: np.ndarray) -> None:
    a = randomisation_check(tiny_model, faces[:2], "saliency", seed=7, keep_maps=False)
    b = randomisation_check(tiny_model, faces[:2], "saliency", seed=7, keep_maps=False)
    c = randomisation_check(tiny_model, faces[:2], "saliency", seed=8, keep_maps=False)
    np.testing.assert_array_equal(a.spearman, b.spearman)
    assert a.maps is None and not np.array_equal(a.spearman, c.spearman)


@pytest.mark.slow
def test_real_zoo_model_both_backends_are_not_flagged(faces: np.ndarray) -> None:
    model = Model(zoo_path("o01"))
    for method in ("saliency", "occlusion"):  # torch and onnxruntime backends, same ONNX-level randomisation
        r = randomisation_check(model, faces[:4], method, keep_maps=False)
        assert r.layers == ("dense_1", "dense", "conv2d_1", "conv2d")
        assert not r.flagged, (method, r.spearman)


# ------------------------------------------------------------------ trust_metrics
def test_trust_metrics_for_ig_records_completeness_and_reruns_with_its_params(tiny_model: Model,
                                                                              faces: np.ndarray) -> None:
    e = explain(tiny_model, faces[:4], "ig", steps=16)
    t = trust_metrics(tiny_model, e, steps=8, randomisation_images=2)
    np.testing.assert_array_equal(t.completeness_error, e.details.completeness_error)
    assert t.randomisation_images == 2 and t.randomisation.spearman.shape == (3, 2)
    # stage 0 of the check is the same ig (steps=16) on the first two images
    np.testing.assert_allclose(t.randomisation.maps[0], e.maps[:2], rtol=1e-4, atol=1e-7)
    rec = json.loads(json.dumps(t.record()))
    assert rec["method"] == "ig" and len(rec["completeness_error"]) == 4
    assert len(rec["deletion_insertion"]["insertion_auc"]) == 4 and rec["randomisation"]["images"] == 2
    assert rec["randomisation"]["flagged"] in (True, False)


def test_trust_metrics_without_randomisation(left_model: Model, left_saliency) -> None:
    t = trust_metrics(left_model, left_saliency, randomise=False)
    assert t.randomisation is None and t.completeness_error is None
    assert all(t.record()["deletion_insertion"]["beats_random"])


# ------------------------------------------------------------------ figures
def test_trust_figures_have_the_layouts_size(tiny_model: Model, faces: np.ndarray, tmp_path) -> None:
    from onnxplain.engine.render.html import png_size
    from onnxplain.engine.render.trust import render_curves, render_randomisation

    e = explain(tiny_model, faces[:4], "gradcam")
    t = trust_metrics(tiny_model, e, steps=8, randomisation_images=2)
    assert png_size(render_curves(t.curves, tmp_path / "c.png").read_bytes()) == (800, 320)
    # 3 layers: 4 map cells of 1.25 in (narrower than the 7 in minimum), maps band 1.6 in, plot 2.6 in
    assert png_size(render_randomisation(t.randomisation, tmp_path / "r.png").read_bytes()) == (700, 465)
    bare = randomisation_check(tiny_model, faces[:4], "gradcam", keep_maps=False)
    assert png_size(render_randomisation(bare, tmp_path / "b.png").read_bytes()) == (700, 305)


# ------------------------------------------------------------------ the report section
def test_report_section_has_every_method_consistently(tiny_report) -> None:
    numbers = json.loads((tiny_report.parent / "report.json").read_text(encoding="utf-8"))
    section = numbers["sections"]["trust"]
    assert section["error"] is None and section["title"] == "Can these maps be trusted?"
    trust = section["trust"]
    methods = ["saliency", "smoothgrad", "lime", "ig", "occlusion", "gradcam"]
    assert list(trust) == methods
    assert len(section["figures"]) == 2 * len(methods)
    assert all((tiny_report.parent / f).exists() for f in section["figures"])
    first = trust["saliency"]["deletion_insertion"]
    for name in methods:
        di, rnd = trust[name]["deletion_insertion"], trust[name]["randomisation"]
        # Same images and targets for every method: the unperturbed and the all-black ends agree, and so
        # does the (seeded) random reference.
        np.testing.assert_allclose(np.array(di["deletion"])[:, [0, -1]], np.array(first["deletion"])[:, [0, -1]],
                                   rtol=1e-5)
        np.testing.assert_allclose(di["random_insertion_auc"], first["random_insertion_auc"], rtol=1e-5)
        assert rnd["images"] == 4 and rnd["layers"] == ["classifier", "features.4", "features.0"]
    assert len(trust["ig"]["completeness_error"]) == len(first["insertion_auc"])
    page = tiny_report.read_text(encoding="utf-8")
    assert "Can these maps be trusted?" in page and "completeness error" in page


def test_sampled_stages_are_the_same_stages_of_the_full_cascade(tiny_model: Model, faces: np.ndarray) -> None:
    from onnxplain.engine.metrics.randomisation import stage_indices

    full = randomisation_check(tiny_model, faces[:2], "saliency", seed=3, keep_maps=False)
    at = stage_indices(len(full.layers), 2)
    assert at == [0, len(full.layers) - 1]  # the top layer and full randomisation, which the flag reads
    some = randomisation_check(tiny_model, faces[:2], "saliency", seed=3, keep_maps=False, stages=2)
    assert some.layers == tuple(full.layers[i] for i in at) and some.stages == at
    np.testing.assert_allclose(some.spearman, full.spearman[at], atol=1e-6)
    assert some.final_spearman == pytest.approx(full.final_spearman, abs=1e-6) and some.flagged == full.flagged
    assert stage_indices(53, 6) == [0, 10, 21, 31, 42, 52] and stage_indices(4, 6) == [0, 1, 2, 3]


def test_given_original_maps_are_not_computed_again(tiny_model: Model, faces: np.ndarray) -> None:
    x = tiny_model.spec.to_model_input(list(faces[:2]))
    expl = explain(tiny_model, x, "smoothgrad", preprocessed=True, seed=5, samples=8)
    fresh = randomisation_check(tiny_model, x, "smoothgrad", targets=expl.targets, seed=5, preprocessed=True,
                                samples=8, stages=2)
    reused = randomisation_check(tiny_model, x, "smoothgrad", targets=expl.targets, seed=5, preprocessed=True,
                                 samples=8, stages=2, original=expl.maps)
    np.testing.assert_allclose(reused.maps[0], fresh.maps[0], rtol=1e-4, atol=1e-6)  # the same maps either way
    np.testing.assert_allclose(reused.spearman, fresh.spearman, atol=1e-4)
    with pytest.raises(BadInputError, match="original maps have shape"):
        randomisation_check(tiny_model, x, "smoothgrad", preprocessed=True, original=expl.maps[:1])


def test_random_order_curves_are_shared_between_methods(tiny_model: Model, images: np.ndarray) -> None:
    a = explain(tiny_model, images[:3], "saliency")
    b = explain(tiny_model, images[:3], "gradcam")
    first = deletion_insertion(tiny_model, a, steps=8)
    alone = deletion_insertion(tiny_model, b, steps=8)
    shared = deletion_insertion(tiny_model, b, steps=8, reference=first)
    np.testing.assert_allclose(shared.random_deletion, alone.random_deletion, atol=1e-6)
    np.testing.assert_allclose(shared.insertion, alone.insertion, atol=1e-6)
    with pytest.raises(BadInputError, match="reference curves"):
        deletion_insertion(tiny_model, b, steps=4, reference=first)
