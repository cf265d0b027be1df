"""The command-line contract: exit codes, one-line errors, --debug, --json purity, progress on stderr."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from onnxplain.cli import loading
from onnxplain.cli.app import app
from onnxplain.cli.progress import ProgressBars
from onnxplain.engine.errors import BadInputError
from tests.cli.helpers import assert_json, assert_ok, assert_user_error, invoke

COMMANDS = ("export", "inspect", "explain", "filters", "activations", "dream", "evaluate", "report", "demo")


def test_help_lists_every_command() -> None:
    result = assert_ok(invoke("--help"))
    for name in COMMANDS:
        assert name in result.stdout
    for name in COMMANDS:
        assert_ok(invoke(name, "--help"))


def test_no_arguments_shows_help_and_exits_2() -> None:
    result = invoke()
    assert result.exit_code == 2
    assert "Usage" in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_version() -> None:
    from importlib import metadata

    assert assert_ok(invoke("--version")).stdout.strip() == f"onnxplain {metadata.version('onnxplain')}"


@pytest.mark.parametrize(
    "args",
    [
        ("inspect", "{missing}"),
        ("export", "{missing}"),
        ("explain", "{missing}", "{png}"),
        ("filters", "{missing}"),
        ("activations", "{missing}", "{png}"),
        ("dream", "{missing}", "{png}"),
        ("evaluate", "{missing}", "--data", "{csv}"),
        ("report", "{missing}", "--data", "{csv}"),
    ],
)
def test_missing_model_file_is_one_line_error(args: tuple[str, ...], tmp_path: Path, tiny_data) -> None:
    values = {"missing": tmp_path / "nope.onnx", "png": tiny_data["png"], "csv": tiny_data["csv"]}
    result = invoke(*(a.format(**values) for a in args))
    assert_user_error(result, "nope.onnx", "no such file")


def test_unknown_command_and_bad_option_values_are_usage_errors(tiny_onnx) -> None:
    assert_user_error(invoke("frobnicate"), "No such command 'frobnicate'")
    assert_user_error(invoke("inspect", tiny_onnx(), "--device", "gpu"), "--device", "gpu")
    assert_user_error(invoke("explain", tiny_onnx(), "x.png", "--samples", "many"), "--samples")
    assert_user_error(invoke("inspect"), "Missing argument")


def test_device_takes_a_gpu_index_and_any_case(monkeypatch, tiny_onnx) -> None:
    """`--device cuda:N` reaches the engine as that device (its own one-line error on a machine without
    that GPU); `CPU` is cpu; other forms are usage errors."""
    import onnxplain.engine.model as model_module

    seen = []

    def model(path, device, **kwargs):
        seen.append(device)
        raise BadInputError(f'device="{device}" stops here', params=("device",))

    monkeypatch.setattr(model_module, "Model", model)
    assert_user_error(invoke("inspect", tiny_onnx(), "--device", "cuda:1"), "--device cuda:1 stops here")
    assert_user_error(invoke("inspect", tiny_onnx(), "--device", "CPU"), "--device cpu stops here")
    assert seen == ["cuda:1", "cpu"]
    assert_user_error(invoke("inspect", tiny_onnx(), "--device", "cuda:x"), "--device", "cuda:N")


def test_internal_error_is_one_line_with_a_debug_hint(monkeypatch, tiny_onnx) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("something broke\nover two lines")

    monkeypatch.setattr(loading, "resolve_device", boom)
    result = invoke("inspect", tiny_onnx())
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: internal error: RuntimeError: something broke over two lines")
    assert "--debug" in lines[0] and "ONNXPLAIN_DEBUG=1" in lines[0]
    # --debug (or ONNXPLAIN_DEBUG) lets the exception through, with its traceback.
    for debug in (invoke("--debug", "inspect", tiny_onnx()), invoke("inspect", tiny_onnx(), "--debug"),
                  invoke("inspect", tiny_onnx(), env={"ONNXPLAIN_DEBUG": "1"})):
        assert debug.exit_code == 1 and isinstance(debug.exception, RuntimeError)


def test_user_error_under_debug_is_raised_too(tiny_onnx, tmp_path: Path) -> None:
    from onnxplain.engine.errors import BadInputError

    result = invoke("--debug", "inspect", tmp_path / "nope.onnx")
    assert isinstance(result.exception, BadInputError)


def test_unwritable_output_is_a_user_error(tiny_onnx, tiny_data, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("explain", tiny_onnx(), tiny_data["png"], "--out", blocker / "sub")
    assert_user_error(result, str(blocker))


def test_json_mode_keeps_stdout_clean_of_prints(monkeypatch, tiny_onnx) -> None:
    real = loading.resolve_device

    def chatty(choice: str) -> str:
        print("a library printing to stdout")
        return real(choice)

    monkeypatch.setattr(loading, "resolve_device", chatty)
    result = invoke("inspect", tiny_onnx(), "--json", "--no-parity")
    doc = assert_json(result)
    assert doc["command"] == "inspect" and "a library printing to stdout" in result.stderr
    plain = assert_ok(invoke("inspect", tiny_onnx(), "--no-parity"))
    assert "a library printing to stdout" in plain.stdout  # only --json reroutes it


def test_real_process_json_is_one_document_and_errors_exit_2(tiny_onnx, tmp_path: Path) -> None:
    """Through the console-script entry point, in a real process (fd-level stdout guard included)."""
    exe = [sys.executable, "-m", "onnxplain.cli"]
    done = subprocess.run([*exe, "inspect", str(tiny_onnx()), "--json", "--no-parity"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["classes"] == 4
    bad = tmp_path / "random.onnx"
    bad.write_bytes(bytes(range(256)) * 8)
    failed = subprocess.run([*exe, "inspect", str(bad)], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and failed.stdout == ""
    assert len(failed.stderr.splitlines()) == 1 and failed.stderr.startswith("error: ")


def test_progress_bars_draw_on_a_terminal_and_stay_silent_otherwise() -> None:
    buf = io.StringIO()
    bars = ProgressBars(console=Console(file=buf, force_terminal=True, width=100))
    with bars:
        bars("loading the model", None)
        bars("evaluating 100 images", 0.5)
        bars("evaluating 100 images", 1.0)
    text = buf.getvalue()
    assert "loading the model" in text and "evaluating 100 images" in text and "100%" in text
    quiet = io.StringIO()
    with ProgressBars(enabled=False, console=Console(file=quiet, force_terminal=True)) as off:
        off("loading", 0.5)
    pipe = io.StringIO()
    with ProgressBars(console=Console(file=pipe, force_terminal=False)) as piped:
        piped("loading", 0.5)
    assert quiet.getvalue() == "" and pipe.getvalue() == ""


def test_command_modules_register_through_one_list() -> None:
    from onnxplain.cli import app as app_module
    from typer.main import get_command

    names = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert set(COMMANDS) <= names
    assert all(hasattr(m, "register") for m in app_module.COMMAND_MODULES)
