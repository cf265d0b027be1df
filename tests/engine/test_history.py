"""Training histories in every format students keep them, and one-line refusals of everything else."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from onnxplain.engine.errors import BadInputError
from onnxplain.engine.history import read_histories, read_history

LOSS = [1.5, 1.1, 0.9]
ACC = [0.40, 0.55, 0.625]
EXPECTED = [{"epoch": i + 1, "loss": LOSS[i], "accuracy": ACC[i]} for i in range(3)]


def test_keras_csvlogger_counts_epochs_from_one(tmp_path: Path) -> None:
    path = tmp_path / "training.log.csv"  # what tf.keras.callbacks.CSVLogger writes: epoch from 0, sorted keys
    path.write_text("epoch,accuracy,loss\n" + "".join(f"{i},{a},{l}\n" for i, (a, l) in enumerate(zip(ACC, LOSS))))
    assert read_history(path) == [{"epoch": r["epoch"], "accuracy": r["accuracy"], "loss": r["loss"]} for r in EXPECTED]


def test_plain_csv_with_an_epoch_column_keeps_its_epochs(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("epoch,loss\n5,0.5\n10,0.25\n")
    assert read_history(path) == [{"epoch": 5, "loss": 0.5}, {"epoch": 10, "loss": 0.25}]


def test_json_history_dict(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"loss": LOSS, "accuracy": ACC}))
    assert read_history(path) == EXPECTED


def test_json_records_with_an_epoch_column(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    path.write_text(json.dumps(EXPECTED))
    assert read_history(path) == EXPECTED


def test_pickled_history_dict(tmp_path: Path) -> None:
    path = tmp_path / "history.pkl"
    path.write_bytes(pickle.dumps({"loss": LOSS, "accuracy": ACC}))
    assert read_history(path) == EXPECTED


class Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/onnxplain-history-pwned"),))


@pytest.mark.parametrize("payload", [{"loss": np.float64(0.5)}, {"loss": [1.0], "x": Evil()}, Evil()],
                         ids=["numpy-scalar", "reduce-in-dict", "reduce"])
def test_pickles_with_any_global_are_refused_unrun(tmp_path: Path, payload) -> None:
    marker = Path("/tmp/onnxplain-history-pwned")
    marker.unlink(missing_ok=True)
    path = tmp_path / "h.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(BadInputError, match="refused") as err:
        read_history(path)
    assert "\n" not in str(err.value) and not marker.exists()


def test_npy_file_per_metric(tmp_path: Path) -> None:
    np.save(tmp_path / "loss.npy", np.array(LOSS))
    np.save(tmp_path / "acc.npy", np.array(ACC, dtype=np.float32))
    got = read_history(f"loss={tmp_path / 'loss.npy'},accuracy={tmp_path / 'acc.npy'}")
    assert [r["epoch"] for r in got] == [1, 2, 3] and [r["loss"] for r in got] == LOSS
    np.testing.assert_allclose([r["accuracy"] for r in got], ACC, rtol=1e-6)


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("h.txt", "loss 1", "unknown format"),
    ("h.csv", "loss,acc\n1,2\n", "needs an epoch column"),
    ("h.json", '{"loss": [1, 2], "acc": [0.5]}', "different numbers of epochs"),
    ("h.json", '{"loss": ["a", "b"]}', "not a number"),
    ("h.json", "[1, 2", "not valid JSON"),
    ("h.json", '"hello"', "not a History.history dict"),
    ("h.pkl", "not a pickle", "refused"),
])
def test_bad_files_give_one_line_errors(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(BadInputError, match=fragment) as err:
        read_history(path)
    assert "\n" not in str(err.value)


def test_npy_without_a_name_and_missing_files(tmp_path: Path) -> None:
    np.save(tmp_path / "loss.npy", np.array(LOSS))
    with pytest.raises(BadInputError, match="name the metric"):
        read_history(tmp_path / "loss.npy")
    with pytest.raises(BadInputError, match="not an existing .npy"):
        read_history(f"loss={tmp_path / 'nope.npy'}")
    with pytest.raises(BadInputError, match="no such file"):
        read_history(tmp_path / "nope.csv")
    np.save(tmp_path / "grid.npy", np.zeros((2, 2)))
    with pytest.raises(BadInputError, match="1-D array"):
        read_history(f"loss={tmp_path / 'grid.npy'}")


def test_histories_one_per_model_in_order(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"loss": LOSS}))
    assert read_histories([str(path)], 2) == [[{"epoch": i + 1, "loss": LOSS[i]} for i in range(3)], None]
    with pytest.raises(BadInputError, match="at most one per model"):
        read_histories([str(path)] * 3, 2)
