"""ONNX-level passes before conversion: what onnx2torch needs (`prepare`) and what makes the module fast (`optimize`).

`prepare` lifts Constant nodes into initializers (tf2onnx keeps some weights as Constant nodes and
onnx2torch then fails with a KeyError) and folds constants with shape inference, so that the shapes
Reshape/Pad/... use become initializers that the converters read at conversion time.

`optimize` applies named rewrites (`REWRITES`), each one proven against onnxruntime in the tests:
BatchNorm folded into the preceding Conv/Gemm, inverse Transpose pairs cancelled, tf2onnx's
NHWC->NCHW Transpose before Flatten folded into the dense weights, MatMul+Add turned into Gemm
(one `nn.Linear`), Pad folded into the next Conv, MaxPool moved before a non-decreasing activation
(which then runs on the pooled, smaller tensor). (Inference-mode Dropout is already gone after
`prepare`: onnxscript's constant folding removes it.) Every rewrite goes through onnxscript's rewriter,
which refuses a match whose intermediate values are graph outputs, so a value that
`Model.torch_module_with` exposes as an output is never folded away.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxscript import optimizer as onnxscript_optimizer
from onnxscript import rewriter
from onnxscript.rewriter import RewriteRuleClassBase
from onnxscript.rewriter._basics import MatchResult
from onnxscript.rewriter.rules import common as rules

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- prepare
def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` that onnx2torch can convert: constants as initializers, shapes folded."""
    m = _ir_copy(model)
    ir.passes.Sequential(
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.RemoveInitializersFromInputsPass(),
    )(m)
    # onnxscript keeps ConstantOfShape by default (large outputs); a CNN's are small pad/shape vectors.
    onnxscript_optimizer.fold_constants(m, onnx_shape_inference=True, should_fold=_fold_constant_of_shape)
    shape_inference(m)
    # A Reshape whose shape is computed from Shape() (`x.view(x.size(0), -1)`) gets a constant shape.
    rewriter.RewriteRuleSet(list(_PREPARE_RULES)).apply_to_model(m)
    ir.passes.Sequential(
        common_passes.RemoveUnusedNodesPass(),
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.OutputFixPass(),
    )(m)
    _normalise_reshape_allowzero(m)
    return ir.to_proto(m)


def _ir_copy(model: onnx.ModelProto) -> ir.Model:
    """onnx-ir wraps the proto's tensors (and its passes rename them): work on a copy, never the caller's."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return ir.from_proto(copy)


def _fold_constant_of_shape(node: ir.Node) -> bool | None:
    return True if node.op_type == "ConstantOfShape" else None


def _normalise_reshape_allowzero(m: ir.Model) -> None:
    """`allowzero=1` only differs from 0 when the shape holds a 0; with a zero-free constant shape drop
    it (onnx2torch's Reshape-14 converter refuses allowzero=1, and the dynamo exporter always sets it)."""
    for node in m.graph:
        if node.op_type != "Reshape" or node.attributes.get_int("allowzero", 0) != 1:
            continue
        shape = node.inputs[1].const_value if len(node.inputs) > 1 and node.inputs[1] is not None else None
        if shape is not None and 0 not in shape.numpy().ravel().tolist():
            node.attributes.pop("allowzero")


# ---------------------------------------------------------------------------------------------- custom rules
class TransposeFlattenDense(RewriteRuleClassBase):
    """`MatMul(Reshape(Transpose(x, [0,2,3,1]), [-1|0|N, K]), W)` -> `MatMul(Reshape(x, ...), W')`.

    tf2onnx keeps Keras' channels-last flatten order with a Transpose before Flatten; permuting the
    rows of the dense weights instead removes a full-tensor copy per forward (and its backward)."""

    def pattern(self, op: Any, x: Any, shape: Any, w: Any) -> Any:
        return op.MatMul(op.Reshape(op.Transpose(x, _outputs=["t"]), shape, _allow_other_attributes=True,
                                    _outputs=["r"]), w)

    def check(self, context: Any, x: ir.Value, shape: ir.Value, w: ir.Value, t: ir.Value, r: ir.Value,
              **_: Any) -> MatchResult:
        result = MatchResult()
        perm = t.producer().attributes.get_ints("perm", None)
        if perm is None or list(perm) != [0, 2, 3, 1]:
            return result.fail("not an NCHW->NHWC transpose")
        dims = _static_dims(x, skip_batch=True)
        if dims is None:
            return result.fail("input C, H, W unknown")
        k = int(np.prod(dims))
        target = None if shape.const_value is None else shape.const_value.numpy().ravel().tolist()
        if target is None or not (target[1:] == [k] or target == [0, -1]):
            return result.fail("reshape is not a flatten to (N, C*H*W)")
        weights = w.const_value
        if weights is None or weights.numpy().ndim != 2 or weights.numpy().shape[0] != k:
            return result.fail("dense weights are not a constant (C*H*W, M) matrix")
        if len(w.uses()) != 1 or w.is_graph_input() or w.is_graph_output():
            return result.fail("dense weights are shared")
        return result

    def rewrite(self, op: Any, x: ir.Value, shape: ir.Value, w: ir.Value, r: ir.Value, **_: Any) -> Any:
        c, h, wd = _static_dims(x, skip_batch=True)
        weights = w.const_value.numpy()
        # Row (h, w, c) of the channels-last flatten becomes row (c, h, w) of the channels-first one.
        permuted = weights.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(weights.shape)
        new_w = op.initializer(ir.tensor(np.ascontiguousarray(permuted)), name=f"{w.name}__nchw")
        allowzero = r.producer().attributes.get_int("allowzero", 0)
        return op.MatMul(op.Reshape(x, shape, allowzero=allowzero), new_w)


class ReshapeCopyDims(RewriteRuleClassBase):
    """`Reshape(x, Concat(Unsqueeze(Gather(Shape(x), i)), ..., [-1]))` -> `Reshape(x, [0, ..., -1])`.

    The TorchScript exporter writes `x.view(x.size(0), -1)` as a runtime shape computation; with
    `allowzero=0` a 0 in the target shape copies that input dim, which is exactly what it computes."""

    def pattern(self, op: Any, x: Any, shape: Any) -> Any:
        return op.Reshape(x, shape, _allow_other_attributes=True)

    def check(self, context: Any, x: ir.Value, shape: ir.Value, **_: Any) -> MatchResult:
        result = MatchResult()
        if context.root.attributes.get_int("allowzero", 0) != 0:
            return result.fail("allowzero=1")
        dims = _copied_dims(x, shape)
        if dims is None:
            return result.fail("shape is not a concat of constants and dims of x")
        self._dims = dims
        return result

    def rewrite(self, op: Any, x: ir.Value, shape: ir.Value, **_: Any) -> Any:
        return op.Reshape(x, op.Constant(value=ir.tensor(np.array(self._dims, dtype=np.int64))))


def _copied_dims(x: ir.Value, shape: ir.Value) -> list[int] | None:
    """The target shape with 0 for every entry that is `x.shape[i]` at position i; None if not that form."""
    concat = shape.producer()
    if shape.const_value is not None or concat is None or concat.op_type != "Concat":
        return None
    out: list[int] = []
    for piece in concat.inputs:
        if piece is None:
            return None
        if piece.const_value is not None:
            out += [int(v) for v in piece.const_value.numpy().ravel()]
            continue
        index = _gathered_dim(piece, x)
        if index is None or index != len(out):
            return None
        out.append(0)
    if not any(v == 0 for v in out):
        return None
    return out


def _gathered_dim(piece: ir.Value, x: ir.Value) -> int | None:
    """i when `piece` is Unsqueeze(Gather(Shape(x), i), [0]) (a 1-element vector holding x.shape[i])."""
    unsqueeze = piece.producer()
    if unsqueeze is None or unsqueeze.op_type != "Unsqueeze":
        return None
    axes = unsqueeze.inputs[1].const_value if len(unsqueeze.inputs) > 1 and unsqueeze.inputs[1] is not None \
        else None
    axes_list = axes.numpy().ravel().tolist() if axes is not None else unsqueeze.attributes.get_ints("axes", None)
    if axes_list is None or list(axes_list) != [0]:
        return None
    gather = unsqueeze.inputs[0].producer()
    if gather is None or gather.op_type != "Gather" or gather.attributes.get_int("axis", 0) != 0:
        return None
    index = gather.inputs[1].const_value
    source = gather.inputs[0].producer()
    if index is None or index.numpy().size != 1 or source is None or source.op_type != "Shape":
        return None
    if source.inputs[0] is not x or source.attributes.get_int("start", 0) != 0:
        return None
    return int(index.numpy().ravel()[0])


class IdentityGather(RewriteRuleClassBase):
    """`Gather(Reshape(x, [-1]), idx)` -> `x` when idx is x's own row-major flat index.

    The dynamo exporter lowers `flatten` of a channels-last tensor (an NHWC model that permutes its
    input) to `as_strided`: idx = Range(batch) * stride + arange(d_k) * stride_k + ..., rebuilt at
    runtime from Shape(). When every stride is the contiguous one the Gather is the identity; the
    rewrite removes it and the runtime shape arithmetic (host reads) with it."""

    def pattern(self, op: Any, x: Any, flat: Any, idx: Any) -> Any:
        return op.Gather(op.Reshape(x, flat, _allow_other_attributes=True), idx, _allow_other_attributes=True)

    def check(self, context: Any, x: ir.Value, flat: ir.Value, idx: ir.Value, **_: Any) -> MatchResult:
        result = MatchResult()
        if context.root.attributes.get_int("axis", 0) != 0:
            return result.fail("gather axis is not 0")
        if flat.const_value is None or flat.const_value.numpy().ravel().tolist() != [-1]:
            return result.fail("not a flatten to 1-D")
        if x.shape is None or len(x.shape) < 2 or not all(isinstance(d, int) for d in list(x.shape)[1:]):
            return result.fail("x's non-batch dims are unknown")
        if not _is_own_flat_index(idx, x):
            return result.fail("indices are not x's contiguous flat index")
        return result

    def rewrite(self, op: Any, x: ir.Value, **_: Any) -> Any:
        return op.Identity(x)


def _is_own_flat_index(idx: ir.Value, x: ir.Value) -> bool:
    dims = list(x.shape)
    rank = len(dims)
    strides = [int(np.prod(dims[k + 1:])) for k in range(rank)]
    covered: list[int] = []
    for leaf in _add_leaves(idx):
        if leaf.const_value is not None:
            values = leaf.const_value.numpy()
            if values.ndim > rank:
                return False
            values = values.reshape((1,) * (rank - values.ndim) + values.shape)
            axes = [k for k in range(rank) if values.shape[k] > 1]
            if not axes:
                if np.any(values != 0):
                    return False
                continue
            k = axes[0]
            if len(axes) != 1 or k == 0 or values.shape[k] != dims[k]:
                return False
            if not np.array_equal(values.ravel(), np.arange(dims[k]) * strides[k]):
                return False
            covered.append(k)
        elif _is_batch_range(leaf, x, strides[0], rank):
            covered.append(0)
        else:
            return False
    needed = [0] + [k for k in range(1, rank) if dims[k] > 1]
    return sorted(covered) == needed


def _add_leaves(value: ir.Value) -> list[ir.Value]:
    node = value.producer()
    if node is not None and node.op_type == "Add" and value.const_value is None:
        return [leaf for operand in node.inputs for leaf in _add_leaves(operand)]
    return [value]


def _is_batch_range(leaf: ir.Value, x: ir.Value, stride: int, rank: int) -> bool:
    """leaf = Unsqueeze(Range(0, batch, 1) [* stride], axes 1..rank-1), batch being x's dim 0."""
    unsqueeze = leaf.producer()
    if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or len(unsqueeze.inputs) < 2:
        return False
    axes = unsqueeze.inputs[1].const_value if unsqueeze.inputs[1] is not None else None
    if axes is None or axes.numpy().ravel().tolist() != list(range(1, rank)):
        return False
    value = unsqueeze.inputs[0]
    node = value.producer()
    factor = 1
    if node is not None and node.op_type == "Mul":
        consts = [v for v in node.inputs if v is not None and v.const_value is not None]
        others = [v for v in node.inputs if v is not None and v.const_value is None]
        if len(consts) != 1 or len(others) != 1 or consts[0].const_value.numpy().size != 1:
            return False
        factor = int(consts[0].const_value.numpy().ravel()[0])
        node = others[0].producer()
    if factor != stride or node is None or node.op_type != "Range":
        return False
    start, limit, delta = node.inputs
    if start.const_value is None or delta.const_value is None:
        return False
    if int(start.const_value.numpy()) != 0 or int(delta.const_value.numpy()) != 1:
        return False
    return _is_batch_of(limit, x)


def _is_batch_of(limit: ir.Value, x: ir.Value) -> bool:
    """limit = Squeeze(Shape(y)[0:1]) or Gather(Shape(y), 0), y having the same dim 0 as x."""
    node = limit.producer()
    if node is None or node.op_type not in ("Squeeze", "Gather", "Reshape"):
        return False
    if node.op_type == "Gather":
        index = node.inputs[1].const_value
        if index is None or int(index.numpy().ravel()[0]) != 0:
            return False
    shape = node.inputs[0].producer()
    if shape is None or shape.op_type != "Shape" or shape.attributes.get_int("start", 0) != 0:
        return False
    source = shape.inputs[0]
    if source.shape is None or x.shape is None:
        return False
    a, b = source.shape[0], x.shape[0]
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    return a.value is not None and a.value == b.value


def _static_dims(value: ir.Value, *, skip_batch: bool) -> tuple[int, ...] | None:
    shape = value.shape
    if shape is None or len(shape) != 4:
        return None
    dims = list(shape)[1:] if skip_batch else list(shape)
    if not all(isinstance(d, int) for d in dims):
        return None
    return tuple(int(d) for d in dims)


class PoolBeforeActivation(RewriteRuleClassBase):
    """`MaxPool(act(x))` -> `act(MaxPool(x))` for an element-wise non-decreasing activation.

    A non-decreasing f commutes with max (f(max a) = max f(a)), and the gradient is the same: where
    ties make the two pick different elements, f is flat there and both gradients are 0. The
    activation (and in the backward pass its threshold mask) then runs on the pooled tensor, a
    quarter of the elements for a 2x2 pool: conv-ReLU-pool, the course's CNN block, gets cheaper."""

    def __init__(self, activation: str) -> None:
        super().__init__(name=f"PoolBefore{activation}")
        self._activation = activation

    def pattern(self, op: Any, x: Any) -> Any:
        act = getattr(op, self._activation)(x, _allow_other_attributes=True, _outputs=["a"])
        return op.MaxPool(act, _allow_other_attributes=True, _outputs=["p"])

    def check(self, context: Any, x: ir.Value, a: ir.Value, p: ir.Value, **_: Any) -> MatchResult:
        result = MatchResult()
        act, pool = a.producer(), p.producer()
        if len(pool.outputs) != 1:
            return result.fail("MaxPool also returns its indices")
        if len(act.inputs) != 1:
            return result.fail("activation takes more than one input")
        if any(act.attributes.get_float(k, 1.0) < 0 for k in ("alpha", "gamma")):
            return result.fail("a negative slope makes the activation decreasing")
        return result

    def rewrite(self, op: Any, x: ir.Value, a: ir.Value, p: ir.Value, **_: Any) -> Any:
        act, pool = a.producer(), p.producer()
        pooled = op.op("MaxPool", x, _domain=pool.domain, _name=pool.name, **pool.attributes.copy())
        return op.op(act.op_type, pooled, _domain=act.domain, _name=act.name, **act.attributes.copy())


#: Element-wise activations that never decrease (for alpha, gamma >= 0), so they commute with MaxPool.
NON_DECREASING = ("Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "Tanh", "Softplus", "HardSigmoid")


# ---------------------------------------------------------------------------------------------- the rewrites
_PREPARE_RULES = (ReshapeCopyDims().rule(), IdentityGather().rule(), rules.materialize_reshape_shape_rule,
                  rules.normalize_pad_format_conv_rule)

#: Named rewrites applied by `optimize`, in order; each is tested on its own for onnxruntime parity.
REWRITES: dict[str, tuple[Any, ...]] = {
    "fold_batchnorm": (rules.fuse_batchnorm_into_conv_rule, rules.fuse_batchnorm_into_conv_transpose_rule,
                       rules.fuse_batchnorm_into_gemm_rule),
    "cancel_transposes": (rules.transpose_transpose_rule, rules.no_op_transpose_rule),
    "transpose_into_dense": (TransposeFlattenDense().rule(),),
    "matmul_add_to_gemm": (rules.matmul_add_to_gemm_rule,),
    "fuse_pad_into_conv": (rules.fuse_pad_into_conv_rule,),
    "pool_before_activation": tuple(PoolBeforeActivation.rule(a) for a in NON_DECREASING),
}


def optimize(model: onnx.ModelProto, rewrites: Sequence[str] | None = None) -> onnx.ModelProto:
    """`model` with the named rewrites (all of `REWRITES` by default) applied; graph outputs keep their names."""
    names = list(REWRITES) if rewrites is None else list(rewrites)
    unknown = [n for n in names if n not in REWRITES]
    if unknown:
        raise ValueError(f"unknown rewrite {unknown[0]!r}; known: {', '.join(REWRITES)}")
    m = _ir_copy(model)
    for name in names:
        count = _apply(m, REWRITES[name])
        if count:
            log.debug("rewrite %s: %d match(es)", name, count)
    ir.passes.Sequential(
        common_passes.IdentityEliminationPass(),
        common_passes.RemoveUnusedNodesPass(),
        common_passes.OutputFixPass(),
    )(m)
    return ir.to_proto(m)


def _apply(m: ir.Model, rule_list: Sequence[Any]) -> int:
    shape_inference(m)
    return rewriter.RewriteRuleSet(list(rule_list)).apply_to_model(m)


def shape_inference(m: ir.Model) -> None:
    """Refresh the value shapes the rules check (C*H*W of a flatten, ranks of MatMul inputs)."""
    common_passes.ShapeInferencePass()(m)


def count_ops(model: onnx.ModelProto) -> dict[str, int]:
    out: dict[str, int] = {}
    for node in model.graph.node:
        out[node.op_type] = out.get(node.op_type, 0) + 1
    return out
