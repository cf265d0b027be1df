"""The model-parameter randomisation sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps").

The layers' weights are randomised from the top (output layer) down, cascading: stage k has the k
top layers randomised. At every stage the maps are computed again with the same method, targets,
parameters and seed, and compared with the original maps per image:

- Spearman rank correlation of |map| (Quantus' MPRT default: `abs=True`; a constant map, which
  carries no ranking, counts as 0);
- SSIM of |map| scaled to [0, 1] per image (scikit-image, data_range 1).

A method whose maps depend on what the model learnt must lose that similarity once every layer is
random. It is *flagged* when the mean Spearman over images at full randomisation (the last stage)
stays above `FLAG_THRESHOLD` = 0.5: its maps then mostly show the input (Adebayo's edge detector
passes for a saliency map), not the model.

Randomisation happens on the ONNX graph, so it serves both backends: the float parameters a layer
reads (the kernel and bias of its Conv/Gemm/MatMul, the BatchNormalization statistics, and the
constant vectors of the bias Add / folded-BN Mul that follow it) are replaced by seeded random
values of the same scale: N(mean, std) of the tensor's own values, or U(min, max) when all its
values are positive (variances, scales), which keeps them valid. A `Model` is built from the
modified graph written to a temporary folder (with the original sidecar and input spec).
Tensor j of layer k (counted from the top) draws from `numpy.random.default_rng([seed, k, j])`,
so stage k+1 keeps stage k's random values.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, Union

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import BadInputError
from ..explanation import Explanation
from ..layers import LayerInfo
from ..registry import explain, resolve_targets
from ..sidecar import sidecar_path

if TYPE_CHECKING:
    from ..model import Model

log = logging.getLogger(__name__)

FLAG_THRESHOLD = 0.5
_DEFINING = ("Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization")
# Ops whose constant vector operands are part of the layer (bias, folded BatchNorm scale, PReLU slope).
_VECTOR_FOLLOWERS = ("Add", "Mul", "Sub", "Div", "PRelu")
# Ops a weight may pass through between its initializer and the layer (exporters insert them).
_PASS_THROUGH = ("Identity", "Transpose", "Reshape", "Cast", "Squeeze", "Unsqueeze", "Flatten")

MethodArg = Union[str, Callable[..., Union[Explanation, np.ndarray]]]


@dataclass(frozen=True)
class RandomisationResult:
    """Similarity of the maps after each cascading randomisation stage to the original maps.

    `layers[k]` is the deepest layer randomised at computed stage k (it and every layer above it are
    random; `stages` says which of the `layers_with_parameters` cascading stages were
    computed, all of them unless `stages` was given); `spearman` and `ssim` are (L, N); `maps` (L+1, N, H, W):
    the original maps then each computed stage's.
    """

    method: str
    layers: tuple[str, ...]
    spearman: np.ndarray
    ssim: np.ndarray
    threshold: float = FLAG_THRESHOLD
    maps: np.ndarray | None = None
    seconds: float = 0.0
    stages: list[int] | None = None
    layers_with_parameters: int | None = None

    @property
    def final_spearman(self) -> float:
        """Mean Spearman over images with every listed layer randomised."""
        return float(self.spearman[-1].mean()) if len(self.layers) else float("nan")

    @property
    def flagged(self) -> bool:
        """True when the maps stay similar at full randomisation (mean Spearman > threshold)."""
        return bool(len(self.layers)) and self.final_spearman > self.threshold

    def record(self) -> dict[str, Any]:
        return {
            "method": self.method, "layers": list(self.layers), "spearman": self.spearman.tolist(),
            "ssim": self.ssim.tolist(), "final_spearman": self.final_spearman,
            "final_ssim": float(self.ssim[-1].mean()) if len(self.layers) else None,
            "threshold": self.threshold, "flagged": self.flagged, "seconds": self.seconds,
            **({"stages": self.stages} if self.stages is not None else {}),
            **({"layers_with_parameters": self.layers_with_parameters}
               if self.layers_with_parameters is not None else {}),
        }


# ---------------------------------------------------------------------------- similarity
def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Spearman rank correlation of |a| and |b| ((N, ...) each) -> (N,); ties get average
    ranks (as scipy.stats.spearmanr); a row where either map is constant gives 0."""
    from scipy.stats import rankdata

    ra = rankdata(np.abs(np.asarray(a, np.float64)).reshape(len(a), -1), axis=1)
    rb = rankdata(np.abs(np.asarray(b, np.float64)).reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    num = (ra * rb).sum(axis=1)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0).astype(np.float32)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image SSIM of |a| and |b| ((N, H, W) each), each scaled to [0, 1] by its own maximum."""
    from skimage.metrics import structural_similarity

    a, b = _unit(a), _unit(b)
    side = min(a.shape[1], a.shape[2])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise BadInputError(f"maps of {a.shape[1]}x{a.shape[2]} pixels are too small for SSIM (needs 3x3)")
    return np.array([structural_similarity(p, q, data_range=1.0, win_size=win) for p, q in zip(a, b)],
                    dtype=np.float32)


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.abs(np.asarray(m, np.float64))
    peak = m.reshape(len(m), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)


# ---------------------------------------------------------------------------- ONNX randomisation
def layer_parameters(proto: onnx.ModelProto, layer: LayerInfo) -> list[str]:
    """Names of the float constants (initializers or Constant outputs) that hold `layer`'s parameters.

    Walks back from the layer's output along its data input to its defining node, collecting the
    weight operands of Conv/Gemm/MatMul/BatchNormalization and the constant vectors of bias Adds
    and folded-BN Muls on the way.
    """
    producers = {o: n for n in proto.graph.node for o in n.output}
    consts = _float_constants(proto)
    names: list[str] = []
    node = producers.get(layer.output)
    for _ in range(64):  # a layer is a short chain; the bound guards against odd graphs
        if node is None:
            break
        operands = [_resolve(i, producers, consts) for i in node.input]
        if node.op_type in _DEFINING:
            names += [c for c in operands[1:] if c is not None]
        elif node.op_type in _VECTOR_FOLLOWERS:
            names += [c for c in operands if c is not None and consts[c].size >= 2]
        if node.name == layer.onnx_node:
            break
        data = [i for i, c in zip(node.input, operands) if c is None and i]
        node = producers.get(data[0]) if data else None
    return list(dict.fromkeys(names))


def _float_constants(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    out = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer
           if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                                           onnx.TensorProto.DOUBLE):
                    out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


def _resolve(name: str, producers: dict[str, onnx.NodeProto], consts: dict[str, np.ndarray]) -> str | None:
    """The constant a value comes from, through Identity/Transpose/... nodes; None for data."""
    for _ in range(8):
        if name in consts:
            return name
        node = producers.get(name)
        if node is None or node.op_type not in _PASS_THROUGH or not node.input:
            return None
        name = node.input[0]
    return None


def random_like(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seeded random values of the same shape, dtype and scale (see the module docstring)."""
    v = values.astype(np.float64)
    if v.size and v.min() > 0:
        out = rng.uniform(v.min(), v.max(), size=v.shape)
    else:
        out = rng.normal(v.mean() if v.size else 0.0, v.std() if v.size else 0.0, size=v.shape)
    return out.astype(values.dtype)


def randomise(proto: onnx.ModelProto, layers: Sequence[LayerInfo], seed: int, *, first_index: int = 0) -> None:
    """Replace, in place, the parameters of `layers` (layer k of the list draws from
    `default_rng([seed, first_index + k, j])` for its tensor j)."""
    inits = {t.name: t for t in proto.graph.initializer}
    const_nodes = {n.output[0]: n for n in proto.graph.node if n.op_type == "Constant"}
    for k, layer in enumerate(layers, start=first_index):
        names = layer_parameters(proto, layer)
        if not names:
            log.warning("layer %s: no parameters found to randomise", layer.name)
        for j, name in enumerate(names):
            rng = np.random.default_rng([seed, k, j])
            if name in inits:
                new = random_like(numpy_helper.to_array(inits[name]), rng)
                inits[name].CopyFrom(numpy_helper.from_array(new, name))
            else:
                attr = next(a for a in const_nodes[name].attribute if a.name == "value")
                new = random_like(numpy_helper.to_array(attr.t), rng)
                attr.t.CopyFrom(numpy_helper.from_array(new, attr.t.name))


def top_down_layers(model: "Model", names: Sequence[str] | None = None) -> list[LayerInfo]:
    """The layers with parameters, output layer first; `names` picks some (any order, kept top-down)."""
    layers = [layer for layer in model.layers() if layer.params > 0][::-1]
    if names is None:
        return layers
    known = {n for layer in layers for n in (layer.name, layer.onnx_node)}
    missing = [n for n in names if n not in known]
    if missing:
        raise BadInputError(f"unknown layer {missing[0]!r}; layers with parameters: "
                            f"{', '.join(layer.name for layer in layers) or 'none'}")
    wanted = set(names)
    return [layer for layer in layers if layer.name in wanted or layer.onnx_node in wanted]


def stage_indices(n_layers: int, stages: int | None) -> list[int]:
    """Which of the `n_layers` cascading stages to compute maps at: all (None), or `stages` of them evenly
    spread from the top layer to the last (full randomisation, the stage the flag reads, is always one)."""
    if stages is None or stages >= n_layers:
        return list(range(n_layers))
    if stages < 1:
        raise BadInputError(f"the randomisation check needs at least 1 stage, got {stages}")
    if stages == 1:
        return [n_layers - 1]
    return sorted({int(round(v)) for v in np.linspace(0, n_layers - 1, stages)})


def cascading_models(model: "Model", layers: Sequence[LayerInfo], seed: int,
                     at: Sequence[int] | None = None) -> Iterator[tuple[str, "Model"]]:
    """(layer name, Model with that layer and all above it randomised), top layer first; `at`: only the
    stages with these indices (every layer above is still randomised, so the values do not depend on it)."""
    from ..model import Model

    proto = onnx.ModelProto()
    proto.CopyFrom(model.onnx)
    spec = model.spec
    wanted = set(range(len(layers)) if at is None else at)
    with tempfile.TemporaryDirectory(prefix="onnxplain-random-") as tmp:
        for k, layer in enumerate(layers):
            randomise(proto, [layer], seed, first_index=k)
            if k not in wanted:
                continue
            path = Path(tmp) / f"stage{k}.onnx"
            onnx.save(proto, str(path))
            if model.sidecar:
                sidecar_path(path).write_text(json.dumps(model.sidecar), encoding="utf-8")
            yield layer.name, Model(path, model.device, layout=spec.layout, input_shape=(1, *spec.shape),
                                    scale=spec.scale, mean=spec.mean, std=spec.std, channel_order=spec.channel_order,
                                    labels=list(spec.labels) if spec.labels else None)


# ---------------------------------------------------------------------------- the check
def compute_maps(model: "Model", x: np.ndarray, targets: np.ndarray, method: MethodArg, *, seed: int,
                 batch_size: int | None, params: dict[str, Any]) -> np.ndarray:
    """Maps (N, H, W) of a registered method (by name) or of a callable with the method signature
    `(model, x, targets, *, batch_size, seed, **params)` returning an Explanation or the maps."""
    if isinstance(method, str):
        return explain(model, x, method, targets, preprocessed=True, batch_size=batch_size, seed=seed, **params).maps
    out = method(model, x, targets, batch_size=batch_size or 64, seed=seed, **params)
    maps = out.maps if isinstance(out, Explanation) else np.asarray(out, np.float32)
    if maps.shape != (len(x), model.spec.height, model.spec.width):
        raise BadInputError(f"the method returned maps of shape {maps.shape}; expected "
                            f"({len(x)}, {model.spec.height}, {model.spec.width})")
    return maps


def randomisation_check(
    model: "Model",
    images_or_x: np.ndarray | Sequence[np.ndarray],
    method: MethodArg,
    *,
    targets: Any = None,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    preprocessed: bool = False,
    batch_size: int | None = None,
    keep_maps: bool = True,
    threshold: float = FLAG_THRESHOLD,
    stages: int | None = None,
    original: np.ndarray | None = None,
    **params: Any,
) -> RandomisationResult:
    """Cascading model-parameter randomisation (see the module docstring) of `method` on these images.

    Targets are resolved once on the original model (None = its predicted classes) and kept for
    every stage, as in Adebayo et al. `stages`: compute the maps at that many stages only
    (`stage_indices`; None: every layer); `original`: the maps of the unmodified model when the caller
    already has them (same method, parameters, seed, images and targets), so they are not computed again.
    """
    start = time.perf_counter()
    spec = model.spec
    x = spec.check_model_input(images_or_x) if preprocessed else spec.to_model_input(images_or_x)
    tgt = resolve_targets(model, x, targets)
    chosen = top_down_layers(model, layers)
    if not chosen:
        raise BadInputError(f"{model.path.name} has no layers with parameters to randomise")
    if original is None:
        original = compute_maps(model, x, tgt, method, seed=seed, batch_size=batch_size, params=params)
    elif np.shape(original) != (len(x), spec.height, spec.width):
        raise BadInputError(f"original maps have shape {np.shape(original)}; expected ({len(x)}, {spec.height}, "
                            f"{spec.width})")
    original = np.asarray(original, np.float32)
    at = stage_indices(len(chosen), stages)
    stack = [original] if keep_maps else []
    rho, sim, names = [], [], []
    for name, random_model in cascading_models(model, chosen, seed, at):
        maps = compute_maps(random_model, x, tgt, method, seed=seed, batch_size=batch_size, params=params)
        rho.append(spearman(original, maps))
        sim.append(ssim(original, maps))
        names.append(name)
        if keep_maps:
            stack.append(maps)
        log.info("randomised down to %s: spearman %.3f, ssim %.3f", name, rho[-1].mean(), sim[-1].mean())
    label = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    return RandomisationResult(
        method=label, layers=tuple(names), spearman=np.stack(rho), ssim=np.stack(sim), threshold=float(threshold),
        maps=np.stack(stack).astype(np.float32) if keep_maps else None, seconds=time.perf_counter() - start,
        stages=at, layers_with_parameters=len(chosen),
    )
