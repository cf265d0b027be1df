"""The one error hierarchy: every user-facing failure is an OnnxplainError with a one-line message.

Messages say what was found and what to do. The CLI prints `error: <message>` and exits 2.

A message names parameters as a Python caller types them, in backticks or with a value
("`per_class` must be at least 1", 'pass device="cpu"'), and lists them in `params`; the CLI rewrites
those to its flags (--per-class, --device cpu) when it prints.
"""
from __future__ import annotations

from typing import Sequence


class OnnxplainError(Exception):
    """Base of all errors a user can cause and fix (bad file, bad flag, bad input)."""

    def __init__(self, message: str, *, params: Sequence[str] = ()) -> None:
        # One line, always: a multi-line message would break the CLI's `error: ...` contract.
        super().__init__(" ".join(str(message).split()))
        self.params = tuple(params)  # the API parameters the message names, as `name` or `name="value"`


class UnsupportedModelError(OnnxplainError):
    """The file is not a model we can read, or it is one we refuse to run (untrusted code)."""


class ConversionError(OnnxplainError):
    """Export or onnx->torch conversion failed, or parity between backends was broken."""


class BadInputError(OnnxplainError):
    """An image, array, dataset, flag value or option does not fit the model or the command."""


class DeviceError(OnnxplainError):
    """The requested device cannot be used (e.g. CUDA asked for, onnxruntime fell back to CPU)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's text (libraries raise pages), or its type name."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return shorten(line, limit)
    return type(exc).__name__


def shorten(text: str, limit: int) -> str:
    """`text` within `limit` characters, never cut inside a word: up to its first full sentence when that
    fits, else at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    sentence = text.find(". ")
    if 0 < sentence < limit:
        return text[:sentence + 1]
    cut = text.rfind(" ", 0, limit - 1)
    return (text[:cut] if cut > limit // 2 else text[:limit - 1]).rstrip(",;:(") + "…"
