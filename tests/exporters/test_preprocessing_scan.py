"""The preprocessing read from a student's code, parsed and never run."""
from __future__ import annotations

from pathlib import Path

import pytest

from onnxplain.exporters.preprocessing_scan import scan_folder, scan_preprocessing

TORCHVISION = '''
import torch
from torchvision import transforms
tf = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])
open("ran", "w").write("the scan ran the student's code")
'''

MINUS_ONE_ONE = '''
import numpy as np
def load(pixels):
    x = np.array(pixels, dtype=np.float32).reshape(-1, 48, 48, 1)
    return (x / 255. - 0.5) * 2
'''

HALF = '''
def prep(img):
    return (img / 255.0 - 0.5) / 0.5
'''

KERAS_127 = '''
x_train = x_train / 127.5 - 1
'''

DIV255 = '''
X = df["pixels"].values
X = X.astype("float32") / 255.
model.fit(X, y)
'''

CV2_BGR = '''
import cv2
img = cv2.imread(path)
img = cv2.resize(img, (128, 128))
x = img / 255.0
'''

CV2_RGB = '''
import cv2
img = cv2.imread(path)
img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
x = img / 255.0
'''

CV2_FLIP = '''
import cv2
img = cv2.imread(path)[:, :, ::-1]
x = img / 255.0
'''

CV2_GRAY = '''
import cv2
img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
'''

RAW = '''
import torch
x = torch.tensor(pixels).float().view(-1, 1, 48, 48)
out = model(x)
'''


def scan(tmp_path: Path, *sources: str):
    files = []
    for i, text in enumerate(sources):
        path = tmp_path / f"student{i}.py"
        path.write_text(text)
        files.append(path)
    return scan_preprocessing(files)


def test_torchvision_compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    got = scan(tmp_path, TORCHVISION)
    assert got.scale == pytest.approx(1 / 255) and got.mean == (0.485, 0.456, 0.406)
    assert got.std == (0.229, 0.224, 0.225) and got.channel_order == "RGB"
    assert got.resize == 256 and got.center_crop == 224
    assert any("Normalize" in e and "student0.py:8" in e for e in got.evidence), got.evidence
    assert not (tmp_path / "ran").exists()  # parsed, never executed


@pytest.mark.parametrize("source", [MINUS_ONE_ONE, HALF, KERAS_127])
def test_minus_one_to_one(tmp_path: Path, source: str) -> None:
    got = scan(tmp_path, source)
    assert (got.scale, got.mean, got.std) == (pytest.approx(2 / 255), (1.0,), (1.0,))


def test_division_by_255(tmp_path: Path) -> None:
    got = scan(tmp_path, DIV255)
    assert (got.scale, got.mean, got.std, got.channel_order) == (pytest.approx(1 / 255), (0.0,), (1.0,), "RGB")


def test_opencv_reads(tmp_path: Path) -> None:
    assert scan(tmp_path, CV2_BGR).channel_order == "BGR"
    assert scan(tmp_path, CV2_RGB).channel_order == "RGB"
    assert scan(tmp_path, CV2_FLIP).channel_order == "RGB"
    assert scan(tmp_path, CV2_GRAY) is None  # a gray read says nothing about scale or channel order
    # The conversion may sit in another file of the same submission.
    assert scan(tmp_path, CV2_BGR, "import cv2\nrgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)\n").channel_order == "RGB"


def test_nothing_plain_gives_none_and_broken_files_are_skipped(tmp_path: Path) -> None:
    assert scan(tmp_path, RAW) is None
    assert scan(tmp_path, "def broken(:\n", DIV255).scale == pytest.approx(1 / 255)
    (tmp_path / "a.py").write_text(MINUS_ONE_ONE)
    (tmp_path / "notes.txt").write_text(DIV255)
    assert scan_folder(tmp_path).mean == (1.0,)
