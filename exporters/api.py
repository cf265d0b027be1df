"""The public entry points: `export()` writes OUT.onnx + OUT.onnx.json; `ensure_onnx()` gives every
command an ONNX file for whatever MODEL it was handed, exporting through the cache when needed."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from onnxplain.engine.errors import BadInputError, UnsupportedModelError
from onnxplain.engine.model import load_onnx

from . import sniff
from .cache import cache_entry
from .options import ExportOptions
from .worker import ALL_PRELOADS, ExportWorker

log = logging.getLogger(__name__)


def export(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    arch: str | os.PathLike[str] | None = None,
    arch_args: str | Mapping[str, Any] | Sequence[Any] | None = None,
    input_shape: str | Sequence[int] | None = None,
    weights_key: str | None = None,
    trust: bool = False,
    layout: str | None = None,
    labels: str | Sequence[str] | None = None,
    scale: float | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    images: Any = None,
    allow_mismatch: bool = False,
    data_shape: Sequence[int] | None = None,
    timeout: float = 120.0,
    memory_gb: float = 4.0,
    worker: ExportWorker | None = None,
) -> Path:
    """Export a Keras/PyTorch file (or validate an ONNX one) to `out` (default: SRC with .onnx) plus its
    sidecar `out.json`, in a child process; returns `out`. Errors are OnnxplainError subclasses with
    one-line messages.

    `data_shape` (channels, height, width; 0, 0 for images of varied sizes) describes the data the model
    will be fed: a PyTorch file that does not record its input size is exported for it. `images` (an array of 8-bit or [0, 1] images, or a list of them) join the 16 seeded random inputs in
    the parity check. `timeout` (seconds) and `memory_gb` bound this one export inside the worker; a
    one-shot worker's start-up (importing TensorFlow/torch) is not counted. `worker`: a warm
    ExportWorker to reuse (else one is started for this call and stopped after it)."""
    src_path = Path(src)
    fmt = sniff.sniff_format(src_path)
    options = ExportOptions.build(arch=arch if arch is not None else code_beside(src_path, fmt), arch_args=arch_args, input_shape=input_shape, weights_key=weights_key,
                                  trust=trust, layout=layout, labels=labels, scale=scale, mean=mean, std=std,
                                  allow_mismatch=allow_mismatch, data_shape=data_shape)
    out_path = Path(out) if out is not None else src_path.with_suffix(".onnx")
    _check_target(src_path, out_path, fmt)
    if fmt == sniff.UNKNOWN:
        raise UnsupportedModelError(f"{src_path.name} is {sniff.describe_unknown(src_path)}")
    started = time.perf_counter()
    if worker is None:
        with ExportWorker(preload=preload_for(fmt)) as one_shot:
            one_shot.export(src_path, out_path, options, images=images, timeout=timeout, memory_gb=memory_gb)
    else:
        worker.export(src_path, out_path, options, images=images, timeout=timeout, memory_gb=memory_gb)
    log.info("exported %s (%s) to %s in %.1f s", src_path.name, fmt, out_path, time.perf_counter() - started)
    return out_path


def ensure_onnx(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    images: Any = None,
    timeout: float = 120.0,
    memory_gb: float = 4.0,
    worker: ExportWorker | None = None,
    **options: Any,
) -> Path:
    """An ONNX file for `path`: an `.onnx` is validated and returned as it is; anything else is exported
    once into the cache (keyed by file sha256 + options) and the cached file is returned afterwards.
    `options` are export()'s: arch, arch_args, input_shape, weights_key, trust, layout, labels, scale,
    mean, std, allow_mismatch, data_shape."""
    src = Path(path)
    fmt = sniff.sniff_format(src)
    if fmt == sniff.ONNX:
        load_onnx(src)
        return src
    if options.get("arch") is None:
        options["arch"] = code_beside(src, fmt)
    parsed = ExportOptions.build(**options)
    entry = cache_entry(src, parsed, images, cache_dir)
    if entry.ready:
        log.info("using the cached export of %s: %s", src.name, entry.onnx)
        return entry.onnx
    return export(src, entry.onnx, images=images, timeout=timeout, memory_gb=memory_gb, worker=worker, **options)


def code_beside(src: Path, fmt: str) -> str | None:
    """The folder of a pickled PyTorch file when .py files (or notebooks) sit beside it: a state_dict's class (or a whole
    pickle's missing one) is looked for there, as `--arch FOLDER` would."""
    if fmt not in (sniff.TORCH_ZIP, sniff.TORCH_LEGACY, sniff.PICKLE):
        return None
    folder = src.resolve().parent
    from .student_code import files_in

    return str(folder) if files_in(folder) else None


def _check_target(src: Path, out: Path, fmt: str) -> None:
    if out.exists() and out.is_dir():
        raise BadInputError(f"output {out} is a folder; give a file name such as {out / (src.stem + '.onnx')}")
    if fmt != sniff.ONNX and out.exists() and out.resolve() == src.resolve():
        raise BadInputError(f"output {out} is the source file itself; choose another name with -o")
    parent = out.parent if str(out.parent) else Path(".")
    probe = parent if parent.exists() else next((p for p in parent.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK):
        raise BadInputError(f"cannot write {out}: {probe} is not writable; choose another place with -o")


def preload_for(fmt: str) -> tuple[str, ...]:
    """The libraries an export worker for this format imports up front (ONNX files need neither)."""
    framework = sniff.framework_of(fmt)
    if framework == "keras":
        return ("keras",)
    if framework == "pytorch":
        return ("torch",)
    return () if fmt == sniff.ONNX else ALL_PRELOADS
