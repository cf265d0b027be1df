"""benchmarks.gradient_overhead on a tiny model: three interleaved sides per row, ratios as medians of
per-round ratios, a profile for a row that misses a goal."""
from __future__ import annotations

import numpy as np
import pytest

import benchmarks.gradient_overhead as overhead
from benchmarks.gradient_overhead import SIDES, measure, row_calls, table
from onnxplain.engine import Model
from tests.engine.gradient_data import TINY


@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_rows_time_three_sides_and_take_per_round_ratios(tiny_onnx, tmp_path, monkeypatch, method):
    model = Model(tiny_onnx(**TINY["rgb_nhwc"]))
    monkeypatch.setitem(overhead.GOALS, "overhead", 0.0)
    (row,) = measure(model, "tiny", [method], [2], rounds=3, budget=60.0, profiles=tmp_path)
    ours, on_ours, on_plain = (np.asarray(row["timings"][s]["samples_s"]) for s in SIDES)
    assert len(ours) == len(on_ours) == len(on_plain) == 3
    assert row["overhead"] == pytest.approx(np.median(ours / on_ours))
    assert row["vs_plain"] == pytest.approx(np.median(on_plain / ours))
    assert row["overhead_met"] is False  # the goal was set to 0: every row misses, so it is profiled
    text = (tmp_path / f"tiny-cpu-{method}-2-overhead.txt").read_text()
    assert "## ours" in text and "## captum on ours" in text
    assert f"| tiny | {method} | 2 |" in table([row], 2)


def test_the_three_calls_explain_the_same_map(tiny_onnx):
    model = Model(tiny_onnx(**TINY["gray_nchw"]))
    faces = np.random.default_rng(0).uniform(0, 1, (3, 25, 25))
    ours, on_ours, on_plain = (call() for call in row_calls(model, "saliency", faces))
    np.testing.assert_allclose(ours.maps, on_ours, rtol=0, atol=1e-5 * np.abs(on_ours).max())
    np.testing.assert_allclose(on_ours, on_plain, rtol=0, atol=1e-5 * np.abs(on_plain).max())
