"""ExportWorker: a reusable child process that does the exports, so the caller never runs them.

The child (`child.py`) imports TensorFlow/torch once and then serves requests, one at a time, each
with its own time limit and memory limit. A crash, a hang (killed at the time limit) or a memory
blow-up ends that request with a one-line ConversionError and the child is replaced on the next
request; the parent process never imports TensorFlow. Errors cross the boundary as
(class name, one-line message) and are raised here as the same OnnxplainError subclass.

Memory: the child limits its own address space per request (RLIMIT_AS = what it holds + memory_gb),
which turns a large allocation into a MemoryError there (or, inside C++ code, an abort that ends the
child: reported as a crash that names the limit).
"""
from __future__ import annotations

import collections
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import psutil

from onnxplain.engine import errors
from onnxplain.engine.errors import BadInputError, ConversionError

from .options import ExportOptions

log = logging.getLogger(__name__)
child_log = logging.getLogger("onnxplain.exporters.child")

ALL_PRELOADS = ("torch", "keras")
_ERRORS = {cls.__name__: cls for cls in (errors.OnnxplainError, errors.UnsupportedModelError,
                                         errors.ConversionError, errors.BadInputError, errors.DeviceError)}
_POLL_S = 0.05
_CRASH_HINTS = ("Error", "error:", "Fatal", "Abort", "Segmentation", "Killed", "terminate called", "core dumped")


class WorkerGone(ConversionError):
    """The child ended a request by dying, hanging or outgrowing its memory limit."""


class _DiedIdle(WorkerGone):
    """The child was found dead before it took the request: safe to retry with a new one."""


class ExportWorker:
    """A long-lived export process. Use as a context manager, or call close()."""

    def __init__(self, *, preload: Sequence[str] = ALL_PRELOADS, startup_timeout: float = 300.0,
                 recycle_rss_gb: float = 3.0) -> None:
        unknown = [p for p in preload if p not in ALL_PRELOADS]
        if unknown:
            raise BadInputError(f"unknown preload {unknown}; choose from {', '.join(ALL_PRELOADS)}")
        self.preload = tuple(preload)
        self.startup_timeout = float(startup_timeout)
        self.recycle_rss_bytes = int(recycle_rss_gb * 1024**3)
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._resp_fd: int | None = None
        self._buffer = b""
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.alive and self._proc is not None else None

    def start(self) -> None:
        """Start the child now (else the first export does), waiting until its imports are done."""
        with self._lock:
            self._ensure_started()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __enter__(self) -> "ExportWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_started(self) -> None:
        if self.alive:
            return
        self._stop()
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1",
                   CUDA_VISIBLE_DEVICES="", TF_USE_LEGACY_KERAS="0")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "onnxplain.exporters.child", str(write_fd), ",".join(self.preload)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                pass_fds=(write_fd,), start_new_session=True, env=env,
            )
        except OSError as exc:
            os.close(read_fd)
            raise ConversionError(f"cannot start the export process: {exc}") from exc
        finally:
            os.close(write_fd)
        self._resp_fd = read_fd
        self._buffer = b""
        self.starts += 1
        threading.Thread(target=_drain, args=(self._proc.stderr, self._stderr), daemon=True).start()
        self._finalizer = weakref.finalize(self, _kill_group, self._proc)
        try:
            ready = self._receive(time.monotonic() + self.startup_timeout, "starting the export process")
        except WorkerGone:
            self._stop()
            raise
        log.info("export worker %s ready (%s)", ready.get("pid"), ", ".join(self.preload) or "no preload")

    def _stop(self) -> None:
        if self._proc is not None:
            _kill_group(self._proc)
            if self._proc.stdin:
                self._proc.stdin.close()
            if self._proc.stderr:
                self._proc.stderr.close()
        if self._resp_fd is not None:
            os.close(self._resp_fd)
        if self._finalizer is not None:
            self._finalizer.detach()
        self._proc, self._resp_fd, self._finalizer = None, None, None

    # ------------------------------------------------------------------ requests
    def export(self, src: str | os.PathLike[str], out: str | os.PathLike[str], options: ExportOptions | None = None,
               *, images: Any = None, timeout: float = 120.0, memory_gb: float = 4.0) -> dict[str, Any]:
        """Export `src` to `out` in the child; returns the sidecar it wrote. Raises OnnxplainError subclasses."""
        if not timeout > 0:
            raise BadInputError(f"timeout must be positive, not {timeout!r}")
        if not memory_gb > 0:
            raise BadInputError(f"memory_gb must be positive, not {memory_gb!r}")
        options = options or ExportOptions()
        src_path = Path(src).resolve()
        with tempfile.TemporaryDirectory(prefix="onnxplain-export-") as tmp, self._lock:
            request = {
                "src": str(src_path), "out": str(Path(out).resolve()), "options": options.to_json(),
                "memory_bytes": int(memory_gb * 1024**3), "images": _save_images(images, Path(tmp)),
            }
            self._ensure_started()
            reply = self._request(request, timeout, request["memory_bytes"], src_path.name)
        if not reply.get("ok"):
            cls = _ERRORS.get(str(reply.get("error")), ConversionError)
            raise cls(str(reply.get("message") or "the export failed"), params=tuple(reply.get("params") or ()))
        return dict(reply.get("sidecar") or {})

    def _request(self, request: dict[str, Any], timeout: float, memory_bytes: int, name: str) -> dict[str, Any]:
        """Send, wait for the child's receipt, then for the answer. A child that dies before its receipt
        died while idle (killed, out of memory): it is replaced and the request sent once more."""
        deadline = time.monotonic() + timeout
        what = f"exporting {name}"
        try:
            for attempt in (1, 2):
                try:
                    if not self._send(request):
                        raise _DiedIdle(f"the export process died before {what}")
                    self._receive(deadline, what, timeout=timeout, idle=True)
                    break
                except _DiedIdle:
                    self._stop()
                    if attempt == 2:
                        raise
                    self._ensure_started()
            reply = self._receive(deadline, what, timeout=timeout, memory_bytes=memory_bytes)
        except WorkerGone:
            self._stop()
            raise
        if self.alive and _rss(self._proc.pid) > self.recycle_rss_bytes:
            log.info("export worker grew past %.1f GiB; it will be replaced", self.recycle_rss_bytes / 1024**3)
            self._stop()
        return reply

    def _send(self, request: dict[str, Any]) -> bool:
        assert self._proc is not None and self._proc.stdin is not None
        self._stderr.clear()
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def _receive(self, deadline: float, what: str, *, timeout: float | None = None,
                 memory_bytes: int | None = None, idle: bool = False) -> dict[str, Any]:
        """The next JSON line from the child, or WorkerGone when it dies or misses the deadline."""
        assert self._proc is not None and self._resp_fd is not None
        while b"\n" not in self._buffer:
            now = time.monotonic()
            if now >= deadline:
                limit = f"the {timeout:g} s time limit" if timeout is not None else "its start-up time limit"
                self._fail(f"{what} took longer than {limit}; the export process was stopped")
            ready, _, _ = select.select([self._resp_fd], [], [], min(_POLL_S, deadline - now))
            if ready:
                chunk = os.read(self._resp_fd, 1 << 16)
                if not chunk:
                    self._proc.wait(timeout=5)
                    if idle:
                        raise _DiedIdle(f"the export process died before {what} ({self._death()})")
                    gib = (memory_bytes or 0) / 1024**3
                    limit = f"; it may have hit the {gib:g} GiB memory limit" if memory_bytes else ""
                    self._fail(f"the export process crashed while {what} ({self._death()}){limit}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            self._fail(f"the export process answered garbage while {what}")
            raise  # unreachable: _fail raises

    def _fail(self, message: str) -> None:
        if self._proc is not None:
            _kill_group(self._proc)
        raise WorkerGone(message)

    def _death(self) -> str:
        code = self._proc.returncode if self._proc is not None else None
        if code is not None and code < 0:
            try:
                how = f"signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"signal {-code}"
        else:
            how = f"exit code {code}"
        time.sleep(0.05)  # let the stderr reader catch the last lines
        hint = next((line for line in reversed(self._stderr) if any(h in line for h in _CRASH_HINTS)), "")
        return f"{how}: {hint[:200]}" if hint else how


def _save_images(images: Any, folder: Path) -> str | None:
    """User images for the parity check, handed over as an .npz (no pickles cross the boundary)."""
    if images is None:
        return None
    if isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.shape[-1] not in (1, 3, 4):
        arrays = [images] if images.ndim == 2 else list(images)
    elif isinstance(images, np.ndarray) and images.ndim in (3, 4):
        arrays = [images] if images.ndim == 3 else list(images)
    else:
        arrays = [np.asarray(img) for img in images]
    if any(a.dtype == object for a in arrays):
        raise BadInputError("images must be numeric arrays")
    path = folder / "images.npz"
    np.savez(path, **{f"image_{i}": a for i, a in enumerate(arrays)})
    return str(path)


def _rss(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group (it has its own session: nothing else is in it)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("export process %s did not end after SIGKILL", proc.pid)


def _drain(stream: Any, lines: collections.deque[str]) -> None:
    """Read the child's stderr (so it never blocks on a full pipe), keep the tail, log it at DEBUG."""
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                lines.append(line)
                child_log.debug("%s", line)
    except (ValueError, OSError):
        return  # the stream was closed because the worker was stopped: nothing left to read

