"""The one table from API parameter names to the CLI's flags, for the errors the CLI prints.

Engine and exporter errors name parameters as a Python caller types them, in backticks or with
a value (`per_class` must be..., device="cuda"), and list them in `OnnxplainError.params`;
`flag_message` writes those as the command line's flags (--per-class, --device cuda).
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from onnxplain.engine.errors import OnnxplainError

PARAM_FLAGS = {
    "arch": "--arch",
    "allow_mismatch": "--allow-mismatch",
    "arch_args": "--arch-args",
    "device": "--device",
    "history": "--history",
    "input_shape": "--input-shape",
    "labels": "--labels",
    "layers": "--layer",  # compare: one --layer per model
    "layout": "--layout",
    "memory_gb": "--memory-gb",
    "overrides": "--overrides",
    "per_class": "--per-class",
    "run_ray": "--ray",  # the engine's Ray pool, which grade --ray runs
    "std": "--std",
    "tolerance": "--tolerance",
    "trust": "--trust",
    "weights_key": "--weights-key",
}


def flag_message(exc: OnnxplainError) -> str:
    """The error's message with each parameter it names written as the CLI's flag: `name="value"`
    becomes `--flag value`, `name=True` `--flag`, and the name in backticks `--flag`."""
    return with_flags(str(exc), getattr(exc, "params", ()))


def with_flags(text: str, params: Sequence[str]) -> str:
    """`text` with the API parameters `params` written as flags (see flag_message)."""
    for name in params:
        flag = PARAM_FLAGS.get(name, "--" + name.replace("_", "-"))
        text = re.sub(rf"(?<![\w.-]){re.escape(name)}=(?:\"([^\"]*)\"|'([^']*)'|(\S+?))(?=[\s,;:)]|$)",
                      lambda m: _flag_and_value(flag, next(g for g in m.groups() if g is not None)), text)
        text = text.replace(f"`{name}`", flag)
    return text


def _flag_and_value(flag: str, value: str) -> str:
    """`--flag value`; a switch given as True is the bare flag (`trust=True` is `--trust`)."""
    return flag if value == "True" else f"{flag} {value}"


def grade_row(row: dict[str, Any]) -> dict[str, Any]:
    """A grade row as the CLI shows and writes it: its reason in flags, without the list of names in it."""
    out = {k: v for k, v in row.items() if k != "reason_params"}
    if row.get("reason_params"):
        out["reason"] = with_flags(str(row.get("reason") or ""), row["reason_params"])
    return out
