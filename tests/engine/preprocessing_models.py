"""Small CNNs trained here, in a few seconds, on real digits under one preprocessing each, saved as a
student would (state_dict + model.py) and exported through the project's PyTorch exporter.

Gray models learn scikit-learn's digits (16x16). Colour models learn "coloured digits": each digit
tinted orange (R, G, B weights 1.0, 0.5, 0.1) or blue (0.1, 0.5, 1.0) on a black or a faint blue
background, the label saying which (`colour_digits`): a model fed RGB where it learnt BGR sees every
orange digit as blue, and one fed x/255 or [-1, 1] where it learnt ImageNet's per-channel
normalisation misjudges the level of black in the blue channel.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

SIZE = 16
ORANGE = np.array([1.0, 0.5, 0.1], np.float32)
BLUE = ORANGE[::-1].copy()
BACKGROUND = np.array([0.0, 0.0, 24.0], np.float32)  # the faint blue background
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

MODEL_PY = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, channels=1, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 12, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(12, 24, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(24 * 4 * 4, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))
'''

# pixels (N, H, W, C) float 0..255, RGB -> what each student fed their network (N, H, W, C)
PREPROCESS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "raw": lambda p: p,
    "minus_one_one": lambda p: (p / 255.0 - 0.5) * 2,
    "bgr": lambda p: p[..., ::-1] / 255.0,
    "imagenet": lambda p: (p / 255.0 - IMAGENET_MEAN) / IMAGENET_STD,
}


@dataclass(frozen=True)
class Digits:
    """uint8 pixels (N, 16, 16, C), RGB for colour, and labels; train and held-out test."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    def save_test(self, path: Path) -> Path:
        x = self.test_x[..., 0] if self.test_x.shape[-1] == 1 else self.test_x
        np.savez_compressed(path, x=x, y=self.test_y)
        return path


def gray_digits() -> Digits:
    from onnxplain.engine.demo import load_digits_split

    split = load_digits_split(seed=0)
    small = lambda a: np.stack([cv2.resize(i, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for i in a])[..., None]  # noqa: E731
    return Digits(small(split.train_x), split.train_y, small(split.test_x), split.test_y)


def colour_digits() -> Digits:
    """All ten digits, tinted orange or blue, on a black or a faint blue background: 4 classes,
    label = 2 x blue digit + blue background. The digit's shape says nothing about the label, so the
    network must read the colour order (RGB vs BGR) and the pixel levels (what black is)."""
    gray = gray_digits()

    def paint(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        blue, tinted_bg = rng.random(len(x)) < 0.5, rng.random(len(x)) < 0.5
        colours = np.where(blue[:, None], BLUE, ORANGE)[:, None, None, :]
        # The background is added, not blended in: only the level of black tells the classes apart.
        painted = 0.8 * x.astype(np.float32) * colours + np.where(tinted_bg, 1.0, 0.0)[:, None, None, None] * BACKGROUND
        return np.clip(np.rint(painted), 0, 255).astype(np.uint8), (2 * blue + tinted_bg).astype(np.int64)

    return Digits(*paint(gray.train_x, 1), *paint(gray.test_x, 2))


def net_args(data: Digits) -> dict[str, int]:
    """Net's keyword arguments for `data` (also the exporter's --arch-args)."""
    return {"channels": int(data.train_x.shape[-1]), "classes": int(data.train_y.max()) + 1}


def load_net_class(model_py: Path) -> type:
    spec = importlib.util.spec_from_file_location(f"student_net_{abs(hash(str(model_py)))}", model_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Net


def train_student(folder: Path, kind: str, data: Digits, *, epochs: int = 6, seed: int = 0) -> Path:
    """Train Net on `data` fed through PREPROCESS[kind]; write folder/model.py and folder/model.pth."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(MODEL_PY)
    torch.manual_seed(seed)
    net = load_net_class(folder / "model.py")(**net_args(data))
    x = torch.from_numpy(np.ascontiguousarray(PREPROCESS[kind](data.train_x.astype(np.float32)).transpose(0, 3, 1, 2)))
    x = x.float()
    y = torch.from_numpy(data.train_y)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3 if kind != "raw" else 1e-3)
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=gen).split(32):
                opt.zero_grad()
                nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    torch.save(net.eval().state_dict(), folder / "model.pth")
    return folder / "model.pth"


def accuracy_as_trained(weights: Path, kind: str, data: Digits) -> float:
    """The network's test accuracy when fed as it was trained (the figure a detection must get back to)."""
    net = load_net_class(weights.parent / "model.py")(**net_args(data))
    net.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.from_numpy(np.ascontiguousarray(PREPROCESS[kind](data.test_x.astype(np.float32)).transpose(0, 3, 1, 2)))
    with torch.no_grad():
        return float((net.eval()(x.float()).argmax(1).numpy() == data.test_y).mean())
