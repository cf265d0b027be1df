"""The `exported_zoo` fixture other tests build on: zoo models as ONNX with the MANIFEST's facts."""
from __future__ import annotations

import pytest

from onnxplain.engine import Model
from tests.conftest import zoo_path

pytestmark = pytest.mark.slow


def test_exported_zoo_gives_models_with_labels_and_preprocessing(exported_zoo) -> None:
    k01 = Model(exported_zoo("k01"))
    assert k01.spec.layout == "NHWC" and (k01.spec.height, k01.spec.width) == (48, 48)
    assert k01.spec.labels is not None and k01.spec.labels[6] == "Neutral"
    assert k01.spec.scale == pytest.approx(2 / 255) and k01.spec.mean == (1.0,)
    assert k01.sidecar["parity"]["max_abs_diff"] <= 1e-4
    assert exported_zoo("k01") == exported_zoo("k01")  # cached for the session
    t04 = Model(exported_zoo("t04"))
    assert t04.spec.layout == "NCHW" and t04.n_classes == 10 and t04.spec.labels[0] == "0"
    assert exported_zoo("o01") == zoo_path("o01")  # ONNX files are used as they are
