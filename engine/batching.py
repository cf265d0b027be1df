"""The one batching helper. `Model.predict` and every torch loop slice work through here."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    import torch


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most `batch_size` covering range(n)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def torch_batched(fn: Callable[..., Any], *tensors: "torch.Tensor", batch_size: int) -> Any:
    """Apply `fn` to aligned slices of `tensors` (all with the same first dimension) and concatenate.

    `fn` returns a tensor, or a tuple of tensors (each concatenated on its own: a tuple comes back)."""
    import torch

    n = tensors[0].shape[0]
    if n <= batch_size:
        return fn(*tensors)
    parts = [fn(*(t[s] for t in tensors)) for s in batch_slices(n, batch_size)]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(column, dim=0) for column in zip(*parts))
    return torch.cat(parts, dim=0)
