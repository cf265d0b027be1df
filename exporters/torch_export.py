"""PyTorch -> ONNX in the child: torch.onnx.export with a dynamic batch axis.

The TorchScript-based exporter (`dynamo=False`, opset 17) is tried first: its graphs convert back
to torch with onnx2torch as they are. When it fails, or its output differs from the module's, the
dynamo exporter (opset 18) is tried; the engine registers the converters it needs.
"""
from __future__ import annotations

import io
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from onnxplain.engine.errors import BadInputError, ConversionError, first_line
from onnxplain.engine.sidecar import read_sidecar

from .flat_input import flat_forward, image_shape_for, with_image_input
from .options import PARITY_THRESHOLD, ExportOptions
from .parity import check_one_row_per_image, compare, onnx_forward, ort_session
from .result import Exported
from .source_summary import torch_summary
from .torch_load import load_torch

log = logging.getLogger(__name__)

TORCHSCRIPT_OPSET = 17
DYNAMO_OPSET = 18
_REUSE_SUFFIX = re.compile(r"_\d+$")


def export_torch(src: Path, fmt: str, options: ExportOptions) -> Exported:
    module, source = load_torch(src, fmt, options)
    layout = options.layout or "NCHW"
    shape = _input_shape(src, module, options, layout, source)
    proto, converter = _to_onnx(module, shape, src.name)
    names = layer_names(proto, module) if converter["name"] == "torch.onnx (torchscript)" else {}
    forward = _forward(module)
    if len(shape) == 2:  # a DNN on flattened pixels: give the ONNX file an image input
        hwc = image_shape_for(int(shape[1]), None, src.name,
                              hint="onnxplain explains images: flatten inside the model and pass input_shape='1,C,H,W'")
        proto, layout = with_image_input(proto, hwc), "NHWC"
        converter = {**converter, "flat_input": int(shape[1])}
        forward = flat_forward(forward)
    return Exported(onnx=proto, forward=forward, layout=layout, source=source, converter=converter,
                    layer_names=names, summary=torch_summary(module, shape))


# ----------------------------------------------------------------------------- input shape
PROBE_SIZES = (28, 32, 48, 64, 96, 128, 224, 256)
# A model that runs on every size (global pooling) and data of varied sizes: the ImageNet convention.
VARIED_DATA_SIZE = 224


def _input_shape(src: Path, module: Any, options: ExportOptions, layout: str,
                 source: dict[str, Any]) -> tuple[int, ...]:
    """From --input-shape, a sidecar beside the file (`model.pt.json`), the data it will be fed, or
    by running the module on the usual sizes; how it was found goes into the sidecar's `source`."""
    if options.input_shape is not None:
        return options.input_shape
    side = read_sidecar(src) or {}
    info = side.get("input") or {}
    if all(isinstance(info.get(k), int) for k in ("channels", "height", "width")):
        return _shape(layout, info["channels"], info["height"], info["width"])
    first = _first_weight(module)
    if first is not None and first.ndim == 2:  # a DNN on flattened pixels: its first Linear says how many
        source["input_inferred"] = f"{first.shape[1]} flattened values, from the first Linear layer"
        return (1, int(first.shape[1]))
    channels = int(first.shape[1]) if first is not None and first.ndim == 4 else None
    data = options.data_shape
    if data is not None and data[1] > 0 and channels in (None, data[0], 1, 3):
        c = channels or data[0]
        shape = _shape(layout, c, data[1], data[2])
        if _runs(module, shape):
            source["input_inferred"] = f"{c}x{data[1]}x{data[2]}, the size of the data"
            return shape
    tried = [c for c in (channels,) if c] or [1, 3]
    works = [(c, size) for c in tried for size in PROBE_SIZES if _runs(module, _shape(layout, c, size, size))]
    if len(works) == 1:
        c, size = works[0]
        source["input_inferred"] = (f"{c}x{size}x{size}, the only one of the usual sizes "
                                    f"({', '.join(map(str, PROBE_SIZES))}) the model runs on")
        return _shape(layout, c, size, size)
    if works and data is not None and data[1] == 0 and any(size == VARIED_DATA_SIZE for _, size in works):
        c = next(c for c, size in works if size == VARIED_DATA_SIZE)
        source["input_inferred"] = (f"{c}x{VARIED_DATA_SIZE}x{VARIED_DATA_SIZE}: the model runs on every usual size "
                                    "and the data's images vary in size, so the ImageNet convention")
        return _shape(layout, c, VARIED_DATA_SIZE, VARIED_DATA_SIZE)
    if not works:  # a homework size (120, 44, 150...): the run of sizes whose layers fit the first Linear
        found = _uncommon_size(module, layout, tried)
        if found is not None:
            c, size, run = found
            source["input_inferred"] = (f"{c}x{size}x{size}: none of the usual sizes fits; " + (
                f"of {run[0]}-{run[-1]}, which all fit, the one the pooling divides evenly" if len(run) > 1
                else "the one size the model runs on"))
            return _shape(layout, c, size, size)
    hint = f"1,{channels},H,W" if channels else "1,C,H,W"
    if works:
        sizes = ", ".join(f"{c}x{size}x{size}" for c, size in works)
        raise BadInputError(f"{src.name} does not record its input size and runs on several ({sizes}); "
                            f"pass input_shape='{hint}'", params=("input_shape",))
    raise BadInputError(
        f"{src.name} does not record its input size and runs on none of the usual sizes "
        f"({', '.join(map(str, PROBE_SIZES))}); pass input_shape='{hint}'"
        + (f" (its first convolution takes {channels} channel(s))" if channels else ""), params=("input_shape",))


UNCOMMON_SIZES = range(16, 321)
UNCOMMON_BUDGET_S = 30.0  # a large model that fails every size must not use up the export's time limit


def _uncommon_size(module: Any, layout: str, channels: list[int]) -> tuple[int, int, list[int]] | None:
    """(channels, size, the run of sizes that work) for a model that takes none of the usual sizes. Its
    flatten fixes the size up to pooling's rounding, so the sizes that work form one run (120-127 for three
    2x2 pools): the first run found, and in it the size divisible by the highest power of two."""
    deadline = time.monotonic() + UNCOMMON_BUDGET_S
    for c in channels:
        run: list[int] = []
        for size in UNCOMMON_SIZES:
            if time.monotonic() > deadline and not run:
                log.info("gave up probing sizes after %.0f s at %d px", UNCOMMON_BUDGET_S, size)
                return None
            if _runs(module, _shape(layout, c, size, size)):
                run.append(size)
            elif run:
                break
        if run:
            return c, max(run, key=lambda s: ((s & -s), -s)), run
    return None


def _shape(layout: str, c: int, h: int, w: int) -> tuple[int, ...]:
    return (1, c, h, w) if layout == "NCHW" else (1, h, w, c)


def _first_weight(module: Any) -> Any:
    """The first conv kernel (4-D) or Linear matrix (2-D) of the module: the input's channels or length."""
    for name, tensor in module.state_dict().items():
        if name.endswith("weight") and getattr(tensor, "ndim", 0) in (2, 4):
            return tensor
    return None


def _runs(module: Any, shape: tuple[int, ...]) -> bool:
    """Does the module take a batch of 2 such images and return one row per image?"""
    import torch

    try:
        with torch.no_grad():
            out = module(torch.zeros(2, *shape[1:]))
    except Exception:  # noqa: BLE001 - a size the model does not take
        return False
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    return isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == 2


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
            f"{name} does not run on input shape {list(shape)}: {first_line(exc, 200)}; check `input_shape`",
            params=("input_shape",)) from exc
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
        from onnxplain.engine.torch_ops import to_numpy

        return to_numpy(out)

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
