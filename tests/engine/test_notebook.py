"""Inline notebook displays: an Explanation, a model summary and a comparison render as HTML."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np

from onnxplain.engine import Model, explain
from onnxplain.engine.compare import build_comparison
from onnxplain.engine.render.html import png_size
from tests.conftest import faces_dataset


def _pngs(fragment: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', fragment)]


def test_explanation_shows_its_grid(tiny_onnx, faces: np.ndarray) -> None:
    model = Model(tiny_onnx(size=25))
    pixels = faces_dataset(faces, n=3).images
    expl = explain(model, list(pixels), "saliency", seed=0)
    fragment = expl._repr_html_()
    (png,) = _pngs(fragment)
    width, height = png_size(png)
    assert width > 300 and height > 3 * 100  # three rows of image, map and overlay
    assert "saliency: 3 image(s)" in fragment


def test_model_summary_is_a_dict_that_shows_as_a_table(tiny_onnx) -> None:
    summary = Model(tiny_onnx()).summary()
    assert isinstance(summary, dict) and summary["source_summary"] is None
    fragment = summary._repr_html_()
    for layer in summary["layers"]:
        assert f"<td>{layer['name']}</td>" in fragment and f"<td>{layer['params']:,}</td>" in fragment
    assert html.escape(summary["summary_note"]) in fragment


def test_comparison_shows_its_page_in_an_iframe(tiny_onnx, faces: np.ndarray, tmp_path: Path) -> None:
    models = [Model(tiny_onnx(size=25)), Model(tiny_onnx(size=25, seed=1))]
    ds = faces_dataset(faces, n=12)
    result = build_comparison(models, [ds, ds], tmp_path, methods=["saliency"], seed=0)
    fragment = result._repr_html_()
    assert fragment.startswith("<iframe srcdoc=") and "<script" not in fragment
    assert html.unescape(fragment.split('srcdoc="', 1)[1].split('" style=', 1)[0]) == result.page.read_text()
    names = [m["name"] for m in result.numbers["models"]]
    assert len(set(names)) == 2 and all(m.path.name in n for m, n in zip(models, names))
