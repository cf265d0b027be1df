"""What a benchmark run produces: one row per method and batch (`BenchRow`: ours, the reference, the
floor, the targets), forward throughput per backend (`Throughput`), and the report of one model
(`BenchReport`), each with `as_dict` for the JSON document."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from onnxplain.engine.devices import is_cuda

from .memory import Measurement
from .targets import TARGETS, Check, Target
from .timing import Timing


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
    # The same reference run on onnxplain's own module (Captum on Model.torch_scores), timed in the same rounds.
    module_reference_name: str | None = None
    module_reference: Measurement | None = None
    module_ratios: tuple[float, ...] = ()  # that reference / ours per interleaved round
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
        return _iqr(self.ratios)

    @property
    def module_speedup(self) -> float | None:
        """Captum on our own module / ours, median over the rounds (< 1: our method code costs more than
        Captum's around the same module)."""
        return float(np.median(self.module_ratios)) if self.module_ratios else None

    @property
    def module_speedup_iqr(self) -> tuple[float, float] | None:
        return _iqr(self.module_ratios)

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
        if name == "module_speedup":
            return self.module_speedup
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
            "module_reference_name": self.module_reference_name,
            "module_reference": self.module_reference.as_dict() if self.module_reference else None,
            "module_speedup": self.module_speedup, "module_speedup_iqr": self.module_speedup_iqr,
            "module_ratios": list(self.module_ratios),
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
    notes: list[str] = field(default_factory=list)  # what could not be measured, and why

    @property
    def device_name(self) -> str:
        env = self.environment
        if is_cuda(self.device):
            return str(env.get("gpu", "cuda"))
        return f"{env.get('cpu', 'cpu')}, {env.get('usable_cores', '?')} cores"

    @property
    def threads(self) -> dict[str, Any]:
        """The threads the run used: torch's, and the onnxruntime session's (0: onnxruntime's default)."""
        env = self.environment
        return {"torch": env.get("torch_threads"), "onnxruntime": env.get("onnxruntime_threads")}

    def missed(self) -> list[tuple[BenchRow, Check]]:
        return [(r, c) for r in self.rows for c in r.checks if c.met is False]

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "path": self.path, "sha256": self.sha256, "device": self.device,
                "device_name": self.device_name, "environment": self.environment, "config": self.config,
                "seconds": self.seconds, "threads": self.threads, "notes": self.notes,
                "throughput": {k: v.as_dict() for k, v in self.throughput.items()},
                "rows": [r.as_dict() for r in self.rows]}


def _iqr(ratios: Sequence[float]) -> tuple[float, float] | None:
    if not ratios:
        return None
    return float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))
