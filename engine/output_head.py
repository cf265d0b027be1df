"""The model's output head: does the graph end in a softmax, and the graph that outputs the score a
gradient method explains instead.

A classifier that ends in Softmax outputs probabilities; their gradients are squashed wherever the
model is confident (saliency maps of 1e-12, integrated gradients whose path saturates), which is why
Captum users explain the pre-softmax score (the logit) by hand. `score_graph(model, "logit")` is the
same graph with that final Softmax (or LogSoftmax) turned into an Identity, so the output keeps its
name and shape and every graph rewrite, torch conversion and affine split works on it unchanged;
`score_graph(model, "probability")` is the graph as it is when it ends in Softmax, a LogSoftmax
turned into Softmax, or a Softmax appended to a model that outputs logits.

The final softmax is looked for through the ops exporters put after it (Identity, Reshape, Squeeze,
Flatten), which leave the class scores as they are.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import onnx
from onnx import helper

from .errors import BadInputError

TargetOutput = Literal["logit", "probability"]
TARGET_OUTPUTS: tuple[str, ...] = ("logit", "probability")
SOFTMAX_OPS = ("Softmax", "LogSoftmax")
PASSTHROUGH_OPS = ("Identity", "Reshape", "Squeeze", "Flatten")


def check_target_output(value: str) -> TargetOutput:
    """A valid target output name, or a one-line error listing the valid ones."""
    if value not in TARGET_OUTPUTS:
        raise BadInputError(f"target_output {value!r} is not one of: {', '.join(TARGET_OUTPUTS)}")
    return value  # type: ignore[return-value]


def as_probabilities(y: np.ndarray, kind: str) -> np.ndarray:
    """Class probabilities (last axis) from logits, log-probabilities or probabilities (`kind`)."""
    if kind == "probability":
        return y
    if kind == "log_probability":
        return np.exp(y)
    z = np.exp(y - y.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def final_softmax(model: onnx.ModelProto) -> onnx.NodeProto | None:
    """The Softmax/LogSoftmax node that produces the first graph output (through pass-through ops), or None."""
    if not model.graph.output:
        return None
    producers = {o: n for n in model.graph.node for o in n.output}
    node = producers.get(model.graph.output[0].name)
    while node is not None and node.op_type in PASSTHROUGH_OPS:
        node = producers.get(node.input[0])
    return node if node is not None and node.op_type in SOFTMAX_OPS else None


def output_record(model: onnx.ModelProto) -> dict[str, Any]:
    """The sidecar's `output` entry: what the graph outputs, and the softmax node that makes it so."""
    node = final_softmax(model)
    if node is None:
        return {"kind": "logits", "softmax": None}
    return {"kind": "probabilities", "softmax": {"name": node.name, "op": node.op_type}}


def score_graph(model: onnx.ModelProto, output: TargetOutput) -> onnx.ModelProto:
    """A copy of `model` whose first output is the logit or the probability of each class.

    Raises BadInputError for "logit" when the graph has no final softmax to take away (it outputs
    logits already: use the model as it is)."""
    check_target_output(output)
    node = final_softmax(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    index = None if node is None else list(model.graph.node).index(node)
    if output == "logit":
        if index is None:
            raise BadInputError("the model has no final softmax; its output is already the logit")
        target = out.graph.node[index]
        target.CopyFrom(helper.make_node("Identity", list(target.input[:1]), list(target.output), name=target.name))
        return out
    if index is not None:
        target = out.graph.node[index]
        if target.op_type == "LogSoftmax":
            target.op_type = "Softmax"
        return out
    # Logits: rename the graph output's producer and append a Softmax over the class axis.
    name = out.graph.output[0].name
    inner = f"{name}__logits"
    for n in out.graph.node:
        for i, value in enumerate(n.output):
            if value == name:
                n.output[i] = inner
    # The output is (N, classes) (Model checks it), so axis 1 is the class axis in every opset.
    out.graph.node.append(helper.make_node("Softmax", [inner], [name], name=f"{name}__softmax", axis=1))
    return out
