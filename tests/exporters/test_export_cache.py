"""ensure_onnx: .onnx files as they are; anything else exported once per (content, options), then reused."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from onnxplain.exporters import ExportWorker, ensure_onnx
from onnxplain.exporters.cache import cache_entry, cache_key, cache_root
from onnxplain.exporters.options import ExportOptions
from tests.conftest import make_tiny_cnn, zoo_path
from tests.exporters.export_helpers import read_sidecar


class CountingWorker:
    """The session's worker, counting the exports it is really asked for."""

    def __init__(self, worker: ExportWorker) -> None:
        self.worker, self.requests = worker, 0

    def export(self, *args, **kwargs):
        self.requests += 1
        return self.worker.export(*args, **kwargs)


@pytest.fixture
def counting_worker(export_worker: ExportWorker) -> CountingWorker:
    return CountingWorker(export_worker)


def test_onnx_is_returned_as_is(tmp_path: Path) -> None:
    assert ensure_onnx(zoo_path("o03"), cache_dir=tmp_path) == zoo_path("o03")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_export_once_then_reuse(counting_worker: CountingWorker, tmp_path: Path) -> None:
    torchscript = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(make_tiny_cnn(), torch.rand(1, 1, 16, 16)), torchscript)
    cache = tmp_path / "cache"
    first = ensure_onnx(torchscript, cache_dir=cache, input_shape="1,1,16,16", worker=counting_worker)
    again = ensure_onnx(torchscript, cache_dir=cache, input_shape="1,1,16,16", worker=counting_worker)
    assert first == again and first.is_relative_to(cache) and counting_worker.requests == 1
    assert read_sidecar(first)["source"]["path"] == str(torchscript.resolve())
    copy = tmp_path / "renamed.pt"  # same content elsewhere: same entry
    shutil.copy(torchscript, copy)
    assert ensure_onnx(copy, cache_dir=cache, input_shape="1,1,16,16", worker=counting_worker).parent == first.parent
    assert counting_worker.requests == 1
    labelled = ensure_onnx(torchscript, cache_dir=cache, input_shape="1,1,16,16", labels="a,b,c,d",
                           worker=counting_worker)  # other options: another entry
    assert labelled != first and counting_worker.requests == 2
    torch.jit.save(torch.jit.trace(make_tiny_cnn(seed=1), torch.rand(1, 1, 16, 16)), torchscript)  # new content: re-exported
    assert ensure_onnx(torchscript, cache_dir=cache, input_shape="1,1,16,16", worker=counting_worker) != first
    assert counting_worker.requests == 3


def test_key_depends_on_arch_file_content(tmp_path: Path) -> None:
    src = tmp_path / "w.pt"
    src.write_bytes(b"weights")
    arch = tmp_path / "model.py"
    arch.write_text("class Net: pass\n")
    opts = ExportOptions.build(arch=f"{arch}:Net")
    before = cache_key(src, opts)
    arch.write_text("class Net:\n    width = 2\n")
    assert cache_key(src, opts) != before
    assert cache_key(src, opts, images=[torch.zeros(2, 2).numpy()]) != cache_key(src, opts)


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ONNXPLAIN_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("ONNXPLAIN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "onnxplain"
    entry = cache_entry(zoo_path("o03"), ExportOptions(), cache_dir=tmp_path)
    assert entry.onnx.name == "model.onnx" and not entry.ready
