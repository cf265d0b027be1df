"""What a pickle would import, read with `pickletools` (which decodes opcodes and never executes).

Used to explain a refusal: "this file would build __main__.CNN" says more than torch's
"Unsupported global". Safe on hostile bytes: decoding stops at the first malformed opcode.
"""
from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

# What torch.load(weights_only=True) itself builds: tensors, storages, ordered dicts.
_HARMLESS_PREFIXES = ("torch._utils.", "torch.storage.", "torch._tensor.", "collections.OrderedDict",
                      "torch.serialization.", "torch.nn.parameter.Parameter", "builtins.set", "builtins.frozenset",
                      "__builtin__.set", "_codecs.encode", "torch.device", "torch.Size")
_HARMLESS_SUFFIXES = ("Storage",)  # torch.FloatStorage, torch.HalfStorage, ...
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
                         "BINSTRING", "STRING"})
_NO_PUSH = frozenset({"MARK", "FRAME", "PROTO"})
_MAX_PICKLES = 4  # a legacy torch file is several pickles in a row, then raw storage bytes


def pickle_globals(data: bytes) -> list[str]:
    """`module.name` of every global the pickle(s) in `data` refer to, in order, without duplicates."""
    found: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(_MAX_PICKLES):
        start = stream.tell()
        if start >= len(data):
            break
        try:
            _scan_one(stream, found)
        except Exception:  # malformed or non-pickle bytes: report what was decoded so far
            break
        if stream.tell() == start:
            break
    return list(dict.fromkeys(found))


def _scan_one(stream: io.BytesIO, found: list[str]) -> None:
    memo: dict[int, object] = {}
    recent: list[object] = []
    for opcode, arg, _pos in pickletools.genops(stream):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            found.append(str(arg).replace(" ", "."))
        elif name == "STACK_GLOBAL" and len(recent) >= 2 and all(isinstance(v, str) for v in recent[-2:]):
            found.append(f"{recent[-2]}.{recent[-1]}")
        if name in _STRING_OPS:
            recent.append(arg)
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            if recent:
                memo[int(arg)] = recent[-1]
        elif name == "MEMOIZE":
            if recent:
                memo[len(memo)] = recent[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(int(arg)))
        elif name == "STOP":
            return
        elif name not in _NO_PUSH:
            recent.append(None)  # any other value: keeps STACK_GLOBAL from pairing strings it did not get


def torch_pickle_bytes(path: str | Path) -> bytes:
    """The pickle part of a torch file: `*/data.pkl` inside a zip archive, else the file itself."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
            return zf.read(member) if member else b""
    except zipfile.BadZipFile:
        return p.read_bytes()


def suspicious_globals(names: list[str]) -> list[str]:
    """Globals beyond what a plain state_dict needs: classes and functions unpickling would run."""
    return [n for n in names if not n.startswith(_HARMLESS_PREFIXES) and not n.endswith(_HARMLESS_SUFFIXES)]
