"""Fixtures for the exporter tests: small Keras files built in a separate process (the test process
must never import TensorFlow)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MAKER = Path(__file__).with_name("keras_maker.py")


@pytest.fixture(scope="session")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of generated Keras files (see keras_maker.py), with reference inputs/outputs and names.json."""
    return run_maker(MAKER, tmp_path_factory.mktemp("keras_files"))


def run_maker(maker: Path, out: Path) -> Path:
    """Run a Keras-building script (`python MAKER OUT`) in its own process; its files land in `out`."""
    proc = subprocess.run([sys.executable, str(maker), str(out)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{maker.name} failed:\n{proc.stderr[-3000:]}")
    return out


@pytest.fixture(scope="session")
def keras_names(keras_files: Path) -> dict[str, list[str]]:
    return json.loads((keras_files / "names.json").read_text())

