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

# `make test` runs two pytest workers on two cores: one thread each for torch and onnxruntime, since
# oversubscribed torch threads busy-wait and ran 5-15x slower here than a single thread.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.setdefault("ONNXPLAIN_THREADS", "1")

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
    "k06": "k06_keras111_theano_channelsfirst_cifar10_3x32x32_10cls.h5",
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


def faces_dataset(faces: np.ndarray, n: int = 40, classes: int = 4):
    """`n` real LFW faces as 8-bit pixels with made-up labels 0..classes-1 (for reports on tiny models)."""
    from onnxplain.engine.data import Dataset

    pixels = np.clip(np.rint(faces[:n] * 255), 0, 255).astype(np.uint8)
    return Dataset(images=pixels, labels=np.arange(n, dtype=np.int64) % classes, class_names=None,
                   source="LFW faces (test)", ids=tuple(f"face{i}" for i in range(n)))


@pytest.fixture(scope="session")
def tiny_report(tmp_path_factory: pytest.TempPathFactory, tiny_onnx: Callable[..., Path], faces: np.ndarray) -> Path:
    """The full HTML report (every section) of the tiny seeded CNN on 40 real faces with 4 made-up classes."""
    from onnxplain.engine import Model
    from onnxplain.engine.report import build_report

    model = Model(tiny_onnx(size=16, classes=4))
    return build_report(model, faces_dataset(faces), tmp_path_factory.mktemp("tiny_report"), seed=0)


# ----------------------------------------------------------------------------- zoo models exported to ONNX
# What the MANIFEST says about each zoo model, as export options (labels, preprocessing, missing facts).
_ZOO_FER_SCALED = {"labels": "fer2013", "scale": 2.0 / 255.0, "mean": 1.0, "std": 1.0}  # (x/255 - 0.5) * 2
_ZOO_EXPORT_OPTIONS: dict[str, dict] = {
    "k01": _ZOO_FER_SCALED,
    "k02": _ZOO_FER_SCALED,
    "k03": {"labels": "fer2013", "scale": 1.0 / 255.0},
    "k04": {"labels": "Angry,Happy,Neutral,Sad,Surprise", "scale": 1.0 / 255.0},
    "k05": {"labels": "fer2013", "scale": 1.0 / 255.0},
    "t04": {"input_shape": (1, 1, 28, 28), "labels": "digits"},
    "t06": {"input_shape": (1, 1, 120, 120), "labels": "Closed,Open,yawn,no_yawn", "scale": 1.0 / 255.0,
            "mean": 0.5, "std": 0.5},
}


def zoo_export_options(key: str) -> dict:
    """Export options that make zoo model `key` export with its real labels and preprocessing."""
    options = dict(_ZOO_EXPORT_OPTIONS.get(key, {}))
    if key == "k05":
        options["arch"] = zoo_path("k05_arch")
    return options


@pytest.fixture(scope="session", autouse=True)
def _onnxplain_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exports made during tests land in a cache shared by this run's xdist workers, never in ~/.cache."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "onnxplain-cache"
    old = os.environ.get("ONNXPLAIN_CACHE")
    os.environ["ONNXPLAIN_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("ONNXPLAIN_CACHE", None)
    else:
        os.environ["ONNXPLAIN_CACHE"] = old


@pytest.fixture(scope="session")
def export_worker():
    """One warm export process (TensorFlow and torch imported once) for the whole session."""
    from onnxplain.exporters import ExportWorker

    with ExportWorker() as worker:
        yield worker


@pytest.fixture(scope="session")
def exported_zoo(export_worker, _onnxplain_cache) -> Callable[[str], Path]:
    """Factory: exported_zoo("k01") -> Path of the zoo model as ONNX (+ sidecar), exported once through
    `ensure_onnx` (o01-o03 are returned as they are). t03 and t05 cannot be exported (see MANIFEST)."""
    from onnxplain.exporters import ensure_onnx

    done: dict[str, Path] = {}

    def get(key: str) -> Path:
        if key not in done:
            done[key] = ensure_onnx(zoo_path(key), worker=export_worker, **zoo_export_options(key))
        return done[key]

    return get
