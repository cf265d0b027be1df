"""ONNX -> torch: onnx2torch plus the converters it lacks for newer opsets, and the rewrites that make
the module fast and capture-safe.

    prepare (graph.py)   Constant nodes -> initializers, constant folding with shape inference
    optimize (graph.py)  BatchNorm folded into Conv/Gemm, Transpose pairs cancelled, tf2onnx's
                         flatten Transpose folded into the dense weights, MatMul+Add -> Gemm
    convert              onnx2torch with converters.py registered
    fx passes            outputs = the ONNX graph outputs in order; constant shapes frozen (no host sync)
    memory format        channels_last weights (optimize only)
"""
from __future__ import annotations

import onnx
import torch

from ..errors import ConversionError, first_line
from . import converters
from .fx_passes import UnknownOutputError, set_outputs, specialise
from .graph import REWRITES, optimize as optimize_graph, prepare

__all__ = ["REWRITES", "optimize_graph", "prepare", "to_onnx_for_torch", "to_torch"]


def to_onnx_for_torch(model: onnx.ModelProto, *, optimize: bool = True) -> onnx.ModelProto:
    """The ONNX graph `to_torch` converts: prepared and, with `optimize`, rewritten."""
    try:
        prepared = prepare(model)
        return optimize_graph(prepared) if optimize else prepared
    except Exception as exc:  # onnxscript/onnx-ir raise many types on graphs they cannot handle
        raise ConversionError(f"cannot prepare the ONNX graph for torch: {first_line(exc)}") from exc


def to_torch(model: onnx.ModelProto, *, optimize: bool = True) -> torch.nn.Module:
    """An eval-mode float32 torch module computing the same function as `model`.

    forward returns the graph outputs in order (one tensor when there is one output). Graph outputs
    are never rewritten away, so values exposed as extra outputs keep their meaning.
    """
    import onnx2torch

    converters.register()
    graph = to_onnx_for_torch(model, optimize=optimize)
    try:
        module = onnx2torch.convert(graph, attach_onnx_mapping=True)
        set_outputs(module, [o.name for o in graph.graph.output])
    except NotImplementedError as exc:
        raise ConversionError(f"onnx2torch cannot convert this model: {first_line(exc)}; "
                              f"its ops: {', '.join(converters.describe(graph))}") from exc
    except UnknownOutputError as exc:
        raise ConversionError(f"graph output {exc.args[0]!r} is not produced by any converted node") from exc
    except Exception as exc:  # converters raise KeyError/ValueError/RuntimeError on graphs they cannot map
        raise ConversionError(f"onnx2torch failed on this model ({type(exc).__name__}: {first_line(exc)})") from exc
    module = module.float().eval()
    if optimize:
        specialise(module)
        if any(p.dim() == 4 for p in module.parameters()):
            # mkldnn/cuDNN run NHWC convolutions and pools faster (measured 2-5x on a 2-core CPU); a
            # memory format changes no value, and NHWC inputs permuted to NCHW are already laid out so.
            module = module.to(memory_format=torch.channels_last)
    return module
