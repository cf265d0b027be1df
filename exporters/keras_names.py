"""Keras layer names for ONNX nodes, exactly.

tf2onnx names nodes after TensorFlow name scopes, which Keras opens per layer: `model_1/conv2d_7/Conv2D`.
But scopes get uniquified (`conv2d_1` may be layer `conv2d` called a second time, or Keras 3's
`conv2d_1_1`), so parsing names back is ambiguous. Instead each layer is renamed to a unique token
(`opxl00007x`) for the trace, the token found in every node name is mapped back to the layer's real
name, and the tokens are replaced in the graph. Works for nested models and both Keras versions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = "opxl{:05d}x"
_TOKEN_RE = re.compile(r"^(opxl\d{5}x)(_\d+)?$")


@dataclass
class RenamedLayers:
    layers: list[Any]
    originals: list[str]
    attr: str
    names: dict[str, str] = field(default_factory=dict)  # token -> real layer name

    def restore(self) -> None:
        for layer, name in zip(self.layers, self.originals):
            setattr(layer, self.attr, name)


def rename_layers(layers: list[Any], *, keras3: bool) -> RenamedLayers:
    """Give every layer a unique token name for the trace (tf_keras keeps it in `_name`)."""
    attr = "name" if keras3 else "_name"
    originals = [layer.name for layer in layers]
    renamed = RenamedLayers(layers=layers, originals=originals, attr=attr)
    for i, (layer, name) in enumerate(zip(layers, originals)):
        token = _TOKEN.format(i)
        renamed.names[token] = name
        setattr(layer, attr, token)
    return renamed


def restore_names(proto: Any, names: dict[str, str]) -> dict[str, str]:
    """Replace tokens in node and value names; return {ONNX node name: innermost Keras layer name}."""
    value_map = _rename_map(_value_names(proto), names)
    node_map = _rename_map([n.name for n in proto.graph.node], names)
    layer_names: dict[str, str] = {}
    for node in proto.graph.node:
        layer = _innermost_layer(node.name, names)
        if layer is None:  # tf2onnx's optimizer names fused nodes `Conv__73`; the weights still carry the scope
            layer = next((found for v in node.input[1:] if (found := _innermost_layer(v, names))), None)
        node.name = node_map.get(node.name, node.name)
        if layer is not None:
            layer_names[node.name] = layer
        node.input[:] = [value_map.get(v, v) for v in node.input]
        node.output[:] = [value_map.get(v, v) for v in node.output]
    graph = proto.graph
    for collection in (graph.input, graph.output, graph.value_info):
        for value in collection:
            value.name = value_map.get(value.name, value.name)
    for tensor in graph.initializer:
        tensor.name = value_map.get(tensor.name, tensor.name)
    return layer_names


def _value_names(proto: Any) -> list[str]:
    graph = proto.graph
    names = [v for n in graph.node for v in (*n.input, *n.output)]
    names += [v.name for v in (*graph.input, *graph.output, *graph.value_info)]
    names += [t.name for t in graph.initializer]
    return list(dict.fromkeys(n for n in names if n))


def _rename_map(old_names: list[str], names: dict[str, str]) -> dict[str, str]:
    """Token-free names; a name whose rewrite would collide with another keeps its token (names stay unique)."""
    rewritten = {old: _rewrite(old, names) for old in old_names}
    counts: dict[str, int] = {}
    for new in rewritten.values():
        counts[new] = counts.get(new, 0) + 1
    untouched = set(old_names)
    return {old: new for old, new in rewritten.items()
            if new != old and counts[new] == 1 and new not in untouched}


def _rewrite(name: str, names: dict[str, str]) -> str:
    parts = name.split("/")
    for i, part in enumerate(parts):
        match = _TOKEN_RE.match(part.split(":")[0])
        if match and match.group(1) in names:
            parts[i] = names[match.group(1)] + (match.group(2) or "") + part[len(match.group(0)):]
    return "/".join(parts)


def _innermost_layer(name: str, names: dict[str, str]) -> str | None:
    found = None
    for part in name.split("/"):
        match = _TOKEN_RE.match(part.split(":")[0])
        if match and match.group(1) in names:
            found = names[match.group(1)]
    return found
