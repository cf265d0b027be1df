"""PyTorch files -> an nn.Module, without running code from the file unless the user trusts it.

TorchScript loads with `torch.jit.load(map_location="cpu")` (its code is TorchScript, not Python).
Everything else goes through `torch.load(weights_only=True)`; a file that needs more (a whole
pickled model, or anything that would import a class) is refused with the list of what it would
import, read by `pickle_scan` without unpickling. With `trust` the file is unpickled for real.
A state_dict needs its model class: from `--arch`, or found in the student's .py files (beside the
weights, or the folder `--arch` names) by class_match.py. A checkpoint dict may hold the weights under
any key, nested too, beside the class names it was trained with; fp16 weights load into float32.
"""
from __future__ import annotations

import logging
import pickle
import re
import types
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from onnxplain.engine.errors import BadInputError, ConversionError, UnsupportedModelError, first_line

from . import sniff
from . import class_match
from .arch import candidates as arch_candidates
from .arch import class_by_name
from .options import ExportOptions
from .pickle_scan import pickle_globals, suspicious_globals, torch_pickle_bytes

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
        return torch.jit.load(str(src), map_location="cpu").float().eval()
    except Exception as exc:
        raise UnsupportedModelError(f"{src.name} is a damaged TorchScript file ({first_line(exc)})") from exc


# ----------------------------------------------------------------------------- unpickling
def _unpickle(src: Path, fmt: str, options: ExportOptions) -> Any:
    import torch

    if fmt != sniff.PICKLE:
        try:
            with torch.serialization.safe_globals(_safe_globals()):
                return torch.load(str(src), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if not _needs_code(exc):
                raise UnsupportedModelError(f"{src.name} is a damaged PyTorch file ({first_line(exc)})") from exc
        except Exception as exc:  # zip, storage and EOF errors from a truncated or damaged file
            raise UnsupportedModelError(f"{src.name} is a damaged PyTorch file ({first_line(exc)})") from exc
    if not options.trust:
        raise UnsupportedModelError(_refusal(src, fmt), params=("arch", "trust"))
    return _unpickle_trusted(src, fmt, options)


def _safe_globals() -> list[Any]:
    """Plain data that training checkpoints carry beside the weights (the script's argparse options,
    numpy scalars such as a best accuracy) and that rebuilds without running code."""
    import argparse

    import numpy as np

    found: list[Any] = [argparse.Namespace, np.dtype]
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    scalar = getattr(getattr(core, "multiarray", None), "scalar", None)
    if scalar is not None:
        found.append(scalar)
    found.extend(type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool"))
    return found


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
            "save model.state_dict() and pass `arch`, or pass trust=True only if you trust the file")


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
            f"in the file; pass arch='path/to/model.py:{exc.name}' (the code of that class), or save a state_dict instead",
            params=("arch",)) from exc
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
    """A `pickle`-like module whose Unpickler finds a missing class (the training script's `__main__.Net`)
    in the code --arch names, or in the .py files beside the weights."""
    resolved: dict[str, Any] = {}

    def from_arch(name: str) -> Any:
        if name not in resolved:
            resolved[name] = class_by_name(options.arch, name, trust=options.trust) if options.arch else None
        return resolved[name]

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == "__main__":  # the training script's class: the child's own __main__ must not answer
                found = from_arch(name)
                if found is None:
                    raise _MissingClass(module, name)
                return found
            try:
                return super().find_class(module, name)
            except (AttributeError, ModuleNotFoundError) as exc:
                found = from_arch(name)
                if found is None:
                    raise _MissingClass(module, name) from exc
                return found

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
        return obj.float()
    if not isinstance(obj, Mapping):
        raise UnsupportedModelError(
            f"{src.name} holds a {type(obj).__name__}, not a model, state_dict or checkpoint dict"
        )
    labels = checkpoint_labels(obj)
    if labels:
        source["labels"] = labels
    key, weights = _find_weights(obj, src, options)
    if key is not None:
        source["weights_key"] = key
    if isinstance(weights, torch.nn.Module):
        source["content"] = f"whole model ({type(weights).__name__}) under {key!r}"
        return weights.float()
    source["content"] = "state_dict"
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in weights.values() if v.is_floating_point()})
    if dtypes and dtypes != ["float32"]:
        source["weights_dtype"] = ", ".join(dtypes)  # fp16/bf16 weights load into float32 parameters
    if options.arch is None:
        raise UnsupportedModelError(_state_dict_error(src, weights), params=("arch",))
    cands = arch_candidates(options.arch, trust=options.trust, what=src.name)
    module, found = class_match.fit(cands, weights, options.arch_args, src.name, hints=checkpoint_settings(obj))
    source["arch"] = options.arch
    source["model_class"] = found.label
    if found.args:
        source["arch_args"] = {k: v if isinstance(v, (int, float, str, bool, list, type(None))) else repr(v)
                               for k, v in found.args.items()}
    return module


_SETTINGS_KEYS = ("hyper_parameters", "hparams", "hyperparameters", "config", "cfg", "args", "opt", "params")


def checkpoint_settings(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint says about how the model was built: Lightning's hyper_parameters, a config dict,
    the training script's argparse options (`num_classes=11`), each also under its own name for a
    constructor that takes the whole object (`Net(args)`)."""
    import argparse

    out: dict[str, Any] = {}
    for key in _SETTINGS_KEYS:
        value = obj.get(key)
        if isinstance(value, argparse.Namespace):
            value_dict = vars(value)
        elif isinstance(value, Mapping):
            value_dict = dict(value)
        else:
            continue
        out.setdefault(key, value)
        for name, item in value_dict.items():
            if isinstance(name, str) and isinstance(item, (int, float, str, bool)):
                out.setdefault(name, item)
    return out


def _is_state_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


_NOT_WEIGHTS = re.compile(r"optim|sched|scaler|grad", re.IGNORECASE)


def _weight_entries(obj: Mapping[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """(key path, value) of every entry, nested ones too, that holds a state_dict or a whole model; an
    optimizer's or scheduler's state is not the model's."""
    import torch

    found: list[tuple[str, Any]] = []
    for key, value in obj.items():
        if not isinstance(key, str) or _NOT_WEIGHTS.search(key):
            continue
        path = f"{prefix}{key}"
        if _is_state_dict(value) or isinstance(value, torch.nn.Module):
            found.append((path, value))
        elif isinstance(value, Mapping) and depth < 3:
            found.extend(_weight_entries(value, path + "/", depth + 1))
    return found


def _find_weights(obj: Mapping[str, Any], src: Path, options: ExportOptions) -> tuple[str | None, Any]:
    import torch

    if options.weights_key is not None:
        value: Any = obj
        for part in options.weights_key.split("/"):
            if not isinstance(value, Mapping) or part not in value:
                raise BadInputError(
                    f"weights key {options.weights_key!r} is not in {src.name}; its keys: {_key_list(obj)}"
                )
            value = value[part]
        if not (_is_state_dict(value) or isinstance(value, torch.nn.Module)):
            raise BadInputError(f"{src.name}[{options.weights_key!r}] holds a {type(value).__name__}, not weights")
        return options.weights_key, value
    if _is_state_dict(obj):
        return None, obj
    entries = _weight_entries(obj)
    if len(entries) > 1:  # the usual names first, then the largest
        known = [e for e in entries if e[0].rsplit("/", 1)[-1] in WEIGHT_KEYS]
        if known:
            entries = sorted(known, key=lambda e: WEIGHT_KEYS.index(e[0].rsplit("/", 1)[-1]))[:1]
        else:
            entries.sort(key=lambda e: -_size(e[1]))
            if _size(entries[0][1]) == _size(entries[1][1]):
                raise UnsupportedModelError(
                    f"{src.name} holds weights under several keys ({', '.join(k for k, _ in entries[:4])}); "
                    "choose one with the weights key (weights_key='KEY')", params=("weights_key",))
    if entries:
        return entries[0]
    raise UnsupportedModelError(
        f"{src.name} is a dict with keys {_key_list(obj)} but none of them holds model weights (a state_dict of "
        "tensors or a model)"
    )


def _size(value: Any) -> int:
    return len(value) if isinstance(value, Mapping) else sum(1 for _ in value.state_dict())


_LABEL_KEYS = ("classes", "class_names", "labels", "label_names", "label_map", "idx_to_class", "id2label",
               "class_to_idx", "label2id", "label_to_idx")


def checkpoint_labels(obj: Mapping[str, Any]) -> list[str] | None:
    """Class names a training checkpoint carries: a list of names, {index: name} or {name: index}."""
    for key in _LABEL_KEYS:
        value = obj.get(key)
        names = _label_list(value)
        if names:
            return names
    return None


def _label_list(value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, Mapping) and value:
        items = list(value.items())
        if all(isinstance(k, str) and _is_index(v) for k, v in items):
            pairs = sorted((int(v), k) for k, v in items)
        elif all(_is_index(k) and isinstance(v, str) for k, v in items):
            pairs = sorted((int(k), v) for k, v in items)
        else:
            return None
        if [i for i, _ in pairs] == list(range(len(pairs))):
            return [name for _, name in pairs]
    return None


def _is_index(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.isdigit()


def _key_list(obj: Mapping[str, Any], limit: int = 8) -> str:
    keys = [str(k) for k in list(obj)[:limit]]
    more = f", ... ({len(obj)} in all)" if len(obj) > limit else ""
    return ", ".join(keys) + more


def _state_dict_error(src: Path, weights: Mapping[str, Any]) -> str:
    items = [f"{k} {tuple(v.shape)}" for k, v in list(weights.items())[:5]]
    more = ", ..." if len(weights) > 5 else ""
    return (f"{src.name} holds only a PyTorch state_dict ({len(weights)} tensors: {', '.join(items)}{more}) and no "
            "model code, and there is no .py file beside it; pass arch='path/to/model.py' (the student's code, "
            "searched for the class that fits) or arch='MODULE:CLASS'")
