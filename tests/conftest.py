"""Tiny seeded models built on the spot (no downloads), and paths to the shared zoo and data.

`tiny_onnx(...)` exports a small CNN through the real torch.onnx exporters and caches the file
for the whole session, so every test module can ask for the variant it needs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ONNXPLAIN_SHARED", ROOT.parent / "shared"))
ZOO = SHARED / "zoo"
DATA = SHARED / "data"

ZOO_FILES = {
    "k01": "k01_keras205_functional_sepconv_fer2013_48x48x1_7cls.hdf5",
    "k02": "k02_keras205_functional_bigxception_fer2013_64x64x1_7cls.hdf5",
    "k03": "k03_keras224_sequential_noinputlayer_fer2013_48x48x1_7cls.hdf5",
    "k04": "k04_keras231_sequential_bn_dropout_elu_48x48x1_5cls.h5",
    "k05": "k05_keras240_WEIGHTS_ONLY_fer_48x48x1_7cls.h5",
    "k05_arch": "k05_keras240_WEIGHTS_ONLY_fer_48x48x1_7cls.arch.json",
    "t03": "t03_torch_statedict_deepemotion_stn_fer2013_48x48x1_7cls.pt",
    "t04": "t04_torchscript_cudasaved_mnist_1x28x28_10cls.pt",
    "t05": "t05_torch_WHOLE_PICKLE_main_CNN_mnist_1x28x28_10cls.pth",
    "t06": "t06_torchscript_drowsiness_1x120x120_4cls.pt",
    "o01": "o01_onnx_tf2onnx_NHWC_fer2013_48x48x1_7cls.onnx",
    "o02": "o02_onnx_tf2onnx_NHWC_rgb_fer_48x48x3_7cls.onnx",
    "o03": "o03_onnx_pytorch_mnist_1x28x28_10cls.onnx",
}


def zoo_path(key: str) -> Path:
    """A zoo file; the shared folder is part of the test environment, so a missing file fails loudly."""
    path = ZOO / ZOO_FILES[key]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: ../shared/zoo must sit beside the project (see MANIFEST.md)")
    return path


class TinyCNN(nn.Module):
    """Conv-BN-ReLU-Pool, Conv-ReLU, global pool, Linear: the shape of a student's CNN, in miniature."""

    def __init__(self, channels: int = 1, classes: int = 4, width: int = 8, softmax: bool = False,
                 nhwc: bool = False) -> None:
        super().__init__()
        self.nhwc = nhwc
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2 * width, classes)
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        x = self.classifier(x)
        return torch.softmax(x, dim=1) if self.softmax else x


def make_tiny_cnn(channels: int = 1, classes: int = 4, seed: int = 0, softmax: bool = False,
                  nhwc: bool = False) -> TinyCNN:
    torch.manual_seed(seed)
    model = TinyCNN(channels, classes, softmax=softmax, nhwc=nhwc)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding BN is actually exercised
        bn = model.features[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


def export_onnx(module: nn.Module, path: Path, input_shape: tuple[int, ...], *, exporter: str = "torchscript",
                opset: int = 17) -> Path:
    """Export through the real torch.onnx exporters; dynamo writes opset 18+ by design."""
    x = torch.rand(*input_shape)
    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=opset)
    if exporter == "dynamo":
        torch.onnx.export(module, (x,), str(path), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},),
                          **kwargs)
    elif exporter == "torchscript":
        torch.onnx.export(module, (x,), str(path), dynamo=False, dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          **kwargs)
    else:
        raise ValueError(exporter)
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: tiny_onnx(channels=1, layout="NCHW", exporter="torchscript", opset=17, size=16, classes=4,
    softmax=False, seed=0) -> Path of a cached .onnx file."""
    cache: dict[tuple, Path] = {}
    folder = tmp_path_factory.mktemp("tiny_onnx")

    def build(channels: int = 1, layout: str = "NCHW", exporter: str = "torchscript", opset: int = 17,
              size: int = 16, classes: int = 4, softmax: bool = False, seed: int = 0) -> Path:
        key = (channels, layout, exporter, opset, size, classes, softmax, seed)
        if key not in cache:
            nhwc = layout == "NHWC"
            module = make_tiny_cnn(channels, classes, seed, softmax=softmax, nhwc=nhwc)
            shape = (2, size, size, channels) if nhwc else (2, channels, size, size)
            name = "_".join(str(k) for k in key) + ".onnx"
            cache[key] = export_onnx(module, folder / name, shape, exporter=exporter, opset=opset)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def faces() -> np.ndarray:
    """The first 100 images of scikit-image's LFW subset (25x25 gray faces, floats in [0, 1])."""
    return np.load(DATA / "skimage_lfw_subset_200x25x25.npy")[:100]
