"""Library versions, asked for in one place: results record them, export caches key on onnxplain's."""
from __future__ import annotations

import functools
import platform
import sys
from importlib import metadata

# Distribution names of the libraries an export may involve; reported only when already imported,
# so asking for versions never imports TensorFlow into a process that did not need it.
_EXPORT_DISTRIBUTIONS = {
    "numpy": "numpy", "onnx": "onnx", "onnxruntime": "onnxruntime-gpu", "torch": "torch",
    "tensorflow": "tensorflow-cpu", "tf_keras": "tf_keras", "tf2onnx": "tf2onnx", "keras": "keras", "h5py": "h5py",
}
# What an explanation depends on (both onnxruntime distributions: either may be the installed one).
_ENGINE_DISTRIBUTIONS = ("onnxplain", "numpy", "onnx", "onnxruntime-gpu", "onnxruntime", "torch", "onnx2torch",
                         "scikit-image")


def dist_version(dist: str) -> str | None:
    """The installed version of distribution `dist`, or None when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def onnxplain_version() -> str:
    return dist_version("onnxplain") or "unknown"


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Python and the installed engine libraries, as every Explanation records them."""
    out = {"python": platform.python_version()}
    out.update({d: v for d in _ENGINE_DISTRIBUTIONS if (v := dist_version(d)) is not None})
    return out


def loaded_versions() -> dict[str, str]:
    """Versions of the export-related libraries this process has imported."""
    out: dict[str, str] = {}
    for module, dist in _EXPORT_DISTRIBUTIONS.items():
        mod = sys.modules.get(module)
        if mod is None:
            continue
        version = getattr(mod, "__version__", None) or dist_version(dist)
        if version is not None:
            out[module] = str(version)
    return out
