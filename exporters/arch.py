"""`--arch` for PyTorch: where the model class comes from (child process only).

Two kinds of target:
- `MODULE:CLASS` (`torchvision.models:resnet18`, an installed package): imported like any library.
- The student's code: `model.py:Net`, `model.py`, a folder, or `folder:Net`. The files are read with
  `ast` and a class is rebuilt from its definition and what it uses (student_code.py); the rest of the
  script (data loading, training) never runs. Even so this is the student's code, so it needs `trust`.
  Without a class name every torch module class found is a candidate, and class_match.py picks the one
  whose state_dict fits the weights.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from onnxplain.engine.errors import BadInputError, UnsupportedModelError, first_line

from . import student_code


@dataclass(frozen=True)
class Candidate:
    """A way to make the model: a class or factory function, and how to name it in messages."""

    label: str
    factory: Callable[..., Any]


@dataclass(frozen=True)
class CodeTarget:
    """The student's code an --arch names: its files and, optionally, the class wanted."""

    files: tuple[Path, ...]
    class_name: str | None

    @property
    def where(self) -> str:
        return self.files[0].name if len(self.files) == 1 else f"{len(self.files)} .py files"


def is_code_target(arch: str) -> bool:
    """Does `arch` name the student's code (a .py file or folder), rather than an installed module?"""
    target, _, _ = _split(arch)
    return Path(target).suffix.lower() in student_code.SOURCE_SUFFIXES or Path(target).is_dir()


def code_target(arch: str) -> CodeTarget:
    target, _, name = _split(arch)
    return CodeTarget(tuple(student_code.python_files(target)), name or None)


def candidates(arch: str, *, trust: bool, what: str) -> list[Candidate]:
    """The classes `arch` offers. `what` names the weights file in messages."""
    if not is_code_target(arch):
        return [Candidate(arch, _module_attr(arch))]
    target = code_target(arch)
    files = student_code.read_files(_with_neighbours(target.files))
    classes = [c for c in student_code.model_classes(files) if c.path in target.files]
    if target.class_name:
        chosen = [c for c in classes if c.name == target.class_name]
        if not chosen:
            listed = ", ".join(c.name for c in classes) or "none"
            unread = "; ".join(f.error for f in files if f.error)
            raise BadInputError(f"arch={arch!r}: {target.where} has no model class {target.class_name!r}; its model "
                                f"classes: {listed}" + (f" (could not read {unread})" if unread else ""),
                                params=("arch",))
        classes = chosen
    if not classes:
        unread = "; ".join(f.error for f in files if f.error)
        raise UnsupportedModelError(f"{what} needs its model class, but {student_code.describe(files, classes)} "
                                    "defines no torch.nn.Module class" + (f" (could not read {unread})" if unread else ""))
    if not trust:
        raise UnsupportedModelError(
            f"{what} needs its model class from the student's code ({student_code.describe(files, classes)}); "
            "building it runs that class's code (only the class and what it uses, in the isolated export "
            "process), so pass trust=True if you accept that", params=("trust",))
    return [Candidate(c.label, _lazy(files, c)) for c in classes]


def class_by_name(arch: str, name: str, *, trust: bool) -> Callable[..., Any] | None:
    """The class called `name` from `arch` (a pickled model names its class), or None."""
    if not is_code_target(arch):
        factory = _module_attr(arch)
        return factory if getattr(factory, "__name__", None) == name else None
    if not trust:
        return None
    target = code_target(arch)
    files = student_code.read_files(_with_neighbours(target.files))
    match = next((c for c in student_code.model_classes(files) if c.name == name and c.path in target.files), None)
    return student_code.build_class(files, match) if match else None


def _with_neighbours(files: tuple[Path, ...]) -> list[Path]:
    """The target files and the .py files beside them: a class may import its helpers from a neighbour
    (`from layers import conv_block`), which is read, never imported."""
    out = list(files)
    for folder in {f.parent for f in files}:
        out.extend(p for p in student_code.files_in(folder) if p not in out)
    return out


class _LazyClass:
    """A student's class, defined on first use, so that one broken candidate costs only itself; its
    signature is the class's (class_match reads it to choose constructor arguments)."""

    def __init__(self, files: list[student_code.StudentFile], cls: student_code.ModelClass) -> None:
        self.files, self.cls, self.__name__ = files, cls, cls.name
        self._built: type | None = None

    def build(self) -> type:
        if self._built is None:
            try:
                self._built = student_code.build_class(self.files, self.cls)
            except BaseException as exc:  # noqa: BLE001 - student code: any failure is this candidate's
                if isinstance(exc, (KeyboardInterrupt, MemoryError)):
                    raise
                raise BadInputError(f"defining {self.cls.label} failed ({type(exc).__name__}: "
                                    f"{first_line(exc, 160)})") from exc
        return self._built

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.build())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.build()(*args, **kwargs)


def _lazy(files: list[student_code.StudentFile], cls: student_code.ModelClass) -> Callable[..., Any]:
    return _LazyClass(files, cls)


def _split(arch: str) -> tuple[str, str, str]:
    """`target:NAME` -> (target, ':', NAME); a bare file or folder -> (path, '', '')."""
    if Path(arch).exists():
        return arch, "", ""
    return arch.rpartition(":")


def _module_attr(arch: str) -> Callable[..., Any]:
    target, _, attr = arch.rpartition(":")
    if not target or not attr:
        raise BadInputError(f"arch={arch!r} must be MODULE:CLASS, path/to/model.py[:CLASS] or a folder of .py files",
                            params=("arch",))
    try:
        obj: Any = importlib.import_module(target)
    except Exception as exc:
        raise BadInputError(f"arch={arch!r}: cannot import {target} ({first_line(exc)})", params=("arch",)) from exc
    module = obj
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_") and isinstance(getattr(module, n), type))
            listed = ", ".join(names[:10]) or "none"
            raise BadInputError(f"arch={arch!r}: {target} has no {attr!r}; its classes: {listed}", params=("arch",))
        obj = getattr(obj, part)
    if not callable(obj):
        raise BadInputError(f"arch={arch!r}: {attr} is not a class or function", params=("arch",))
    return obj
