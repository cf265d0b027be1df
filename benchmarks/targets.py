"""The speed targets the tables judge, read from `targets.toml` (one data file, each target with the
figure it comes from), and the check of one row against them."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover  (Python 3.10)
    import tomli as tomllib

if TYPE_CHECKING:
    from .results import BenchRow

TARGETS_FILE = Path(__file__).with_name("targets.toml")
Metric = Literal["speedup", "module_speedup", "floor_ratio", "ms_per_image", "ms"]
UNITS = {"speedup": "x vs reference", "module_speedup": "x vs Captum on our module", "floor_ratio": "x of floor",
         "ms_per_image": " ms/image", "ms": " ms"}


@dataclass(frozen=True)
class Target:
    """A speed target, checked on the rows it applies to; `source` says which figure it comes from."""

    method: str
    metric: Metric
    op: Literal[">=", "<="]
    limit: float
    device: Literal["cpu", "cuda"]
    images: int | None = None
    params: tuple[tuple[str, Any], ...] = ()
    note: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.metric not in UNITS or self.op not in (">=", "<=") or self.device not in ("cpu", "cuda"):
            raise ValueError(f"bad target {self}: metric in {', '.join(UNITS)}, op >= or <=, device cpu or cuda")

    def applies(self, row: "BenchRow") -> bool:
        return (row.method == self.method and row.device == self.device
                and (self.images is None or row.images == self.images)
                and all(row.params.get(k) == v for k, v in self.params))

    def label(self) -> str:
        return f"{self.metric} {self.op} {self.limit:g}{UNITS[self.metric]}"


def load_targets(path: Path = TARGETS_FILE) -> tuple[Target, ...]:
    """Every `[[target]]` of a targets file, in its order."""
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    targets = []
    for entry in doc.get("target", []):
        entry = dict(entry)
        entry["params"] = tuple(sorted(entry.get("params", {}).items()))
        entry["limit"] = float(entry["limit"])
        try:
            targets.append(Target(**entry))
        except TypeError as exc:
            raise ValueError(f"{path}: bad target {entry}: {exc}") from None
    return tuple(targets)


TARGETS: tuple[Target, ...] = load_targets()


@dataclass(frozen=True)
class Check:
    target: str
    value: float | None
    met: bool | None  # None: the value could not be measured (e.g. no reference run)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
