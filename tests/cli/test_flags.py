"""Engine errors name API parameters; the CLI prints them as its flags (cli/flags.py)."""
from __future__ import annotations

import numpy as np
import pytest

from onnxplain.cli.flags import PARAM_FLAGS, flag_message
from onnxplain.engine import BadInputError, Model, explain
from onnxplain.engine.input_spec import InputSpec
from tests.cli.helpers import assert_user_error, invoke
from tests.engine.test_input_spec import graph_with_input


@pytest.mark.parametrize("message, params, printed", [
    ("`per_class` must be at least 1, got 0", ("per_class",), "--per-class must be at least 1, got 0"),
    ('device="cuda" was asked for; use device="cpu"', ("device",), "--device cuda was asked for; use --device cpu"),
    ('pass input_shape="1,C,H,W" (or "1,H,W,C")', ("input_shape",), 'pass --input-shape 1,C,H,W (or "1,H,W,C")'),
    ("2 `layers` for 1 models", ("layers",), "2 --layer for 1 models"),
    ("`std` must not contain 0", (), "`std` must not contain 0"),  # names no parameter: printed as it is
    ("pass trust=True only if you trust the file", ("trust",), "pass --trust only if you trust the file"),
    ("arch='m.py:Net': cannot import m", ("arch",), "--arch m.py:Net: cannot import m"),
    ("`history` files: history=\"loss=a.npy\"", ("history",), "--history files: --history loss=a.npy"),
])
def test_flag_message_writes_parameters_as_flags(message: str, params: tuple, printed: str) -> None:
    assert flag_message(BadInputError(message, params=params)) == printed


def test_engine_errors_name_what_a_python_caller_typed(tiny_onnx) -> None:
    with pytest.raises(BadInputError) as err:
        InputSpec.from_onnx(graph_with_input(["n", 3, 32, 3]))
    assert 'layout="NCHW"' in str(err.value) and "--" not in str(err.value) and err.value.params == ("layout",)
    with pytest.raises(BadInputError) as err:
        explain(Model(tiny_onnx()), [np.zeros((16, 16), np.uint8)], "ig", tolerance=0)
    assert "`tolerance`" in str(err.value) and "--" not in str(err.value)
    assert {"per_class", "device", "input_shape", "layout", "std", "tolerance"} <= set(PARAM_FLAGS)


def test_the_cli_prints_its_flags(tiny_onnx) -> None:
    assert_user_error(invoke("inspect", tiny_onnx(), "--std", "0"), "--std must not contain 0")
