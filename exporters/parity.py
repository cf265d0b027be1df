"""Parity: proof that the ONNX file computes what the source framework computes.

Both run on the same inputs: 16 seeded random images (uniform pixels 0..255 pushed through the
model's preprocessing, so the values sit where real inputs do) and the user's real images when
given. The number recorded is the max absolute difference of the first output.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from onnxplain.engine.errors import ConversionError, UnsupportedModelError, first_line
from onnxplain.engine.input_spec import InputSpec


if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)

N_RANDOM = 16
SEED = 0

Forward = Callable[[np.ndarray], np.ndarray]


def random_inputs(spec: InputSpec, n: int = N_RANDOM, seed: int = SEED) -> np.ndarray:
    """`n` seeded random images in the model's input space (layout and preprocessing applied)."""
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0.0, 255.0, size=(n, spec.height, spec.width, spec.channels)).astype(np.float32)
    return spec.pixels_to_model(pixels)


def ort_session(model_bytes: bytes) -> "ort.InferenceSession":
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime cannot load the exported model: {first_line(exc)}") from exc


def onnx_forward(session: "ort.InferenceSession") -> Forward:
    """The ONNX model's first output as a function of its (single) input."""
    input_name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(session.run(None, {input_name: np.ascontiguousarray(x, np.float32)})[0])
        except Exception as exc:
            raise ConversionError(f"onnxruntime cannot run the exported model on {x.shape}: {first_line(exc)}") from exc

    return run


def check_one_row_per_image(output_shape: Sequence[int], images: int, who: str) -> None:
    """A classifier returns one row per image; more or fewer means it mixes the images of a batch, which
    the ONNX file would reproduce faithfully, so parity alone cannot catch it."""
    rows = int(output_shape[0]) if len(output_shape) else 0
    if rows != images:
        raise UnsupportedModelError(
            f"{who} returns {rows} output row(s) for {images} images: it mixes the images of a batch (e.g. a "
            "view(-1, n) flatten sized for another input size); check `input_shape`", params=("input_shape",))


def compare(reference: Forward, candidate: Forward, x: np.ndarray, what: str) -> float:
    """Max |reference(x) - candidate(x)|; a shape mismatch, one output row per image missing, or a
    non-finite reference is a ConversionError."""
    ref = np.asarray(reference(x), dtype=np.float64)
    got = np.asarray(candidate(x), dtype=np.float64)
    if not np.all(np.isfinite(ref)):
        raise ConversionError(
            f"the source model outputs NaN or infinite values on {what}; its weights are probably damaged (NaN)"
        )
    check_one_row_per_image(ref.shape, len(x), "the source model")
    if ref.shape != got.shape:
        raise ConversionError(f"the exported model gives output shape {got.shape}, the source model {ref.shape}")
    if ref.size == 0:
        return 0.0
    diff = np.abs(ref - got)
    return float(np.nanmax(np.where(np.isfinite(diff), diff, np.inf)))


def parity_report(
    reference: Forward,
    candidate: Forward,
    spec: InputSpec,
    *,
    threshold: float,
    images: Sequence[np.ndarray] | np.ndarray | None = None,
) -> dict[str, Any]:
    """The sidecar's `parity` section (not yet judged against the threshold: see `enforce`)."""
    report: dict[str, Any] = {
        "max_abs_diff": compare(reference, candidate, random_inputs(spec), f"{N_RANDOM} random inputs"),
        "inputs": N_RANDOM,
        "seed": SEED,
        "threshold": threshold,
        "real_images": 0,
    }
    if images is not None and len(images):
        x = spec.to_model_input(images)
        real = compare(reference, candidate, x, f"{len(x)} real images")
        report["real_images"] = int(len(x))
        report["real_max_abs_diff"] = real
        report["max_abs_diff"] = max(report["max_abs_diff"], real)
    return report


def enforce(report: dict[str, Any], *, allow_mismatch: bool, what: str) -> dict[str, Any]:
    """Fail when parity is above the threshold, unless the user accepted a mismatch."""
    diff, threshold = report["max_abs_diff"], report["threshold"]
    report["passed"] = bool(diff <= threshold)
    if not report["passed"]:
        if not allow_mismatch:
            raise ConversionError(
                f"{what}: the ONNX model differs from the source model by {diff:.3g} (> {threshold:g}) "
                "on the same inputs; the export is wrong (pass allow_mismatch=True to keep it anyway)",
                params=("allow_mismatch",))
        log.warning("%s: parity %.3g is above %g; kept because of allow_mismatch", what, diff, threshold)
    return report

