"""layers.py: ONNX nodes grouped back into the layers (and names) the student wrote."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxplain.engine.input_spec import InputSpec
from onnxplain.engine.layers import onnx_layers

RNG = np.random.default_rng(0)


def w(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def model_of(nodes: list, weights: dict[str, np.ndarray], dims: list, out: str = "y") -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


SPEC_NCHW = InputSpec(layout="NCHW", channels=2, height=8, width=8)


def keras_like() -> onnx.ModelProto:
    """tf2onnx naming: <model scope>/<layer>/<op>; a separable conv, a conv with its BN fused in the
    same scope, a standalone BN, a dense layer as MatMul + Add."""
    weights = {"dw": w(2, 1, 3, 3), "pw": w(4, 2, 1, 1), "pb": w(4), "c2w": w(4, 4, 3, 3), "c2b": w(4),
               "g": w(4), "b": w(4), "m": w(4), "v": np.abs(w(4)) + 0.5, "g2": w(4), "b2": w(4), "m2": w(4),
               "v2": np.abs(w(4)) + 0.5, "dw_": w(4, 3), "db": w(3), "shape": np.array([-1, 4], np.int64)}
    nodes = [
        helper.make_node("Conv", ["input", "dw"], ["sep_dw"], group=2, pads=[1, 1, 1, 1],
                         name="model_1/separable_conv2d_1/separable_conv2d/depthwise"),
        helper.make_node("Conv", ["sep_dw", "pw", "pb"], ["sep"], name="model_1/separable_conv2d_1/separable_conv2d"),
        helper.make_node("Relu", ["sep"], ["sep_relu"], name="model_1/separable_conv2d_1/Relu"),
        helper.make_node("Conv", ["sep_relu", "c2w", "c2b"], ["c2"], pads=[1, 1, 1, 1], name="model_1/conv2d_7/Conv2D"),
        helper.make_node("BatchNormalization", ["c2", "g", "b", "m", "v"], ["c2bn"],
                         name="model_1/conv2d_7/FusedBatchNormV3"),
        helper.make_node("BatchNormalization", ["c2bn", "g2", "b2", "m2", "v2"], ["bn"],
                         name="model_1/batch_normalization_3/FusedBatchNormV3"),
        helper.make_node("GlobalAveragePool", ["bn"], ["gap"], name="model_1/global_average_pooling2d/Mean"),
        helper.make_node("Reshape", ["gap", "shape"], ["flat"], name="model_1/flatten/Reshape"),
        helper.make_node("MatMul", ["flat", "dw_"], ["mm"], name="model_1/dense/MatMul"),
        helper.make_node("Add", ["mm", "db"], ["y"], name="model_1/dense/BiasAdd"),
    ]
    return model_of(nodes, weights, ["n", 2, 8, 8])


def test_keras_names_groups_and_parameters() -> None:
    layers = onnx_layers(keras_like(), SPEC_NCHW)
    assert [(la.name, la.kind) for la in layers] == [
        ("separable_conv2d_1", "conv"), ("conv2d_7", "conv"), ("batch_normalization_3", "norm"), ("dense", "dense")]
    sep, conv, bn, dense = layers
    assert sep.params == 2 * 9 + 4 * 2 + 4 and sep.output == "sep_relu" and sep.channels == 4
    assert conv.params == 4 * 4 * 9 + 4 + 4 * 4 and conv.output == "c2bn"  # BN of its own scope folded in
    assert bn.params == 16 and bn.output == "bn"
    assert dense.params == 4 * 3 + 3 and dense.output == "y" and dense.channels == 3
    assert sep.output_shape == (4, 8, 8) and dense.output_shape == (3,)
    assert sep.onnx_node == "model_1/separable_conv2d_1/separable_conv2d/depthwise"


def test_sidecar_names_win() -> None:
    names = {"model_1/conv2d_7/Conv2D": "block2_conv", "model_1/conv2d_7/FusedBatchNormV3": "block2_conv",
             "model_1/dense/MatMul": "logits", "model_1/dense/BiasAdd": "logits"}
    layers = onnx_layers(keras_like(), SPEC_NCHW, names)
    assert [la.name for la in layers] == ["separable_conv2d_1", "block2_conv", "batch_normalization_3", "logits"]


def test_torch_names_from_both_exporters() -> None:
    weights = {"features.0.weight": w(3, 2, 3, 3), "features.0.bias": w(3), "onnx::Conv_9": w(3, 3, 3, 3),
               "onnx::Conv_10": w(3), "fc.weight": w(5, 3), "fc.bias": w(5)}
    nodes = [
        helper.make_node("Conv", ["input", "features.0.weight", "features.0.bias"], ["a"], pads=[1, 1, 1, 1],
                         name="node_conv2d"),  # dynamo: parameter names
        helper.make_node("Relu", ["a"], ["r"], name="node_relu"),
        helper.make_node("Conv", ["r", "onnx::Conv_9", "onnx::Conv_10"], ["c"], pads=[1, 1, 1, 1],
                         name="/features/features.3/Conv"),  # TorchScript: scope names, folded BN weights
        helper.make_node("Relu", ["c"], ["cr"], name="/features/features.4/Relu"),
        helper.make_node("GlobalAveragePool", ["cr"], ["g"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["g"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], transB=1, name="/fc/Gemm"),
    ]
    layers = onnx_layers(model_of(nodes, weights, ["n", 2, 8, 8]), SPEC_NCHW)
    assert [(la.name, la.kind, la.params, la.channels) for la in layers] == [
        ("features.0", "conv", 57, 3), ("features.3", "conv", 84, 3), ("fc", "dense", 20, 5)]
    assert layers[0].output == "a"  # the ReLU lives in another module scope


def test_activation_matmul_is_not_dense_and_names_are_unique() -> None:
    weights = {"k": w(4, 4), "k2": w(4, 4)}
    nodes = [
        helper.make_node("MatMul", ["input", "k"], ["a"], name="m/shared/MatMul"),
        helper.make_node("MatMul", ["a", "a"], ["aa"], name="m/attention/MatMul"),  # activation x activation
        helper.make_node("MatMul", ["aa", "k2"], ["b"], name="m/dense/MatMul"),
        helper.make_node("MatMul", ["b", "k"], ["y"], name="m/shared_again/MatMul"),
    ]
    names = {"m/shared_again/MatMul": "shared"}  # a layer called twice (what a sidecar would say)
    layers = onnx_layers(model_of(nodes, weights, ["n", 4, 4, 4]), InputSpec("NCHW", 3, 4, 4), names)
    assert [(la.name, la.kind) for la in layers] == [("shared", "dense"), ("dense", "dense"), ("shared_1", "dense")]
    assert [la.params for la in layers] == [16, 16, 16]
