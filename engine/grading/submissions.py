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

MODEL_SUFFIXES = (".onnx", ".h5", ".hdf5", ".keras", ".pt", ".pth", ".pkl", ".ckpt", ".bin")
ARCH_SUFFIXES = (".json", ".yaml", ".yml")
# When a folder holds several model files, prefer the one a grader would: the ONNX the student
# exported, then full Keras models, then PyTorch files; the largest file breaks ties.
_PREFERENCE = {".onnx": 0, ".keras": 1, ".h5": 2, ".hdf5": 2, ".pt": 3, ".pth": 3, ".pkl": 4, ".ckpt": 4, ".bin": 5}
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
            if entry.suffix.lower() not in MODEL_SUFFIXES:
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
        raise BadInputError(f"{root} holds no submissions (model files {', '.join(MODEL_SUFFIXES)} or one folder per student)")
    return found


def _folder_submission(folder: Path) -> Submission:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    models = [p for p in files if p.suffix.lower() in MODEL_SUFFIXES]
    models.sort(key=lambda p: (_PREFERENCE.get(p.suffix.lower(), 9), -p.stat().st_size, str(p)))
    arch = sorted(p for p in files if p.suffix.lower() in ARCH_SUFFIXES)
    python = tuple(sorted(p for p in files if p.suffix == ".py"))
    return Submission(id=_safe_id(folder.name), root=folder, model=models[0] if models else None,
                      arch=arch[0] if arch else None, python=python)


def _safe_id(name: str) -> str:
    cleaned = _SAFE_ID.sub("_", name).strip("._")
    return cleaned or "submission"


def options_hash(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()
