"""The one error hierarchy: every user-facing failure is an OnnxplainError with a one-line message.

Messages say what was found and what to do. The CLI prints `error: <message>` and exits 2.
"""
from __future__ import annotations


class OnnxplainError(Exception):
    """Base of all errors a user can cause and fix (bad file, bad flag, bad input)."""

    def __init__(self, message: str) -> None:
        # One line, always: a multi-line message would break the CLI's `error: ...` contract.
        super().__init__(" ".join(str(message).split()))


class UnsupportedModelError(OnnxplainError):
    """The file is not a model we can read, or it is one we refuse to run (untrusted code)."""


class ConversionError(OnnxplainError):
    """Export or onnx->torch conversion failed, or parity between backends was broken."""


class BadInputError(OnnxplainError):
    """An image, array, dataset, flag value or option does not fit the model or the command."""


class DeviceError(OnnxplainError):
    """The requested device cannot be used (e.g. CUDA asked for, onnxruntime fell back to CPU)."""
