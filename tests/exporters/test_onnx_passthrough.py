"""`.onnx` inputs: validated (checker + onnxruntime, in the child) and passed through with a sidecar."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnxplain.engine import Model
from onnxplain.engine.errors import BadInputError, UnsupportedModelError
from onnxplain.exporters import ExportWorker, export
from tests.conftest import zoo_path
from tests.exporters.export_helpers import read_sidecar

ZOO_ONNX = {"o01": ("NHWC", 1, 48, 15), "o02": ("NHWC", 3, 48, 13), "o03": ("NCHW", 1, 28, 11)}


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(ZOO_ONNX))
def test_zoo_onnx_passes_through_with_sidecar(key: str, export_worker: ExportWorker, tmp_path: Path) -> None:
    layout, channels, size, opset = ZOO_ONNX[key]
    out = export(zoo_path(key), tmp_path / f"{key}.onnx", worker=export_worker)
    assert out.read_bytes() == zoo_path(key).read_bytes()  # passed through untouched
    side = read_sidecar(out)
    assert side["source"]["format"] == "onnx" and side["source"]["sha256"] == Model(out).sha256
    assert side["exporter"]["converter"] == {"name": "pass-through"} and side["opset"] == opset
    assert (side["input"]["layout"], side["input"]["channels"], side["input"]["height"]) == (layout, channels, size)
    assert "parity" not in side  # nothing was converted, so there is nothing to prove


def test_passthrough_in_place_keeps_an_earlier_sidecar(tiny_onnx, export_worker: ExportWorker, tmp_path: Path) -> None:
    """Re-exporting an exported model must not lose what the first export learnt (layer names, parity)."""
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_onnx().read_bytes())
    Path(str(model) + ".json").write_text(json.dumps({
        "onnxplain_sidecar": 1, "layer_names": {"/features/features.0/Conv": "conv_a"}, "parity": {"max_abs_diff": 0.0},
    }))
    export(model, worker=export_worker, labels="a,b,c,d", scale=1 / 255)
    side = read_sidecar(model)
    assert side["layer_names"] == {"/features/features.0/Conv": "conv_a"} and side["parity"] == {"max_abs_diff": 0.0}
    assert side["labels"] == ["a", "b", "c", "d"] and side["preprocessing"]["scale"] == pytest.approx(1 / 255)
    assert Model(model).conv_layers()[0].name == "conv_a"


def test_passthrough_checks_labels_against_classes(tiny_onnx, export_worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="3 names but the model has 4 classes"):
        export(tiny_onnx(), tmp_path / "m.onnx", labels="a,b,c", worker=export_worker)


def test_damaged_onnx_is_refused(export_worker: ExportWorker, tmp_path: Path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(zoo_path("o03").read_bytes()[:20000])
    with pytest.raises(UnsupportedModelError, match="cut.onnx"):
        export(cut, tmp_path / "out.onnx", worker=export_worker)
    assert not (tmp_path / "out.onnx").exists()
