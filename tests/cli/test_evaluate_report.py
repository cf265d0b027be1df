"""`onnxplain evaluate`, `report` and `demo`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from onnxplain.cli.loading import resolve_device
from onnxplain.engine import Model
from tests.cli.helpers import assert_json, assert_ok, assert_user_error, invoke, write_pixel_csv
from tests.conftest import DATA, zoo_path


def _predictions(path: Path, images: np.ndarray) -> np.ndarray:
    model = Model(path)
    return model.predict(model.spec.to_model_input(list(images))).argmax(axis=1)


def test_evaluate_matches_scikit_learn_and_writes_png_and_json(tiny_onnx, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(40, 16, 16), dtype=np.uint8)
    labels = rng.integers(0, 4, 40)
    np.savez(tmp_path / "val.npz", x=images, y=labels)
    out = tmp_path / "ev"
    doc = assert_json(invoke("evaluate", tiny_onnx(), "--data", tmp_path / "val.npz", "--labels", "a,b,c,d",
                             "--batch-size", "7", "--out", out, "--json"))
    pred = _predictions(tiny_onnx(), images)
    assert doc["n"] == 40 and doc["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert doc["confusion"] == confusion_matrix(labels, pred, labels=range(4)).tolist()
    prec, rec, _, sup = precision_recall_fscore_support(labels, pred, labels=range(4), zero_division=0)
    assert [c["precision"] for c in doc["per_class"]] == pytest.approx(prec.tolist())
    assert [c["recall"] for c in doc["per_class"]] == pytest.approx(rec.tolist())
    assert [c["support"] for c in doc["per_class"]] == sup.tolist()
    assert doc["classes"] == ["a", "b", "c", "d"]
    assert all(p["true_name"] in "abcd" and 0 < p["rate"] <= 1 for p in doc["most_confused"])
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "evaluation.json").read_text())["accuracy"] == doc["accuracy"]


def test_evaluate_prints_a_table(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    result = assert_ok(invoke("evaluate", tiny_onnx(), "--data", tiny_data["csv"], "--out", tmp_path / "t"))
    assert "accuracy" in result.stdout and "precision" in result.stdout and "recall" in result.stdout
    assert str(tmp_path / "t" / "confusion.png") in result.stdout


def test_evaluate_default_output_folder(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    doc = assert_json(invoke("evaluate", tiny_onnx(), "--data", tiny_data["csv"], "--json"))
    expected = Path("onnxplain-out") / tiny_onnx().name.split(".")[0] / "evaluate" / "confusion.png"
    assert doc["confusion_png"] == str(expected) and (tmp_path / expected).exists()


def test_evaluate_errors(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    assert_user_error(invoke("evaluate", tiny_onnx(), "--data", tmp_path / "nope.csv"), "nope.csv", "no such file")
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("id,feature\n0," + " ".join(["9"] * 256) + "\n")
    assert_user_error(invoke("evaluate", tiny_onnx(), "--data", test_csv), "has no labels")
    lines = tiny_data["csv"].read_text().splitlines()
    lines[5] = lines[5].replace(" ", " x ", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines))
    assert_user_error(invoke("evaluate", tiny_onnx(), "--data", bad), "bad.csv, line 6")
    many = write_pixel_csv(tmp_path / "many.csv", tiny_data["images"][:2], np.array([0, 9]))
    assert_user_error(invoke("evaluate", tiny_onnx(), "--data", many), "class 9", "4 outputs")
    assert_user_error(invoke("evaluate", tiny_onnx()), "Missing option '--data'")


@pytest.mark.slow
def test_evaluate_real_model_on_real_digits(tmp_path: Path) -> None:
    doc = assert_json(invoke("evaluate", zoo_path("o03"), "--data", DATA / "mnist_t10k-images-idx3-ubyte.gz",
                             "--limit", "300", "--out", tmp_path / "m", "--json"))
    assert doc["n"] == 300 and doc["accuracy"] > 0.9 and doc["classes"] == [str(i) for i in range(10)]


def test_report_writes_one_html_page(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    doc = assert_json(invoke("report", tiny_onnx(), "--data", tiny_data["csv"], "--methods", "saliency,occlusion",
                             "--layer", "features.0", "--out", out, "--json"))
    page = Path(doc["report"])
    assert page == out / "report.html" and page.exists()
    html = page.read_text()
    assert "<html" in html.lower() and "saliency" in html and "occlusion" in html and "features.0" in html
    assert_user_error(invoke("report", tiny_onnx(), "--data", tiny_data["csv"], "--layer", "nope", "--out", out),
                      "nope", "features.0", "features.4")
    assert_user_error(invoke("report", tiny_onnx(), "--data", tiny_data["csv"], "--methods", "saliency,shap",
                             "--out", out), "shap")


def test_report_passes_ig_steps_and_tolerance_on(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    out = tmp_path / "ig"
    assert_json(invoke("report", tiny_onnx(), "--data", tiny_data["csv"], "--methods", "ig", "--steps", "4",
                       "--tolerance", "0.05", "--out", out, "--json"))
    params = json.loads((out / "report.json").read_text())["sections"]["ig"]["params"]
    assert params["steps"] == 4 and params["tolerance"] == 0.05 and params["target_output"] == "logit"


def test_report_passes_the_target_output_to_every_gradient_method(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    out = tmp_path / "prob"
    assert_json(invoke("report", tiny_onnx(softmax=True), "--data", tiny_data["csv"], "--methods", "saliency,ig,lime",
                       "--steps", "4", "--target-output", "probability", "--out", out, "--json"))
    sections = json.loads((out / "report.json").read_text())["sections"]
    assert sections["saliency"]["params"]["target_output"] == "probability"
    assert sections["ig"]["params"]["target_output"] == "probability"
    assert "target_output" not in sections["lime"]["params"]


def test_report_passes_lime_samples_on(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    out = tmp_path / "lime"
    assert_json(invoke("report", tiny_onnx(), "--data", tiny_data["csv"], "--methods", "lime", "--samples", "auto",
                       "--out", out, "--json"))
    section = json.loads((out / "report.json").read_text())["sections"]["lime"]
    assert section["params"]["samples"] == "auto"
    assert all(0 <= image["stability"] <= 1 and image["samples_used"] >= 100 for image in section["images"])
    assert "top-5 stable at" in (out / "report.html").read_text()


def test_demo_hands_its_folder_progress_and_device_to_the_engine(monkeypatch, tmp_path: Path) -> None:
    """The demo itself (training, export, report) is tested with the engine; here: the command's wiring."""
    import onnxplain.engine.demo as demo

    calls = {}

    def fake_run_demo(out_dir, *, progress=None, device="cpu", **kwargs):
        calls.update(out=Path(out_dir), device=device)
        progress("training", 0.5)
        page = Path(out_dir) / "report.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<html></html>")
        return page

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    result = assert_ok(invoke("demo"))
    assert calls == {"out": Path("onnxplain-out") / "demo", "device": resolve_device("auto")}
    assert result.stdout.strip().splitlines()[-1] == str(Path("onnxplain-out") / "demo" / "report.html")
    doc = assert_json(invoke("demo", "--out", tmp_path / "d", "--device", "cpu", "--json"))
    assert doc["report"] == str(tmp_path / "d" / "report.html")


def test_report_draws_a_given_training_history(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    history = tmp_path / "training.csv"
    history.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,1.2,0.45,1.3\n1,0.7,0.8,0.6,1.0\n")
    out = tmp_path / "hist"
    assert_json(invoke("report", tiny_onnx(), "--data", tiny_data["csv"], "--methods", "saliency", "--history",
                       history, "--out", out, "--json"))
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["training"]["history"][1] == {"epoch": 2, "accuracy": 0.7, "loss": 0.8, "val_accuracy": 0.6,
                                                 "val_loss": 1.0}
    assert numbers["sections"]["training"]["figures"] == ["img/training.png"]
    assert "training.csv" in (out / "report.html").read_text()
    bad = tmp_path / "h.txt"
    bad.write_text("x")
    assert_user_error(invoke("report", tiny_onnx(), "--data", tiny_data["csv"], "--history", bad, "--out", out),
                      "unknown format")


@pytest.mark.slow
def test_report_finds_the_preprocessing_of_a_student_pth(tmp_path: Path) -> None:
    """A .pth trained on [-1, 1] input, its model.py and train.py: with no --scale/--mean/--std the report
    tries the conventions (and the one train.py shows) on the labelled data and says what it chose."""
    from tests.engine.preprocessing_models import gray_digits, train_student

    digits = gray_digits()
    weights = train_student(tmp_path / "student", "minus_one_one", digits)
    (tmp_path / "student" / "train.py").write_text("def prep(x):\n    return (x / 255. - 0.5) * 2\n")
    data = digits.save_test(tmp_path / "test.npz")
    out = tmp_path / "report"
    assert_json(invoke("report", weights, "--arch", f"{weights.parent / 'model.py'}:Net", "--trust", "--input-shape", "1,1,16,16",
                       "--data", data, "--methods", "saliency", "--out", out, "--json"))
    doc = json.loads((out / "report.json").read_text())
    check = doc["model"]["preprocessing"]["check"]
    assert check["chosen"] == "[-1, 1]" and check["message"].startswith("chose [-1, 1]: accuracy")
    code = next(t for t in check["tried"] if t["name"] == "from the student's code")
    assert code["scale"] == pytest.approx(2 / 255) and "train.py:2" in " ".join(check["scanned"]["evidence"])
    assert doc["evaluation"]["accuracy"] > 0.9
    assert "chose [-1, 1]" in doc["maps"]["preprocessing"] and doc["maps"]["outputs"] == {"saliency": "logit"}
    # --scale (the user's word) wins: no check, the page says where the preprocessing came from.
    flagged = tmp_path / "flagged"
    assert_json(invoke("report", weights, "--arch", f"{weights.parent / 'model.py'}:Net", "--trust", "--input-shape", "1,1,16,16",
                       "--data", data, "--methods", "saliency", "--scale", "0.00392156862745098", "--out", flagged,
                       "--json"))
    again = json.loads((flagged / "report.json").read_text())
    assert again["model"]["preprocessing"]["check"] is None and again["model"]["preprocessing"]["source"] == "flags"
    assert "given by the flags" in (flagged / "report.html").read_text()
