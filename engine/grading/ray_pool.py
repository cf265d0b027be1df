"""Grading on Ray: one task per submission, on a local Ray instance or a cluster (`--ray`, `--ray-address`).

Each task runs `grade_one` in a Ray worker process, which keeps one warm ExportWorker (the export still
runs in its own child process, with its time and memory limits) and the class's data between tasks.
Results are written by the task into `out_root/<id>/`, so on a cluster `out_root` must be a folder
every node sees at the same path (NFS, a mounted bucket). The driver keeps at most `workers` tasks in
flight, reports each row as `ray.wait` hands it back, and charges every failure to its submission:

- a worker or node that dies mid-task: Ray runs the task again (`max_retries`), then the row is `crashed`;
- a task past `submission_timeout`: cancelled (its worker is killed), the row is `timeout`.

Such rows are not written to `<id>/result.json`, so the next run grades them again (the pool's rule).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..devices import parse_device
from ..errors import BadInputError, first_line
from .pool import Progress, failure_row, split_finished
from .submissions import Submission
from .unit import GradeOptions, class_preload, grade_one, load_common_data

if TYPE_CHECKING:
    from onnxplain.exporters import ExportWorker

log = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'onnxplain[ray]'"
DEFAULT_GPU_PER_TASK = 0.25   # four submissions share a GPU: one student's model leaves most of it idle
_POLL_S = 0.5

# Per Ray worker process: reused by every task that process runs (Ray keeps its workers between tasks).
_WARM: dict[str, Any] = {}


def import_ray() -> Any:
    """The `ray` module, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise BadInputError(f"`run_ray` needs Ray, which is not installed ({exc}); install it with {EXTRA_HINT}",
                            params=("run_ray",)) from None
    return ray


def grade_task(sub: Submission, options: GradeOptions, out_root: str, key: str,
               preload: tuple[str, ...]) -> dict[str, Any]:
    """What one Ray task runs: `grade_one` with this process's warm ExportWorker and data."""
    dataset, picked = _warm_data(options)
    return grade_one(sub, options, out_root, worker=_warm_worker(preload), dataset=dataset, picked=picked, key=key)


def _warm_worker(preload: tuple[str, ...]) -> "ExportWorker":
    """This process's ExportWorker, replaced by one that imports more when a class needs more."""
    from onnxplain.exporters import ExportWorker

    worker = _WARM.get("worker")
    if worker is None or not set(preload) <= set(worker.preload):
        if worker is not None:
            worker.close()
        wanted = tuple(dict.fromkeys([*(worker.preload if worker is not None else ()), *preload]))
        _WARM["worker"] = worker = ExportWorker(preload=wanted)
    return worker  # a dead child is replaced by the worker itself on the next export


def _warm_data(options: GradeOptions) -> Any:
    wanted = (options.data, options.limit, options.per_class, options.seed)
    if _WARM.get("data_key") != wanted:
        _WARM["data"], _WARM["data_key"] = load_common_data(options), wanted
    return _WARM["data"]


def run_ray(submissions: Iterable[Submission], options: GradeOptions, out_root: str | Path, *,
            address: str | None = None, workers: int = 1, submission_timeout: float | None = None,
            progress: Progress | None = None, max_retries: int = 2,
            gpu_per_task: float = DEFAULT_GPU_PER_TASK) -> list[dict[str, Any]]:
    """Grade every submission as a Ray task; returns one row per submission, in input order (as `run_pool`).

    `address`: a running cluster (`ray start --head` prints it; "auto" finds one on this machine); None
    starts a local instance, or uses the one this process already started (`ray.init` before the call).
    `workers`: tasks in flight at once; `gpu_per_task`: the GPU fraction each task asks for when
    `options.device` is cuda; `max_retries`: how often a task lost with its worker or node runs again.
    """
    ray = import_ray()
    subs = list(submissions)
    order = {s.id: i for i, s in enumerate(subs)}
    rows, pending, keys = split_finished(subs, options, out_root, progress)
    if not pending:
        return sorted(rows.values(), key=lambda r: order[r["id"]])
    limit = submission_timeout if submission_timeout is not None else options.timeout + 600.0
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise BadInputError(f"cannot start or reach {where}: {first_line(exc)}") from None
    resources = {"num_cpus": 1, "max_retries": max(0, int(max_retries)), "retry_exceptions": False}
    if parse_device(options.device)[0] == "cuda":
        if not ray.cluster_resources().get("GPU"):  # the tasks would wait for a GPU forever
            if started_here:
                ray.shutdown()
            raise BadInputError('device="cuda" with Ray, but the Ray cluster has no GPU; start its nodes '
                                'with GPUs (ray start --num-gpus N) or grade with device="cpu"', params=("device",))
        resources["num_gpus"] = float(gpu_per_task)
    task = ray.remote(grade_task).options(**resources)
    out = str(Path(out_root).resolve())
    preload = class_preload(pending)
    in_flight: dict[Any, tuple[Submission, float]] = {}

    def finish(row: dict[str, Any]) -> None:
        rows[row["id"]] = row
        if progress is not None:
            progress(row)

    try:
        while pending or in_flight:
            while pending and len(in_flight) < max(1, workers):
                sub = pending.pop(0)
                in_flight[task.remote(sub, options, out, keys[sub.id], preload)] = (sub, time.monotonic())
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=_POLL_S)
            for ref in ready:
                sub, _since = in_flight.pop(ref)
                finish(_collect(ray, ref, sub, options, max_retries))
            now = time.monotonic()
            for ref, (sub, since) in list(in_flight.items()):
                if now - since > limit:
                    ray.cancel(ref, force=True)  # kills the worker process; its export child ends with it
                    del in_flight[ref]
                    finish(failure_row(sub, options, "timeout",
                                       f"grading took longer than {limit:g} s; the Ray task was cancelled"))
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
    return sorted(rows.values(), key=lambda r: order.get(r["id"], len(order)))


def _collect(ray: Any, ref: Any, sub: Submission, options: GradeOptions, max_retries: int) -> dict[str, Any]:
    """The task's row, or its failure charged to the submission (never raised: one row per submission)."""
    from ray import exceptions as rx

    try:
        return ray.get(ref)
    except (rx.WorkerCrashedError, rx.NodeDiedError, rx.OutOfMemoryError, rx.ObjectLostError,
            rx.LocalRayletDiedError) as exc:
        reason = first_line(exc)
        return failure_row(sub, options, "crashed", f"the Ray worker died {max_retries + 1} time(s) grading this "
                           f"submission ({type(exc).__name__}: {reason[:160]})")
    except rx.TaskCancelledError:
        return failure_row(sub, options, "timeout", "the Ray task was cancelled")
    except rx.RayError as exc:
        text = str(exc).strip().splitlines()
        return failure_row(sub, options, "error", f"internal error in the Ray task: {text[-1] if text else exc}")
