"""Format detection from bytes alone: every zoo file, generated files of each kind, and junk."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import h5py
import pytest
import torch
from tests.conftest import make_tiny_cnn, zoo_path

from onnxplain.engine.errors import BadInputError
from onnxplain.exporters import sniff_format
from onnxplain.exporters.sniff import describe_unknown, framework_of

ZOO_FORMATS = {
    "k01": "keras-h5", "k02": "keras-h5", "k03": "keras-h5", "k04": "keras-h5", "k05": "keras-h5-weights",
    "t03": "torch-zip", "t04": "torchscript", "t05": "torch-zip", "t06": "torchscript",
    "o01": "onnx", "o02": "onnx", "o03": "onnx",
}


@pytest.mark.parametrize("key", sorted(ZOO_FORMATS))
def test_zoo_formats(key: str) -> None:
    assert sniff_format(zoo_path(key)) == ZOO_FORMATS[key]


def test_generated_torch_formats(tmp_path: Path) -> None:
    model = make_tiny_cnn()
    torch.save(model.state_dict(), tmp_path / "zip.pt")
    torch.save(model.state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.jit.save(torch.jit.trace(model, torch.rand(1, 1, 16, 16)), tmp_path / "script.pt")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": [1, 2]}, protocol=4))
    assert sniff_format(tmp_path / "zip.pt") == "torch-zip"
    assert sniff_format(tmp_path / "legacy.pt") == "torch-legacy"
    assert sniff_format(tmp_path / "script.pt") == "torchscript"
    assert sniff_format(tmp_path / "plain.pkl") == "pickle"
    assert framework_of("torch-legacy") == "pytorch" and framework_of("keras3") == "keras"


def test_keras3_and_plain_hdf5(keras_files: Path, tmp_path: Path) -> None:
    assert sniff_format(keras_files / "k3_nested.keras") == "keras3"
    assert sniff_format(keras_files / "k3_legacy.h5") == "keras-h5"
    assert sniff_format(keras_files / "tfk_weights.h5") == "keras-h5-weights"
    with h5py.File(tmp_path / "data.h5", "w") as fh:
        fh["x"] = [1, 2, 3]
    assert sniff_format(tmp_path / "data.h5") == "hdf5"


def test_content_wins_over_the_suffix(tmp_path: Path) -> None:
    """Students rename files: an ONNX file called .pt, a Keras file called .onnx."""
    shutil.copy(zoo_path("o03"), tmp_path / "model.pt")
    shutil.copy(zoo_path("k04"), tmp_path / "model.onnx")
    assert sniff_format(tmp_path / "model.pt") == "onnx"
    assert sniff_format(tmp_path / "model.onnx") == "keras-h5"


def test_junk(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("my model is great\n")
    (tmp_path / "cut.pt").write_bytes(zoo_path("t04").read_bytes()[:5000])
    for name in ("empty.pt", "notes.txt", "cut.pt"):
        assert sniff_format(tmp_path / name) == "unknown"
    assert "empty" in describe_unknown(tmp_path / "empty.pt")
    assert "truncated" in describe_unknown(tmp_path / "cut.pt")
    assert "supported" in describe_unknown(tmp_path / "notes.txt")


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no such file"):
        sniff_format(tmp_path / "nope.h5")
    with pytest.raises(BadInputError, match="folder"):
        sniff_format(tmp_path)
