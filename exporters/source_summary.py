"""The model as its author sees it: Keras' `model.summary()` and a torchinfo-style module tree.

The ONNX graph has lost what a student wrote (pooling, dropout and flatten layers vanish, BatchNorm
folds into convs, shapes turn channels-first), so the exporter, which holds the framework's model
object in its child process anyway, records the framework's own view in the sidecar (`summary`):

  {framework, style, rows: [{name, class, output_shape, params, depth}], total_params,
   trainable_params, non_trainable_params}

`output_shape` is the string the framework's tool prints: Keras `(None, 48, 48, 64)` (an InputLayer
of tf_keras `[(None, 48, 48, 1)]`), torchinfo `[1, 64, 48, 48]`. Runs in the child process only.
"""
from __future__ import annotations

from typing import Any, Sequence


def keras_summary(model: Any, *, keras3: bool) -> dict[str, Any]:
    """Every row `model.summary()` prints (model.layers, nested models as one row) and its totals,
    counted as Keras counts them: weights shared between layers once."""
    rows = [{"name": layer.name, "class": type(layer).__name__, "output_shape": _keras_shape(layer, keras3),
             "params": _keras_layer_params(layer), "depth": 0} for layer in model.layers]
    trainable_weights = getattr(model, "_collected_trainable_weights", None) or model.trainable_weights
    trainable = _count_weights(trainable_weights)
    non_trainable = _count_weights(model.non_trainable_weights)
    return {"framework": "keras", "style": "Keras model.summary()", "model": model.name, "rows": rows,
            "total_params": trainable + non_trainable, "trainable_params": trainable,
            "non_trainable_params": non_trainable}


def _keras_layer_params(layer: Any) -> int:
    if not layer.built and not getattr(layer, "_is_graph_network", False):
        return 0  # Keras prints "0 (unused)": a layer that call() never reached
    return int(layer.count_params())


def _count_weights(weights: Sequence[Any]) -> int:
    unique = {id(w): w for w in weights}
    total = 0
    for w in unique.values():
        size = 1
        for d in w.shape:
            size *= int(d)
        total += size
    return total


def _keras_shape(layer: Any, keras3: bool) -> str:
    if not keras3:
        try:
            return str(layer.output_shape)  # tf_keras prints str(layer.output_shape)
        except AttributeError:
            return "multiple"
        except RuntimeError:
            return "?"
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if not nodes:
        return "?"
    outputs = nodes[-1].output_tensors
    shapes = [_tuple_text(t.shape) for t in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _tuple_text(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def torch_summary(module: Any, input_shape: Sequence[int]) -> dict[str, Any]:
    """Every submodule in definition order with its depth, class, output shape of one forward on a
    zero batch of `input_shape` (forward hooks; "--" for a module the forward never called) and the
    parameters it holds itself (children's are on their own rows, as torchinfo shows them), so the
    rows add up to `sum(p.numel() for p in module.parameters())`."""
    import torch

    shapes: dict[str, str] = {}
    handles = []
    modules = [(name, m) for name, m in module.named_modules() if name]
    scripted = isinstance(module, torch.jit.ScriptModule)
    if not scripted:  # TorchScript modules take no Python hooks
        for name, m in modules:
            handles.append(m.register_forward_hook(_shape_hook(shapes, name)))
        try:
            with torch.no_grad():
                module(torch.zeros(*input_shape))
        finally:
            for handle in handles:
                handle.remove()
    rows = [{"name": name, "class": _torch_class(m), "output_shape": shapes.get(name, "--"),
             "params": sum(int(p.numel()) for p in m.parameters(recurse=False)), "depth": name.count(".") + 1}
            for name, m in modules]
    params = list(module.parameters())
    total = sum(int(p.numel()) for p in params)
    trainable = sum(int(p.numel()) for p in params if p.requires_grad)
    return {"framework": "pytorch", "style": "torchinfo", "model": _torch_class(module), "rows": rows,
            "total_params": total, "trainable_params": trainable, "non_trainable_params": total - trainable,
            **({"note": "a TorchScript module runs no Python hooks, so output shapes are not known"} if scripted else {})}


def _torch_class(m: Any) -> str:
    return str(getattr(m, "original_name", None) or type(m).__name__)  # a ScriptModule keeps its class here


def _shape_hook(shapes: dict[str, str], name: str) -> Any:
    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        if name not in shapes:  # a module called twice shows its first output, as torchinfo's first row does
            shapes[name] = _torch_shape(output)

    return hook


def _torch_shape(output: Any) -> str:
    import torch

    if isinstance(output, torch.Tensor):
        return str(list(output.shape))
    if isinstance(output, (list, tuple)):
        return "[" + ", ".join(_torch_shape(o) for o in output) + "]"
    return "--"
