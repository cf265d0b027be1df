"""The reference implementation each method is timed against, on the same model file and images.

A method names its reference in the engine's registry (`MethodInfo.reference`): a key of `REFERENCES`
below, resolved here so that the engine never imports captum or lime, or a `Reference` (or a bare
adapter function) of its own. An adapter is `(refs, x, targets, params, *, batch_size, seed) -> {variant:
call}`: the prepared zero-argument calls, so that only the attribution itself is timed ("" for a single
variant; LIME has one per batch size of the lime package).

Captum runs on the plain onnx2torch module of the file (`onnx2torch.convert(onnx.load(path))`, none of
onnxplain's graph optimisations), on the Model's device; for gradient methods, of the graph whose output
they explain (`Model.score_onnx`: the logit unless `target_output` says otherwise). `References(model,
own_module=True)` runs the same Captum calls on onnxplain's own module (`Model.torch_scores`), which
separates the cost of our method code from the speed of the module. LIME's reference is the lime
package's `LimeImageExplainer`, fed through our `Model.predict` and given the same superpixels as ours.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np

from onnxplain.engine.baselines import baseline_images
from onnxplain.engine.errors import BadInputError, OnnxplainError
from onnxplain.engine.methods.occlusion import hw_pair
from onnxplain.engine.torch_ops import to_numpy

if TYPE_CHECKING:
    import torch

    from onnxplain.engine.model import Model

Calls = dict[str, Callable[[], Any]]  # a reference's prepared calls, by label
Adapter = Callable[..., Calls]
LIME_BATCH_SIZES = (10, 1000)  # the lime package's batch_size: its best of these is the reference
CAPTUM_OCCLUSION_PER_EVAL = 256


class NoReference(OnnxplainError):
    """This reference cannot run on this model or module (the row is timed without it)."""


@dataclass(frozen=True)
class Reference:
    """How to run a method's reference and how to compare its maps with ours.

    `requires`: the package to import (a test extra); `on_module`: it runs on a torch module, so it can
    also run on onnxplain's own (the "vs Captum on our module" column); `agreement`: "maps" compares the
    maps, "mean" the mean map over the images (a reference drawing its own noise), "none" nothing (one
    sampling different patterns)."""

    name: str
    build: Adapter
    requires: str = "captum.attr"
    on_module: bool = True
    agreement: Literal["maps", "mean", "none"] = "maps"


def _require(package: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError:
        raise BadInputError(
            f"comparing with the references needs the {package.split('.')[0]} package, a test extra: "
            f"pip install 'onnxplain[test]'"
        ) from None


class References:
    """The context the adapters run in: the model, the torch module they run on, its tensors."""

    def __init__(self, model: "Model", *, own_module: bool = False) -> None:
        self.model = model
        self.own_module = own_module

    @cached_property
    def plain(self) -> "torch.nn.Module":
        """The plain onnx2torch module of the file; with `own_module`, onnxplain's own module."""
        if self.own_module:
            return self.model.torch_module
        import onnx

        return self._convert(onnx.load(str(self.model.path)))

    def scored(self, params: dict[str, Any]) -> "torch.nn.Module":
        """The module of the graph whose output a gradient method with `params` explains."""
        target_output = params.get("target_output", "logit")
        if self.own_module:
            return self.model.torch_scores(target_output)
        graph = self.model.score_onnx(target_output)
        return self.plain if graph is self.model.onnx else self._convert(graph)

    def _convert(self, graph: Any) -> "torch.nn.Module":
        import onnx2torch

        return onnx2torch.convert(graph).eval().to(self.model.torch_device)

    def module_for_value(self, module: "torch.nn.Module", value: str) -> "torch.nn.Module":
        """The submodule that computes the ONNX value `value` (for Captum's layer methods)."""
        if self.own_module:  # rewritten graph: find the value in the modules' ONNX mapping
            for _, sub in module.named_modules():
                mapping = getattr(sub, "onnx_mapping", None)
                if mapping is not None and value in mapping.outputs:
                    return sub
            raise NoReference(f"no module of onnxplain's own module computes {value!r}")
        from onnx2torch.onnx_graph import OnnxGraph

        for name, node in OnnxGraph(self.model.onnx.graph).nodes.items():
            if value in node.output_values:
                return module.get_submodule(name)
        raise BadInputError(f"no node of {self.model.path.name} computes {value!r}")

    def tensors(self, x: np.ndarray, targets: np.ndarray, *,
                grad: bool = True) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Inputs and targets as a Captum user passes them (inputs requiring grad for gradient methods)."""
        import torch

        dev = self.model.torch_device
        xt = torch.tensor(np.asarray(x, np.float32), device=dev).requires_grad_(grad)
        return xt, torch.as_tensor(targets, device=dev)

    def build(self, method: str, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], *,
              batch_size: int | None = None, seed: int = 0) -> Calls:
        """The reference's prepared calls for `method`, labelled by the reference's name (and variant)."""
        ref = reference_of(method)
        if ref is None:
            raise BadInputError(f"no reference for method {method!r}; references exist for "
                                f"{', '.join(methods_with_references())}")
        if self.own_module and not ref.on_module:
            raise NoReference(f"{ref.name} does not run on a torch module")
        _require(ref.requires)
        calls = ref.build(self, x, targets, params, batch_size=batch_size, seed=seed)
        suffix = " on our module" if self.own_module else ""
        return {(f"{ref.name} ({v})" if v else ref.name) + suffix: call for v, call in calls.items()}


# ------------------------------------------------------------------------------------ captum
def captum_saliency(refs: References, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], **_: Any) -> Calls:
    attr = _require("captum.attr")
    xt, tt = refs.tensors(x, targets)
    sal, axis = attr.Saliency(refs.scored(params)), refs.model.spec.channel_axis
    return {"": lambda: to_numpy(sal.attribute(xt, target=tt, abs=True).amax(dim=axis))}


def captum_smoothgrad(refs: References, x: np.ndarray, targets: np.ndarray, params: dict[str, Any],
                      **_: Any) -> Calls:
    attr = _require("captum.attr")
    from onnxplain.engine.methods.smoothgrad import noise_sd

    xt, tt = refs.tensors(x, targets)
    tunnel, axis = attr.NoiseTunnel(attr.Saliency(refs.scored(params))), refs.model.spec.channel_axis
    samples = int(params.get("samples", 25))
    # Captum takes one standard deviation per input tensor; ours is per image: use their mean.
    sd = float(noise_sd(x, float(params.get("sigma", 0.15))).mean())
    return {"": lambda: to_numpy(tunnel.attribute(
        xt, nt_type="smoothgrad", nt_samples=samples, stdevs=sd, target=tt, abs=True).amax(dim=axis))}


def captum_ig(refs: References, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], *,
              batch_size: int | None, seed: int) -> Calls:
    attr = _require("captum.attr")
    import torch

    from onnxplain.engine.methods.ig import make_baseline

    xt, tt = refs.tensors(x, targets)
    base = torch.tensor(make_baseline(refs.model.spec, x, params.get("baseline", "black"), seed), device=xt.device)
    ig, axis = attr.IntegratedGradients(refs.scored(params)), refs.model.spec.channel_axis
    steps, how = int(params.get("steps", 50)), params.get("integration", "gausslegendre")
    return {"": lambda: to_numpy(ig.attribute(
        xt, baselines=base, target=tt, n_steps=steps, method=how, internal_batch_size=batch_size).sum(dim=axis))}


def captum_gradcam(refs: References, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], **_: Any) -> Calls:
    attr = _require("captum.attr")
    layer = refs.model.find_layer(params.get("layer"), kind="conv")
    xt, tt = refs.tensors(x, targets)
    if refs.own_module:  # our rewrites may move the layer's value; the module our Grad-CAM uses keeps it
        exposed = refs.model.torch_module_with([layer.output], params.get("target_output", "logit"))
        cam = attr.LayerGradCam(lambda xs: exposed(xs)[0], refs.module_for_value(exposed.module, layer.output))
    else:
        module = refs.scored(params)
        cam = attr.LayerGradCam(module, refs.module_for_value(module, layer.output))
    size = (refs.model.spec.height, refs.model.spec.width)
    return {"": lambda: to_numpy(attr.LayerAttribution.interpolate(
        cam.attribute(xt, target=tt, relu_attributions=True), size, "bilinear").squeeze(1))}


def captum_occlusion(refs: References, x: np.ndarray, targets: np.ndarray, params: dict[str, Any],
                     **_: Any) -> Calls:
    attr = _require("captum.attr")
    import torch

    spec = refs.model.spec
    (wh, ww), (sh, sw) = hw_pair(params.get("window", 8), "window"), hw_pair(params.get("stride", 4), "stride")
    if spec.layout == "NCHW":
        shape, strides = (spec.channels, wh, ww), (spec.channels, sh, sw)
    else:
        shape, strides = (wh, ww, spec.channels), (sh, sw, spec.channels)
    xt, tt = refs.tensors(x, targets, grad=False)
    # Our baseline is given in pixels (0 = black) or by name; Captum takes it in model space.
    base = torch.tensor(baseline_images(spec, x, params.get("baseline", 0.0)), device=xt.device)
    occ, axis = attr.Occlusion(refs.plain), spec.channel_axis
    # Captum credits every channel under the window with the same drop: their mean is our map.
    return {"": lambda: to_numpy(occ.attribute(
        xt, sliding_window_shapes=shape, strides=strides, baselines=base, target=tt,
        perturbations_per_eval=CAPTUM_OCCLUSION_PER_EVAL).mean(dim=axis))}


# ------------------------------------------------------------------------------------ lime
def lime_package(refs: References, x: np.ndarray, targets: np.ndarray, params: dict[str, Any], *, seed: int,
                 **_: Any) -> Calls:
    """The lime package on each image with our parameters: the same segmenter (run inside lime, as its
    own quickshift would be), samples, kernel width and hide colour."""
    lime_image = _require("lime.lime_image")
    from onnxplain.engine.methods.lime import quiet_lime_progress
    from onnxplain.engine.segmentation import DEFAULT_N_SEGMENTS, segment

    spec, model = refs.model.spec, refs.model
    pixels = spec.model_to_pixels(x).astype(np.float64)  # lime works on pixels 0..255
    images = [p[..., 0] if spec.channels == 1 else p for p in pixels]  # gray as HxW: lime makes it RGB
    method, n_segments = params.get("segments", "slic"), int(params.get("n_segments", DEFAULT_N_SEGMENTS))
    samples, width = int(params.get("samples", 1000)), float(params.get("kernel_width", 0.25))
    hide = params.get("hide_color")

    def segmentation_fn(image: np.ndarray) -> np.ndarray:
        return segment((image[..., :1] if spec.channels == 1 else image) / 255.0, method, n_segments, seed=seed)

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        batch = batch[..., :1] if spec.channels == 1 else batch
        return model.predict(spec.pixels_to_model(batch), batch_size=len(batch))

    def run(bs: int) -> list[Any]:
        explainer = lime_image.LimeImageExplainer(kernel_width=width, random_state=seed)
        with quiet_lime_progress(lime_image):
            return [explainer.explain_instance(img, classifier_fn, labels=(int(t),), hide_color=hide,
                                               top_labels=None, num_samples=samples, batch_size=bs,
                                               segmentation_fn=segmentation_fn, random_seed=seed)
                    for img, t in zip(images, targets)]

    return {f"batch_size={bs}": (lambda bs=bs: run(bs)) for bs in LIME_BATCH_SIZES}


# ------------------------------------------------------------------------------------ the table
REFERENCES: dict[str, Reference] = {r.name: r for r in (
    Reference("captum Saliency", captum_saliency),
    Reference("captum NoiseTunnel(Saliency)", captum_smoothgrad, agreement="mean"),
    Reference("captum IntegratedGradients", captum_ig),
    Reference("captum LayerGradCam", captum_gradcam),
    Reference("captum Occlusion", captum_occlusion),
    Reference("lime LimeImageExplainer", lime_package, requires="lime.lime_image", on_module=False,
              agreement="none"),
)}


def reference_of(method: str) -> Reference | None:
    """The Reference a method's registry entry names (a key of REFERENCES, a Reference, or an adapter)."""
    from onnxplain.engine.registry import get_method

    ref = get_method(method).reference
    if ref is None or isinstance(ref, Reference):
        return ref
    if isinstance(ref, str):
        if ref not in REFERENCES:
            raise BadInputError(f"method {method!r} names the reference {ref!r}; known: {', '.join(REFERENCES)}")
        return REFERENCES[ref]
    return Reference(f"{method} reference", ref)


def methods_with_references() -> list[str]:
    from onnxplain.engine.registry import method_names

    return [m for m in method_names() if reference_of(m) is not None]


def check_references(methods: Sequence[str]) -> None:
    """Fail early, in one line, when a reference package the methods need is missing."""
    for package in sorted({ref.requires for m in methods if (ref := reference_of(m)) is not None}):
        _require(package)


def map_agreement(method: str, ours: Any, reference: Any) -> float | None:
    """max |ours - reference| / max |reference| over the maps of one row: did both sides do the same work?

    How is the reference's `agreement`: a reference drawing its own noise (SmoothGrad) is compared on the
    mean map over the images (both estimate the same expectation); one sampling different patterns (LIME)
    is not compared.
    """
    ref = reference_of(method)
    if ours is None or reference is None or ref is None or ref.agreement == "none":
        return None
    a, b = np.asarray(ours.maps, np.float64), np.asarray(reference, np.float64)
    if ref.agreement == "mean":
        a, b = a.mean(axis=0), b.mean(axis=0)
    if a.shape != b.shape:
        raise ValueError(f"{method}: our maps {a.shape} and the reference's {b.shape} differ in shape")
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))
