"""Helpers for the exporter tests: run exported files and read their sidecars independently."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def onnx_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """Run an ONNX file on onnxruntime (CPU), first output."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})[0]


def read_sidecar(path: Path) -> dict:
    return json.loads(Path(str(path) + ".json").read_text())
