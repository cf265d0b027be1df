"""Property: damaged files (truncated, bytes overwritten) give a clean one-line OnnxplainError or a
valid export, never a traceback, a hang or a dead caller. One warm worker serves every case."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxplain.engine.errors import OnnxplainError
from onnxplain.exporters import ExportWorker, export
from tests.conftest import make_tiny_cnn, zoo_path

pytestmark = pytest.mark.slow

TIMEOUT = 30.0
FUZZ = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """Truncate and/or overwrite a few bytes; positions favour the header, where the structure lives."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 8))):
        limit = draw(st.sampled_from([min(len(out), 4096), len(out)]))
        if limit:
            out[draw(st.integers(0, limit - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, max(len(out) - 1, 0)))]
    return bytes(out)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory, tiny_onnx) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz_base")
    torch.jit.save(torch.jit.trace(make_tiny_cnn(), torch.rand(1, 1, 16, 16)), folder / "tiny.pt")
    return {".h5": zoo_path("k01").read_bytes(), ".pt": (folder / "tiny.pt").read_bytes(),
            ".onnx": tiny_onnx().read_bytes()}


def check(blob: bytes, suffix: str, folder: Path, worker: ExportWorker, **flags) -> None:
    src = folder / f"damaged{suffix}"
    src.write_bytes(blob)
    out = folder / "out.onnx"
    out.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        result = export(src, out, worker=worker, timeout=TIMEOUT, **flags)
    except OnnxplainError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 1000, message
        assert "unexpectedly" not in message, message  # an internal error, not a judgement on the file
        assert not out.exists()
    else:
        assert result.exists() and Path(str(result) + ".json").exists()
    assert time.monotonic() - started < TIMEOUT + 20


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=st.data())
def test_damaged_keras_h5(data, samples, folder: Path, export_worker: ExportWorker) -> None:
    check(data.draw(damaged(samples[".h5"])), ".h5", folder, export_worker)


@FUZZ
@given(data=st.data())
def test_damaged_torch_file(data, samples, folder: Path, export_worker: ExportWorker) -> None:
    check(data.draw(damaged(samples[".pt"])), ".pt", folder, export_worker, input_shape="1,1,16,16")


@FUZZ
@given(data=st.data())
def test_damaged_onnx(data, samples, folder: Path, export_worker: ExportWorker) -> None:
    check(data.draw(damaged(samples[".onnx"])), ".onnx", folder, export_worker)
