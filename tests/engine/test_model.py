"""Model: loading (real zoo files and malformed ones), predict batching, the torch module and its parity,
intermediate values, layers with the source framework's names, devices."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from onnxplain.engine import BadInputError, DeviceError, Model, OnnxplainError
from tests.conftest import ZOO, make_tiny_cnn, zoo_path

# What MANIFEST.md says about the ONNX files of the zoo: layout and per-image shape.
ZOO_ONNX = {
    "o01": ("NHWC", (48, 48, 1), 7, "probabilities"),
    "o02": ("NHWC", (48, 48, 3), 7, "probabilities"),
    "o03": ("NCHW", (1, 28, 28), 10, "logits"),
}


def random_pixels(model: Model, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, model.spec.height, model.spec.width, model.spec.channels)).astype(np.float32)


@pytest.fixture(scope="module")
def zoo_models() -> dict[str, Model]:
    return {key: Model(zoo_path(key)) for key in ZOO_ONNX}


def test_every_zoo_onnx_file_is_covered() -> None:
    files = sorted(p.name for p in ZOO.glob("*.onnx"))
    assert files == sorted(zoo_path(k).name for k in ZOO_ONNX)


@pytest.mark.parametrize("key", list(ZOO_ONNX))
def test_zoo_onnx_loads_with_layout_shape_and_parity(key: str, zoo_models: dict[str, Model]) -> None:
    layout, shape, classes, kind = ZOO_ONNX[key]
    model = zoo_models[key]
    assert model.spec.layout == layout and model.spec.shape == shape and model.spec.dynamic_batch
    assert model.n_classes == classes and model.output_kind == kind
    assert model.torch_parity <= 1e-4
    # the parity figure is what it claims: onnxruntime vs the torch module on other inputs too
    x = model.spec.pixels_to_model(random_pixels(model, 5, seed=1))
    with torch.no_grad():
        got = model.torch_module(torch.from_numpy(x)).numpy()
    assert np.abs(got - model.predict(x)).max() <= 1e-4
    summary = model.summary()
    assert summary["torch_parity"] == model.torch_parity and summary["input"]["layout"] == layout


# ---------------------------------------------------------------------------------------------- malformed files
def _malformed(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.onnx"
    good = zoo_path("o03").read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 3])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "h5_renamed":
        shutil.copyfile(zoo_path("k01"), path)
    elif kind == "text":
        path.write_text("this is not a model\n")
    return path


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "h5_renamed", "text"])
def test_malformed_files_give_one_line_errors(kind: str, tmp_path: Path) -> None:
    with pytest.raises(OnnxplainError) as err:
        Model(_malformed(kind, tmp_path))
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path))


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no such file"):
        Model(tmp_path / "nope.onnx")
    with pytest.raises(BadInputError, match="folder"):
        Model(tmp_path)


def test_bad_device_name() -> None:
    with pytest.raises(BadInputError, match="auto"):
        Model(zoo_path("o03"), device="auto")  # type: ignore[arg-type]


def test_cuda_device_runs_or_says_why() -> None:
    """Without a GPU (this CI) the error says so; with one, onnxruntime and torch run there, or the
    error names the CUDA library onnxruntime could not load. Never a silent CPU fallback."""
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError) as err:
            Model(zoo_path("o03"), device="cuda")
        message = str(err.value)
        assert "\n" not in message and "fell back to CPU" in message and "no CUDA GPU" in message
        return
    try:
        model = Model(zoo_path("o03"), device="cuda")
    except DeviceError as err:
        assert "missing CUDA" in str(err) or "failed to initialise" in str(err)
        return
    cpu = Model(zoo_path("o03"))
    x = cpu.spec.pixels_to_model(random_pixels(cpu, 4))
    np.testing.assert_allclose(model.predict(x), cpu.predict(x), atol=1e-4)
    assert next(model.torch_module.parameters()).is_cuda and model.torch_parity <= 1e-4


# ---------------------------------------------------------------------------------------------- predict
def test_predict_batches_agree_and_validate(zoo_models: dict[str, Model]) -> None:
    model = zoo_models["o03"]
    x = model.spec.pixels_to_model(random_pixels(model, 11))
    full = model.predict(x, batch_size=64)
    np.testing.assert_array_equal(model.predict(x, batch_size=3), full)
    assert model.predict(x[:0]).shape == (0, 10)
    with pytest.raises(BadInputError, match="expects"):
        model.predict(x[:, :, :5])
    np.testing.assert_allclose(model.predict_images([np.full((56, 56), 200, np.uint8)]),
                               model.predict(model.spec.to_model_input(np.full((28, 28), 200, np.uint8))), atol=1e-6)


def test_fixed_batch_model_is_padded(tmp_path: Path) -> None:
    """A model exported with batch 1 fixed still predicts any number of images."""
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(make_tiny_cnn(), (torch.rand(1, 1, 16, 16),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"])
    model = Model(path)
    assert not model.spec.dynamic_batch
    x = model.spec.pixels_to_model(random_pixels(model, 3))
    ref = np.concatenate([model.session.run(None, {"input": x[i:i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(model.predict(x, batch_size=64), ref, atol=1e-6)


# ---------------------------------------------------------------------------------------------- torch
def test_torch_module_with_exposes_intermediate_values(zoo_models: dict[str, Model]) -> None:
    model = zoo_models["o01"]
    values = [layer.output for layer in model.layers()]
    fn = model.torch_module_with(values)
    x = model.spec.pixels_to_model(random_pixels(model, 3))
    xt = torch.from_numpy(x).requires_grad_(True)
    outs = fn(xt)
    assert len(outs) == len(values) + 1
    extended = onnx.ModelProto()
    extended.CopyFrom(model.onnx)
    for v in values:
        extended.graph.output.append(helper.make_empty_tensor_value_info(v))
    session = ort.InferenceSession(extended.SerializeToString(), providers=["CPUExecutionProvider"])
    refs = session.run([model.output_name, *values], {"input": x})
    for got, ref in zip(outs, refs):
        np.testing.assert_allclose(got.detach().numpy(), ref, atol=1e-4, rtol=1e-4)
    outs[1].sum().backward()  # the values are in the same autograd graph as the input
    assert float(xt.grad.abs().sum()) > 0
    assert model.torch_module_with(values) is fn
    with pytest.raises(BadInputError, match="no value"):
        model.torch_module_with(["not-a-value"])


def _resize_mismatch_model(path: Path) -> Path:
    """Resize-13 nearest with half_pixel/round_prefer_ceil: onnx2torch's F.interpolate rounds differently."""
    weight = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Resize", ["input", "", "scales"], ["r"], mode="nearest", nearest_mode="round_prefer_ceil",
                          coordinate_transformation_mode="half_pixel"),
         helper.make_node("Flatten", ["r"], ["f"]),
         helper.make_node("MatMul", ["f", "w"], ["y"])], "mismatch",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 3])],
        initializer=[numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32), "scales"),
                     numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def test_parity_above_threshold_warns(tmp_path: Path) -> None:
    model = Model(_resize_mismatch_model(tmp_path / "mismatch.onnx"))
    with pytest.warns(RuntimeWarning, match="differs from onnxruntime"):
        _ = model.torch_module
    assert model.torch_parity > 1e-4


# ---------------------------------------------------------------------------------------------- layers
@pytest.mark.parametrize("key,names", [("o01", ["conv2d", "conv2d_1", "dense", "dense_1"]),
                                       ("o03", ["conv1", "conv2", "fc1", "fc2"])])
def test_zoo_layer_names(key: str, names: list[str], zoo_models: dict[str, Model]) -> None:
    model = zoo_models[key]
    assert [layer.name for layer in model.layers()] == names
    assert [layer.name for layer in model.conv_layers()] == names[:2]
    assert model.find_layer(None).name == names[1]
    with pytest.raises(BadInputError, match=f"conv layers: {names[0]}, {names[1]}"):
        model.find_layer("nope")


@pytest.mark.parametrize("exporter,opset", [("torchscript", 17), ("dynamo", 18)])
def test_tiny_layer_names_and_parameters(tiny_onnx: Callable[..., Path], exporter: str, opset: int) -> None:
    model = Model(tiny_onnx(exporter=exporter, opset=opset))
    layers = model.layers()
    assert [(layer.name, layer.kind) for layer in layers] == [("features.0", "conv"), ("features.4", "conv"),
                                                              ("classifier", "dense")]
    torch_model = make_tiny_cnn()
    bn = torch_model.features[1]
    # Both exporters fold the eval-mode BatchNorm into the conv before it: its running statistics are
    # buffers (never counted) and its affine weight and bias disappear into the conv's weights and bias.
    folded = bn.weight.numel() + bn.bias.numel()
    assert sum(layer.params for layer in layers) == sum(p.numel() for p in torch_model.parameters()) - folded
    assert [layer.params for layer in layers] == [8 * 9 + 8, 16 * 8 * 9 + 16, 16 * 4 + 4]
    assert layers[0].output_shape == (8, 16, 16) and layers[1].output_shape == (16, 8, 8)
    assert layers[0].channels == 8 and layers[2].channels == 4
    summary = model.summary()
    assert summary["total_params"] == sum(layer.params for layer in layers)
    assert [entry["name"] for entry in summary["layers"]] == ["features.0", "features.4", "classifier"]
