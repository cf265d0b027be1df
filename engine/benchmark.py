"""The one timing harness: every benchmark in onnxplain (`onnxplain bench`, `benchmarks/`) times through here.

Three layers, each usable alone:

1. `time_call(fn, ...)`: warm-up runs counted out, the device synchronised before every clock read,
   repeated runs summarised as a median and an interquartile range (`Timing`). The clock and the
   synchronisation are arguments, so tests drive them with mocks.
2. `measure_memory(fn, ...)`: one extra run under a host peak-RSS probe (`HostPeak`) and, on CUDA,
   torch's allocator peak plus a sampled device-wide peak (`GpuPeak`). Kept apart from the timed runs
   so that the probes never perturb the clock.
3. `run_benchmark(model, images, config)`: every method ours vs its reference (Captum's matching class
   on the plain onnx2torch module of the same file; the lime package for LIME), the forward-pass floor
   of the forward-only methods on onnxruntime and on the torch module, and the targets of issues 7-9,
   returned as a `BenchReport` that renders to JSON and markdown.

The references (captum, lime) are test-extra packages: they are imported only when `compare=True`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np

from .batching import torch_batched
from .errors import BadInputError

if TYPE_CHECKING:
    import torch

    from .model import Model

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sync = Callable[[], None]
Calls = dict[str, Callable[[], Any]]  # a reference's prepared calls, by label


# ============================================================================ timing
def _no_sync() -> None:
    """CPU work is finished when the call returns: nothing to wait for."""


def device_sync(device: str) -> Sync:
    """What to call before reading the clock: `torch.cuda.synchronize` on cuda, a no-op on cpu.

    onnxruntime's CUDA provider copies outputs back to the host before `run` returns, so only
    torch's asynchronous kernels need the explicit wait.
    """
    if device == "cuda":
        import torch

        return torch.cuda.synchronize
    if device == "cpu":
        return _no_sync
    raise BadInputError(f"device {device!r} is not 'cpu' or 'cuda'")


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


# ============================================================================ memory
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
    if device == "cuda":
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


# ============================================================================ what is benchmarked
GRADIENT_METHODS = ("saliency", "smoothgrad", "ig", "gradcam")
FORWARD_METHODS = ("occlusion", "lime")
METHODS = GRADIENT_METHODS + FORWARD_METHODS
# The parameters of issues 7 and 8: LIME 1000 samples, occlusion 8x8 window stride 4, IG 50 steps.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "smoothgrad": {"samples": 25, "sigma": 0.15},
    "ig": {"steps": 50},
    "gradcam": {},
    "occlusion": {"window": 8, "stride": 4},
    "lime": {"samples": 1000},
}
FLOOR_BATCH_SIZES = (64, 256, 1024)
LIME_BATCH_SIZES = (10, 1000)  # the lime package's batch_size: its best of these is the reference
CAPTUM_OCCLUSION_PER_EVAL = 256
REFERENCES = {
    "saliency": "captum Saliency",
    "smoothgrad": "captum NoiseTunnel(Saliency)",
    "ig": "captum IntegratedGradients",
    "gradcam": "captum LayerGradCam",
    "occlusion": "captum Occlusion",
    "lime": "lime LimeImageExplainer",
}


@dataclass(frozen=True)
class Target:
    """A speed target from the issues, checked on the rows it applies to."""

    method: str
    metric: Literal["speedup", "floor_ratio", "ms_per_image", "ms"]
    op: Literal[">=", "<="]
    limit: float
    device: Literal["cpu", "cuda"]
    images: int | None = None
    params: tuple[tuple[str, Any], ...] = ()
    note: str = ""

    def applies(self, row: "BenchRow") -> bool:
        return (row.method == self.method and row.device == self.device
                and (self.images is None or row.images == self.images)
                and all(row.params.get(k) == v for k, v in self.params))

    def label(self) -> str:
        unit = {"speedup": "x vs reference", "floor_ratio": "x of floor", "ms_per_image": " ms/image", "ms": " ms"}
        return f"{self.metric} {self.op} {self.limit:g}{unit[self.metric]}"


TARGETS: tuple[Target, ...] = (
    # 2-core CPU (issues 7 and 8): forward-only methods within 1.2x of their floor, ratios vs references.
    Target("lime", "floor_ratio", "<=", 1.2, "cpu"),
    Target("occlusion", "floor_ratio", "<=", 1.2, "cpu"),
    Target("lime", "speedup", ">=", 1.8, "cpu"),
    Target("occlusion", "speedup", ">=", 3.0, "cpu"),
    *(Target(m, "speedup", ">=", 2.0, "cpu") for m in GRADIENT_METHODS),
    # H100 (issues 7 and 8), checked on whatever CUDA device ran; the report names the device.
    Target("lime", "ms_per_image", "<=", 8.0, "cuda", note="H100"),
    Target("occlusion", "ms_per_image", "<=", 3.0, "cuda", note="H100"),
    Target("ig", "ms", "<=", 2.0, "cuda", images=1, params=(("steps", 50),), note="H100"),
    Target("ig", "ms", "<=", 6.0, "cuda", images=16, params=(("steps", 50),), note="H100"),
)


@dataclass(frozen=True)
class Check:
    target: str
    value: float | None
    met: bool | None  # None: the value could not be measured (e.g. no reference run)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BenchRow:
    """One method on one batch of images: ours, the reference, the floor, the targets."""

    model: str
    method: str
    params: dict[str, Any]
    images: int
    device: str
    ours: Measurement
    reference_name: str | None = None
    reference: Measurement | None = None
    reference_variants: dict[str, Measurement] = field(default_factory=dict)
    forward_passes: int | None = None
    floor_s: float | None = None
    torch_backend: Measurement | None = None
    torch_floor_s: float | None = None
    agreement: float | None = None  # max |ours - reference| / max |reference| over the maps
    ratios: tuple[float, ...] = ()  # reference / ours per interleaved round
    checks: list[Check] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        """How many times faster ours is (> 1: ours is faster): the median of the per-round ratios
        reference / ours when the two were timed interleaved, else the ratio of the medians."""
        if self.ratios:
            return float(np.median(self.ratios))
        return self.reference.timing.median / self.ours.timing.median if self.reference else None

    @property
    def speedup_iqr(self) -> tuple[float, float] | None:
        if not self.ratios:
            return None
        return float(np.percentile(self.ratios, 25)), float(np.percentile(self.ratios, 75))

    @property
    def floor_ratio(self) -> float | None:
        """ours median / floor (1.0: all the time is the forward passes themselves)."""
        return self.ours.timing.median / self.floor_s if self.floor_s else None

    @property
    def torch_floor_ratio(self) -> float | None:
        if self.torch_backend is None or not self.torch_floor_s:
            return None
        return self.torch_backend.timing.median / self.torch_floor_s

    def metric(self, name: str) -> float | None:
        if name == "speedup":
            return self.speedup
        if name == "floor_ratio":
            return self.floor_ratio
        if name == "ms_per_image":
            return self.ours.timing.ms_per_image
        if name == "ms":
            return self.ours.timing.ms
        raise ValueError(name)

    def evaluate(self, targets: Sequence[Target] = TARGETS) -> list[Check]:
        self.checks = []
        for t in targets:
            if not t.applies(self):
                continue
            value = self.metric(t.metric)
            met = None if value is None else (value >= t.limit if t.op == ">=" else value <= t.limit)
            self.checks.append(Check(t.label() + (f" ({t.note})" if t.note else ""), value, met))
        return self.checks

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "method": self.method, "params": self.params, "images": self.images,
            "device": self.device, "ours": self.ours.as_dict(), "reference_name": self.reference_name,
            "reference": self.reference.as_dict() if self.reference else None,
            "reference_variants": {k: v.as_dict() for k, v in self.reference_variants.items()},
            "speedup": self.speedup, "speedup_iqr": self.speedup_iqr, "ratios": list(self.ratios),
            "agreement": self.agreement, "forward_passes": self.forward_passes,
            "floor_s": self.floor_s,
            "floor_ratio": self.floor_ratio,
            "torch_backend": self.torch_backend.as_dict() if self.torch_backend else None,
            "torch_floor_s": self.torch_floor_s, "torch_floor_ratio": self.torch_floor_ratio,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass
class Throughput:
    """Pure forward throughput of one backend: images/s per batch size."""

    backend: str
    per_batch: dict[int, Timing]

    @property
    def images_per_s(self) -> dict[int, float]:
        return {b: t.images_per_s for b, t in self.per_batch.items()}

    @property
    def best_batch(self) -> int:
        return max(self.per_batch, key=lambda b: self.per_batch[b].images_per_s)

    @property
    def best(self) -> float:
        return self.per_batch[self.best_batch].images_per_s

    def floor_s(self, passes: int) -> float:
        """Seconds that `passes` forward passes take at the best batch size."""
        return passes / self.best

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "best_batch": self.best_batch, "best_images_per_s": self.best,
                "per_batch": {str(b): t.as_dict() for b, t in self.per_batch.items()}}


# ============================================================================ backends and floors
def torch_predict(model: "Model", x: "np.ndarray | torch.Tensor", batch_size: int = 256) -> np.ndarray:
    """`Model.predict` on the torch module instead of onnxruntime (same batching, outputs on the host)."""
    import torch

    xt = torch.as_tensor(np.ascontiguousarray(x, np.float32) if isinstance(x, np.ndarray) else x)
    xt = xt.to(device=model.torch_device, dtype=torch.float32)
    module = model.torch_module
    with torch.inference_mode():
        y = torch_batched(module, xt, batch_size=batch_size)
    return y.float().cpu().numpy()


class TorchBackendModel:
    """A Model whose forward passes (`predict`, `predict_tensor`) run on its torch module.

    Lets the forward-only methods, written against `Model.predict` (onnxruntime), be timed on the
    other backend unchanged; every other attribute is the wrapped Model's.
    """

    def __init__(self, model: "Model") -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def predict(self, x: np.ndarray, batch_size: int = 256, **_: Any) -> np.ndarray:
        return torch_predict(self._model, x, batch_size)

    def predict_tensor(self, x: "torch.Tensor", batch_size: int = 256) -> np.ndarray:
        return torch_predict(self._model, x, batch_size)


def forward_pool(x: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """`size` model inputs for throughput runs: the given images cycled, with a little seeded noise."""
    rng = np.random.default_rng(seed)
    reps = x[np.arange(size) % len(x)]
    scale = np.float32(0.01 * (float(x.max()) - float(x.min()) or 1.0))
    return np.ascontiguousarray(reps + scale * rng.standard_normal(reps.shape, dtype=np.float32))


def forward_throughput(
    model: "Model",
    x: np.ndarray,
    backend: Literal["onnxruntime", "torch"] = "onnxruntime",
    batch_sizes: Sequence[int] = FLOOR_BATCH_SIZES,
    *,
    pool: int | None = None,
    repeats: int = 3,
    warmup: int = 1,
    budget_s: float | None = None,
    clock: Clock = time.perf_counter,
) -> Throughput:
    """Images/s of pure forward passes at each batch size, on onnxruntime or on the torch module.

    The pool holds max(batch_sizes) images (at least `pool`), so every batch size runs full batches.
    On cuda the pool sits on the device and onnxruntime reads it through IO binding.
    """
    n = max(pool or 0, *batch_sizes)
    data = forward_pool(x, n)
    if backend == "onnxruntime":
        if model.device == "cuda":
            import torch

            xt = torch.from_numpy(data).to(model.torch_device)
            run: Callable[[int], Any] = lambda b: model.predict_tensor(xt, b)  # noqa: E731
        else:
            run = lambda b: model.predict(data, b)  # noqa: E731
    elif backend == "torch":
        import torch

        xt = torch.from_numpy(data).to(model.torch_device)
        run = lambda b: torch_predict(model, xt, b)  # noqa: E731
    else:
        raise BadInputError(f"unknown backend {backend!r}; known: onnxruntime, torch")
    sync = device_sync(model.device)
    per_batch = {int(b): time_call(lambda b=b: run(b), repeats=repeats, warmup=warmup, sync=sync, clock=clock,
                                   images=n, budget_s=budget_s)
                 for b in batch_sizes}
    return Throughput(backend, per_batch)


def forward_passes(method: str, params: dict[str, Any], model: "Model") -> int:
    """Forward passes one image needs: LIME one per sample (the first is the image itself),
    occlusion one per window position (Captum's positions) plus the unoccluded image."""
    if method == "lime":
        return int(params.get("samples", 1000))
    if method == "occlusion":
        from .methods.occlusion import window_starts

        win = _hw(params.get("window", 8))
        step = _hw(params.get("stride", 4))
        spec = model.spec
        return len(window_starts(spec.height, win[0], step[0])) * len(window_starts(spec.width, win[1], step[1])) + 1
    raise BadInputError(f"{method!r} is not a forward-only method ({', '.join(FORWARD_METHODS)})")


def _hw(value: int | Sequence[int]) -> tuple[int, int]:
    vals = [value, value] if np.isscalar(value) else list(value)  # type: ignore[arg-type]
    return int(vals[0]), int(vals[1])


# ============================================================================ references (captum, lime)
def _require(package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise BadInputError(
            f"comparing with the references needs the {package.split('.')[0]} package, a test extra: "
            f"pip install 'onnxplain[test]'"
        ) from None


def _to_numpy(t: "torch.Tensor") -> np.ndarray:
    return t.detach().cpu().numpy()


def check_references(methods: Sequence[str]) -> None:
    """Fail early, in one line, when a reference package the methods need is missing."""
    if any(m in REFERENCES and m != "lime" for m in methods):
        _require("captum.attr")
    if "lime" in methods:
        _require("lime.lime_image")


class References:
    """The reference implementation of each method, on the same model file and images.

    Captum runs on the plain onnx2torch module of the file (`onnx2torch.convert(onnx.load(path))`,
    none of onnxplain's graph optimisations), on the Model's device; for gradient methods, of the graph
    whose output they explain (`Model.score_onnx`: the logit unless `target_output` says otherwise); LIME is the lime package's
    `LimeImageExplainer`, fed through our `Model.predict` and given the same superpixels as ours.
    `build` returns the prepared calls (name -> zero-argument callable) so that only the attribution
    itself is timed; LIME has one per batch size of the lime package.
    """

    def __init__(self, model: "Model") -> None:
        self.model = model

    @cached_property
    def plain(self) -> "torch.nn.Module":
        import onnx

        return self._convert(onnx.load(str(self.model.path)))

    def scored(self, params: dict[str, Any]) -> "torch.nn.Module":
        """The plain module of the graph whose output a gradient method with `params` explains."""
        graph = self.model.score_onnx(params.get("target_output", "logit"))
        return self.plain if graph is self.model.onnx else self._convert(graph)

    def _convert(self, graph: Any) -> "torch.nn.Module":
        import onnx2torch

        return onnx2torch.convert(graph).eval().to(self.model.torch_device)

    def module_for_value(self, module: "torch.nn.Module", value: str) -> "torch.nn.Module":
        """The submodule of a plain module that computes the ONNX value `value` (for Captum's layer methods)."""
        from onnx2torch.onnx_graph import OnnxGraph

        for name, node in OnnxGraph(self.model.onnx.graph).nodes.items():
            if value in node.output_values:
                return module.get_submodule(name)
        raise BadInputError(f"no node of {self.model.path.name} computes {value!r}")

    def build(self, method: str, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], *,
              batch_size: int | None = None, seed: int = 0) -> Calls:
        builder = getattr(self, f"_{method}", None)
        if builder is None:
            raise BadInputError(f"no reference for method {method!r}; references exist for {', '.join(REFERENCES)}")
        return builder(x, targets, params, batch_size=batch_size, seed=seed)

    # -- captum ------------------------------------------------------------------------------
    def _tensors(self, x: np.ndarray, targets: np.ndarray, *,
                 grad: bool = True) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Inputs and targets as a Captum user passes them (inputs requiring grad for gradient methods)."""
        import torch

        dev = self.model.torch_device
        xt = torch.tensor(np.asarray(x, np.float32), device=dev).requires_grad_(grad)
        return xt, torch.as_tensor(targets, device=dev)

    def _saliency(self, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], **_: Any) -> Calls:
        attr = _require("captum.attr")
        xt, tt = self._tensors(x, targets)
        sal, axis = attr.Saliency(self.scored(params)), self.model.spec.channel_axis
        return {REFERENCES["saliency"]: lambda: _to_numpy(sal.attribute(xt, target=tt, abs=True).amax(dim=axis))}

    def _smoothgrad(self, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], **_: Any) -> Calls:
        attr = _require("captum.attr")
        from .methods.smoothgrad import noise_sd

        xt, tt = self._tensors(x, targets)
        tunnel, axis = attr.NoiseTunnel(attr.Saliency(self.scored(params))), self.model.spec.channel_axis
        samples = int(params.get("samples", 25))
        # Captum takes one standard deviation per input tensor; ours is per image: use their mean.
        sd = float(noise_sd(x, float(params.get("sigma", 0.15))).mean())
        return {REFERENCES["smoothgrad"]: lambda: _to_numpy(tunnel.attribute(
            xt, nt_type="smoothgrad", nt_samples=samples, stdevs=sd, target=tt, abs=True).amax(dim=axis))}

    def _ig(self, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], *, batch_size: int | None,
            seed: int) -> Calls:
        attr = _require("captum.attr")
        import torch

        from .methods.ig import make_baseline

        xt, tt = self._tensors(x, targets)
        base = torch.tensor(make_baseline(self.model.spec, x, params.get("baseline", "black"), seed), device=xt.device)
        ig, axis = attr.IntegratedGradients(self.scored(params)), self.model.spec.channel_axis
        steps, how = int(params.get("steps", 50)), params.get("integration", "gausslegendre")
        return {REFERENCES["ig"]: lambda: _to_numpy(ig.attribute(
            xt, baselines=base, target=tt, n_steps=steps, method=how, internal_batch_size=batch_size).sum(dim=axis))}

    def _gradcam(self, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], **_: Any) -> Calls:
        attr = _require("captum.attr")
        layer = self.model.find_layer(params.get("layer"), kind="conv")
        xt, tt = self._tensors(x, targets)
        plain = self.scored(params)
        cam = attr.LayerGradCam(plain, self.module_for_value(plain, layer.output))
        size = (self.model.spec.height, self.model.spec.width)
        return {REFERENCES["gradcam"]: lambda: _to_numpy(attr.LayerAttribution.interpolate(
            cam.attribute(xt, target=tt, relu_attributions=True), size, "bilinear").squeeze(1))}

    def _occlusion(self, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], **_: Any) -> Calls:
        attr = _require("captum.attr")
        import torch

        from .methods.occlusion import baseline_images

        spec = self.model.spec
        (wh, ww), (sh, sw) = _hw(params.get("window", 8)), _hw(params.get("stride", 4))
        if spec.layout == "NCHW":
            shape, strides = (spec.channels, wh, ww), (spec.channels, sh, sw)
        else:
            shape, strides = (wh, ww, spec.channels), (sh, sw, spec.channels)
        xt, tt = self._tensors(x, targets, grad=False)
        # Our baseline is given in pixels (0 = black) or by name; Captum takes it in model space.
        base = torch.tensor(baseline_images(self.model, x, params.get("baseline", 0.0), (wh, ww)), device=xt.device)
        occ, axis = attr.Occlusion(self.plain), spec.channel_axis
        # Captum credits every channel under the window with the same drop: their mean is our map.
        return {REFERENCES["occlusion"]: lambda: _to_numpy(occ.attribute(
            xt, sliding_window_shapes=shape, strides=strides, baselines=base, target=tt,
            perturbations_per_eval=CAPTUM_OCCLUSION_PER_EVAL).mean(dim=axis))}

    # -- lime -----------------------------------------------------------------------------------
    def _lime(self, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], *, seed: int,
              **_: Any) -> Calls:
        """The lime package on each image with our parameters: the same segmenter (run inside lime,
        as its own quickshift would be), samples, kernel width and hide colour."""
        lime_image = _require("lime.lime_image")
        from .methods.lime import quiet_lime_progress
        from .segmentation import DEFAULT_N_SEGMENTS, segment

        spec, model = self.model.spec, self.model
        pixels = spec.model_to_pixels(x).astype(np.float64)  # lime works on pixels 0..255
        images = [p[..., 0] if spec.channels == 1 else p for p in pixels]  # gray as HxW: lime makes it RGB
        method, n_segments = params.get("segments", "slic"), int(params.get("n_segments", DEFAULT_N_SEGMENTS))
        samples, width = int(params.get("samples", 1000)), float(params.get("kernel_width", 0.25))
        hide = params.get("hide_color")

        def segmentation_fn(image: np.ndarray) -> np.ndarray:
            return segment((image[..., :1] if spec.channels == 1 else image) / 255.0, method, n_segments, seed=seed)

        def classifier_fn(batch: np.ndarray) -> np.ndarray:
            batch = batch[..., :1] if spec.channels == 1 else batch
            return model.predict(spec.pixels_to_model(batch), batch_size=len(batch))

        def run(bs: int) -> list[Any]:
            explainer = lime_image.LimeImageExplainer(kernel_width=width, random_state=seed)
            with quiet_lime_progress(lime_image):
                return [explainer.explain_instance(img, classifier_fn, labels=(int(t),), hide_color=hide,
                                                   top_labels=None, num_samples=samples, batch_size=bs,
                                                   segmentation_fn=segmentation_fn, random_seed=seed)
                        for img, t in zip(images, targets)]

        return {f"{REFERENCES['lime']} (batch_size={bs})": (lambda bs=bs: run(bs)) for bs in LIME_BATCH_SIZES}


# ============================================================================ the run
@dataclass(frozen=True)
class BenchConfig:
    methods: tuple[str, ...] = METHODS
    batch_sizes: tuple[int, ...] = (1, 16)
    repeats: int = 5
    warmup: int = 1
    budget_s: float | None = 30.0  # per measurement: stop repeating (after 3 runs) once spent
    compare: bool = False          # time the references (captum, lime) too
    floors: bool = True            # forward throughput and each forward-only method's floor
    backends: bool = True          # forward-only methods also on the torch module (smallest batch only)
    memory: bool = True
    seed: int = 0
    method_batch_size: int | None = None  # rows per batch inside a method (None: each method's default)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method overrides of DEFAULT_PARAMS
    floor_batch_sizes: tuple[int, ...] = FLOOR_BATCH_SIZES

    def method_params(self, method: str) -> dict[str, Any]:
        return {**DEFAULT_PARAMS.get(method, {}), **self.params.get(method, {})}


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """'1,16' -> (1, 16); anything else is a one-line BadInputError naming `what`."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BadInputError(f"{what} must be comma-separated whole numbers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise BadInputError(f"{what} must be whole numbers >= 1, got {text!r}")
    return values


def parse_methods(text: str | None) -> tuple[str, ...]:
    """'saliency,ig' -> ('saliency', 'ig'); unknown names list the benchmarked ones."""
    if text is None or text.strip() in ("", "all"):
        return METHODS
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise BadInputError(f"unknown method {', '.join(unknown) or repr(text)}; "
                            f"benchmarked methods: {', '.join(METHODS)}")
    return names


def synthetic_images(spec: Any, n: int, seed: int = 0) -> np.ndarray:
    """`n` seeded, image-like uint8 pictures (H, W, C) at the model's size: blurred noise, so that
    segmenters find superpixels as in a photo rather than in white noise."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((n, spec.height, spec.width, spec.channels), np.uint8)
    sigma = max(1.0, 0.04 * max(spec.height, spec.width))
    for i in range(n):
        noise = rng.uniform(0, 255, (spec.height, spec.width, spec.channels)).astype(np.float32)
        img = cv2.GaussianBlur(noise, (0, 0), sigma).reshape(noise.shape)
        lo, hi = float(img.min()), float(img.max())
        out[i] = np.clip((img - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    return out


def environment(device: str) -> dict[str, Any]:
    """Where the numbers came from: CPU model and cores, threads, GPU, library versions."""
    import torch

    from .explanation import library_versions

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    versions = dict(library_versions())
    from importlib import metadata

    for dist in ("captum", "lime"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    env = {"device": device, "cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable,
           "torch_threads": torch.get_num_threads(), "platform": platform.platform(), "versions": versions}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env


@dataclass
class BenchReport:
    model: str
    path: str
    sha256: str
    device: str
    environment: dict[str, Any]
    config: dict[str, Any]
    throughput: dict[str, Throughput] = field(default_factory=dict)
    rows: list[BenchRow] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def device_name(self) -> str:
        env = self.environment
        if self.device == "cuda":
            return str(env.get("gpu", "cuda"))
        return f"{env.get('cpu', 'cpu')}, {env.get('usable_cores', '?')} cores"

    def missed(self) -> list[tuple[BenchRow, Check]]:
        return [(r, c) for r in self.rows for c in r.checks if c.met is False]

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "path": self.path, "sha256": self.sha256, "device": self.device,
                "device_name": self.device_name, "environment": self.environment, "config": self.config,
                "seconds": self.seconds,
                "throughput": {k: v.as_dict() for k, v in self.throughput.items()},
                "rows": [r.as_dict() for r in self.rows]}


def map_agreement(method: str, ours: Any, reference: Any) -> float | None:
    """max |ours - reference| / max |reference| over the maps of one row: did both sides do the same work?

    SmoothGrad draws different noise on each side, so the mean map over the images is compared
    (both estimate the same expectation); LIME samples different patterns, so it is not compared.
    """
    if ours is None or reference is None or method == "lime":
        return None
    a, b = np.asarray(ours.maps, np.float64), np.asarray(reference, np.float64)
    if method == "smoothgrad":
        a, b = a.mean(axis=0), b.mean(axis=0)
    if a.shape != b.shape:
        raise ValueError(f"{method}: our maps {a.shape} and the reference's {b.shape} differ in shape")
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def ours_call(model: Any, method: str, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], seed: int,
              batch_size: int | None = None) -> Callable[[], Any]:
    """Our method as `explain` runs it, on model input `x` with the targets fixed (no prediction step)."""
    from .registry import explain

    return lambda: explain(model, x, method, targets=targets, preprocessed=True, batch_size=batch_size,
                           seed=seed, **params)


def run_benchmark(
    model: "Model",
    images: np.ndarray | Sequence[np.ndarray] | None = None,
    config: BenchConfig = BenchConfig(),
    *,
    name: str | None = None,
    progress: Callable[[str, float | None], None] | None = None,
    clock: Clock = time.perf_counter,
) -> BenchReport:
    """Time every configured method on `model` (ours, and the references with `compare`), with the
    forward-pass floors, and check the targets. `images` are user images (pixels); None: seeded
    synthetic ones. Fewer images than the largest batch size are cycled. `progress(description,
    fraction done)` is called before each measurement.

    The floors are measured just before the first forward-only method, so that the floor and the
    methods it bounds see the machine in the same state.
    """
    from .registry import get_method, resolve_targets

    for m in config.methods:
        get_method(m)  # unknown or unregistered names fail here, before any timing
    if config.compare:
        check_references(config.methods)
    started = clock()
    n_max = max(config.batch_sizes)
    x_all = model.spec.to_model_input(synthetic_images(model.spec, n_max, config.seed) if images is None else images)
    if len(x_all) == 0:
        raise BadInputError("no images to benchmark with")
    x_all = x_all[np.arange(n_max) % len(x_all)]
    report = BenchReport(name or model.path.stem, str(model.path), model.sha256, model.device,
                         environment(model.device), {**dataclasses.asdict(config), "params": {
                             m: config.method_params(m) for m in config.methods}})
    runner = _Runner(model, config, report, x_all, resolve_targets(model, x_all, None), progress, clock)
    runner.build_modules()
    for method in config.methods:
        if method in FORWARD_METHODS and config.floors and not report.throughput:
            runner.floors()
        for n in config.batch_sizes:
            report.rows.append(runner.row(method, n))
    report.seconds = clock() - started
    if progress is not None:
        progress(f"{report.model}: done", 1.0)
    return report


class _Runner:
    """The measurements of one `run_benchmark` call."""

    def __init__(self, model: "Model", config: BenchConfig, report: BenchReport, x_all: np.ndarray,
                 t_all: np.ndarray, progress: Callable[[str, float | None], None] | None, clock: Clock) -> None:
        self.model, self.config, self.report = model, config, report
        self.x_all, self.t_all = x_all, t_all
        self.progress, self.clock = progress, clock
        self.refs = References(model) if config.compare else None
        self.plan, self.done = _plan_size(config), 0

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(f"{self.report.model}: {message}", self.done / self.plan)
        self.done += 1

    def measure_calls(self, fns: Sequence[Callable[[], Any]], images: int) -> list[Measurement]:
        c = self.config
        return measure_calls(fns, images=images, device=self.model.device, repeats=c.repeats, warmup=c.warmup,
                             budget_s=c.budget_s, memory=c.memory, clock=self.clock)

    def build_modules(self) -> None:
        """Build (and check) the torch modules once, outside every measured call."""
        methods = self.config.methods
        if not (any(m in GRADIENT_METHODS for m in methods)
                or (self.config.backends and any(m in FORWARD_METHODS for m in methods))):
            return
        self.say("building the torch modules")
        _ = self.model.torch_module
        if self.refs is not None and any(m in REFERENCES and m != "lime" for m in methods):
            _ = self.refs.plain

    def floors(self) -> None:
        c = self.config
        for backend in ("onnxruntime", "torch") if c.backends else ("onnxruntime",):
            self.say(f"forward throughput on {backend}")
            self.report.throughput[backend] = forward_throughput(
                self.model, self.x_all, backend, c.floor_batch_sizes, repeats=max(3, min(c.repeats, 5)),
                warmup=c.warmup, budget_s=c.budget_s, clock=self.clock)

    def row(self, method: str, n: int) -> BenchRow:
        from .registry import get_method

        c, model = self.config, self.model
        params = c.method_params(method)
        batch_size = c.method_batch_size or get_method(method).default_batch_size
        x, t = self.x_all[:n], self.t_all[:n]
        calls = {"onnxplain": ours_call(model, method, x, t, params, c.seed, batch_size)}
        if self.refs is not None:
            calls.update(self.refs.build(method, x, t, params, batch_size=batch_size, seed=c.seed))
        self.say(f"{method} on {n} image(s), {' vs '.join(calls)}")
        measured = dict(zip(calls, self.measure_calls(list(calls.values()), n)))
        ours = measured.pop("onnxplain")
        row = BenchRow(self.report.model, method, params, n, model.device, dataclasses.replace(ours, result=None))
        if measured:
            best = min(measured, key=lambda k: measured[k].timing.median)
            row.agreement = map_agreement(method, ours.result, measured[best].result)
            row.reference_variants = {k: dataclasses.replace(v, result=None) for k, v in measured.items()}
            row.reference_name, row.reference = best, row.reference_variants[best]
            row.ratios = tuple(paired_ratios(row.reference.timing, row.ours.timing).tolist())
        if method in FORWARD_METHODS:
            row.forward_passes = forward_passes(method, params, model) * n
            if "onnxruntime" in self.report.throughput:
                row.floor_s = self.report.throughput["onnxruntime"].floor_s(row.forward_passes)
            if c.backends and n == min(c.batch_sizes):
                self.say(f"{method} on {n} image(s), onnxplain on the torch module")
                torch_model = TorchBackendModel(model)
                (torch_run,) = self.measure_calls([ours_call(torch_model, method, x, t, params, c.seed, batch_size)], n)
                row.torch_backend = dataclasses.replace(torch_run, result=None)
                if "torch" in self.report.throughput:
                    row.torch_floor_s = self.report.throughput["torch"].floor_s(row.forward_passes)
        row.evaluate()
        return row


def _plan_size(config: BenchConfig) -> int:
    """How many measurements `run_benchmark` makes (for the progress fraction)."""
    total = 0
    for m in config.methods:  # one interleaved measurement per row, plus the torch-backend run
        total += len(config.batch_sizes) + int(m in FORWARD_METHODS and config.backends)
    if config.floors and any(m in FORWARD_METHODS for m in config.methods):
        total += 2 if config.backends else 1
    if any(m in GRADIENT_METHODS for m in config.methods) or (config.backends and
                                                              any(m in FORWARD_METHODS for m in config.methods)):
        total += 1
    return max(total, 1)


# ============================================================================ output
MIB = 1024 * 1024


def _ms(t: Timing | None) -> str:
    return "" if t is None else f"{t.ms:.3g} ({t.iqr * 1e3:.2g})"


def _num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "" if v is None else fmt.format(v)


def _speedup(r: BenchRow) -> str:
    if r.speedup is None:
        return ""
    iqr = r.speedup_iqr
    return f"{r.speedup:.2f}x" + (f" ({iqr[0]:.2f}-{iqr[1]:.2f})" if iqr and len(r.ratios) > 1 else "")


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items()) or "defaults"


def _mib(v: int | None) -> str:
    return "" if v is None else f"{v / MIB:.0f}"


def _host_mem(m: Measurement | None) -> str:
    """Peak RSS of the run and, in brackets, how far it rose above the RSS before the run."""
    if m is None or m.memory is None:
        return ""
    return f"{_mib(m.memory.host_peak)} (+{_mib(m.memory.host_delta)})"


def _gpu_mem(m: Measurement | None) -> str:
    """Torch allocator peak and the sampled device-wide rise (onnxruntime's arena included)."""
    if m is None or m.memory is None or m.memory.gpu_allocator_peak is None:
        return ""
    return f"{_mib(m.memory.gpu_allocator_peak)} (+{_mib(m.memory.gpu_device_delta)})"


def _pair(a: str, b: str) -> str:
    return f"{a} / {b}" if b else a


def check_text(c: Check) -> str:
    if c.met is None:
        return f"not measured: {c.target}"
    return f"{'met' if c.met else '**MISSED**'}: {c.target} ({c.value:.3g})"


def table_rows(report: BenchReport, *, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """The main table (one row per method and batch) as header + cells; markdown and the CLI share it.
    `compact` (for a terminal) leaves out the parameters, the reference's name, passes and floor."""
    gpu = report.device == "cuda"
    head = ["method", "params", "images", "onnxplain ms (IQR)", "ms/image", "reference", "reference ms (IQR)",
            "speedup", "map diff", "passes", "floor ms", "ours/floor", "host MiB ours / ref"]
    if gpu:
        head.append("GPU MiB ours / ref")
    head.append("targets")
    rows = []
    for r in report.rows:
        cells = [r.method, _params(r.params), str(r.images), _ms(r.ours.timing), f"{r.ours.timing.ms_per_image:.3g}",
                 r.reference_name or "", _ms(r.reference.timing if r.reference else None),
                 _speedup(r), _num(r.agreement, "{:.1e}"), str(r.forward_passes or ""),
                 _num(r.floor_s and r.floor_s * 1e3, "{:.3g}"),
                 _num(r.floor_ratio, "{:.2f}x"), _pair(_host_mem(r.ours), _host_mem(r.reference))]
        if gpu:
            cells.append(_pair(_gpu_mem(r.ours), _gpu_mem(r.reference)))
        cells.append("; ".join(check_text(c) for c in r.checks) or "no target")
        rows.append(cells)
    if compact:
        keep = [i for i, h in enumerate(head) if h not in ("params", "reference", "map diff", "passes", "floor ms")]
        head = [head[i] for i in keep]
        rows = [[row[i].replace("**MISSED**", "MISSED") for i in keep] for row in rows]
    return head, rows


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def throughput_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Forward throughput (images/s) per backend and batch size."""
    sizes = sorted({b for t in report.throughput.values() for b in t.per_batch})
    return (["backend", *map(str, sizes), "best"],
            [[name, *(_num(t.images_per_s.get(b), "{:.0f}") for b in sizes), f"{t.best:.0f} (batch {t.best_batch})"]
             for name, t in report.throughput.items()])


def backend_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Forward-only methods on onnxruntime and on the torch module, each against its own floor."""
    head = ["method", "images", "passes", "onnxruntime ms", "floor ms", "ratio", "torch module ms", "floor ms",
            "ratio"]
    return head, [[r.method, str(r.images), str(r.forward_passes), f"{r.ours.timing.ms:.3g}",
                   _num(r.floor_s and r.floor_s * 1e3, "{:.3g}"), _num(r.floor_ratio, "{:.2f}x"),
                   _num(r.torch_backend.timing.ms if r.torch_backend else None, "{:.3g}"),
                   _num(r.torch_floor_s and r.torch_floor_s * 1e3, "{:.3g}"), _num(r.torch_floor_ratio, "{:.2f}x")]
                  for r in report.rows if r.forward_passes and r.torch_backend]


def markdown_notes(report: BenchReport) -> list[str]:
    """What the columns mean, and the count of targets met and missed."""
    cfg = report.config
    legend = (f"Medians of up to {cfg['repeats']} runs after {cfg['warmup']} warm-up run(s), interquartile range in "
              "brackets. onnxplain and its reference are timed interleaved (one call of each per round, the order "
              "alternating); speedup = median over rounds of reference / onnxplain (IQR in brackets); map diff = "
              "max |ours - reference| / max |reference| (SmoothGrad: of the mean maps; LIME: not compared); "
              "ours/floor = onnxplain / the time its forward passes take at the model's best forward throughput; "
              "host MiB = the process's peak RSS during one run (+ its rise above the RSS before that run)")
    if report.device == "cuda":
        legend += ("; GPU MiB = torch's allocator peak (+ the rise of the device's used memory, which includes "
                   "onnxruntime's arena)")
    checks = [c for r in report.rows for c in r.checks]
    met = sum(c.met is True for c in checks)
    missed = sum(c.met is False for c in checks)
    return [legend + ".", f"Targets: {met} met, {missed} missed, {len(checks) - met - missed} not measured."]


def markdown(report: BenchReport) -> str:
    legend, summary = markdown_notes(report)
    lines = [f"### {report.model} on {report.device}: {report.device_name}", "", legend, ""]
    lines += _md_table(*table_rows(report))
    if report.throughput:
        lines += ["", "Forward throughput (images/s) by batch size:", ""]
        lines += _md_table(*throughput_rows(report))
    head, rows = backend_rows(report)
    if rows:
        lines += ["", "Forward-only methods by backend (ratio: to that backend's floor):", ""]
        lines += _md_table(head, rows)
    lines += ["", summary]
    return "\n".join(lines) + "\n"


def report_document(reports: Sequence[BenchReport]) -> dict[str, Any]:
    """The one JSON document for a run over several models."""
    return {"onnxplain_benchmark": 1, "reports": [r.as_dict() for r in reports]}
