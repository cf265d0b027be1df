"""Renderers: PNG sizes follow the layout, colours follow the colour maps, writes are atomic."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.image import imread

from onnxplain.engine.details import Details, LimeDetails, SaliencyDetails
from onnxplain.engine.explanation import Explanation
from onnxplain.engine.render import (
    render_activations,
    render_confusion,
    render_dream,
    render_explanation,
    render_filters,
    render_grid,
    render_training,
)
from onnxplain.engine.render import figures
from onnxplain.engine.render.figures import Layout, lime_picture, overlay

H = W = 30


def make_explanation(method: str, maps: np.ndarray, *, details: Details | None = None, channels: int = 1) -> Explanation:
    n = maps.shape[0]
    rng = np.random.default_rng(1)
    inputs = rng.uniform(0, 1, size=(n, channels, *maps.shape[1:])).astype(np.float32)
    return Explanation(method=method, maps=maps.astype(np.float32), inputs=inputs, targets=np.arange(n) % 3,
                       scores=np.linspace(0.9, 0.5, n).astype(np.float32), params={}, model_sha256="0" * 64,
                       versions={}, labels=("cat", "dog", "owl"), seconds=0.25, details=details)


def lime_details(segs: np.ndarray, **given: np.ndarray) -> LimeDetails:
    """LIME details for `segs` (N, H, W): the fields a test sets, the rest neutral (no top superpixels)."""
    n, k = len(segs), int(segs.max()) + 1
    none = np.zeros(segs.shape, bool)
    return LimeDetails(**{"segments": segs, "weights": np.zeros((n, k)), "n_segments": np.full(n, k),
                          "r2": np.zeros(n), "intercept": np.zeros(n), "local_pred": np.zeros(n), "positive_mask": none,
                          "negative_mask": none, "stability": np.ones(n), "samples_used": np.full(n, 100), **given})


def display(expl: Explanation) -> np.ndarray:
    return np.transpose(expl.inputs, (0, 2, 3, 1))


def png(path: Path) -> np.ndarray:
    """RGB floats in [0, 1] as written."""
    return imread(path)[..., :3]


def pixel_count(img: np.ndarray, rgba: np.ndarray, tol: float = 2.5 / 255) -> int:
    return int(np.all(np.abs(img - np.asarray(rgba)[:3]) <= tol, axis=-1).sum())


def bands(values: tuple[float, float, float], n: int = 1) -> np.ndarray:
    """Three vertical bands of 10 columns holding the three values."""
    m = np.empty((n, H, W), np.float32)
    for k, v in enumerate(values):
        m[:, :, 10 * k:10 * (k + 1)] = v
    return m


# ------------------------------------------------------------------------------------ sizes
def test_explanation_png_size_follows_its_panels(tmp_path: Path) -> None:
    plain = make_explanation("ig", bands((-1, 0, 2)))
    segs = np.repeat(np.arange(3), 10)[None, None, :].repeat(H, axis=1).astype(np.int32)
    lime = make_explanation("lime", bands((-1, 0, 2)), details=lime_details(
        segs, positive_mask=segs == 2, negative_mask=segs == 0, r2=np.array([0.8])))
    p3 = render_explanation(plain, tmp_path / "ig.png", images=display(plain))
    p4 = render_explanation(lime, tmp_path / "lime.png", images=display(lime))
    h3, w3 = imread(p3).shape[:2]
    h4, w4 = imread(p4).shape[:2]
    assert (w3, h3) == Layout(rows=1, cols=3, image=2.2, colorbar=True).size_px
    assert (w4, h4) == Layout(rows=1, cols=4, image=2.2, colorbar=True).size_px
    assert h3 == h4 and w4 > w3


def test_grid_grows_by_one_cell_per_row(tmp_path: Path) -> None:
    sizes = {}
    for n in (2, 3, 5):
        e = make_explanation("saliency", np.abs(np.random.default_rng(n).normal(size=(n, H, W))))
        h, w = imread(render_grid(e, tmp_path / f"g{n}.png", images=display(e))).shape[:2]
        sizes[n] = (w, h)
        assert (w, h) == Layout(rows=n, cols=3, image=1.5, colorbar=True, label_band=1.35).size_px
    step = sizes[3][1] - sizes[2][1]
    assert step > 0 and sizes[5][1] - sizes[3][1] == 2 * step
    assert len({w for w, _ in sizes.values()}) == 1


def test_method_comparison_grid_has_one_column_per_method(tmp_path: Path) -> None:
    maps = np.abs(np.random.default_rng(0).normal(size=(4, H, W)))
    expls = [make_explanation(m, maps) for m in ("saliency", "gradcam", "occlusion")]
    h, w = imread(render_grid(expls, tmp_path / "cmp.png", images=display(expls[0]))).shape[:2]
    assert (w, h) == Layout(rows=4, cols=4, image=1.5, colorbar=False, label_band=1.35).size_px


def test_feature_figures_have_the_grid_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vis = SimpleNamespace(layer="conv2d_2", filters=list(range(16)), images=rng.uniform(size=(16, 24, 24, 1)),
                          start_activation=np.zeros(16), final_activation=rng.uniform(size=16), seconds=1.0)
    h, w = imread(render_filters(vis, tmp_path / "f.png")).shape[:2]
    assert (w, h) == Layout(rows=2, cols=8, image=1.1).size_px
    acts = SimpleNamespace(layer="conv2d_2", maps=rng.normal(size=(20, 6, 6)), image=rng.uniform(size=(24, 24, 3)))
    h, w = imread(render_activations(acts, tmp_path / "a.png")).shape[:2]
    assert (w, h) == Layout(rows=3, cols=8, image=1.1).size_px  # the image + 20 maps = 21 cells
    dream = SimpleNamespace(layer="conv2d_2", image=rng.uniform(size=(24, 24, 1)), start_objective=0.1,
                            final_objective=2.0, seconds=1.0)
    h, w = imread(render_dream(dream, tmp_path / "d.png", original=rng.uniform(size=(24, 24, 1)))).shape[:2]
    assert (w, h) == Layout(rows=1, cols=2, image=2.2).size_px


def test_confusion_png_grows_with_classes(tmp_path: Path) -> None:
    small = render_confusion(np.eye(3), tmp_path / "c3.png", labels=["a", "b", "c"])
    big = render_confusion(np.eye(12), tmp_path / "c12.png")
    hs, ws = imread(small).shape[:2]
    hb, wb = imread(big).shape[:2]
    assert wb - ws == hb - hs == int(round((0.5 * 12 - 2.5) * figures.DPI))


# ------------------------------------------------------------------------------------ colours
def test_signed_map_uses_a_diverging_map_centred_at_zero(tmp_path: Path) -> None:
    # Asymmetric values: centred at zero, -1 must get the colour a quarter of the way up, not the bottom,
    # and 0 the middle (white); a min-max scaling would put 0 at a third.
    e = make_explanation("ig", bands((-1.0, 0.0, 2.0)))
    img = png(render_explanation(e, tmp_path / "ig.png", images=display(e)))
    cmap = colormaps[figures.SIGNED_CMAP]
    band = 10 * 220 * 220 // 30  # one band of the 220 px map panel
    assert pixel_count(img, cmap(1.0)) > 0.8 * band       # +max
    assert pixel_count(img, cmap(0.5)) > 0.8 * band       # zero: the centre of the diverging map
    assert pixel_count(img, cmap(0.25)) > 0.8 * band      # -max/2 on a scale of +-max
    assert pixel_count(img, cmap(1 / 3)) < 0.05 * band    # what min-max scaling would give zero
    assert np.allclose(cmap(0.5)[:3], 1.0, atol=0.04)    # the centre of the diverging map is near white


def test_symmetric_signed_map_reaches_both_ends(tmp_path: Path) -> None:
    e = make_explanation("occlusion", bands((-3.0, 0.0, 3.0)))
    img = png(render_explanation(e, tmp_path / "o.png", images=display(e)))
    cmap = colormaps[figures.SIGNED_CMAP]
    band = 10 * 220 * 220 // 30
    for value in (0.0, 0.5, 1.0):
        assert pixel_count(img, cmap(value)) > 0.8 * band


def test_non_negative_map_uses_a_sequential_map(tmp_path: Path) -> None:
    e = make_explanation("saliency", bands((0.0, 0.5, 1.0)))
    img = png(render_explanation(e, tmp_path / "s.png", images=display(e)))
    cmap = colormaps[figures.POSITIVE_CMAP]
    band = 10 * 220 * 220 // 30
    assert pixel_count(img, cmap(0.0)) > 0.8 * band
    assert pixel_count(img, cmap(0.5)) > 0.8 * band
    assert pixel_count(img, cmap(1.0)) > 0.8 * band
    assert pixel_count(img, colormaps[figures.SIGNED_CMAP](1.0)) == 0


def test_a_negative_value_makes_any_method_signed() -> None:
    assert figures.is_signed(make_explanation("custom", bands((-0.1, 0.0, 1.0))))
    assert not figures.is_signed(make_explanation("custom", bands((0.0, 0.0, 1.0))))
    assert figures.is_signed(make_explanation("ig", bands((0.0, 0.0, 1.0))))  # signed by definition


def test_overlay_keeps_the_image_where_the_map_is_zero() -> None:
    img = np.full((4, 4, 1), 0.3, np.float32)
    amap = np.zeros((4, 4), np.float32)
    amap[0, 0] = 5.0
    amap[3, 3] = -5.0
    out = overlay(img, amap, signed=True)
    assert out.shape == (4, 4, 3)
    assert np.allclose(out[1:3, 1:3], 0.3)
    red, blue = out[0, 0], out[3, 3]
    assert red[0] > red[2] and blue[2] > blue[0]
    expected = 0.3 * (1 - figures.OVERLAY_ALPHA) + np.asarray(figures.signed_color(5.0, 5.0))[:3] * figures.OVERLAY_ALPHA
    assert np.allclose(red, expected, atol=1e-6)


def test_lime_picture_tints_the_top_superpixels() -> None:
    img = np.full((12, 12, 1), 0.5, np.float32)
    segs = np.repeat(np.arange(3), 4)[None, :].repeat(12, axis=0)
    out = lime_picture(img, segs, segs == 0, segs == 2)
    k = out.shape[0] // 12
    assert out.shape == (12 * k, 12 * k, 3) and k > 1
    centre_pos, centre_neg, centre_mid = out[6 * k, 2 * k], out[6 * k, 10 * k], out[6 * k, 6 * k]
    # one convention with the signed map and the overlay: red raises the score, blue lowers it
    assert centre_pos[0] > centre_pos[2] + 0.2            # red
    assert centre_neg[2] > centre_neg[0] + 0.2            # blue
    for centre, sign in ((centre_pos, 1), (centre_neg, -1)):
        expected = 0.25 + 0.5 * np.asarray(figures.signed_color(sign * figures.LIME_TINT, 1.0))[:3]
        assert np.allclose(centre, expected, atol=1e-6)
    assert np.allclose(centre_mid, 0.5)                   # untouched
    assert np.isclose(out[:, 4 * k - 1: 4 * k + 1], (1.0, 0.9, 0.0)).all(axis=-1).any()  # a yellow boundary


def test_lime_title_says_how_stable_and_how_many_samples() -> None:
    segs = np.zeros((2, H, W), np.int32)
    e = make_explanation("lime", bands((-1, 0, 2), n=2), details=lime_details(
        segs, r2=np.array([0.8, 0.7]), stability=np.array([0.973, 0.5]), samples_used=np.array([400, 5000])))
    e = replace(e, params={"top_k": 5})
    assert figures.explanation_title(e, 0).endswith("R² 0.80 · top-5 stable at 97%, 400 samples")
    assert figures.explanation_title(e, 1).endswith("top-5 stable at 50%, 5,000 samples")


def test_confusion_cells_are_coloured_by_rate(tmp_path: Path) -> None:
    m = np.array([[1.0, 0.0], [0.5, 0.5]])
    img = png(render_confusion(m, tmp_path / "c.png", labels=["yes", "no"]))
    cmap = colormaps[figures.CONFUSION_CMAP]
    cell = (2.5 / 2 * figures.DPI) ** 2
    assert pixel_count(img, cmap(1.0)) > 0.5 * cell
    assert pixel_count(img, cmap(0.5)) > 2 * 0.5 * cell


# ------------------------------------------------------------------------------------ files and errors
def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e = make_explanation("ig", bands((-1, 0, 1)))
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    def broken_savefig(self: Figure, fname: Path, **kwargs: object) -> None:
        Path(fname).write_bytes(b"\x89PNG half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        render_explanation(e, target, images=display(e))
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    monkeypatch.undo()
    assert render_explanation(e, target, images=display(e)) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_renderers_create_folders_and_return_the_path(tmp_path: Path) -> None:
    e = make_explanation("saliency", np.ones((2, H, W)), details=SaliencyDetails(
        attributions=np.ones((2, 1, H, W), np.float32)))
    out = render_grid(e, tmp_path / "a" / "b" / "grid.png", images=display(e))
    assert out == tmp_path / "a" / "b" / "grid.png" and out.stat().st_size > 0
    history = [{"epoch": 1, "loss": 1.0, "train_accuracy": 0.5}, {"epoch": 2, "loss": 0.5, "train_accuracy": 0.8}]
    assert render_training(history, tmp_path / "t.png").exists()


def test_spec_maps_model_input_back_to_the_image(tiny_onnx) -> None:
    from onnxplain.engine import Model

    model = Model(tiny_onnx(size=16))
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 16, 16)).astype(np.uint8)
    x = model.spec.to_model_input(list(pixels))
    e = make_explanation("saliency", np.ones((2, 16, 16)))
    e = Explanation(**{**e.__dict__, "inputs": x})
    shown = figures.display_images(e, spec=model.spec)
    assert np.allclose(shown[..., 0], pixels / 255.0, atol=1e-5)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    e = make_explanation("ig", bands((-1, 0, 1), n=2))
    with pytest.raises(ValueError, match="spec="):
        render_explanation(e, tmp_path / "x.png")
    with pytest.raises(ValueError, match="do not match"):
        render_explanation(e, tmp_path / "x.png", images=np.zeros((2, 8, 8, 1)))
    with pytest.raises(IndexError):
        render_explanation(e, tmp_path / "x.png", 2, images=display(e))
    with pytest.raises(ValueError, match="square"):
        render_confusion(np.ones((2, 3)), tmp_path / "c.png")
    with pytest.raises(ValueError, match="row labels"):
        render_grid(e, tmp_path / "g.png", images=display(e), row_labels=["only one"])
    other = make_explanation("saliency", np.ones((3, H, W)))
    with pytest.raises(ValueError, match="same images"):
        render_grid([e, other], tmp_path / "g.png", images=display(e))
    assert not list(tmp_path.iterdir())


def test_each_filter_gets_its_own_contrast(tmp_path: Path) -> None:
    """Two low-contrast filters around different greys both come out spanning black to white."""
    rng = np.random.default_rng(0)
    faint = [0.50 + 0.01 * rng.uniform(size=(24, 24, 1)), 0.20 + 0.002 * rng.uniform(size=(24, 24, 1))]
    for img in faint:
        out = figures.filter_contrast(img)
        lo, hi = np.percentile(img, figures.FILTER_PERCENTILES)
        assert out.min() == 0.0 and out.max() == 1.0
        np.testing.assert_allclose(out, np.clip((img - lo) / (hi - lo), 0, 1), atol=1e-4)
    flat = np.full((8, 8, 1), 0.3, np.float32)
    np.testing.assert_array_equal(figures.filter_contrast(flat), flat)
    vis = SimpleNamespace(layer="c", filters=[0, 1], images=np.stack(faint), final_activation=np.ones(2))
    drawn = imread(render_filters(vis, tmp_path / "f.png"))[..., :3].mean(axis=-1)
    assert drawn.max() - drawn.min() > 0.9  # one shared grey scale would leave both nearly flat
