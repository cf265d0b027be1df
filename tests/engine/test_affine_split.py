"""The affine prefix split integrated gradients relies on: the pieces compose to the module, the prefix
is affine, and anything not provably affine (an activation first, a division by the input, two values
crossing the cut) gives no split."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from onnxplain.engine import Model, explain
from onnxplain.engine.torch_bridge import to_torch
from onnxplain.engine.torch_bridge.affine_split import split_affine_prefix
from tests.conftest import zoo_path
from tests.engine.gradient_data import TINY, tiny_inputs


def graph_model(nodes: list, **weights: np.ndarray) -> onnx.ModelProto:
    return helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 2, 6, 6])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


W = np.random.default_rng(0).normal(size=(3, 2, 3, 3)).astype(np.float32)
C = np.full((1, 2, 1, 1), 2.0, np.float32)


def assert_split_composes_and_is_affine(module: torch.nn.Module, shape: tuple[int, ...]) -> tuple[str, ...]:
    split = split_affine_prefix(module)
    assert split is not None
    rng = np.random.default_rng(1)
    x, y = (torch.from_numpy(rng.normal(size=shape).astype(np.float32)) for _ in range(2))
    assert torch.equal(split.suffix(split.prefix(x)), module(x))
    for a in (0.0, 0.3, 1.0):
        mixed = split.prefix(a * x + (1 - a) * y)
        torch.testing.assert_close(mixed, a * split.prefix(x) + (1 - a) * split.prefix(y), atol=1e-5, rtol=1e-5)
    return split.ops


def test_o01_prefix_is_its_layout_op_and_first_conv() -> None:
    module = to_torch(onnx.load(zoo_path("o01"))).eval()
    ops = assert_split_composes_and_is_affine(module, (3, 48, 48, 1))
    assert len(ops) == 2 and ops[-1].endswith("conv2d_bias_add")


@pytest.mark.parametrize("kind", sorted(TINY))
def test_tiny_models_split_after_their_first_conv(tiny_onnx, kind) -> None:
    model = Model(tiny_onnx(**TINY[kind]))
    assert_split_composes_and_is_affine(model.torch_module, (2, *model.spec.shape))


def test_normalisation_and_padding_join_the_prefix() -> None:
    model = graph_model([helper.make_node("Sub", ["x", "c"], ["s"]), helper.make_node("Div", ["s", "c"], ["d"]),
                         helper.make_node("Pad", ["d", "pads"], ["p"], mode="reflect"),
                         helper.make_node("Conv", ["p", "w"], ["v"]), helper.make_node("Relu", ["v"], ["y"])],
                        c=C, w=W, pads=np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
    ops = assert_split_composes_and_is_affine(to_torch(model).eval(), (2, 2, 6, 6))
    assert len(ops) == 4


@pytest.mark.parametrize("nodes", [
    [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Conv", ["r", "w"], ["y"])],
    [helper.make_node("Div", ["c", "x"], ["d"]), helper.make_node("Conv", ["d", "w"], ["y"])],
    [helper.make_node("Mul", ["x", "x"], ["m"]), helper.make_node("Conv", ["m", "w"], ["y"])],
], ids=["activation-first", "divided-by-input", "input-squared"])
def test_no_split_without_an_affine_first_op(nodes: list) -> None:
    assert split_affine_prefix(to_torch(graph_model(nodes, c=C, w=W)).eval()) is None


def test_no_split_when_two_values_cross_the_cut() -> None:
    model = graph_model([helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("Conv", ["x", "w"], ["b"]),
                         helper.make_node("Relu", ["a"], ["ra"]), helper.make_node("Sigmoid", ["b"], ["sb"]),
                         helper.make_node("Add", ["ra", "sb"], ["y"])], w=W)
    assert split_affine_prefix(to_torch(model).eval()) is None


@pytest.mark.parametrize("kind", sorted(TINY))
def test_ig_through_the_split_equals_ig_on_the_whole_module(tiny_onnx, kind) -> None:
    """Same attributions whether the path points are made before or after the affine prefix."""
    model = Model(tiny_onnx(**TINY[kind]))
    assert model.torch_affine_split() is not None
    x = tiny_inputs(model, 3)
    split = explain(model, x, "ig", preprocessed=True, steps=20, batch_size=7, baseline="noise")
    model.torch_affine_split = lambda target_output="logit": None  # type: ignore[method-assign]
    whole = explain(model, x, "ig", preprocessed=True, steps=20, batch_size=7, baseline="noise")
    scale = np.abs(whole.details.attributions).max()
    np.testing.assert_allclose(split.details.attributions, whole.details.attributions, rtol=0, atol=1e-5 * scale)
