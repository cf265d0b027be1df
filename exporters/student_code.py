"""The model classes in a student's scripts, read with `ast` and rebuilt without running the rest.

Students hand in one `train.py` that imports pandas, parses arguments and trains at module level, with
the model class somewhere in the middle. Importing it would run all of that. Here each file is parsed
(never executed) and a class is rebuilt from its own definition plus only the top-level statements it
needs: the imports, helper classes and functions, and constants its code refers to, found by following
free names (`symtable`) from the class outwards, also into the student's other files when it imports
from them (`from layers import Block`). A training loop, `argparse` or `pd.read_csv` that the class does
not refer to is never part of it.

Reading is safe anywhere (the parent process lists candidates for error messages); `build_namespace`
executes the selected statements, so it is called only in the export child and only with `--trust`.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import symtable
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from onnxplain.engine.errors import BadInputError

MAX_FILES = 200
SOURCE_SUFFIXES = (".py", ".ipynb")  # students hand in scripts and notebooks
MAX_DEPTH = 3
MAX_FILE_BYTES = 2 * 1024 * 1024
_SKIP_DIRS = frozenset({".git", ".venv", "venv", "env", "site-packages", "__pycache__", "node_modules", ".ipynb_checkpoints"})
# Base classes (their last dotted name) that make a class a torch module even before it is built.
_MODULE_BASES = frozenset({"Module", "Sequential", "ModuleList", "ModuleDict"})
# A library's model class as a base (`class MyNet(torchvision.models.ResNet)`), forward inherited.
_LIBRARY_MODELS = ("torchvision.", "models.", "timm.")


@dataclass(frozen=True)
class StudentFile:
    path: Path
    tree: ast.Module | None
    error: str = ""          # why the file could not be parsed (Python 2 syntax, not UTF-8...)


@dataclass(frozen=True)
class ModelClass:
    """A candidate model class: where it is and a fingerprint of its definition (to merge copies)."""

    name: str
    path: Path
    line: int
    fingerprint: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.path.name}:{self.line})"


def python_files(target: str | Path) -> list[Path]:
    """The code files (.py, .ipynb) of `target`: itself when a file, else those of the folder and its subfolders
    down to MAX_DEPTH (virtual envs, caches and hidden folders left out), at most MAX_FILES."""
    path = Path(target)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BadInputError(f"{path}: no such file or folder of Python code")
    found: list[Path] = []
    for folder, dirs, names in os.walk(path):
        depth = len(Path(folder).relative_to(path).parts)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".") and depth < MAX_DEPTH)
        found.extend(Path(folder) / n for n in sorted(names) if n.lower().endswith(SOURCE_SUFFIXES))
        if len(found) >= MAX_FILES:
            break
    return sorted(found)[:MAX_FILES]


def files_in(folder: str | Path) -> list[Path]:
    """The code files (.py, .ipynb) directly in `folder`, sorted: what sits beside a weights file."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in SOURCE_SUFFIXES)


def source_text(path: Path) -> str:
    """A student's code as Python text: a .py file as it is, a notebook's code cells one after another
    (IPython magics and shell lines blanked, so line numbers within a cell hold)."""
    text = path.read_bytes()[:MAX_FILE_BYTES].decode("utf-8-sig")
    if path.suffix.lower() != ".ipynb":
        return text
    try:
        cells = json.loads(text).get("cells", [])
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{path.name} is not a readable notebook") from exc
    chunks = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        lines = ("".join(source) if isinstance(source, list) else str(source)).splitlines()
        if lines and lines[0].lstrip().startswith("%%"):
            continue  # a cell magic (%%time, %%bash): not Python
        chunks.append("\n".join("" if line.lstrip().startswith(("%", "!", "?")) else line for line in lines))
    return "\n\n".join(chunks)


def read_files(paths: Iterable[Path]) -> list[StudentFile]:
    out = []
    for path in paths:
        try:
            out.append(StudentFile(path, ast.parse(source_text(path), filename=str(path))))
        except SyntaxError as exc:
            out.append(StudentFile(path, None, f"{path.name} line {exc.lineno}: {exc.msg} (Python 2 code?)"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            out.append(StudentFile(path, None, f"{path.name}: {type(exc).__name__}"))
    return out


def model_classes(files: Sequence[StudentFile]) -> list[ModelClass]:
    """Top-level classes that look like torch modules: a base named Module/Sequential/..., a library's
    model class, a base that is itself such a class of the student's, or a `forward` method. Identical copies in several files count
    once (the first)."""
    defs = [(f, node) for f in files if f.tree for node in f.tree.body if isinstance(node, ast.ClassDef)]
    module_names: set[str] = set()
    changed = True
    while changed:  # a class deriving from the student's own module class is one too
        changed = False
        for _, node in defs:
            if node.name in module_names:
                continue
            bases = {_last_name(b) for b in node.bases}
            library = any(ast.unparse(b).startswith(_LIBRARY_MODELS) for b in node.bases)
            has_forward = any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "forward"
                              for n in node.body)
            if has_forward or library or bases & _MODULE_BASES or bases & module_names:
                module_names.add(node.name)
                changed = True
    out: list[ModelClass] = []
    seen: set[tuple[str, str]] = set()
    for f, node in defs:
        if node.name not in module_names:
            continue
        fingerprint = hashlib.sha256(ast.dump(node, annotate_fields=False).encode()).hexdigest()[:16]
        if (node.name, fingerprint) in seen:
            continue
        seen.add((node.name, fingerprint))
        out.append(ModelClass(node.name, f.path, node.lineno, fingerprint))
    return out


def describe(files: Sequence[StudentFile], classes: Sequence[ModelClass]) -> str:
    """`model.py, train.py (classes Net, ConvNet)` for messages."""
    names = ", ".join(sorted({f.path.name for f in files})) or "no .py files"
    listed = ", ".join(c.name for c in classes[:8]) + (", ..." if len(classes) > 8 else "")
    return f"{names} ({'classes ' + listed if classes else 'no torch.nn.Module class'})"


# ----------------------------------------------------------------------------- what a class needs
def _last_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return _last_name(node.func)
    return ""


def _is_main_guard(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":` (either side)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)


def _bound_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds in the module."""
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return {node.name}
    if isinstance(node, ast.Import):
        return {(a.asname or a.name.split(".")[0]) for a in node.names}
    if isinstance(node, ast.ImportFrom):
        return {(a.asname or a.name) for a in node.names if a.name != "*"}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    if isinstance(node, (ast.If, ast.Try, ast.With)) and not _is_main_guard(node):
        out: set[str] = set()
        for child in _child_statements(node):
            out |= _bound_names(child)
        return out
    return set()


def _child_statements(node: ast.stmt) -> Iterator[ast.stmt]:
    for field in ("body", "orelse", "finalbody"):
        yield from getattr(node, field, [])
    for handler in getattr(node, "handlers", []):
        yield from handler.body


def _free_names(node: ast.stmt) -> set[str]:
    """Module-level names the statement reads when it runs (and, for a def or class, when it is called)."""
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        try:
            table = symtable.symtable(ast.unparse(node), "<student>", "exec")
        except (SyntaxError, RecursionError, ValueError):
            return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        out: set[str] = set()
        stack = [table]
        while stack:
            t = stack.pop()
            out |= {s.get_name() for s in t.get_symbols() if s.is_global() and s.is_referenced()}
            stack.extend(t.get_children())
        return out - {node.name}
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _variables(body: Sequence[ast.stmt]) -> set[str]:
    """Names the module assigns a value to (not imports, defs or classes)."""
    return {n for node in body if isinstance(node, (ast.Assign, ast.AnnAssign)) for n in _bound_names(node)}


def _configures(node: ast.stmt) -> str | None:
    """`parser.add_argument(...)`: the variable a bare method-call statement works on, else None."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return None
    target = node.value.func
    while isinstance(target, (ast.Attribute, ast.Call, ast.Subscript)):
        target = target.func if isinstance(target, ast.Call) else target.value
    return target.id if isinstance(target, ast.Name) and isinstance(node.value.func, ast.Attribute) else None


def _local_module(node: ast.ImportFrom, by_stem: dict[str, StudentFile]) -> StudentFile | None:
    """The student's own file a `from X import Y` names (`from layers import Block`, `from .layers ...`)."""
    if not node.module:
        return None
    return by_stem.get(node.module.split(".")[-1])


@dataclass
class _Part:
    """The statements of one file that a class needs, and names it takes from the student's other files."""

    file: StudentFile
    statements: list[ast.stmt]
    imports: dict[str, tuple[Path, str]]   # local name -> (other file, name there)


def _plan(files: Sequence[StudentFile], path: Path, name: str) -> list[_Part]:
    """The parts to run, dependencies first, to define `name` of `path`."""
    by_path = {f.path: f for f in files if f.tree}
    by_stem = {f.path.stem: f for f in files if f.tree}
    needed: dict[Path, set[str]] = {}
    order: list[Path] = []
    work = [(path, name)]
    while work:
        file_path, wanted = work.pop()
        names = needed.setdefault(file_path, set())
        if file_path not in order:
            order.append(file_path)
        if wanted in names:
            continue
        names.add(wanted)
        body = by_path[file_path].tree.body  # type: ignore[union-attr]
        variables = _variables(body)
        for node in body:
            if wanted in variables and _configures(node) == wanted:  # parser.add_argument(...) sets up `parser`
                work.extend((file_path, n) for n in _free_names(node))
                continue
            if wanted not in _bound_names(node):
                continue
            if isinstance(node, ast.ImportFrom) and _local_module(node, by_stem) is not None:
                other = _local_module(node, by_stem)
                for alias in node.names:
                    if (alias.asname or alias.name) == wanted:
                        work.append((other.path, alias.name))  # type: ignore[union-attr]
                continue
            work.extend((file_path, n) for n in _free_names(node))
    parts = []
    for file_path in reversed(order):  # a file's dependencies were discovered after it
        f = by_path[file_path]
        names = needed[file_path]
        statements, imports = [], {}
        variables = _variables(f.tree.body)  # type: ignore[union-attr]
        for node in f.tree.body:  # type: ignore[union-attr]
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                statements.append(node)
                continue
            bound = _bound_names(node)
            if not bound & names and not (_configures(node) in names and _configures(node) in variables):
                continue
            other = _local_module(node, by_stem) if isinstance(node, ast.ImportFrom) else None
            if other is not None:
                for alias in node.names:  # type: ignore[attr-defined]
                    imports[alias.asname or alias.name] = (other.path, alias.name)
                continue
            statements.append(node)
        parts.append(_Part(f, statements, imports))
    return parts


def class_source(files: Sequence[StudentFile], cls: ModelClass) -> str:
    """The code that will run to define `cls`, for logs and tests."""
    return "\n\n".join(f"# {p.file.path.name}\n" + "\n".join(ast.unparse(s) for s in p.statements)
                       for p in _plan(files, cls.path, cls.name))


def build_class(files: Sequence[StudentFile], cls: ModelClass) -> type:
    """Execute only what `cls` needs and return the class object (export child, --trust only).

    Each file's part runs in a module of its own (registered in sys.modules, so pickling and
    dataclasses find it), with the original file name and line numbers for tracebacks."""
    namespaces: dict[Path, types.ModuleType] = {}
    argv, sys.argv = sys.argv, [str(cls.path)]  # argparse in the student's code: its defaults, not our argv
    try:
        _run_parts(_plan(files, cls.path, cls.name), cls, namespaces)
    finally:
        sys.argv = argv
    obj = getattr(namespaces[cls.path], cls.name, None)
    if not isinstance(obj, type):
        raise BadInputError(f"{cls.label} did not define a class when rebuilt")
    return obj


def _run_parts(parts: list[_Part], cls: ModelClass, namespaces: dict[Path, types.ModuleType]) -> None:
    for part in parts:
        digest = hashlib.sha256(str(part.file.path.resolve()).encode() + cls.fingerprint.encode()).hexdigest()[:12]
        module = types.ModuleType(f"onnxplain_student_{part.file.path.stem}_{digest}")
        module.__file__ = str(part.file.path)
        for local, (other, original) in part.imports.items():
            source = namespaces.get(other)
            if source is not None and hasattr(source, original):
                setattr(module, local, getattr(source, original))
        sys.modules[module.__name__] = module
        code = compile(ast.Module(body=part.statements, type_ignores=[]), str(part.file.path), "exec")
        exec(code, module.__dict__)  # noqa: S102 - the user passed --trust; only the class and what it uses
        namespaces[part.file.path] = module
