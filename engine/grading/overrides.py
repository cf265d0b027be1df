"""Per-student settings for `grade --overrides FILE`, where inference cannot reach.

A CSV with an `id` column, or a TOML file with one table per student id:

    id,class,arch_args,input_shape,weights_key,scale,mean,std,labels
    alice,ConvNet,"{""num_type"": 11}",1x3x224x224,,,0.485,0.229,food11

    [alice]
    class = "ConvNet"
    arch_args = {num_type = 11}
    input_shape = "1,3,224,224"

Every column is optional but `id`; an empty cell means "infer it as usual". Values are checked here,
with the same rules as the export flags, so a typo is one error before any grading starts.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Mapping

from ..errors import BadInputError

# column -> export() keyword it sets (class is turned into the arch's class name)
COLUMNS = ("class", "arch_args", "input_shape", "weights_key", "scale", "mean", "std", "labels")


def read_overrides(path: str | Path) -> dict[str, dict[str, Any]]:
    """{student id: {column: value}} with only the columns given for that student."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"`overrides` {p}: no such file", params=("overrides",))
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read `overrides` {p}: {exc}", params=("overrides",)) from exc
    raw = _read_toml(text, p) if p.suffix.lower() == ".toml" else _read_csv(text, p)
    out: dict[str, dict[str, Any]] = {}
    for ident, row in raw.items():
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise BadInputError(f"`overrides` {p.name}: unknown column(s) {', '.join(unknown)} for {ident!r}; "
                                f"known: id, {', '.join(COLUMNS)}", params=("overrides",))
        values = {k: v for k, v in row.items() if v not in (None, "")}
        _check(values, ident, p.name)
        out[ident] = values
    return out


def export_settings(override: Mapping[str, Any]) -> dict[str, Any]:
    """The export() keywords one student's row sets (its `class` becomes part of the arch)."""
    return {k: v for k, v in override.items() if k != "class"}


def _read_csv(text: str, path: Path) -> dict[str, dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "id" not in [f.strip() for f in reader.fieldnames]:
        raise BadInputError(f"`overrides` {path.name} needs a header row with an `id` column", params=("overrides",))
    out: dict[str, dict[str, Any]] = {}
    for line, row in enumerate(reader, start=2):
        clean = {str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None}
        ident = clean.pop("id", "")
        if not ident:
            raise BadInputError(f"`overrides` {path.name} line {line}: the id is empty", params=("overrides",))
        if ident in out:
            raise BadInputError(f"`overrides` {path.name} line {line}: {ident!r} appears twice", params=("overrides",))
        out[ident] = clean
    return out


def _read_toml(text: str, path: Path) -> dict[str, dict[str, Any]]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"`overrides` {path.name} is not valid TOML ({exc})", params=("overrides",)) from exc
    bad = [k for k, v in data.items() if not isinstance(v, dict)]
    if bad:
        raise BadInputError(f"`overrides` {path.name}: {bad[0]!r} is not a table; write [{bad[0]}] and its settings",
                            params=("overrides",))
    return {str(k): dict(v) for k, v in data.items()}


def _check(values: dict[str, Any], ident: str, name: str) -> None:
    """The export flags' own checks, so a bad cell is caught before grading starts."""
    from onnxplain.exporters.options import ExportOptions

    if isinstance(values.get("arch_args"), str):
        try:
            values["arch_args"] = json.loads(values["arch_args"])
        except json.JSONDecodeError as exc:
            raise BadInputError(f"`overrides` {name}: arch_args of {ident!r} is not JSON ({exc.msg})",
                                params=("overrides",)) from exc
    if "class" in values and not str(values["class"]).isidentifier():
        raise BadInputError(f"`overrides` {name}: class of {ident!r} must be a class name, not {values['class']!r}",
                            params=("overrides",))
    try:
        ExportOptions.build(**export_settings(values))
    except BadInputError as exc:
        raise BadInputError(f"`overrides` {name}, {ident!r}: {exc}", params=("overrides",)) from exc
