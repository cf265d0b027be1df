"""Helpers for the command-line tests: run `onnxplain` in-process with Typer's CliRunner (stdout and
stderr kept apart), check the one-line error contract, write small datasets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from typer.testing import CliRunner, Result

from onnxplain.cli.app import app


def invoke(*args: Any, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def assert_ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def assert_json(result: Result) -> dict[str, Any]:
    """Success, and stdout is exactly one JSON document."""
    assert_ok(result)
    return json.loads(result.stdout)


def assert_user_error(result: Result, *fragments: str) -> str:
    """Exit 2, exactly one stderr line `error: ...` holding every fragment, no traceback, nothing on stdout."""
    assert result.exit_code == 2, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def write_pixel_csv(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    rows = ["label,feature"] + [f"{int(c)},{' '.join(str(int(v)) for v in img.ravel())}"
                                for img, c in zip(images, labels)]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path
