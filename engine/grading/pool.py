"""The local pool: N long-lived grading processes, each with its own warm ExportWorker.

Why not concurrent.futures: when one of its processes dies the whole executor is broken and it
cannot say which submission killed it. Here each process takes one submission at a time from
its own queue, so a death is charged to exactly that submission (status `crashed`), the process
is replaced, and the batch goes on. TensorFlow and torch are imported once per process.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import psutil

from .submissions import Submission
from .unit import GradeOptions, class_preload, grade_one, previous_result, submission_key

log = logging.getLogger(__name__)

_POLL_S = 0.2
Progress = Callable[[dict[str, Any]], None]


def _serve(tasks: "mp.Queue[Any]", results: "mp.Queue[Any]", options: GradeOptions, out_root: str,
           preload: tuple[str, ...]) -> None:
    """A grading process: load the data once, keep one ExportWorker warm (importing `preload`), grade until
    told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    from onnxplain.exporters import ExportWorker

    from .unit import load_common_data

    dataset, picked = load_common_data(options)
    with ExportWorker(preload=preload) as worker:
        while True:
            task = tasks.get()
            if task is None:
                return
            sub, key = task
            results.put((os.getpid(), grade_one(sub, options, out_root, worker=worker, dataset=dataset, picked=picked,
                                                key=key)))


@dataclass
class _Slot:
    process: Any
    tasks: Any
    current: Submission | None = None
    since: float = 0.0


def run_pool(submissions: Iterable[Submission], options: GradeOptions, out_root: str | Path, *, workers: int = 1,
             submission_timeout: float | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Grade every submission with `workers` processes; returns one row per submission, in input order.

    `submission_timeout` bounds a whole submission (export, evaluation, explanations); past it the
    process is killed and the row says `timeout`. Default: the export limit plus 10 minutes.
    """
    subs = list(submissions)
    order = {s.id: i for i, s in enumerate(subs)}
    rows, pending, keys = split_finished(subs, options, out_root, progress)
    limit = submission_timeout if submission_timeout is not None else options.timeout + 600.0
    preload = class_preload(pending)
    ctx = mp.get_context("spawn")
    results: Any = ctx.Queue()
    slots: list[_Slot] = []

    def start() -> _Slot:
        tasks = ctx.Queue()
        proc = ctx.Process(target=_serve, args=(tasks, results, options, str(out_root), preload),
                           daemon=True)
        proc.start()
        return _Slot(proc, tasks)

    def finish(row: dict[str, Any]) -> None:
        rows[row["id"]] = row
        if progress is not None:
            progress(row)

    try:
        slots = [start() for _ in range(min(max(1, workers), len(pending)))]
        while pending or any(s.current is not None for s in slots):
            for slot in slots:
                if slot.current is None and pending:
                    slot.current, slot.since = pending.pop(0), time.monotonic()
                    slot.tasks.put((slot.current, keys[slot.current.id]))
            try:
                pid, row = results.get(timeout=_POLL_S)
            except queue.Empty:
                pass
            else:
                for slot in slots:
                    if slot.process.pid == pid and slot.current is not None and slot.current.id == row["id"]:
                        slot.current = None
                finish(row)
                continue
            for i, slot in enumerate(slots):
                if slot.current is None:
                    continue
                overdue = time.monotonic() - slot.since > limit
                if slot.process.is_alive() and not overdue:
                    continue
                _drain_into(results, rows, finish)  # a result may have arrived just before the death
                sub = slot.current
                if sub.id not in rows:
                    finish(failure_row(sub, options, "timeout" if overdue else "crashed",
                                        f"grading took longer than {limit:g} s; the process was stopped" if overdue
                                        else f"the grading process died ({_exit(slot.process)})"))
                _kill(slot.process)
                slots[i] = start()
    finally:
        for slot in slots:
            if slot.process.is_alive():
                slot.tasks.put(None)
        deadline = time.monotonic() + 10
        for slot in slots:
            slot.process.join(timeout=max(0.1, deadline - time.monotonic()))
            _kill(slot.process)
    return sorted(rows.values(), key=lambda r: order.get(r["id"], len(order)))


def split_finished(subs: list[Submission], options: GradeOptions, out_root: str | Path, progress: Progress | None
                   ) -> tuple[dict[str, dict[str, Any]], list[Submission], dict[str, str]]:
    """(rows reused from an earlier run, submissions still to grade, every submission's key): the resume rule
    that every runner (this pool, Ray) applies before dispatching anything."""
    rows: dict[str, dict[str, Any]] = {}
    pending = []
    keys: dict[str, str] = {}
    for sub in subs:  # finished earlier with the same files and options: no process needed
        keys[sub.id] = submission_key(sub, options)
        done = previous_result(Path(out_root), sub, keys[sub.id], options.limits())
        if done is None:
            pending.append(sub)
        else:
            rows[sub.id] = done
            if progress is not None:
                progress(done)
    return rows, pending, keys


def _drain_into(results: Any, rows: dict[str, Any], finish: Callable[[dict[str, Any]], None]) -> None:
    while True:
        try:
            _, row = results.get(timeout=0.05)
        except queue.Empty:
            return
        if row["id"] not in rows:
            finish(row)


def failure_row(sub: Submission, options: GradeOptions, status: str, reason: str) -> dict[str, Any]:
    """A submission whose grading process died or overran, charged to it; recorded in the summary only,
    so the submission is graded again on the next run."""
    return {"id": sub.id, "status": status, "reason": reason, "model_file": str(sub.model) if sub.model else None,
            "key": None, "skipped": False}


def _exit(process: Any) -> str:
    code = process.exitcode
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _kill(process: Any) -> None:
    """Kill a grading process and everything it started (its export worker runs in its own session)."""
    if process.pid is None:
        return
    try:
        parent = psutil.Process(process.pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        try:
            if p.pid != process.pid and _leads_group(p):
                os.killpg(p.pid, signal.SIGKILL)  # the export worker and whatever it started
            else:
                p.kill()
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            pass
    process.join(timeout=5)


def _leads_group(p: "psutil.Process") -> bool:
    try:
        return os.getpgid(p.pid) == p.pid
    except ProcessLookupError:
        return False
