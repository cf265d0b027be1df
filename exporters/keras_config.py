"""Reading a Keras model config (JSON) *before* deserialising it: what would loading it run?

A Lambda layer carries marshalled Python bytecode that Keras executes on load; a custom layer
class needs code the file does not hold. Both are found from the JSON alone, so refusing them
never runs anything. Works for Keras 1/2 configs (h5 `model_config`, `model.to_json()`) and
Keras 3 (`config.json` of a `.keras` file).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

from onnxplain.engine.errors import BadInputError, UnsupportedModelError

_CONTAINERS = frozenset({"Sequential", "Model", "Functional"})


def parse_config(text: str | bytes, what: str) -> dict[str, Any]:
    """A model config from JSON text; anything else is an UnsupportedModelError naming `what`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UnsupportedModelError(f"{what} holds a Keras model config that is not valid JSON") from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise UnsupportedModelError(f"{what} holds no Keras model config (expected a JSON object with class_name)")
    return config


def read_arch_file(path: str | Path) -> dict[str, Any]:
    """A `--arch` file: JSON from `model.to_json()`, or YAML from `model.to_yaml()` (Keras < 2.6)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read `arch` {p}: {exc}", params=("arch",)) from exc
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BadInputError(f"`arch` {p} is not valid YAML", params=("arch",)) from exc
        if not isinstance(data, dict) or "class_name" not in data:
            raise BadInputError(f"`arch` {p} holds no Keras model config (expected class_name at the top)",
                                params=("arch",))
        return data
    try:
        return parse_config(text, f"`arch` {p.name}")
    except UnsupportedModelError as exc:
        raise BadInputError(str(exc), params=("arch",)) from exc


def layer_configs(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every layer config in a model config, nested models and wrapped layers included."""
    stack = [config]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if "class_name" in node:
            yield node
        inner = node.get("config")
        children: list[Any] = []
        if isinstance(inner, list):  # Keras <= 2.1 Sequential: config is the list of layers
            children.extend(inner)
        elif isinstance(inner, dict):
            layers = inner.get("layers")
            if isinstance(layers, list):
                children.extend(layers)
            for key in ("layer", "backward_layer", "cell"):
                if isinstance(inner.get(key), dict):
                    children.append(inner[key])
        stack.extend(reversed(children))


def is_keras3_config(config: dict[str, Any], file_version: str = "") -> bool:
    """Written by Keras 3? The version stamp decides (`to_json()` adds one, so do h5 attributes); without
    one, Keras 3's own vocabulary does (dtype policies as objects, `batch_shape` input layers)."""
    version = str(config.get("keras_version") or file_version or "")
    if version:
        return version.startswith("3")
    for layer in layer_configs(config):
        inner = layer.get("config")
        if isinstance(inner, dict) and ("batch_shape" in inner or isinstance(inner.get("dtype"), dict)):
            return True
    return False


def check_config(config: dict[str, Any], *, trust: bool, what: str, known: Callable[[dict[str, Any]], bool]) -> None:
    """Refuse Lambda layers and unknown (custom) layer classes unless the user trusts the file."""
    if trust:
        return
    lambdas = [_layer_name(c) for c in layer_configs(config) if c.get("class_name") == "Lambda"]
    if lambdas:
        raise UnsupportedModelError(
            f"{what} has Lambda layer(s) {', '.join(lambdas[:3])}, which carry Python code that loading would "
            "run; pass trust=True only if you trust the file", params=("trust", "arch"))
    custom = sorted({str(c.get("class_name")) for c in layer_configs(config) if not known(c)})
    if custom:
        raise UnsupportedModelError(
            f"{what} uses layer class(es) {', '.join(custom[:5])} that Keras does not provide (custom code not "
            "stored in the file); pass trust=True to try loading anyway", params=("trust", "arch"))


def is_container(layer: dict[str, Any]) -> bool:
    return layer.get("class_name") in _CONTAINERS


def _layer_name(layer: dict[str, Any]) -> str:
    cfg = layer.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    return repr(name) if name else "(unnamed)"
