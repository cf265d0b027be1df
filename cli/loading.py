"""Model loading for every command: the shared model flags, `auto` device resolution, and export
of non-ONNX files on the fly.

`@model_options` gives a command all the model-loading flags (--device, --labels, --scale,
--mean, --std, --layout, --input-shape, --trust, --arch, --arch-args, --weights-key,
--batch-size) and hands them to it as one `ModelOptions` argument named `model_opts`.
"""
from __future__ import annotations

import functools
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from onnxplain.engine.errors import BadInputError

from .options import (
    ArchArgsOpt, ArchOpt, BatchSizeOpt, DeviceOpt, InputShapeOpt, LabelsOpt, LayoutOpt, MeanOpt,
    ScaleOpt, StdOpt, TrustOpt, WeightsKeyOpt,
)
from .progress import ProgressFn

if TYPE_CHECKING:
    from onnxplain.engine.data import Dataset
    from onnxplain.engine.model import Model

log = logging.getLogger(__name__)

ONNX_SUFFIXES = (".onnx",)

# (parameter name, Annotated type, default): the flags `@model_options` adds to a command.
_MODEL_FLAGS: tuple[tuple[str, Any, Any], ...] = (
    ("device", DeviceOpt, "auto"),
    ("labels", LabelsOpt, None),
    ("scale", ScaleOpt, None),
    ("mean", MeanOpt, None),
    ("std", StdOpt, None),
    ("layout", LayoutOpt, None),
    ("input_shape", InputShapeOpt, None),
    ("trust", TrustOpt, False),
    ("arch", ArchOpt, None),
    ("arch_args", ArchArgsOpt, None),
    ("weights_key", WeightsKeyOpt, None),
    ("batch_size", BatchSizeOpt, None),
)


@dataclass(frozen=True)
class ModelOptions:
    device: str = "auto"
    labels: str | None = None
    scale: float | None = None
    mean: str | None = None
    std: str | None = None
    layout: str | None = None
    input_shape: str | None = None
    trust: bool = False
    arch: str | None = None
    arch_args: str | None = None
    weights_key: str | None = None
    batch_size: int | None = None

    def export_kwargs(self) -> dict[str, Any]:
        """The checked, normalised flags as `export`/`ensure_onnx` keywords."""
        from onnxplain.exporters.options import ExportOptions

        opts = ExportOptions.build(
            arch=self.arch, arch_args=self.arch_args, input_shape=self.input_shape, weights_key=self.weights_key,
            trust=self.trust, layout=self.layout, labels=self.labels, scale=self.scale, mean=self.mean, std=self.std,
        )
        return {"arch": opts.arch, "arch_args": opts.arch_args, "input_shape": opts.input_shape,
                "weights_key": opts.weights_key, "trust": opts.trust, "layout": opts.layout, "labels": opts.labels,
                "scale": opts.scale, "mean": opts.mean, "std": opts.std}


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: add the model-loading flags to a Typer command; it receives `model_opts`."""
    sig = inspect.signature(fn, eval_str=True)
    if "model_opts" not in sig.parameters:
        raise TypeError(f"{fn.__name__} must take a `model_opts` parameter to use @model_options")
    names = [name for name, _, _ in _MODEL_FLAGS]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in names}
        if values["layout"] is not None:
            values["layout"] = values["layout"].value
        return fn(*args, model_opts=ModelOptions(**values), **kwargs)

    own = [p for p in sig.parameters.values() if p.name != "model_opts"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
             for name, annotation, default in _MODEL_FLAGS]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
              else p for p in own]
    wrapper.__signature__ = sig.replace(parameters=params + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params + added}
    del wrapper.__wrapped__  # Typer must see the new signature, not the wrapped function's
    return wrapper


def resolve_device(choice: str) -> str:
    """`auto` -> cuda when onnxruntime has the CUDA provider and torch sees a GPU, else cpu."""
    if choice != "auto":
        return choice
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_model_path(path: Path) -> Path:
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if path.is_dir():
        raise BadInputError(f"{path} is a folder; give a model file (.onnx, .h5, .keras, .pt, .pth)")
    return path


def onnx_file(path: Path, kwargs: dict[str, Any], progress: ProgressFn) -> Path:
    """The ONNX file for `path`: itself, or the cached export of a Keras/PyTorch file."""
    check_model_path(path)
    if path.suffix.lower() in ONNX_SUFFIXES:
        return path
    from onnxplain.exporters import ensure_onnx

    progress(f"converting {path.name} to ONNX", None)
    return Path(ensure_onnx(path, **kwargs))


def open_model(path: Path, opts: ModelOptions, progress: ProgressFn, *, data: Path | None = None) -> "Model":
    """Export if needed, resolve the device, and build the Model with the flags' overrides. `data` (the
    command's --data) tells a PyTorch file that does not record its input size what it will be fed."""
    from onnxplain.engine.model import Model

    kwargs = opts.export_kwargs()  # checks the flags before any work
    onnx_path = onnx_file(path, {**kwargs, "data_shape": _data_hint(path, data, kwargs)}, progress)
    device = resolve_device(opts.device)
    progress(f"loading {path.name} on {device}", None)
    log.debug("loading %s (from %s) on %s", onnx_path, path, device)
    return Model(onnx_path, device,  # type: ignore[arg-type]
                 layout=kwargs["layout"], input_shape=kwargs["input_shape"], scale=kwargs["scale"],
                 mean=kwargs["mean"], std=kwargs["std"], labels=kwargs["labels"])


def _data_hint(model: Path, data: Path | None, kwargs: dict[str, Any]) -> tuple[int, int, int] | None:
    """(channels, height, width) of --data, read only when a PyTorch file will need it."""
    if data is None or kwargs.get("input_shape") is not None or model.suffix.lower() in ONNX_SUFFIXES:
        return None
    from onnxplain.engine.data import load_dataset
    from onnxplain.exporters.sniff import TORCH_FORMATS, sniff_format

    if sniff_format(model) not in TORCH_FORMATS:
        return None
    return load_dataset(data, limit=32).input_hint


def open_dataset(model: "Model", path: Path, progress: ProgressFn, *, limit: int | None = None) -> "Dataset":
    """A dataset for `model`: images at the model's input size, labels in the model's class order.
    A model without labels takes the dataset's class names when their count matches."""
    from onnxplain.engine.data import load_dataset

    progress(f"loading {path.name}", None)
    ds = load_dataset(path, limit=limit, size=(model.spec.height, model.spec.width))
    if model.spec.labels and ds.class_names and ds.labels is not None:
        return ds.relabel(model.spec.labels)
    if not model.spec.labels and ds.class_names and len(ds.class_names) == model.n_classes:
        model.spec = model.spec.with_labels(ds.class_names)
    return ds
