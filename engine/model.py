"""Model: an ONNX file, its InputSpec, an onnxruntime session and (lazily) an equivalent torch module.

The device is chosen once, explicitly ("cpu", "cuda", "cuda:N" or a torch.device: `engine.devices`);
`auto` is resolved by the CLI.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import onnx

from .batching import batch_slices
from .devices import DeviceLike, device_name, parse_device
from .errors import BadInputError, ConversionError, DeviceError, UnsupportedModelError, first_line
from .input_spec import InputSpec
from .layers import LayerInfo, onnx_layers
from .output_head import TargetOutput, as_probabilities, check_target_output, final_softmax, score_graph
from .sidecar import read_sidecar

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch
    from .torch_bridge.affine_split import AffineSplit

log = logging.getLogger(__name__)

Device = Literal["cpu", "cuda"]  # the kind of device; `engine.devices` parses the forms a caller may give
OutputKind = Literal["probabilities", "logits"]
TORCH_PARITY_WARN = 1e-4
MAX_MODEL_BYTES = 2 * 1024**3


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_onnx(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Load and check an ONNX file; anything else gives a one-line UnsupportedModelError."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    if p.is_dir():
        raise BadInputError(f"{p} is a folder; give a model file")
    size = p.stat().st_size
    if size == 0:
        raise UnsupportedModelError(f"{p} is empty (0 bytes); re-export or re-download the model")
    if size > MAX_MODEL_BYTES:
        raise UnsupportedModelError(f"{p} is {size / 1024**3:.1f} GiB; onnxplain handles models up to 2 GiB")
    head = p.read_bytes()[:8]
    if head.startswith(b"\x89HDF"):
        raise UnsupportedModelError(f"{p} is an HDF5 (Keras .h5) file, not ONNX; rename it to .h5 or run `onnxplain export {p}`")
    if head.startswith(b"PK\x03\x04"):
        raise UnsupportedModelError(f"{p} is a zip archive (PyTorch or Keras 3 file), not ONNX; run `onnxplain export {p}`")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # protobuf raises DecodeError, RuntimeError, ValueError... for garbage
        raise UnsupportedModelError(f"{p} is not a readable ONNX file ({type(exc).__name__}); is it truncated or another format?") from exc
    if not model.graph.node:
        raise UnsupportedModelError(f"{p} holds no ONNX graph (truncated or not an ONNX model)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        first = first_line(exc)
        raise UnsupportedModelError(f"{p} fails the ONNX checker: {first}") from exc
    return model


def producer(proto: onnx.ModelProto) -> str:
    """`tf2onnx 1.17.0`: the producer's name and version, without the `None` tf2onnx writes for a
    missing git revision."""
    words = f"{proto.producer_name} {proto.producer_version}".split()
    return " ".join(w for w in words if w != "None")


class ModelSummary(dict):  # type: ignore[type-arg]
    """Model.summary(): a plain dict (JSON as it is) that a notebook shows as a table."""

    def _repr_html_(self) -> str:
        from .render.notebook import summary_html

        return summary_html(self)


class Model:
    """An ONNX classifier ready to predict (onnxruntime) and to differentiate (torch, built lazily)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: DeviceLike = "cpu",
        *,
        layout: str | None = None,
        input_shape: Sequence[int] | None = None,
        scale: float | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        labels: str | Sequence[str] | None = None,
        threads: int | None = None,
        channel_order: str | None = None,
    ) -> None:
        kind, index = parse_device(device)
        self.path = Path(path)
        self.device = device_name(device)  # "cpu", "cuda" or "cuda:N"
        self.device_kind: Device = kind  # type: ignore[assignment]
        self.device_index = index or 0  # the GPU onnxruntime and the IO binding use (plain "cuda": 0)
        self.onnx = load_onnx(self.path)
        self.sha256 = file_sha256(self.path)
        self.sidecar: dict[str, Any] = read_sidecar(self.path) or {}
        self.spec = InputSpec.from_onnx(
            self.onnx, self.sidecar, layout=layout, input_shape=input_shape,
            scale=scale, mean=mean, std=std, labels=labels, channel_order=channel_order,
        )
        # Where the preprocessing came from: the user's flags, the sidecar (the user's, at export), or the
        # x/255 default; engine.preprocessing_check may replace a default one, and says so (`preprocessing_check`).
        given = any(v is not None for v in (scale, mean, std, channel_order))
        self.preprocessing_source = "flags" if given else ("sidecar" if "preprocessing" in self.sidecar else "default")
        self.preprocessing_check: dict[str, Any] | None = None
        # ONNXPLAIN_THREADS caps onnxruntime's threads where several processes share few cores (test workers).
        self._threads = threads or int(os.environ.get("ONNXPLAIN_THREADS", "0") or 0) or None
        self.session = self._make_session()
        out = self.session.get_outputs()
        if len(out) < 1:
            raise UnsupportedModelError(f"{self.path} has no outputs")
        self.output_name = out[0].name
        self.n_classes = self._probe_classes()
        self.output_kind: OutputKind = self._output_kind()
        self._torch_parity: float | None = None

    # ------------------------------------------------------------------ onnxruntime
    def _make_session(self) -> "ort.InferenceSession":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if self._threads:
            opts.intra_op_num_threads = int(self._threads)
        if self.device_kind == "cuda":
            _preload_cuda_libraries(ort)
        try:
            sess = ort.InferenceSession(self.onnx.SerializeToString(), sess_options=opts, providers=self.providers())
        except Exception as exc:
            first = first_line(exc)
            raise UnsupportedModelError(f"onnxruntime cannot run {self.path}: {first}") from exc
        if self.device_kind == "cuda" and sess.get_providers()[0] != "CUDAExecutionProvider":
            raise DeviceError(f'device="{self.device}" was asked for but onnxruntime fell back to CPU: '
                              f"{_cuda_fallback_reason(ort)}", params=("device",))
        return sess

    def providers(self) -> list[Any]:
        """onnxruntime's execution providers for this device: on "cuda:N" the CUDA provider on GPU N (device_id)."""
        if self.device_kind != "cuda":
            return ["CPUExecutionProvider"]
        # TF32 would change maps by ~1e-3 against the CPU's; explanations must not depend on the device.
        return [("CUDAExecutionProvider", {"device_id": self.device_index, "use_tf32": 0}), "CPUExecutionProvider"]

    def _probe_classes(self) -> int:
        probe = np.zeros((1, *self.spec.shape), dtype=np.float32)
        try:
            y = self.session.run([self.output_name], {self.spec.input_name: probe})[0]
        except Exception as exc:
            first = first_line(exc)
            raise UnsupportedModelError(
                f"{self.path} does not run on a (1, {', '.join(map(str, self.spec.shape))}) input: {first}"
            ) from exc
        if y.ndim != 2 or y.shape[0] != 1:
            raise UnsupportedModelError(f"{self.path} outputs shape {y.shape}; onnxplain expects (N, classes) scores")
        return int(y.shape[1])

    def _output_kind(self) -> OutputKind:
        side = (self.sidecar.get("output") or {}).get("kind")
        if side in ("probabilities", "logits"):
            return side
        # tf2onnx and torch exporters may put Identity/Reshape after the softmax.
        return "probabilities" if self._final_softmax is not None else "logits"

    @cached_property
    def _final_softmax(self) -> "onnx.NodeProto | None":
        return final_softmax(self.onnx)

    @property
    def threads(self) -> int | None:
        """onnxruntime's intra-op threads as asked (None: its default, the core count)."""
        return self._threads

    def forward_batch_size(self) -> int:
        """The onnxruntime batch size forward-only methods use when the caller gives none: this model's
        fastest, measured once on synthetic inputs and cached (`engine.batch_tuning`), at most
        perturbation.DEFAULT_BATCH_SIZE rows and its 64 MiB batch cap."""
        if not self.spec.dynamic_batch:
            return self._fixed_batch()
        if "_forward_batch" not in self.__dict__:
            from .batch_tuning import tuned_batch_size
            from .perturbation import DEFAULT_BATCH_SIZE, batch_for

            self.__dict__["_forward_batch"] = tuned_batch_size(self, batch_for(self, DEFAULT_BATCH_SIZE))
        return self.__dict__["_forward_batch"]

    def predict(self, x: np.ndarray, batch_size: int = 256, *, io_binding: bool | None = None) -> np.ndarray:
        """Model outputs for preprocessed input `x` (N, *spec.shape), run in batches of `batch_size`.

        `io_binding` (default: on for cuda) runs through `predict_tensor`, onnxruntime IO binding.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        if io_binding if io_binding is not None else self.device_kind == "cuda":
            import torch

            return self.predict_tensor(torch.from_numpy(x), batch_size)
        self._check_batch_shape(tuple(x.shape))
        if x.shape[0] == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        if not self.spec.dynamic_batch:
            batch_size = self._fixed_batch()
        outs = np.empty((x.shape[0], self.n_classes), dtype=np.float32)
        for s in batch_slices(x.shape[0], batch_size):
            chunk = x[s]
            pad = 0
            if not self.spec.dynamic_batch and chunk.shape[0] != batch_size:
                pad = batch_size - chunk.shape[0]
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
            y = self.session.run([self.output_name], {self.spec.input_name: chunk})[0]
            outs[s] = y[: y.shape[0] - pad] if pad else y
        return outs

    def predict_tensor(self, x: "torch.Tensor", batch_size: int = 256) -> np.ndarray:
        """`predict` for a float32 torch tensor, through onnxruntime IO binding: each batch is bound
        where it lies on this Model's device (moved there first if needed), so on cuda perturbed
        batches built by torch never cross to the host; only the (N, classes) outputs come back."""
        import torch

        self._check_batch_shape(tuple(x.shape))
        x = x.to(device=self.torch_device, dtype=torch.float32)
        if not self.spec.dynamic_batch:
            batch_size = self._fixed_batch()
        outs = np.empty((x.shape[0], self.n_classes), dtype=np.float32)
        binding = self.session.io_binding()
        kind, index = self.binding_device()
        for s in batch_slices(x.shape[0], batch_size):
            chunk = x[s].contiguous()
            n = chunk.shape[0]
            if not self.spec.dynamic_batch and n != batch_size:
                chunk = torch.cat([chunk, chunk.new_zeros((batch_size - n, *chunk.shape[1:]))])
            if kind == "cuda":
                torch.cuda.current_stream(self.torch_device).synchronize()  # torch's writes land before ORT reads
            binding.bind_input(self.spec.input_name, kind, index, np.float32, tuple(chunk.shape), chunk.data_ptr())
            binding.bind_output(self.output_name, kind, index)
            self.session.run_with_iobinding(binding)
            outs[s] = binding.copy_outputs_to_cpu()[0][:n]
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
        return outs

    def binding_device(self) -> tuple[str, int]:
        """(device type, index) that IO binding names: where the session's CUDA provider runs, or the CPU."""
        return (self.device_kind, self.device_index if self.device_kind == "cuda" else 0)

    def _check_batch_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 4 or shape[1:] != self.spec.shape:
            raise BadInputError(f"input has shape {shape}; the model expects (N, {', '.join(map(str, self.spec.shape))})")

    def predict_images(self, images: np.ndarray | Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        return self.predict(self.spec.to_model_input(images), batch_size)

    def _fixed_batch(self) -> int:
        dim = self.onnx.graph.input[0].type.tensor_type.shape.dim
        for value in self.onnx.graph.input:
            if value.name == self.spec.input_name:
                dim = value.type.tensor_type.shape.dim
        return int(dim[0].dim_value) if dim and dim[0].dim_value > 0 else 1

    # ------------------------------------------------------------------ torch
    @property
    def torch_device(self) -> "torch.device":
        import torch

        return torch.device(self.device_kind, self.device_index if self.device_kind == "cuda" else None)

    def _build_torch(self, graph: onnx.ModelProto) -> "torch.nn.Module":
        """The one way a torch module is made from a graph: converted, on this Model's device, frozen."""
        import torch

        from .torch_bridge import to_torch

        if self.device_kind == "cuda":  # full float32, as on the CPU (torch lets cuDNN convolutions use TF32)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        module = to_torch(graph).to(self.torch_device).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        return module

    @cached_property
    def torch_module(self) -> "torch.nn.Module":
        """The same network as a torch module on this Model's device, checked once against onnxruntime."""
        return self._checked(self._build_torch(self.onnx), self._graph_output)

    @property
    def _graph_output(self) -> str:
        """What the graph itself outputs: logit, probability or log_probability."""
        head = self._final_softmax
        return "logit" if head is None else ("probability" if head.op_type == "Softmax" else "log_probability")

    def _checked(self, module: "torch.nn.Module", output: str) -> "torch.nn.Module":
        """`module` (whose output is `output`), its parity with onnxruntime measured and kept, warned about."""
        self._torch_parity = self._check_torch_parity(module, output)
        if self._torch_parity > TORCH_PARITY_WARN:
            msg = (f"{self.path.name}: the torch module differs from onnxruntime by {self._torch_parity:.2e} "
                   f"(> {TORCH_PARITY_WARN:g}); gradient methods may not match forward methods")
            log.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return module

    # ------------------------------------------------------------------ the explained score
    def explained_output(self, target_output: str) -> TargetOutput:
        """What a gradient method asked for `target_output` explains: the logit (pre-softmax score) or
        the probability. A model said to output probabilities whose graph has no softmax to take
        away (a sidecar's word, a custom head) can only be explained on its output: "probability"."""
        output = check_target_output(target_output)
        if output == "logit" and self.output_kind == "probabilities" and self._final_softmax is None:
            log.warning("%s outputs probabilities but its graph ends in no Softmax node; explaining the output "
                        "as it is (probability)", self.path.name)
            return "probability"
        return output

    def score_onnx(self, target_output: str) -> onnx.ModelProto:
        """The graph whose output is the explained score: the model's own graph when it already outputs
        it, else the graph with its final softmax taken away (logit) or put on (probability)."""
        output = self.explained_output(target_output)
        head = self._final_softmax
        if (output == "logit" and head is None) or (output == "probability" and head is not None
                                                     and head.op_type == "Softmax"):
            return self.onnx
        cache = self.__dict__.setdefault("_score_graphs", {})
        if output not in cache:
            cache[output] = score_graph(self.onnx, output)
        return cache[output]

    def torch_scores(self, target_output: str = "logit") -> "torch.nn.Module":
        """A torch module whose output is the explained score of every class (see `score_onnx`)."""
        graph = self.score_onnx(target_output)
        if graph is self.onnx:
            return self.torch_module
        cache = self.__dict__.setdefault("_torch_scores", {})
        key = self.explained_output(target_output)
        if key not in cache:
            cache[key] = self._checked(self._build_torch(graph), key)
        return cache[key]

    def torch_affine_split(self, target_output: str = "logit") -> "AffineSplit | None":
        """`torch_scores(target_output)` cut after its affine prefix (input layout op, first conv):
        integrated gradients runs that prefix on two images instead of every path point. None if the
        module starts with a non-affine op."""
        from torch import fx

        from .torch_bridge.affine_split import split_affine_prefix

        cache = self.__dict__.setdefault("_affine_splits", {})
        key = self.explained_output(target_output)
        if key not in cache:
            module = self.torch_scores(key)
            cache[key] = split_affine_prefix(module) if isinstance(module, fx.GraphModule) else None
        return cache[key]

    def torch_module_with(self, values: Sequence[str], target_output: str | None = None) -> "torch.nn.Module":
        """A torch module whose forward returns `(output, *values)`: the model output (the explained
        score of `target_output` when given) and the named intermediate ONNX values (e.g.
        `LayerInfo.output`), all inside one autograd graph.

        Built by exposing the values as extra graph outputs before conversion; cached per tuple.
        """
        base = self.onnx if target_output is None else self.score_onnx(target_output)
        key = (tuple(values), None if target_output is None else self.explained_output(target_output))
        cache = self.__dict__.setdefault("_torch_with_cache", {})
        if key not in cache:
            known = {o for n in base.graph.node for o in n.output}
            missing = [v for v in key[0] if v not in known]
            if missing:
                raise BadInputError(f"the graph has no value named {missing[0]!r}")
            extended = onnx.ModelProto()
            extended.CopyFrom(base)
            present = {o.name for o in extended.graph.output}
            for v in key[0]:
                if v not in present:
                    extended.graph.output.append(onnx.helper.make_empty_tensor_value_info(v))
            module = self._build_torch(extended)
            cache[key] = _SelectOutputs(module, [o.name for o in extended.graph.output], self.output_name, key[0])
        return cache[key]

    @property
    def torch_parity(self) -> float:
        """Max |onnxruntime - torch| on seeded random inputs (builds the torch module if needed)."""
        _ = self.torch_module
        assert self._torch_parity is not None
        return self._torch_parity

    def _check_torch_parity(self, module: "torch.nn.Module", output: str) -> float:
        """Max |onnxruntime - torch| on seeded random inputs; compared as probabilities when the module
        outputs another score than the graph (the logit of a softmax model)."""
        import torch

        from .torch_ops import to_numpy

        rng = np.random.default_rng(0)
        pixels = rng.uniform(0, 255, size=(4, self.spec.height, self.spec.width, self.spec.channels)).astype(np.float32)
        x = self.spec.pixels_to_model(pixels)
        ref = self.predict(x)
        try:
            with torch.no_grad():
                got = to_numpy(module(torch.from_numpy(x).to(self.torch_device)))
        except Exception as exc:
            first = first_line(exc)
            raise ConversionError(f"the torch module built from {self.path.name} fails to run: {first}") from exc
        if got.shape != ref.shape:
            raise ConversionError(f"the torch module gives shape {got.shape}, onnxruntime {ref.shape}")
        if output != self._graph_output:
            got, ref = as_probabilities(got, output), as_probabilities(ref, self._graph_output)
        return float(np.abs(got - ref).max())

    # ------------------------------------------------------------------ structure
    @cached_property
    def _layers(self) -> list[LayerInfo]:
        return onnx_layers(self.onnx, self.spec, self.sidecar.get("layer_names"))

    def layers(self) -> list[LayerInfo]:
        """Conv, dense and normalisation layers with source-framework names, output shapes and parameters."""
        return list(self._layers)

    def conv_layers(self) -> list[LayerInfo]:
        return [layer for layer in self._layers if layer.kind == "conv"]

    def find_layer(self, name: str | None, *, kind: str = "conv") -> LayerInfo:
        """A layer by the name the student knows; None picks the last layer of `kind`."""
        candidates = [layer for layer in self._layers if layer.kind == kind] if kind else list(self._layers)
        if name is None:
            if not candidates:
                raise BadInputError(f"{self.path.name} has no {kind} layer")
            return candidates[-1]
        for layer in self._layers:
            if name in (layer.name, layer.onnx_node):
                return layer
        known = ", ".join(layer.name for layer in candidates) or "none"
        raise BadInputError(f"unknown layer {name!r}; {kind} layers: {known}")

    @property
    def parameter_count(self) -> int:
        return int(sum(int(np.prod(t.dims)) for t in self.onnx.graph.initializer
                       if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 1 and int(np.prod(t.dims)) > 1))

    def summary(self) -> "ModelSummary":
        """What `inspect` prints: the framework's own summary when the exporter recorded it (the model as
        the student wrote it), the ONNX layer view otherwise, and the names `--layer` accepts."""
        opset = next((o.version for o in self.onnx.opset_import if o.domain in ("", "ai.onnx")), None)
        source = self.source_summary()
        onnx_total = sum(layer.params for layer in self._layers)
        return ModelSummary({
            "path": str(self.path),
            "sha256": self.sha256,
            "opset": opset,
            "producer": producer(self.onnx),
            "input": {"name": self.spec.input_name, "layout": self.spec.layout, "channels": self.spec.channels,
                      "height": self.spec.height, "width": self.spec.width, "dynamic_batch": self.spec.dynamic_batch},
            "preprocessing": {**self.spec.preprocessing(), "channel_order": self.spec.channel_order,
                              "source": self.preprocessing_source, "check": self.preprocessing_check},
            "labels": list(self.spec.labels) if self.spec.labels else None,
            "classes": self.n_classes,
            "output_kind": self.output_kind,
            "source_summary": source,
            "summary_note": None if source else self._summary_note(),
            "layers": [layer.as_dict() for layer in self._layers],
            "total_params": source["total_params"] if source else onnx_total,
            "trainable_params": source["trainable_params"] if source else None,
            "non_trainable_params": source["non_trainable_params"] if source else None,
            "onnx_layer_params": onnx_total,
            "all_params": self.parameter_count,
            "layer_choices": {"conv": [layer.name for layer in self.conv_layers()],
                              "any": [layer.name for layer in self._layers]},
            "torch_parity": self._torch_parity,
            "export_parity": (self.sidecar.get("parity") or {}).get("max_abs_diff"),
            "source": self.sidecar.get("source"),
        })

    def source_summary(self) -> dict[str, Any] | None:
        """The source framework's summary the exporter wrote into the sidecar (None for ONNX files)."""
        found = self.sidecar.get("summary")
        return found if isinstance(found, dict) and isinstance(found.get("rows"), list) else None

    def _summary_note(self) -> str:
        framework = (self.sidecar.get("source") or {}).get("framework")
        if framework in ("keras", "pytorch", "torch"):
            return (f"exported from {framework} before onnxplain recorded the framework's own summary: this is the "
                    "ONNX view (folded BatchNorm, no pooling/dropout rows); re-export the source file to get it")
        return "an ONNX file: layers as the ONNX graph holds them (conv, dense, normalisation)"

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, device={self.device!r}, spec={self.spec})"


class _SelectOutputs:
    """Callable wrapper returning (model output, *requested values) in a fixed order."""

    def __init__(self, module: "torch.nn.Module", names: list[str], output: str, values: tuple[str, ...]) -> None:
        self.module = module
        self._index = [names.index(output), *(names.index(v) for v in values)]

    def __call__(self, x: "torch.Tensor") -> tuple["torch.Tensor", ...]:
        outs = self.module(x)
        if not isinstance(outs, (tuple, list)):
            outs = (outs,)
        return tuple(outs[i] for i in self._index)


def _preload_cuda_libraries(ort: Any) -> None:
    """Let onnxruntime find the CUDA/cuDNN libraries that the torch wheel ships (ORT >= 1.21)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # a failed preload is explained by the fallback check that follows
        log.debug("onnxruntime.preload_dlls failed: %s", exc)


def _cuda_fallback_reason(ort: Any) -> str:
    import ctypes

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA provider; install onnxruntime-gpu instead of onnxruntime"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is visible (torch.cuda.is_available() is False); use device=\"cpu\""
    except ImportError:
        pass
    major = _ort_cuda_major(ort)
    missing = []
    for lib, package in _cuda_libraries(major):
        try:
            ctypes.CDLL(lib)
        except OSError:
            missing.append((lib, package))
    if missing:
        libs = ", ".join(lib for lib, _ in missing)
        packages = " ".join(sorted({package for _, package in missing}))
        return (f"missing CUDA {major} libraries: {libs}; `pip install {packages}` (or install the CUDA {major} "
                f"runtime and cuDNN 9), or use device=\"cpu\"")
    return "the CUDA provider failed to initialise (see onnxruntime's log with ORT_LOG_SEVERITY=0); use device=\"cpu\""


def _ort_cuda_major(ort: Any) -> int:
    """The CUDA major version this onnxruntime-gpu build links against (12 when it does not say)."""
    try:
        from onnxruntime.capi import build_and_package_info as info

        return int(str(getattr(info, "cuda_version", "12")).split(".")[0])
    except (ImportError, ValueError):
        return 12


def _cuda_libraries(major: int) -> list[tuple[str, str]]:
    """(soname, pip package) of what onnxruntime's CUDA provider loads, for CUDA 12 or 13."""
    if major >= 13:  # NVIDIA's CUDA 13 wheels dropped the -cuXX suffix (cuDNN kept it)
        return [(f"libcudart.so.{major}", "nvidia-cuda-runtime"), (f"libcublasLt.so.{major}", "nvidia-cublas"),
                ("libcudnn.so.9", "nvidia-cudnn-cu13"), ("libcufft.so.12", "nvidia-cufft"),
                ("libcurand.so.10", "nvidia-curand")]
    return [("libcudart.so.12", "nvidia-cuda-runtime-cu12"), ("libcublasLt.so.12", "nvidia-cublas-cu12"),
            ("libcudnn.so.9", "nvidia-cudnn-cu12"), ("libcufft.so.11", "nvidia-cufft-cu12"),
            ("libcurand.so.10", "nvidia-curand-cu12")]
