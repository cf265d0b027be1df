"""Models and real images shared by the forward-method tests (LIME, occlusion).

Test modules import the fixtures by name (`from tests.engine.forward_data import o01, rgb_images`).
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import pytest

from onnxplain.engine import Model
from tests.conftest import DATA, zoo_path

# Tiny seeded CNNs of each input kind: gray/RGB, channels first/last, probabilities/logits.
TINY_KINDS: dict[str, dict] = {
    "gray_nchw": dict(channels=1, layout="NCHW", size=16, softmax=True),
    "rgb_nchw": dict(channels=3, layout="NCHW", size=16, softmax=True),
    "rgb_nhwc": dict(channels=3, layout="NHWC", size=16, softmax=True),
    "logits_nchw": dict(channels=1, layout="NCHW", size=20, classes=5, softmax=False, seed=3),
}


def tiny_model(tiny_onnx: Callable[..., object], kind: str) -> Model:
    return Model(tiny_onnx(**TINY_KINDS[kind]))


def images_for(model: Model, faces: np.ndarray, rgb: list[np.ndarray], n: int = 3) -> list[np.ndarray]:
    """Real images of the model's colour: LFW faces for gray models, astronaut crops for RGB ones."""
    return list(rgb[:n]) if model.spec.channels == 3 else list(faces[:n])


@pytest.fixture(scope="module")
def rgb_images() -> list[np.ndarray]:
    """Three different 8-bit RGB crops (face, shoulder, flag corner) of the 512x512 astronaut portrait."""
    img = cv2.imread(str(DATA / "skimage_astronaut.png"))[..., ::-1]
    return [img[0:256, 128:384].copy(), img[100:300, 150:350].copy(), img[256:512, 0:256].copy()]


@pytest.fixture(scope="module")
def o01() -> Model:
    return Model(zoo_path("o01"))
