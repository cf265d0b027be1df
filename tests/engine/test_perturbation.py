"""The forward-only methods' shared loop: batches over images x perturbations, the batch cap, both array kinds."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from onnxplain.engine.perturbation import MAX_BATCH_BYTES, Arrays, batch_for, predict_perturbed
from tests.engine.forward_data import tiny_model


def test_batch_cap() -> None:
    def fake(shape: tuple[int, int, int]) -> SimpleNamespace:
        return SimpleNamespace(spec=SimpleNamespace(shape=shape))

    assert batch_for(fake((48, 48, 1)), 1024) == 1024
    assert batch_for(fake((3, 224, 224)), 1024) == MAX_BATCH_BYTES // (4 * 3 * 224 * 224) == 111
    assert batch_for(fake((3, 224, 224)), 16) == 16
    assert batch_for(fake((3, 8192, 8192)), 1024) == 1


@pytest.mark.parametrize("use_torch", [False, True])
@pytest.mark.parametrize("n_images, per_image, batch_size", [(1, 10, 4), (3, 7, 5), (4, 3, 100), (2, 5, 1)])
def test_batches_span_images_and_cover_each_perturbation_once(use_torch, n_images, per_image, batch_size, tiny_onnx) -> None:
    model = tiny_model(tiny_onnx, "gray_nchw")
    arrays = Arrays(model, torch=use_torch)
    rng = np.random.default_rng(0)
    inputs = rng.random((n_images, per_image, *model.spec.shape), dtype=np.float32)
    seen = []
    on_device = arrays.put(inputs)

    def build(i: int, a: int, b: int):
        assert 0 <= a < b <= per_image
        seen.extend((i, p) for p in range(a, b))
        return on_device[i, a:b]

    out = predict_perturbed(arrays, n_images, per_image, build, batch_size)
    assert sorted(seen) == [(i, p) for i in range(n_images) for p in range(per_image)]
    ref = model.predict(inputs.reshape(-1, *model.spec.shape)).reshape(n_images, per_image, -1)
    np.testing.assert_allclose(out, ref, atol=1e-6)

