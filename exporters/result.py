"""Exported: what a framework-specific exporter hands back to the pipeline (child process only)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .parity import Forward

if TYPE_CHECKING:
    import onnx


@dataclass
class Exported:
    onnx: "onnx.ModelProto"
    forward: Forward                 # the source framework's model on model-layout float32 input
    layout: str                      # NCHW or NHWC, the layout the source model takes
    source: dict[str, Any]           # framework, framework_version, serialization, ...
    converter: dict[str, Any]        # name of the converter, its settings
    layer_names: dict[str, str] = field(default_factory=dict)  # ONNX node name -> source layer name
    summary: dict[str, Any] | None = None  # the framework's own model summary (source_summary.py)
