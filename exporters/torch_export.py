"""PyTorch -> ONNX in the child: torch.onnx.export with a dynamic batch axis.

The TorchScript-based exporter (`dynamo=False`, opset 17) is tried first: its graphs convert back
to torch with onnx2torch as they are. When it fails, or its output differs from the module's, the
dynamo exporter (opset 18) is tried; the engine registers the converters it needs.
"""
from __future__ import annotations

import io
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from onnxplain.engine.errors import BadInputError, ConversionError
from onnxplain.engine.sidecar import read_sidecar

from .flat_input import flat_forward, image_shape_for, with_image_input
from .options import PARITY_THRESHOLD, ExportOptions
from .parity import check_one_row_per_image, compare, onnx_forward, ort_session
from .result import Exported
from .source_summary import torch_summary
from .torch_load import load_torch
from .util import first_line

log = logging.getLogger(__name__)

TORCHSCRIPT_OPSET = 17
DYNAMO_OPSET = 18
_REUSE_SUFFIX = re.compile(r"_\d+$")


def export_torch(src: Path, fmt: str, options: ExportOptions) -> Exported:
    module, source = load_torch(src, fmt, options)
    layout = options.layout or "NCHW"
    shape = _input_shape(src, module, options, layout)
    proto, converter = _to_onnx(module, shape, src.name)
    names = layer_names(proto, module) if converter["name"] == "torch.onnx (torchscript)" else {}
    forward = _forward(module)
    if len(shape) == 2:  # a DNN on flattened pixels: give the ONNX file an image input
        hwc = image_shape_for(int(shape[1]), None, src.name,
                              hint="onnxplain explains images: flatten inside the model and pass --input-shape 1,C,H,W")
        proto, layout = with_image_input(proto, hwc), "NHWC"
        converter = {**converter, "flat_input": int(shape[1])}
        forward = flat_forward(forward)
    return Exported(onnx=proto, forward=forward, layout=layout, source=source, converter=converter,
                    layer_names=names, summary=torch_summary(module, shape))


# ----------------------------------------------------------------------------- input shape
def _input_shape(src: Path, module: Any, options: ExportOptions, layout: str) -> tuple[int, ...]:
    """From --input-shape, else a sidecar beside the file (`model.pt.json`), else a clear error."""
    if options.input_shape is not None:
        return options.input_shape
    side = read_sidecar(src) or {}
    info = side.get("input") or {}
    if all(isinstance(info.get(k), int) for k in ("channels", "height", "width")):
        c, h, w = info["channels"], info["height"], info["width"]
        return (1, c, h, w) if layout == "NCHW" else (1, h, w, c)
    channels = _first_conv_channels(module)
    hint = f"1,{channels},H,W" if channels else "1,C,H,W"
    raise BadInputError(
        f"{src.name} does not record its input size; pass --input-shape {hint}"
        + (f" (its first convolution takes {channels} channel(s))" if channels else "")
    )


def _first_conv_channels(module: Any) -> int | None:
    for name, tensor in module.state_dict().items():
        if name.endswith("weight") and getattr(tensor, "ndim", 0) == 4:
            return int(tensor.shape[1])
    return None


# ----------------------------------------------------------------------------- export
def _to_onnx(module: Any, shape: tuple[int, ...], name: str) -> tuple[Any, dict[str, Any]]:
    import torch

    example = torch.rand(2, *shape[1:])
    x = np.random.default_rng(0).uniform(0, 1, size=(4, *shape[1:])).astype(np.float32)
    _check_runs(module, example, shape, name)
    failures: list[str] = []
    best: tuple[float, Any, dict[str, Any]] | None = None
    for exporter in (_export_torchscript, _export_dynamo):
        try:
            proto, converter = exporter(module, example)
            diff = compare(_forward(module), onnx_forward(ort_session(proto.SerializeToString())), x, "random inputs")
        except Exception as exc:  # each exporter fails in its own ways; the next one may work
            failures.append(f"{exporter.__name__[len('_export_'):]}: {first_line(exc, 160)}")
            log.info("%s: %s exporter failed: %s", name, exporter.__name__, exc)
            continue
        if best is None or diff < best[0]:
            best = (diff, proto, converter)
        if diff <= PARITY_THRESHOLD:
            break
        failures.append(f"{converter['name']}: parity {diff:.3g}")
    if best is None:
        raise ConversionError(f"torch.onnx cannot export {name}: {'; '.join(failures)}")
    return best[1], best[2]


def _check_runs(module: Any, example: Any, shape: tuple[int, ...], name: str) -> None:
    import torch

    try:
        with torch.no_grad():
            out = module(example)
    except Exception as exc:
        raise BadInputError(
            f"{name} does not run on input shape {list(shape)}: {first_line(exc, 200)}; check --input-shape"
        ) from exc
    if isinstance(out, torch.Tensor):  # checked here too, before a doomed export
        check_one_row_per_image(tuple(out.shape), int(example.shape[0]), f"{name} on {list(shape[1:])} images")


def _export_torchscript(module: Any, example: Any) -> tuple[Any, dict[str, Any]]:
    import onnx
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), buf, dynamo=False, opset_version=TORCHSCRIPT_OPSET,
            input_names=["input"], output_names=["output"], do_constant_folding=True,
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return onnx.load_from_string(buf.getvalue()), {"name": "torch.onnx (torchscript)", "opset": TORCHSCRIPT_OPSET}


def _export_dynamo(module: Any, example: Any) -> tuple[Any, dict[str, Any]]:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (example,), dynamo=True, opset_version=DYNAMO_OPSET, input_names=["input"],
            output_names=["output"], dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False,
        )
    return program.model_proto, {"name": "torch.onnx (dynamo)", "opset": DYNAMO_OPSET}


def _forward(module: Any) -> Any:
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            # Standard strides: numpy may keep odd strides on size-1 axes, which torch reads as channels_last
            # (then a student's `x.view(-1, n)` fails).
            tensor = torch.from_numpy(np.asarray(x, dtype=np.float32)).clone(memory_format=torch.contiguous_format)
            out = module(tensor)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if isinstance(out, dict):
            out = next(iter(out.values()))
        if not isinstance(out, torch.Tensor):
            raise ConversionError(f"the model returns a {type(out).__name__}, not a tensor of class scores")
        return out.detach().float().cpu().numpy()

    return run


# ----------------------------------------------------------------------------- layer names
def layer_names(proto: Any, module: Any) -> dict[str, str]:
    """{ONNX node: module path} for the TorchScript exporter's `/features/features.0/Conv` (nn.Module)
    and `/features/0/Conv` (ScriptModule) scopes; a reused module's `_1` suffix is dropped."""
    modules = {n for n, _ in module.named_modules() if n}
    out: dict[str, str] = {}
    for node in proto.graph.node:
        if not node.name.startswith("/"):
            continue
        scopes = [s for s in node.name.split("/")[1:-1] if s]
        if not scopes:
            continue
        found = _module_path(scopes, modules)
        if found:
            out[node.name] = found
    return out


def _module_path(scopes: list[str], modules: set[str]) -> str | None:
    for candidate in (".".join(scopes), scopes[-1]):
        if candidate in modules:
            return candidate
    stripped = [_REUSE_SUFFIX.sub("", s) if s not in modules else s for s in scopes]
    for candidate in (".".join(stripped), stripped[-1]):
        if candidate in modules:
            return candidate
    return None
