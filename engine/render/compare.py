"""Figures that put models side by side: one row per model, the same images in the columns."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .figures import _FONT, ACTIVATION_CMAP, Layout, _draw_image, is_signed, overlay, save_figure

if TYPE_CHECKING:
    from ..explanation import Explanation


def render_model_rows(rows: Sequence[tuple[str, "Explanation"]], images: np.ndarray, path: str | os.PathLike[str],
                      *, column_labels: Sequence[str], title: str) -> Path:
    """Row 0: the images (display, (N, H, W, C) in [0, 1]); then one row per model: its map of each
    image as an overlay, titled with what it predicted and the score it explained."""
    n = len(images)
    layout = Layout(rows=len(rows) + 1, cols=n, image=1.4, label_band=1.5)
    fig = layout.figure()
    layout.row_label(fig, 0, "images")
    for col in range(n):
        ax = layout.axes(fig, 0, col)
        _draw_image(ax, images[col])
        ax.set_title(column_labels[col], fontsize=_FONT - 1)
    for r, (name, expl) in enumerate(rows, start=1):
        layout.row_label(fig, r, name)
        signed = is_signed(expl)
        for col in range(n):
            ax = layout.axes(fig, r, col)
            ax.imshow(overlay(images[col], expl.maps[col], signed=signed), interpolation="nearest")
            ax.set_title(f"{expl.target_name(col)} {expl.scores[col]:.2f}", fontsize=_FONT - 1)
    fig.suptitle(title, fontsize=_FONT + 2, y=1 - 0.12 / layout.size_in[1], va="top")
    return save_figure(fig, path)


def render_activation_rows(rows: Sequence[tuple[str, Any]], path: str | os.PathLike[str], *, channels: int = 12,
                           title: str) -> Path:
    """One row per model: the image, then the first `channels` activation maps of its chosen layer,
    each on its own colour scale (a row without maps, e.g. a DNN without conv layers, is left blank)."""
    layout = Layout(rows=len(rows), cols=channels + 1, image=1.0, label_band=1.5)
    fig = layout.figure()
    for r, (name, acts) in enumerate(rows):
        layout.row_label(fig, r, name + ("" if acts is None else f"\n{acts.layer}"))
        if acts is None:
            continue
        _draw_image(layout.axes(fig, r, 0), np.asarray(acts.image, dtype=np.float32))
        for k, amap in enumerate(np.asarray(acts.maps, dtype=np.float32)[:channels], start=1):
            ax = layout.axes(fig, r, k)
            top = float(amap.max())
            ax.imshow(amap, cmap=ACTIVATION_CMAP, vmin=min(0.0, float(amap.min())), vmax=top if top > 0 else 1.0,
                      interpolation="nearest")
            ax.set_title(f"#{k - 1}", fontsize=_FONT - 1)
    fig.suptitle(title, fontsize=_FONT + 2, y=1 - 0.12 / layout.size_in[1], va="top")
    return save_figure(fig, path)
