"""ExportOptions: the user's export flags, checked once in the parent and sent to the child as JSON.

Checking here means a bad flag is a BadInputError before any process starts, and the cache key
is computed from one normalised form.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from onnxplain.engine.errors import BadInputError
from onnxplain.engine.labels import parse_labels

PARITY_THRESHOLD = 1e-3


@dataclass(frozen=True)
class ExportOptions:
    arch: str | None = None                  # Keras: architecture file; PyTorch: MODULE:CLASS or file.py:CLASS
    arch_args: Any = None                     # dict of keyword arguments or list of positional ones
    input_shape: tuple[int, ...] | None = None
    weights_key: str | None = None
    trust: bool = False
    layout: str | None = None
    labels: tuple[str, ...] | None = None
    scale: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    allow_mismatch: bool = False
    # (channels, height, width) of the data the model will be fed, when the caller knows it (report, grade):
    # used only for a PyTorch file that does not record its input size. height = width = 0: sizes vary.
    data_shape: tuple[int, ...] | None = None

    @classmethod
    def build(cls, **flags: Any) -> "ExportOptions":
        """Check and normalise export()'s option keywords (arch, arch_args, input_shape, weights_key, trust,
        layout, labels, scale, mean, std, allow_mismatch, data_shape); an unknown keyword is a BadInputError."""
        unknown = sorted(set(flags) - {f.name for f in fields(cls)})
        if unknown:
            raise BadInputError(f"unknown export option(s) {', '.join(unknown)}")
        labels = flags.get("labels")
        return cls(
            arch=_arch(flags.get("arch")),
            arch_args=_arch_args(flags.get("arch_args")),
            input_shape=parse_input_shape(flags.get("input_shape")),
            weights_key=str(flags["weights_key"]) if flags.get("weights_key") is not None else None,
            trust=bool(flags.get("trust", False)),
            layout=_layout(flags.get("layout")),
            labels=parse_labels(labels) if labels is not None else None,
            scale=_positive(flags.get("scale"), "scale"),
            mean=_floats(flags.get("mean"), "mean"),
            std=_floats(flags.get("std"), "std"),
            allow_mismatch=bool(flags.get("allow_mismatch", False)),
            data_shape=_data_shape(flags.get("data_shape")),
        )

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ExportOptions":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("input_shape", "labels", "mean", "std", "data_shape"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    @property
    def arch_files(self) -> list[Path]:
        """The files behind `arch` (a Keras JSON/YAML, the student's .py file or every .py of a folder):
        their content is part of the export cache key."""
        if self.arch is None:
            return []
        target = self.arch.rsplit(":", 1)[0] if _is_code_target(self.arch) and not Path(self.arch).exists() else self.arch
        path = Path(target)
        if path.is_dir():
            from .student_code import python_files

            return python_files(path)
        return [path] if path.is_file() else []


def _bad(param: str, message: str) -> BadInputError:
    """An export option's error, naming the API parameter (the CLI prints it as its flag)."""
    return BadInputError(message, params=(param,))


def parse_input_shape(value: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """`1,1,48,48`, `1x1x48x48` or a sequence; 3 numbers get a batch of 1 in front; `1,2304` is a model
    on flattened pixels."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").replace(" ", ",").split(",") if p]
    else:
        parts = list(value)
    try:
        dims = tuple(int(p) for p in parts)
    except (TypeError, ValueError) as exc:
        raise _bad("input_shape", f"`input_shape` {value!r} must be numbers such as 1,1,48,48") from exc
    if len(dims) == 3:
        dims = (1, *dims)
    if len(dims) == 2 and dims[0] == 1 and 0 < dims[1] <= 8192 * 8192 * 4:
        return dims  # a model on flattened pixels (1,2304): the exporter gives it an image input
    if len(dims) != 4 or any(d <= 0 for d in dims) or any(d > 8192 for d in dims[1:]):
        raise _bad("input_shape", f"`input_shape` {value!r} must be 4 positive numbers such as 1,1,48,48 (N,C,H,W), "
                            "or 1,K for a model on K flattened pixels")
    return dims


def _arch(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        raise _bad("arch", "`arch` is empty; give a model file (model.json), path/to/model.py or MODULE:CLASS")
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve())  # a Keras architecture file, the student's .py file or a folder of them
    if _is_code_target(text):
        file_part, cls_name = text.rsplit(":", 1)
        where = Path(file_part).expanduser()
        if not where.exists():
            raise _bad("arch", f"`arch` {text!r}: {where} is not a file or folder")
        return f"{where.resolve()}:{cls_name}"
    if path.suffix.lower() in (".json", ".yaml", ".yml", ".py"):
        raise _bad("arch", f"`arch` {text!r}: no such file")
    if ":" not in text:
        raise _bad("arch", f"`arch` {text!r} is neither a file or folder nor MODULE:CLASS (e.g. mypackage.nets:CNN)")
    return text


def _is_code_target(text: str) -> bool:
    """`file.py:CLASS` or `folder:CLASS` (the folder must exist)."""
    if ".py:" in text and not text.endswith(".py:"):
        return True
    head, sep, tail = text.rpartition(":")
    return bool(sep and tail and head and Path(head).expanduser().is_dir())


def _data_shape(value: Sequence[int] | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    dims = tuple(int(v) for v in value)
    if len(dims) != 3 or dims[0] not in (1, 3, 4) or any(d < 0 for d in dims):
        raise BadInputError(f"data_shape must be (channels, height, width), not {value!r}")
    return dims


def _arch_args(value: str | Mapping[str, Any] | Sequence[Any] | None) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _bad("arch_args", f"`arch_args` is not valid JSON ({exc.msg}); e.g. '{{\"num_classes\": 7}}'") from exc
    if isinstance(value, Mapping):
        value = dict(value)
    elif isinstance(value, (list, tuple)):
        value = list(value)
    else:
        raise _bad("arch_args", "`arch_args` must be a JSON object (keyword arguments) or a JSON list (positional ones)")
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise _bad("arch_args", f"`arch_args` must hold only JSON values ({exc})") from exc
    return value


def _layout(value: str | None) -> str | None:
    if value is None:
        return None
    upper = str(value).upper()
    if upper not in ("NCHW", "NHWC"):
        raise _bad("layout", f"`layout` {value!r} is not NCHW or NHWC")
    return upper


def _positive(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    out = float(value)
    if not math.isfinite(out) or out <= 0:
        raise _bad(what, f"`{what}` must be a positive number, not {value!r}")
    return out


def _floats(value: float | Sequence[float] | None, what: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    items = [value] if isinstance(value, (int, float)) else list(value)
    try:
        out = tuple(float(v) for v in items)
    except (TypeError, ValueError) as exc:
        raise _bad(what, f"`{what}` must be a number or comma-separated numbers, not {value!r}") from exc
    if not out or len(out) > 4 or not all(math.isfinite(v) for v in out):
        raise _bad(what, f"`{what}` must be 1 or one-per-channel finite numbers, not {value!r}")
    if what == "std" and any(v == 0 for v in out):
        raise _bad("std", "`std` must not contain 0")
    return out
