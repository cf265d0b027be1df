"""PyTorch files -> an nn.Module, without running code from the file unless the user trusts it.

TorchScript loads with `torch.jit.load(map_location="cpu")` (its code is TorchScript, not Python).
Everything else goes through `torch.load(weights_only=True)`; a file that needs more (a whole
pickled model, or anything that would import a class) is refused with the list of what it would
import, read by `pickle_scan` without unpickling. With `trust` the file is unpickled for real.
A state_dict needs the model class from `--arch`; checkpoint dicts hold it under a known key.
"""
from __future__ import annotations

import logging
import pickle
import types
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from onnxplain.engine.errors import BadInputError, ConversionError, UnsupportedModelError

from . import sniff
from .arch import build_module, load_factory
from .options import ExportOptions
from .pickle_scan import pickle_globals, suspicious_globals, torch_pickle_bytes
from .util import first_line

log = logging.getLogger(__name__)

WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "network", "net")


def load_torch(src: Path, fmt: str, options: ExportOptions) -> tuple[Any, dict[str, Any]]:
    """(module in eval mode on the CPU, sidecar `source` facts)."""
    source: dict[str, Any] = {"framework": "pytorch"}
    version = _zip_format_version(src)
    if version is not None:
        source["format_version"] = version  # torch's zip serialization format, the file's own record
    if fmt == sniff.TORCHSCRIPT:
        source["serialization"] = "torchscript"
        return _load_torchscript(src), source
    source["serialization"] = {sniff.TORCH_ZIP: "torch zip pickle", sniff.TORCH_LEGACY: "torch legacy pickle (< 1.6)",
                               sniff.PICKLE: "plain pickle"}[fmt]
    obj = _unpickle(src, fmt, options)
    module = _to_module(obj, src, options, source)
    return module.eval(), source


def _zip_format_version(src: Path) -> str | None:
    try:
        with zipfile.ZipFile(src) as zf:
            name = next((n for n in zf.namelist() if n == "version" or n.endswith("/version")), None)
            return zf.read(name).decode("ascii").strip()[:16] if name else None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError):
        return None


def _load_torchscript(src: Path) -> Any:
    import torch

    try:
        return torch.jit.load(str(src), map_location="cpu").eval()
    except Exception as exc:
        raise UnsupportedModelError(f"{src.name} is a damaged TorchScript file ({first_line(exc)})") from exc


# ----------------------------------------------------------------------------- unpickling
def _unpickle(src: Path, fmt: str, options: ExportOptions) -> Any:
    import torch

    if fmt != sniff.PICKLE:
        try:
            return torch.load(str(src), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if not _needs_code(exc):
                raise UnsupportedModelError(f"{src.name} is a damaged PyTorch file ({first_line(exc)})") from exc
        except Exception as exc:  # zip, storage and EOF errors from a truncated or damaged file
            raise UnsupportedModelError(f"{src.name} is a damaged PyTorch file ({first_line(exc)})") from exc
    if not options.trust:
        raise UnsupportedModelError(_refusal(src, fmt))
    return _unpickle_trusted(src, fmt, options)


def _needs_code(exc: Exception) -> bool:
    text = str(exc)
    return "Unsupported global" in text or "Unsupported class" in text or "not an allowed global" in text


def _refusal(src: Path, fmt: str) -> str:
    try:
        found = suspicious_globals(pickle_globals(torch_pickle_bytes(src)))
    except (OSError, ValueError):
        found = []
    classes = [g for g in found if g.rsplit(".", 1)[-1][:1].isupper()]
    what = ", ".join((classes or found)[:4]) or "objects beyond tensors"
    kind = "a whole pickled model or other Python objects" if fmt != sniff.PICKLE else "a plain Python pickle"
    return (f"{src.name} holds {kind} ({what}); unpickling it would run code from the file, so it is refused; "
            "save model.state_dict() and pass --arch, or pass --trust only if you trust the file")


def _unpickle_trusted(src: Path, fmt: str, options: ExportOptions) -> Any:
    """Real unpickling (runs code from the file); a class missing from this process may come from --arch."""
    import torch

    module_shim = _pickle_module(options)
    try:
        if fmt == sniff.PICKLE:
            with open(src, "rb") as fh:
                return module_shim.Unpickler(fh).load()
        return torch.load(str(src), map_location="cpu", weights_only=False, pickle_module=module_shim)
    except _MissingClass as exc:
        raise UnsupportedModelError(
            f"{src.name} is a pickled model that needs class {exc.name} from module {exc.module}, whose code is not "
            f"in the file; pass --arch path/to/model.py:{exc.name} with that class, or save a state_dict instead"
        ) from exc
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:
        raise UnsupportedModelError(f"{src.name} cannot be unpickled: {first_line(exc)}") from exc


class _MissingClass(Exception):
    """The pickle names a class this process does not have."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


def _pickle_module(options: ExportOptions) -> Any:
    """A `pickle`-like module whose Unpickler finds the --arch class when the pickle names a missing one."""
    factory = load_factory(options.arch) if options.arch else None

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == "__main__" and factory is not None and getattr(factory, "__name__", None) == name:
                return factory  # the training script's class: the child's own __main__ must not answer
            if module == "__main__":
                raise _MissingClass(module, name)
            try:
                return super().find_class(module, name)
            except (AttributeError, ModuleNotFoundError) as exc:
                if factory is not None and getattr(factory, "__name__", None) == name:
                    return factory
                raise _MissingClass(module, name) from exc

    shim = types.ModuleType("onnxplain_trusted_pickle")
    for attr in dir(pickle):
        if not attr.startswith("__"):
            setattr(shim, attr, getattr(pickle, attr))
    shim.Unpickler = Unpickler  # type: ignore[attr-defined]
    return shim


# ----------------------------------------------------------------------------- state dicts
def _to_module(obj: Any, src: Path, options: ExportOptions, source: dict[str, Any]) -> Any:
    import torch

    if isinstance(obj, torch.nn.Module):
        source["content"] = f"whole model ({type(obj).__name__})"
        return obj
    if not isinstance(obj, Mapping):
        raise UnsupportedModelError(
            f"{src.name} holds a {type(obj).__name__}, not a model, state_dict or checkpoint dict"
        )
    key, weights = _find_weights(obj, src, options)
    if key is not None:
        source["weights_key"] = key
    if isinstance(weights, torch.nn.Module):
        source["content"] = f"whole model ({type(weights).__name__}) under {key!r}"
        return weights
    source["content"] = "state_dict"
    if options.arch is None:
        raise UnsupportedModelError(_state_dict_error(src, weights))
    module = build_module(load_factory(options.arch), options.arch_args, options.arch)
    load_state(module, weights, options.arch)
    source["arch"] = options.arch
    if options.arch_args is not None:
        source["arch_args"] = options.arch_args
    return module


def _is_state_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _find_weights(obj: Mapping[str, Any], src: Path, options: ExportOptions) -> tuple[str | None, Any]:
    import torch

    if options.weights_key is not None:
        if options.weights_key not in obj:
            raise BadInputError(
                f"--weights-key {options.weights_key!r} is not in {src.name}; its keys: {_key_list(obj)}"
            )
        value = obj[options.weights_key]
        if not (_is_state_dict(value) or isinstance(value, torch.nn.Module)):
            raise BadInputError(f"{src.name}[{options.weights_key!r}] holds a {type(value).__name__}, not weights")
        return options.weights_key, value
    if _is_state_dict(obj):
        return None, obj
    for key in WEIGHT_KEYS:
        value = obj.get(key)
        if _is_state_dict(value) or isinstance(value, torch.nn.Module):
            return key, value
    raise UnsupportedModelError(
        f"{src.name} is a dict with keys {_key_list(obj)} but none of {', '.join(WEIGHT_KEYS)} holds the weights; "
        "pass --weights-key KEY"
    )


def _key_list(obj: Mapping[str, Any], limit: int = 8) -> str:
    keys = [str(k) for k in list(obj)[:limit]]
    more = f", ... ({len(obj)} in all)" if len(obj) > limit else ""
    return ", ".join(keys) + more


def _state_dict_error(src: Path, weights: Mapping[str, Any]) -> str:
    items = [f"{k} {tuple(v.shape)}" for k, v in list(weights.items())[:5]]
    more = ", ..." if len(weights) > 5 else ""
    return (f"{src.name} holds only a PyTorch state_dict ({len(weights)} tensors: {', '.join(items)}{more}) and no "
            "model code; pass --arch path/to/model.py:CLASS (and --arch-args JSON if the class takes arguments)")


def load_state(module: Any, weights: Mapping[str, Any], arch: str) -> None:
    """load_state_dict(strict) with a one-line report of what does not fit; strips DataParallel's `module.`."""
    expected = module.state_dict()
    if all(k.startswith("module.") for k in weights) and not any(k.startswith("module.") for k in expected):
        weights = {k[len("module."):]: v for k, v in weights.items()}
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [f"{k} {tuple(weights[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
             if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} ({', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} ({', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"wrong shape {len(wrong)} ({', '.join(wrong[:2])})")
        raise BadInputError(f"the weights do not fit --arch {arch}: {'; '.join(parts)}; check --arch and --arch-args")
    try:
        module.load_state_dict(weights, strict=True)
    except Exception as exc:
        raise ConversionError(f"loading the weights into --arch {arch} failed: {first_line(exc)}") from exc
