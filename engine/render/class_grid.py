"""The grader's side-by-side view: the same images, every student's map for one method."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
from matplotlib.figure import Figure

from ..registry import is_signed_method
from .figures import DPI, _FONT, overlay, save_figure

CELL_IN = 1.1
LABEL_IN = 1.6


def render_class_grid(images: np.ndarray, maps: Mapping[str, np.ndarray], method: str, path: str | os.PathLike[str],
                      *, column_labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Rows: students (`maps` id -> (M, h, w) map at that student's model resolution); columns: the
    M shared images (M, H, W, C) in [0, 1]. Each cell is the map resized to the image and overlaid."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    m = images.shape[0]
    rows = list(maps.items())
    signed = is_signed_method(method) or any(bool((v < 0).any()) for _, v in rows)
    n_rows = len(rows) + 1
    width, height = LABEL_IN + CELL_IN * m, 0.45 + CELL_IN * n_rows
    fig = Figure(figsize=(width, height), dpi=DPI)
    for col in range(m):
        _cell(fig, width, height, 0, col).imshow(np.clip(images[col].squeeze(-1) if images.shape[-1] == 1
                                                         else images[col], 0, 1),
                                                 cmap="gray" if images.shape[-1] == 1 else None, vmin=0, vmax=1)
        if column_labels is not None:
            fig.axes[-1].set_title(column_labels[col], fontsize=_FONT - 1)
    fig.text(0.02, 1 - (0.45 + CELL_IN * 0.5) / height, "image", fontsize=_FONT, va="center")
    for r, (student, amap) in enumerate(rows, start=1):
        fig.text(0.02, 1 - (0.45 + CELL_IN * (r + 0.5)) / height, student[:22],
                 fontsize=_FONT, va="center")
        for col in range(min(m, amap.shape[0])):
            resized = cv2.resize(np.asarray(amap[col], np.float32), (images.shape[2], images.shape[1]),
                                 interpolation=cv2.INTER_LINEAR)
            _cell(fig, width, height, r, col).imshow(overlay(images[col], resized, signed=signed))
    fig.suptitle(title or f"{method}: every student, the same images", fontsize=_FONT + 2,
                 y=1 - 0.1 / height, va="top")
    return save_figure(fig, path)


def _cell(fig: Figure, width: float, height: float, row: int, col: int):  # type: ignore[no-untyped-def]
    pad = 0.05
    ax = fig.add_axes(((LABEL_IN + col * CELL_IN + pad) / width, 1 - (0.45 + (row + 1) * CELL_IN - pad) / height,
                       (CELL_IN - 2 * pad) / width, (CELL_IN - 2 * pad) / height))
    ax.set_axis_off()
    return ax
