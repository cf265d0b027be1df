"""One export, start to finish, inside the child: sniff, convert, prove parity, write OUT.onnx + sidecar.

`.onnx` inputs are validated (checker, onnxruntime) and passed through with a sidecar. Both output
files are written atomically: a reader sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from onnxplain.engine.errors import BadInputError, UnsupportedModelError
from onnxplain.engine.input_spec import InputSpec
from onnxplain.engine.model import file_sha256, load_onnx
from onnxplain.engine.output_head import output_record
from onnxplain.engine.sidecar import atomic_path, read_sidecar, write_sidecar

from . import sniff
from .options import PARITY_THRESHOLD, ExportOptions
from .parity import enforce, onnx_forward, ort_session, parity_report, random_inputs
from .result import Exported
from onnxplain.engine.versions import loaded_versions, onnxplain_version

log = logging.getLogger(__name__)


def run_export(src: Path, out: Path, options: ExportOptions,
               images: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Export `src` to `out` (+ `out.json`); returns the sidecar written."""
    fmt = sniff.sniff_format(src)
    source = {"path": str(src.resolve()), "sha256": file_sha256(src), "format": fmt}
    if fmt == sniff.ONNX:
        return _pass_through(src, out, options, source)
    exported = _convert(src, fmt, options)
    source.update(exported.source)
    model_bytes = exported.onnx.SerializeToString()
    spec = _spec(exported.onnx, exported.layout, options)
    candidate = onnx_forward(ort_session(model_bytes))
    _check_labels(spec, candidate)
    spec = _with_file_labels(spec, source.get("labels"), candidate)
    report = parity_report(exported.forward, candidate, spec, threshold=PARITY_THRESHOLD, images=images)
    enforce(report, allow_mismatch=options.allow_mismatch, what=src.name)
    sidecar = {
        "source": source,
        "exporter": _exporter(exported.converter),
        "opset": _opset(exported.onnx),
        **_spec_sidecar(spec, options),
        "output": output_record(exported.onnx),
        "parity": report,
        "layer_names": exported.layer_names,
        **({"summary": exported.summary} if exported.summary else {}),
    }
    with atomic_path(out) as tmp:
        tmp.write_bytes(model_bytes)
    write_sidecar(out, sidecar)
    return {"onnxplain_sidecar": 1, **sidecar}


def _convert(src: Path, fmt: str, options: ExportOptions) -> Exported:
    if fmt in sniff.KERAS_FORMATS:
        from .keras_export import export_keras

        return export_keras(src, fmt, options)
    if fmt in sniff.TORCH_FORMATS:
        from .torch_export import export_torch

        return export_torch(src, fmt, options)
    raise UnsupportedModelError(f"{src.name} is {sniff.describe_unknown(src)}")


def cleanup() -> None:
    """Free what the last export left in framework-global state (Keras sessions)."""
    import sys

    if "onnxplain.exporters.keras_export" in sys.modules:
        sys.modules["onnxplain.exporters.keras_export"].cleanup()


def _spec(proto: Any, layout: str, options: ExportOptions) -> InputSpec:
    return InputSpec.from_onnx(proto, None, layout=options.layout or layout, scale=options.scale,
                               mean=options.mean, std=options.std, labels=options.labels)


def _spec_sidecar(spec: InputSpec, options: ExportOptions) -> dict[str, Any]:
    """Input spec always; preprocessing only when the user gave it (a default would pose as a fact)."""
    data = spec.to_sidecar()
    if options.scale is None and options.mean is None and options.std is None:
        data.pop("preprocessing", None)
    return data


def _check_labels(spec: InputSpec, candidate: Any) -> None:
    if not spec.labels:
        return
    scores = candidate(random_inputs(spec, n=1))
    classes = int(scores.shape[-1]) if scores.ndim == 2 else None
    if classes is not None and classes != len(spec.labels):
        raise BadInputError(f"`labels` gives {len(spec.labels)} names but the model has {classes} classes",
                            params=("labels",))


def _with_file_labels(spec: InputSpec, labels: Sequence[str] | None, candidate: Any) -> InputSpec:
    """Class names the file carries (a checkpoint's label_map) when the user gave none and they fit."""
    if spec.labels or not labels:
        return spec
    scores = candidate(random_inputs(spec, n=1))
    if scores.ndim == 2 and scores.shape[-1] == len(labels):
        return spec.with_labels(list(labels))
    log.warning("the file's %d class names do not fit the model's %s outputs; not used", len(labels), scores.shape[-1])
    return spec


def _exporter(converter: dict[str, Any]) -> dict[str, Any]:
    return {"name": "onnxplain.exporters", "version": onnxplain_version(), "converter": converter,
            "versions": loaded_versions()}


def _opset(proto: Any) -> int | None:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _pass_through(src: Path, out: Path, options: ExportOptions, source: dict[str, Any]) -> dict[str, Any]:
    """Validate an ONNX file, copy it to `out` when that is elsewhere, and write (or update) its sidecar."""
    proto = load_onnx(src)
    existing = read_sidecar(src) or {}
    spec = InputSpec.from_onnx(proto, existing, layout=options.layout, input_shape=options.input_shape,
                               scale=options.scale, mean=options.mean, std=options.std, labels=options.labels)
    session = ort_session(proto.SerializeToString())
    candidate = onnx_forward(session)
    candidate(random_inputs(spec, n=1))  # it must run, here in the child, before anyone relies on it
    _check_labels(spec, candidate)
    source.update(framework=proto.producer_name or "onnx", framework_version=proto.producer_version or "",
                  serialization="onnx")
    sidecar = dict(existing)
    sidecar.pop("onnxplain_sidecar", None)
    sidecar.setdefault("source", source)
    sidecar.setdefault("exporter", _exporter({"name": "pass-through"}))
    sidecar["opset"] = _opset(proto)
    sidecar.setdefault("output", output_record(proto))
    new_spec = _spec_sidecar(spec, options)
    if "preprocessing" in existing and "preprocessing" not in new_spec:
        new_spec["preprocessing"] = existing["preprocessing"]
    sidecar.update(new_spec)
    if out.resolve() != src.resolve():
        with atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)
    write_sidecar(out, sidecar)
    return {"onnxplain_sidecar": 1, **sidecar}
