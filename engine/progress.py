"""The progress callback the long-running engine calls take (report, compare, evaluate, demo).

`progress(message, fraction)`: fraction in [0, 1], or None while the amount of work is unknown. The
CLI passes one that drives a rich progress bar on stderr; the engine never draws anything itself.
"""
from __future__ import annotations

from typing import Callable, Optional

Progress = Callable[[str, Optional[float]], None]
