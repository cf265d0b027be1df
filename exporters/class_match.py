"""Which class, built with which arguments, do these weights belong to? (export child only)

Each candidate class is built with its default arguments, then with values read from the weights for
the parameters a student's class typically takes (`ConvNet(num_type)`: the number of classes, from the
last layer; the input channels, from the first), and its `state_dict()` keys and shapes are compared
with the file's. The one exact fit is used; none or several is a one-line error that lists the
candidates and how close each came. Building a class never downloads anything: pretrained weights a
constructor asks torch.hub for are skipped (the student's weights replace them anyway).
"""
from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from onnxplain.engine.errors import BadInputError, UnsupportedModelError, first_line

from .arch import Candidate

log = logging.getLogger(__name__)

MAX_TRIES_PER_CLASS = 12
_CLASSES_HINT = re.compile(r"class|categor|label|type|target|out|n_?cls|emotion|num$", re.IGNORECASE)
_CHANNELS_HINT = re.compile(r"chan|^in_?c|^in_?ch|input_?c|^nc$|in_dim|in_planes|inplanes|colou?r", re.IGNORECASE)


@dataclass
class Fit:
    """How well one built candidate fits the weights."""

    label: str
    args: dict[str, Any] | None
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def exact(self) -> bool:
        return not (self.error or self.missing or self.unexpected or self.wrong)

    @property
    def distance(self) -> int:
        return 10**6 if self.error else len(self.missing) + len(self.unexpected) + len(self.wrong)

    def summary(self) -> str:
        if self.error:
            return f"{self.label}: {self.error}"
        parts = []
        if self.missing:
            parts.append(f"missing {len(self.missing)} ({', '.join(self.missing[:2])})")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)} ({', '.join(self.unexpected[:2])})")
        if self.wrong:
            parts.append(f"wrong shape {len(self.wrong)} ({', '.join(self.wrong[:2])})")
        return f"{self.label}{_args_text(self.args)}: " + ("; ".join(parts) or "fits")


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile


def strip_wrappers(weights: Mapping[str, Any]) -> dict[str, Any]:
    """DataParallel saves every key as `module.<name>`, torch.compile as `_orig_mod.<name>`."""
    out = dict(weights)
    changed = True
    while changed and out:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def key_variants(weights: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The weights as saved (wrappers stripped), then without a first name every key shares: a Lightning
    module's `model.conv1.weight` is the student's Net's `conv1.weight`."""
    base = strip_wrappers(weights)
    variants = [base]
    heads = {k.split(".", 1)[0] for k in base}
    if len(heads) == 1 and all("." in k for k in base):
        head = next(iter(heads)) + "."
        variants.append({k[len(head):]: v for k, v in base.items()})
    return variants


def weight_facts(weights: Mapping[str, Any]) -> dict[str, int]:
    """Numbers a constructor typically takes, read from the weights: classes (rows of the last weight
    matrix or 1x1-conv head) and channels (input channels of the first conv, or inputs of a first Linear)."""
    facts: dict[str, int] = {}
    tensors = [(k, v) for k, v in weights.items() if k.endswith("weight") and getattr(v, "ndim", 0) in (2, 4)]
    if tensors:
        facts["classes"] = int(tensors[-1][1].shape[0])
        first = tensors[0][1]
        facts["channels"] = int(first.shape[1])
    return facts


def fit(candidates: Sequence[Candidate], weights: Mapping[str, Any], arch_args: Any, what: str,
        hints: Mapping[str, Any] | None = None) -> tuple[Any, Fit]:
    """(module with the weights loaded, its Fit) for the one candidate that fits exactly. `hints` are
    constructor settings the checkpoint carries (its hyper_parameters, config, argparse options)."""
    variants = key_variants(weights)
    exact: list[tuple[Any, Fit, dict[str, Any]]] = []
    best: list[Fit] = []
    for cand in candidates:
        fits: list[Fit] = []
        for variant in variants:
            facts = weight_facts(variant)
            for args in _argument_sets(cand.factory, arch_args, facts, hints or {}):
                module, result = _try(cand, args, variant)
                fits.append(result)
                if result.exact:
                    exact.append((module, result, variant))
                    break
            if fits and fits[-1].exact:
                break
        best.append(min(fits, key=lambda f: f.distance) if fits else Fit(cand.label, None, error="not built"))
    if len(exact) == 1:
        module, found, variant = exact[0]
        _load(module, variant, found.label)
        return module, found
    if len(exact) > 1:
        listed = ", ".join(f.label + _args_text(f.args) for _, f, _ in exact)
        raise BadInputError(f"the weights of {what} fit several model classes ({listed}); name one with "
                            "arch='FILE.py:CLASS'", params=("arch",))
    ranked = sorted(best, key=lambda f: f.distance)
    listed = "; ".join(f.summary() for f in ranked[:3]) + (f"; and {len(ranked) - 3} more" if len(ranked) > 3 else "")
    hint = "check the class and its constructor arguments (`arch_args`)"
    if len(candidates) == 1 and not ranked[0].error:
        raise BadInputError(f"the weights of {what} do not fit {listed}; {hint}", params=("arch_args",))
    raise UnsupportedModelError(f"no model class fits the weights of {what} ({len(weights)} tensors): {listed}; {hint}",
                                params=("arch_args",))


def _argument_sets(factory: Any, arch_args: Any, facts: dict[str, int],
                   hints: Mapping[str, Any]) -> Iterator[dict[str, Any] | list[Any] | None]:
    """The constructor calls to try: the user's arguments only, when given; else defaults, the
    checkpoint's own settings for parameters of the same name, then the weights' numbers in the
    parameters whose names (or positions) suggest them."""
    if arch_args is not None:
        yield arch_args
        return
    try:
        params = [p for p in inspect.signature(factory).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except Exception:  # noqa: BLE001 - no signature (or the class fails to define): try it bare, report that
        yield None
        return
    required = [p for p in params if p.default is p.empty]
    optional = [p for p in params if p.default is not p.empty and isinstance(p.default, int)
                and not isinstance(p.default, bool)]
    if not required:
        yield None
    known = {p.name: hints[p.name] for p in params if p.name in hints}
    if known and all(p.name in known for p in required):
        yield known
    values = [v for v in (facts.get("classes"), facts.get("channels")) if v is not None]
    if not values:
        return
    choices = [[known[p.name]] if p.name in known else _ordered(p.name, facts, values) for p in required]
    tried = 0
    for combo in itertools.product(*choices):
        base = {p.name: v for p, v in zip(required, combo)}
        extras = {p.name: _hinted(p.name, facts) for p in optional if _hinted(p.name, facts) not in (None, p.default)}
        for call in ([base, {**base, **extras}] if extras else [base]):
            if call or required:
                yield call
                tried += 1
                if tried >= MAX_TRIES_PER_CLASS:
                    return


def _hinted(name: str, facts: dict[str, int]) -> int | None:
    if _CHANNELS_HINT.search(name):
        return facts.get("channels")
    if _CLASSES_HINT.search(name):
        return facts.get("classes")
    return None


def _ordered(name: str, facts: dict[str, int], values: list[int]) -> list[int]:
    first = _hinted(name, facts)
    return [first, *[v for v in values if v != first]] if first is not None else list(dict.fromkeys(values))


def _try(cand: Candidate, args: Any, weights: Mapping[str, Any]) -> tuple[Any, Fit]:
    import torch

    shown = args if isinstance(args, dict) else ({f"#{i}": v for i, v in enumerate(args)} if args else None)
    result = Fit(cand.label, shown)
    try:
        with _no_downloads():
            module = cand.factory(**args) if isinstance(args, dict) else cand.factory(*(args or []))
    except BaseException as exc:  # noqa: BLE001 - the student's constructor: its failure is this candidate's
        if isinstance(exc, (KeyboardInterrupt, MemoryError)):
            raise
        result.error = f"building it failed ({type(exc).__name__}: {first_line(exc, 120)})"
        return None, result
    if not isinstance(module, torch.nn.Module):
        result.error = f"it gives a {type(module).__name__}, not a torch.nn.Module"
        return None, result
    expected = module.state_dict()
    # BatchNorm's num_batches_tracked came with torch 0.4.1; load_state_dict fills it in for older files
    result.missing = [k for k in expected if k not in weights and not k.endswith("num_batches_tracked")]
    result.unexpected = [k for k in weights if k not in expected]
    result.wrong = [f"{k} {tuple(weights[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
                    if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    return module, result


def _load(module: Any, weights: Mapping[str, Any], label: str) -> None:
    from onnxplain.engine.errors import ConversionError

    try:
        module.load_state_dict(weights, strict=True)  # copies into float32 parameters: fp16 files load too
    except Exception as exc:
        raise ConversionError(f"loading the weights into {label} failed: {first_line(exc)}") from exc


def _args_text(args: Any) -> str:
    if not args:
        return ""
    if isinstance(args, dict):
        return "(" + ", ".join(f"{k}={v!r}" if not k.startswith("#") else repr(v) for k, v in args.items()) + ")"
    return "(" + ", ".join(map(repr, args)) + ")"


class _NoWeights(dict):
    """What torch.hub hands a constructor instead of downloading pretrained weights."""


@contextlib.contextmanager
def _no_downloads() -> Iterator[None]:
    """While a candidate is built: torch.hub downloads return nothing and loading that nothing is a no-op,
    so `models.resnet18(pretrained=True)` in a student's constructor builds offline."""
    import sys

    import torch

    original_fetch, original_load = torch.hub.load_state_dict_from_url, torch.nn.Module.load_state_dict
    # torchvision binds the function at import (`from torch.hub import load_state_dict_from_url`)
    holders = [m for m in list(sys.modules.values())
               if getattr(m, "__dict__", {}).get("load_state_dict_from_url") is original_fetch]

    def no_download(*args: Any, **kwargs: Any) -> _NoWeights:
        log.info("skipped a pretrained-weights download while building a candidate class")
        return _NoWeights()

    def load(self: Any, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(state_dict, _NoWeights):
            return None
        return original_load(self, state_dict, *args, **kwargs)

    for holder in holders:
        holder.load_state_dict_from_url = no_download
    torch.nn.Module.load_state_dict = load  # type: ignore[method-assign]
    try:
        yield
    finally:
        for holder in holders:
            holder.load_state_dict_from_url = original_fetch
        torch.nn.Module.load_state_dict = original_load  # type: ignore[method-assign]
