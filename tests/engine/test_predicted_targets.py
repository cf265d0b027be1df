"""Gradient methods asked for the predicted class take it from their own torch forward pass: the same
targets onnxruntime predicts, the same maps as with those targets given, and no onnxruntime run."""
from __future__ import annotations

import numpy as np
import pytest

from onnxplain.engine import explain
from tests.engine.gradient_data import mnist_digits, o01, o03  # noqa: F401

GRADIENT_METHODS = {"saliency": {}, "smoothgrad": {"samples": 3}, "ig": {"steps": 4}, "gradcam": {}}


@pytest.mark.parametrize("method", sorted(GRADIENT_METHODS))
@pytest.mark.parametrize("name", ["o01", "o03"])  # NHWC ending in a softmax; NCHW logits
def test_predicted_targets_come_from_the_torch_pass(request, faces, monkeypatch, method, name):
    model = request.getfixturevalue(name)
    x = model.spec.to_model_input(mnist_digits(5) if name == "o03" else list(faces[:5]))
    expected = model.predict(x).argmax(axis=1)
    assert len(set(expected.tolist())) > 1  # several classes, so a wrong pick per image would show
    given = explain(model, x, method, targets=expected, preprocessed=True, batch_size=2, **GRADIENT_METHODS[method])

    def no_onnxruntime(*_args, **_kwargs):
        raise AssertionError("a gradient method ran onnxruntime to find the predicted class")

    monkeypatch.setattr(model, "predict", no_onnxruntime)
    for targets in (None, "pred"):
        got = explain(model, x, method, targets=targets, preprocessed=True, batch_size=2, **GRADIENT_METHODS[method])
        np.testing.assert_array_equal(got.targets, expected)
        np.testing.assert_array_equal(got.maps, given.maps)
        np.testing.assert_array_equal(got.scores, given.scores)
