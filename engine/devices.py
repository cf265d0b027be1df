"""Where a Model runs: "cpu", "cuda" (the current GPU, 0 unless torch was told otherwise), "cuda:N"
or a `torch.device` of those. The index reaches onnxruntime (the CUDA provider's `device_id`),
torch (`Model.torch_device`) and the IO binding of torch tensors (`Model.predict_tensor`).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Union

from .errors import BadInputError

if TYPE_CHECKING:
    import torch

DeviceLike = Union[str, "torch.device"]
_FORM = re.compile(r"(cpu|cuda)(?::(\d+))?")


def parse_device(device: DeviceLike) -> tuple[str, int | None]:
    """(kind, index): ("cpu", None), ("cuda", None) for plain "cuda", ("cuda", N) for "cuda:N"."""
    text = device if isinstance(device, str) else str(device) if type(device).__name__ == "device" else None
    match = _FORM.fullmatch(text.strip().lower()) if text is not None else None
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise BadInputError(f'`device` {device!r} is not "cpu", "cuda", "cuda:N" (N a GPU index) or a torch.device '
                            'of those (resolve "auto" before building a Model)', params=("device",))
    return match.group(1), (int(match.group(2)) if match.group(2) is not None else None)


def device_name(device: DeviceLike) -> str:
    """The canonical spelling: "cpu", "cuda" or "cuda:N" (what results record)."""
    kind, index = parse_device(device)
    return kind if index is None else f"{kind}:{index}"


def is_cuda(device: DeviceLike) -> bool:
    """Whether `device` is a GPU ("cuda" or "cuda:N")."""
    return parse_device(device)[0] == "cuda"
