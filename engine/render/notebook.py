"""Inline displays for Jupyter (`_repr_html_`): an Explanation as its grid figure, a model summary as
a table. Graders and students work in notebooks; these are the same renderers the pages use."""
from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..explanation import Explanation

MAX_ROWS = 8  # images drawn inline; the arrays hold them all


def explanation_html(expl: "Explanation") -> str:
    """The explanation's grid (image, map, overlay per row) as an embedded PNG, with a one-line caption."""
    from .figures import render_grid

    n = min(len(expl), MAX_ROWS)
    shown = expl.take(np.arange(n))
    with tempfile.TemporaryDirectory() as tmp:
        png = render_grid(shown, Path(tmp) / "grid.png", images=display_inputs(shown))
        data = base64.b64encode(png.read_bytes()).decode("ascii")
    caption = (f"{expl.method}: {len(expl)} image(s), {expl.seconds:.2f} s on {expl.device}"
               + (f" (first {n} drawn)" if n < len(expl) else "") + "; images min-max scaled for display")
    return (f'<figure style="margin:0"><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}" '
            f'style="max-width:100%"><figcaption>{html.escape(caption)}</figcaption></figure>')


def display_inputs(expl: "Explanation") -> np.ndarray:
    """The model inputs as (N, H, W, C) in [0, 1], each image min-max scaled: without the model's spec the
    preprocessing cannot be undone, but a linear one only shifts and scales what is drawn."""
    x = np.asarray(expl.inputs, dtype=np.float32)
    h, w = expl.maps.shape[1:]
    if x.ndim == 4 and x.shape[1:3] != (h, w) and x.shape[2:4] == (h, w):
        x = np.transpose(x, (0, 2, 3, 1))
    if x.ndim == 3:
        x = x[..., None]
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(x.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-12)
    return (x - lo) / span


def summary_html(summary: dict[str, Any]) -> str:
    """A model summary (Model.summary()) as the framework shows it, or the ONNX layers with the note."""
    from .html import summary_table

    source = summary.get("source_summary")
    head, rows, _ = summary_table(summary)
    foot = (f"{source['style']}: total params {source['total_params']:,}, trainable {source['trainable_params']:,}, "
            f"non-trainable {source['non_trainable_params']:,}" if source
            else f"total params {summary['total_params']:,}; note: {summary['summary_note']}")
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    title = html.escape(Path(str((summary.get("source") or {}).get("path") or summary["path"])).name)
    return (f"<table><caption style='text-align:left'><b>{title}</b></caption><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr></thead><tbody>{cells}</tbody></table>"
            f"<p>{html.escape(foot)}</p>")
