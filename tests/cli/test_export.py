"""`onnxplain export`, and MODEL given as a non-ONNX file to the other commands (exported on the fly)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxplain.engine import Model
from tests.cli.helpers import assert_json, assert_user_error, invoke
from tests.conftest import DATA, zoo_path


@pytest.mark.slow
def test_export_torchscript_then_use_it(tmp_path: Path) -> None:
    out = tmp_path / "mnist.onnx"
    doc = assert_json(invoke("export", zoo_path("t04"), "-o", out, "--input-shape", "1,1,28,28", "--labels", "digits",
                             "--json"))
    assert doc["onnx"] == str(out) and out.exists() and Path(doc["sidecar"]).exists()
    assert doc["parity"]["passed"] and doc["parity"]["max_abs_diff"] < 1e-3
    assert doc["input"]["height"] == 28 and doc["labels"] == [str(i) for i in range(10)]
    sidecar = json.loads(Path(doc["sidecar"]).read_text())
    assert sidecar["labels"] == doc["labels"]
    model = Model(out)
    assert model.n_classes == 10 and model.spec.labels == tuple(str(i) for i in range(10))


@pytest.mark.slow
def test_non_onnx_model_is_exported_on_the_fly_and_cached(tmp_path: Path) -> None:
    args = ("evaluate", zoo_path("t04"), "--data", DATA / "mnist_t10k-images-idx3-ubyte.gz", "--limit", "200",
            "--input-shape", "1,1,28,28", "--out", tmp_path / "ev", "--json")
    first = assert_json(invoke(*args))
    assert first["n"] == 200 and first["accuracy"] > 0.9  # a trained MNIST model on real MNIST digits
    cached = list((tmp_path / "export-cache").rglob("*.onnx"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = assert_json(invoke(*args))
    assert again["accuracy"] == first["accuracy"] and cached[0].stat().st_mtime_ns == stamp  # reused, not redone


def test_export_errors_are_one_line(tmp_path: Path) -> None:
    refused = invoke("export", zoo_path("t05"), "-o", tmp_path / "x.onnx")
    assert_user_error(refused, "t05_torch_WHOLE_PICKLE", "--trust")
    assert not (tmp_path / "x.onnx").exists()
    bogus = tmp_path / "notes.pth"
    bogus.write_bytes(np.random.default_rng(0).bytes(1000))
    assert_user_error(invoke("export", bogus), "notes.pth")
    assert_user_error(invoke("export", zoo_path("t04"), "--arch-args", "{not json"), "--arch-args")
