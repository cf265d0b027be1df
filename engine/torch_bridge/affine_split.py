"""Split a converted module at its first non-affine op: x -> prefix (affine) -> cut -> suffix -> output.

Integrated gradients evaluates the network at points x' + a (x - x') of a straight line. An affine
prefix P maps that line to a line, P(x' + a (x - x')) = P(x') + a (P(x) - P(x')), so the prefix runs
on two images instead of steps x images; and P's Jacobian J is the same everywhere, so
sum_k w_k J^T g_k = J^T (sum_k w_k g_k): its backward runs once, on the weighted sum of the cut's
gradients. In a CNN the prefix is the input layout op and the first conv (a tf2onnx export's
Transpose, Conv, the folded BatchNorm), which on a gray 48x48 input is a large share of the work:
the thin first conv runs at a few GFLOP/s.

Only modules known to be affine in eval mode join the prefix, and only while every input they take
from the network input comes through the prefix; the prefix must end in one value (the cut).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation
from onnx2torch.node_converters.flatten import OnnxFlatten
from onnx2torch.node_converters.pad import OnnxPadStatic
from onnx2torch.node_converters.transpose import OnnxTranspose
from torch import fx, nn

from .converters import Pad, Reshape

#: Single-input modules that are affine maps of their input in eval mode.
AFFINE_MODULES: tuple[type, ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.Flatten, nn.Identity, nn.Dropout, OnnxTranspose, OnnxFlatten, OnnxPadStatic, Pad, Reshape,
)


@dataclass(frozen=True)
class AffineSplit:
    """`suffix(prefix(x)) == module(x)`, `prefix` affine; both share the module's parameters."""

    prefix: fx.GraphModule
    suffix: fx.GraphModule
    ops: tuple[str, ...]  # the prefix's node names, for logs and tests


def split_affine_prefix(gm: fx.GraphModule) -> AffineSplit | None:
    """The longest affine prefix of `gm` that ends in one value, or None when the first op is not affine."""
    nodes = list(gm.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return None
    x = inputs[0]
    dependent, members = {x}, {x}  # nodes whose value depends on x; x and the prefix
    for node in nodes:
        if node.op in ("placeholder", "output") or not any(a in dependent for a in node.all_input_nodes):
            continue
        dependent.add(node)
        fed_by_prefix = all(a in members for a in node.all_input_nodes if a in dependent)
        if fed_by_prefix and _is_affine(gm, node, dependent):
            members.add(node)
    cuts = [n for n in members if any(user not in members for user in n.users)]
    if len(cuts) != 1 or cuts[0] is x:
        return None
    cut, prefix = cuts[0], members - {x}
    # Constants (get_attr, shape values) are the nodes that do not depend on x: each module copies those it uses.
    prefix_nodes = [n for n in nodes if n in members or (n.op != "output" and n not in dependent)]
    return AffineSplit(_prefix_module(gm, prefix_nodes, cut), _suffix_module(gm, prefix, cut),
                       tuple(n.name for n in nodes if n in prefix))


def _is_affine(gm: fx.GraphModule, node: fx.Node, dependent: set[fx.Node]) -> bool:
    if node.op != "call_module":
        return False
    module = gm.get_submodule(str(node.target))
    if module.training:
        return False
    if isinstance(module, AFFINE_MODULES):
        return [a for a in node.all_input_nodes if a in dependent] == [node.args[0]]
    if isinstance(module, OnnxBinaryMathOperation):
        # x + c, x - c, c - x, x * c, c * x, x / c: affine when exactly one operand depends on x.
        first, second = (a in dependent if isinstance(a, fx.Node) else False for a in node.args[:2])
        if first == second:
            return False
        if module.math_op_function in (torch.add, torch.sub, torch.mul):
            return True
        return first and getattr(module.math_op_function, "__name__", "") == "_onnx_div"
    return False


def _prefix_module(gm: fx.GraphModule, nodes: list[fx.Node], cut: fx.Node) -> fx.GraphModule:
    graph, env = fx.Graph(), {}
    for node in nodes:
        env[node] = graph.node_copy(node, lambda a: env[a])
    graph.output(env[cut])
    return _module(gm, graph)


def _suffix_module(gm: fx.GraphModule, prefix: set[fx.Node], cut: fx.Node) -> fx.GraphModule:
    graph = fx.Graph()
    env = {cut: graph.placeholder("cut")}
    for node in gm.graph.nodes:
        if node.op != "placeholder" and node not in prefix:
            env[node] = graph.node_copy(node, lambda a: env[a])
    return _module(gm, graph)


def _module(gm: fx.GraphModule, graph: fx.Graph) -> fx.GraphModule:
    module = fx.GraphModule(gm, graph)  # shares gm's submodules and parameters
    module.graph.eliminate_dead_code()
    module.recompile()
    return module
