"""Fixtures for the command-line tests (helpers live in helpers.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.cli.helpers import write_pixel_csv, write_png


@pytest.fixture()
def tiny_data(tmp_path: Path) -> dict[str, Any]:
    """16x16 gray images for the tiny 4-class model: a CSV (3 per class), a PNG and an .npy."""
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(12, 16, 16), dtype=np.uint8)
    labels = np.repeat(np.arange(4), 3)
    np.save(tmp_path / "batch.npy", images[:2])
    return {
        "images": images,
        "labels": labels,
        "csv": write_pixel_csv(tmp_path / "train.csv", images, labels),
        "png": write_png(tmp_path / "face.png", cv2.resize(images[0], (40, 40))),
        "npy": tmp_path / "batch.npy",
    }


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default outputs (onnxplain-out/...) and the export cache land in the test's own folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ONNXPLAIN_CACHE", str(tmp_path / "export-cache"))
