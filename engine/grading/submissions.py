"""Finding the submissions in a class folder, and the content hash that makes re-runs skip them.

A submission is a model file directly in SUBMISSIONS_DIR (the id is the file's stem) or a folder
(the id is the folder name) holding model files, perhaps a `.json`/`.yaml` Keras architecture
and the student's own `.py` files.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInputError

MODEL_SUFFIXES = (".onnx", ".h5", ".hdf5", ".keras", ".pt", ".pth", ".pkl", ".ckpt", ".bin", ".tar", ".model", ".th")
ARCH_SUFFIXES = (".json", ".yaml", ".yml")
# Never model files, whatever their bytes: what else students put in their folders.
_NOT_MODELS = frozenset({".py", ".ipynb", ".txt", ".md", ".csv", ".json", ".yaml", ".yml", ".png", ".jpg", ".jpeg",
                         ".gif", ".pdf", ".npy", ".npz", ".log", ".html", ".zip", ".gz", ".docx"})
# When a folder holds several model files, prefer the one a grader would: the ONNX the student
# exported, then full Keras models, then PyTorch files; the largest file breaks ties.
_PREFERENCE = {"onnx": 0, "keras3": 1, "keras-h5": 2, "torchscript": 3, "torch-zip": 3, "torch-legacy": 3,
               "pickle": 4, "keras-h5-weights": 5, "hdf5": 6}
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Submission:
    """One student's files. `model` is None when the folder holds no model file (reported, not raised)."""

    id: str
    root: Path
    model: Path | None
    arch: Path | None = None
    python: tuple[Path, ...] = field(default_factory=tuple)

    def files(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        return sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def content_hash(self) -> str:
        """sha256 over every file's relative name and bytes: any change to the submission changes it."""
        h = hashlib.sha256()
        base = self.root.parent if self.root.is_file() else self.root
        for path in self.files():
            h.update(str(path.relative_to(base)).encode())
            h.update(b"\0")
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
        return h.hexdigest()


def discover_submissions(folder: str | Path) -> list[Submission]:
    """Every submission in `folder`, sorted by id; ids are made safe for use as folder names."""
    root = Path(folder)
    if not root.is_dir():
        raise BadInputError(f"{root} is not a folder of submissions (one file or folder per student)")
    found: list[Submission] = []
    seen: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.name.startswith("__"):
            continue
        if entry.is_file():
            if model_format(entry) is None:
                continue
            sub = Submission(id=_safe_id(entry.stem), root=entry, model=entry)
        elif entry.is_dir():
            sub = _folder_submission(entry)
        else:
            continue
        if sub.id in seen:
            raise BadInputError(f"two submissions are both called {sub.id!r} ({seen[sub.id].name} and {entry.name}); "
                                "rename one of them")
        seen[sub.id] = entry
        found.append(sub)
    if not found:
        raise BadInputError(f"{root} holds no submissions (model files such as {', '.join(MODEL_SUFFIXES[:6])}, "
                            "recognised by their content, or one folder per student)")
    return found


def model_format(path: Path) -> str | None:
    """The format of a file that counts as a model file, or None. A usual model extension always counts
    (a damaged one is then reported, not ignored); any other file counts when its bytes are a model's
    (a `half-batch32.th` is a PyTorch file too)."""
    from onnxplain.exporters.sniff import ONNX, UNKNOWN, sniff_format

    suffix = path.suffix.lower()
    if suffix in _NOT_MODELS:
        return None
    try:
        fmt = sniff_format(path)
    except BadInputError:
        fmt = UNKNOWN
    if suffix in MODEL_SUFFIXES:
        return fmt
    return None if fmt in (UNKNOWN, ONNX) else fmt  # ONNX's signature is too weak to trust without its name


def _folder_submission(folder: Path) -> Submission:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    formats = {p: model_format(p) for p in files}
    models = [p for p, fmt in formats.items() if fmt is not None]
    models.sort(key=lambda p: (_PREFERENCE.get(formats[p] or "", 9), -p.stat().st_size, str(p)))
    arch = sorted(p for p in files if p.suffix.lower() in ARCH_SUFFIXES)
    python = tuple(sorted(p for p in files if p.suffix.lower() in (".py", ".ipynb")))  # scripts and notebooks
    return Submission(id=_safe_id(folder.name), root=folder, model=models[0] if models else None,
                      arch=arch[0] if arch else None, python=python)


def _safe_id(name: str) -> str:
    cleaned = _SAFE_ID.sub("_", name).strip("._")
    return cleaned or "submission"


def options_hash(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()
