"""What a command prints and writes.

`command_output(json_mode, quiet)` wraps a command's work:
- progress bars on stderr (silenced by --quiet);
- with --json, anything that would reach stdout while working (a library's print, a child
  process) goes to stderr instead, so that stdout carries exactly one JSON document;
- the result is printed only after the work succeeded: the JSON document, or a rich summary
  (just the paths written with --quiet).
Files are written atomically (temporary file beside the target, then rename).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from rich.console import Console

from onnxplain.engine.data import safe_name
from onnxplain.engine.sidecar import atomic_path, plain, write_json_atomic

from .progress import ProgressBars

OUT_ROOT = Path("onnxplain-out")


def default_out(model_path: Path, *parts: str) -> Path:
    """onnxplain-out/<model name>/<parts...>, relative to the working directory."""
    return OUT_ROOT.joinpath(safe_name(model_path.name.split(".")[0] or model_path.name), *parts)


def unique_names(names: list[str]) -> list[str]:
    """Safe names, with -2, -3... appended where two would collide."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        base = safe_name(name)
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def save_npy(path: Path, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        np.save(tmp, np.asarray(array))
    return path


def save_json(path: Path, data: Any) -> Path:
    return write_json_atomic(path, plain(data))


@dataclass
class CommandOutput:
    json_mode: bool
    quiet: bool
    progress: ProgressBars
    _doc: dict[str, Any] | None = None
    _human: Callable[[Console], None] | None = None
    _paths: list[str] = field(default_factory=list)

    def result(self, doc: dict[str, Any], *, paths: list[Path | str],
               human: Callable[[Console], None] | None = None) -> None:
        """Set what the command prints: `doc` with --json, `paths` with --quiet, else `human` + paths."""
        self._doc = plain(doc)
        self._paths = [str(p) for p in paths]
        self._human = human

    def _print(self) -> None:
        if self._doc is None:
            raise RuntimeError("a command finished without setting its result")
        if self.json_mode:
            sys.stdout.write(json.dumps(self._doc, indent=2, allow_nan=False) + "\n")
            sys.stdout.flush()
            return
        console = Console(file=sys.stdout, soft_wrap=True)
        if self._human is not None and not self.quiet:
            self._human(console)
        for p in self._paths:
            say(console, p)


@contextlib.contextmanager
def command_output(*, json_mode: bool, quiet: bool) -> Iterator[CommandOutput]:
    out = CommandOutput(json_mode=json_mode, quiet=quiet, progress=ProgressBars(enabled=not quiet))
    with _stdout_to_stderr(json_mode):
        with out.progress:
            yield out
    out._print()


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """Send stdout to stderr, at the Python level and (for child processes and C libraries) at
    the file-descriptor level when stdout is the process's real fd 1."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = None
    try:
        real = sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        real = False
    if real:
        saved = os.dup(1)
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def say(console: Console, text: str) -> None:
    """One plain line (no rich markup or highlighting: paths and class names print as they are)."""
    console.print(text, highlight=False, markup=False)


def write_figure_result(run: CommandOutput, folder: Path, stem: str, *, render: Callable[[Path], Path],
                        array: np.ndarray, doc: dict[str, Any], summary: str) -> None:
    """The usual trio STEM.png (drawn by `render`), STEM.npy (`array`) and STEM.json (`doc` plus the
    three paths) in `folder`, and `doc` as the command's result."""
    png = render(folder / f"{stem}.png")
    npy = save_npy(folder / f"{stem}.npy", array)
    doc = {**doc, "png": str(png), "npy": str(npy), "json": str(folder / f"{stem}.json")}
    save_json(folder / f"{stem}.json", doc)
    run.result(doc, paths=[png], human=lambda console: say(console, summary))
