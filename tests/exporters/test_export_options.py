"""ExportOptions: flags are checked in the parent, before any process starts."""
from __future__ import annotations

from pathlib import Path

import pytest

from onnxplain.engine.errors import BadInputError
from onnxplain.exporters import ExportOptions
from onnxplain.exporters.options import parse_input_shape


@pytest.mark.parametrize("given, expected", [
    ("1,1,48,48", (1, 1, 48, 48)), ("1x3x32x32", (1, 3, 32, 32)), ((1, 28, 28), (1, 1, 28, 28)),
    ([2, 48, 48, 1], (2, 48, 48, 1)), ("1,2304", (1, 2304)), (None, None),
])
def test_input_shape(given, expected) -> None:
    assert parse_input_shape(given) == expected


@pytest.mark.parametrize("bad", ["48,48", "1,a,48,48", "0,1,48,48", "1,1,-4,48", (1, 1, 99999, 2), "1,1,48,48,1", "2,2304", "1,0"])
def test_bad_input_shape_names_the_parameter(bad) -> None:
    with pytest.raises(BadInputError, match="input_shape") as err:
        parse_input_shape(bad)
    assert err.value.params == ("input_shape",) and "--" not in str(err.value)


def test_arch_args_json_and_errors() -> None:
    assert ExportOptions.build(arch_args='{"num_classes": 7}').arch_args == {"num_classes": 7}
    assert ExportOptions.build(arch_args="[1, 7]").arch_args == [1, 7]
    assert ExportOptions.build(arch_args={"c": 3}).arch_args == {"c": 3}
    with pytest.raises(BadInputError, match="`arch_args` is not valid JSON"):
        ExportOptions.build(arch_args="{num_classes: 7}")
    with pytest.raises(BadInputError, match="`arch_args` must be a JSON object"):
        ExportOptions.build(arch_args="7")


def test_arch_forms(tmp_path: Path) -> None:
    model_py = tmp_path / "model.py"
    model_py.write_text("class Net: pass\n")
    arch_json = tmp_path / "arch.json"
    arch_json.write_text("{}")
    assert ExportOptions.build(arch=f"{model_py}:Net").arch == f"{model_py.resolve()}:Net"
    assert ExportOptions.build(arch=f"{model_py}:Net").arch_files == [model_py.resolve()]
    assert ExportOptions.build(arch=arch_json).arch == str(arch_json.resolve())
    assert ExportOptions.build(arch="torchvision.models:resnet18").arch_files == []
    with pytest.raises(BadInputError, match="is not a file"):
        ExportOptions.build(arch=f"{tmp_path / 'missing.py'}:Net")
    with pytest.raises(BadInputError, match="no such file"):
        ExportOptions.build(arch=tmp_path / "missing.json")
    with pytest.raises(BadInputError, match="neither a file or folder nor MODULE:CLASS"):
        ExportOptions.build(arch="resnet")
    # the student's code without a class name (searched), and a folder of it, with or without one
    assert ExportOptions.build(arch=model_py).arch == str(model_py.resolve())
    assert ExportOptions.build(arch=tmp_path).arch_files == [model_py.resolve()]
    assert ExportOptions.build(arch=f"{tmp_path}:Net").arch == f"{tmp_path.resolve()}:Net"
    assert ExportOptions.build(arch=f"{tmp_path}:Net").arch_files == [model_py.resolve()]


def test_preprocessing_labels_layout() -> None:
    opts = ExportOptions.build(scale=2 / 255, mean="0.5,0.4,0.3", std=0.5, labels="fer2013", layout="nhwc")
    assert opts.mean == (0.5, 0.4, 0.3) and opts.std == (0.5,) and opts.layout == "NHWC"
    assert opts.labels is not None and opts.labels[0] == "Angry" and len(opts.labels) == 7
    for bad in ({"std": 0}, {"scale": -1}, {"mean": "a,b"}, {"layout": "CHW"}, {"labels": "cat"}):
        with pytest.raises(BadInputError):
            ExportOptions.build(**bad)


def test_unknown_option_is_a_clean_error() -> None:
    with pytest.raises(BadInputError, match="unknown export option.*input_size"):
        ExportOptions.build(input_size=48)


def test_json_round_trip() -> None:
    opts = ExportOptions.build(input_shape="1,1,28,28", labels="a,b", mean=0.1, trust=True, arch_args={"k": [1, 2]})
    assert ExportOptions.from_json(opts.to_json()) == opts
