"""Regenerate the README's pictures from the demo report.

    .venv/bin/python docs/make_pictures.py [DEMO_DIR]

Runs the demo into DEMO_DIR (default: onnxplain-out/demo) unless a report is already there, takes a
1200x2400 screenshot of the page in headless Chromium, and copies the first rows of the saliency
and LIME grids and the filter grid, each as a PNG under 300 KB.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parent
MAX_BYTES = 300_000
ROWS_SHOWN = 4


def main(demo_dir: Path) -> None:
    from onnxplain.engine.render.figures import DPI, TITLE_BAND

    page = demo_dir / "report.html"
    if not page.exists():
        from onnxplain.engine.demo import run_demo

        page = run_demo(demo_dir)
    screenshot(page, DOCS / "demo_report.png")
    rows = 10  # the demo explains one image per digit
    for name in ("saliency", "lime"):
        grid = Image.open(demo_dir / "img" / f"{name}.png")
        row_h = (grid.height - TITLE_BAND * DPI) / rows
        save_small(grid.crop((0, 0, grid.width, int(round(TITLE_BAND * DPI + ROWS_SHOWN * row_h)))),
                   DOCS / f"demo_{name}.png")
    save_small(Image.open(demo_dir / "img" / "filters.png"), DOCS / "demo_filters.png")


def screenshot(page: Path, target: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Chromium is not installed: run `make browser`")
    with tempfile.TemporaryDirectory() as profile:
        raw = Path(profile) / "shot.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--screenshot={raw}", "--window-size=1200,2400",
                        page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
        save_small(Image.open(raw), target)


def save_small(img: Image.Image, target: Path) -> None:
    """A PNG under MAX_BYTES: full colour when it fits, else 256 colours, else smaller and smaller."""
    img = img.convert("RGB")
    img.save(target, optimize=True)
    while target.stat().st_size >= MAX_BYTES:
        img.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.LANCZOS)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("onnxplain-out/demo"))
