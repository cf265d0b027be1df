"""Models ending in Softmax are explained on their logit by default: saliency, integrated gradients
(completeness on the logit), SmoothGrad and Grad-CAM equal Captum on the network without its final
Softmax, built before any export; `target_output="probability"` gives the maps of the probability as
before. The graph edits of engine.output_head, checked with onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency

from onnxplain.engine import BadInputError, Model, explain
from onnxplain.engine.output_head import final_softmax, output_record, score_graph
from tests.conftest import make_tiny_cnn
from tests.engine.gradient_data import captum_inputs, tiny_inputs

SOFTMAX = dict(channels=3, layout="NCHW", size=16, classes=4, seed=4)


@pytest.fixture(scope="module")
def softmax_model(tiny_onnx) -> Model:
    return Model(tiny_onnx(softmax=True, **SOFTMAX))


def source_net(softmax: bool) -> torch.nn.Module:
    """The PyTorch network the tiny file was exported from, with or without its final softmax."""
    net = make_tiny_cnn(channels=3, classes=4, seed=SOFTMAX["seed"], softmax=softmax)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def run_graph(graph: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_softmax_model_is_recorded_as_probabilities(softmax_model, tiny_onnx):
    assert softmax_model.output_kind == "probabilities"
    assert output_record(softmax_model.onnx)["softmax"]["op"] == "Softmax"
    logits = Model(tiny_onnx(softmax=False, **SOFTMAX))
    assert logits.output_kind == "logits" and output_record(logits.onnx) == {"kind": "logits", "softmax": None}


def test_the_logit_module_is_checked_against_onnxruntime(tiny_onnx):
    """Only the logit module may ever be built for a softmax model: its parity (as probabilities) is the one
    the summary reports."""
    model = Model(tiny_onnx(softmax=True, **SOFTMAX))
    assert model.summary()["torch_parity"] is None
    model.torch_scores("logit")
    assert "torch_module" not in model.__dict__ and 0 <= model.summary()["torch_parity"] < 1e-5


def test_saliency_explains_the_logit_by_default(softmax_model):
    x = tiny_inputs(softmax_model, 4)
    e = explain(softmax_model, x, "saliency", preprocessed=True, batch_size=3)
    assert e.params["target_output"] == "logit" and e.record()["params"]["target_output"] == "logit"
    xt, tt = captum_inputs(x, e.targets)
    ref = Saliency(source_net(softmax=False)).attribute(xt, target=tt, abs=True).numpy()
    np.testing.assert_allclose(np.abs(e.details.attributions), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(e.maps, ref.max(axis=1), rtol=0, atol=1e-5 * np.abs(ref).max())
    with torch.no_grad():
        logits = source_net(softmax=False)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(e.scores, logits[np.arange(4), e.targets], rtol=0, atol=1e-5)
    # Not the probability's gradient: that one is squashed by the softmax (its maps are far smaller).
    prob = explain(softmax_model, x, "saliency", preprocessed=True, target_output="probability")
    assert not np.allclose(prob.maps, e.maps, rtol=0.1)


def test_probability_keeps_the_maps_of_the_whole_model(softmax_model):
    x = tiny_inputs(softmax_model, 4, seed=1)
    e = explain(softmax_model, x, "saliency", preprocessed=True, target_output="probability")
    assert e.params["target_output"] == "probability"
    xt, tt = captum_inputs(x, e.targets)
    old = Saliency(softmax_model.torch_module).attribute(xt, target=tt, abs=True).numpy()  # the path before logits
    src = Saliency(source_net(softmax=True)).attribute(xt, target=tt, abs=True).numpy()
    np.testing.assert_allclose(e.maps, old.max(axis=1), rtol=0, atol=1e-6 * np.abs(old).max())
    np.testing.assert_allclose(e.maps, src.max(axis=1), rtol=0, atol=1e-5 * np.abs(src).max())
    np.testing.assert_allclose(e.scores, softmax_model.predict(x)[np.arange(4), e.targets], rtol=0, atol=1e-6)
    ig = explain(softmax_model, x, "ig", preprocessed=True, steps=16, target_output="probability")
    ref, _ = _captum_ig(softmax_model.torch_module, x, ig.details.baseline, ig.targets, 16)
    np.testing.assert_allclose(ig.details.attributions, ref, rtol=0, atol=1e-5 * max(1e-3, np.abs(ref).max()))


def _captum_ig(module: torch.nn.Module, x: np.ndarray, base: np.ndarray, targets: np.ndarray,
               steps: int) -> tuple[np.ndarray, np.ndarray]:
    xt, tt = captum_inputs(x, targets)
    bt, _ = captum_inputs(base, targets)
    attr, delta = IntegratedGradients(module).attribute(xt, baselines=bt.detach(), target=tt, n_steps=steps,
                                                        return_convergence_delta=True)
    return attr.detach().numpy(), delta.detach().numpy()


def test_ig_on_the_logit_equals_captum_and_is_complete(softmax_model, tiny_onnx):
    x = tiny_inputs(softmax_model, 3, seed=2)
    e = explain(softmax_model, x, "ig", preprocessed=True, steps=32, batch_size=20, tolerance=0.01)
    assert e.params["target_output"] == "logit"
    ref, delta = _captum_ig(source_net(softmax=False), x, e.details.baseline, e.targets, 32)
    redone = e.details.steps > 32
    scale = np.abs(ref).max()
    np.testing.assert_allclose(e.details.attributions[~redone], ref[~redone], rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(e.details.delta[~redone], delta[~redone], rtol=0, atol=1e-4 * scale)
    assert (~redone).any()
    # Completeness on the logit: f(x) - f(baseline) from onnxruntime on the file exported without softmax.
    plain = Model(tiny_onnx(softmax=False, **SOFTMAX))
    rows = np.arange(3)
    diff = plain.predict(x)[rows, e.targets] - plain.predict(e.details.baseline)[rows, e.targets]
    np.testing.assert_allclose(e.details.score_difference, diff, rtol=1e-4, atol=1e-5)
    total = e.details.attributions.reshape(3, -1).sum(axis=1)
    assert (np.abs(total - diff) <= 0.01 * np.abs(diff) + 1e-6).all(), (total, diff)
    assert (e.details.completeness_error <= 0.01).all()


def test_smoothgrad_and_gradcam_follow_the_target_output(softmax_model, tiny_onnx):
    x = tiny_inputs(softmax_model, 2, seed=3)
    plain = Model(tiny_onnx(softmax=False, **SOFTMAX))
    for method, params in (("smoothgrad", {"samples": 4, "seed": 1}), ("gradcam", {})):
        logit = explain(softmax_model, x, method, preprocessed=True, **params)
        same = explain(plain, x, method, targets=logit.targets, preprocessed=True, **params)
        prob = explain(softmax_model, x, method, preprocessed=True, target_output="probability", **params)
        assert logit.params["target_output"] == "logit" and prob.params["target_output"] == "probability"
        np.testing.assert_allclose(logit.maps, same.maps, rtol=1e-4, atol=1e-6 * np.abs(same.maps).max())
        np.testing.assert_allclose(logit.scores, same.scores, rtol=1e-5, atol=1e-5)
        assert not np.allclose(prob.maps, logit.maps, rtol=0.1)


def test_probability_of_a_logits_model_is_its_softmax(tiny_onnx):
    plain = Model(tiny_onnx(softmax=False, **SOFTMAX))
    x = tiny_inputs(plain, 3, seed=4)
    e = explain(plain, x, "saliency", preprocessed=True, target_output="probability")
    xt, tt = captum_inputs(x, e.targets)
    ref = Saliency(source_net(softmax=True)).attribute(xt, target=tt, abs=True).numpy().max(axis=1)
    np.testing.assert_allclose(e.maps, ref, rtol=0, atol=1e-5 * ref.max())
    assert plain.score_onnx("logit") is plain.onnx


def test_score_graphs_match_onnxruntime(softmax_model, tiny_onnx):
    x = tiny_inputs(softmax_model, 3, seed=5)
    plain = Model(tiny_onnx(softmax=False, **SOFTMAX))
    logits = plain.predict(x)
    np.testing.assert_allclose(run_graph(score_graph(softmax_model.onnx, "logit"), x), logits, rtol=1e-5, atol=1e-5)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(run_graph(score_graph(plain.onnx, "probability"), x), probs, rtol=1e-5, atol=1e-6)
    # A LogSoftmax head: its logit graph drops it, its probability graph makes it a Softmax.
    log_head = onnx.ModelProto()
    log_head.CopyFrom(softmax_model.onnx)
    final_softmax(log_head).op_type = "LogSoftmax"
    np.testing.assert_allclose(run_graph(log_head, x), np.log(probs), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run_graph(score_graph(log_head, "logit"), x), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run_graph(score_graph(log_head, "probability"), x), probs, rtol=1e-5, atol=1e-6)
    with pytest.raises(BadInputError, match="already the logit"):
        score_graph(plain.onnx, "logit")


def test_unknown_target_output_is_a_user_error(softmax_model):
    with pytest.raises(BadInputError, match="not one of: logit, probability"):
        explain(softmax_model, tiny_inputs(softmax_model, 1), "saliency", preprocessed=True, target_output="score")
