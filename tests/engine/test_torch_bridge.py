"""The ONNX -> torch bridge: each added converter against onnxruntime, each graph rewrite against
onnxruntime, graph outputs kept, tiny exports from both torch exporters (parity, gradients), capture-safety."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import onnx2torch
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from onnxplain.engine import ConversionError, Model
from onnxplain.engine.torch_bridge import REWRITES, converters, optimize_graph, prepare, to_onnx_for_torch, to_torch
from onnxplain.engine.torch_bridge.graph import NON_DECREASING, count_ops

from tests.conftest import ZOO, export_onnx, make_tiny_cnn, zoo_path

RNG = np.random.default_rng(0)


def f32(*shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    return RNG.uniform(low, high, size=shape).astype(np.float32)


def i64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


@dataclass
class Case:
    """A node `op(inputs) -> n_outputs` with attributes; `consts` become initializers, the rest graph inputs."""

    inputs: list[tuple[str, np.ndarray | None]]
    attrs: dict[str, Any] = field(default_factory=dict)
    consts: frozenset[str] = frozenset()
    n_outputs: int = 1


def build(op: str, opset: int, case: Case) -> onnx.ModelProto:
    names = [name for name, _ in case.inputs]
    outs = [f"y{i}" for i in range(case.n_outputs)]
    node = helper.make_node(op, names, outs, **case.attrs)
    graph_inputs, inits = [], []
    for name, value in case.inputs:
        if not name:
            continue
        if name in case.consts:
            inits.append(numpy_helper.from_array(value, name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
    graph = helper.make_graph([node], f"{op}_{opset}", graph_inputs,
                              [helper.make_empty_tensor_value_info(o) for o in outs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 11 if opset >= 23 else 10)
    return model


def feeds(case: Case) -> dict[str, np.ndarray]:
    return {name: value for name, value in case.inputs if name and name not in case.consts}


def _unary(**attrs: Any) -> Callable[[int], Case]:
    return lambda v: Case([("x", f32(2, 3, 5, 5))], attrs)


X4 = f32(2, 3, 6, 7)

CASES: dict[str, Callable[[int], Case]] = {
    "AveragePool": lambda v: Case([("x", X4)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                     count_include_pad=1, dilations=[1, 1])),
    "Cast": lambda v: Case([("x", X4 * 10)], dict(to=onnx.TensorProto.INT64)),
    "Constant": lambda v: Case([], dict(value=numpy_helper.from_array(f32(2, 3), "c"))),
    "ConstantOfShape": lambda v: Case([("shape", i64([2, 3]))], dict(
        value=numpy_helper.from_array(np.array([1.5], np.float32), "v"))),
    "Conv": lambda v: Case([("x", X4), ("w", f32(4, 3, 3, 3)), ("b", f32(4))],
                           dict(pads=[1, 1, 1, 1], strides=[2, 1]), consts=frozenset({"w", "b"})),
    "ConvTranspose": lambda v: Case([("x", f32(1, 2, 4, 4)), ("w", f32(2, 3, 3, 3)), ("b", f32(3))],
                                    dict(strides=[2, 2]), consts=frozenset({"w", "b"})),
    "Dropout": lambda v: Case([("x", X4)]),
    "Elu": _unary(alpha=0.7),
    "Equal": lambda v: Case([("a", i64(RNG.integers(0, 3, (4, 5)))), ("b", i64(RNG.integers(0, 3, (4, 5))))]),
    "Flatten": lambda v: Case([("x", X4)], dict(axis=2)),
    "Gelu": lambda v: Case([("x", X4)], dict(approximate="tanh")),
    "GlobalAveragePool": lambda v: Case([("x", X4)]),
    "GlobalMaxPool": lambda v: Case([("x", X4)]),
    "GreaterOrEqual": lambda v: Case([("a", np.round(X4)), ("b", np.round(X4[:, :, ::-1].copy()))]),
    "HardSigmoid": _unary(alpha=0.3, beta=0.4),
    "HardSwish": _unary(),
    "Identity": lambda v: Case([("x", X4)]),
    "InstanceNormalization": lambda v: Case([("x", X4), ("s", f32(3)), ("b", f32(3))], dict(epsilon=1e-3),
                                            consts=frozenset({"s", "b"})),
    "LessOrEqual": lambda v: Case([("a", np.round(X4)), ("b", np.round(X4[:, :, ::-1].copy()))]),
    "MaxPool": lambda v: Case([("x", X4)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])),
    "Mish": _unary(),
    "Pad": lambda v: {
        18: Case([("x", X4), ("pads", i64([1, 2, 2, 1])), ("", None), ("axes", i64([2, 3]))], dict(mode="reflect"),
                 consts=frozenset({"pads", "axes"})),
        19: Case([("x", X4), ("pads", i64([0, 0, 1, 2, 0, 0, 2, 1]))], dict(mode="wrap"), consts=frozenset({"pads"})),
        21: Case([("x", X4), ("pads", i64([0, 0, 2, 1, 0, 0, 1, 3]))], dict(mode="edge"), consts=frozenset({"pads"})),
    }.get(v, Case([("x", X4), ("pads", i64([0, 1, 1, -1, 0, 0, 2, 2])), ("c", np.array(0.5, np.float32))],
                  dict(mode="constant"), consts=frozenset({"pads", "c"}))),
    "ReduceL1": lambda v: Case([("x", X4), ("axes", i64([1, 3]))], dict(keepdims=0), consts=frozenset({"axes"})),
    "ReduceL2": lambda v: Case([("x", X4), ("axes", i64([2]))], consts=frozenset({"axes"})),
    "ReduceLogSum": lambda v: Case([("x", np.abs(X4) + 0.1), ("axes", i64([-1]))], consts=frozenset({"axes"})),
    "ReduceLogSumExp": lambda v: Case([("x", X4), ("axes", i64([1, 2]))], dict(keepdims=0),
                                      consts=frozenset({"axes"})),
    "ReduceMax": lambda v: Case([("x", X4), ("axes", i64([2, 3]))], consts=frozenset({"axes"})) if v == 18
    else Case([("x", X4)], dict(keepdims=0)),
    "ReduceMean": lambda v: Case([("x", X4), ("axes", i64([2, 3]))], dict(keepdims=1), consts=frozenset({"axes"})),
    "ReduceMin": lambda v: Case([("x", X4), ("axes", i64([0, 3]))], consts=frozenset({"axes"})) if v == 18
    else Case([("x", X4)]),
    "ReduceProd": lambda v: Case([("x", f32(2, 3, 4, low=0.5, high=1.5)), ("axes", i64([1, 2]))],
                                 consts=frozenset({"axes"})),
    "ReduceSumSquare": lambda v: Case([("x", X4), ("axes", i64([1]))], dict(keepdims=0), consts=frozenset({"axes"})),
    "Reshape": lambda v: Case([("x", X4), ("shape", i64([0, -1] if v == 19 else [3, -1, 7]))],
                              dict(allowzero=0 if v == 19 else 1), consts=frozenset({"shape"})),
    "Resize": lambda v: Case([("x", f32(1, 2, 5, 6)), ("", None), ("scales", np.array([1.5, 2.0], np.float32))],
                             dict(mode="linear", axes=[2, 3]), consts=frozenset({"scales"})) if v == 18
    else Case([("x", f32(1, 2, 5, 6)), ("", None), ("", None), ("sizes", i64([1, 2, 8, 4]))],
              dict(mode="cubic", coordinate_transformation_mode="half_pixel_symmetric"), consts=frozenset({"sizes"})),
    "Round": lambda v: Case([("x", X4 * 3)]),
    "Selu": _unary(),
    "Shape": lambda v: Case([("x", X4)], dict(start=1, end=-1)),
    "Softplus": _unary(),
    "Softsign": _unary(),
    "Split": lambda v: Case([("x", f32(2, 7, 3))], dict(axis=1, num_outputs=3), n_outputs=3),
    "Squeeze": lambda v: Case([("x", f32(2, 1, 4, 1)), ("axes", i64([1, -1]))], consts=frozenset({"axes"})),
    "Transpose": lambda v: Case([("x", X4)], dict(perm=[0, 2, 3, 1])),
    "Unsqueeze": lambda v: Case([("x", f32(2, 3)), ("axes", i64([0, -1]))], consts=frozenset({"axes"})),
}

#: Further cases for the converters whose semantics changed: (op, opset, case, id).
VARIANTS: list[tuple[str, int, Case, str]] = [
    ("Resize", 19, Case([("x", f32(1, 1, 4, 6)), ("", None), ("scales", np.array([1, 1, 2, 3], np.float32))],
                        dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
                        consts=frozenset({"scales"})), "nearest-asymmetric-floor-up"),
    ("Resize", 19, Case([("x", f32(1, 1, 8, 9)), ("", None), ("", None), ("sizes", i64([1, 1, 4, 5]))],
                        dict(mode="nearest", nearest_mode="round_prefer_ceil"), consts=frozenset({"sizes"})),
     "nearest-halfpixel-down"),
    ("Resize", 18, Case([("x", f32(2, 3, 5, 5)), ("", None), ("", None), ("sizes", i64([9, 7]))],
                        dict(mode="linear", coordinate_transformation_mode="align_corners", axes=[3, 2]),
                        consts=frozenset({"sizes"})), "linear-align-corners-axes"),
    ("Resize", 18, Case([("x", f32(1, 2, 12, 10)), ("", None), ("scales", np.array([1, 1, 0.5, 0.6], np.float32))],
                        dict(mode="linear", antialias=1), consts=frozenset({"scales"})), "linear-antialias-down"),
    ("Resize", 19, Case([("x", f32(1, 2, 5, 5)), ("", None), ("scales", np.array([1, 1, 2, 2], np.float32))],
                        dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1,
                             coordinate_transformation_mode="pytorch_half_pixel"),
                        consts=frozenset({"scales"})), "cubic-exclude-outside"),
    ("Pad", 18, Case([("x", X4), ("pads", i64([0, 0, 1, 1, 0, 0, 1, 1]))], dict(mode="constant")),
     "runtime-pads"),
    ("Split", 18, Case([("x", f32(2, 7, 3)), ("split", i64([2, 5]))], dict(axis=1), n_outputs=2,
                       consts=frozenset({"split"})), "split-sizes"),
    ("Split", 18, Case([("x", f32(2, 6, 3)), ("split", i64([1, 2, 3]))], dict(axis=-2), n_outputs=3),
     "runtime-split"),
    ("ReduceMean", 18, Case([("x", X4), ("axes", i64([], ))], dict(noop_with_empty_axes=1),
                            consts=frozenset({"axes"})), "noop-empty-axes"),
    ("ReduceMean", 18, Case([("x", X4), ("axes", i64([1, 3]))], dict(keepdims=0)), "runtime-axes"),
    ("ReduceSum", 18, Case([("x", X4), ("axes", i64([1, 3]))], dict(keepdims=0), consts=frozenset({"axes"})),
     "reducesum-13-at-opset-18"),
    ("Reshape", 21, Case([("x", X4), ("shape", i64([2, 0, -1]))], dict(allowzero=0)), "runtime-shape-copy-zero"),
    ("Gelu", 20, Case([("x", X4)], dict(approximate="none")), "gelu-exact"),
    ("AveragePool", 22, Case([("x", X4)], dict(kernel_shape=[2, 3], strides=[1, 2])), "no-pads"),
]


# ---------------------------------------------------------------------------------------------- helpers
def ort_run(model: onnx.ModelProto, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> list:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, inputs)


def as_tuple(out: Any) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def assert_close(got: torch.Tensor, want: np.ndarray, atol: float = 1e-5) -> None:
    got_np = got.detach().cpu().numpy()
    assert got_np.shape == want.shape
    if want.dtype == np.bool_ or np.issubdtype(want.dtype, np.integer):
        np.testing.assert_array_equal(got_np, want)
    else:
        np.testing.assert_allclose(got_np, want, rtol=1e-5, atol=atol)


def run_converter_case(op: str, opset: int, case: Case) -> None:
    """onnx2torch (with our converters registered) on a one-node model vs onnxruntime, output by output."""
    model = build(op, opset, case)
    want = ort_run(model, feeds(case))
    converters.register()
    module = onnx2torch.convert(model).eval()
    got = as_tuple(module(*[torch.from_numpy(v) for v in feeds(case).values()]))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w)


# ---------------------------------------------------------------------------------------------- converters
@pytest.mark.parametrize("op,opset", converters.REGISTERED, ids=[f"{o}-{v}" for o, v in converters.REGISTERED])
def test_each_registered_converter_matches_onnxruntime(op: str, opset: int) -> None:
    run_converter_case(op, opset, CASES[op](opset))


@pytest.mark.parametrize("op,opset,case", [v[:3] for v in VARIANTS], ids=[v[3] for v in VARIANTS])
def test_changed_semantics_match_onnxruntime(op: str, opset: int, case: Case) -> None:
    run_converter_case(op, opset, case)


def test_registration_is_idempotent_and_versions_are_new() -> None:
    converters.register()
    converters.register()  # a second call (or a second import under another name) must not raise
    for op, version in converters.REGISTERED:
        assert converters.supported(op, version)
        # every registered version is a real schema version of that op
        assert onnx.defs.get_schema(op, max_inclusive_version=version).since_version == version


GRADIENT_CASES = [  # small inputs: gradcheck perturbs every element
    ("Resize", 19, Case([("x", f32(1, 1, 6, 5)), ("", None), ("scales", np.array([1, 1, 0.5, 0.6], np.float32))],
                        dict(mode="linear", antialias=1), consts=frozenset({"scales"}))),
    ("Resize", 19, Case([("x", f32(1, 1, 3, 2)), ("", None), ("scales", np.array([1, 1, 2, 3], np.float32))],
                        dict(mode="nearest"), consts=frozenset({"scales"}))),
    ("Pad", 18, Case([("x", f32(1, 2, 4, 5)), ("pads", i64([1, 2, 2, 1])), ("", None), ("axes", i64([2, 3]))],
                     dict(mode="reflect"), consts=frozenset({"pads", "axes"}))),
    ("ReduceL2", 18, Case([("x", f32(1, 2, 3, 3)), ("axes", i64([2]))], consts=frozenset({"axes"}))),
    ("GlobalMaxPool", 22, Case([("x", f32(1, 2, 3, 3))])),
    ("Split", 18, Case([("x", f32(1, 5, 2))], dict(axis=1, num_outputs=2), n_outputs=2)),
]


@pytest.mark.parametrize("op,opset,case", GRADIENT_CASES,
                         ids=["resize-antialias", "resize-nearest", "pad-reflect-axes", "reduce-l2", "global-max-pool",
                              "split"])
def test_written_converters_have_correct_gradients(op: str, opset: int, case: Case) -> None:
    converters.register()
    module = onnx2torch.convert(build(op, opset, case)).eval().double()
    x = torch.from_numpy(next(iter(feeds(case).values())).astype(np.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: torch.cat([o.reshape(-1) for o in as_tuple(module(t))]), (x,))


def test_unsupported_op_gives_one_line_conversion_error() -> None:
    model = build("Hardmax", 13, Case([("x", f32(2, 5))]))
    with pytest.raises(ConversionError) as err:
        to_torch(model)
    assert "\n" not in str(err.value) and "Hardmax" in str(err.value)


def test_resize_unsupported_mode_says_so() -> None:
    case = Case([("x", f32(1, 1, 4, 4)), ("roi", np.array([0, 0, 0, 0, 1, 1, 1, 1], np.float32)),
                 ("scales", np.array([1, 1, 2, 2], np.float32))],
                dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"),
                consts=frozenset({"roi", "scales"}))
    with pytest.raises(ConversionError, match="tf_crop_and_resize"):
        to_torch(build("Resize", 19, case))


# ---------------------------------------------------------------------------------------------- prepare
def conv_bn_model(opset: int = 17, *, weights_as_constant_nodes: bool = False) -> onnx.ModelProto:
    """Conv -> BatchNormalization -> Relu -> GlobalAveragePool -> Flatten -> Gemm, as Keras via tf2onnx
    leaves it when it does not fuse (and, optionally, with the weights held by Constant nodes)."""
    rng = np.random.default_rng(1)
    tensors = {
        "w": rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "b": rng.normal(size=4).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, 4).astype(np.float32), "beta": rng.normal(size=4).astype(np.float32),
        "mean": rng.normal(size=4).astype(np.float32), "var": rng.uniform(0.5, 2, 4).astype(np.float32),
        "fc_w": rng.normal(size=(3, 4)).astype(np.float32), "fc_b": rng.normal(size=3).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1], name="model/conv2d/Conv2D"),
        helper.make_node("BatchNormalization", ["conv", "gamma", "beta", "mean", "var"], ["bn"], epsilon=1e-3,
                         name="model/batch_normalization/FusedBatchNormV3"),
        helper.make_node("Relu", ["bn"], ["relu"], name="model/activation/Relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap"], name="model/gap/Mean"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="model/flatten/Reshape"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1, name="model/dense/MatMul"),
    ]
    inits = []
    if weights_as_constant_nodes:
        nodes = [helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v, k)) for k, v in tensors.items()] + nodes
    else:
        inits = [numpy_helper.from_array(v, k) for k, v in tensors.items()]
    graph = helper.make_graph(nodes, "conv_bn", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 2, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 3])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


X_BN = np.random.default_rng(2).normal(size=(3, 2, 8, 8)).astype(np.float32)


def test_constant_node_weights_are_lifted_so_onnx2torch_converts_them() -> None:
    model = conv_bn_model(weights_as_constant_nodes=True)
    with pytest.raises(KeyError):
        onnx2torch.convert(model)  # the failure this step exists for
    prepared = prepare(model)
    assert "Constant" not in count_ops(prepared)
    for optimize in (False, True):
        got = to_torch(model, optimize=optimize)(torch.from_numpy(X_BN))
        assert_close(got, ort_run(model, {"x": X_BN})[0])


def test_prepare_folds_runtime_shape_computations(tmp_path: Path) -> None:
    """TorchScript writes `x.reshape(x.size(0), -1)` and F.pad as Shape/Gather/Concat/ConstantOfShape
    chains; after prepare, Reshape and Pad read constant initializers."""

    class ViewNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 3, 3)
            self.fc = torch.nn.Linear(3 * 7 * 7, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.nn.functional.pad(self.conv(x), (1, 0, 1, 0))
            return self.fc(x.reshape(x.size(0), -1))

    torch.manual_seed(0)
    path = export_onnx(ViewNet().eval(), tmp_path / "view.onnx", (2, 1, 8, 8), exporter="torchscript", opset=13)
    model = onnx.load(path)
    assert {"Shape", "ConstantOfShape"} <= set(count_ops(model))
    original = model.SerializeToString()
    prepared = prepare(model)
    assert model.SerializeToString() == original  # the caller's model is left as it was
    assert not {"Shape", "Gather", "Concat", "ConstantOfShape"} & set(count_ops(prepared))
    x = np.random.default_rng(3).normal(size=(5, 1, 8, 8)).astype(np.float32)
    assert np.abs(ort_run(prepared, {"input": x})[0] - ort_run(model, {"input": x})[0]).max() <= 1e-5
    assert_close(to_torch(model)(torch.from_numpy(x)), ort_run(model, {"input": x})[0])


# ---------------------------------------------------------------------------------------------- rewrites
def rewrite_models() -> dict[str, tuple[onnx.ModelProto, dict[str, np.ndarray]]]:
    """For each rewrite, a model where it applies, and an input."""
    o01 = onnx.load(zoo_path("o01"))
    x01 = np.random.default_rng(4).uniform(0, 1, (3, 48, 48, 1)).astype(np.float32)
    base = conv_bn_model()
    transposes = helper.make_model(helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
         helper.make_node("Relu", ["t"], ["r"]),
         helper.make_node("Transpose", ["r"], ["t2"], perm=[0, 3, 1, 2]),
         helper.make_node("Transpose", ["t2"], ["t3"], perm=[0, 2, 3, 1]),
         helper.make_node("Transpose", ["t3"], ["y"], perm=[0, 3, 1, 2])], "t",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 2, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    dropout = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Dropout", ["r"], ["y"])], "d",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 2, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    pad_conv = helper.make_model(helper.make_graph(
        [helper.make_node("Pad", ["x", "pads"], ["p"]), helper.make_node("Conv", ["p", "w"], ["y"])], "p",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 2, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(i64([0, 0, 1, 2, 0, 0, 1, 0]), "pads"),
                     numpy_helper.from_array(f32(3, 2, 3, 3), "w")]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return {
        "prepare": (dropout, {"x": X_BN}),
        "fold_batchnorm": (base, {"x": X_BN}),
        "cancel_transposes": (transposes, {"x": X_BN}),
        "transpose_into_dense": (o01, {"input": x01}),
        "matmul_add_to_gemm": (o01, {"input": x01}),
        "fuse_pad_into_conv": (pad_conv, {"x": X_BN}),
        "pool_before_activation": (o01, {"input": x01}),
    }


def pools_after_activations(model: onnx.ModelProto) -> int:
    """MaxPool nodes whose input comes straight from an activation."""
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    return sum(1 for node in model.graph.node
               if node.op_type == "MaxPool" and producers.get(node.input[0]) in NON_DECREASING)


# What each rewrite removes: an op type, or a count that must fall.
REMOVED_BY: dict[str, str | Callable[[onnx.ModelProto], int]] = {
    "fold_batchnorm": "BatchNormalization", "cancel_transposes": "Transpose", "transpose_into_dense": "Transpose",
    "matmul_add_to_gemm": "Add", "fuse_pad_into_conv": "Pad", "pool_before_activation": pools_after_activations}


def removed_count(name: str, model: onnx.ModelProto) -> int:
    what = REMOVED_BY[name]
    return what(model) if callable(what) else count_ops(model).get(what, 0)


@pytest.fixture(scope="module")
def rewrite_cases() -> dict[str, tuple[onnx.ModelProto, dict[str, np.ndarray]]]:
    return rewrite_models()


def test_every_rewrite_has_a_case(rewrite_cases: dict) -> None:
    assert set(rewrite_cases) - {"prepare"} == set(REWRITES) == set(REMOVED_BY)


def test_prepare_drops_inference_dropout(rewrite_cases: dict) -> None:
    model, inputs = rewrite_cases["prepare"]
    prepared = prepare(model)
    assert "Dropout" not in count_ops(prepared)
    assert np.abs(ort_run(prepared, inputs)[0] - ort_run(model, inputs)[0]).max() == 0


@pytest.mark.parametrize("name", list(REWRITES))
def test_each_rewrite_alone_keeps_onnxruntime_outputs(name: str, rewrite_cases: dict) -> None:
    model, inputs = rewrite_cases[name]
    prepared = prepare(model)
    rewritten = optimize_graph(prepared, [name])
    assert removed_count(name, rewritten) < removed_count(name, prepared), f"{name} did not apply"
    assert [o.name for o in rewritten.graph.output] == [o.name for o in model.graph.output]
    want = ort_run(model, inputs)
    for got, ref in zip(ort_run(rewritten, inputs), want):
        assert np.abs(got - ref).max() <= 1e-5
    module = to_torch(model)  # all rewrites together, through torch
    assert_close(as_tuple(module(*[torch.from_numpy(v) for v in inputs.values()]))[0], want[0], atol=2e-5)


def act_pool_model(act: str, **attrs: float) -> onnx.ModelProto:
    """Conv -> activation -> 2x2 MaxPool (stride 2, pads) -> Conv: the pool's input has ties where the
    activation is flat."""
    rng = np.random.default_rng(7)
    return helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node(act, ["c"], ["a"], **attrs),
         helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["p", "w2"], ["y"])], "ap",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 2, 9, 9])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "w1"),
                     numpy_helper.from_array(rng.normal(size=(3, 4, 3, 3)).astype(np.float32), "w2")]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("act,attrs", [("Relu", {}), ("LeakyRelu", {"alpha": 0.1}), ("Sigmoid", {}),
                                       ("HardSigmoid", {"alpha": 0.5})])
def test_pool_before_activation_keeps_values_and_input_gradients(act: str, attrs: dict) -> None:
    model = act_pool_model(act, **attrs)
    assert pools_after_activations(to_onnx_for_torch(model)) == 0
    x = np.random.default_rng(3).normal(size=(5, 2, 9, 9)).astype(np.float32)
    x[:, :, :4] = -3.0  # flat regions: ReLU and HardSigmoid give ties inside the pool windows
    assert_close(to_torch(model)(torch.from_numpy(x)), ort_run(model, {"x": x})[0], atol=2e-5)
    grads = []
    for module in (to_torch(model), to_torch(model, optimize=False)):
        xt = torch.from_numpy(x).requires_grad_(True)
        (g,) = torch.autograd.grad(module(xt).sum(), xt)
        grads.append(g)
    assert grads[1].abs().max() > 0
    assert_close(grads[0], grads[1].numpy(), atol=1e-5)


def test_pool_stays_after_a_decreasing_activation() -> None:
    """LeakyRelu with a negative slope is not monotone: max and the activation do not commute."""
    model = act_pool_model("LeakyRelu", alpha=-0.5)
    assert pools_after_activations(to_onnx_for_torch(model)) == 1


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """What Model.torch_module_with does: expose intermediate values as extra graph outputs."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for name in names:
        out.graph.output.append(helper.make_empty_tensor_value_info(name))
    return out


@pytest.mark.parametrize("name,exposed,kept", [
    ("fold_batchnorm", ["conv"], "BatchNormalization"),
    ("cancel_transposes", ["t2"], "Transpose"),
    ("transpose_into_dense", ["sequential/flatten/Reshape:0"], "Transpose"),
    ("prepare", ["r"], "Relu"),
    ("pool_before_activation", ["sequential/conv2d/Relu:0"], "Relu"),
])
def test_rewrites_never_remove_a_graph_output(name: str, exposed: list[str], kept: str, rewrite_cases: dict) -> None:
    """forward returns every graph output, by position, with onnxruntime's values."""
    model, inputs = rewrite_cases[name]
    extended = with_outputs(model, exposed)
    rewritten = to_onnx_for_torch(extended)
    names = [o.name for o in extended.graph.output]
    assert len(rewritten.graph.output) == len(names)
    assert kept in count_ops(rewritten)
    want = ort_run(extended, inputs)
    got = as_tuple(to_torch(extended)(*[torch.from_numpy(v) for v in inputs.values()]))
    assert len(got) == len(names)
    for g, w in zip(got, want):
        assert_close(g, w, atol=2e-5)


def test_outputs_come_back_one_per_graph_output_in_order() -> None:
    model = with_outputs(conv_bn_model(), ["relu", "conv", "relu"])
    got = to_torch(model)(torch.from_numpy(X_BN))
    want = ort_run(model, {"x": X_BN})
    assert len(got) == 4
    for g, w in zip(got, want):
        assert_close(g, w, atol=2e-5)


# ---------------------------------------------------------------------------------------------- real exports
TINY = [(exporter, opset, layout, channels)
        for exporter, opset in (("dynamo", 18), ("torchscript", 13), ("torchscript", 17))
        for layout in ("NCHW", "NHWC") for channels in (1, 3)]


@pytest.mark.parametrize("exporter,opset,layout,channels", TINY, ids=["-".join(map(str, t)) for t in TINY])
def test_tiny_exports_convert_with_parity_and_input_gradients(tiny_onnx: Callable[..., Path], exporter: str,
                                                              opset: int, layout: str, channels: int) -> None:
    path = tiny_onnx(channels=channels, layout=layout, exporter=exporter, opset=opset)
    model = onnx.load(path)
    assert model.opset_import[0].version >= opset
    shape = (5, 16, 16, channels) if layout == "NHWC" else (5, channels, 16, 16)
    x = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    want = ort_run(model, {"input": x})[0]
    for optimize in (False, True):
        module = to_torch(model, optimize=optimize)
        xt = torch.from_numpy(x).requires_grad_(True)
        y = module(xt)
        assert np.abs(y.detach().numpy() - want).max() <= 1e-5
        y[:, 1].sum().backward()
        grad = xt.grad
        assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0


def run_on_meta(module: torch.nn.Module, shape: tuple[int, ...]) -> None:
    """A meta tensor has no data: any `.item()`/`.tolist()` (a host sync, which breaks CUDA-graph capture) raises."""
    module.to("meta")(torch.empty(shape, device="meta"))


CAPTURE_MODELS = ["o01", "o02", "o03", "dynamo-NHWC", "torchscript-NCHW"]


@pytest.mark.parametrize("key", CAPTURE_MODELS)
def test_optimised_modules_never_read_tensors_back_to_the_host(key: str, tiny_onnx: Callable[..., Path]) -> None:
    if key.startswith("o"):
        path = zoo_path(key)
    else:
        exporter, layout = key.split("-")
        path = tiny_onnx(layout=layout, exporter=exporter, opset=18 if exporter == "dynamo" else 17)
    model = onnx.load(path)
    dims = tuple(d.dim_value or 2 for d in model.graph.input[0].type.tensor_type.shape.dim)
    run_on_meta(to_torch(model), dims)


def test_the_host_read_check_catches_plain_onnx2torch() -> None:
    model = onnx.load(zoo_path("o03"))  # onnx2torch's Reshape evaluates `torch.any(shape == 0)` every call
    with pytest.raises(Exception, match="meta"):
        run_on_meta(to_torch(model, optimize=False), (2, 1, 28, 28))


def test_optimised_module_folds_batchnorm_and_layout_transposes() -> None:
    """What makes it fast: no BatchNorm module after a conv, no Transpose before o01's dense layer,
    dense layers as nn.Linear, channels_last conv weights."""
    module = to_torch(conv_bn_model())
    kinds = {type(m).__name__ for m in module.modules()}
    assert "BatchNorm2d" not in kinds and "Linear" in kinds
    o01 = to_torch(onnx.load(zoo_path("o01")))
    assert "OnnxTranspose" not in {type(m).__name__ for m in o01.modules()}
    assert sum(isinstance(m, torch.nn.Linear) for m in o01.modules()) == 2
    conv = next(m for m in o01.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_tf2onnx_export_with_batchnorm_keeps_parity(exported_zoo: Callable[[str], Path]) -> None:
    """k01 (Keras 2.0.5 mini-Xception, separable convs, 8 unfused BatchNorms once exported)."""
    path = exported_zoo("k01")
    model = onnx.load(path)
    assert count_ops(model).get("BatchNormalization", 0) > 0
    optimised = to_onnx_for_torch(model)
    assert "BatchNormalization" not in count_ops(optimised)
    m = Model(path)
    assert m.torch_parity <= 1e-4
    x = m.spec.pixels_to_model(np.random.default_rng(6).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32))
    xt = torch.from_numpy(x).requires_grad_(True)
    m.torch_module(xt)[:, 0].sum().backward()
    assert bool(torch.isfinite(xt.grad).all()) and float(xt.grad.abs().sum()) > 0
