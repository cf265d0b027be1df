"""`onnxplain bench`: the harness behind a command; tables, one JSON document, one-line errors."""
from __future__ import annotations

import pytest

from tests.cli.helpers import assert_json, assert_ok, assert_user_error, invoke

FAST = ("--batch-sizes", "1,2", "--repeats", "1", "--warmup", "0")


def test_json_document_has_a_row_per_method_and_batch(tiny_onnx) -> None:
    doc = assert_json(invoke("bench", tiny_onnx(), "--methods", "saliency,occlusion", *FAST, "--device", "cpu",
                             "--json"))
    assert [(r["method"], r["images"]) for r in doc["rows"]] == [
        ("saliency", 1), ("saliency", 2), ("occlusion", 1), ("occlusion", 2)]
    row = doc["rows"][3]
    assert row["ours"]["timing"]["repeats"] == 1 and row["ours"]["timing"]["median_s"] > 0
    assert row["reference"] is None and row["speedup"] is None  # no --compare
    assert row["forward_passes"] == 2 * (3 * 3 + 1)  # 8x8 windows, stride 4, on 16x16: 3x3 positions + the image
    assert row["floor_s"] > 0 and set(doc["throughput"]) == {"onnxruntime", "torch"}
    assert doc["device"] == "cpu" and doc["environment"]["usable_cores"] >= 1


def test_table_with_references(tiny_onnx) -> None:
    out = assert_ok(invoke("bench", tiny_onnx(), "--methods", "ig", *FAST, "--compare", "--no-floors",
                           env={"COLUMNS": "300"})).stdout
    assert "References: captum IntegratedGradients." in out
    assert out.count("speedup >= 2x vs reference") == 2  # one target per batch, met or missed
    assert "Forward throughput" not in out  # --no-floors, and ig needs none


@pytest.mark.parametrize("args,fragment", [
    (("--methods", "saliency,nope"), "unknown method nope"),
    (("--batch-sizes", "0"), "--batch-sizes"),
    (("--batch-sizes", "one"), "--batch-sizes"),
    (("--repeats", "0"), "--repeats"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_onnx, args: tuple[str, ...], fragment: str) -> None:
    assert_user_error(invoke("bench", tiny_onnx(), *args), fragment)


def test_missing_model_is_a_user_error(tmp_path) -> None:
    assert_user_error(invoke("bench", tmp_path / "none.onnx"), "no such file")
