"""Progress on stderr: the `progress(description, fraction_or_None)` callable that the engine's
long-running functions (report, demo, evaluate) accept, drawn as rich progress bars.

A new description starts a new bar (the previous one is marked done); `None` shows an
indeterminate bar with the elapsed time. Nothing is drawn with `--quiet` or when stderr is not
a terminal (logs and pipes stay clean).
"""
from __future__ import annotations

import sys
from typing import Callable, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

ProgressFn = Callable[[str, Optional[float]], None]


class ProgressBars:
    """Callable progress reporter; `close()` stops the display (also used as a context manager)."""

    def __init__(self, *, enabled: bool = True, console: Console | None = None) -> None:
        self.console = console or Console(file=sys.stderr)
        self.enabled = enabled and self.console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._description: str | None = None

    def __call__(self, description: str, fraction: float | None) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                TimeElapsedColumn(), console=self.console,
            )
            self._progress.start()
        if description != self._description:
            self._finish_task()
            self._task = self._progress.add_task(description, total=None if fraction is None else 1.0)
            self._description = description
        assert self._task is not None
        if fraction is not None:
            self._progress.update(self._task, total=1.0, completed=min(max(float(fraction), 0.0), 1.0))

    def _finish_task(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=1.0, completed=1.0)

    def close(self, *, finished: bool = True) -> None:
        """Stop drawing; `finished` marks the current bar done (not after an error)."""
        if self._progress is not None:
            if finished:
                self._finish_task()
            self._progress.stop()
            self._progress = None
            self._task = None
            self._description = None

    def __enter__(self) -> "ProgressBars":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(finished=exc_type is None)
