"""One results file pair out of the phases of `benchmarks/gpu.sh`.

Each bench phase of gpu.sh runs `benchmarks.run` in its own process (a phase killed by its time
limit loses only itself) and writes `<out>/<phase>/<device>.{json,md}`. A device machine gives back
at most 8 files, so this merges them into `<out>/<device>.json` (every phase's status and seconds,
and each bench phase's whole document) and `<out>/<device>.md` (a phase table, then each phase's
tables), and deletes the per-phase files it merged.

    python -m benchmarks.gpu_results OUT DEVICE     # reads OUT/phases.tsv, written by gpu.sh
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from onnxplain.engine.sidecar import write_json_atomic, write_text_atomic

PHASES = "phases.tsv"  # gpu.sh appends one line per phase: name, status, seconds, command


def read_phases(out: Path) -> list[dict[str, Any]]:
    """gpu.sh's phase log: one dict per phase, in the order they ran."""
    rows = []
    for line in (out / PHASES).read_text().splitlines():
        if line.strip():
            name, status, seconds, command = line.split("\t", 3)
            rows.append({"phase": name, "status": status, "seconds": float(seconds), "command": command})
    return rows


def merge(out: Path, device: str) -> tuple[Path, Path]:
    """Write `<out>/<device>.json` and `.md` from the phase log and each bench phase's files."""
    phases = read_phases(out)
    runs: dict[str, Any] = {}
    sections = []
    for p in phases:
        folder = out / p["phase"]
        doc, md = folder / f"{device}.json", folder / f"{device}.md"
        if doc.exists() and md.exists():
            runs[p["phase"]] = json.loads(doc.read_text())
            sections.append(md.read_text())
            doc.unlink()
            md.unlink()
    table = ["| phase | status | seconds |", "| --- | --- | --- |",
             *(f"| {p['phase']} | {p['status']} | {p['seconds']:.0f} |" for p in phases)]
    total = sum(p["seconds"] for p in phases)
    head = (f"# benchmarks/gpu.sh on {device}\n\nPhases ({total:.0f} s in all; a bench phase's tables follow "
            f"only when it finished):\n\n" + "\n".join(table))
    return (write_json_atomic(out / f"{device}.json", {"device": device, "seconds": total, "phases": phases,
                                                      "runs": runs}),
            write_text_atomic(out / f"{device}.md", "\n\n".join([head, *sections]) + "\n"))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m benchmarks.gpu_results OUT DEVICE", file=sys.stderr)
        return 2
    for path in merge(Path(args[0]), args[1]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
