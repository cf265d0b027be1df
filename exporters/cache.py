"""The export cache: every command that takes MODEL exports a non-ONNX file once, then reuses it.

An entry is keyed by the source file's sha256, the export options (and the content of an --arch
file, and the parity images) and the exporter version, so a changed file or flag never reuses a
stale export. An entry is complete when its sidecar exists: it is written last, atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxplain.engine.cache import CACHE_ENV, cache_root  # noqa: F401  (re-exported)
from onnxplain.engine.model import file_sha256
from onnxplain.engine.sidecar import sidecar_path

from .options import ExportOptions
from onnxplain.engine.versions import onnxplain_version

# Bump when an export of the same file with the same options would now come out different.
EXPORT_FORMAT_VERSION = 3  # 2: the framework's own summary in the sidecar; 3: classes and input sizes found


@dataclass(frozen=True)
class CacheEntry:
    folder: Path
    onnx: Path

    @property
    def ready(self) -> bool:
        return self.onnx.is_file() and sidecar_path(self.onnx).is_file()


def cache_key(src: str | os.PathLike[str], options: ExportOptions, images: Any = None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": EXPORT_FORMAT_VERSION, "onnxplain": onnxplain_version(), "sha256": file_sha256(src),
                         "options": options.to_json()}, sort_keys=True).encode())
    for arch_file in options.arch_files:
        h.update(b"arch\0" + str(arch_file).encode() + b"\0" + file_sha256(arch_file).encode())
    if images is not None:
        arrays = [images] if isinstance(images, np.ndarray) else list(images)
        for arr in arrays:
            a = np.ascontiguousarray(arr)
            h.update(f"img\0{a.dtype.str}\0{a.shape}\0".encode() + a.tobytes())
    return h.hexdigest()


def cache_entry(src: str | os.PathLike[str], options: ExportOptions, images: Any = None,
                cache_dir: str | os.PathLike[str] | None = None) -> CacheEntry:
    """The entry depends on content only: the same file under another name or path reuses it."""
    key = cache_key(src, options, images)
    folder = cache_root(cache_dir) / "exports" / key[:2] / key
    return CacheEntry(folder=folder, onnx=folder / "model.onnx")
