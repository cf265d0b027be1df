"""The demo: trains on scikit-learn's digits, exports through the PyTorch exporter, writes the report."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from onnxplain.engine import Model
from onnxplain.engine.demo import CLASSES, DemoCNN, load_digits_split, run_demo, train


def test_digits_split_is_real_stratified_and_seeded() -> None:
    a, b = load_digits_split(seed=0), load_digits_split(seed=0)
    assert a.train_x.shape == (1347, 32, 32) and a.test_x.shape == (450, 32, 32)
    assert a.train_x.dtype == np.uint8 and a.train_x.max() > 200
    np.testing.assert_array_equal(a.test_x, b.test_x)
    counts = np.bincount(a.test_y, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # stratified: about 45 of each digit


def test_training_is_deterministic_and_lowers_the_loss() -> None:
    split = load_digits_split(seed=0)
    threads = torch.get_num_threads()
    net1, hist1 = train(split, epochs=2, seed=3)
    net2, hist2 = train(split, epochs=2, seed=3)
    for (k, v1), v2 in zip(net1.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(v1, v2), k
    assert hist1 == hist2
    assert hist1[1]["loss"] < hist1[0]["loss"]
    assert torch.get_num_threads() == threads  # training on one thread leaves the setting as it was


def test_demo_cnn_shape() -> None:
    out = DemoCNN()(torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, 10)


def test_demo_writes_the_full_report_with_accuracy_far_above_chance(tmp_path: Path) -> None:
    calls: list[tuple[str, float | None]] = []
    started = time.perf_counter()
    page = run_demo(tmp_path / "demo", epochs=3, progress=lambda d, f: calls.append((d, f)))
    seconds = time.perf_counter() - started
    out = tmp_path / "demo"
    assert page == out / "report.html" and page.stat().st_size > 100_000
    numbers = json.loads((out / "report.json").read_text())
    accuracy = numbers["evaluation"]["accuracy"]
    assert accuracy > 0.8, accuracy  # chance is 0.1
    # The exported ONNX model scores what the torch model scored on the same held-out images.
    assert accuracy == pytest.approx(numbers["training"]["history"][-1]["test_accuracy"], abs=0.005)
    assert numbers["dataset"]["images"] == 450
    assert [row["true"] for row in numbers["selection"]] == list(range(10))
    assert {"training", "summary", "evaluation", "saliency", "lime", "ig", "occlusion", "gradcam", "filters",
            "activations", "dream"} <= set(numbers["sections"])
    assert all(s["error"] is None for s in numbers["sections"].values())
    # It went through the real exporter: sidecar with the source, the preprocessing and a passed parity check.
    sidecar = json.loads((out / "demo_cnn.onnx.json").read_text())
    assert sidecar["parity"]["passed"] and sidecar["parity"]["real_images"] > 0
    assert sidecar["preprocessing"]["mean"] == [0.5] and sidecar["labels"] == list(CLASSES)
    assert Path(sidecar["source"]["path"]).name == "demo_cnn.pth"
    model = Model(out / "demo_cnn.onnx")
    assert [layer.name for layer in model.conv_layers()] == ["features.0", "features.4", "features.8"]
    assert numbers["sections"]["filters"]["layer"] == "features.4"
    with np.load(out / "digits_test.npz") as held_out:
        assert held_out["x"].shape == (450, 32, 32)
    fractions = [f for _, f in calls if f is not None]
    assert fractions[-1] == 1.0
    print(f"demo with 3 epochs: {seconds:.1f} s")
