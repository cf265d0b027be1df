"""The import layers of pyproject.toml ([tool.importlinter]): kept, and covering every engine module."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]

pytest.importorskip("importlinter")


def layer_modules() -> set[str]:
    (contract,) = [c for c in CONFIG["contracts"] if c["type"] == "layers"]
    names = set()
    for layer in contract["layers"]:
        names |= {m.strip().strip("()") for m in layer.replace("|", ":").split(":")}
    return names


def test_the_layer_contract_is_kept() -> None:
    run = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                          "sys.argv = ['lint-imports']; lint_imports_command()"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "0 broken" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]


def test_every_engine_module_has_a_layer() -> None:
    """A new engine module must be placed in a layer, or the contract would not see what it imports."""
    listed = layer_modules()
    for path in sorted((ROOT / "engine").iterdir()):
        if path.name.startswith(("_", ".")) or not (path.suffix == ".py" or (path / "__init__.py").exists()):
            continue
        name = f"onnxplain.engine.{path.stem}"
        assert name in listed, f"{name} is in no layer of [tool.importlinter] in pyproject.toml"
