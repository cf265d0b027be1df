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
    out = tmp_path_factory.mktemp("keras_files")
    proc = subprocess.run([sys.executable, str(MAKER), str(out)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"keras_maker.py failed:\n{proc.stderr[-3000:]}")
    return out


@pytest.fixture(scope="session")
def keras_names(keras_files: Path) -> dict[str, list[str]]:
    return json.loads((keras_files / "names.json").read_text())

