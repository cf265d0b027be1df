"""Peak memory of one run: the host's peak RSS (`HostPeak`: the kernel's VmHWM on Linux, else a
sampler thread) and, on CUDA, torch's allocator peak plus a sampled device-wide peak (`GpuPeak`);
`measure_calls` puts them around each call's first (warm-up) run and times the calls interleaved.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from onnxplain.engine.devices import is_cuda

from .timing import Clock, Sync, Timing, device_sync, time_calls


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _read_hwm() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _read_hwm() is not None


class _Sampler:
    """A daemon thread calling `probe()` every `interval` seconds and keeping the maximum."""

    def __init__(self, probe: Callable[[], int], interval: float) -> None:
        self._probe = probe
        self._interval = interval
        self._stop = threading.Event()
        self.peak = probe()
        self._thread = threading.Thread(target=self._run, name="onnxplain-mem-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._probe())

    def start(self) -> "_Sampler":
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._probe())
        return self.peak


class HostPeak:
    """Peak resident set size of this process while the `with` block runs.

    On Linux the kernel's own high-water mark is reset on entry (`/proc/self/clear_refs`) and read on
    exit (`VmHWM`): exact, no sampling. Elsewhere a thread samples psutil's RSS every `interval`
    seconds, which misses spikes shorter than the interval and needs the GIL (onnxruntime and torch
    release it while they compute). Both count the whole process: model weights and libraries are in
    `before`; `delta` is what the block added at its peak.
    """

    def __init__(self, interval: float = 0.002, *, use_hwm: bool = True) -> None:
        self.interval = interval
        self.use_hwm = use_hwm
        self.before = 0
        self.peak = 0
        self.how = ""
        self._sampler: _Sampler | None = None

    def __enter__(self) -> "HostPeak":
        self.before = _rss()
        if self.use_hwm and _reset_hwm():
            self.how = "VmHWM"
        else:
            self.how = f"sampled every {self.interval * 1e3:g} ms"
            self._sampler = _Sampler(_rss, self.interval).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sampler is not None:
            self.peak = self._sampler.stop()
        else:
            self.peak = max(_read_hwm() or 0, _rss())

    @property
    def delta(self) -> int:
        return max(0, self.peak - self.before)


class GpuPeak:
    """GPU memory while the `with` block runs, on the current CUDA device.

    `allocator_peak`: torch's caching allocator (`reset_peak_memory_stats` / `max_memory_allocated`),
    exact but blind to onnxruntime's own CUDA arena. `device_peak`: the device's used memory
    (`mem_get_info`: total - free) sampled by a thread, which does see onnxruntime but also every other
    process on the GPU and misses spikes shorter than the interval. `cuda` defaults to `torch.cuda`;
    tests pass a mock.
    """

    def __init__(self, cuda: Any = None, interval: float = 0.002) -> None:
        if cuda is None:
            import torch

            cuda = torch.cuda
        self.cuda = cuda
        self.interval = interval
        self.allocator_before = 0
        self.allocator_peak = 0
        self.device_before = 0
        self.device_peak = 0
        self._sampler: _Sampler | None = None

    def _device_used(self) -> int:
        free, total = self.cuda.mem_get_info()
        return int(total - free)

    def __enter__(self) -> "GpuPeak":
        self.cuda.synchronize()
        self.cuda.reset_peak_memory_stats()
        self.allocator_before = int(self.cuda.memory_allocated())
        self.device_before = self._device_used()
        self._sampler = _Sampler(self._device_used, self.interval).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cuda.synchronize()
        self.allocator_peak = int(self.cuda.max_memory_allocated())
        assert self._sampler is not None
        self.device_peak = self._sampler.stop()


@dataclass(frozen=True)
class Memory:
    """Peak memory of one run (bytes). GPU fields are None on the CPU."""

    host_before: int
    host_peak: int
    host_how: str
    gpu_allocator_before: int | None = None
    gpu_allocator_peak: int | None = None
    gpu_device_before: int | None = None
    gpu_device_peak: int | None = None

    @property
    def host_delta(self) -> int:
        return max(0, self.host_peak - self.host_before)

    @property
    def gpu_allocator_delta(self) -> int | None:
        if self.gpu_allocator_peak is None or self.gpu_allocator_before is None:
            return None
        return max(0, self.gpu_allocator_peak - self.gpu_allocator_before)

    @property
    def gpu_device_delta(self) -> int | None:
        if self.gpu_device_peak is None or self.gpu_device_before is None:
            return None
        return max(0, self.gpu_device_peak - self.gpu_device_before)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "host_delta": self.host_delta,
                "gpu_allocator_delta": self.gpu_allocator_delta, "gpu_device_delta": self.gpu_device_delta}


def measure_memory(fn: Callable[[], Any], *, device: str = "cpu", cuda: Any = None,
                   host_interval: float = 0.002) -> Memory:
    """Run `fn` once under the host probe (and the GPU probe on cuda) and return the peaks."""
    if is_cuda(device):
        with HostPeak(host_interval) as host, GpuPeak(cuda) as gpu:
            fn()
        return Memory(host.before, host.peak, host.how, gpu.allocator_before, gpu.allocator_peak,
                      gpu.device_before, gpu.device_peak)
    with HostPeak(host_interval) as host:
        fn()
    return Memory(host.before, host.peak, host.how)


@dataclass(frozen=True)
class Measurement:
    timing: Timing
    memory: Memory | None = None
    # What the first untimed run returned (for checking that two sides computed the same thing);
    # never serialised.
    result: Any = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"timing": self.timing.as_dict(), "memory": self.memory.as_dict() if self.memory else None}


def measure_calls(
    fns: Sequence[Callable[[], Any]],
    *,
    images: int,
    device: str = "cpu",
    repeats: int = 5,
    warmup: int = 1,
    budget_s: float | None = None,
    memory: bool = True,
    clock: Clock = time.perf_counter,
    sync: Sync | None = None,
) -> list[Measurement]:
    """Timing (interleaved: `time_calls`) and, with `memory`, peak memory of each call; each
    Measurement's `result` is the output of that call's first untimed run.

    The memory probes wrap each call's first warm-up run (a run whose time is discarded anyway, so
    the probes cost no extra run and never touch a timed one); with no warm-up, one extra run after
    the timed ones. The first call is also the one that shows what a method allocates afresh, where
    a later call may reuse memory the allocators kept.
    """
    sync = sync or device_sync(device)

    def first_run(fn: Callable[[], Any]) -> tuple[Memory | None, Any]:
        kept: list[Any] = []
        if not memory:
            return None, fn()
        mem = measure_memory(lambda: kept.append(fn()), device=device)
        return mem, kept[0]

    firsts = [first_run(fn) for fn in fns] if warmup > 0 else []
    timings = time_calls(fns, repeats=repeats, warmup=max(0, warmup - 1), sync=sync, clock=clock, images=images,
                         budget_s=budget_s)
    if warmup > 0:
        return [Measurement(dataclasses.replace(t, warmup=warmup), mem, result)
                for t, (mem, result) in zip(timings, firsts)]
    afters = [first_run(fn) if memory else (None, None) for fn in fns]
    return [Measurement(t, mem, result) for t, (mem, result) in zip(timings, afters)]

