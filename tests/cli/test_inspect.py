"""`onnxplain inspect`: the Keras-style summary, as a table and as JSON; malformed files exit 2."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxplain.engine import Model
from tests.cli.helpers import assert_json, assert_ok, assert_user_error, invoke
from tests.conftest import zoo_path


def test_table_shows_layers_shapes_params_and_parity(tiny_onnx) -> None:
    path = tiny_onnx()
    out = assert_ok(invoke("inspect", path, "--labels", "a,b,c,d")).stdout
    model = Model(path)
    for layer in model.layers():
        assert layer.name in out and f"{layer.params:,}" in out
    assert "(None, 8, 16, 16)" in out  # features.0: 8 channels at 16x16
    assert f"ONNX layers: {sum(l.params for l in model.layers()):,} params" in out
    assert "note: an ONNX file" in out and "--layer accepts: features.0" in out
    assert "NCHW 1x16x16" in out and "4 classes, logits (a, b, c, d)" in out
    assert "torch parity" in out


def test_json_summary_matches_the_model(tiny_onnx) -> None:
    path = tiny_onnx()
    doc = assert_json(invoke("inspect", path, "--json"))
    ref = Model(path).summary()
    assert doc["layers"] == ref["layers"] and doc["total_params"] == ref["total_params"]
    assert doc["classes"] == 4 and doc["input"]["layout"] == "NCHW" and doc["opset"] == 17
    assert doc["torch_parity"] is not None and doc["torch_parity"] < 1e-4
    assert doc["device"] == "cpu" and doc["torch_error"] is None
    skipped = assert_json(invoke("inspect", path, "--json", "--no-parity"))
    assert skipped["torch_parity"] is None


def test_flags_override_preprocessing_and_labels(tiny_onnx) -> None:
    doc = assert_json(invoke("inspect", tiny_onnx(), "--json", "--no-parity", "--labels", "w,x,y,z",
                             "--scale", "0.5", "--mean", "0.25", "--std", "2"))
    assert doc["labels"] == ["w", "x", "y", "z"]
    assert doc["preprocessing"] == {"scale": 0.5, "mean": [0.25], "std": [2.0], "channel_order": "RGB",
                                    "source": "flags", "check": None}


@pytest.mark.slow
def test_real_tf2onnx_model(tmp_path: Path) -> None:
    doc = assert_json(invoke("inspect", zoo_path("o01"), "--json", "--labels", "fer2013"))
    assert doc["input"]["layout"] == "NHWC" and doc["input"]["height"] == 48
    assert [l["name"] for l in doc["layers"] if l["kind"] == "conv"] == ["conv2d", "conv2d_1"]
    assert doc["output_kind"] == "probabilities" and doc["labels"][3] == "Happy"
    assert doc["torch_parity"] < 1e-4


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("empty.onnx", b"", "is empty"),
        ("random.onnx", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not a readable ONNX"),
        ("keras.onnx", b"\x89HDF\r\n\x1a\n" + b"\0" * 512, "HDF5"),
    ],
)
def test_malformed_files_exit_2(tmp_path: Path, name: str, content: bytes, expect: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert_user_error(invoke("inspect", path), name, expect)


def test_truncated_model_exits_2(tiny_onnx, tmp_path: Path) -> None:
    data = tiny_onnx().read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert_user_error(invoke("inspect", path), "truncated.onnx")


def test_folder_and_bad_flags_exit_2(tiny_onnx, tmp_path: Path) -> None:
    assert_user_error(invoke("inspect", tmp_path), "is a folder")
    assert_user_error(invoke("inspect", tiny_onnx(), "--input-shape", "1,1,32,32"), "--input-shape", "does not match")
    assert_user_error(invoke("inspect", tiny_onnx(), "--labels", "justone"), "--labels")
    assert_user_error(invoke("inspect", tiny_onnx(), "--std", "0"), "--std")
