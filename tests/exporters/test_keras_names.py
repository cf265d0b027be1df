"""Token renaming: ONNX node names map back to the exact Keras layer, even where TF scopes are ambiguous."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from onnxplain.exporters.keras_names import rename_layers, restore_names


def test_rename_and_restore_layer_objects() -> None:
    layers = [SimpleNamespace(name="conv2d"), SimpleNamespace(name="conv2d_1")]
    for layer in layers:
        layer._name = layer.name
    renamed = rename_layers(layers, keras3=False)
    assert [layer._name for layer in layers] == ["opxl00000x", "opxl00001x"]
    assert renamed.names == {"opxl00000x": "conv2d", "opxl00001x": "conv2d_1"}
    renamed.restore()
    assert [layer._name for layer in layers] == ["conv2d", "conv2d_1"]


def graph_with_tokens():
    """inner `conv2d` traced as opxl00001x_1, inner `conv2d_1` as opxl00002x_1, plus a fused `Conv__9`."""
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "model/opxl00003x_1/kernel:0")
    nodes = [
        helper.make_node("Conv", ["input", "model/opxl00003x_1/kernel:0"], ["Conv__9:0"], name="Conv__9"),
        helper.make_node("Relu", ["Conv__9:0"], ["model/opxl00000x_1/opxl00001x_1/Relu:0"],
                         name="model/opxl00000x_1/opxl00001x_1/Relu"),
        helper.make_node("Relu", ["model/opxl00000x_1/opxl00001x_1/Relu:0"], ["out"],
                         name="model/opxl00000x_1/opxl00002x_1/Relu"),
        helper.make_node("Identity", ["out"], ["out2"], name="Identity__4"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("out2", TensorProto.FLOAT, [1, 2, 2, 2])], [w])
    return helper.make_model(graph)


def test_restore_names_maps_nodes_to_innermost_layers() -> None:
    names = {"opxl00000x": "inner", "opxl00001x": "conv2d", "opxl00002x": "conv2d_1", "opxl00003x": "stem"}
    proto = graph_with_tokens()
    layer_names = restore_names(proto, names)
    assert layer_names == {
        "Conv__9": "stem",  # from its weight's scope
        "model/inner_1/conv2d_1/Relu": "conv2d",  # the scope says conv2d_1, the layer is conv2d
        "model/inner_1/conv2d_1_1/Relu": "conv2d_1",
    }
    text = str(proto)
    assert "opxl" not in text  # no token left anywhere: nodes, values, initializers
    assert proto.graph.initializer[0].name == "model/stem_1/kernel:0"
    assert proto.graph.node[0].input[1] == "model/stem_1/kernel:0"
    assert proto.graph.node[2].input[0] == proto.graph.node[1].output[0]  # edges still connect
