"""Model.predict through onnxruntime IO binding (the cuda path, selectable on the CPU) equals the plain path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from onnxplain.engine import BadInputError, Model
from tests.conftest import make_tiny_cnn, zoo_path


@pytest.mark.parametrize("channels, layout", [(1, "NCHW"), (3, "NHWC")])
@pytest.mark.parametrize("n, batch_size", [(1, 8), (37, 8), (64, 64), (5, 256)])
def test_binding_equals_plain(channels: int, layout: str, n: int, batch_size: int, tiny_onnx) -> None:
    model = Model(tiny_onnx(channels=channels, layout=layout))
    x = np.random.default_rng(n).random((n, *model.spec.shape), dtype=np.float32)
    plain = model.predict(x, batch_size)
    bound = model.predict(x, batch_size, io_binding=True)
    assert bound.dtype == np.float32 and bound.shape == (n, model.n_classes)
    assert bound.tobytes() == plain.tobytes()
    from_tensor = model.predict_tensor(torch.from_numpy(x), batch_size)
    assert from_tensor.tobytes() == plain.tobytes()


@pytest.mark.slow
def test_binding_on_o01() -> None:
    model = Model(zoo_path("o01"))
    x = np.random.default_rng(0).random((300, *model.spec.shape), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x, 128, io_binding=True), model.predict(x, 128))


def test_binding_takes_non_contiguous_and_other_dtypes(tiny_onnx) -> None:
    model = Model(tiny_onnx())
    x = torch.rand(10, 1, 16, 32)[..., ::2]  # a strided view
    ref = model.predict(np.ascontiguousarray(x.numpy()))
    np.testing.assert_array_equal(model.predict_tensor(x, 4), ref)
    np.testing.assert_allclose(model.predict_tensor(x.double(), 4), ref, atol=1e-6)


def test_binding_runs_fixed_batch_models_one_by_one(tmp_path) -> None:
    module = make_tiny_cnn(channels=1, classes=3, seed=1)
    path = tmp_path / "fixed1.onnx"
    torch.onnx.export(module, (torch.rand(1, 1, 16, 16),), str(path), dynamo=False, input_names=["input"],
                      output_names=["output"], opset_version=17)
    model = Model(path)
    assert not model.spec.dynamic_batch
    x = np.random.default_rng(1).random((6, 1, 16, 16), dtype=np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, io_binding=True), ref, atol=1e-5)
    np.testing.assert_array_equal(model.predict(x, io_binding=True), model.predict(x))


def test_binding_errors_and_empty_input(tiny_onnx) -> None:
    model = Model(tiny_onnx())
    assert model.predict(np.zeros((0, 1, 16, 16), np.float32), io_binding=True).shape == (0, model.n_classes)
    with pytest.raises(BadInputError, match="expects"):
        model.predict_tensor(torch.zeros(2, 3, 16, 16))
    with pytest.raises(BadInputError, match="expects"):
        model.predict(np.zeros((2, 16, 16), np.float32), io_binding=True)
