"""Forward-only methods' onnxruntime batch size: measured once per model within a time budget, cached,
overridden by an explicit batch_size, and without effect on the maps beyond float rounding."""
from __future__ import annotations

import numpy as np
import pytest

from onnxplain.engine import Model, explain
from onnxplain.engine import batch_tuning
from onnxplain.engine.batch_tuning import CANDIDATES, sweep
from tests.engine.gradient_data import TINY, tiny_inputs


class FakeRuns:
    """A model whose batch of b rows costs `cost(b)` seconds on a fake clock."""

    def __init__(self, cost):
        self.now, self.cost, self.sizes = 0.0, cost, []

    def clock(self) -> float:
        return self.now

    def run(self, batch: np.ndarray) -> None:
        self.sizes.append(len(batch))
        self.now += self.cost(len(batch))


def test_sweep_finds_the_fastest_size_per_image():
    # 1 ms per row plus 20 ms per call, and rows beyond 64 cost twice as much (caches overflow): best at 64.
    fake = FakeRuns(lambda b: 0.02 + 0.001 * b * (1 if b <= 64 else 2))
    result = sweep(fake.run, np.zeros((1024, 1)), budget_s=100.0, clock=fake.clock)
    assert result.best == 64
    assert set(result.per_image_s) == set(CANDIDATES)  # the budget allowed every size
    assert fake.sizes.count(64) == 1 + batch_tuning.TIMED_RUNS  # an untimed run, then the timed ones
    assert result.per_image_s[64] == pytest.approx(0.02 / 64 + 0.001)


def test_sweep_stays_within_its_budget_on_a_slow_model():
    fake = FakeRuns(lambda b: 0.01 * b)  # 10 ms per row: every size is as fast per row
    result = sweep(fake.run, np.zeros((1024, 1)), budget_s=1.0, clock=fake.clock)
    assert result.seconds <= 1.0
    assert max(fake.sizes) < max(CANDIDATES)
    assert result.best == max(result.per_image_s)  # equally fast per row: the largest size tried


def test_forward_batch_size_is_measured_once_and_cached(tiny_onnx, monkeypatch):
    path = tiny_onnx(**TINY["gray_nchw"])
    first = Model(path).forward_batch_size()
    assert first in CANDIDATES

    def no_sweep(*_args, **_kwargs):
        raise AssertionError("swept again although the batch size was cached")

    monkeypatch.setattr(batch_tuning, "sweep", no_sweep)
    assert Model(path).forward_batch_size() == first  # another Model, another process would read the same file


@pytest.mark.parametrize("method,params", [("occlusion", {"window": 4, "stride": 2}), ("lime", {"samples": 60})])
def test_measured_batch_size_is_used_unless_the_caller_gives_one(tiny_onnx, monkeypatch, method, params):
    model = Model(tiny_onnx(**TINY["rgb_nhwc"]))
    x = tiny_inputs(model, 2)
    seen: list[int] = []
    predict = model.predict
    monkeypatch.setattr(model, "predict", lambda batch, batch_size=256, **kw: seen.append(len(batch)) or predict(
        batch, batch_size, **kw))
    monkeypatch.setattr(model, "forward_batch_size", lambda: 7)
    measured = explain(model, x, method, targets=0, preprocessed=True, **params)
    assert max(seen) == 7
    seen.clear()
    given = explain(model, x, method, targets=0, preprocessed=True, batch_size=1024, **params)
    assert max(seen) > 7
    # Rows grouped differently into onnxruntime calls: the same maps up to float rounding.
    np.testing.assert_allclose(measured.maps, given.maps, rtol=0, atol=1e-5 * np.abs(given.maps).max())
