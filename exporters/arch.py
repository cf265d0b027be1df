"""`--arch` for PyTorch: the model class from `MODULE:CLASS` or `path/to/model.py:CLASS` (child only).

Importing the user's model file runs it: that is what `--arch` asks for. A file is imported under
a name derived from its path and content, so one long-lived worker serving many students never
mixes up two different `model.py` files.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from onnxplain.engine.errors import BadInputError

from .util import first_line


def load_factory(arch: str) -> Callable[..., Any]:
    """The class (or function returning a module) named by `arch`."""
    target, _, attr = arch.rpartition(":")
    if not target or not attr:
        raise BadInputError(f"--arch {arch!r} must be MODULE:CLASS or path/to/model.py:CLASS")
    module = _import_file(Path(target), arch) if target.endswith(".py") else _import_module(target, arch)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_") and isinstance(getattr(module, n), type))
            listed = ", ".join(names[:10]) or "none"
            raise BadInputError(f"--arch {arch!r}: {target} has no {attr!r}; its classes: {listed}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BadInputError(f"--arch {arch!r}: {attr} is not a class or function")
    return obj


def build_module(factory: Callable[..., Any], arch_args: Any, arch: str) -> Any:
    """Instantiate the --arch class with --arch-args (a dict of keywords or a list of positional values)."""
    import torch

    try:
        if isinstance(arch_args, dict):
            module = factory(**arch_args)
        elif isinstance(arch_args, list):
            module = factory(*arch_args)
        else:
            module = factory()
    except Exception as exc:
        raise BadInputError(
            f"--arch {arch}: creating the model failed ({first_line(exc)}); pass its arguments with --arch-args JSON"
        ) from exc
    if not isinstance(module, torch.nn.Module):
        raise BadInputError(f"--arch {arch} gives a {type(module).__name__}, not a torch.nn.Module")
    return module


def _import_module(name: str, arch: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise BadInputError(f"--arch {arch!r}: cannot import {name} ({first_line(exc)})") from exc


def _import_file(path: Path, arch: str) -> Any:
    if not path.is_file():
        raise BadInputError(f"--arch {arch!r}: {path} is not a file")
    data = path.read_bytes()
    digest = hashlib.sha256(str(path.resolve()).encode() + b"\0" + data).hexdigest()[:16]
    name = f"onnxplain_arch_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BadInputError(f"--arch {arch!r}: {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up while it executes
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # the model file may import its neighbours (utils.py, layers.py)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise BadInputError(
            f"--arch {arch!r}: running {path.name} failed ({type(exc).__name__}: {first_line(exc)})"
        ) from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module
