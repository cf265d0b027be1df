"""Where onnxplain keeps what it computes once per file (exports, measured batch sizes)."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ONNXPLAIN_CACHE"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """`cache_dir`, else $ONNXPLAIN_CACHE, else ~/.cache/onnxplain."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "onnxplain"
