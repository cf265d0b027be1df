"""One submission, graded: the unit of work that the local pool (or Ray, or anything) dispatches.

`grade_one(submission, options, out_root)` is a plain function of picklable arguments that returns
a JSON-ready row and leaves `OUT/<id>/` complete or untouched: everything is written into a
temporary folder first and renamed into place at the end, so an interrupted run never leaves
half a submission behind, and a finished one is skipped on the next run (same content, same options).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ..errors import BadInputError, DeviceError, OnnxplainError, UnsupportedModelError, first_line
from ..sidecar import read_sidecar, write_json_atomic
from .submissions import Submission, options_hash

if TYPE_CHECKING:
    from onnxplain.exporters import ExportWorker

    from ..data import Dataset

log = logging.getLogger(__name__)

RESULT = "result.json"
# A student's page draws one image of each class per method (a grid row costs 4-7 matplotlib axes); every
# image's map is in maps.npz and the class's side-by-side grids, its numbers in the page's tables.
GRADE_FIGURE_PER_CLASS = 1
STATUS_OK = "ok"


@dataclass(frozen=True)
class GradeOptions:
    """Everything that changes a submission's results (and so its cache key)."""

    data: str
    methods: tuple[str, ...] = ("saliency", "lime", "ig")
    per_class: int = 1
    limit: int | None = None            # evaluate on at most this many images of the data
    seed: int = 0
    timeout: float = 120.0              # export time limit per submission (seconds)
    memory_gb: float = 4.0
    trust: bool = False
    arch_name: str | None = None
    input_shape: str | None = None
    layout: str | None = None
    labels: str | None = None
    scale: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    device: str = "cpu"
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {student id: settings} from --overrides; each student's row joins only that student's key
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def key(self, framework: str | None = None) -> str:
        """A hash of the options that can change the results of a submission of this framework (keras,
        pytorch, onnx; None: all of them). Export limits are not in it: see `previous_result`."""
        chosen = {k: v for k, v in asdict(self).items() if k not in _NOT_KEYED and
                  (framework is None or k not in _FRAMEWORK_ONLY or framework in _FRAMEWORK_ONLY[k])}
        return options_hash({**chosen, "onnxplain": _version()})

    def limits(self) -> dict[str, float]:
        """The export limits: a row that failed on one of them is redone when they change."""
        return {"timeout": self.timeout, "memory_gb": self.memory_gb}


# Options that reach only some frameworks' exports (see _export_settings): changing --arch-name must not
# regrade a Keras or an ONNX submission. Unknown files are keyed on everything (they fail either way).
_FRAMEWORK_ONLY: dict[str, tuple[str, ...]] = {
    "arch_name": ("pytorch", "unknown"), "input_shape": ("pytorch", "unknown"),
    "trust": ("pytorch", "keras", "unknown"),
}
_NOT_KEYED = ("overrides", "timeout", "memory_gb")
# Statuses an export limit decides: such a row is reused only under the same limits.
LIMIT_STATUSES = ("timeout", "memory", "crashed")


def grade_one(submission: Submission, options: GradeOptions, out_root: str | os.PathLike[str], *,
              worker: "ExportWorker | None" = None, dataset: "Dataset | None" = None,
              picked: np.ndarray | None = None, key: str | None = None) -> dict[str, Any]:
    """Export, evaluate and explain one submission into `out_root/<id>/`; never raises for a bad submission.

    `worker` is a warm ExportWorker to reuse (one-shot otherwise); `dataset` and `picked` (the indices
    of the images every student is explained on) may be passed in to avoid reloading the data, and
    `key` (from `submission_key`) to avoid hashing the submission's files a second time.
    """
    out_root = Path(out_root)
    final = out_root / submission.id
    key = key or submission_key(submission, options)
    previous = previous_result(out_root, submission, key, options.limits())
    if previous is not None:
        return previous
    tmp = out_root / f".{submission.id}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    row: dict[str, Any] = {"id": submission.id, "status": STATUS_OK, "reason": "", "key": key,
                           "limits": options.limits(), "model_file": str(submission.model) if submission.model else None}
    started = time.perf_counter()
    try:
        _grade_into(submission, options, tmp, row, worker, dataset, picked)
    except OnnxplainError as exc:
        row["status"], row["reason"] = classify(exc), for_grade(str(exc))
        row["reason_params"] = [*exc.params, "overrides"]  # the API names in it (the CLI prints its flags)
    except Exception as exc:  # noqa: BLE001 - a student's file must cost only its own row
        log.exception("grading %s failed unexpectedly", submission.id)
        row["status"], row["reason"] = "error", f"internal error: {type(exc).__name__}: {first_line(exc)}"
    row["total_seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(tmp / RESULT, row)
    _replace_dir(tmp, final)
    return {**row, "skipped": False}


def classify(exc: BaseException) -> str:
    """The status word for a failure: what a grader filters the summary by."""
    from onnxplain.exporters import WorkerGone

    if isinstance(exc, WorkerGone):
        text = str(exc)
        if "time limit" in text:
            return "timeout"
        return "crashed" if "crashed" in text or "died" in text else "memory"
    if isinstance(exc, UnsupportedModelError):
        return "unsupported"
    if isinstance(exc, BadInputError):
        return "bad-input"
    if isinstance(exc, DeviceError):
        return "device"
    return "conversion-failed"


def _grade_into(sub: Submission, opt: GradeOptions, tmp: Path, row: dict[str, Any],
                worker: "ExportWorker | None", dataset: "Dataset | None", picked: np.ndarray | None) -> None:
    from onnxplain.exporters import export, sniff_format

    from ..model import Model
    from ..preprocessing_check import preprocessing_row
    from ..report import build_report

    if sub.model is None:
        raise UnsupportedModelError(f"{sub.root.name} holds no model file (.onnx, .h5, .keras, .pt, .pth)")
    if dataset is None:
        dataset, picked = load_common_data(opt)
    fmt = sniff_format(sub.model)
    row["format"] = fmt
    t0 = time.perf_counter()
    settings = _export_settings(sub, fmt, opt, dataset)
    onnx_path = export(sub.model, tmp / "model.onnx", timeout=opt.timeout, memory_gb=opt.memory_gb, worker=worker,
                       **settings)
    row["export_seconds"] = round(time.perf_counter() - t0, 3)
    side = read_sidecar(onnx_path) or {}
    source = side.get("source") or {}
    row["framework"] = source.get("framework")
    # Keras files record the Keras version that saved them; PyTorch files their serialization kind.
    row["framework_version"] = source.get("framework_version") or source.get("serialization")
    row["parity"] = (side.get("parity") or {}).get("max_abs_diff")
    t0 = time.perf_counter()
    model = Model(onnx_path, device=opt.device)  # type: ignore[arg-type]
    summary = model.summary()
    row["load_seconds"] = round(time.perf_counter() - t0, 3)
    row["parameters"] = summary["total_params"]
    row["classes"] = model.n_classes
    data = dataset
    if dataset.labels is not None and dataset.n_classes not in (None, model.n_classes):
        row["note"] = (f"the model has {model.n_classes} classes but the data has {dataset.n_classes}; "
                       "no accuracy, images explained for the predicted class")
        data = _without_labels(dataset)
    t0 = time.perf_counter()
    row.update(preprocessing_row(model, data, sub.python))  # detected only when the sidecar has none
    page = build_report(model, data, tmp, per_class=opt.per_class, methods=list(opt.methods), seed=opt.seed,
                        features=False, trust=False, picked=picked, method_params=opt.method_params,
                        figure_per_class=GRADE_FIGURE_PER_CLASS)
    row["explain_seconds"] = round(time.perf_counter() - t0, 3)
    report = _read_json(tmp / "report.json")
    evaluation = report.get("evaluation") or {}
    row["accuracy"] = evaluation.get("accuracy")
    per_class = evaluation.get("per_class") or []
    row["per_class_accuracy"] = {c["name"]: c["recall"] for c in per_class} or None
    row["torch_parity"] = model._torch_parity
    row["method_seconds"] = {k: v.get("seconds") for k, v in (report.get("sections") or {}).items()
                             if k in opt.methods}
    row["method_errors"] = {k: v.get("error") for k, v in (report.get("sections") or {}).items()
                            if k in opt.methods and v.get("error")}
    row["evaluation_seconds"] = ((report.get("sections") or {}).get("evaluation") or {}).get("seconds")
    row["report"] = f"{sub.id}/{page.name}"


def load_common_data(opt: GradeOptions) -> tuple["Dataset", np.ndarray]:
    """The data every submission is evaluated on, and the images every submission is explained on."""
    from ..data import load_dataset, select_per_class

    dataset = load_dataset(opt.data, limit=opt.limit)
    if dataset.labels is None:
        raise BadInputError(f"{opt.data} has no labels; grading needs labelled data to compare students")
    return dataset, select_per_class(dataset, opt.per_class, opt.seed)


def _export_settings(sub: Submission, fmt: str, opt: GradeOptions, dataset: "Dataset") -> dict[str, Any]:
    """export() keywords for one submission: the class-wide options, what the data says about the input,
    the student's own code, and the student's row of --overrides on top."""
    from onnxplain.exporters.sniff import framework_of

    from .overrides import export_settings

    override = opt.overrides.get(sub.id, {})
    pytorch = framework_of(fmt) == "pytorch"  # only PyTorch files lack an input shape of their own
    settings: dict[str, Any] = {
        "arch": _arch_for(sub, fmt, opt, override.get("class")), "trust": opt.trust,
        "input_shape": opt.input_shape if pytorch else None, "layout": opt.layout, "labels": opt.labels,
        "scale": opt.scale, "mean": list(opt.mean) if opt.mean else None, "std": list(opt.std) if opt.std else None,
        "data_shape": dataset.input_hint if fmt != "onnx" else None,  # for files that do not fix their size
    }
    settings.update(export_settings(override))
    return settings


def _arch_for(sub: Submission, fmt: str, opt: GradeOptions, class_name: str | None) -> str | None:
    """A Keras architecture file beside weights-only weights, or the student's folder of .py files where
    the exporter looks for the class of a state_dict (`--arch-name` or the override's class narrows it)."""
    from onnxplain.exporters.sniff import framework_of

    if fmt == "keras-h5-weights" and sub.arch is not None:
        return str(sub.arch)
    if framework_of(fmt) != "pytorch" or not sub.python:
        return None
    name = class_name or opt.arch_name
    return f"{sub.root}:{name}" if name else str(sub.root)


# Export parameters that `grade` has no flag for, in a reason meant for a grader: what to do in grade's terms
# (`overrides` is grade's --overrides file, whose columns are arch_args, weights_key, class, ...).
_GRADE_WORDING = (
    (re.compile(r"`arch_args`"), "arch_args in `overrides`"),
    (re.compile(r"weights_key='KEY'"), "weights_key in `overrides`"),
    (re.compile(r"arch='FILE\.py:CLASS'"), "class in `overrides`"),
    (re.compile(r"pass the model's architecture with arch='model\.json' \(the output of model\.to_json\(\)\)"),
     "put the model's architecture (model.to_json() saved as a .json file) in the student's folder"),
    (re.compile(r"pass arch='path/to/model\.py(:\w+)?'( \([^)]*\))?( or arch='MODULE:CLASS')?"),
     "add the student's .py file that defines the class to their folder"),
    (re.compile(r"and pass `arch`,"), "with the .py file of its class,"),
    (re.compile(r"arch='[^']*': "), "the student's code: "),
    (re.compile(r" ?\(pass allow_mismatch=True to keep it anyway\)"), ""),
)


def for_grade(reason: str) -> str:
    """An export error reworded for `grade`, which sets per-student details through its `overrides` file."""
    for pattern, words in _GRADE_WORDING:
        reason = pattern.sub(words, reason)
    return reason


def _without_labels(dataset: "Dataset") -> "Dataset":
    from dataclasses import replace

    return replace(dataset, labels=None, class_names=None)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} when the file is not there."""
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def submission_key(submission: Submission, options: GradeOptions) -> str:
    """Changes whenever the submission's files change, or an option that reaches its framework's export,
    evaluation or explanations (so --arch-name regrades PyTorch submissions only), or its --overrides row."""
    own = options.overrides.get(submission.id)
    extra = f":{options_hash(own)[:16]}" if own else ""
    return f"{submission.content_hash()}:{options.key(_framework(submission))}{extra}"


def class_preload(submissions: Iterable[Submission]) -> tuple[str, ...]:
    """What a class's export workers import up front: only the frameworks present (a PyTorch-only class
    never imports TensorFlow). Files that no exporter reads need nothing."""
    from onnxplain.exporters import sniff_format
    from onnxplain.exporters.api import preload_for
    from onnxplain.exporters.sniff import UNKNOWN
    from onnxplain.exporters.worker import ALL_PRELOADS

    needed: set[str] = set()
    for sub in submissions:
        try:
            fmt = sniff_format(sub.model) if sub.model is not None else UNKNOWN
        except OnnxplainError:
            continue
        if fmt != UNKNOWN:
            needed.update(preload_for(fmt))
    return tuple(p for p in ALL_PRELOADS if p in needed)


def _framework(submission: Submission) -> str:
    from onnxplain.exporters import sniff_format
    from onnxplain.exporters.sniff import framework_of

    if submission.model is None:
        return "none"
    try:
        return framework_of(sniff_format(submission.model))
    except OnnxplainError:
        return "unknown"


def previous_result(out_root: Path, submission: Submission, key: str,
                    limits: dict[str, float] | None = None) -> dict[str, Any] | None:
    """The finished row of an earlier run with the same key (marked skipped), or None. A row that failed
    on an export limit (timeout, memory, crash) is reused only when `limits` are the ones it ran under."""
    result = Path(out_root) / submission.id / RESULT
    if not result.exists():
        return None
    try:
        row = _read_json(result)
    except ValueError:
        return None
    if row.get("key") != key:
        return None
    if limits is not None and row.get("status") in LIMIT_STATUSES and row.get("limits") != limits:
        return None
    return {**row, "skipped": True}


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap the finished folder into place: the old one is renamed away first, then removed."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _version() -> str:
    from ..versions import library_versions

    return library_versions().get("onnxplain", "?")
