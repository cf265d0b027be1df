"""Layers as the student knows them: ONNX nodes grouped back into Keras / PyTorch layer names.

tf2onnx names nodes `model/conv2d_7/Conv2D`  -> `conv2d_7`;
torch.onnx (TorchScript) `/features/features.3/Conv` -> `features.3`;
torch.onnx (dynamo) keeps parameter names `features.3.weight` -> `features.3`.
A sidecar `layer_names` map, written by the exporter, wins over these rules.

`params` counts the constant tensors the layer's nodes read, as they are in the ONNX graph:
- a BatchNormalization that stays a node counts 4 x C (scale, bias, mean, variance), as Keras'
  summary does (trainable + non-trainable); torch's `sum(p.numel())` counts only its 2 x C affine
  parameters (mean and variance are buffers);
- a BatchNorm that the exporter folded into the conv before it (torch.onnx in eval mode, both
  exporters, and often tf2onnx) is no longer there: the conv's count is its own weights and bias, so
  a torch model's total is `sum(p.numel())` minus 2 x C per folded BatchNorm.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

if TYPE_CHECKING:
    from .input_spec import InputSpec

_DEFINING = {"Conv": "conv", "ConvTranspose": "conv", "Gemm": "dense", "MatMul": "dense",
             "BatchNormalization": "norm"}
# Ops that belong to the layer that precedes them in the same scope (bias, activation, fused BN).
_FOLLOWERS = {"Add", "Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Clip", "PRelu", "HardSigmoid",
              "Softplus", "Mul", "Identity", "BatchNormalization"}


@dataclass(frozen=True)
class LayerInfo:
    name: str             # the source framework's name (conv2d_7, features.3)
    kind: str             # conv | dense | norm
    op_type: str          # the defining ONNX op
    onnx_node: str        # name of the defining ONNX node
    output: str           # ONNX value holding the layer's output (after bias/activation in the same scope)
    output_shape: tuple[int, ...] | None  # without the batch axis, ONNX layout (C, H, W) for convs
    channels: int | None  # output channels / units
    params: int

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape) if self.output_shape else None
        return d


def onnx_layers(model: onnx.ModelProto, spec: "InputSpec", names: dict[str, str] | None = None) -> list[LayerInfo]:
    consts = _constant_sizes(model)
    shapes = _value_shapes(model, spec)
    depth = _model_scope_depth(model)
    groups: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}
    for node in model.graph.node:
        name = _source_name(node, names or {}, depth)
        kind = _DEFINING.get(node.op_type)
        if node.op_type == "MatMul" and not any(i in consts for i in node.input):
            kind = None  # activation x activation: not a dense layer
        group = by_name.get(name) if name else None
        if kind is not None:
            if group is not None and group is groups[-1] and (group["kind"] == kind or kind == "norm"):
                _absorb(group, node, consts)  # separable conv (depthwise + pointwise), fused BN, ...
                continue
            group = {"name": name or node.name or f"{node.op_type}_{len(groups)}", "kind": kind,
                     "op_type": node.op_type, "node": node.name, "output": node.output[0], "params": 0,
                     "channels": _out_channels(node, consts)}
            _absorb(group, node, consts)
            groups.append(group)
            if name:
                by_name[name] = group
        elif group is not None and group is groups[-1] and node.op_type in _FOLLOWERS:
            _absorb(group, node, consts)
        elif groups and node.op_type == "Add" and groups[-1]["kind"] == "dense" and _is_bias_add(node, groups[-1], consts):
            _absorb(groups[-1], node, consts)  # MatMul + Add(bias) from tf2onnx without scopes
    out = []
    for g in groups:
        shape = shapes.get(g["output"])
        out.append(LayerInfo(name=g["name"], kind=g["kind"], op_type=g["op_type"], onnx_node=g["node"],
                             output=g["output"], output_shape=tuple(shape[1:]) if shape else None,
                             channels=g["channels"], params=int(g["params"])))
    return _unique_names(out)


def _absorb(group: dict[str, Any], node: onnx.NodeProto, consts: dict[str, int]) -> None:
    group["output"] = node.output[0]
    group["params"] += sum(consts.get(i, 0) for i in node.input[1:])
    if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        ch = _out_channels(node, consts)
        if ch:
            group["channels"] = ch


def _is_bias_add(node: onnx.NodeProto, group: dict[str, Any], consts: dict[str, int]) -> bool:
    return group["output"] in node.input and any(i in consts for i in node.input)


def _model_scope_depth(model: onnx.ModelProto) -> int:
    """How many leading name components are model scopes (`model_1/`, `functional_8_1/sequential_1/`)."""
    scoped = [n.name.split("/") for n in model.graph.node if "/" in n.name and not n.name.startswith("/")]
    if not scoped:
        return 0
    depth = 0
    while all(len(p) > depth + 2 for p in scoped) and len({p[depth] for p in scoped}) == 1:
        depth += 1
    return depth


def _source_name(node: onnx.NodeProto, names: dict[str, str], depth: int) -> str | None:
    if node.name in names:
        return names[node.name]
    for inp in node.input[1:2]:
        if inp.endswith(".weight"):
            return inp[: -len(".weight")]
    parts = [p for p in node.name.split("/") if p]
    if len(parts) < 2:
        return None
    if node.name.startswith("/"):
        return parts[-2]  # torch TorchScript exporter: /features/features.3/Conv
    # tf2onnx: <model scopes>/<layer>/<op scopes>/<op>, e.g. model/conv2d_7/Conv2D
    return parts[depth] if len(parts) > depth + 1 else parts[-2]


def _out_channels(node: onnx.NodeProto, consts: dict[str, int]) -> int | None:
    dims = consts.get(("dims", node.input[1])) if len(node.input) > 1 else None  # type: ignore[call-overload]
    if not dims:
        return None
    if node.op_type == "Conv":
        return int(dims[0])
    if node.op_type == "ConvTranspose":
        return int(dims[1])
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return int(dims[0] if trans_b else dims[-1])
    if node.op_type == "MatMul":
        return int(dims[-1])
    return None


def _constant_sizes(model: onnx.ModelProto) -> dict[Any, Any]:
    """Element counts (and dims under ('dims', name)) of initializers and Constant-node tensors."""
    out: dict[Any, Any] = {}
    for t in model.graph.initializer:
        out[t.name] = int(np.prod(t.dims)) if len(t.dims) else 1
        out[("dims", t.name)] = tuple(t.dims)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    arr = numpy_helper.to_array(a.t)
                    out[node.output[0]] = int(arr.size)
                    out[("dims", node.output[0])] = tuple(arr.shape)
    # Scalars and shape vectors are not parameters.
    for key in [k for k, v in out.items() if isinstance(k, str) and v <= 1]:
        out[key] = 0
    return out


def _value_shapes(model: onnx.ModelProto, spec: "InputSpec") -> dict[str, tuple[int, ...]]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for value in m.graph.input:
        if value.name == spec.input_name:
            dims = value.type.tensor_type.shape.dim
            full = (1, *spec.shape)
            for d, size in zip(dims, full):
                d.ClearField("dim_param")
                d.dim_value = size
    try:
        inferred = shape_inference.infer_shapes(m, data_prop=True)
    except Exception:
        return {}
    shapes = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def _unique_names(layers: list[LayerInfo]) -> list[LayerInfo]:
    seen: dict[str, int] = {}
    out = []
    for layer in layers:
        n = seen.get(layer.name, 0)
        seen[layer.name] = n + 1
        if n:
            layer = LayerInfo(**{**asdict(layer), "name": f"{layer.name}_{n}"})
        out.append(layer)
    return out
