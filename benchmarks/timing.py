"""Timing: warm-up runs counted out, the device synchronised before every clock read, repeated runs
summarised as a median and an interquartile range (`Timing`); several calls timed interleaved
(`time_calls`) so that their per-round ratios compare two sides under the same load.

The clock and the synchronisation are arguments, so tests drive them with mocks.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from onnxplain.engine.devices import parse_device
from onnxplain.engine.errors import BadInputError

Clock = Callable[[], float]
Sync = Callable[[], None]


def _no_sync() -> None:
    """CPU work is finished when the call returns: nothing to wait for."""


def device_sync(device: str) -> Sync:
    """What to call before reading the clock: `torch.cuda.synchronize` on cuda, a no-op on cpu.

    onnxruntime's CUDA provider copies outputs back to the host before `run` returns, so only
    torch's asynchronous kernels need the explicit wait.
    """
    kind, index = parse_device(device)
    if kind == "cuda":
        import torch

        return torch.cuda.synchronize if index is None else functools.partial(torch.cuda.synchronize, index)
    return _no_sync


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated runs of one call (warm-up runs are not in `samples`)."""

    samples: tuple[float, ...]
    warmup: int
    images: int = 1

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("a Timing needs at least one sample")

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def q1(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def q3(self) -> float:
        return float(np.percentile(self.samples, 75))

    @property
    def iqr(self) -> float:
        """Interquartile range (numpy's linear interpolation between order statistics)."""
        return self.q3 - self.q1

    @property
    def ms(self) -> float:
        return self.median * 1e3

    @property
    def ms_per_image(self) -> float:
        return self.median * 1e3 / self.images

    @property
    def images_per_s(self) -> float:
        return self.images / self.median if self.median > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "q1_s": self.q1, "q3_s": self.q3, "iqr_s": self.iqr,
                "ms_per_image": self.ms_per_image, "images": self.images, "repeats": len(self.samples),
                "warmup": self.warmup, "samples_s": list(self.samples)}


def time_call(
    fn: Callable[[], Any],
    *,
    repeats: int = 5,
    warmup: int = 1,
    sync: Sync = _no_sync,
    clock: Clock = time.perf_counter,
    images: int = 1,
    min_repeats: int = 3,
    budget_s: float | None = None,
) -> Timing:
    """Run `fn` `warmup` times (discarded), then up to `repeats` timed times.

    Every clock read is preceded by `sync()`, so queued device work is inside the interval it belongs
    to. With `budget_s`, timing stops early once the timed runs have used the budget and at least
    `min(min_repeats, repeats)` samples exist (slow references would otherwise take minutes).
    """
    (timing,) = time_calls([fn], repeats=repeats, warmup=warmup, sync=sync, clock=clock, images=images,
                           min_repeats=min_repeats, budget_s=budget_s)
    return timing


def time_calls(
    fns: Sequence[Callable[[], Any]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    sync: Sync = _no_sync,
    clock: Clock = time.perf_counter,
    images: int = 1,
    min_repeats: int = 3,
    budget_s: float | None = None,
) -> list[Timing]:
    """`time_call` for several calls at once, interleaved: each round runs every call once, the
    order rotating from round to round (ours, theirs / theirs, ours / ...).

    On a shared machine the load drifts; the calls of one round see nearly the same load, so the
    per-round ratios (`paired_ratios`) compare two sides far more steadily than two medians taken
    minutes apart. The budget counts the time of all calls.
    """
    if repeats < 1:
        raise BadInputError(f"repeats must be at least 1, got {repeats}")
    if warmup < 0:
        raise BadInputError(f"warm-up runs must be 0 or more, got {warmup}")
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync()
    samples: list[list[float]] = [[] for _ in fns]
    spent = 0.0
    for r in range(repeats):
        for i in (r + j for j in range(len(fns))):
            i %= len(fns)
            sync()
            start = clock()
            fns[i]()
            sync()
            elapsed = clock() - start
            samples[i].append(elapsed)
            spent += elapsed
        if budget_s is not None and spent >= budget_s and r + 1 >= min(min_repeats, repeats):
            break
    return [Timing(tuple(s), warmup, images) for s in samples]


def paired_ratios(reference: Timing, ours: Timing) -> np.ndarray:
    """Per-round ratios reference / ours of two interleaved timings (`time_calls`)."""
    if len(reference.samples) != len(ours.samples):
        raise ValueError("paired ratios need timings from the same rounds (time_calls)")
    return np.asarray(reference.samples) / np.asarray(ours.samples)


def profile_call(fn: Callable[[], Any], *, top: int = 25, sort: str = "cumulative") -> str:
    """Where one call of `fn` spends its time: cProfile's `top` functions by `sort`, as pstats prints
    them (onnxruntime's and torch's native work shows as the Python call that entered it)."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
    return out.getvalue()

