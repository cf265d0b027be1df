"""onnx2torch converters for the op versions it lacks (opset 18-25), registered through its own `add_converter`.

onnx2torch 1.5 stops at about opset 16, while `torch.onnx.export` (dynamo) writes 18+ and tf2onnx may
write `GlobalMaxPool`. Where a newer version only added tensor types, the converter of the previous
version is reused (`_ALIASES`); where the semantics changed (axes moved from attribute to input,
`Split.num_outputs`, `Reshape.allowzero`, `Resize` modes, `Pad` wrap/axes) the converter is written here.
Every converter resolves constant inputs at conversion time, so forward never reads tensor values
back to the host (no `.item()`/`.tolist()`): the modules stay CUDA-graph-capture-safe.

Registration happens once per process (`register()`), guarded by a flag on onnx2torch's registry
module because onnx2torch raises on a duplicate and this module may be imported under two names.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from onnx2torch.node_converters import registry
from onnx2torch.node_converters.registry import add_converter, get_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node
from torch import nn

_FLAG = "_onnxplain_converters_registered"

# (op, new version) -> version whose onnx2torch converter is reused: these versions only added types
# (bfloat16, int4, float8, ...) or attributes that do not apply to float32 tensors (Cast.saturate).
_ALIASES: dict[tuple[str, int], int] = {
    **{("Conv", 22): 11, ("ConvTranspose", 22): 11, ("MaxPool", 22): 12, ("GlobalAveragePool", 22): 1,
       ("Dropout", 22): 13, ("InstanceNormalization", 22): 6, ("Elu", 22): 6, ("Selu", 22): 6,
       ("HardSigmoid", 22): 6, ("HardSwish", 22): 14, ("Softplus", 22): 1, ("Softsign", 22): 1,
       ("Round", 22): 11, ("Equal", 19): 13, ("GreaterOrEqual", 16): 12, ("LessOrEqual", 16): 12},
    **{(op, v): base for op, base in (("Flatten", 13), ("Transpose", 13), ("Unsqueeze", 13), ("Identity", 16),
                                      ("Shape", 15), ("Cast", 13), ("Constant", 13))
       for v in (21, 23, 24, 25)},
    **{("Identity", 19): 16, ("Shape", 19): 15, ("Cast", 19): 13, ("Constant", 19): 13},
    **{("ConstantOfShape", v): 9 for v in (20, 21, 23, 24, 25)},
    **{("Squeeze", v): 21 for v in (23, 24, 25)},
}

_REDUCE_OPS = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2",
               "ReduceLogSum", "ReduceLogSumExp")


# ---------------------------------------------------------------------------------------------- helpers
def const_value(name: str, graph: OnnxGraph) -> np.ndarray | None:
    """The value of an initializer or Constant-node output; None for a missing optional input or a runtime value."""
    if not name:
        return None
    if name in graph.initializers:
        return graph.initializers[name].to_numpy()
    try:
        node, _ = graph.value_as_node_output(name)
    except KeyError:
        return None
    if node.operation_type == "Constant":
        for attr in node.proto.attribute:
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
            if attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
                return np.asarray(helper.get_attribute_value(attr))
    return None


def _input(node: OnnxNode, index: int) -> str:
    return node.input_values[index] if len(node.input_values) > index else ""


def _static_shape(graph: OnnxGraph, name: str) -> list[int | None] | None:
    info = graph.value_info.get(name)
    if info is None or not info.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]


def _result(module: nn.Module, node: OnnxNode, inputs: Sequence[str] | None = None) -> OperationConverterResult:
    mapping = onnx_mapping_from_node(node) if inputs is None else OnnxMapping(inputs=tuple(inputs),
                                                                             outputs=node.output_values)
    return OperationConverterResult(torch_module=module, onnx_mapping=mapping)


# ---------------------------------------------------------------------------------------------- Pad 18+
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def torch_pads(onnx_pads: Sequence[int], axes: Sequence[int] | None, rank: int) -> list[int]:
    """ONNX pads [b_axis0.., e_axis0..] over `axes` -> F.pad's [b_last, e_last, b_prev, e_prev, ...]."""
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    half = len(onnx_pads) // 2
    begin = dict(zip(axes, onnx_pads[:half]))
    end = dict(zip(axes, onnx_pads[half:]))
    out: list[int] = []
    for axis in reversed(range(rank)):
        out += [int(begin.get(axis, 0)), int(end.get(axis, 0))]
    while len(out) > 2 and out[-1] == 0 and out[-2] == 0:
        out = out[:-2]  # unpadded leading axes: F.pad's non-constant modes refuse them
    return out


class Pad(nn.Module):
    """F.pad with the ONNX pads resolved at conversion time (or, if they are runtime values, in forward)."""

    def __init__(self, mode: str, pads: list[int] | None, value: float, axes: list[int] | None = None) -> None:
        super().__init__()
        self.mode = mode
        self.pads = pads
        self.value = value
        self.axes = axes

    def forward(self, x: torch.Tensor, pads: torch.Tensor | None = None) -> torch.Tensor:
        torch_pad = self.pads if self.pads is not None else torch_pads(pads.tolist(), self.axes, x.dim())
        if self.mode == "constant":
            return F.pad(x, torch_pad, mode="constant", value=self.value)
        return F.pad(x, torch_pad, mode=self.mode)


def _convert_pad(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    mode = node.attributes.get("mode", "constant")
    if mode not in _PAD_MODES:
        raise NotImplementedError(f"Pad mode {mode!r} is not supported")
    if _input(node, 2) and const_value(_input(node, 2), graph) is None:
        raise NotImplementedError("Pad with a runtime constant_value is not supported")
    value = const_value(_input(node, 2), graph)
    axes_value = const_value(_input(node, 3), graph)
    if _input(node, 3) and axes_value is None:
        raise NotImplementedError("Pad with runtime axes is not supported")
    axes = None if axes_value is None else [int(a) for a in axes_value.ravel()]
    pads = const_value(_input(node, 1), graph)
    shape = _static_shape(graph, node.input_values[0])
    fill = float(value.ravel()[0]) if value is not None and value.size else 0.0
    if pads is not None and shape is not None:
        module = Pad(_PAD_MODES[mode], torch_pads([int(p) for p in pads.ravel()], axes, len(shape)), fill)
        return _result(module, node, [node.input_values[0]])
    return _result(Pad(_PAD_MODES[mode], None, fill, axes), node, node.input_values[:2])


# ---------------------------------------------------------------------------------------------- Reduce 18+
def reduce(op: str, x: torch.Tensor, dims: list[int], keep: bool) -> torch.Tensor:
    if op == "ReduceMean":
        return x.mean(dims, keepdim=keep)
    if op == "ReduceMax":
        return x.amax(dims, keepdim=keep)
    if op == "ReduceMin":
        return x.amin(dims, keepdim=keep)
    if op == "ReduceSumSquare":
        return (x * x).sum(dims, keepdim=keep)
    if op == "ReduceL1":
        return x.abs().sum(dims, keepdim=keep)
    if op == "ReduceL2":
        return torch.sqrt((x * x).sum(dims, keepdim=keep))
    if op == "ReduceLogSum":
        return torch.log(x.sum(dims, keepdim=keep))
    if op == "ReduceLogSumExp":
        return torch.logsumexp(x, dims, keepdim=keep)
    if op == "ReduceProd":
        for d in sorted((d % x.dim() for d in dims), reverse=True):
            x = x.prod(d, keepdim=keep)
        return x
    raise NotImplementedError(op)


class Reduce(nn.Module):
    """ReduceX-18: axes as an (optional) input, `noop_with_empty_axes` attribute."""

    def __init__(self, op: str, axes: list[int] | None, keepdims: bool, noop_with_empty_axes: bool) -> None:
        super().__init__()
        self.op = op
        self.axes = axes
        self.keepdims = keepdims
        self.noop = noop_with_empty_axes

    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = self.axes if axes is None else [int(a) for a in axes.tolist()]
        if not dims:
            if self.noop:
                return x
            dims = list(range(x.dim()))
        return reduce(self.op, x, dims, self.keepdims)


def _convert_reduce(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    keep = bool(node.attributes.get("keepdims", 1))
    noop = bool(node.attributes.get("noop_with_empty_axes", 0))
    name = _input(node, 1)
    axes = const_value(name, graph)
    if name and axes is None:
        return _result(Reduce(node.operation_type, None, keep, noop), node)
    dims = [] if axes is None else [int(a) for a in axes.ravel()]
    return _result(Reduce(node.operation_type, dims, keep, noop), node, [node.input_values[0]])


# ---------------------------------------------------------------------------------------------- Split 18
class Split(nn.Module):
    def __init__(self, axis: int, sizes: list[int] | None, num_outputs: int) -> None:
        super().__init__()
        self.axis = axis
        self.sizes = sizes
        self.num_outputs = num_outputs

    def forward(self, x: torch.Tensor, split: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if split is not None:
            return torch.split(x, [int(s) for s in split.tolist()], dim=self.axis)
        if self.sizes is not None:
            return torch.split(x, self.sizes, dim=self.axis)
        # Split-18 num_outputs: equal chunks of ceil(dim / n), the last one smaller.
        return torch.split(x, math.ceil(x.shape[self.axis] / self.num_outputs), dim=self.axis)


def _convert_split(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    axis = int(node.attributes.get("axis", 0))
    name = _input(node, 1)
    sizes = const_value(name, graph)
    if name and sizes is None:
        return _result(Split(axis, None, len(node.output_values)), node)
    listed = None if sizes is None else [int(s) for s in sizes.ravel()]
    return _result(Split(axis, listed, len(node.output_values)), node, [node.input_values[0]])


# ---------------------------------------------------------------------------------------------- Reshape 19+
class Reshape(nn.Module):
    """Reshape with a shape known at conversion time; `allowzero=0` copies dims given as 0 from the input."""

    def __init__(self, shape: list[int], allowzero: bool) -> None:
        super().__init__()
        self.shape = shape
        self.copy_zero = (not allowzero) and 0 in shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.copy_zero:
            return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)])
        return x.reshape(self.shape)


class DynamicReshape(nn.Module):
    """Reshape whose target shape is a runtime tensor (reads it back to the host: not capture-safe)."""

    def __init__(self, allowzero: bool) -> None:
        super().__init__()
        self.allowzero = allowzero

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = [int(s) for s in shape.tolist()]
        if not self.allowzero:
            dims = [x.shape[i] if s == 0 else s for i, s in enumerate(dims)]
        return x.reshape(dims)


def _convert_reshape(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    allowzero = bool(node.attributes.get("allowzero", 0))
    shape = const_value(node.input_values[1], graph)
    if shape is None:
        return _result(DynamicReshape(allowzero), node)
    return _result(Reshape([int(s) for s in shape.ravel()], allowzero), node, [node.input_values[0]])


# ---------------------------------------------------------------------------------------------- Resize 18/19
def _resize_matrix(node: OnnxNode, n_in: int, scale: float | None, size: int | None) -> np.ndarray:
    """The (out, in) linear map that Resize applies along one axis, computed by ONNX's reference
    implementation on an identity matrix, so every mode (nearest/linear/cubic, each coordinate
    transform, antialias, cubic_coeff_a, exclude_outside) is exactly what the spec says."""
    from onnx.reference import ReferenceEvaluator

    keep = {"mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
            "antialias"}
    attrs = {a.name: helper.get_attribute_value(a) for a in node.proto.attribute if a.name in keep}
    inputs = ["x", "", "scales"] if scale is not None else ["x", "", "", "sizes"]
    one = helper.make_node("Resize", inputs, ["y"], **attrs)
    graph = helper.make_graph(
        [one], "axis", [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, [n_in, n_in])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, None)],
        initializer=[numpy_helper.from_array(np.array([scale, 1.0], np.float32), "scales")] if scale is not None
        else [numpy_helper.from_array(np.array([size, n_in], np.int64), "sizes")],
    )
    # Resize-19 semantics are a superset of Resize-18's (it adds half_pixel_symmetric).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    return np.asarray(ReferenceEvaluator(model).run(None, {"x": np.eye(n_in)})[0], dtype=np.float64)


class Resize(nn.Module):
    """Separable resampling with per-axis matrices fixed at conversion (index_select for nearest)."""

    def __init__(self, maps: dict[int, np.ndarray]) -> None:
        super().__init__()
        self.axes: list[int] = []
        self.kinds: list[str] = []
        for i, (axis, m) in enumerate(sorted(maps.items())):
            one_hot = bool(np.all((m == 0) | (m == 1)) and np.all(m.sum(axis=1) == 1))
            if one_hot:
                self.register_buffer(f"map{i}", torch.from_numpy(m.argmax(axis=1).astype(np.int64)))
            else:
                self.register_buffer(f"map{i}", torch.from_numpy(m.astype(np.float32)))
            self.axes.append(axis)
            self.kinds.append("index" if one_hot else "matrix")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (axis, kind) in enumerate(zip(self.axes, self.kinds)):
            m = getattr(self, f"map{i}")
            if kind == "index":
                x = x.index_select(axis, m)
            else:
                x = torch.movedim(torch.tensordot(x, m.to(x.dtype), dims=([axis], [1])), -1, axis)
        return x


def _convert_resize(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    attrs = node.attributes
    if attrs.get("coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize":
        raise NotImplementedError("Resize with coordinate_transformation_mode='tf_crop_and_resize' is not supported")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise NotImplementedError("Resize with keep_aspect_ratio_policy other than 'stretch' is not supported")
    shape = _static_shape(graph, node.input_values[0])
    if shape is None:
        raise NotImplementedError("Resize needs the input rank from shape inference")
    rank = len(shape)
    axes = [a + rank if a < 0 else a for a in attrs.get("axes", list(range(rank)))]
    scales, sizes = const_value(_input(node, 2), graph), const_value(_input(node, 3), graph)
    if (_input(node, 2) and scales is None) or (_input(node, 3) and sizes is None):
        raise NotImplementedError("Resize with runtime scales or sizes is not supported")
    use_scales = scales is not None and scales.size > 0
    values = (scales if use_scales else sizes)
    if values is None or values.size != len(axes):
        raise NotImplementedError("Resize needs constant scales or sizes for each resized axis")
    maps: dict[int, np.ndarray] = {}
    for axis, v in zip(axes, values.ravel()):
        n_in = shape[axis]
        if (use_scales and float(v) == 1.0) or (not use_scales and n_in is not None and int(v) == n_in):
            continue
        if n_in is None:
            raise NotImplementedError(f"Resize of axis {axis}, whose size is unknown at conversion, is not supported")
        maps[axis] = _resize_matrix(node, n_in, float(v) if use_scales else None,
                                    None if use_scales else int(v))
    return _result(Resize(maps), node, [node.input_values[0]])


# ---------------------------------------------------------------------------------------------- pools
def _convert_average_pool(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    dilations = node.attributes.get("dilations")
    if dilations is not None and any(d != 1 for d in dilations):
        raise NotImplementedError("AveragePool with dilations is not supported (torch's AvgPool has none)")
    return get_converter("AveragePool", 11)(node, graph)


class GlobalMaxPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


def _convert_global_max_pool(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    return _result(GlobalMaxPool(), node)


# ---------------------------------------------------------------------------------------------- activations
def _convert_mish(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    return _result(nn.Mish(), node)


def _convert_gelu(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    approximate = node.attributes.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise NotImplementedError(f"Gelu approximate={approximate!r} is not supported")
    return _result(nn.GELU(approximate=approximate), node)


# ---------------------------------------------------------------------------------------------- table
Converter = Callable[[OnnxNode, OnnxGraph], OperationConverterResult]

_WRITTEN: dict[tuple[str, int], Converter] = {
    **{("Pad", v): _convert_pad for v in (18, 19, 21, 23, 24, 25)},
    **{(op, 18): _convert_reduce for op in _REDUCE_OPS},
    ("ReduceMax", 20): _convert_reduce,
    ("ReduceMin", 20): _convert_reduce,
    ("Split", 18): _convert_split,
    **{("Reshape", v): _convert_reshape for v in (19, 21, 23, 24, 25)},
    ("Resize", 18): _convert_resize,
    ("Resize", 19): _convert_resize,
    ("AveragePool", 19): _convert_average_pool,
    ("AveragePool", 22): _convert_average_pool,
    ("GlobalMaxPool", 1): _convert_global_max_pool,
    ("GlobalMaxPool", 22): _convert_global_max_pool,
    ("Mish", 18): _convert_mish,
    ("Mish", 22): _convert_mish,
    ("Gelu", 20): _convert_gelu,
}

#: Every (op, version) this module registers; tests check each one against onnxruntime.
REGISTERED: tuple[tuple[str, int], ...] = tuple(sorted({*_ALIASES, *_WRITTEN}))


def register() -> None:
    """Add the converters to onnx2torch's registry, once per process."""
    if getattr(registry, _FLAG, False):
        return
    for (op, version), base in _ALIASES.items():
        add_converter(operation_type=op, version=version)(get_converter(op, base))
    for (op, version), fn in _WRITTEN.items():
        add_converter(operation_type=op, version=version)(fn)
    setattr(registry, _FLAG, True)


def describe(model: onnx.ModelProto) -> list[str]:
    """`op-version` of each distinct op in the default domain (for error messages)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    out = []
    for op in sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}):
        try:
            since = onnx.defs.get_schema(op, max_inclusive_version=opset).since_version
        except Exception:  # unknown op: shown without a version
            since = 0
        out.append(f"{op}-{since}" if since else op)
    return out


def supported(op: str, opset: int) -> bool:
    """Whether onnx2torch (with these additions) has a converter for `op` at `opset`."""
    try:
        get_converter(operation_type=op, version=opset)
    except NotImplementedError:
        return False
    return True


__all__ = ["REGISTERED", "const_value", "describe", "register", "supported", "torch_pads"]
