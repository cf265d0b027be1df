"""The timing harness: clock and device mocked for the helpers; a tiny model for the full run.

No speed is asserted here (speed targets live in benchmarks/); these tests check that the
machinery measures what it says: warm-up counted out, the device synchronised before every clock
read, medians and IQRs right, peaks reported, targets judged, references fed the same work.
"""
from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from onnxplain.engine import Model, explain
from onnxplain.benchmarks.floors import TorchBackendModel, forward_passes, forward_throughput
from onnxplain.benchmarks.memory import GpuPeak, HostPeak, Measurement, Memory, measure_calls, measure_memory
from onnxplain.benchmarks.output import markdown, report_document
from onnxplain.benchmarks.references import References, check_references, map_agreement
from onnxplain.benchmarks.results import BenchRow, Throughput
from onnxplain.benchmarks.runner import (
    BenchConfig, environment, is_forward, parse_int_list, parse_methods, run_benchmark, synthetic_images,
)
from onnxplain.benchmarks.targets import TARGETS
from onnxplain.benchmarks.timing import Timing, device_sync, paired_ratios, profile_call, time_call, time_calls
from onnxplain.engine.errors import BadInputError


class FakeClock:
    """Advances by the next step on every read and logs the read."""

    def __init__(self, steps: list[float], log: list[str]) -> None:
        self.now = 100.0
        self.steps = list(steps)
        self.log = log

    def __call__(self) -> float:
        self.log.append("clock")
        self.now += self.steps.pop(0) if self.steps else 0.0
        return self.now


# ------------------------------------------------------------------------------------ time_call
def test_warmup_runs_are_counted_out_and_samples_are_the_timed_intervals() -> None:
    log: list[str] = []
    calls: list[int] = []
    # Reads come in pairs (start, end); the end read advances by the run's duration.
    durations = [0.5, 0.25, 0.75]
    steps = [x for d in durations for x in (0.0, d)]
    timing = time_call(lambda: calls.append(1), repeats=3, warmup=2, clock=FakeClock(steps, log),
                       sync=lambda: log.append("sync"))
    assert len(calls) == 5  # 2 warm-up + 3 timed
    assert timing.samples == pytest.approx(tuple(durations))
    assert timing.warmup == 2
    assert log.count("clock") == 6  # the warm-up runs never read the clock


def test_sync_is_called_before_every_clock_read_and_after_each_run() -> None:
    log: list[str] = []

    def fn() -> None:
        log.append("fn")

    time_call(fn, repeats=4, warmup=1, clock=FakeClock([0.1] * 8, log), sync=lambda: log.append("sync"))
    reads = [i for i, e in enumerate(log) if e == "clock"]
    assert len(reads) == 8
    assert all(log[i - 1] == "sync" for i in reads)
    # every timed fn is followed by a sync then the closing clock read: queued device work is inside
    for i, e in enumerate(log):
        if e == "fn" and i > log.index("clock"):
            assert log[i + 1:i + 3] == ["sync", "clock"]


def test_median_and_interquartile_range() -> None:
    t = Timing((0.004, 0.001, 0.1, 0.003, 0.002), warmup=1, images=4)
    assert t.median == pytest.approx(0.003)
    assert t.q1 == pytest.approx(0.002) and t.q3 == pytest.approx(0.004)
    assert t.iqr == pytest.approx(0.002)  # the 0.1 outlier moves neither
    assert t.ms_per_image == pytest.approx(0.75)
    assert t.images_per_s == pytest.approx(4 / 0.003)
    even = Timing((1.0, 2.0, 3.0, 4.0), warmup=0)
    assert even.median == 2.5 and even.q1 == pytest.approx(1.75) and even.q3 == pytest.approx(3.25)
    with pytest.raises(ValueError):
        Timing((), warmup=0)


def test_budget_stops_repeating_once_spent_but_keeps_the_minimum() -> None:
    log: list[str] = []
    timing = time_call(lambda: None, repeats=10, warmup=0, clock=FakeClock([0.0, 2.0] * 10, log),
                       budget_s=3.0, min_repeats=3)
    assert len(timing.samples) == 3  # budget spent after 2, but 3 are the minimum
    timing = time_call(lambda: None, repeats=10, warmup=0, clock=FakeClock([0.0, 2.0] * 10, []),
                       budget_s=100.0, min_repeats=3)
    assert len(timing.samples) == 10


def test_interleaved_calls_alternate_order_and_pair_up_by_round() -> None:
    log: list[str] = []
    # per round: ours 1 s, theirs 3 s, whatever the order
    durations = {"ours": 1.0, "theirs": 3.0}
    clock = FakeClock([], log)

    def call(name: str) -> Any:
        def run() -> None:
            log.append(name)
            clock.steps[:] = [durations[name]]  # the closing clock read advances by this call's time
        return run

    ours, theirs = time_calls([call("ours"), call("theirs")], repeats=4, warmup=1, clock=clock,
                              sync=lambda: log.append("sync"))
    calls = [e for e in log if e in durations]
    assert calls[:2] == ["ours", "theirs"]  # the warm-up round
    assert calls[2:] == ["ours", "theirs", "theirs", "ours", "ours", "theirs", "theirs", "ours"]
    assert ours.samples == pytest.approx((1.0,) * 4) and theirs.samples == pytest.approx((3.0,) * 4)
    np.testing.assert_allclose(paired_ratios(theirs, ours), [3.0] * 4)
    reads = [i for i, e in enumerate(log) if e == "clock"]
    assert all(log[i - 1] == "sync" for i in reads)
    with pytest.raises(ValueError, match="same rounds"):
        paired_ratios(Timing((1.0, 2.0), 0), Timing((1.0,), 0))


def test_budget_counts_every_interleaved_call() -> None:
    log: list[str] = []
    timings = time_calls([lambda: None, lambda: None], repeats=10, warmup=0, clock=FakeClock([0.0, 1.0] * 40, log),
                         budget_s=5.0, min_repeats=2)
    assert [len(t.samples) for t in timings] == [3, 3]  # 2 s per round: the budget is spent after 3 rounds


def test_speedup_is_the_median_of_paired_ratios() -> None:
    ours, ref = _measurement(0.01, 1), _measurement(0.05, 1)
    row = BenchRow("m", "ig", {"steps": 50}, 1, "cpu", ours, "captum IntegratedGradients", ref,
                   ratios=(1.0, 2.0, 3.0, 10.0))
    assert row.speedup == pytest.approx(2.5) and row.speedup_iqr == pytest.approx((1.75, 4.75))
    assert BenchRow("m", "ig", {}, 1, "cpu", ours, "r", ref).speedup == pytest.approx(5.0)  # no pairs: medians


def test_bad_repeat_counts_are_user_errors() -> None:
    with pytest.raises(BadInputError):
        time_call(lambda: None, repeats=0)
    with pytest.raises(BadInputError):
        time_call(lambda: None, warmup=-1)


# ------------------------------------------------------------------------------------ devices
class FakeCuda:
    """torch.cuda's memory and synchronisation calls, logged; allocations simulated."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.allocated = 1000
        self.peak = 1000
        self.used = 10_000

    def synchronize(self) -> None:
        self.log.append("sync")

    def reset_peak_memory_stats(self) -> None:
        self.log.append("reset")
        self.peak = self.allocated

    def memory_allocated(self) -> int:
        return self.allocated

    def max_memory_allocated(self) -> int:
        self.log.append("max")
        return self.peak

    def mem_get_info(self) -> tuple[int, int]:
        return 1_000_000 - self.used, 1_000_000

    def run(self) -> None:
        """A kernel that allocates 5000 bytes, and 3000 more on the device outside torch (onnxruntime)."""
        self.log.append("fn")
        self.peak = max(self.peak, self.allocated + 5000)
        self.used += 3000
        time.sleep(0.03)  # let the device sampler see it
        self.used -= 3000


def test_device_sync_is_torch_cuda_synchronize_on_cuda_and_a_no_op_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    log: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: log.append("cuda-sync"))
    device_sync("cuda")()
    assert log == ["cuda-sync"]
    device_sync("cpu")()
    assert log == ["cuda-sync"]
    with pytest.raises(BadInputError):
        device_sync("tpu")


def test_measure_on_cuda_synchronises_and_reports_gpu_peaks(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    log: list[str] = []
    cuda = FakeCuda(log)
    for name in ("synchronize", "reset_peak_memory_stats", "memory_allocated", "max_memory_allocated",
                 "mem_get_info"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    clock = FakeClock([0.0, 0.002] * 3, log)
    (m,) = measure_calls([cuda.run], images=2, device="cuda", repeats=3, warmup=1, clock=clock)
    reads = [i for i, e in enumerate(log) if e == "clock"]
    assert all(log[i - 1] == "sync" for i in reads)
    assert m.timing.samples == pytest.approx((0.002,) * 3)
    assert m.result is None  # what cuda.run returned on the first (untimed) run
    # the memory probes wrap the warm-up run: no extra run, and no timed run is probed
    assert log.count("fn") == 4 and m.timing.warmup == 1
    assert log.index("max") < log.index("clock")
    assert m.memory is not None
    assert m.memory.gpu_allocator_delta == 5000
    assert m.memory.gpu_device_delta == 3000
    # the allocator's peak is reset before the measured run and read after it, both synchronised
    mem_run = log[log.index("reset"):]
    assert mem_run.index("fn") < mem_run.index("max")
    assert log[log.index("reset") - 1] == "sync"


def test_gpu_peak_with_an_injected_cuda_module() -> None:
    log: list[str] = []
    cuda = FakeCuda(log)
    with GpuPeak(cuda, interval=0.001) as gpu:
        cuda.run()
    assert gpu.allocator_peak - gpu.allocator_before == 5000
    assert gpu.device_peak - gpu.device_before == 3000
    assert log[:2] == ["sync", "reset"]


@pytest.mark.parametrize("use_hwm", [True, False])
def test_host_peak_sees_a_transient_allocation(use_hwm: bool) -> None:
    def allocate() -> None:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
        time.sleep(0.05)
        del block

    with HostPeak(0.001, use_hwm=use_hwm) as host:
        allocate()
    assert host.delta >= 48 * 1024 * 1024
    assert host.peak >= host.before
    assert ("VmHWM" in host.how) == use_hwm or host.how.startswith("sampled")


def test_measure_without_warmup_probes_memory_in_an_extra_untimed_run() -> None:
    calls: list[int] = []
    (m,) = measure_calls([lambda: calls.append(1)], images=1, repeats=2, warmup=0,
                         clock=FakeClock([0.0, 0.1] * 2, []))
    assert len(calls) == 3 and len(m.timing.samples) == 2 and m.timing.warmup == 0
    assert m.memory is not None
    (m,) = measure_calls([lambda: calls.append(1)], images=1, repeats=2, warmup=0, memory=False)
    assert m.memory is None


def test_measure_memory_on_cpu_has_no_gpu_fields() -> None:
    mem = measure_memory(lambda: np.ones(1 << 20).sum(), device="cpu")
    assert mem.gpu_allocator_peak is None and mem.gpu_device_delta is None
    assert mem.host_peak >= mem.host_before > 0
    assert set(mem.as_dict()) >= {"host_peak", "host_delta", "gpu_allocator_delta"}


def test_profile_names_where_the_time_goes() -> None:
    def slow_part() -> None:
        time.sleep(0.02)

    text = profile_call(lambda: slow_part(), top=5)
    assert "slow_part" in text and "cumulative" in text


# ------------------------------------------------------------------------------------ targets and floors
def _measurement(seconds: float, images: int) -> Measurement:
    return Measurement(Timing((seconds,), 1, images), Memory(100, 150, "VmHWM"))


def test_targets_are_judged_per_device_method_and_batch() -> None:
    row = BenchRow("m", "saliency", {}, 1, "cpu", _measurement(0.01, 1), "captum Saliency", _measurement(0.025, 1))
    (check,) = row.evaluate()
    assert row.speedup == pytest.approx(2.5) and check.met is True
    row = BenchRow("m", "occlusion", {"window": 8, "stride": 4}, 1, "cpu", _measurement(0.03, 1),
                   "captum Occlusion", _measurement(0.06, 1), floor_s=0.02)
    checks = {c.target: c for c in row.evaluate()}
    assert checks["floor_ratio <= 1.2x of floor"].met is False
    assert checks["floor_ratio <= 1.2x of floor"].value == pytest.approx(1.5)
    assert checks["speedup >= 3x vs reference"].met is False
    no_ref = BenchRow("m", "lime", {"samples": 1000}, 1, "cpu", _measurement(0.5, 1))
    assert {c.met for c in no_ref.evaluate() if "speedup" in c.target} == {None}  # not measured, not "met"
    gpu1 = BenchRow("m", "ig", {"steps": 50}, 1, "cuda", _measurement(0.0015, 1))
    gpu16 = BenchRow("m", "ig", {"steps": 50}, 16, "cuda", _measurement(0.007, 16))
    other = BenchRow("m", "ig", {"steps": 16}, 1, "cuda", _measurement(0.0015, 1))
    assert [c.met for c in gpu1.evaluate()] == [True]
    assert [c.met for c in gpu16.evaluate()] == [False]
    assert other.evaluate() == []
    lime16 = BenchRow("m", "lime", {"samples": 1000}, 16, "cuda", _measurement(0.112, 16))
    assert [(c.value, c.met) for c in lime16.evaluate()] == [(pytest.approx(7.0), True)]
    assert {t.method for t in TARGETS} == {"saliency", "smoothgrad", "ig", "gradcam", "occlusion", "lime"}


def test_throughput_picks_the_best_batch_and_prices_passes() -> None:
    tp = Throughput("onnxruntime", {64: Timing((0.5,), 1, 1024), 256: Timing((0.25,), 1, 1024),
                                    1024: Timing((0.4,), 1, 1024)})
    assert tp.best_batch == 256 and tp.best == pytest.approx(4096)
    assert tp.floor_s(2048) == pytest.approx(0.5)


def test_parsers_reject_bad_input() -> None:
    assert parse_int_list("1, 16", "--batch-sizes") == (1, 16)
    assert parse_methods("ig,lime") == ("ig", "lime")
    assert parse_methods(None) == parse_methods("all")
    for bad in ("0", "a,b", "", "-1"):
        with pytest.raises(BadInputError, match="--batch-sizes"):
            parse_int_list(bad, "--batch-sizes")
    with pytest.raises(BadInputError, match="benchmarked methods"):
        parse_methods("saliency,deepdream")


# ------------------------------------------------------------------------------------ on a real (tiny) model
@pytest.fixture(scope="module")
def tiny(tiny_onnx: Any) -> Model:
    return Model(tiny_onnx(channels=1, size=16, classes=4, softmax=True))


class CountingModel(TorchBackendModel):
    """Counts the rows that go through the forward passes."""

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        self.rows = 0

    def predict(self, x: np.ndarray, batch_size: int = 256, **kw: Any) -> np.ndarray:
        self.rows += len(x)
        return self._model.predict(x, batch_size)

    def predict_tensor(self, x: Any, batch_size: int = 256) -> np.ndarray:
        self.rows += len(x)
        return self._model.predict_tensor(x, batch_size)


@pytest.mark.parametrize("method,params", [("occlusion", {"window": 4, "stride": 3}),
                                           ("occlusion", {"window": (5, 4), "stride": 2}),
                                           ("lime", {"samples": 50})])
def test_forward_passes_counts_what_the_method_runs(tiny: Model, method: str, params: dict[str, Any]) -> None:
    x = tiny.spec.to_model_input(synthetic_images(tiny.spec, 3))
    counting = CountingModel(tiny)
    explain(counting, x, method, targets=[0, 1, 2], preprocessed=True, **params)  # type: ignore[arg-type]
    # explain and make_explanation may add one scoring pass per image on top of the method's own
    assert forward_passes(method, params, tiny) * 3 <= counting.rows <= (forward_passes(method, params, tiny) + 1) * 3
    assert is_forward(method)


def test_torch_backend_model_predicts_like_onnxruntime(tiny: Model) -> None:
    x = tiny.spec.to_model_input(synthetic_images(tiny.spec, 5))
    np.testing.assert_allclose(TorchBackendModel(tiny).predict(x, 2), tiny.predict(x), atol=1e-5)
    a = explain(tiny, x, "occlusion", targets=0, preprocessed=True, window=4, stride=4)
    torch_backed: Any = TorchBackendModel(tiny)
    b = explain(torch_backed, x, "occlusion", targets=0, preprocessed=True, window=4, stride=4)
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-5)


def test_forward_throughput_runs_full_batches_on_both_backends(tiny: Model) -> None:
    x = tiny.spec.to_model_input(synthetic_images(tiny.spec, 2))
    for backend in ("onnxruntime", "torch"):
        tp = forward_throughput(tiny, x, backend, (4, 16), repeats=2, warmup=0)
        assert set(tp.per_batch) == {4, 16}
        assert all(t.images == 16 and len(t.samples) == 2 for t in tp.per_batch.values())
        assert tp.best > 0
    with pytest.raises(BadInputError):
        forward_throughput(tiny, x, "tensorrt", (4,))


@pytest.mark.parametrize("method,params,atol", [
    ("saliency", {}, 1e-6), ("ig", {"steps": 8}, 1e-5), ("gradcam", {}, 1e-6),
    ("occlusion", {"window": 4, "stride": 2}, 1e-6), ("occlusion", {"window": 4, "stride": 2, "baseline": 128.0}, 1e-6),
])
def test_references_do_the_same_work_as_ours(tiny: Model, tiny_onnx: Any, method: str, params: dict[str, Any],
                                            atol: float) -> None:
    """Same model, images and parameters: Captum's answer equals ours, so the timings compare like with like
    (on a gray NCHW model and an RGB NHWC one)."""
    for model in (tiny, Model(tiny_onnx(channels=3, layout="NHWC", size=16, classes=4, softmax=True))):
        x = model.spec.to_model_input(synthetic_images(model.spec, 3, seed=1))
        targets = np.array([0, 2, 3])
        ours = explain(model, x, method, targets=targets, preprocessed=True, **params)
        (call,) = References(model).build(method, x, targets, params, batch_size=64).values()
        np.testing.assert_allclose(call(), ours.maps, atol=atol)
        assert map_agreement(method, ours, call()) < 1e-3  # relative: float32 rounding on tiny score drops


def test_map_agreement_is_relative_and_skips_what_cannot_match() -> None:
    ours = SimpleNamespace(maps=np.array([[[1.0, 2.0]], [[3.0, 4.0]]]))
    assert map_agreement("saliency", ours, np.array([[[1.0, 2.0]], [[3.0, 3.0]]])) == pytest.approx(1 / 3)
    # SmoothGrad: the mean maps over images are compared
    assert map_agreement("smoothgrad", ours, np.array([[[3.0, 4.0]], [[1.0, 2.0]]])) == 0.0
    assert map_agreement("lime", ours, object()) is None
    assert map_agreement("ig", None, np.zeros(2)) is None
    with pytest.raises(ValueError, match="differ in shape"):
        map_agreement("ig", ours, np.zeros((2, 2, 2)))


def test_lime_reference_is_the_lime_package_at_both_batch_sizes(tiny: Model) -> None:
    x = tiny.spec.to_model_input(synthetic_images(tiny.spec, 2))
    calls = References(tiny).build("lime", x, np.array([1, 2]), {"samples": 40})
    assert sorted(calls) == ["lime LimeImageExplainer (batch_size=10)", "lime LimeImageExplainer (batch_size=1000)"]
    for call in calls.values():
        explanations = call()
        assert len(explanations) == 2
        assert [list(e.local_exp) for e in explanations] == [[1], [2]]
    smooth = References(tiny).build("smoothgrad", x, np.array([1, 2]), {"samples": 4, "sigma": 0.1})
    (maps,) = [c() for c in smooth.values()]
    assert maps.shape == (2, 16, 16) and np.all(maps >= 0)


def test_missing_reference_package_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_captum(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("captum"):
            raise ImportError("No module named 'captum'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_captum)
    monkeypatch.delitem(__import__("sys").modules, "captum.attr", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "captum", raising=False)
    with pytest.raises(BadInputError, match=r"needs the captum package.*onnxplain\[test\]"):
        check_references(["saliency"])


def test_run_benchmark_end_to_end(tiny: Model) -> None:
    config = BenchConfig(methods=("saliency", "occlusion"), batch_sizes=(1, 3), repeats=2, warmup=1, compare=True,
                         params={"occlusion": {"window": 4, "stride": 4}}, floor_batch_sizes=(8, 32))
    seen: list[tuple[str, float | None]] = []
    report = run_benchmark(tiny, None, config, name="tiny", progress=lambda d, f: seen.append((d, f)))
    assert [(r.method, r.images) for r in report.rows] == [("saliency", 1), ("saliency", 3), ("occlusion", 1),
                                                            ("occlusion", 3)]
    for r in report.rows:
        assert len(r.ours.timing.samples) == 2 and r.ours.timing.warmup == 1
        assert r.reference is not None and r.speedup and r.speedup > 0
        assert r.agreement is not None and r.agreement < 1e-3  # both sides computed the same maps
        assert r.ours.result is None and r.reference.result is None  # outputs are not kept once compared
        assert len(r.ratios) == 2 == len(r.reference.timing.samples)  # interleaved: one ratio per round
        assert r.ours.memory is not None and r.ours.memory.host_peak > 0
        assert r.checks  # every method has a CPU target
    occ1, occ3 = report.rows[2:]
    assert occ3.forward_passes == 3 * (4 * 4 + 1)
    assert occ3.floor_s == pytest.approx(occ3.forward_passes / report.throughput["onnxruntime"].best)
    # the torch-module backend is timed on the smallest batch only
    assert occ1.torch_backend is not None and occ1.torch_floor_s is not None and occ3.torch_backend is None
    assert set(report.throughput) == {"onnxruntime", "torch"}
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # the floors are measured right before the first forward-only method, after the gradient methods
    steps = [d for d, _ in seen]
    floor_at = steps.index("tiny: forward throughput on onnxruntime")
    assert max(i for i, d in enumerate(steps) if "saliency" in d) < floor_at < steps.index(
        "tiny: occlusion on 1 image(s), onnxplain vs captum Occlusion")
    doc = json.loads(json.dumps(report_document([report])))
    assert doc["reports"][0]["rows"][0]["reference_name"] == "captum Saliency"
    md = markdown(report)
    assert md.count("\n| saliency |") == 2
    assert md.count("\n| occlusion |") == 3  # the main table and the by-backend table
    assert "Forward throughput" in md and "Targets:" in md
    assert "MISSED" in md or "met:" in md


def test_run_benchmark_rejects_unknown_methods_before_timing(tiny: Model) -> None:
    with pytest.raises(BadInputError, match="unknown method"):
        run_benchmark(tiny, None, BenchConfig(methods=("saliency", "nope")))


def test_synthetic_images_are_seeded_and_image_like(tiny: Model) -> None:
    a, b = synthetic_images(tiny.spec, 2, seed=3), synthetic_images(tiny.spec, 2, seed=3)
    assert a.dtype == np.uint8 and a.shape == (2, 16, 16, 1)
    np.testing.assert_array_equal(a, b)
    assert a.min() == 0 and a.max() == 255
    # neighbouring pixels are correlated (blurred), unlike white noise
    img = a[0, ..., 0].astype(float)
    assert np.corrcoef(img[:, :-1].ravel(), img[:, 1:].ravel())[0, 1] > 0.5


def test_environment_names_the_machine(tiny: Model) -> None:
    env = environment("cpu")
    assert env["usable_cores"] >= 1 and env["cpu"] and "torch" in env["versions"]
    assert SimpleNamespace(**env).device == "cpu"


@pytest.mark.parametrize("method,params", [("saliency", {}), ("ig", {"steps": 8}), ("gradcam", {})])
def test_captum_on_our_own_module_does_the_same_work(tiny: Model, method: str, params: dict[str, Any]) -> None:
    """The "vs Captum on our module" column times Captum on Model.torch_scores: the same maps as ours."""
    x = tiny.spec.to_model_input(synthetic_images(tiny.spec, 3, seed=2))
    targets = np.array([1, 0, 3])
    ours = explain(tiny, x, method, targets=targets, preprocessed=True, **params)
    ((label, call),) = References(tiny, own_module=True).build(method, x, targets, params, batch_size=64).items()
    assert label.endswith(" on our module") and label.startswith("captum ")
    np.testing.assert_allclose(call(), ours.maps, atol=1e-5)


def test_gradient_rows_time_captum_on_our_module_in_the_same_rounds_and_say_the_threads(tiny: Model) -> None:
    config = BenchConfig(methods=("saliency", "occlusion"), batch_sizes=(2,), repeats=3, compare=True, floors=False,
                         backends=False, memory=False, params={"occlusion": {"window": 4, "stride": 4}})
    report = run_benchmark(tiny, None, config, name="tiny")
    sal, occ = report.rows
    assert sal.module_reference_name == "captum Saliency on our module"
    assert sal.module_reference is not None and len(sal.module_ratios) == 3 == len(sal.ratios)
    assert sal.module_speedup == pytest.approx(float(np.median(
        np.asarray(sal.module_reference.timing.samples) / np.asarray(sal.ours.timing.samples))))
    assert sal.reference_name == "captum Saliency"  # the plain-module reference stays the headline
    assert occ.module_reference is None and occ.module_speedup is None  # forward-only: no such column
    import torch

    threads = report.threads
    assert threads["torch"] == torch.get_num_threads() and isinstance(threads["onnxruntime"], int)
    doc = json.loads(json.dumps(report_document([report])))
    assert doc["reports"][0]["threads"] == threads
    assert doc["reports"][0]["rows"][0]["module_ratios"] == list(sal.module_ratios)
    md = markdown(report)
    assert "vs Captum on our module" in md and f"threads: torch {threads['torch']}" in md
    assert f"{sal.module_speedup:.2f}x" in md


def test_targets_come_from_the_data_file_with_their_sources(tmp_path: Any) -> None:
    from onnxplain.benchmarks.targets import TARGETS_FILE, load_targets

    assert TARGETS == load_targets(TARGETS_FILE) and all(t.source.startswith("issue ") for t in TARGETS)
    ig16 = [t for t in TARGETS if t.method == "ig" and t.images == 16]
    assert [(t.metric, t.op, t.limit, t.params) for t in ig16] == [("ms", "<=", 6.0, (("steps", 50),))]
    bad = tmp_path / "targets.toml"
    bad.write_text('[[target]]\nmethod = "ig"\nmetric = "fastness"\nop = ">="\nlimit = 1\ndevice = "cpu"\n')
    with pytest.raises(ValueError, match="bad target"):
        load_targets(bad)
