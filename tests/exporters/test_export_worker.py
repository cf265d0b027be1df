"""The export process: hangs are killed at the time limit, memory blow-ups and crashes end only that
request, and the worker carries on (replaced when it died). Hostile pickles here are run on purpose (trust)."""
from __future__ import annotations

import os
import pickle
import signal
import time
from pathlib import Path

import pytest

from onnxplain.engine.errors import BadInputError, ConversionError, UnsupportedModelError
from onnxplain.exporters import ExportWorker, WorkerGone, export
from tests.conftest import zoo_path

pytestmark = pytest.mark.slow


class Payload:
    """Unpickling calls `func(*args)`."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def write_pickle(path: Path, func, *args) -> Path:
    path.write_bytes(pickle.dumps(Payload(func, *args)))
    return path


@pytest.fixture(scope="module")
def worker():
    with ExportWorker(preload=("torch",)) as w:
        w.start()
        yield w


def test_errors_keep_their_class_across_the_process_boundary(worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not run on input shape .*check `input_shape`") as err:
        export(zoo_path("t04"), tmp_path / "t.onnx", input_shape="1,3,28,28", worker=worker)
    assert err.value.params == ("input_shape",)  # the parameters it names cross the boundary too
    with pytest.raises(UnsupportedModelError, match="state_dict"):
        export(zoo_path("t03"), tmp_path / "t.onnx", worker=worker)


def test_memory_blow_up_ends_the_request_not_the_caller(worker: ExportWorker, tmp_path: Path) -> None:
    src = write_pickle(tmp_path / "greedy.pkl", bytearray, 8 * 1024**3)
    started = time.monotonic()
    with pytest.raises(ConversionError, match=r"more than the 1 GiB memory limit"):
        export(src, tmp_path / "g.onnx", trust=True, memory_gb=1, worker=worker)
    assert time.monotonic() - started < 30
    out = export(zoo_path("t06"), tmp_path / "t06.onnx", input_shape="1,1,120,120", worker=worker)
    assert out.exists()  # the same worker goes on, with its limit lifted again


def test_crash_is_reported_and_the_worker_replaced(worker: ExportWorker, tmp_path: Path) -> None:
    starts, pid = worker.starts, worker.pid
    src = write_pickle(tmp_path / "crash.pkl", os.abort)
    with pytest.raises(WorkerGone, match=r"crashed while exporting crash\.pkl \(signal SIGABRT") as info:
        export(src, tmp_path / "c.onnx", trust=True, worker=worker)
    assert isinstance(info.value, ConversionError) and "\n" not in str(info.value)
    assert not worker.alive
    export(zoo_path("o03"), tmp_path / "o03.onnx", worker=worker)
    assert worker.starts == starts + 1 and worker.pid != pid


def test_worker_killed_between_requests_is_replaced(worker: ExportWorker, tmp_path: Path) -> None:
    worker.start()
    os.kill(worker.pid, signal.SIGKILL)  # no wait: the next request may find it dying or dead
    assert export(zoo_path("o01"), tmp_path / "o01.onnx", worker=worker).exists()


def test_hanging_pickle_is_killed_at_the_time_limit(worker: ExportWorker, tmp_path: Path) -> None:
    src = write_pickle(tmp_path / "hang.pkl", time.sleep, 3600)
    started = time.monotonic()
    with pytest.raises(ConversionError, match=r"hang\.pkl took longer than the 3 s time limit"):
        export(src, tmp_path / "h.onnx", trust=True, timeout=3, worker=worker)
    assert 3 <= time.monotonic() - started < 15
    assert not worker.alive and not (tmp_path / "h.onnx").exists()


def test_bad_limits_are_refused(worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="timeout"):
        export(zoo_path("o03"), tmp_path / "x.onnx", timeout=0, worker=worker)
    with pytest.raises(BadInputError, match="memory_gb"):
        export(zoo_path("o03"), tmp_path / "x.onnx", memory_gb=-1, worker=worker)
