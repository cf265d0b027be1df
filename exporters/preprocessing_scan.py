"""Read the preprocessing a student wrote, from their .py files, without running them.

Parsed with `ast` only (a submission's code never runs here). What is looked for, where it is plain:
- torchvision `transforms.Normalize(mean, std)` with literal numbers (positional or keywords);
- `transforms.ToTensor()` (pixels / 255) and `Resize(...)` / `CenterCrop(...)` sizes;
- a division by 255 (`x / 255.`, `x / 255`), or the [-1, 1] forms `(x / 255 - 0.5) * 2`,
  `(x / 255. - 0.5) / 0.5` and `x / 127.5 - 1`;
- OpenCV reads: `cv2.imread` of a colour image with no `cv2.cvtColor(..., COLOR_BGR2RGB)` (or
  a channel flip `[..., ::-1]`) anywhere is BGR input.
The result is a candidate, not a fact: `onnxplain.engine.preprocessing_check` measures it on labelled
data beside the usual conventions. Resize/CenterCrop sizes are reported for the grader (the engine
resizes every image to the model's input size itself; a crop is not applied).
"""
from __future__ import annotations

import ast
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .student_code import files_in, source_text

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1 << 20
MAX_FILES = 50


@dataclass
class ScannedPreprocessing:
    """The preprocessing the code shows: model input = (pixel * scale - mean) / std, pixel 0..255."""

    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: str = "RGB"
    resize: Any = None
    center_crop: Any = None
    evidence: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std),
                "channel_order": self.channel_order, "resize": self.resize, "center_crop": self.center_crop,
                "evidence": list(self.evidence)}


@dataclass
class _Findings:
    to_tensor: list[str] = field(default_factory=list)
    normalize: list[tuple[tuple[float, ...], tuple[float, ...], str]] = field(default_factory=list)
    div255: list[str] = field(default_factory=list)
    minus_one_one: list[str] = field(default_factory=list)
    imread_colour: list[str] = field(default_factory=list)
    to_rgb: list[str] = field(default_factory=list)
    resize: list[tuple[Any, str]] = field(default_factory=list)
    center_crop: list[tuple[Any, str]] = field(default_factory=list)


def scan_preprocessing(files: Iterable[str | Path]) -> ScannedPreprocessing | None:
    """The candidate preprocessing that the student's `files` show, or None when they show none."""
    found = _Findings()
    for path in list(files)[:MAX_FILES]:
        path = Path(path)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            tree = ast.parse(source_text(path), filename=str(path))
        except (OSError, SyntaxError, ValueError, RecursionError) as exc:
            log.debug("preprocessing scan skips %s: %s", path, exc)
            continue
        _Visitor(found, path.name).visit(tree)
    return _candidate(found)


def scan_folder(folder: str | Path) -> ScannedPreprocessing | None:
    """`scan_preprocessing` of the code files (.py, .ipynb) directly in `folder`."""
    return scan_preprocessing(files_in(folder))


def _candidate(f: _Findings) -> ScannedPreprocessing | None:
    evidence: list[str] = []
    if f.minus_one_one:
        scale, mean, std = 2 / 255, (1.0,), (1.0,)
        evidence.append(f"[-1, 1] scaling at {f.minus_one_one[0]}")
    elif f.normalize:
        m, s, where = f.normalize[0]
        if f.to_tensor or f.div255:
            scale = 1 / 255
            evidence.append(f"pixels / 255 ({'ToTensor' if f.to_tensor else '/ 255'} at "
                            f"{(f.to_tensor or f.div255)[0]})")
        else:  # Normalize without ToTensor or /255: its numbers tell the scale (means above 1 are in pixels)
            scale = 1.0 if max(m) > 1.0 else 1 / 255
        mean, std = m, s
        evidence.append(f"Normalize(mean={list(m)}, std={list(s)}) at {where}")
    elif f.to_tensor or f.div255:
        scale, mean, std = 1 / 255, (0.0,), (1.0,)
        evidence.append(f"pixels / 255 ({'ToTensor' if f.to_tensor else '/ 255'} at {(f.to_tensor or f.div255)[0]})")
    else:
        scale, mean, std = None, (0.0,), (1.0,)
    order = "RGB"
    if f.imread_colour and not f.to_rgb:
        order = "BGR"
        evidence.append(f"cv2.imread at {f.imread_colour[0]} with no conversion to RGB")
    resize = f.resize[0][0] if f.resize else None
    crop = f.center_crop[0][0] if f.center_crop else None
    if resize is not None:
        evidence.append(f"Resize({resize}) at {f.resize[0][1]}")
    if crop is not None:
        evidence.append(f"CenterCrop({crop}) at {f.center_crop[0][1]}")
    if scale is None and order == "RGB":
        return None
    return ScannedPreprocessing(scale if scale is not None else 1 / 255, tuple(mean), tuple(std), order,
                                resize, crop, evidence)


class _Visitor(ast.NodeVisitor):
    def __init__(self, found: _Findings, name: str) -> None:
        self.found, self.name = found, name

    def where(self, node: ast.AST) -> str:
        return f"{self.name}:{getattr(node, 'lineno', '?')}"

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        if name == "ToTensor":
            self.found.to_tensor.append(self.where(node))
        elif name == "Normalize":
            mean = _numbers(_arg(node, 0, "mean"))
            std = _numbers(_arg(node, 1, "std"))
            if mean and std:
                self.found.normalize.append((mean, std, self.where(node)))
        elif name in ("Resize", "CenterCrop"):
            size = _literal(_arg(node, 0, "size"))
            if size is not None:
                target = self.found.resize if name == "Resize" else self.found.center_crop
                target.append((list(size) if isinstance(size, tuple) else size, self.where(node)))
        elif name == "imread" and _is_colour_read(node):
            self.found.imread_colour.append(self.where(node))
        elif name == "cvtColor" and any("2RGB" in _dotted(a) for a in node.args[1:2]):
            self.found.to_rgb.append(self.where(node))
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if _is_minus_one_one(node):
            self.found.minus_one_one.append(self.where(node))
        elif isinstance(node.op, ast.Div) and _number(node.right) == 255:
            self.found.div255.append(self.where(node))
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        # img[..., ::-1] / img[:, :, ::-1]: a BGR <-> RGB flip
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        last = parts[-1] if parts else None
        if (len(parts) >= 2 and isinstance(last, ast.Slice) and last.lower is None and last.upper is None
                and _number(last.step) == -1):
            self.found.to_rgb.append(self.where(node))
        self.generic_visit(node)


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _arg(node: ast.Call, index: int, keyword: str) -> ast.expr | None:
    for kw in node.keywords:
        if kw.arg == keyword:
            return kw.value
    return node.args[index] if len(node.args) > index else None


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _numbers(node: ast.expr | None) -> tuple[float, ...] | None:
    value = _literal(node)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    return None


def _number(node: ast.expr | None) -> float | None:
    value = _literal(node)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _is_colour_read(node: ast.Call) -> bool:
    """cv2.imread(path) or cv2.imread(path, IMREAD_COLOR / 1); not IMREAD_GRAYSCALE / 0."""
    if _dotted(node.func) != "cv2.imread":  # skimage, imageio and matplotlib read RGB
        return False
    flag = _arg(node, 1, "flags")
    if flag is None:
        return True
    return "GRAYSCALE" not in _dotted(flag) and _number(flag) not in (0.0,)


def _is_div(node: ast.expr, value: float) -> bool:
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _number(node.right) == value


def _is_minus_one_one(node: ast.BinOp) -> bool:
    """(x / 255 - 0.5) * 2, (x / 255 - 0.5) / 0.5, 2 * (x / 255 - 0.5), x / 127.5 - 1."""
    def half_shift(e: ast.expr) -> bool:
        return (isinstance(e, ast.BinOp) and isinstance(e.op, ast.Sub) and _number(e.right) == 0.5
                and _is_div(e.left, 255))

    if isinstance(node.op, ast.Mult):
        return (half_shift(node.left) and _number(node.right) == 2) or (half_shift(node.right) and _number(node.left) == 2)
    if isinstance(node.op, ast.Div):
        return half_shift(node.left) and _number(node.right) == 0.5
    if isinstance(node.op, ast.Sub):
        return _is_div(node.left, 127.5) and _number(node.right) == 1
    return False
