"""The report page: sections of text, tables and figures poured into one jinja2 template.

Figures are embedded as base64 `data:` URIs, so the page is one self-contained file that can be
mailed or archived; each figure also links to its PNG beside the page (`img/...`).
"""
from __future__ import annotations

import base64
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import jinja2

from ..sidecar import write_text_atomic

TEMPLATES = Path(__file__).resolve().parent / "templates"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Link:
    """A table cell that links to another page (a relative href, e.g. a student's report)."""

    text: str
    href: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Section:
    """One part of the report: what was run (parameters, seconds) and what came out (blocks in order)."""

    id: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def text(self, text: str) -> None:
        self.blocks.append({"kind": "text", "text": text})

    def heading(self, text: str) -> None:
        self.blocks.append({"kind": "heading", "text": text})

    def kv(self, rows: Sequence[tuple[str, Any]]) -> None:
        self.blocks.append({"kind": "kv", "rows": list(rows)})

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], *, numeric: Sequence[int] = ()) -> None:
        self.blocks.append({"kind": "table", "headers": list(headers), "rows": [list(r) for r in rows],
                            "numeric": set(numeric)})

    def figure(self, png: str | os.PathLike[str], caption: str, *, relative_to: str | os.PathLike[str],
               alt: str | None = None) -> None:
        """Embed the PNG file `png`; `relative_to` is the report's folder (for the link to the file)."""
        self.blocks.append(_figure_block(Path(png), caption, relative_to, alt))

    def figure_row(self, pngs: Sequence[str | os.PathLike[str]], captions: Sequence[str], *,
                   relative_to: str | os.PathLike[str]) -> None:
        """Figures next to each other (wrapping on narrow screens), e.g. one confusion matrix per model."""
        self.blocks.append({"kind": "row", "figures": [_figure_block(Path(p), c, relative_to, None)
                                                       for p, c in zip(pngs, captions)]})

    @property
    def figures(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for b in self.blocks:
            out += [b] if b["kind"] == "figure" else b["figures"] if b["kind"] == "row" else []
        return out


def _figure_block(png: Path, caption: str, relative_to: str | os.PathLike[str], alt: str | None) -> dict[str, Any]:
    data = png.read_bytes()
    width, height = png_size(data)
    return {"kind": "figure", "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii"),
            "file": Path(os.path.relpath(png, relative_to)).as_posix(), "caption": caption,
            "alt": alt or caption, "width": width, "height": height}


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def render_report_html(
    path: str | os.PathLike[str],
    *,
    title: str,
    lead: str,
    facts: Sequence[tuple[str, Any]],
    sections: Sequence[Section],
    footer: str,
    kind: str = "report",
) -> Path:
    """Write the report page (or a comparison: `kind`) atomically and return its path."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    page = env.get_template("report.html").render(
        title=title, lead=lead, facts=list(facts), sections=list(sections), footer=footer, kind=kind,
        css=(TEMPLATES / "report.css").read_text(encoding="utf-8"),
    )
    return write_text_atomic(path, page)


def iframe(page: str, *, height: int = 720) -> str:
    """A whole page shown inside a notebook cell: an iframe whose srcdoc holds it, so its styles stay in it."""
    import html

    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;border:1px solid '
            '#d9dee7" sandbox="allow-same-origin"></iframe>')


def summary_table(summary: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]], list[int]]:
    """(headers, rows, numeric columns) of a model summary: the framework's own rows when the exporter
    recorded them (torch rows indented by depth), else the ONNX layers."""
    source = summary.get("source_summary")
    if source:
        return (["layer (type)", "output shape", "parameters"],
                [("\u2003" * max(int(r.get("depth") or 0) - 1, 0) + f"{r['name']} ({r['class']})", r["output_shape"],
                  f"{r['params']:,}") for r in source["rows"]], [2])
    return (["layer", "kind", "ONNX op", "output shape", "parameters"],
            [(layer["name"], layer["kind"], layer["op_type"],
              "x".join(map(str, layer["output_shape"])) if layer["output_shape"] else "?", f"{layer['params']:,}")
             for layer in summary["layers"]], [4])
