"""Renderers: they read what the engine computed (Explanation, evaluation, features) and draw it.

PNG figures come from `figures`; the HTML report page from `html`.
"""
from .figures import (
    render_activations,
    render_confusion,
    render_dream,
    render_explanation,
    render_filters,
    render_grid,
    render_histories,
    render_training,
)
from .html import Section, render_report_html

__all__ = [
    "Section", "render_activations", "render_confusion", "render_dream", "render_explanation", "render_filters",
    "render_grid", "render_histories", "render_report_html", "render_training",
]
