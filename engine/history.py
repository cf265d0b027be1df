"""Training histories as students keep them, read into one shape: a list of per-epoch records
`[{"epoch": 1, "loss": 0.9, "accuracy": 0.6, ...}, ...]` (what the report's training curves draw).

Read: a Keras `CSVLogger` CSV (its epochs count from 0 and are shifted to count from 1, as Keras
prints "Epoch 1/10"), any CSV or JSON table with an `epoch` column, a JSON or pickled
`History.history` dict (`{"loss": [...], "val_accuracy": [...]}`), and `.npy` files of per-epoch
values, one per metric, named `loss=a.npy,acc=b.npy`. Pickles are read with an unpickler that
resolves no globals at all, so only plain dicts, lists, strings and numbers can come out of one:
a pickle holding anything else (numpy scalars, a History object) is refused, never executed.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

from .errors import BadInputError

History = list[dict[str, float]]
SUFFIXES = (".csv", ".json", ".pkl", ".pickle", ".npy")



def _bad(message: str) -> BadInputError:
    """A history error; it names the parameter `history` (the CLI's --history)."""
    return BadInputError(message, params=("history",))

def read_history(spec: str | os.PathLike[str]) -> History:
    """One history from a file, or from `name=file.npy,...` pairs (one `.npy` per metric)."""
    text = str(spec)
    if "=" in text and not Path(text).exists():
        return _from_npy_pairs(text)
    path = Path(text)
    if not path.is_file():
        raise _bad(f"`history` {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _from_table(_read_csv(path), path)
    if suffix == ".json":
        return _from_json(path)
    if suffix in (".pkl", ".pickle"):
        return _from_columns(_read_pickle(path), path, epoch_key=None)
    if suffix == ".npy":
        raise _bad(f'`history` {path}: name the metric of a .npy file, e.g. history="loss={path}"')
    raise _bad(f"`history` {path}: unknown format {suffix or '(no suffix)'}; give a Keras CSVLogger CSV, "
                        "a JSON or pickled History.history dict, a CSV/JSON table with an epoch column, or "
                        "loss=a.npy,accuracy=b.npy")


def read_histories(specs: Sequence[str] | None, count: int) -> list[History | None]:
    """`--history` given once per model, in order (fewer than models: the rest have none)."""
    given = list(specs or [])
    if len(given) > count:
        raise _bad(f"{len(given)} `history` files for {count} models; give at most one per model, in order")
    return [read_history(s) for s in given] + [None] * (count - len(given))


# ---------------------------------------------------------------------------- formats
def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _bad(f"`history` {path}: not a readable CSV file ({exc})") from exc


def _from_json(path: Path) -> History:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"`history` {path}: not valid JSON ({exc})") from exc
    if isinstance(data, list):
        return _from_table(data, path)
    if isinstance(data, dict) and isinstance(data.get("history"), dict):
        data = data["history"]  # {"history": History.history, "params": ...}, as some students dump it
    if isinstance(data, dict):
        return _from_columns(data, path, epoch_key="epoch" if "epoch" in data else None)
    raise _bad(f"`history` {path}: JSON holds a {type(data).__name__}, not a History.history dict "
                        "or a list of per-epoch records")


class _NoGlobals(pickle.Unpickler):
    """Builds only what the pickle protocol makes without globals: dicts, lists, tuples, str, numbers."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"it refers to {module}.{name}")


def _read_pickle(path: Path) -> dict[str, Any]:
    try:
        data = _NoGlobals(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError, RecursionError, OSError) as exc:
        raise _bad(f"`history` {path}: refused: only a pickled dict of plain lists of numbers is read "
                            f"({exc}); save history.history with json.dump instead") from exc
    if not isinstance(data, dict):
        raise _bad(f"`history` {path}: the pickle holds a {type(data).__name__}, not a History.history dict")
    return data


def _from_npy_pairs(text: str) -> History:
    import numpy as np

    columns: dict[str, Any] = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, sep, file = part.partition("=")
        if not sep or not name.strip() or not file.strip():
            raise _bad(f"`history` {text}: expected name=file.npy pairs separated by commas, got {part!r}")
        path = Path(file.strip())
        if path.suffix.lower() != ".npy" or not path.is_file():
            raise _bad(f"`history` {part}: {path} is not an existing .npy file")
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _bad(f"`history` {part}: not a readable .npy array ({exc})") from exc
        if values.ndim != 1 or values.dtype.kind not in "iuf":
            raise _bad(f"`history` {part}: needs a 1-D array of numbers (one per epoch), "
                                f"got {values.dtype} of shape {values.shape}")
        columns[name.strip()] = values.tolist()
    return _from_columns(columns, Path(text), epoch_key=None)


# ---------------------------------------------------------------------------- into one shape
def _from_table(records: list[Any], path: Path) -> History:
    if not records or not all(isinstance(r, dict) for r in records):
        raise _bad(f"`history` {path}: needs one record per epoch, found none")
    keys = list(records[0])
    if "epoch" not in keys:
        raise _bad(f"`history` {path}: a table needs an epoch column; its columns are {', '.join(keys)}")
    columns = {k: [r.get(k) for r in records] for k in keys}
    return _from_columns(columns, path, epoch_key="epoch")


def _from_columns(columns: dict[Any, Any], path: Path, *, epoch_key: str | None) -> History:
    metrics = {str(k): v for k, v in columns.items() if k != epoch_key}
    if not metrics:
        raise _bad(f"`history` {path}: holds no metrics (only {epoch_key or 'nothing'})")
    lengths = set()
    values: dict[str, list[float]] = {}
    for key, col in metrics.items():
        if not isinstance(col, (list, tuple)):
            raise _bad(f"`history` {path}: {key!r} is a {type(col).__name__}, not a list of per-epoch values")
        values[key] = [_number(v, key, path) for v in col]
        lengths.add(len(col))
    if len(lengths) != 1 or 0 in lengths:
        raise _bad(f"`history` {path}: metrics have different numbers of epochs ({sorted(lengths)})")
    n = lengths.pop()
    epochs = [int(_number(e, "epoch", path)) for e in columns[epoch_key]] if epoch_key else list(range(1, n + 1))
    if epoch_key and epochs and epochs[0] == 0:
        epochs = [e + 1 for e in epochs]  # Keras' CSVLogger counts from 0; Keras prints Epoch 1/N
    return [{"epoch": epochs[i], **{k: v[i] for k, v in values.items()}} for i in range(n)]


def _number(value: Any, key: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _bad(f"`history` {path}: {key!r} holds {type(value).__name__} values, not numbers")
    try:
        number = float(value)
    except ValueError as exc:
        raise _bad(f"`history` {path}: {key!r} holds {value!r}, not a number") from exc
    if math.isinf(number):
        raise _bad(f"`history` {path}: {key!r} holds an infinite value")
    return number
