"""`onnxplain demo`: the whole pipeline on data that ships inside an installed package.

Trains a small CNN in PyTorch on scikit-learn's handwritten digits (1,797 real 8x8 scans, upsampled
to 32x32), seeded; saves its state_dict; exports it through the real PyTorch exporter
(`onnxplain.exporters.export` with `arch="onnxplain.engine.demo:DemoCNN"`, the way a grader
exports a student's `.pth`); and writes the full report on the held-out quarter of the digits.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch
from torch import nn

from .progress import Progress

log = logging.getLogger(__name__)


SIZE = 32
CLASSES = tuple(str(d) for d in range(10))
# The model sees (pixel / 255 - 0.5) / 0.5, so the exported sidecar must carry a real preprocessing.
SCALE, MEAN, STD = 1.0 / 255.0, 0.5, 0.5
ARCH = "onnxplain.engine.demo:DemoCNN"
# Five epochs give about 98% on the held-out digits: a few mistakes, so the confusion matrix has something to say.
EPOCHS = 5


class DemoCNN(nn.Module):
    """Three Conv-BN-ReLU-MaxPool blocks (16 -> 32 -> 64 filters) and a two-layer classifier:
    a student's FER2013 CNN in miniature. Input (N, 1, 32, 32), output logits."""

    def __init__(self, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = 1
        for c_out in (width, 2 * width, 4 * width):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(c_in * (SIZE // 8) ** 2, 64), nn.ReLU(), nn.Linear(64, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class DigitsSplit:
    """Pixel images (N, 32, 32) uint8 and labels, split into train and held-out test, stratified."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_digits_split(*, test_fraction: float = 0.25, seed: int = 0) -> DigitsSplit:
    """scikit-learn's digits (values 0..16) as 32x32 uint8 pixels (0..255), split per class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = (digits.images * (255.0 / 16.0)).astype(np.float32)
    big = np.stack([cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) for img in small])
    pixels = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    tr_x, te_x, tr_y, te_y = train_test_split(pixels, labels, test_size=test_fraction, random_state=seed,
                                              stratify=labels)
    return DigitsSplit(tr_x, tr_y, te_x, te_y)


def to_model_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) with the demo's preprocessing."""
    x = (pixels.astype(np.float32) * SCALE - MEAN) / STD
    return torch.from_numpy(x[:, None])


def train(split: DigitsSplit, *, epochs: int = EPOCHS, seed: int = 0, batch_size: int = 64,
          progress: Progress | None = None) -> tuple[DemoCNN, list[dict[str, float]]]:
    """Adam with a one-cycle schedule; returns the model (eval mode) and per-epoch loss/accuracy."""
    with one_torch_thread():
        return _train(split, epochs=epochs, seed=seed, batch_size=batch_size, progress=progress)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the setting.

    The demo's tensors are tiny (batches of 32x32 images), so extra threads gain little, while on a
    busy machine they oversubscribe the cores and spin: measured on 2 loaded cores, filter
    visualisation took 8.7 s with one thread and 119 s with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(split: DigitsSplit, *, epochs: int, seed: int, batch_size: int,
           progress: Progress | None) -> tuple[DemoCNN, list[dict[str, float]]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DemoCNN(classes=len(CLASSES))
    x, y = to_model_input(split.train_x), torch.from_numpy(split.train_y)
    xt, yt = to_model_input(split.test_x), torch.from_numpy(split.test_y)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=max(steps, 1))
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            # Small random shifts (+-2 px) so the net does not lean on exact positions.
            dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
            xb = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))
            opt.zero_grad()
            out = model(xb)
            loss = loss_fn(out, y[idx])
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == y[idx]).sum())
            total += len(idx)
        model.eval()
        with torch.no_grad():
            test_acc = float((model(xt).argmax(1) == yt).float().mean())
        history.append({"epoch": epoch + 1, "loss": loss_sum / total, "train_accuracy": correct / total,
                        "test_accuracy": test_acc})
        log.info("demo epoch %d: loss %.3f, train %.3f, test %.3f", epoch + 1, loss_sum / total, correct / total, test_acc)
        if progress:
            progress(f"training epoch {epoch + 1}/{epochs}", (epoch + 1) / epochs)
    return model.eval(), history


def run_demo(out_dir: str | os.PathLike[str] = "onnxplain-demo", *, progress: Progress | None = None,
             epochs: int = EPOCHS, seed: int = 0, device: str = "cpu") -> Path:
    """Train, export, report: returns the report's path (`out_dir/report.html`)."""
    from ..exporters import export
    from .data import Dataset
    from .model import Model
    from .report import build_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    split = load_digits_split(seed=seed)
    say = _Stages(progress)
    say("training a small CNN on scikit-learn's digits", 0.0)
    t0 = time.perf_counter()
    net, history = train(split, epochs=epochs, seed=seed, progress=say.within(0.0, 0.25))
    train_seconds = time.perf_counter() - t0

    weights = out / "demo_cnn.pth"
    tmp = weights.with_name(f".{weights.name}.tmp")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, weights)
    np.savez_compressed(out / "digits_test.npz", x=split.test_x, y=split.test_y, class_names=np.array(CLASSES))
    say("exporting to ONNX through the PyTorch exporter", 0.25)
    t0 = time.perf_counter()
    onnx_path = export(weights, out / "demo_cnn.onnx", arch=ARCH, input_shape=(1, 1, SIZE, SIZE),
                       labels=list(CLASSES), scale=SCALE, mean=MEAN, std=STD, images=list(split.test_x[:16]))
    export_seconds = time.perf_counter() - t0

    model = Model(onnx_path, device=device, threads=1)  # type: ignore[arg-type]  (see one_torch_thread)
    dataset = Dataset(images=split.test_x, labels=split.test_y, class_names=CLASSES,
                      source="scikit-learn digits, held-out 25% (demo)",
                      ids=tuple(f"test:{i}" for i in range(len(split.test_x))))
    training = {"data": "sklearn.datasets.load_digits(), 8x8 upsampled to 32x32 (cubic)",
                "train_images": int(len(split.train_x)), "test_images": int(len(split.test_x)),
                "epochs": epochs, "seed": seed, "seconds": train_seconds, "export_seconds": export_seconds,
                "history": history, "weights": weights.name, "arch": ARCH}
    with one_torch_thread():
        report = build_report(model, dataset, out, per_class=1, seed=seed, progress=say.within(0.35, 1.0),
                              training=training)
    log.info("demo finished in %.1f s", time.perf_counter() - started)
    return report


class _Stages:
    """One progress scale for the whole demo: each stage reports its own 0..1 inside its share."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress

    def __call__(self, what: str, fraction: float | None) -> None:
        if self.progress is not None:
            self.progress(what, fraction)

    def within(self, lo: float, hi: float) -> Progress:
        def scaled(what: str, fraction: float | None) -> None:
            self(what, None if fraction is None else lo + (hi - lo) * fraction)

        return scaled
