"""Which kind of model file is this? Decided from bytes alone, never by parsing with a C library.

Runs in the parent process, so it must be safe on hostile files: it reads magic numbers, zip
member names (pure-Python `zipfile`) and scans the raw bytes of HDF5 files for the attribute
names Keras writes. The child process makes the authoritative checks when it really loads the file.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from onnxplain.engine.errors import BadInputError

ONNX = "onnx"
KERAS_H5 = "keras-h5"
KERAS_H5_WEIGHTS = "keras-h5-weights"
HDF5 = "hdf5"
KERAS3 = "keras3"
TORCHSCRIPT = "torchscript"
TORCH_ZIP = "torch-zip"
TORCH_LEGACY = "torch-legacy"
PICKLE = "pickle"
UNKNOWN = "unknown"

KERAS_FORMATS = frozenset({KERAS_H5, KERAS_H5_WEIGHTS, HDF5, KERAS3})
TORCH_FORMATS = frozenset({TORCHSCRIPT, TORCH_ZIP, TORCH_LEGACY, PICKLE})

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HDF5_OFFSETS = (0, 512, 1024, 2048)  # an HDF5 superblock may follow a user block of these sizes
_ZIP_MAGIC = b"PK\x03\x04"
# torch.save before 1.6: pickle protocol 2, then the long 0x1950a86a20f9469cfc6c (little-endian).
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
# ONNX ModelProto: field 1 (ir_version, varint) comes first; then another field's tag.
_ONNX_NEXT_TAGS = frozenset({0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x4A, 0x52, 0x72, 0x7A})
_SCAN_CHUNK = 1 << 22


def sniff_format(path: str | os.PathLike[str]) -> str:
    """One of onnx, keras-h5, keras-h5-weights, hdf5, keras3, torchscript, torch-zip, torch-legacy,
    pickle, unknown. A missing path or a folder is a BadInputError."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    if p.is_dir():
        raise BadInputError(f"{p} is a folder; give a model file (.h5, .keras, .pt, .pth, .onnx)")
    try:
        with open(p, "rb") as fh:
            head = fh.read(2048 + len(_HDF5_MAGIC))
    except OSError as exc:
        raise BadInputError(f"cannot read {p}: {exc.strerror or exc}") from exc
    if any(head[o:o + len(_HDF5_MAGIC)] == _HDF5_MAGIC for o in _HDF5_OFFSETS):
        return _sniff_hdf5(p)
    if head.startswith(_ZIP_MAGIC):
        return _sniff_zip(p)
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return TORCH_LEGACY
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return PICKLE
    if p.suffix.lower() == ".onnx" or _looks_like_onnx(head):
        return ONNX
    return UNKNOWN


def _sniff_hdf5(path: Path) -> str:
    """Keras writes `model_config` (full model) or only `layer_names` (save_weights) as root attributes."""
    found = _scan_for(path, (b"model_config", b"layer_names"))
    if b"model_config" in found:
        return KERAS_H5
    if b"layer_names" in found:
        return KERAS_H5_WEIGHTS
    return HDF5


def _scan_for(path: Path, needles: tuple[bytes, ...]) -> set[bytes]:
    found: set[bytes] = set()
    overlap = max(len(n) for n in needles) - 1
    tail = b""
    with open(path, "rb") as fh:
        while len(found) < len(needles):
            chunk = fh.read(_SCAN_CHUNK)
            if not chunk:
                break
            window = tail + chunk
            found.update(n for n in needles if n in window)
            tail = window[-overlap:]
    return found


def _sniff_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return UNKNOWN  # truncated or damaged archive: the child reports it properly
    top = set(names)
    if "config.json" in top and ("model.weights.h5" in top or "metadata.json" in top):
        return KERAS3
    if any("/code/__torch__" in n or n.endswith("/constants.pkl") for n in names):
        return TORCHSCRIPT
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return TORCH_ZIP
    return UNKNOWN


def describe_unknown(path: str | os.PathLike[str]) -> str:
    """Why a file of format `unknown` is not a model, for the error message."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path):
                pass
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return "a damaged or truncated zip archive (a PyTorch or Keras 3 file cut short?)"
        return "a zip archive that holds neither a PyTorch nor a Keras 3 model"
    if not head:
        return "empty (0 bytes)"
    return ("not a model file onnxplain knows (no HDF5, zip, pickle or ONNX signature); "
            "supported: .h5/.hdf5/.keras, .pt/.pth/.pkl, .onnx")


def _looks_like_onnx(head: bytes) -> bool:
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 15 and head[2] in _ONNX_NEXT_TAGS


def framework_of(fmt: str) -> str:
    """keras, pytorch, onnx or unknown: which heavy libraries an export of this format needs."""
    if fmt in KERAS_FORMATS:
        return "keras"
    if fmt in TORCH_FORMATS:
        return "pytorch"
    return fmt if fmt == ONNX else UNKNOWN
