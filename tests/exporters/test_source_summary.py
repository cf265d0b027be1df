"""The framework's own summary in the sidecar and in `inspect --json`: every row and the totals equal
what Keras' `model.summary()` prints (run in its own process) and what torch counts (`p.numel()`)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.cli.helpers import assert_json, invoke
from tests.exporters.conftest import run_maker

MAKER = Path(__file__).with_name("keras_summary_maker.py")
_ROW = re.compile(r"^ (\S+) \((\w+)\)\s{2,}(\S.*?)\s{2,}(\d+)(?:\s|$)")
_TOTAL = re.compile(r"^(Total|Trainable|Non-trainable) params: ([\d,]+)")


@pytest.fixture(scope="module")
def keras_summaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_maker(MAKER, tmp_path_factory.mktemp("keras_summaries"))


def parse_keras_summary(text: str) -> tuple[list[dict], dict[str, int]]:
    """Rows (name, class, output shape, params) and totals from the text Keras printed."""
    rows, totals = [], {}
    for line in text.splitlines():
        if (m := _ROW.match(line)) and m.group(1) != "Layer":
            rows.append({"name": m.group(1), "class": m.group(2), "output_shape": m.group(3), "params": int(m.group(4))})
        elif m := _TOTAL.match(line):
            totals[m.group(1)] = int(m.group(2).replace(",", ""))
    return rows, totals


@pytest.mark.slow
@pytest.mark.parametrize("name", ["homework_cnn", "functional_dense_bn", "separable"])
def test_keras_rows_and_totals_equal_model_summary(keras_summaries: Path, name: str) -> None:
    rows, totals = parse_keras_summary((keras_summaries / f"{name}.summary.txt").read_text())
    assert len(rows) >= 7 and set(totals) == {"Total", "Trainable", "Non-trainable"}
    doc = assert_json(invoke("inspect", keras_summaries / f"{name}.h5", "--json", "--no-parity"))
    got = doc["source_summary"]
    assert got["framework"] == "keras" and doc["summary_note"] is None
    assert [{k: r[k] for k in ("name", "class", "output_shape", "params")} for r in got["rows"]] == rows
    assert (got["total_params"], got["trainable_params"], got["non_trainable_params"]) == (
        totals["Total"], totals["Trainable"], totals["Non-trainable"])
    assert doc["total_params"] == totals["Total"] and doc["trainable_params"] == totals["Trainable"]
    assert "tf2onnx" in doc["producer"] and "None" not in doc["producer"]


@pytest.mark.slow
def test_keras_homework_cnn_keeps_what_onnx_loses(keras_summaries: Path) -> None:
    """The issue's complaint: BatchNorm after Dense, pooling/dropout rows and channels-last shapes are there."""
    doc = assert_json(invoke("inspect", keras_summaries / "homework_cnn.h5", "--json", "--no-parity"))
    rows = doc["source_summary"]["rows"]
    classes = [r["class"] for r in rows]
    assert classes.count("BatchNormalization") == 6 and classes.count("MaxPooling2D") == 4
    assert classes.count("Dropout") == 5 and "Flatten" in classes
    assert rows[0]["output_shape"] == "(None, 48, 48, 8)"
    assert doc["total_params"] != doc["onnx_layer_params"]  # the ONNX view folds and drops parameters
    out = invoke("inspect", keras_summaries / "homework_cnn.h5", "--no-parity").stdout
    assert "Keras model.summary()" in out and f"Total params: {doc['total_params']:,}" in out
    assert "--layer accepts: conv2d" in out


class Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.bn(self.conv(x))))


class Net(nn.Module):
    """Nested modules, a frozen layer (non-trainable split) and a module the forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(Block(1, 6), Block(6, 10))
        self.flatten = nn.Flatten()
        self.head = nn.Sequential(nn.Linear(10 * 4 * 4, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 5))
        self.unused = nn.Linear(3, 3)
        for p in self.features[0].conv.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.features(x)))


class FlatDnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(256, 20)
        self.fc2 = nn.Linear(20, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.slow
@pytest.mark.parametrize(("make", "shape"), [(Net, "1,1,16,16"), (FlatDnn, "1,256")])
def test_torch_rows_and_totals_equal_numel(tmp_path: Path, make: type, shape: str) -> None:
    torch.manual_seed(0)
    module = make().eval()
    path = tmp_path / "model.pt"
    torch.save(module, path)
    if make is FlatDnn:  # the command line takes image shapes only; the API takes the flat one
        from onnxplain.exporters import export

        path = export(path, tmp_path / "model.onnx", input_shape=shape, trust=True)
    doc = assert_json(invoke("inspect", path, "--json", "--no-parity", "--trust", "--input-shape", shape)
                      if make is Net else invoke("inspect", path, "--json", "--no-parity"))
    got = doc["source_summary"]
    modules = [(n, m) for n, m in module.named_modules() if n]
    assert [(r["name"], r["class"]) for r in got["rows"]] == [(n, type(m).__name__) for n, m in modules]
    assert [r["params"] for r in got["rows"]] == [sum(p.numel() for p in m.parameters(recurse=False))
                                                  for _, m in modules]
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert (got["total_params"], got["trainable_params"], got["non_trainable_params"]) == (
        total, trainable, total - trainable)
    assert sum(r["params"] for r in got["rows"]) == total
    shapes = {r["name"]: r["output_shape"] for r in got["rows"]}
    if make is Net:
        assert trainable < total
        assert shapes["features.0.conv"] == "[1, 6, 16, 16]" and shapes["features.0"] == "[1, 6, 8, 8]"
        assert shapes["flatten"] == "[1, 160]" and shapes["head.3"] == "[1, 5]" and shapes["unused"] == "--"
    else:
        assert shapes == {"fc1": "[1, 20]", "fc2": "[1, 4]"}


def test_onnx_file_shows_the_onnx_view_with_a_note(tiny_onnx) -> None:
    doc = assert_json(invoke("inspect", tiny_onnx(), "--json", "--no-parity"))
    assert doc["source_summary"] is None and "ONNX file" in doc["summary_note"]
    assert doc["total_params"] == doc["onnx_layer_params"] == sum(layer["params"] for layer in doc["layers"])


def test_exported_before_summaries_still_inspect(tiny_onnx, tmp_path: Path) -> None:
    """A sidecar from before this change (a PyTorch export, no `summary`): the ONNX view, with a note."""
    import json
    import shutil

    path = tmp_path / "old.onnx"
    shutil.copyfile(tiny_onnx(), path)
    Path(str(path) + ".json").write_text(json.dumps({"onnxplain_sidecar": 1, "source": {"framework": "pytorch"}}))
    doc = assert_json(invoke("inspect", path, "--json", "--no-parity"))
    assert doc["source_summary"] is None and "re-export" in doc["summary_note"]
    out = invoke("inspect", path, "--no-parity").stdout
    assert "note: exported from pytorch before" in " ".join(out.split())


@pytest.mark.slow
def test_torchscript_rows_and_totals_without_shapes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Net().eval()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    doc = assert_json(invoke("inspect", path, "--json", "--no-parity", "--input-shape", "1,1,16,16"))
    got = doc["source_summary"]
    modules = [(n, m) for n, m in module.named_modules() if n]
    assert [(r["name"], r["class"], r["params"]) for r in got["rows"]] == [
        (n, type(m).__name__, sum(p.numel() for p in m.parameters(recurse=False))) for n, m in modules]
    assert got["total_params"] == sum(p.numel() for p in module.parameters())
    assert {r["output_shape"] for r in got["rows"]} == {"--"} and "TorchScript" in got["note"]
