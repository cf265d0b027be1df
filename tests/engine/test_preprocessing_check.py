"""Preprocessing found on labelled data: models trained here on real digits under raw 0..255, [-1, 1],
BGR and ImageNet preprocessing, exported through the project's exporter with no preprocessing given,
get the convention they were trained with back (and say so); flags and sidecars win over detection."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxplain.engine import Model
from onnxplain.engine.data import load_dataset
from onnxplain.engine.evaluate import evaluate
from onnxplain.engine.grading import GradeOptions, discover_submissions
from onnxplain.engine.grading.unit import grade_one
from onnxplain.engine.preprocessing_check import (
    Convention, check_preprocessing, clearly_better, current_convention, detect_preprocessing, usual_conventions,
)
from onnxplain.exporters import export
from tests.engine.preprocessing_models import (
    Digits, accuracy_as_trained, colour_digits, gray_digits, net_args, train_student,
)

TRAIN_PY = '''
import torch
from torchvision import transforms
tf = transforms.Compose([transforms.ToTensor(),
                         transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
'''


@pytest.fixture(scope="module")
def gray() -> Digits:
    return gray_digits()


@pytest.fixture(scope="module")
def colour() -> Digits:
    return colour_digits()


@pytest.fixture(scope="module")
def students(tmp_path_factory, gray, colour, export_worker) -> dict[str, dict]:
    """kind -> {weights, onnx (exported with no preprocessing), data (.npz of the held-out digits), trained acc}."""
    root = tmp_path_factory.mktemp("students")
    out = {}
    for kind, data in (("raw", gray), ("minus_one_one", gray), ("bgr", colour), ("imagenet", colour)):
        weights = train_student(root / "subs" / kind, kind, data)
        args = net_args(data)
        onnx_path = export(weights, root / f"{kind}.onnx", arch=f"{weights.parent / 'model.py'}:Net", trust=True, arch_args=args,
                           input_shape=(1, args["channels"], 16, 16), worker=export_worker)
        out[kind] = {"weights": weights, "onnx": onnx_path, "data": data.save_test(root / f"{kind}_test.npz"),
                     "trained": accuracy_as_trained(weights, kind, data)}
    return out


@pytest.mark.slow
def test_the_students_learnt_their_task(students):
    for kind, s in students.items():
        assert s["trained"] >= 0.9, (kind, s["trained"])
        side = json.loads(Path(str(s["onnx"]) + ".json").read_text())
        assert "preprocessing" not in side  # nothing given at export: the default x/255 would be a guess


@pytest.mark.slow
@pytest.mark.parametrize("kind,chosen", [("bgr", "x/255 BGR"), ("imagenet", "ImageNet mean/std")])
def test_colour_models_get_their_channel_order_and_normalisation_back(students, kind, chosen):
    s = students[kind]
    model = Model(s["onnx"])
    dataset = load_dataset(s["data"])
    before = evaluate(model, dataset).accuracy
    record = detect_preprocessing(model, dataset)
    assert record["changed"] and record["chosen"] == chosen and model.preprocessing_source == "detected"
    assert record["message"].startswith(f"chose {chosen}: accuracy ") and record["message"].endswith("with x/255")
    assert record["sample"] == 200 and {t["name"] for t in record["tried"]} >= {"x/255", "x/255 BGR", "[-1, 1]"}
    assert model.spec.channel_order == ("BGR" if kind == "bgr" else "RGB")
    after = evaluate(model, dataset).accuracy
    assert after == pytest.approx(s["trained"], abs=1e-9) and after > before + 0.3, (before, after)
    summary = model.summary()["preprocessing"]
    assert summary["source"] == "detected" and summary["check"]["chosen"] == chosen


@pytest.mark.slow
def test_the_students_code_is_a_candidate(students, tmp_path):
    s = students["imagenet"]
    (tmp_path / "train.py").write_text(TRAIN_PY)
    model = Model(s["onnx"])
    record = detect_preprocessing(model, load_dataset(s["data"]), code=[tmp_path / "train.py"])
    code = next(t for t in record["tried"] if t["name"] == "from the student's code")
    assert code["mean"] == [0.485, 0.456, 0.406] and code["accuracy"] == pytest.approx(s["trained"], abs=0.02)
    assert record["scanned"]["evidence"] and "train.py:5" in " ".join(record["scanned"]["evidence"])
    assert model.spec.mean == pytest.approx((0.485, 0.456, 0.406))


@pytest.mark.slow
def test_flags_and_sidecar_preprocessing_win(students, tmp_path):
    s = students["raw"]
    dataset = load_dataset(s["data"])
    flagged = Model(s["onnx"], scale=1 / 255)  # the user says x/255 (wrongly): it stays
    assert detect_preprocessing(flagged, dataset) is None
    assert flagged.spec.scale == pytest.approx(1 / 255) and flagged.preprocessing_source == "flags"
    side = json.loads(Path(str(s["onnx"]) + ".json").read_text())
    copy = tmp_path / "raw_with_sidecar.onnx"
    copy.write_bytes(Path(s["onnx"]).read_bytes())
    Path(str(copy) + ".json").write_text(json.dumps({**side, "preprocessing": {"scale": 1.0, "mean": [0.0],
                                                                               "std": [1.0]}}))
    recorded = Model(copy)
    assert recorded.preprocessing_source == "sidecar" and detect_preprocessing(recorded, dataset) is None


@pytest.mark.slow
@pytest.mark.parametrize("kind,chosen,scale,mean", [("raw", "raw 0..255", 1.0, 0.0),
                                                    ("minus_one_one", "[-1, 1]", 2 / 255, 1.0)])
def test_grade_finds_and_reports_the_preprocessing(students, tmp_path, export_worker, kind, chosen, scale, mean):
    """Graded with no preprocessing flags: the row, report.json and the page say what was chosen and why."""
    s = students[kind]
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    for name in ("model.py", "model.pth"):
        (subs / "alice" / name).write_bytes((s["weights"].parent / name).read_bytes())
    options = GradeOptions(data=str(s["data"]), methods=("saliency",), arch_name="Net", trust=True,
                           input_shape="1,1,16,16")
    (sub,) = discover_submissions(subs)
    row = grade_one(sub, options, tmp_path / "out", worker=export_worker)
    assert row["status"] == "ok", row["reason"]
    check = row["preprocessing_check"]
    assert check["chosen"] == chosen and check["changed"], check
    assert row["preprocessing"].startswith(f"{chosen}: model input = (pixel x {scale:.6g} - {mean:.4g}) / 1")
    assert f"chose {chosen}: accuracy" in row["preprocessing"]
    assert row["accuracy"] == pytest.approx(s["trained"], abs=1e-9)
    report = json.loads((tmp_path / "out" / "alice" / "report.json").read_text())
    assert report["model"]["preprocessing"]["check"]["chosen"] == chosen
    assert report["maps"]["outputs"] == {"saliency": "logit"} and report["maps"]["preprocessing_source"] == "detected"
    html = (tmp_path / "out" / "alice" / "report.html").read_text()
    assert f"chose {chosen}: accuracy" in html and "Preprocessing conventions tried on 200 labelled images" in html


@pytest.mark.slow
def test_a_model_that_works_either_way_keeps_its_preprocessing(students):
    """Random labels: every convention scores about chance, none clearly better, nothing changes."""
    s = students["minus_one_one"]
    model = Model(s["onnx"])
    dataset = load_dataset(s["data"])
    shuffled = type(dataset)(images=dataset.images, labels=np.random.default_rng(0).permutation(dataset.labels),
                             class_names=None, source="shuffled", ids=dataset.ids)
    check = check_preprocessing(model, shuffled)
    assert not check.changed and check.message.startswith("kept x/255")
    assert not clearly_better(0.30, 0.25, 200) and clearly_better(0.61, 0.14, 200)


def test_conventions_and_names():
    from onnxplain.engine import InputSpec

    gray = InputSpec(layout="NCHW", channels=1, height=4, width=4)
    rgb = InputSpec(layout="NHWC", channels=3, height=4, width=4, scale=2 / 255, mean=(1.0,) * 3, std=(1.0,) * 3)
    assert [c.name for c in usual_conventions(1)] == ["x/255", "raw 0..255", "[-1, 1]"]
    assert len(usual_conventions(3)) == 8 and current_convention(gray).name == "x/255"
    assert current_convention(rgb).name == "[-1, 1]"
    bgr = Convention("x", 1 / 255, (0.1, 0.2, 0.3), (1.0,), "BGR").apply(rgb)
    assert bgr.channel_order == "BGR" and bgr.mean == (0.1, 0.2, 0.3) and bgr.std == (1.0, 1.0, 1.0)
    assert current_convention(InputSpec(layout="NCHW", channels=1, height=4, width=4, scale=0.5)).name == "custom"
