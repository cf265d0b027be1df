"""`onnxplain compare`: a CNN and a DNN of about the same size on the same FER-format CSV, one page."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from tests.cli.helpers import assert_json, assert_user_error, invoke, write_pixel_csv
from tests.test_report_browser import load_in_chromium


class FerCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(32 * 3 * 3, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


class FerDnn(nn.Module):
    """On flattened 48x48 pixels, as students build it for the CNN-vs-DNN comparison."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(48 * 48, 3)
        self.out = nn.Linear(3, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


@pytest.fixture(scope="module")
def fer_pair(tmp_path_factory: pytest.TempPathFactory, faces: np.ndarray) -> dict:
    from onnxplain.exporters import export

    folder = tmp_path_factory.mktemp("fer_pair")
    rng = np.random.default_rng(3)
    images = np.stack([cv2.resize(f, (48, 48)) for f in faces[:28]])
    images = np.clip(images * 255 if images.max() <= 1 else images, 0, 255).astype(np.uint8)
    labels = np.tile(np.arange(7), 4)
    csv = write_pixel_csv(folder / "fer_train.csv", images[rng.permutation(28)], labels)
    torch.manual_seed(0)
    cnn, dnn = FerCnn().eval(), FerDnn().eval()
    torch.save(cnn, folder / "cnn.pt")
    torch.save(dnn, folder / "dnn.pt")
    return {"csv": csv, "cnn": cnn, "dnn": dnn, "folder": folder,
            "cnn_onnx": export(folder / "cnn.pt", folder / "cnn.onnx", input_shape="1,1,48,48", trust=True),
            "dnn_onnx": export(folder / "dnn.pt", folder / "dnn.onnx", input_shape="1,2304", trust=True)}


def _torch_accuracy(module: nn.Module, csv: Path, flat: bool) -> float:
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    labels = np.array([int(r[0]) for r in rows])
    x = np.array([[float(v) for v in r[1].split()] for r in rows], np.float32) / 255.0
    with torch.no_grad():
        logits = module(torch.from_numpy(x if flat else x.reshape(-1, 1, 48, 48)))
    return float((logits.argmax(1).numpy() == labels).mean())


@pytest.mark.slow
def test_cnn_vs_dnn_page_in_chromium(fer_pair: dict, tmp_path: Path) -> None:
    cnn_total = sum(p.numel() for p in fer_pair["cnn"].parameters())
    dnn_total = sum(p.numel() for p in fer_pair["dnn"].parameters())
    assert abs(cnn_total - dnn_total) / cnn_total < 0.05  # "a DNN with about the same parameter count"
    hist_cnn = tmp_path / "cnn_history.json"
    hist_cnn.write_text(json.dumps({"loss": [1.9, 1.5, 1.2], "accuracy": [0.2, 0.4, 0.55]}))
    hist_dnn = tmp_path / "dnn_log.csv"
    hist_dnn.write_text("epoch,accuracy,loss\n0,0.15,1.95\n1,0.25,1.8\n2,0.3,1.7\n")
    out = tmp_path / "cmp"
    doc = assert_json(invoke("compare", fer_pair["cnn_onnx"], fer_pair["dnn_onnx"], "--data", fer_pair["csv"],
                             "--methods", "saliency,gradcam", "--history", hist_cnn, "--history", hist_dnn,
                             "--layer", "conv2", "--out", out, "--json"))
    numbers = json.loads((out / "compare.json").read_text())
    cnn, dnn = numbers["models"]
    assert (cnn["total_params"], dnn["total_params"]) == (cnn_total, dnn_total)
    assert cnn["source_summary"]["framework"] == dnn["source_summary"]["framework"] == "pytorch"
    assert cnn["evaluation"]["accuracy"] == pytest.approx(_torch_accuracy(fer_pair["cnn"], fer_pair["csv"], False))
    assert dnn["evaluation"]["accuracy"] == pytest.approx(_torch_accuracy(fer_pair["dnn"], fer_pair["csv"], True))
    assert [m["accuracy"] for m in doc["summary"]] == [cnn["evaluation"]["accuracy"], dnn["evaluation"]["accuracy"]]
    assert len(numbers["picked"]) == 7  # one image per class, the same for both models
    assert set(numbers["methods"]["saliency"]["models"]) == {cnn["name"], dnn["name"]}
    assert list(numbers["methods"]["gradcam"]["models"]) == [cnn["name"]]  # the DNN has no conv layer
    assert numbers["activations"] == [{"model": cnn["name"], "layer": "conv2", "channels": 32,
                                       "mean_activation": numbers["activations"][0]["mean_activation"]}]
    assert [h[0]["epoch"] for h in numbers["histories"]] == [1, 1]
    sections = numbers["sections"]
    assert len(sections["confusion"]["figures"]) == 2 and sections["training"]["figures"] == ["img/training.png"]
    html = Path(doc["page"]).read_text()
    assert 'class="row"' in html and "has no conv layer" in html and "Not shown" in html
    images, errors = load_in_chromium(Path(doc["page"]), tmp_path / "profile")
    expected = sum(len(s["figures"]) for s in sections.values())
    assert expected >= 6 and len(images) == expected
    assert not [img for img in images if not (img["complete"] and img["width"] > 0)], images
    assert errors == []


def test_compare_errors(fer_pair: dict, tmp_path: Path) -> None:
    assert_user_error(invoke("compare", fer_pair["cnn_onnx"], "--data", fer_pair["csv"]), "at least two models")
    bad = tmp_path / "h.txt"
    bad.write_text("x")
    assert_user_error(invoke("compare", fer_pair["cnn_onnx"], fer_pair["dnn_onnx"], "--data", fer_pair["csv"],
                             "--history", bad), "unknown format")
    assert_user_error(invoke("compare", fer_pair["cnn_onnx"], fer_pair["dnn_onnx"], "--data", fer_pair["csv"],
                             "--layer", "nope", "--out", tmp_path / "o"), "nope", "conv1")
