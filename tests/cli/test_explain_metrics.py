"""`onnxplain explain --metrics`: the trust metrics in the JSON (the engine's numbers, unchanged), the two
figures, the one-line summary in the human output."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from onnxplain.engine import Model, explain
from onnxplain.engine.metrics import trust_metrics
from onnxplain.engine.render.html import png_size
from tests.cli.helpers import assert_json, assert_ok, invoke


def test_metrics_add_the_engines_numbers_and_two_figures(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    out = tmp_path / "out"
    doc = assert_json(invoke("explain", tiny_onnx(), tiny_data["npy"], "--method", "saliency", "--metrics",
                             "--seed", "2", "--out", out, "--json"))
    metrics = doc["metrics"]
    assert metrics["method"] == "saliency"
    di, rnd = metrics["deletion_insertion"], metrics["randomisation"]
    assert len(di["insertion_auc"]) == 2 and len(di["deletion"][0]) == 33
    assert rnd["images"] == 2 and rnd["layers"] == ["classifier", "features.4", "features.0"]
    model = Model(tiny_onnx())
    ref = trust_metrics(model, explain(model, list(np.load(tiny_data["npy"])), "saliency", seed=2), seed=2)
    np.testing.assert_allclose(di["insertion_auc"], ref.curves.insertion_auc, rtol=1e-5)
    np.testing.assert_allclose(di["random_deletion_auc"], ref.curves.random_deletion_auc, rtol=1e-5)
    np.testing.assert_allclose(rnd["spearman"], ref.randomisation.spearman, rtol=1e-5)
    assert rnd["flagged"] == ref.randomisation.flagged
    for fig in metrics["figures"]:
        assert Path(fig).parent == out and png_size(Path(fig).read_bytes())[0] > 0
    assert json.loads((out / "explanation.json").read_text())["metrics"]["deletion_insertion"] == di


def test_human_output_says_the_verdict_and_no_metrics_without_the_flag(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    result = assert_ok(invoke("explain", tiny_onnx(), tiny_data["png"], "--method", "gradcam", "--metrics",
                              "--out", tmp_path / "a"))
    assert "deletion AUC" in result.stdout and "randomisation check" in result.stdout
    assert (tmp_path / "a" / "trust_randomisation.png").exists()
    plain = assert_json(invoke("explain", tiny_onnx(), tiny_data["png"], "--out", tmp_path / "b", "--json"))
    assert "metrics" not in plain and not (tmp_path / "b" / "trust_curves.png").exists()
