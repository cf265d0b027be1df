"""Passes on the torch.fx module onnx2torch returns.

`set_outputs` makes forward return exactly the ONNX graph outputs, in order (onnx2torch merges
outputs of one node and returns a multi-output node's whole tuple; `Model.torch_module_with`
relies on one entry per graph output).

`specialise` replaces onnx2torch modules that read constant tensors back to the host in every
forward (`OnnxReshape`'s `torch.any(shape == 0)`, dynamic Squeeze/Pad/Split/Slice/Resize `.tolist()`)
with modules holding those constants as Python values: no host synchronisation, CUDA-graph-capture-safe.
"""
from __future__ import annotations

import inspect
from operator import getitem
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from onnx2torch.node_converters.pad import OnnxPadDynamic
from onnx2torch.node_converters.reshape import OnnxReshape
from onnx2torch.node_converters.resize import OnnxResize, _onnx_mode_to_torch_mode
from onnx2torch.node_converters.slice import OnnxSlice, _do_slice, _get_slices
from onnx2torch.node_converters.split import OnnxSplit13
from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes
from torch import fx, nn

from .converters import Pad, Reshape, Split, torch_pads


class UnknownOutputError(KeyError):
    """A graph output that no converted module produces."""


# ---------------------------------------------------------------------------------------------- outputs
def set_outputs(gm: fx.GraphModule, names: Sequence[str]) -> None:
    """Make `gm` return the ONNX values `names` (a tensor for one name, a tuple otherwise)."""
    graph = gm.graph
    producers: dict[str, tuple[fx.Node, int, int]] = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            producers.setdefault(str(node.target), (node, 0, 1))
        if node.op != "call_module":
            continue
        mapping = getattr(gm.get_submodule(node.target), "onnx_mapping", None)
        if mapping is None:
            continue
        for i, value in enumerate(mapping.outputs):
            producers[value] = (node, i, len(mapping.outputs))
    old_output = next(n for n in graph.nodes if n.op == "output")
    results = []
    with graph.inserting_before(old_output):
        for name in names:
            if name not in producers:
                raise UnknownOutputError(name)
            node, index, count = producers[name]
            results.append(graph.call_function(getitem, (node, index)) if count > 1 else node)
    graph.erase_node(old_output)
    graph.output(results[0] if len(results) == 1 else tuple(results))
    graph.lint()
    gm.recompile()


# ---------------------------------------------------------------------------------------------- specialise
class Squeeze(nn.Module):
    def __init__(self, axes: list[int] | None) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.axes:
            return torch.squeeze(x)
        return torch.squeeze(x, dim=tuple(a % x.dim() for a in self.axes))


class Slice(nn.Module):
    def __init__(self, starts: Any, ends: Any, axes: Any, steps: Any) -> None:
        super().__init__()
        self.flip_dims, self.pos_slices, self.neg_slices = _get_slices(starts, ends, axes, steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _do_slice(x, self.flip_dims, self.pos_slices, self.neg_slices)


class Interpolate(nn.Module):
    """onnx2torch's Resize-11/13 (F.interpolate) with its scales/sizes fixed at conversion."""

    def __init__(self, mode: str, align_corners: bool | None, sizes: list[int] | None,
                 scales: list[float] | None) -> None:
        super().__init__()
        self.mode = mode
        self.align_corners = align_corners
        self.sizes = sizes
        self.scales = scales

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.sizes, scale_factor=self.scales, mode=self.mode,
                             align_corners=self.align_corners)


def _reshape(module: OnnxReshape, args: dict[str, Any]) -> nn.Module | None:
    return Reshape([int(s) for s in args["shape"].tolist()], allowzero=False)


def _squeeze(module: OnnxSqueezeDynamicAxes, args: dict[str, Any]) -> nn.Module | None:
    axes = args.get("axes")
    return Squeeze(None if axes is None else [int(a) for a in axes.tolist()])


def _pad(module: OnnxPadDynamic, args: dict[str, Any]) -> nn.Module | None:
    pads = [int(p) for p in args["pads"].tolist()]
    value = args.get("constant_value")
    fill = float(value.reshape(-1)[0]) if value is not None and value.numel() else 0.0
    return Pad(module.mode, torch_pads(pads, None, len(pads) // 2), fill)


def _split(module: OnnxSplit13, args: dict[str, Any]) -> nn.Module | None:
    split = args.get("split")
    if split is None:
        return None  # equal chunks: already static
    return Split(module.axis, [int(s) for s in split.tolist()], module.num_splits)


def _slice(module: OnnxSlice, args: dict[str, Any]) -> nn.Module | None:
    axes, steps = args.get("axes"), args.get("steps")
    # onnx2torch's slice helper iterates starts/ends and reads axes/steps as tensors: give it host ints.
    return Slice([int(v) for v in args["starts"].tolist()], [int(v) for v in args["ends"].tolist()], axes, steps)


def _resize(module: OnnxResize, args: dict[str, Any]) -> nn.Module | None:
    roi, scales, sizes = args.get("roi"), args.get("scales"), args.get("sizes")
    if not module.ignore_roi and roi is not None and roi.numel():
        return None
    if sizes is not None and sizes.numel():
        dims = [int(s) for s in sizes.tolist()]
        return Interpolate(_onnx_mode_to_torch_mode(module.onnx_mode, len(dims) - 2), module.align_corners,
                           dims[2:], None)
    if scales is not None and scales.numel():
        factors = [float(s) for s in scales.tolist()]
        if factors[:2] != [1.0, 1.0]:
            return None
        return Interpolate(_onnx_mode_to_torch_mode(module.onnx_mode, len(factors) - 2), module.align_corners,
                           None, factors[2:])
    return None


_SPECIALISERS: dict[type, Callable[[Any, dict[str, Any]], nn.Module | None]] = {
    OnnxReshape: _reshape,
    OnnxSqueezeDynamicAxes: _squeeze,
    OnnxPadDynamic: _pad,
    OnnxSplit13: _split,
    OnnxSlice: _slice,
    OnnxResize: _resize,
}


def specialise(gm: fx.GraphModule) -> int:
    """Swap modules whose tensor arguments are all constants for static equivalents; returns how many."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        build = _SPECIALISERS.get(type(module))
        if build is None or not node.args:
            continue
        named = _named_arguments(module, node)
        values = {name: _constant(gm, arg) for name, arg in named.items()}
        if any(v is _NOT_CONSTANT for v in values.values()):
            continue
        replacement = build(module, values)
        if replacement is None:
            continue
        if hasattr(module, "onnx_mapping"):
            replacement.onnx_mapping = module.onnx_mapping
        gm.add_submodule(node.target, replacement)
        node.args = (node.args[0],)
        node.kwargs = {}
        count += 1
    if count:
        gm.graph.eliminate_dead_code()
        gm.delete_all_unused_submodules()
        _drop_unused_initializers(gm)
        gm.graph.lint()
        gm.recompile()
    return count


_NOT_CONSTANT = object()


def _named_arguments(module: nn.Module, node: fx.Node) -> dict[str, Any]:
    """Arguments after the data input, by forward-parameter name (onnx2torch passes those after a
    skipped optional input as keyword arguments)."""
    params = list(inspect.signature(module.forward).parameters)
    named = dict(zip(params[1:], node.args[1:]))
    named.update(node.kwargs)
    return named


def _constant(gm: fx.GraphModule, arg: Any) -> Any:
    if arg is None:
        return None
    if isinstance(arg, fx.Node) and arg.op == "get_attr":
        owner, _, name = str(arg.target).rpartition(".")
        return getattr(gm.get_submodule(owner) if owner else gm, name).detach().cpu()
    return _NOT_CONSTANT


def _drop_unused_initializers(gm: fx.GraphModule) -> None:
    used = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    container = getattr(gm, "initializers", None)
    if container is None:
        return
    for name in list(container._buffers):
        if f"initializers.{name}" not in used:
            del container._buffers[name]
