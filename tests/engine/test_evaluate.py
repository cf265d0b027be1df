"""Evaluation against scikit-learn's metrics, and end to end on a tiny model and on a real one."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from onnxplain.engine import Model
from onnxplain.engine.data import Dataset, load_dataset
from onnxplain.engine.errors import BadInputError
from onnxplain.engine.evaluate import evaluate, evaluation_from_predictions
from tests.conftest import DATA, zoo_path


@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 8), n=st.integers(1, 200), seed=st.integers(0, 2**32 - 1))
def test_metrics_match_scikit_learn_on_random_predictions(k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.5, y, rng.integers(0, k, n))  # better than chance, with mistakes
    ev = evaluation_from_predictions(y, p, k)
    labels = list(range(k))
    assert ev.accuracy == pytest.approx(accuracy_score(y, p))
    np.testing.assert_array_equal(ev.confusion, confusion_matrix(y, p, labels=labels))
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    np.testing.assert_allclose(ev.precision, prec)
    np.testing.assert_allclose(ev.recall, rec)
    np.testing.assert_allclose(ev.f1, f1)
    np.testing.assert_array_equal(ev.support, sup)
    norm = confusion_matrix(y, p, labels=labels, normalize="true")
    np.testing.assert_allclose(ev.confusion_normalized, np.nan_to_num(norm))
    rows = ev.confusion_normalized.sum(axis=1)
    np.testing.assert_allclose(rows[ev.support > 0], 1.0)


def test_most_confused_pairs_are_named_and_ordered() -> None:
    names = ("Angry", "Disgust", "Fear")
    # Angry: 10 images, 6 right, 4 called Fear; Disgust: 2 images, 1 called Angry; Fear: 5, all right.
    y = [0] * 10 + [1] * 2 + [2] * 5
    p = [0] * 6 + [2] * 4 + [1, 0] + [2] * 5
    ev = evaluation_from_predictions(y, p, 3, names)
    pairs = ev.most_confused()
    assert [(q.true_name, q.predicted_name) for q in pairs] == [("Disgust", "Angry"), ("Angry", "Fear")]
    assert pairs[0].rate == pytest.approx(0.5) and pairs[0].count == 1
    assert pairs[1].rate == pytest.approx(0.4) and pairs[1].count == 4
    d = json.loads(json.dumps(ev.as_dict()))
    assert d["accuracy"] == pytest.approx(12 / 17)
    assert d["most_confused"][1] == {"true": 0, "predicted": 2, "true_name": "Angry", "predicted_name": "Fear",
                                     "rate": pytest.approx(0.4), "count": 4}
    assert [c["support"] for c in d["per_class"]] == [10, 2, 5]


def test_out_of_range_and_mismatched_inputs_are_refused() -> None:
    with pytest.raises(BadInputError, match="label 3 is out of range"):
        evaluation_from_predictions([3], [0], 3)
    with pytest.raises(BadInputError, match="2 labels for 1 predictions"):
        evaluation_from_predictions([0, 1], [0], 3)
    with pytest.raises(BadInputError, match="2 class names for 3"):
        evaluation_from_predictions([0], [0], 3, ("a", "b"))


def test_evaluate_runs_the_model_in_batches(tiny_onnx) -> None:
    model = Model(tiny_onnx(size=16, classes=4))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(23, 16, 16), dtype=np.uint8)
    expected = model.predict(model.spec.to_model_input(list(images))).argmax(axis=1)
    labels = rng.integers(0, 4, 23)
    seen: list[float | None] = []
    ev = evaluate(model, images, labels, batch_size=3, progress=lambda d, f: seen.append(f))
    np.testing.assert_array_equal(ev.predictions, expected)  # batches of 3 gray images stay 3 images
    assert ev.accuracy == pytest.approx(float(np.mean(expected == labels)))
    assert seen[-1] == pytest.approx(1.0) and len(seen) == 8
    with pytest.raises(BadInputError, match="class 9 but the model has 4 outputs"):
        evaluate(model, images[:2], [0, 9])


def test_evaluate_dataset_maps_class_names_into_the_model_order(tiny_onnx) -> None:
    model = Model(tiny_onnx(size=16, classes=3), labels="cat,dog,owl")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(12, 16, 16), dtype=np.uint8)
    pred = model.predict(model.spec.to_model_input(list(images))).argmax(axis=1)
    # The dataset names its classes in another order (like sorted ImageFolder names).
    ds_names = ("owl", "cat", "dog")
    to_ds = {0: 1, 1: 2, 2: 0}
    ds = Dataset(images, np.array([to_ds[int(c)] for c in pred]), ds_names, "mem", tuple(map(str, range(12))))
    ev = evaluate(model, ds)
    assert ev.accuracy == 1.0 and ev.class_names == ("cat", "dog", "owl")
    unlabelled = Dataset(images, None, None, "test.csv", ds.ids)
    with pytest.raises(BadInputError, match="has no labels"):
        evaluate(model, unlabelled)


@pytest.mark.slow
def test_real_mnist_model_on_real_mnist_is_accurate() -> None:
    model = Model(zoo_path("o03"))
    ds = load_dataset(DATA / "mnist_t10k-images-idx3-ubyte.gz", limit=500)
    ev = evaluate(model, ds)
    assert ev.n == 500 and ev.class_names == tuple(str(i) for i in range(10))
    assert ev.accuracy > 0.9  # a trained MNIST classifier on the real test digits
    assert ev.confusion.sum() == 500 and np.trace(ev.confusion) == round(ev.accuracy * 500)
