"""Figures for "Can these maps be trusted?": deletion/insertion curves and the randomisation check.

- `render_curves`: deletion and insertion side by side; each image's curve thin, their mean thick,
  the random-ranking reference dashed grey; AUCs (means) in the legend.
- `render_randomisation`: Adebayo et al.'s figure: the maps of one image as the layers are
  randomised from the top (|map|, each scaled to its own maximum), above the mean Spearman and SSIM
  to the original maps per stage (with the per-image range) and the flag threshold.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from .figures import DPI, POSITIVE_CMAP, save_figure

if TYPE_CHECKING:
    from ..metrics import FaithfulnessCurves, RandomisationResult

_FONT = 8
MAP_COLOR = "#a12a2a"
RANDOM_COLOR = "#777777"


def render_curves(curves: "FaithfulnessCurves", path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Deletion (left) and insertion (right) curves of every image, their mean and the random reference."""
    w, h = 8.0, 3.2
    fig = Figure(figsize=(w, h), dpi=DPI)
    f = curves.fractions
    panels = [("deletion: pixels removed", curves.deletion, curves.random_deletion, curves.deletion_auc,
               curves.random_deletion_auc, "lower is better"),
              ("insertion: pixels revealed", curves.insertion, curves.random_insertion, curves.insertion_auc,
               curves.random_insertion_auc, "higher is better")]
    for k, (name, ys, rnd, a, ra, better) in enumerate(panels):
        ax = fig.add_axes(((0.7 + 4.0 * k) / w, 0.6 / h, 3.1 / w, (h - 1.25) / h))
        for row in ys:
            ax.plot(f, row, color=MAP_COLOR, alpha=0.18, linewidth=0.8)
        ax.plot(f, ys.mean(axis=0), color=MAP_COLOR, linewidth=2.0, label=f"{curves.method} (AUC {a.mean():.3f})")
        if rnd is not None and ra is not None:
            ax.plot(f, rnd.mean(axis=0), color=RANDOM_COLOR, linewidth=1.6, linestyle="--",
                    label=f"random order (AUC {ra.mean():.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("fraction of pixels, in the map's order", fontsize=_FONT)
        ax.set_ylabel(f"target {curves.score}", fontsize=_FONT)
        ax.set_title(f"{name} ({better})", fontsize=_FONT)
        ax.tick_params(labelsize=_FONT - 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=_FONT - 1, loc="upper right" if k == 0 else "lower right")
    fig.suptitle(title or f"{curves.method}: deletion and insertion ({curves.baseline} baseline, "
                 f"{len(ys)} image{'s' if len(ys) != 1 else ''})", fontsize=_FONT + 2, y=1 - 0.08 / h, va="top")
    return save_figure(fig, path)


def render_randomisation(result: "RandomisationResult", path: str | os.PathLike[str], *, image: int = 0,
                         title: str | None = None) -> Path:
    """The cascade of maps of image `image` (when the result kept them) above the similarity curves."""
    stages = ["original", *(f"-> {name}" for name in result.layers)]
    n = len(stages)
    cell = 1.25
    show_maps = result.maps is not None
    w = max(7.0, 0.4 + n * cell)
    maps_h = cell + 0.35 if show_maps else 0.0
    plot_h = 2.6
    h = 0.45 + maps_h + plot_h
    fig = Figure(figsize=(w, h), dpi=DPI)
    if show_maps:
        x0 = (w - n * cell) / 2
        for k in range(n):
            ax = fig.add_axes(((x0 + k * cell + 0.05) / w, (h - 0.45 - maps_h + 0.05) / h,
                               (cell - 0.1) / w, (cell - 0.1) / h))
            amap = np.abs(np.asarray(result.maps[k, image], np.float64))
            top = amap.max()
            ax.imshow(amap / top if top > 0 else amap, cmap=POSITIVE_CMAP, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(_short(stages[k]), fontsize=_FONT - 1)
    ax = fig.add_axes((0.7 / w, 0.75 / h, (w - 1.0) / w, (plot_h - 1.05) / h))
    x = np.arange(1, n)
    for values, name, color in ((result.spearman, "Spearman rank correlation of |map|", MAP_COLOR),
                                (result.ssim, "SSIM", "#2a5da1")):
        ax.plot(x, values.mean(axis=1), marker="o", color=color, label=name)
        ax.fill_between(x, values.min(axis=1), values.max(axis=1), color=color, alpha=0.15)
    ax.axhline(result.threshold, color=RANDOM_COLOR, linestyle="--", linewidth=1,
               label=f"flag threshold {result.threshold:g} (Spearman, fully randomised)")
    ax.set_xticks(x)
    ax.set_xticklabels([_short(s) for s in stages[1:]], fontsize=_FONT - 1)
    ax.set_xlim(0.7, max(n - 1, 1) + 0.3)
    ax.set_ylim(-0.5, 1.05)
    ax.set_ylabel("similarity to the original maps", fontsize=_FONT)
    ax.set_xlabel("layers randomised, from the top (cascading)", fontsize=_FONT)
    ax.tick_params(labelsize=_FONT - 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=_FONT - 1, loc="lower left")
    verdict = "FLAGGED: the maps barely change" if result.flagged else "passes: the maps change"
    fig.suptitle(title or f"{result.method}: model-parameter randomisation ({verdict})", fontsize=_FONT + 2,
                 y=1 - 0.08 / h, va="top")
    return save_figure(fig, path)


def _short(text: str, width: int = 16) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
