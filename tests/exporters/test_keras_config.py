"""Keras model configs read as JSON, before anything is deserialised: Lambda and custom layers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from onnxplain.engine.errors import BadInputError, UnsupportedModelError
from onnxplain.exporters.keras_config import (
    check_config, is_keras3_config, layer_configs, parse_config, read_arch_file,
)

BUILTIN = {"Sequential", "Model", "Functional", "InputLayer", "Conv2D", "Dense", "Flatten", "Lambda", "TimeDistributed"}


def known(layer: dict) -> bool:
    return layer.get("class_name") in BUILTIN


def layer(cls: str, name: str, **config) -> dict:
    return {"class_name": cls, "config": {"name": name, **config}}


def nested_config(inner_layer: dict) -> dict:
    """A functional model holding a Sequential that holds a TimeDistributed wrapper around `inner_layer`."""
    wrapper = {"class_name": "TimeDistributed", "config": {"name": "td", "layer": inner_layer}}
    sub = {"class_name": "Sequential", "config": {"name": "sub", "layers": [layer("Conv2D", "c1"), wrapper]}}
    return {"class_name": "Model", "config": {"name": "m", "layers": [layer("InputLayer", "in"), sub]}}


def test_layer_configs_walks_nested_models_and_wrappers() -> None:
    names = [c["config"]["name"] for c in layer_configs(nested_config(layer("Dense", "deep")))]
    assert names == ["m", "in", "sub", "c1", "td", "deep"]


def test_keras_2_0_sequential_list_config() -> None:
    """Keras <= 2.1 stored a Sequential's config as the bare list of layers."""
    config = {"class_name": "Sequential", "config": [layer("Conv2D", "c"), layer("Lambda", "l")]}
    with pytest.raises(UnsupportedModelError, match="Lambda layer.*'l'.*trust=True"):
        check_config(config, trust=False, what="old.h5", known=known)


def test_deeply_nested_lambda_is_found() -> None:
    config = nested_config(layer("Lambda", "sneaky", function=["4wEAAAAA", None, None]))
    with pytest.raises(UnsupportedModelError, match="sneaky"):
        check_config(config, trust=False, what="m.h5", known=known)
    check_config(config, trust=True, what="m.h5", known=known)  # trusted: allowed through


def test_custom_layer_is_named() -> None:
    config = nested_config(layer("AttentionBlock", "att"))
    with pytest.raises(UnsupportedModelError, match="AttentionBlock.*does not provide"):
        check_config(config, trust=False, what="m.h5", known=known)


def test_parse_config_errors_are_one_line() -> None:
    with pytest.raises(UnsupportedModelError, match="not valid JSON"):
        parse_config(b"{not json", "m.h5")
    with pytest.raises(UnsupportedModelError, match="no Keras model config"):
        parse_config("[1, 2]", "m.h5")


def test_keras3_detection() -> None:
    assert is_keras3_config({"class_name": "Sequential", "keras_version": "3.4.1", "config": {}})
    assert not is_keras3_config({"class_name": "Sequential", "config": {}}, "2.4.0")
    k3 = {"class_name": "Sequential", "config": {"layers": [layer("InputLayer", "i", batch_shape=[None, 8, 8, 1])]}}
    k2 = {"class_name": "Sequential", "config": {"layers": [layer("InputLayer", "i", batch_input_shape=[None, 8])]}}
    assert is_keras3_config(k3) and not is_keras3_config(k2)


def test_arch_file_json_and_yaml(tmp_path: Path) -> None:
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [layer("Dense", "d", units=3)]}}
    (tmp_path / "a.json").write_text(json.dumps(config))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(config))
    assert read_arch_file(tmp_path / "a.json") == config == read_arch_file(tmp_path / "a.yaml")
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    (tmp_path / "bad.json").write_text("{")
    for bad in ("bad.yaml", "bad.json"):
        with pytest.raises(BadInputError, match="`arch`"):
            read_arch_file(tmp_path / bad)
