"""Small helpers shared by the exporters: one-line exception text and library versions."""
from __future__ import annotations

import sys
from importlib import metadata

# Distribution names of the libraries an export may involve; reported only when already imported,
# so asking for versions never imports TensorFlow into a process that did not need it.
_DISTRIBUTIONS = {
    "numpy": "numpy", "onnx": "onnx", "onnxruntime": "onnxruntime-gpu", "torch": "torch",
    "tensorflow": "tensorflow-cpu", "tf_keras": "tf_keras", "tf2onnx": "tf2onnx", "keras": "keras", "h5py": "h5py",
}


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's text (libraries raise pages), or its type name."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return shorten(line, limit)
    return type(exc).__name__


def shorten(text: str, limit: int) -> str:
    """`text` within `limit` characters, never cut inside a word: up to its first full sentence when that
    fits, else at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    sentence = text.find(". ")
    if 0 < sentence < limit:
        return text[:sentence + 1]
    cut = text.rfind(" ", 0, limit - 1)
    return (text[:cut] if cut > limit // 2 else text[:limit - 1]).rstrip(",;:(") + "…"


def onnxplain_version() -> str:
    try:
        return metadata.version("onnxplain")
    except metadata.PackageNotFoundError:
        return "unknown"


def loaded_versions() -> dict[str, str]:
    """Versions of the export-related libraries this process has imported."""
    out: dict[str, str] = {}
    for module, dist in _DISTRIBUTIONS.items():
        mod = sys.modules.get(module)
        if mod is None:
            continue
        version = getattr(mod, "__version__", None)
        if version is None:
            try:
                version = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        out[module] = str(version)
    return out
