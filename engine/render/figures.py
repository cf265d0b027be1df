"""Figures: matplotlib drawings (Agg canvas, no pyplot) of arrays the engine computed.

Every `render_*` function writes one PNG atomically and returns its path. Sizes are fixed by the
layout, never by a tight bounding box, so a figure's pixel size follows from its rows and columns
(`Layout.size_px`). Signed maps (integrated gradients, LIME, occlusion) use a diverging colour map
centred at zero (white = 0, red pushes the target's score up, blue pushes it down); non-negative
maps (saliency, SmoothGrad, Grad-CAM) a sequential one (black = 0).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..details import GradCamDetails, IGDetails, LimeDetails, SaliencyDetails
from ..methods.saliency import masked_image
from ..registry import is_signed_method
from ..sidecar import atomic_path

if TYPE_CHECKING:
    from ..explanation import Explanation
    from ..input_spec import InputSpec

DPI = 100
SIGNED_CMAP = "RdBu_r"
POSITIVE_CMAP = "inferno"
ACTIVATION_CMAP = "viridis"
CONFUSION_CMAP = "Blues"
OVERLAY_ALPHA = 0.7
LIME_TINT = 0.8  # the top superpixels take the signed map's colour at 80% of its scale: a clear red or blue
TITLE_BAND = 0.45  # inches above the cells for the figure title
_FONT = 8


@dataclass(frozen=True)
class Layout:
    """A grid of equal cells (inches): each holds a square image of side `image`, a title line above
    it and, when `colorbar`, room on its right for a colour bar."""

    rows: int
    cols: int
    image: float
    colorbar: bool = False
    label_band: float = 0.0  # inches on the left for row labels
    title_band: float = TITLE_BAND

    @property
    def cell_w(self) -> float:
        return self.image + (0.75 if self.colorbar else 0.1)

    @property
    def cell_h(self) -> float:
        return self.image + 0.35

    @property
    def size_in(self) -> tuple[float, float]:
        return (self.label_band + self.cols * self.cell_w, self.title_band + self.rows * self.cell_h)

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) of the PNG in pixels."""
        w, h = self.size_in
        return (int(round(w * DPI)), int(round(h * DPI)))

    def figure(self) -> Figure:
        return Figure(figsize=self.size_in, dpi=DPI)

    def axes(self, fig: Figure, row: int, col: int) -> Axes:
        """The image axes of cell (row, col); the title line sits above it inside the cell."""
        w, h = self.size_in
        x0 = self.label_band + col * self.cell_w + 0.05
        y_top = h - self.title_band - row * self.cell_h - 0.3
        ax = fig.add_axes((x0 / w, (y_top - self.image) / h, self.image / w, self.image / h))
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    def colorbar_axes(self, fig: Figure, image_ax: Axes) -> Axes:
        w, h = self.size_in
        box = image_ax.get_position()
        return fig.add_axes((box.x1 + 0.05 / w, box.y0, 0.1 / w, box.height))

    def row_label(self, fig: Figure, row: int, text: str) -> None:
        w, h = self.size_in
        y = h - self.title_band - row * self.cell_h - 0.3 - self.image / 2
        fig.text(0.08 / w, y / h, text, ha="left", va="center", fontsize=_FONT)


# ---------------------------------------------------------------------------- public renderers
def render_explanation(
    explanation: "Explanation",
    path: str | os.PathLike[str],
    index: int = 0,
    *,
    spec: "InputSpec | None" = None,
    images: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """One image of an explanation: the image, the map with its colour bar, an overlay, and the
    method's own extra panel (saliency: the saliency mask over the image; LIME: superpixel
    boundaries with the top positive/negative superpixels)."""
    _check_index(explanation, index)
    shown = display_images(explanation, spec=spec, images=images)
    panels = explanation_panels(explanation)
    layout = Layout(rows=1, cols=len(panels), image=2.2, colorbar=True)
    fig = layout.figure()
    for col, panel in enumerate(panels):
        ax = layout.axes(fig, 0, col)
        _draw_panel(fig, layout, ax, panel, explanation, index, shown[index], colorbar=True)
    fig.suptitle(title or explanation_title(explanation, index), fontsize=_FONT + 2, y=1 - 0.12 / layout.size_in[1],
                 va="top")
    return save_figure(fig, path)


def render_grid(
    explanations: "Explanation | Sequence[Explanation]",
    path: str | os.PathLike[str],
    *,
    spec: "InputSpec | None" = None,
    images: np.ndarray | None = None,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    colorbar: bool = True,
) -> Path:
    """A per-class grid: one row per image. For one explanation the columns are image, map,
    overlay (and the method's extra panel); for several explanations of the same images the
    columns are the image and each method's overlay."""
    many = not _is_explanation(explanations)
    expls: list[Explanation] = list(explanations) if many else [explanations]  # type: ignore[list-item, arg-type]
    if not expls:
        raise ValueError("render_grid needs at least one explanation")
    n = len(expls[0])
    if any(len(e) != n for e in expls):
        raise ValueError("every explanation in a grid must cover the same images")
    shown = display_images(expls[0], spec=spec, images=images)
    if many:
        columns: list[tuple[str, Explanation | None]] = [("image", None)] + [("overlay", e) for e in expls]
        colorbar = False
    else:
        columns = [(p, expls[0]) for p in explanation_panels(expls[0])]
    labels = list(row_labels) if row_labels is not None else [_default_row_label(expls[0], i) for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} row labels for {n} images")
    layout = Layout(rows=n, cols=len(columns), image=1.5, colorbar=colorbar, label_band=1.35)
    fig = layout.figure()
    for row in range(n):
        layout.row_label(fig, row, labels[row])
        for col, (panel, expl) in enumerate(columns):
            ax = layout.axes(fig, row, col)
            _draw_panel(fig, layout, ax, panel, expl or expls[0], row, shown[row], colorbar=colorbar,
                        heading=(expl.method if many and expl is not None else None), titled=row == 0)
    default_title = " vs ".join(e.method for e in expls) if many else explanation_title(expls[0], None)
    fig.suptitle(title or default_title, fontsize=_FONT + 2, y=1 - 0.12 / layout.size_in[1], va="top")
    return save_figure(fig, path)


def render_confusion(
    matrix: np.ndarray,
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """The row-normalised confusion matrix (rows = true class, columns = predicted), annotated."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"a confusion matrix must be square (K, K), got {m.shape}")
    k = m.shape[0]
    names = list(labels) if labels is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} labels for a {k}x{k} confusion matrix")
    side = max(2.5, 0.5 * k)
    left, bottom, right = 1.4, 0.95, 0.9
    w, h = left + side + right, bottom + side + TITLE_BAND
    fig = Figure(figsize=(w, h), dpi=DPI)
    ax = fig.add_axes((left / w, bottom / h, side / w, side / h))
    image = ax.imshow(m, cmap=CONFUSION_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    font = _FONT if k <= 12 else 6
    for r in range(k):
        for c in range(k):
            ax.text(c, r, f"{m[r, c]:.2f}", ha="center", va="center", fontsize=font,
                    color="white" if m[r, c] > 0.5 else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=font)
    ax.set_yticks(range(k), names, fontsize=font)
    ax.set_xlabel("predicted", fontsize=_FONT)
    ax.set_ylabel("true", fontsize=_FONT)
    cax = fig.add_axes(((left + side + 0.15) / w, bottom / h, 0.15 / w, side / h))
    fig.colorbar(image, cax=cax).ax.tick_params(labelsize=font)
    fig.suptitle(title or "confusion matrix (rows sum to 1)", fontsize=_FONT + 2, y=1 - 0.12 / h, va="top")
    return save_figure(fig, path)


def render_filters(visualization: Any, path: str | os.PathLike[str], *, columns: int = 8,
                   title: str | None = None) -> Path:
    """The gradient-ascent images of a layer's filters, each titled with its final mean activation and
    drawn with its own contrast (`filter_contrast`): one grey scale for all leaves most filters flat grey."""
    imgs = np.asarray(visualization.images, dtype=np.float32)
    filters = list(visualization.filters)
    final = np.asarray(visualization.final_activation, dtype=np.float64)
    cols = max(1, min(columns, len(filters)))
    layout = Layout(rows=math.ceil(len(filters) / cols), cols=cols, image=1.1)
    fig = layout.figure()
    for k, (f, img) in enumerate(zip(filters, imgs)):
        ax = layout.axes(fig, k // cols, k % cols)
        _draw_image(ax, filter_contrast(img))
        ax.set_title(f"#{f}  act {final[k]:.3g}", fontsize=_FONT - 1)
    fig.suptitle(title or f"filters of {visualization.layer} (gradient ascent; each filter on its own contrast; "
                 "title: final mean activation)",
                 fontsize=_FONT + 2, y=1 - 0.12 / layout.size_in[1], va="top")
    return save_figure(fig, path)


FILTER_PERCENTILES = (1.0, 99.0)


def filter_contrast(image: np.ndarray) -> np.ndarray:
    """One filter's picture stretched to [0, 1] between its own 1st and 99th percentiles (over all its
    channels, so colours keep their balance), as Lucent normalises each visualisation; a flat image stays."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, FILTER_PERCENTILES)
    if not np.isfinite([lo, hi]).all() or hi - lo < 1e-6:
        return img
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0)


def render_activations(activations: Any, path: str | os.PathLike[str], *, limit: int = 64, columns: int = 8,
                       title: str | None = None) -> Path:
    """The input image followed by the layer's first `limit` channel outputs (each on its own scale)."""
    maps = np.asarray(activations.maps, dtype=np.float32)
    shown = maps[:limit]
    cols = max(1, min(columns, len(shown) + 1))
    layout = Layout(rows=math.ceil((len(shown) + 1) / cols), cols=cols, image=1.1)
    fig = layout.figure()
    ax = layout.axes(fig, 0, 0)
    _draw_image(ax, np.asarray(activations.image, dtype=np.float32))
    ax.set_title("input", fontsize=_FONT - 1)
    for k, amap in enumerate(shown, start=1):
        ax = layout.axes(fig, k // cols, k % cols)
        top = float(amap.max())
        ax.imshow(amap, cmap=ACTIVATION_CMAP, vmin=min(0.0, float(amap.min())), vmax=top if top > 0 else 1.0,
                  interpolation="nearest")
        ax.set_title(f"#{k - 1}  max {top:.2g}", fontsize=_FONT - 1)
    more = f" (first {len(shown)} of {len(maps)})" if len(shown) < len(maps) else ""
    fig.suptitle(title or f"activation maps of {activations.layer}{more}", fontsize=_FONT + 2,
                 y=1 - 0.12 / layout.size_in[1], va="top")
    return save_figure(fig, path)


def render_dream(dream: Any, path: str | os.PathLike[str], *, original: np.ndarray, title: str | None = None) -> Path:
    """Deep dream: the starting image and the image after ascending the layer's activation."""
    layout = Layout(rows=1, cols=2, image=2.2)
    fig = layout.figure()
    for col, (img, name) in enumerate(((original, "before"), (dream.image, "after"))):
        ax = layout.axes(fig, 0, col)
        _draw_image(ax, np.asarray(img, dtype=np.float32))
        ax.set_title(name, fontsize=_FONT)
    fig.suptitle(title or f"deep dream on {dream.layer}: objective {dream.start_objective:.3g} -> {dream.final_objective:.3g}",
                 fontsize=_FONT + 1, y=1 - 0.12 / layout.size_in[1], va="top")
    return save_figure(fig, path)


def render_training(history: Sequence[dict[str, float]], path: str | os.PathLike[str], *,
                    title: str | None = None) -> Path:
    """Training curves of one model: every loss key per epoch, and every accuracy key per epoch."""
    return render_histories([("", history)], path, title=title)


_LINESTYLES = ("-", "--", ":", "-.")


def render_histories(histories: Sequence[tuple[str, Sequence[dict[str, float]]]], path: str | os.PathLike[str],
                     *, title: str | None = None) -> Path:
    """Training curves of several models overlaid: one colour per model, one line style per metric
    (loss keys on the left, `acc`/`accuracy` keys on the right; other metrics join the left panel)."""
    histories = [(name, h) for name, h in histories if h]
    if not histories:
        raise ValueError("render_histories needs at least one epoch")
    w, h = 8.0, 3.2
    fig = Figure(figsize=(w, h), dpi=DPI)
    loss_ax = fig.add_axes((0.7 / w, 0.55 / h, 2.9 / w, (h - 1.2) / h))
    acc_ax = fig.add_axes((4.6 / w, 0.55 / h, 2.9 / w, (h - 1.2) / h))
    colours = colormaps["tab10"]
    acc_values: list[float] = []
    for m, (name, history) in enumerate(histories):
        epochs = [int(r["epoch"]) for r in history]
        keys = [k for k in history[0] if k != "epoch"]
        acc_keys = [k for k in keys if "acc" in k]
        for ax, chosen in ((loss_ax, [k for k in keys if k not in acc_keys]), (acc_ax, acc_keys)):
            for j, key in enumerate(chosen):
                ys = [r[key] for r in history]
                if ax is acc_ax:
                    acc_values += ys
                label = f"{name}: {key}" if name else key
                ax.plot(epochs, ys, marker="o", markersize=3, color=colours(m % 10),
                        linestyle=_LINESTYLES[j % len(_LINESTYLES)], label=label.replace("_", " "))
    finite = [v for v in acc_values if np.isfinite(v)]
    if finite and min(finite) >= 0 and max(finite) <= 1:
        acc_ax.set_ylim(0, 1.02)
    loss_ax.set_title("loss (and other metrics)", fontsize=_FONT)
    acc_ax.set_title("accuracy", fontsize=_FONT)
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch", fontsize=_FONT)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=_FONT - 1)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=_FONT - 2, loc="best")
    fig.suptitle(title or "training curves", fontsize=_FONT + 2, y=1 - 0.1 / h, va="top")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- shared pieces
def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write `fig` as PNG atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return path


def display_images(explanation: "Explanation", *, spec: "InputSpec | None" = None,
                   images: np.ndarray | None = None) -> np.ndarray:
    """(N, H, W, C) floats in [0, 1] to draw: `images` as given, or the explanation's inputs mapped
    back through `spec`."""
    if images is not None:
        shown = np.asarray(images, dtype=np.float32)
        if shown.ndim == 3:
            shown = shown[..., None]
    elif spec is not None:
        shown = spec.to_display(explanation.inputs)
    else:
        raise ValueError("give spec= (the model's InputSpec) or images= (N, H, W, C) in [0, 1]")
    if shown.shape[:3] != explanation.maps.shape:
        raise ValueError(f"images {shown.shape} do not match the maps {explanation.maps.shape}")
    return np.clip(shown, 0.0, 1.0)


def is_signed(explanation: "Explanation") -> bool:
    """Signed by definition (the registry's `signed`), or any map with a negative value."""
    return is_signed_method(explanation.method) or bool((explanation.maps < 0).any())


def explanation_panels(explanation: "Explanation") -> list[str]:
    panels = ["image", "map", "overlay"]
    if isinstance(explanation.details, SaliencyDetails):
        panels.append("mask")
    if isinstance(explanation.details, LimeDetails):
        panels.append("superpixels")
    return panels


def explanation_title(explanation: "Explanation", index: int | None) -> str:
    details = explanation.details
    layer = [f"layer {details.layer}"] if isinstance(details, GradCamDetails) else []
    if index is None:
        return " · ".join([explanation.method, *layer, f"{len(explanation)} images, {explanation.seconds:.2f} s"])
    parts = [explanation.method, f"target {explanation.target_name(index)} (score {explanation.scores[index]:.3f})",
             *layer]
    if isinstance(details, IGDetails):
        parts.append(f"completeness error {float(details.completeness_error[index]):.2%}")
    if isinstance(details, LimeDetails):
        parts.append(f"R² {float(details.r2[index]):.2f}")
        parts.append(lime_stability_text(explanation, index))
    return " · ".join(parts)


def lime_stability_text(explanation: "Explanation", index: int, *, prefix: bool = True) -> str:
    """'top-5 stable at 97%, 400 samples' (without `prefix`: '97%, 400 samples'): how likely LIME's top
    superpixels are to hold on other perturbations, and how many perturbations it took."""
    details = explanation.details
    if not isinstance(details, LimeDetails):
        raise TypeError(f"{explanation.method} has no LIME stability (details: {type(details).__name__})")
    stable = float(details.stability[index])
    used = int(details.samples_used[index])
    text = f"{stable:.0%}, {used:,} samples"
    return f"top-{explanation.params.get('top_k', 5)} stable at {text}" if prefix else text


def signed_color(value: float | np.ndarray, scale: float) -> np.ndarray:
    """The RGBA colour a signed map value gets when its largest magnitude is `scale`."""
    return colormaps[SIGNED_CMAP](Normalize(-scale, scale)(value))


def positive_color(value: float | np.ndarray, scale: float) -> np.ndarray:
    return colormaps[POSITIVE_CMAP](Normalize(0.0, scale)(value))


def overlay(image: np.ndarray, amap: np.ndarray, *, signed: bool) -> np.ndarray:
    """The map's colours blended over the image, opaque where the map is strongest. (H, W, 3) in [0, 1]."""
    base = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    scale = _scale(amap)
    colors = signed_color(amap, scale) if signed else positive_color(np.clip(amap, 0, None), scale)
    alpha = (OVERLAY_ALPHA * np.clip(np.abs(amap) / scale, 0.0, 1.0))[..., None]
    return np.clip(base * (1 - alpha) + colors[..., :3] * alpha, 0.0, 1.0)


def lime_picture(image: np.ndarray, segments: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Superpixel boundaries (yellow) over the image, the top positive superpixels tinted and outlined in
    the signed map's red (they raise the score), the top negative ones in its blue (they lower it). Small
    images are enlarged (nearest neighbour) first so that the one-pixel boundaries stay thin: (k*H, k*W, 3)
    in [0, 1]."""
    from skimage.segmentation import find_boundaries

    k = max(1, math.ceil(192 / max(image.shape[0], 1)))
    image, segments, positive, negative = (np.repeat(np.repeat(a, k, axis=0), k, axis=1)
                                           for a in (image, segments, positive, negative))
    out = (np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]).astype(np.float64).copy()
    tops = [(mask, np.asarray(signed_color(sign * LIME_TINT, 1.0))[:3])
            for mask, sign in ((positive, 1), (negative, -1))]
    for mask, colour in tops:
        out[mask] = 0.5 * out[mask] + 0.5 * colour
    out[find_boundaries(segments, mode="inner")] = (1.0, 0.9, 0.0)
    for mask, colour in tops:
        out[find_boundaries(mask.astype(np.int32), mode="inner")] = colour
    return np.clip(out, 0.0, 1.0)


def _draw_panel(fig: Figure, layout: Layout, ax: Axes, panel: str, explanation: "Explanation", index: int,
                image: np.ndarray, *, colorbar: bool, heading: str | None = None, titled: bool = True) -> None:
    amap = explanation.maps[index]
    signed = is_signed(explanation)
    if panel == "image":
        _draw_image(ax, image)
        heading = heading or "image"
    elif panel == "map":
        scale = _scale(amap)
        norm = Normalize(-scale, scale) if signed else Normalize(0.0, scale)
        drawn = ax.imshow(amap, cmap=SIGNED_CMAP if signed else POSITIVE_CMAP, norm=norm, interpolation="nearest")
        if colorbar:
            cbar = fig.colorbar(drawn, cax=layout.colorbar_axes(fig, ax),
                                ticks=[-scale, 0.0, scale] if signed else [0.0, scale])
            cbar.ax.set_yticklabels([f"{t:.2g}" for t in cbar.get_ticks()])
            cbar.ax.tick_params(labelsize=_FONT - 2, length=2, pad=1)
        heading = heading or f"{explanation.method} ({'signed' if signed else '>= 0'})"
    elif panel == "overlay":
        ax.imshow(overlay(image, amap, signed=signed), interpolation="nearest")
        heading = heading or "overlay"
    elif panel == "mask":
        # The method's own masked image: the display image weighted by the normalised |map|.
        _draw_image(ax, masked_image(image[None], amap[None])[0])
        heading = heading or "saliency mask"
    elif panel == "superpixels":
        ex = explanation.details
        assert isinstance(ex, LimeDetails)  # explanation_panels chose this panel
        ax.imshow(lime_picture(image, np.asarray(ex.segments[index]), np.asarray(ex.positive_mask[index], bool),
                               np.asarray(ex.negative_mask[index], bool)), interpolation="nearest")
        heading = heading or "top superpixels: + red, - blue"
    else:
        raise ValueError(f"unknown panel {panel!r}")
    if titled:
        ax.set_title(heading, fontsize=_FONT)


def _draw_image(ax: Axes, image: np.ndarray) -> None:
    if image.ndim == 3 and image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")


def _scale(amap: np.ndarray) -> float:
    top = float(np.max(np.abs(amap))) if amap.size else 0.0
    return top if top > 0 and math.isfinite(top) else 1.0


def _default_row_label(explanation: "Explanation", i: int) -> str:
    return f"target {explanation.target_name(i)}\nscore {explanation.scores[i]:.3g}"


def _check_index(explanation: "Explanation", index: int) -> None:
    if not 0 <= index < len(explanation):
        raise IndexError(f"index {index} is out of range for an explanation of {len(explanation)} images")


def _is_explanation(obj: Any) -> bool:
    from ..explanation import Explanation

    return isinstance(obj, Explanation)
