"""Parity arithmetic: the number in the sidecar, and when it fails an export."""
from __future__ import annotations

import numpy as np
import pytest

from onnxplain.engine.errors import ConversionError, UnsupportedModelError
from onnxplain.engine.input_spec import InputSpec
from onnxplain.exporters.parity import compare, enforce, parity_report, random_inputs

SPEC = InputSpec(layout="NCHW", channels=1, height=6, width=5, scale=2 / 255, mean=(1.0,), std=(1.0,))


def linear(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)[:, :3] * 2.0


def test_random_inputs_are_seeded_and_preprocessed() -> None:
    x = random_inputs(SPEC)
    assert x.shape == (16, 1, 6, 5) and x.dtype == np.float32
    assert np.array_equal(x, random_inputs(SPEC))
    assert -1.0 <= x.min() < -0.8 and 0.8 < x.max() <= 1.0  # pixels 0..255 through (x*2/255 - 1)


def test_compare_is_the_max_abs_difference() -> None:
    x = random_inputs(SPEC)
    shifted = lambda v: linear(v) + np.where(np.arange(3) == 1, 0.25, 0.0)  # noqa: E731
    assert compare(linear, linear, x, "x") == 0.0
    assert compare(linear, shifted, x, "x") == pytest.approx(0.25)


def test_nan_in_the_candidate_is_infinitely_wrong_and_nan_in_the_source_an_error() -> None:
    x = random_inputs(SPEC)
    assert compare(linear, lambda v: linear(v) * np.nan, x, "x") == np.inf
    with pytest.raises(ConversionError, match="NaN or infinite.*weights"):
        compare(lambda v: linear(v) * np.nan, linear, x, "x")
    with pytest.raises(ConversionError, match="output shape"):
        compare(linear, lambda v: linear(v)[:, :2], x, "x")


def test_a_source_that_mixes_the_images_of_a_batch_is_refused() -> None:
    """Both sides agree (ONNX reproduces the mixing), but 16 images must give 16 rows."""
    x = random_inputs(SPEC)
    mixed = lambda v: linear(v).reshape(-1, 6)  # noqa: E731  (two images per row)
    with pytest.raises(UnsupportedModelError, match=r"8 output row\(s\) for 16 images"):
        compare(mixed, mixed, x, "x")


def test_enforce_threshold_and_allow_mismatch() -> None:
    report = {"max_abs_diff": 2e-3, "threshold": 1e-3}
    with pytest.raises(ConversionError, match="differs.*2e-03|differs.*0.002"):
        enforce(dict(report), allow_mismatch=False, what="m.h5")
    assert enforce(dict(report), allow_mismatch=True, what="m.h5")["passed"] is False
    assert enforce({"max_abs_diff": 1e-3, "threshold": 1e-3}, allow_mismatch=False, what="m")["passed"] is True


def test_report_with_real_images() -> None:
    images = [np.full((12, 10), 200, np.uint8), np.zeros((6, 5), np.uint8)]
    off_on_bright = lambda v: linear(v) + (v.reshape(len(v), -1)[:, :3] > 0.5) * 0.1  # noqa: E731
    report = parity_report(linear, off_on_bright, SPEC, threshold=1e-3, images=images)
    assert report["real_images"] == 2 and report["real_max_abs_diff"] == pytest.approx(0.1)
    assert report["max_abs_diff"] >= report["real_max_abs_diff"] and report["inputs"] == 16
