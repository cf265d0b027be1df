"""The method registry and `explain()`, the one entry point pipelines call.

A method is a function `(model, x, targets, *, batch_size, seed, **params) -> Explanation`
registered once under a name; registering a name twice raises (as onnx2torch's add_converter does).
`explain` passes a torch-backend method targets None for "the predicted class": it takes the class
from its own first forward pass on the torch module, instead of an onnxruntime forward before it
(whose worker threads, spinning after the run, slowed the torch calls that follow by up to 10x).
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np

from .errors import BadInputError

if TYPE_CHECKING:
    from .explanation import Explanation
    from .input_spec import InputSpec
    from .model import Model

log = logging.getLogger(__name__)

MethodFn = Callable[..., "Explanation"]
Backend = Literal["onnxruntime", "torch"]
# How many forward passes one image costs a forward-only method with these parameters (its benchmark floor).
ForwardPasses = Callable[[dict[str, Any], "InputSpec"], int]


@dataclass(frozen=True)
class MethodInfo:
    """Everything onnxplain knows about a method, in one place: the CLI's `--method`, the report, the
    figures and the benchmarks all read it here, so adding a method is one file (plus its test).

    `reference` is what the benchmarks time the method against: the name of an entry of
    `onnxplain.benchmarks.references.REFERENCES` (resolved there, lazily, so the engine never imports
    captum or lime), or the method's own `Reference` or bare adapter function; None: no reference.
    """

    name: str
    fn: MethodFn
    backend: Backend
    default_batch_size: int | None  # None: the model's measured onnxruntime batch size (Model.forward_batch_size)
    summary: str
    title: str = ""
    text: str = ""              # the report's paragraph about the method
    signed: bool = False        # maps carry a sign by definition (drawn on a diverging colour map)
    report_params: dict[str, Any] = field(default_factory=dict)  # what report and grade pass unless told
    bench_params: dict[str, Any] = field(default_factory=dict)   # what the benchmarks time
    reference: Any = None       # str | Reference | adapter function | None (see above)
    forward_passes: ForwardPasses | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # an earlier parameter name -> its name now

    @cached_property
    def params(self) -> dict[str, Any]:
        """Keyword parameters and their defaults (beyond batch_size and seed); read once (inspect costs
        ~0.08 ms, 5% of a one-image saliency call)."""
        sig = inspect.signature(self.fn)
        return {n: p.default for n, p in sig.parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in ("batch_size", "seed")}


_REGISTRY: dict[str, MethodInfo] = {}


def register(
    name: str,
    *,
    backend: Backend,
    default_batch_size: int | None = 64,
    title: str | None = None,
    text: str | None = None,
    signed: bool = False,
    report_params: dict[str, Any] | None = None,
    bench_params: dict[str, Any] | None = None,
    reference: Any = None,
    forward_passes: ForwardPasses | None = None,
    aliases: dict[str, str] | None = None,
) -> Callable[[MethodFn], MethodFn]:
    """Register `fn` as method `name` with its facts (see MethodInfo); a name registers once.

    `title` defaults to the name and `text` to the first line of the function's docstring. `aliases`:
    earlier names of its parameters that callers may still pass (LIME's `hide_color` is its `baseline`), each
    mapped to the parameter it now is."""
    if backend not in ("onnxruntime", "torch"):
        raise ValueError(f"backend must be 'onnxruntime' or 'torch', got {backend!r}")

    def deco(fn: MethodFn) -> MethodFn:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered (by {_REGISTRY[name].fn.__module__})")
        summary = (inspect.getdoc(fn) or "").split("\n", 1)[0]
        _REGISTRY[name] = MethodInfo(name, fn, backend, default_batch_size, summary, title or name, text or summary,
                                     signed, dict(report_params or {}), dict(bench_params or {}), reference,
                                     forward_passes, dict(aliases or {}))
        return fn

    return deco


def unregister(name: str) -> MethodInfo:
    """Remove a method (a test that registered a toy one puts the registry back as it was)."""
    _ensure_loaded()
    info = get_method(name)
    del _REGISTRY[name]
    return info


def _ensure_loaded() -> None:
    from . import methods  # noqa: F401  (explicit imports register every method)


def method_names() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def method_infos() -> list[MethodInfo]:
    """Every method in registration order: the order `engine.methods` imports them in (the report's order),
    then any registered later."""
    _ensure_loaded()
    return list(_REGISTRY.values())


def get_method(name: str) -> MethodInfo:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BadInputError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}") from None


def is_signed_method(name: str) -> bool:
    """Whether a method's maps carry a sign by definition (False for a name that is not a method)."""
    _ensure_loaded()
    info = _REGISTRY.get(name)
    return info is not None and info.signed


def rename_aliases(info: MethodInfo, params: dict[str, Any]) -> dict[str, Any]:
    """`params` with the method's earlier parameter names replaced by the current ones."""
    out = dict(params)
    for old, new in info.aliases.items():
        if old in out:
            if new in out:
                raise BadInputError(f"{info.name}: give {new} or {old} (its earlier name), not both")
            out[new] = out.pop(old)
    return out


def resolve_targets(model: "Model", x: np.ndarray, targets: Any) -> np.ndarray:
    """None -> predicted class; an int or label name -> that class for all; a sequence -> one per image."""
    n = x.shape[0]
    if targets is None or (isinstance(targets, str) and targets == "pred"):
        return model.predict(x).argmax(axis=1).astype(np.int64)
    k = model.n_classes
    if isinstance(targets, (int, np.integer, str)):
        return np.full(n, model.spec.class_index(targets, k), dtype=np.int64)
    seq = list(targets)
    if len(seq) != n:
        raise BadInputError(f"got {len(seq)} targets for {n} images; give one target, or one per image")
    return np.array([model.spec.class_index(t, k) for t in seq], dtype=np.int64)


def explain(
    model: "Model",
    images: np.ndarray | Sequence[np.ndarray],
    method: str = "saliency",
    targets: Any = None,
    *,
    preprocessed: bool = False,
    batch_size: int | None = None,
    seed: int = 0,
    **params: Any,
) -> "Explanation":
    """Explain `images` (user images in pixel convention, or model input when `preprocessed`)."""
    info = get_method(method)
    params = rename_aliases(info, params)
    unknown = set(params) - set(info.params)
    if unknown:
        raise BadInputError(
            f"method {method!r} has no parameter {', '.join(sorted(unknown))}; "
            f"its parameters: {', '.join(sorted(info.params)) or 'none'}"
        )
    x = model.spec.check_model_input(images) if preprocessed else model.spec.to_model_input(images)
    # A gradient method predicts the class in its own torch forward (no onnxruntime run first).
    predicted = targets is None or (isinstance(targets, str) and targets == "pred")
    tgt = None if predicted and info.backend == "torch" else resolve_targets(model, x, targets)
    bs = int(batch_size or info.default_batch_size or model.forward_batch_size())
    if bs < 1:
        raise BadInputError(f"batch_size must be at least 1, got {bs}")
    start = time.perf_counter()
    result = info.fn(model, x, tgt, batch_size=bs, seed=int(seed), **params)
    seconds = time.perf_counter() - start
    log.info("%s on %d image(s) took %.3f s", method, x.shape[0], seconds)
    return dataclasses.replace(result, seconds=seconds)
