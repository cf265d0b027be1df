"""The report: every section the assignment asks for, every image present, the numbers consistent."""
from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from onnxplain.engine import BadInputError, Model, explain
from onnxplain.engine.evaluate import evaluate
from onnxplain.engine.render.html import png_size
from onnxplain.engine.report import build_report, middle_conv_layer
from tests.conftest import export_onnx, faces_dataset

SECTIONS = ("summary", "evaluation", "saliency", "smoothgrad", "lime", "ig", "occlusion", "gradcam", "comparison",
            "trust", "filters", "activations", "dream")


class Page(HTMLParser):
    """The section ids, the <img> tags and the links of a report page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "img":
            self.images.append(a)
        elif tag == "a":
            self.links.append(a["href"])


@pytest.fixture(scope="module")
def page(tiny_report: Path) -> Page:
    return Page(tiny_report.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def numbers(tiny_report: Path) -> dict:
    return json.loads((tiny_report.parent / "report.json").read_text(encoding="utf-8"))


def test_report_has_every_section_in_order(page: Page, numbers: dict) -> None:
    assert page.sections == list(SECTIONS)
    assert set(numbers["sections"]) == set(SECTIONS)
    for sid, section in numbers["sections"].items():
        assert section["error"] is None, (sid, section["error"])
        assert section["seconds"] >= 0
    for method in ("saliency", "lime", "ig", "occlusion", "gradcam"):
        assert numbers["sections"][method]["seconds"] > 0
        assert numbers["sections"][method]["params"]["seed"] == 0
    assert numbers["sections"]["lime"]["params"]["samples"] == "auto"  # lime's report_params: as stable as lime@1000
    assert numbers["sections"]["ig"]["params"]["steps"] > 1
    assert numbers["sections"]["gradcam"]["params"]["layer"] == "features.4"


def test_every_section_states_its_parameters_and_time(tiny_report: Path) -> None:
    text = tiny_report.read_text(encoding="utf-8")
    for sid in SECTIONS:
        body = text.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]
        assert "took " in body and " s</p>" in body, sid
    for sid in ("lime", "ig", "occlusion", "filters", "dream"):
        body = text.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]
        assert "parameters:" in body, sid


def test_every_image_is_embedded_and_matches_its_file(tiny_report: Path, page: Page, numbers: dict) -> None:
    listed = [f for s in numbers["sections"].values() for f in s["figures"]]
    assert len(page.images) == len(listed) >= 10
    png_links = [link for link in page.links if link.endswith(".png")]
    assert sorted(png_links) == sorted(listed)
    for img, link in zip(page.images, png_links):
        assert img["src"].startswith("data:image/png;base64,")
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert png_size(data) == (int(img["width"]), int(img["height"]))
        assert data == (tiny_report.parent / link).read_bytes()
        assert img["alt"]


def test_numbers_match_the_engine(tiny_report: Path, numbers: dict, tiny_onnx, faces: np.ndarray) -> None:
    model = Model(tiny_onnx(size=16, classes=4))
    ds = faces_dataset(faces)
    assert numbers["evaluation"]["accuracy"] == pytest.approx(evaluate(model, ds).accuracy)
    assert numbers["model"]["total_params"] == model.summary()["total_params"]
    selection = numbers["selection"]
    assert [row["true"] for row in selection] == [0, 1, 2, 3]  # one image per class, in class order
    picked = [row["index"] for row in selection]
    maps = np.load(tiny_report.parent / "maps.npz")
    assert set(maps.files) == {"saliency", "smoothgrad", "lime", "ig", "occlusion", "gradcam"}
    # The same images for every method: each map is what explain() gives on the selected images.
    for method in ("saliency", "occlusion"):
        expected = explain(model, list(ds.images[picked]), method, seed=0).maps
        np.testing.assert_allclose(maps[method], expected, rtol=1e-5, atol=1e-6)
    for method in maps.files:
        records = numbers["sections"][method]["images"]
        assert [r["index"] for r in records] == list(range(len(picked)))
        assert [r["target"] for r in records] == [row["predicted"] for row in selection]
    ig = numbers["sections"]["ig"]["images"]
    assert all(np.isfinite(r["completeness_error"]) for r in ig)
    assert len(numbers["sections"]["filters"]["filters"]) == 16  # all 16 filters of features.4
    assert numbers["sections"]["filters"]["layer"] == middle_conv_layer(model).name == "features.4"
    assert numbers["sections"]["dream"]["final_objective"] > numbers["sections"]["dream"]["start_objective"]


def test_lime_section_relates_to_the_confusion_matrix(tiny_report: Path, numbers: dict) -> None:
    body = tiny_report.read_text(encoding="utf-8").split('<section id="lime">', 1)[1].split("</section>", 1)[0]
    assert "recall of the true class" in body and "most often mistaken for" in body
    recalls = [c["recall"] for c in numbers["evaluation"]["per_class"]]
    for r in recalls:
        assert f"{r:.3f}" in body
    assert "top-5 stable at" in body  # every LIME row says how stable its top superpixels are, at what cost
    for image in numbers["sections"]["lime"]["images"]:
        assert f"{image['stability']:.0%}, {image['samples_used']:,} samples" in body


def test_report_without_labels_picks_per_predicted_class(tmp_path: Path, tiny_onnx, faces: np.ndarray) -> None:
    from dataclasses import replace

    model = Model(tiny_onnx(size=16, classes=4))
    ds = replace(faces_dataset(faces), labels=None)
    calls: list[tuple[str, float | None]] = []
    page = build_report(model, ds, tmp_path, methods=["saliency"], progress=lambda d, f: calls.append((d, f)))
    numbers = json.loads((tmp_path / "report.json").read_text())
    assert numbers["evaluation"] is None
    assert "has no labels" in numbers["sections"]["evaluation"]["error"]
    preds = model.predict(model.spec.to_model_input(list(ds.images))).argmax(axis=1)
    assert sorted(row["predicted"] for row in numbers["selection"]) == sorted(set(preds.tolist()))
    assert all(row["true"] is None for row in numbers["selection"])
    assert Page(page.read_text()).sections == ["summary", "evaluation", "saliency", "trust", "filters", "activations",
                                               "dream"]
    fractions = [f for _, f in calls if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 5


def test_model_without_conv_layers_says_why(tmp_path: Path, faces: np.ndarray) -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 12), nn.ReLU(), nn.Linear(12, 4)).eval()
    path = export_onnx(mlp, tmp_path / "mlp.onnx", (2, 1, 16, 16))
    page = build_report(Model(path), faces_dataset(faces), tmp_path / "out", methods=["saliency", "gradcam"])
    numbers = json.loads((tmp_path / "out" / "report.json").read_text())
    assert numbers["sections"]["saliency"]["error"] is None
    assert "gradcam could not run" in numbers["sections"]["gradcam"]["error"]
    for sid in ("filters", "activations", "dream"):
        assert "no conv layer" in numbers["sections"][sid]["error"]
    text = page.read_text()
    assert text.count('class="error"') == 4


def test_bad_arguments_fail_before_any_work(tmp_path: Path, tiny_onnx, faces: np.ndarray) -> None:
    model = Model(tiny_onnx(size=16, classes=4))
    ds = faces_dataset(faces)
    with pytest.raises(BadInputError, match="unknown method 'gradient'.*known methods: .*saliency"):
        build_report(model, ds, tmp_path / "a", methods=["gradient"])
    with pytest.raises(BadInputError, match="unknown layer 'conv9'.*features.0"):
        build_report(model, ds, tmp_path / "b", layer="conv9")
    with pytest.raises(BadInputError, match="per_class"):
        build_report(model, ds, tmp_path / "c", per_class=0)
    assert not list(tmp_path.iterdir())


def test_sections_leave_the_others_out_and_the_page_says_what_each_cost(tmp_path: Path, tiny_onnx,
                                                                        faces: np.ndarray) -> None:
    model = Model(tiny_onnx(size=16, classes=4))
    page = build_report(model, faces_dataset(faces), tmp_path, sections=["evaluation", "saliency", "filters"])
    assert Page(page.read_text()).sections == ["summary", "evaluation", "saliency", "filters"]
    numbers = json.loads((tmp_path / "report.json").read_text())
    assert set(numbers["sections"]) == {"summary", "evaluation", "saliency", "filters"}
    assert "<th>cost</th>" in page.read_text() and "figures and writing" in page.read_text()
    with pytest.raises(BadInputError, match="unknown section 'trusty'.*choose from training, evaluation"):
        build_report(model, faces_dataset(faces), tmp_path / "x", sections=["trusty"])


def test_resolve_sections() -> None:
    from onnxplain.engine.report import resolve_sections

    every = ["saliency", "lime", "ig"]
    assert resolve_sections(None, every)[0] == every
    assert resolve_sections(["trust"], every) == (every, {"trust"})  # trust is about the maps: they run
    assert resolve_sections(["lime", "filters"], every) == (["lime"], {"filters"})
    assert resolve_sections(["evaluation"], every) == ([], {"evaluation"})


def test_occlusion_and_ascent_defaults_scale_with_the_input() -> None:
    from onnxplain.engine.features import ascent_steps
    from onnxplain.engine.methods.occlusion import default_window, window_starts

    assert default_window((48, 48)) == ((8, 8), (4, 4))  # the course's faces keep the old default
    for side in (48, 96, 224, 299):
        (w, _), (s, _) = default_window((side, side))
        positions = len(window_starts(side, w, s))
        assert 9 <= positions <= 13 and s <= w  # about as many windows at any size; every pixel covered
    assert ascent_steps(48, 48) == 128 and ascent_steps(224, 224) == 37 and ascent_steps(2000, 2000) == 32


def test_large_selections_show_a_sample_per_class_in_figures(tiny_onnx, faces: np.ndarray) -> None:
    from onnxplain.engine.report import figure_rows

    rows = [{"true": i % 7, "predicted": 0} for i in range(70)]
    shown = figure_rows(rows)
    assert len(shown) == 21 and sorted({rows[i]["true"] for i in shown}) == list(range(7))
    assert all(sum(rows[i]["true"] == k for i in shown) == 3 for k in range(7))
    assert figure_rows(rows[:20]) == list(range(20))
    model = Model(tiny_onnx(size=16, classes=4))
    expl = explain(model, list(faces[:5]), "lime", samples=50, segments="grid")
    part = expl.take([4, 1])
    np.testing.assert_array_equal(part.maps, expl.maps[[4, 1]])
    np.testing.assert_array_equal(part.targets, expl.targets[[4, 1]])
    for k, v in expl.details.items().items():
        if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == 5:
            np.testing.assert_array_equal(getattr(part.details, k), v[[4, 1]])
    assert figure_rows(rows[:20], per_class=1) == list(range(7))
