"""The export worker's child process: `python -m onnxplain.exporters.child RESPONSE_FD PRELOAD`.

Reads one JSON request per line on stdin; on RESPONSE_FD it writes a receipt (`{"ack": true}`) and
then the answer, one JSON line each (stdout is sent to stderr, so chatter from TensorFlow or a
student's code can never corrupt the protocol). Heavy
libraries are imported once, at start. Each request runs under its own address-space limit
(RLIMIT_AS, relative to what the process holds when the request starts: TensorFlow alone reserves
about 5 GiB of virtual memory, so an absolute 4 GiB limit would not even let it import). Errors
travel back as (class name, one-line message); anything unexpected becomes a ConversionError.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import sys
import traceback
from pathlib import Path
from typing import Any

PRELOADS = {
    "torch": ("torch", "onnxruntime", "onnx"),
    "keras": ("tensorflow", "tf_keras", "tf2onnx", "keras", "h5py", "onnxruntime", "onnx"),
}

log = logging.getLogger("onnxplain.exporters.child")


def main(argv: list[str]) -> int:
    response_fd = int(argv[1])
    preload = [p for p in (argv[2] if len(argv) > 2 else "").split(",") if p]
    os.dup2(2, 1)  # anything printed goes to stderr, never into the response channel
    # Triton (pulled in by torch._dynamo, e.g. via torchvision or the dynamo exporter) loads its own LLVM,
    # which aborts the process when TensorFlow's LLVM is already loaded. Exports never need Triton.
    sys.modules["triton"] = None  # type: ignore[assignment]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for group in preload:
        for module in PRELOADS.get(group, ()):
            __import__(module)
    # Imported after the heavy libraries so the timing of `ready` covers everything.
    from onnxplain.engine.versions import loaded_versions

    out = os.fdopen(response_fd, "w", encoding="utf-8", buffering=1)
    _send(out, {"ready": True, "pid": os.getpid(), "versions": loaded_versions()})
    for line in sys.stdin:
        if not line.strip():
            continue
        _send(out, {"ack": True})  # receipt: from here on, a death is this request's doing
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            _send(out, _error("ConversionError", "the export worker received a malformed request"))
            continue
        _send(out, handle(request))
    return 0


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Run one export under the request's memory limit; never raises."""
    from onnxplain.engine.errors import OnnxplainError

    src = Path(request["src"])
    _set_memory_limit(int(request.get("memory_bytes") or 0))
    modules_before = set(sys.modules)
    try:
        from .options import ExportOptions
        from .pipeline import run_export

        images = _load_images(request.get("images"))
        sidecar = run_export(src, Path(request["out"]), ExportOptions.from_json(request.get("options") or {}), images)
        return {"ok": True, "sidecar": sidecar}
    except OnnxplainError as exc:
        return _error(type(exc).__name__, str(exc), exc.params)
    except MemoryError:
        _clear_limit()
        gib = int(request.get("memory_bytes") or 0) / 1024**3
        return _error("ConversionError", f"exporting {src.name} needed more than the {gib:g} GiB memory limit; "
                      "the file may be hostile or the model too large (raise `memory_gb`)", ("memory_gb",))
    except RecursionError:
        return _error("UnsupportedModelError", f"{src.name} is nested too deeply to read (damaged or hostile file)")
    except BaseException as exc:  # noqa: BLE001 - the boundary: the parent gets a one-line error, the log the traceback
        _clear_limit()
        traceback.print_exc(file=sys.stderr)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return _error("ConversionError", f"exporting {src.name} was interrupted ({type(exc).__name__})")
        from onnxplain.engine.errors import first_line

        return _error("ConversionError",
                      f"exporting {src.name} failed unexpectedly: {type(exc).__name__}: {first_line(exc)}")
    finally:
        _clear_limit()
        _forget_user_modules(modules_before)
        from .pipeline import cleanup

        cleanup()


def _load_images(path: str | None) -> list[Any] | None:
    if not path:
        return None
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[-1]))]


def _set_memory_limit(extra_bytes: int) -> None:
    """Let this request grow the address space by `extra_bytes` at most (0: no limit)."""
    if extra_bytes <= 0:
        return
    current = _address_space()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = current + extra_bytes
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _clear_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


def _address_space() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        pages = int(fh.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _forget_user_modules(before: set[str]) -> None:
    """Drop modules a request imported from outside the installation (a student's model.py), so the
    next request with a different file of the same name gets its own."""
    prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None) or ""
        if file and not file.startswith(prefixes) and not name.startswith("onnxplain."):
            del sys.modules[name]


def _error(cls: str, message: str, params: tuple[str, ...] = ()) -> dict[str, Any]:
    """The reply of a failed export: the error's class, one-line message and the API parameters it names."""
    return {"ok": False, "error": cls, "message": " ".join(message.split()), "params": list(params)}


def _send(out: Any, message: dict[str, Any]) -> None:
    out.write(json.dumps(message, default=str) + "\n")
    out.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
