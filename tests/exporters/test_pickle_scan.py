"""Reading what a pickle would import, without unpickling it."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from onnxplain.exporters.pickle_scan import pickle_globals, suspicious_globals, torch_pickle_bytes
from tests.conftest import make_tiny_cnn, zoo_path


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_state_dict_needs_nothing_suspicious(tmp_path: Path) -> None:
    torch.save(make_tiny_cnn().state_dict(), tmp_path / "sd.pt")
    torch.save(make_tiny_cnn().state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("sd.pt", "legacy.pt"):
        found = pickle_globals(torch_pickle_bytes(tmp_path / name))
        assert "torch._utils._rebuild_tensor_v2" in found
        assert suspicious_globals(found) == []


def test_whole_model_pickle_names_its_class() -> None:
    found = suspicious_globals(pickle_globals(torch_pickle_bytes(zoo_path("t05"))))
    assert found[0] == "__main__.CNN"
    assert "torch.nn.modules.conv.Conv2d" in found


def test_reduce_payload_is_seen_in_every_protocol() -> None:
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        found = suspicious_globals(pickle_globals(pickle.dumps(Evil(), protocol=protocol)))
        assert found and found[0].endswith(".system"), (protocol, found)


def test_garbage_gives_no_globals_and_no_error() -> None:
    assert pickle_globals(b"") == []
    assert pickle_globals(b"\x80\x04\x95garbage-that-is-not-a-pickle") == []
    assert pickle_globals(os.urandom(64)) is not None
