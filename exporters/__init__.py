"""Keras and PyTorch files -> ONNX + sidecar, in an isolated child process, with a parity proof.

The parent process (this package's public API) never imports TensorFlow or torch: the work
happens in `ExportWorker`'s child process.
"""
from .api import ensure_onnx, export
from .options import ExportOptions
from .sniff import sniff_format
from .worker import ExportWorker, WorkerGone

__all__ = ["ExportOptions", "ExportWorker", "WorkerGone", "ensure_onnx", "export", "sniff_format"]
