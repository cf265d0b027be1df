"""ONNX -> torch: onnx2torch plus the converters it lacks for newer opsets (see converters.py)."""
from __future__ import annotations

import onnx
import torch


def to_torch(model: onnx.ModelProto) -> torch.nn.Module:
    """An eval-mode torch module computing the same function as `model`."""
    import onnx2torch

    return onnx2torch.convert(model).eval()
