"""Models, real images and Captum helpers shared by the gradient-method tests.

Test modules import what they need by name (`from tests.engine.gradient_data import mnist_digits, ...`).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnx2torch
import pytest
import torch

from onnxplain.engine import Model
from onnxplain.engine.data import load_dataset
from tests.conftest import DATA, zoo_path


@lru_cache(maxsize=1)
def _mnist() -> np.ndarray:
    return load_dataset(DATA / "mnist_t10k-images-idx3-ubyte.gz", limit=64).images


def mnist_digits(n: int) -> np.ndarray:
    """The first `n` real MNIST test digits, 8-bit (n, 28, 28)."""
    return _mnist()[:n]


def captum_inputs(x: np.ndarray, targets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Input (requiring grad, as Captum wants it) and target tensors."""
    xt = torch.from_numpy(np.array(x, dtype=np.float32)).requires_grad_(True)
    return xt, torch.from_numpy(np.asarray(targets, dtype=np.int64))


def plain_module(source: Path | onnx.ModelProto) -> torch.nn.Module:
    """The plain onnx2torch module of a file or graph, every submodule tagged with the ONNX values it computes."""
    graph = onnx.load(str(source)) if isinstance(source, Path) else source
    module = onnx2torch.convert(graph, attach_onnx_mapping=True).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


BRIDGES = ("ours", "onnx2torch")  # the torch module Captum runs on: ours (Model.torch_scores), or the plain one


def score_module(model: Model, bridge: str, target_output: str = "logit") -> torch.nn.Module:
    """The module of the explained score that Captum is run on: this Model's rewritten torch module, or
    plain `onnx2torch.convert` of the same score graph, so the equality tests check the bridge too."""
    if bridge == "ours":
        return model.torch_scores(target_output)
    return plain_module(model.score_onnx(target_output))


def module_computing(module: torch.nn.Module, value: str) -> torch.nn.Module:
    """The submodule of an onnx2torch module whose output is the ONNX value `value`."""
    for _, sub in module.named_modules():
        mapping = getattr(sub, "onnx_mapping", None)
        if mapping is not None and value in mapping.outputs:
            return sub
    raise LookupError(f"no submodule computes {value!r}")


def ort_scores(model: Model, x: np.ndarray, target_output: str = "logit") -> np.ndarray:
    """The scores a gradient method explains (`target_output`), computed by onnxruntime on the graph
    `Model.score_onnx` gives, not by the torch module the method differentiates."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.score_onnx(target_output).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {model.spec.input_name: np.ascontiguousarray(x, np.float32)})[0]


@pytest.fixture(scope="module")
def o01() -> Model:
    return Model(zoo_path("o01"))


@pytest.fixture(scope="module")
def o02() -> Model:
    return Model(zoo_path("o02"))


@pytest.fixture(scope="module")
def o03() -> Model:
    return Model(zoo_path("o03"))


# Tiny seeded CNNs of every input kind: gray/RGB x channels first/last, probabilities and logits.
TINY = {
    "gray_nchw": dict(channels=1, layout="NCHW", size=16, softmax=True),
    "gray_nhwc": dict(channels=1, layout="NHWC", size=16, softmax=False, seed=1),
    "rgb_nchw": dict(channels=3, layout="NCHW", size=16, softmax=False, seed=2),
    "rgb_nhwc": dict(channels=3, layout="NHWC", size=16, softmax=True, seed=3),
}


def tiny_inputs(model: Model, n: int, seed: int = 0) -> np.ndarray:
    """`n` seeded random images in the model's own input space (pixels 0..255 through its preprocessing)."""
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, size=(n, model.spec.height, model.spec.width, model.spec.channels))
    return model.spec.pixels_to_model(pixels.astype(np.float32))
