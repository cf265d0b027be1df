"""`run_benchmark`: every configured method on one model, ours against its reference (and, for methods
whose reference runs on a torch module, the same reference on onnxplain's own module), the forward
floors of the forward-only methods, the targets judged; returned as a `BenchReport`.

What is timed comes from the engine's registry: each method's backend, benchmark parameters
(`bench_params`), reference and forward-pass count. Nothing here pins threads: the run uses what the
process has (the default, as `explain` does) and records it; scripts pin them only when asked.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from onnxplain.engine.devices import parse_device
from onnxplain.engine.errors import BadInputError
from onnxplain.engine.registry import get_method, method_infos

from .floors import FLOOR_BATCH_SIZES, TorchBackendModel, forward_passes, forward_throughput
from .memory import Measurement, measure_calls
from .references import NoReference, References, check_references, map_agreement, reference_of
from .results import BenchReport, BenchRow
from .timing import Clock, paired_ratios

if TYPE_CHECKING:
    from onnxplain.engine.model import Model


def benchmarked_methods() -> tuple[str, ...]:
    """Every registered method: those on the torch module first, then the forward-only ones (whose
    floors are measured just before them), each group in the registry's order."""
    infos = method_infos()
    return tuple(i.name for i in infos if i.backend == "torch") + tuple(
        i.name for i in infos if i.backend != "torch")


def is_forward(method: str) -> bool:
    """A forward-only method (on onnxruntime): it has a forward floor and a torch-backend run."""
    return get_method(method).backend == "onnxruntime"


def uses_module(method: str) -> bool:
    """Its reference runs on a torch module (Captum): the plain module is built, and the reference is
    also run on our own module."""
    ref = reference_of(method)
    return ref is not None and ref.on_module


@dataclass(frozen=True)
class BenchConfig:
    methods: tuple[str, ...] = field(default_factory=benchmarked_methods)
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
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method overrides of `bench_params`
    floor_batch_sizes: tuple[int, ...] = FLOOR_BATCH_SIZES
    own_module: bool = True        # with compare: the Captum references on our own module too

    def method_params(self, method: str) -> dict[str, Any]:
        """The registry's benchmark parameters of `method`, with this run's overrides."""
        return {**get_method(method).bench_params, **self.params.get(method, {})}


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
    everything = benchmarked_methods()
    if text is None or text.strip() in ("", "all"):
        return everything
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in everything]
    if unknown or not names:
        raise BadInputError(f"unknown method {', '.join(unknown) or repr(text)}; "
                            f"benchmarked methods: {', '.join(everything)}")
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


def environment(device: str, model: "Model | None" = None) -> dict[str, Any]:
    """Where the numbers came from: CPU model and cores, the threads torch and the model's onnxruntime
    session use (0: onnxruntime's default, one per physical core), GPU, library versions."""
    import torch

    from onnxplain.engine.versions import library_versions

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
    if model is not None:
        env["onnxruntime_threads"] = int(model.session.get_session_options().intra_op_num_threads)
    kind, index = parse_device(device)
    if kind == "cuda":
        env["gpu"] = torch.cuda.get_device_name(index)
    return env


def ours_call(model: Any, method: str, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], seed: int,
              batch_size: int | None = None) -> Callable[[], Any]:
    """Our method as `explain` runs it, on model input `x` with the targets fixed (no prediction step)."""
    from onnxplain.engine.registry import explain

    return lambda: explain(model, x, method, targets=targets, preprocessed=True, batch_size=batch_size,
                           seed=seed, **params)


def run_benchmark(
    model: "Model",
    images: np.ndarray | Sequence[np.ndarray] | None = None,
    config: BenchConfig | None = None,
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
    from onnxplain.engine.registry import resolve_targets

    config = config or BenchConfig()
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
                         environment(model.device, model), {**dataclasses.asdict(config), "params": {
                             m: config.method_params(m) for m in config.methods}})
    runner = _Runner(model, config, report, x_all, resolve_targets(model, x_all, None), progress, clock)
    runner.build_modules()
    for method in config.methods:
        if is_forward(method) and config.floors and not report.throughput:
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
        self.own = References(model, own_module=True) if config.compare and config.own_module else None
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
        if not (any(not is_forward(m) for m in methods) or (self.config.backends and any(map(is_forward, methods)))):
            return
        self.say("building the torch modules")
        _ = self.model.torch_module
        if self.refs is not None and any(map(uses_module, methods)):
            _ = self.refs.plain

    def floors(self) -> None:
        c = self.config
        for backend in ("onnxruntime", "torch") if c.backends else ("onnxruntime",):
            self.say(f"forward throughput on {backend}")
            self.report.throughput[backend] = forward_throughput(
                self.model, self.x_all, backend, c.floor_batch_sizes, repeats=max(3, min(c.repeats, 5)),
                warmup=c.warmup, budget_s=c.budget_s, clock=self.clock)

    def reference_calls(self, method: str, x: np.ndarray, t: np.ndarray, params: dict[str, Any],
                        batch_size: int) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[], Any]]]:
        """The reference's calls and, for a gradient method whose reference runs on a torch module (Captum),
        the same reference on our own module."""
        if self.refs is None or reference_of(method) is None:
            return {}, {}
        c = self.config
        calls = self.refs.build(method, x, t, params, batch_size=batch_size, seed=c.seed)
        own: dict[str, Callable[[], Any]] = {}
        if self.own is not None and uses_module(method) and not is_forward(method):
            try:
                own = self.own.build(method, x, t, params, batch_size=batch_size, seed=c.seed)
            except NoReference as exc:  # e.g. a layer our rewrites fused away: the row says nothing of it
                self.report.notes.append(f"{method}: no reference on our module ({exc})")
        return calls, own

    def row(self, method: str, n: int) -> BenchRow:
        c, model = self.config, self.model
        params = c.method_params(method)
        batch_size = c.method_batch_size or get_method(method).default_batch_size
        x, t = self.x_all[:n], self.t_all[:n]
        refs, own = self.reference_calls(method, x, t, params, batch_size)
        calls = {"onnxplain": ours_call(model, method, x, t, params, c.seed, batch_size), **refs, **own}
        self.say(f"{method} on {n} image(s), {' vs '.join(calls)}")
        measured = dict(zip(calls, self.measure_calls(list(calls.values()), n)))
        ours = measured.pop("onnxplain")
        row = BenchRow(self.report.model, method, params, n, model.device, dataclasses.replace(ours, result=None))
        for label in own:
            row.module_reference_name = label
            row.module_reference = dataclasses.replace(measured.pop(label), result=None)
            row.module_ratios = tuple(paired_ratios(row.module_reference.timing, row.ours.timing).tolist())
        if measured:
            best = min(measured, key=lambda k: measured[k].timing.median)
            row.agreement = map_agreement(method, ours.result, measured[best].result)
            row.reference_variants = {k: dataclasses.replace(v, result=None) for k, v in measured.items()}
            row.reference_name, row.reference = best, row.reference_variants[best]
            row.ratios = tuple(paired_ratios(row.reference.timing, row.ours.timing).tolist())
        if is_forward(method) and get_method(method).forward_passes is not None:
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
        total += len(config.batch_sizes) + int(is_forward(m) and config.backends)
    if config.floors and any(map(is_forward, config.methods)):
        total += 2 if config.backends else 1
    if any(not is_forward(m) for m in config.methods) or (config.backends and any(map(is_forward, config.methods))):
        total += 1
    return max(total, 1)
