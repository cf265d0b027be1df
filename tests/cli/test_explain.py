"""`onnxplain explain`: files per image, JSON records, per-class selection from a dataset, method
parameters, and the error paths (unknown method/layer/parameter, bad images, bad CSV rows)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxplain.engine import Model, explain
from tests.cli.helpers import assert_json, assert_ok, assert_user_error, invoke, write_pixel_csv
from tests.conftest import DATA, zoo_path


def test_saliency_writes_png_npy_json_per_image_and_a_grid(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = assert_ok(invoke("explain", tiny_onnx(), tiny_data["png"], tiny_data["npy"], f"{tiny_data['csv']}:5",
                              "--method", "saliency", "--out", out))
    names = ["face", "batch_0", "batch_1", "train_5"]
    for name in names:
        for suffix in (".png", ".npy", ".json"):
            assert (out / f"{name}{suffix}").stat().st_size > 0
        assert np.load(out / f"{name}.npy").shape == (16, 16)
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "grid.png").exists()
    assert str(out / "face.png") in result.stdout and "saliency" in result.stdout
    # The maps are the engine's maps for the same images (the CLI adds nothing and loses nothing).
    model = Model(tiny_onnx())
    ref = explain(model, [tiny_data["images"][0]], "saliency")  # batch_0 is images[0] from the .npy
    np.testing.assert_allclose(np.load(out / "batch_0.npy"), ref.maps[0], rtol=1e-5, atol=1e-7)
    record = json.loads((out / "train_5.json").read_text())
    assert record["method"] == "saliency" and record["input"] == "train_5"
    logits = model.predict(model.spec.to_model_input([tiny_data["images"][5]]))[0]
    assert record["target"] == int(logits.argmax())  # default target: the predicted class
    assert record["score"] == pytest.approx(float(logits.max()), rel=1e-5)
    whole = json.loads((out / "explanation.json").read_text())
    assert [r["input"] for r in whole["images"]] == names and whole["grid"] == str(out / "grid.png")


def test_json_output_is_one_document_with_a_record_per_image(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    doc = assert_json(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "ig", "--steps", "16",
                             "--out", tmp_path / "ig", "--json"))
    assert doc["command"] == "explain" and doc["method"] == "ig" and doc["n"] == 1
    assert doc["params"]["steps"] == 16 and doc["grid"] is None
    (image,) = doc["images"]
    assert Path(image["png"]).exists() and Path(image["npy"]).exists()
    assert "completeness_error" in image  # integrated gradients records its completeness error


def test_ig_tolerance_adds_steps_until_completeness_holds(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    args = ("explain", tiny_onnx(), tiny_data["png"], "--method", "ig", "--steps", "2", "--json")
    coarse = assert_json(invoke(*args, "--out", tmp_path / "a"))["images"][0]
    doc = assert_json(invoke(*args, "--tolerance", "0.01", "--out", tmp_path / "b"))
    (image,) = doc["images"]
    assert coarse["completeness_error"] > 0.01 and coarse["steps"] == 2
    assert image["completeness_error"] <= 0.01 < coarse["completeness_error"] and image["steps"] > 2
    assert doc["params"]["tolerance"] == 0.01
    assert_user_error(invoke(*args, "--tolerance", "0"), "--tolerance")
    assert_user_error(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "saliency", "--tolerance", "0.01"),
                      "--tolerance does not apply to --method saliency")


def test_same_seed_same_maps(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    args = ("explain", tiny_onnx(), tiny_data["png"], "--method", "smoothgrad", "--samples", "8", "--quiet")
    assert_ok(invoke(*args, "--seed", "3", "--out", tmp_path / "a"))
    assert_ok(invoke(*args, "--seed", "3", "--out", tmp_path / "b"))
    assert_ok(invoke(*args, "--seed", "4", "--out", tmp_path / "c"))
    a, b, c = (np.load(tmp_path / d / "face.npy") for d in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_quiet_prints_only_paths(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    result = assert_ok(invoke("explain", tiny_onnx(), tiny_data["png"], "-q", "--out", tmp_path / "q"))
    assert result.stdout.splitlines() == [str(tmp_path / "q" / "face.png")]
    assert result.stderr == ""


def test_per_class_from_a_dataset_with_true_targets(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    doc = assert_json(invoke("explain", tiny_onnx(), "--data", tiny_data["csv"], "--per-class", "2",
                             "--labels", "a,b,c,d", "--target", "true", "--method", "gradcam",
                             "--out", tmp_path / "pc", "--json"))
    images = doc["images"]
    assert len(images) == 8  # 2 of each of the 4 classes
    assert [r["label"] for r in images] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [r["target"] for r in images] == [r["label"] for r in images]
    assert all(r["input"].startswith(f"{r['label_name']}_") for r in images)
    assert doc["layer"] == "features.4"  # Grad-CAM's default: the last conv layer
    assert Path(doc["grid"]).exists()


def test_target_by_name_and_index(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    doc = assert_json(invoke("explain", tiny_onnx(), tiny_data["png"], "--labels", "a,b,c,d", "--target", "c",
                             "--out", tmp_path / "n", "--json"))
    assert doc["images"][0]["target"] == 2 and doc["images"][0]["target_name"] == "c"
    doc = assert_json(invoke("explain", tiny_onnx(), tiny_data["png"], "--target", "1", "--out", tmp_path / "i",
                             "--json"))
    assert doc["images"][0]["target"] == 1
    assert_user_error(invoke("explain", tiny_onnx(), tiny_data["png"], "--target", "9", "--out", tmp_path / "x"),
                      "out of range")
    assert_user_error(invoke("explain", tiny_onnx(), tiny_data["png"], "--labels", "a,b,c,d", "--target", "zebra",
                             "--out", tmp_path / "x"), "unknown class 'zebra'", "a, b, c, d")


def test_forward_methods_with_their_parameters(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    lime = assert_json(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "lime", "--samples", "40",
                              "--segments", "grid", "--out", tmp_path / "lime", "--json"))
    assert lime["params"]["samples"] == 40 and lime["params"]["segments"] == "grid"
    occ = assert_json(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "occlusion", "--window", "4",
                             "--stride", "2", "--baseline", "mean", "--out", tmp_path / "occ", "--json"))
    assert occ["params"]["window"] == [4, 4] and occ["params"]["stride"] == [2, 2] and occ["params"]["baseline"] == "mean"
    assert np.load(occ["images"][0]["npy"]).shape == (16, 16)


def test_lime_samples_auto_and_its_stability(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    doc = assert_json(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "lime", "--samples", "auto",
                             "--segments", "grid", "--out", tmp_path / "auto", "--json"))
    record = doc["images"][0]
    assert doc["params"]["samples"] == "auto" and 50 <= record["samples_used"] <= 5000
    assert 0 <= record["stability"] <= 1 and (record["expected_jaccard"] >= 0.87 or record["samples_used"] == 5000)
    shown = assert_ok(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "lime", "--samples", "60",
                             "--segments", "grid", "--out", tmp_path / "fixed"))
    assert "top-k stable at" in shown.stdout and "60 samples" in shown.stdout
    assert_user_error(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "smoothgrad", "--samples", "auto",
                             "--out", tmp_path / "x"), "--samples auto applies to --method lime only")
    assert_user_error(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "lime", "--samples", "0",
                             "--out", tmp_path / "x"), "--samples", "less than 1")


def test_unknown_method_lists_the_known_ones(tiny_onnx, tiny_data) -> None:
    line = assert_user_error(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "shap"), "unknown method 'shap'")
    for known in ("gradcam", "ig", "lime", "occlusion", "saliency", "smoothgrad"):
        assert known in line


def test_unknown_layer_lists_the_conv_layers(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    line = assert_user_error(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "gradcam", "--layer",
                                    "conv2d_99", "--out", tmp_path / "o"), "conv2d_99")
    assert "features.0" in line and "features.4" in line


def test_parameter_of_another_method_is_refused(tiny_onnx, tiny_data) -> None:
    assert_user_error(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "saliency", "--window", "4"),
                      "--window does not apply to --method saliency")


def test_bad_inputs(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    assert_user_error(invoke("explain", tiny_onnx(), broken), "broken.jpg", "not a readable image")
    assert_user_error(invoke("explain", tiny_onnx(), tmp_path / "nope.png"), "nope.png", "no such file")
    weird = tmp_path / "weird.npy"
    np.save(weird, np.zeros((2, 3, 4, 5, 6), np.float32))
    assert_user_error(invoke("explain", tiny_onnx(), weird), "weird.npy", "shape")
    assert_user_error(invoke("explain", tiny_onnx()), "give INPUTS")
    assert_user_error(invoke("explain", tiny_onnx(), tiny_data["png"], "--per-class", "1"), "--per-class needs --data")
    assert_user_error(invoke("explain", tiny_onnx(), f"{tiny_data['csv']}:99"), "row 99 is out of range")


def test_csv_with_a_bad_row(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    lines = tiny_data["csv"].read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0]  # line 4 loses its last pixel
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines))
    assert_user_error(invoke("explain", tiny_onnx(), "--data", bad, "--per-class", "1"), "bad.csv, line 4",
                      "255 values, expected 256")
    assert_user_error(invoke("explain", tiny_onnx(), f"{bad}:2"), "line 4")  # data row 2 is line 4
    assert_ok(invoke("explain", tiny_onnx(), f"{bad}:0", "-q"))  # only the rows asked for are read


def test_wrong_input_shape_flag(tiny_onnx, tiny_data) -> None:
    assert_user_error(invoke("explain", tiny_onnx(), tiny_data["png"], "--input-shape", "1,3,16,16"),
                      "--input-shape", "does not match")


@pytest.mark.slow
def test_real_nhwc_model_on_real_photo_and_fer_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    csv = write_pixel_csv(tmp_path / "fer.csv", rng.integers(0, 256, (3, 48, 48), dtype=np.uint8), np.array([0, 3, 6]))
    doc = assert_json(invoke("explain", zoo_path("o01"), DATA / "skimage_astronaut.png", f"{csv}:1",
                             "--labels", "fer2013", "--method", "saliency", "--out", tmp_path / "o", "--json"))
    assert [r["input"] for r in doc["images"]] == ["skimage_astronaut", "fer_1"]
    assert all(r["target_name"] in ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
               for r in doc["images"])
    assert np.load(doc["images"][0]["npy"]).shape == (48, 48)


def test_target_output_logit_by_default_probability_on_request(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    """A model ending in softmax: the record says which output the map explains; the scores are its logit
    or its probability (onnxruntime gives the probability)."""
    path = tiny_onnx(softmax=True)
    base = ("explain", path, f"{tiny_data['csv']}:5", "--method", "saliency", "--json")
    logit = assert_json(invoke(*base, "--out", tmp_path / "a"))
    prob = assert_json(invoke(*base, "--target-output", "probability", "--out", tmp_path / "b"))
    assert logit["params"]["target_output"] == "logit" and prob["params"]["target_output"] == "probability"
    model = Model(path)
    probs = model.predict(model.spec.to_model_input([tiny_data["images"][5]]))[0]
    assert prob["images"][0]["score"] == pytest.approx(float(probs.max()), rel=1e-5)
    assert logit["images"][0]["score"] != pytest.approx(float(probs.max()), rel=1e-3)
    assert not np.allclose(np.load(tmp_path / "a" / "train_5.npy"), np.load(tmp_path / "b" / "train_5.npy"), rtol=0.1)
    assert_user_error(invoke("explain", path, tiny_data["png"], "--method", "lime", "--target-output", "logit"),
                      "--target-output does not apply to --method lime")
