"""Datasets and INPUTS: the images a grader points onnxplain at.

Datasets (`load_dataset`):
  FER2013 CSV     `label,feature` (also `emotion,pixels[,Usage]`) with space-separated pixels, one
                  image per row; the test form `id,feature` has no labels.
  numeric CSV     one image per row, one pixel per column, the label last (scikit-learn's digits,
                  values 0..16, are scaled to 0..255) or in a column named `label`; `.csv.gz` too.
  ImageFolder     one sub-folder per class (class names from the folder names; folders named
                  0, 1, 2... are class indices).
  Food-11 folder  files `<class>_<index>.jpg` (class = the integer prefix, names from the food11
                  preset); a folder of other images loads without labels.
  `.npz`          arrays `x` (images) and optionally `y` (labels) and `class_names`.
  `.npy`          an image batch, no labels.
  MNIST IDX       `*-images-idx3-ubyte[.gz]` with its `*-labels-idx1-ubyte[.gz]` beside it.
Images stay in pixel convention (uint8 0..255, or floats as stored); the model's InputSpec
does the preprocessing.

INPUTS (`parse_inputs`): image files, `.npy/.npz` arrays, and row selections `DATA:ROWS` such
as `train.csv:0,299,5` or `faces/:0-9` (0-based data rows, ranges inclusive).
"""
from __future__ import annotations

import csv
import gzip
import io
import logging
import re
import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from .errors import BadInputError
from .labels import PRESETS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
_PIXEL_COLUMNS = ("feature", "features", "pixels", "pixel", "image")
_LABEL_COLUMNS = ("label", "labels", "emotion", "class", "target", "y")
_ID_COLUMNS = ("id", "index", "name")
_FOOD11_NAME = re.compile(r"^(\d+)_(\d+)$")
_ROWS = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$")
FORMATS = "a FER2013-style or numeric CSV (.csv/.csv.gz), an ImageFolder or Food-11 folder, .npz (x, y), .npy or an MNIST idx3-ubyte file"


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images in pixel convention, (N, H, W) or (N, H, W, C), with optional int64 labels."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...] | None
    source: str
    ids: tuple[str, ...]
    sizes_vary: bool = False  # a folder of images of several sizes, resized to one

    def __post_init__(self) -> None:
        if self.images.ndim not in (3, 4):
            raise BadInputError(f"{self.source}: images have shape {self.images.shape}; expected (N, H, W) or (N, H, W, C)")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise BadInputError(f"{self.source}: {len(self.labels)} labels for {len(self.images)} images")
        if len(self.ids) != len(self.images):
            raise ValueError(f"{len(self.ids)} ids for {len(self.images)} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_hint(self) -> tuple[int, int, int]:
        """(channels, height, width) of the data as it came, for a model that does not record its input
        size; (channels, 0, 0) when the images came in several sizes."""
        channels = int(self.images.shape[3]) if self.images.ndim == 4 else 1
        if self.sizes_vary:
            return (channels, 0, 0)
        return (channels, int(self.images.shape[1]), int(self.images.shape[2]))

    @property
    def n_classes(self) -> int | None:
        """Number of classes: the class names when known, else 1 + the largest label."""
        if self.class_names:
            return len(self.class_names)
        if self.labels is not None and len(self.labels):
            return int(self.labels.max()) + 1
        return None

    def class_name(self, label: int) -> str:
        if self.class_names and 0 <= label < len(self.class_names):
            return self.class_names[label]
        return str(label)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Dataset":
        idx = np.asarray(indices, dtype=np.int64)
        return replace(
            self, images=self.images[idx], labels=None if self.labels is None else self.labels[idx],
            ids=tuple(self.ids[i] for i in idx),
        )

    def relabel(self, names: Sequence[str]) -> "Dataset":
        """Map labels into the index order of `names` (e.g. a model's labels), matching class names
        case-insensitively; a no-op when the orders already agree or the dataset has no names."""
        names = tuple(names)
        if self.labels is None or not self.class_names or tuple(self.class_names) == names:
            return self
        lowered = [n.lower() for n in names]
        missing = [c for c in self.class_names if c.lower() not in lowered]
        if missing:
            raise BadInputError(
                f"{self.source}: classes {', '.join(missing)} are not among the model's labels "
                f"({', '.join(names)}); pass `labels` with the dataset's class order", params=("labels",)
            )
        mapping = np.array([lowered.index(c.lower()) for c in self.class_names], dtype=np.int64)
        return replace(self, labels=mapping[self.labels], class_names=names)


# ------------------------------------------------------------------------------------ loading
def load_dataset(
    path: str | Path,
    *,
    limit: int | None = None,
    rows: Sequence[int] | None = None,
    size: tuple[int, int] | None = None,
) -> Dataset:
    """Load a dataset. `limit` keeps the first rows, `rows` picks data rows (0-based) in the given
    order, `size` = (height, width) resizes images (needed for folders of mixed sizes)."""
    p = Path(path)
    if limit is not None and limit < 1:
        raise BadInputError(f"limit must be at least 1, got {limit}")
    if not p.exists():
        raise BadInputError(f"{p}: no such file or folder")
    name = p.name.lower()
    if p.is_dir():
        ds = _load_folder(p, limit=limit, rows=rows, size=size)
    elif name.endswith((".csv", ".csv.gz", ".txt")):
        ds = _load_csv(p, limit=limit, rows=rows)
    elif name.endswith(".npz"):
        ds = _load_npz(p)
    elif name.endswith(".npy"):
        arr = _np_load(p)
        ds = Dataset(_image_batch(arr, p), None, None, str(p), tuple(str(i) for i in range(len(arr))))
    elif "idx3-ubyte" in name:
        ds = _load_idx(p)
    else:
        raise BadInputError(f"{p}: not a dataset onnxplain reads; give {FORMATS}")
    if not p.is_dir() and not name.endswith((".csv", ".csv.gz", ".txt")):
        ds = _take(ds, limit=limit, rows=rows)
    if size is not None and tuple(ds.images.shape[1:3]) != tuple(size):
        ds = replace(ds, images=_resize_all(list(ds.images), size))
    if len(ds) == 0:
        raise BadInputError(f"{p}: the dataset holds no images")
    return ds


def _take(ds: Dataset, *, limit: int | None, rows: Sequence[int] | None) -> Dataset:
    if rows is not None:
        _check_rows(rows, len(ds), ds.source)
        return ds.subset(rows)
    if limit is not None and limit < len(ds):
        return ds.subset(np.arange(limit))
    return ds


def _check_rows(rows: Sequence[int], n: int, source: str) -> None:
    bad = [r for r in rows if r < 0 or r >= n]
    if bad:
        raise BadInputError(f"row {bad[0]} is out of range; {source} has {n} rows (0..{n - 1})")


# ------------------------------------------------------------------------------------ CSV
def _read_text(path: Path) -> str:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.lower().endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BadInputError(f"{path}: cannot read it ({exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not a text CSV file (byte {exc.start} is not UTF-8)") from exc


def _csv_records(text: str) -> tuple[list[list[str]], list[int]]:
    """Non-blank CSV records and their line numbers. A plain `str.split` per line (FER2013's
    80 MB file has no quotes); the csv module only where a quote calls for it."""
    if '"' in text:
        reader = csv.reader(io.StringIO(text))
        pairs = [(rec, reader.line_num) for rec in reader if rec and (len(rec) > 1 or rec[0].strip())]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    records: list[list[str]] = []
    line_nos: list[int] = []
    for no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            records.append(line.split(","))
            line_nos.append(no)
    return records, line_nos


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_csv(path: Path, *, limit: int | None, rows: Sequence[int] | None) -> Dataset:
    records, line_nos = _csv_records(_read_text(path))
    if not records:
        raise BadInputError(f"{path}: the CSV file is empty")
    first = records[0]
    has_header = not all(_is_number(f) or _is_pixel_string(f) for f in first)
    header = [h.strip().lower() for h in first] if has_header else None
    body, body_lines = (records[1:], line_nos[1:]) if has_header else (records, line_nos)
    if not body:
        raise BadInputError(f"{path}: the CSV file has a header but no rows")
    pixel_col = _pixel_column(header, body[0])
    # Pixels per image: what most rows of the whole file hold (also when only some rows are read).
    expected = _typical_count(body, pixel_col) if pixel_col is not None else 0
    if rows is not None:
        _check_rows(rows, len(body), str(path))
        body, body_lines = [body[r] for r in rows], [body_lines[r] for r in rows]
        ids = tuple(str(r) for r in rows)
    else:
        if limit is not None:
            body, body_lines = body[:limit], body_lines[:limit]
        ids = tuple(str(i) for i in range(len(body)))
    if pixel_col is not None:
        return _fer_csv(path, header, body, body_lines, pixel_col, expected, ids)
    return _numeric_csv(path, header, body, body_lines, ids)


def _is_pixel_string(field: str) -> bool:
    parts = field.split(None, 2)
    return len(parts) >= 2 and _is_number(parts[0]) and _is_number(parts[1])


def _pixel_column(header: list[str] | None, row: list[str]) -> int | None:
    """The column holding space-separated pixels, or None for a one-pixel-per-column table."""
    if header is not None:
        for name in _PIXEL_COLUMNS:
            if name in header:
                return header.index(name)
    for i, field in enumerate(row):
        if _is_pixel_string(field):
            return i
    return None


def _named_column(header: list[str] | None, names: Iterable[str]) -> int | None:
    if header is None:
        return None
    for name in names:
        if name in header:
            return header.index(name)
    return None


def _pixel_count(field: str) -> int:
    field = field.strip()
    return field.count(" ") + 1 if field else 0


def _typical_count(body: list[list[str]], col: int) -> int:
    counts = np.array([_pixel_count(r[col]) if len(r) > col else 0 for r in body], dtype=np.int64)
    return int(np.bincount(counts).argmax())


def _fer_csv(path: Path, header: list[str] | None, body: list[list[str]], lines: list[int],
             pixel_col: int, expected: int, ids: tuple[str, ...]) -> Dataset:
    width = len(header) if header is not None else len(body[0])
    label_col = _named_column(header, _LABEL_COLUMNS)
    id_col = _named_column(header, _ID_COLUMNS)
    if header is None and width >= 2:
        label_col = 0 if pixel_col != 0 else None
    features: list[str] = []
    counts = np.empty(len(body), dtype=np.int64)
    labels = np.empty(len(body), dtype=np.int64) if label_col is not None else None
    row_ids: list[str] = []
    for j, (record, line) in enumerate(zip(body, lines)):
        if len(record) != width:
            raise BadInputError(f"{path}, line {line}: {len(record)} fields, expected {width}")
        features.append(record[pixel_col].strip())
        counts[j] = _pixel_count(features[-1])
        if labels is not None:
            labels[j] = _parse_label(record[label_col], path, line)
        if id_col is not None:
            row_ids.append(record[id_col].strip())
    pixels = _parse_number_rows(path, features, counts, lines, expected, pixels=True)
    images = _to_images(path, pixels)
    return Dataset(images, labels, _class_names(labels, images, path), str(path), tuple(row_ids) or ids)


def _parse_label(text: str, path: Path, line: int) -> int:
    t = text.strip()
    if not t.lstrip("-").isdigit():
        raise BadInputError(f"{path}, line {line}: label {t!r} is not an integer class index")
    value = int(t)
    if value < 0:
        raise BadInputError(f"{path}, line {line}: label {value} is negative")
    return value


_CHUNK_ROWS = 2048


def _parse_number_rows(path: Path, rows: list[str], counts: np.ndarray, lines: list[int], expected: int, *,
                       pixels: bool) -> np.ndarray:
    """Rows of space-separated numbers -> (N, expected), parsed by numpy a chunk of rows at a time.

    Integers take numpy's fast integer parser; decimals fall back to the float parser. With
    `pixels`, values must lie in 0..255 and integer chunks are stored as uint8. Any irregular
    row is located and named by its line number."""
    if expected == 0:
        raise BadInputError(f"{path}, line {lines[0]}: the pixel field is empty")
    bad = np.flatnonzero(counts != expected)
    if bad.size:
        _raise_bad_row(path, rows[bad[0]:], lines[bad[0]:], expected)
    chunks: list[np.ndarray] = []
    for start in range(0, len(rows), _CHUNK_ROWS):
        part, part_lines = rows[start:start + _CHUNK_ROWS], lines[start:start + _CHUNK_ROWS]
        text = " ".join(part)
        arr = _fromstring(text, np.int64, expected * len(part))
        if arr is None:
            arr = _fromstring(text, np.float64, expected * len(part))
            if arr is None or not np.all(np.isfinite(arr)):
                _raise_bad_row(path, part, part_lines, expected)
        arr = arr.reshape(len(part), expected)
        if pixels:
            out_of_range = np.flatnonzero((arr < 0).any(axis=1) | (arr > 255).any(axis=1))
            if out_of_range.size:
                row = arr[out_of_range[0]]
                value = row[(row < 0) | (row > 255)][0]
                raise BadInputError(f"{path}, line {part_lines[out_of_range[0]]}: pixel value {value:g} is outside 0..255")
            arr = arr.astype(np.uint8) if arr.dtype == np.int64 else arr.astype(np.float32)
        chunks.append(arr)
    return np.concatenate(chunks)


def _fromstring(text: str, dtype: type, size: int) -> np.ndarray | None:
    """numpy's C parser; None when a token does not parse as `dtype` or the count is off."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            arr = np.fromstring(text, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    return arr if arr.size == size else None


def _raise_bad_row(path: Path, rows: list[str], lines: list[int], expected: int) -> None:
    """Find the first row that does not hold `expected` finite numbers and say what is wrong."""
    for text, line in zip(rows, lines):
        tokens = text.split()
        if len(tokens) != expected:
            raise BadInputError(f"{path}, line {line}: {len(tokens)} values, expected {expected} like the other rows")
        for token in tokens:
            if not _is_number(token) or not np.isfinite(float(token)):
                raise BadInputError(f"{path}, line {line}: value {token!r} is not a finite number")
    raise BadInputError(f"{path}: the rows do not parse as numbers")


def _numeric_csv(path: Path, header: list[str] | None, body: list[list[str]], lines: list[int],
                 ids: tuple[str, ...]) -> Dataset:
    width = len(header) if header is not None else len(body[0])
    label_col = _named_column(header, _LABEL_COLUMNS)
    if label_col is None:
        label_col = width - 1
    text_rows: list[str] = []
    for record, line in zip(body, lines):
        if len(record) != width:
            raise BadInputError(f"{path}, line {line}: {len(record)} fields, expected {width}")
        text_rows.append(" ".join(record))
    table = _parse_number_rows(path, text_rows, np.full(len(body), width), lines, width, pixels=False)
    raw_labels = table[:, label_col]
    bad = np.flatnonzero((raw_labels != np.round(raw_labels)) | (raw_labels < 0))
    if bad.size:
        raise BadInputError(f"{path}, line {lines[bad[0]]}: label {body[bad[0]][label_col]!r} is not a class index")
    labels = raw_labels.astype(np.int64)
    values = np.delete(table, label_col, axis=1)
    if values.shape[1] == 64 and values.size and values.min() >= 0 and values.max() <= 16 \
            and np.all(values == np.round(values)):
        values = np.round(values * (255.0 / 16.0))  # scikit-learn's digits: 8x8 images with values 0..16
    out_of_range = np.flatnonzero((values < 0).any(axis=1) | (values > 255).any(axis=1))
    if out_of_range.size:
        raise BadInputError(f"{path}, line {lines[out_of_range[0]]}: pixel values must lie in 0..255")
    integral = values.dtype == np.int64 or bool(np.all(values == np.round(values)))
    images = _to_images(path, values.astype(np.uint8) if integral else values.astype(np.float32))
    return Dataset(images, labels, _class_names(labels, images, path), str(path), ids)


def _to_images(path: Path, pixels: np.ndarray) -> np.ndarray:
    """(N, P) pixel rows -> (N, s, s) or (N, s, s, 3) images."""
    n, count = pixels.shape
    side = int(round(np.sqrt(count)))
    if side * side == count:
        return pixels.reshape(n, side, side)
    side = int(round(np.sqrt(count / 3)))
    if side * side * 3 != count:
        raise BadInputError(f"{path}: rows have {count} pixels, which is not a square image (s*s or s*s*3)")
    return pixels.reshape(n, side, side, 3)


def _class_names(labels: np.ndarray | None, images: np.ndarray, path: Path) -> tuple[str, ...] | None:
    """FER2013 names for 48x48 gray data whose labels reach class 6 (the 7 expressions; a 5-class
    set in another order must not be named like FER2013); digit names for 8x8 and 28x28 digits."""
    if labels is None or not len(labels):
        return None
    top = int(labels.max())
    h, w = images.shape[1:3]
    if (h, w) == (48, 48) and images.ndim == 3 and top == len(PRESETS["fer2013"]) - 1:
        return PRESETS["fer2013"]
    if (h, w) in ((8, 8), (28, 28)) and images.ndim == 3 and top < 10:
        return PRESETS["digits"]
    return None


# ------------------------------------------------------------------------------------ arrays
def _np_load(path: Path) -> np.ndarray | np.lib.npyio.NpzFile:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInputError(f"{path}: not a readable NumPy file ({type(exc).__name__}: {exc})") from exc


def _image_batch(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise BadInputError(f"{path}: array of dtype {arr.dtype}; expected numeric images")
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        arr = np.transpose(arr, (0, 2, 3, 1))  # NCHW
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4):
        raise BadInputError(f"{path}: array of shape {arr.shape}; expected images (N, H, W[, C])")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise BadInputError(f"{path}: the images contain NaN or infinite values")
    return arr


def _load_npz(path: Path) -> Dataset:
    with _np_load(path) as npz:
        keys = list(npz.keys())
        xkey = "x" if "x" in keys else ("images" if "images" in keys else (keys[0] if len(keys) == 1 else None))
        if xkey is None:
            raise BadInputError(f"{path}: an .npz dataset needs an array 'x' (and 'y' for labels); it holds {', '.join(keys)}")
        images = _image_batch(npz[xkey], path)
        labels = None
        ykey = "y" if "y" in keys else ("labels" if "labels" in keys else None)
        if ykey is not None:
            y = np.asarray(npz[ykey])
            if y.ndim == 2 and y.shape[1] > 1:
                y = y.argmax(axis=1)  # one-hot
            y = y.reshape(-1)
            if y.size and (not np.all(y == np.round(y)) or y.min() < 0):
                raise BadInputError(f"{path}: '{ykey}' must hold non-negative integer class indices")
            labels = y.astype(np.int64)
        names = tuple(str(n) for n in npz["class_names"]) if "class_names" in keys else None
    if names is None and labels is not None:
        names = _class_names(labels, images, path)
    return Dataset(images, labels, names, str(path), tuple(str(i) for i in range(len(images))))


def _load_idx(path: Path) -> Dataset:
    images = _read_idx(path)
    label_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    labels = _read_idx(label_path).astype(np.int64) if label_path.exists() else None
    if labels is not None and len(labels) != len(images):
        raise BadInputError(f"{label_path}: {len(labels)} labels for {len(images)} images in {path.name}")
    return Dataset(images, labels, _class_names(labels, images, path), str(path),
                   tuple(str(i) for i in range(len(images))))


def _read_idx(path: Path) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BadInputError(f"{path}: cannot read it ({exc})") from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise BadInputError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise BadInputError(f"{path}: header says {dims} but the file holds {data.size} bytes (truncated?)")
    return data.reshape(dims).copy()


# ------------------------------------------------------------------------------------ folders
def read_image(path: str | Path) -> np.ndarray:
    """An image file as an array: gray (H, W) or RGB (H, W, 3), uint8 (uint16 for 16-bit files)."""
    p = Path(path)
    try:
        buf = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise BadInputError(f"{p}: cannot read it ({exc.strerror or exc})") from exc
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise BadInputError(f"{p}: not a readable image (empty, truncated, or not PNG/JPG/BMP/TIFF/WebP)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def _image_files(folder: Path) -> list[Path]:
    return sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda f: _natural_key(f.name))


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _load_folder(folder: Path, *, limit: int | None, rows: Sequence[int] | None,
                 size: tuple[int, int] | None) -> Dataset:
    classes = sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and _image_files(d)),
                     key=lambda d: _natural_key(d.name))
    labels: list[int] | None
    if classes:  # ImageFolder: one sub-folder per class; folders named 0, 1, 2... are class indices
        numbered = all(d.name.isdigit() for d in classes)
        files, labels = [], []
        for k, d in enumerate(classes):
            found = _image_files(d)
            files += found
            labels += [int(d.name) if numbered else k] * len(found)
        names: tuple[str, ...] | None = None if numbered else tuple(d.name for d in classes)
        ids = [f"{f.parent.name}/{f.name}" for f in files]
    else:
        files = _image_files(folder)
        if not files:
            raise BadInputError(f"{folder}: no images (PNG/JPG) and no class sub-folders with images")
        food = [_FOOD11_NAME.match(f.stem) for f in files]
        if all(food):
            labels = [int(m.group(1)) for m in food if m]
            names = PRESETS["food11"] if max(labels) < len(PRESETS["food11"]) else None
        else:
            labels, names = None, None
        ids = [f.name for f in files]
    if rows is not None:
        _check_rows(rows, len(files), str(folder))
        pick = list(rows)
    else:
        pick = list(range(len(files) if limit is None else min(limit, len(files))))
    raw = [read_image(files[i]) for i in pick]
    images = _stack_images(raw, size, folder)
    return Dataset(images, None if labels is None else np.array([labels[i] for i in pick], dtype=np.int64),
                   names, str(folder), tuple(ids[i] for i in pick),
                   sizes_vary=len({img.shape[:2] for img in raw}) > 1)


def _stack_images(images: list[np.ndarray], size: tuple[int, int] | None, source: Path) -> np.ndarray:
    """One array from images of any size/colour: gray+colour mixed -> colour; mixed sizes -> `size`
    (or the first image's size)."""
    if any(img.ndim == 3 for img in images):
        images = [np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img for img in images]
    if len({img.dtype for img in images}) > 1:
        images = [img.astype(np.float32) / (257.0 if img.dtype == np.uint16 else 1.0) for img in images]
    shapes = {img.shape[:2] for img in images}
    if size is None and len(shapes) > 1:
        size = images[0].shape[:2]
        log.info("%s: images of %d different sizes, resized to %dx%d", source, len(shapes), size[0], size[1])
    if size is not None and shapes != {tuple(size)}:
        return _resize_all(images, size)
    return np.stack(images)


def _resize_all(images: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    h, w = int(size[0]), int(size[1])
    out = []
    for img in images:
        inter = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
        out.append(cv2.resize(img, (w, h), interpolation=inter) if img.shape[:2] != (h, w) else img)
    return np.stack(out)


# ------------------------------------------------------------------------------------ selection
def select_per_class(ds: Dataset, k: int, seed: int = 0) -> np.ndarray:
    """Indices of `k` images of each class (fewer where a class has fewer), grouped by class in
    class order, chosen at random with `seed` (the same seed gives the same images)."""
    if k < 1:
        raise BadInputError(f"`per_class` must be at least 1, got {k}", params=("per_class",))
    if ds.labels is None:
        raise BadInputError(f"{ds.source} has no labels, so images cannot be picked per class; give INPUTS instead")
    rng = np.random.default_rng(seed)
    picked: list[np.ndarray] = []
    present = np.unique(ds.labels)
    for c in present:
        members = np.flatnonzero(ds.labels == c)
        picked.append(np.sort(rng.permutation(members)[:k]))
    if ds.class_names:
        missing = [ds.class_names[c] for c in range(len(ds.class_names)) if c not in set(present.tolist())]
        if missing:
            log.warning("%s has no images of class %s", ds.source, ", ".join(missing))
    return np.concatenate(picked).astype(np.int64)


def parse_rows(text: str) -> list[int]:
    """`0,299,5` or `0-9,20` (ranges inclusive) -> row indices in the order given."""
    if not _ROWS.match(text):
        raise BadInputError(f"row selection {text!r} is not like 0,299,5 or 0-9")
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = (int(v) for v in part.split("-"))
            if hi < lo:
                raise BadInputError(f"row range {part.strip()!r} goes backwards")
            out += range(lo, hi + 1)
        else:
            out.append(int(part))
    return out


def split_selection(item: str) -> tuple[Path, list[int] | None]:
    """`DATA:ROWS` -> (DATA, rows); a plain path -> (path, None)."""
    if ":" in item and not Path(item).exists():
        head, _, tail = item.rpartition(":")
        if _ROWS.match(tail):
            return Path(head), parse_rows(tail)
    return Path(item), None


def parse_inputs(items: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """INPUTS -> [(name, image)] with images in pixel convention, any size, gray or colour."""
    out: list[tuple[str, np.ndarray]] = []
    for item in items:
        path, rows = split_selection(item)
        if not path.exists():
            raise BadInputError(f"{path}: no such file or folder")
        lower = path.name.lower()
        if rows is None and path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            out.append((path.stem, read_image(path)))
        elif rows is None and lower.endswith(".npy"):
            arr = _np_load(path)
            if arr.ndim == 3 and not _is_batch_shape(arr):
                arr = arr[None]  # one HxWxC image
            out += _named(path.stem, _image_batch(arr, path))
        else:
            ds = load_dataset(path, rows=rows)
            stem = path.name.split(".")[0] or path.name
            out += [(f"{stem}_{_id_name(i)}", img) for i, img in zip(ds.ids, ds.images)]
    if not out:
        raise BadInputError("no input images given")
    return out


def _is_batch_shape(arr: np.ndarray) -> bool:
    """A 3-D array is a batch of gray images unless it looks like one HxWxC image."""
    return arr.shape[-1] not in (1, 3, 4)


def _named(stem: str, arr: np.ndarray) -> list[tuple[str, np.ndarray]]:
    if len(arr) == 1:
        return [(stem, arr[0])]
    return [(f"{stem}_{i}", img) for i, img in enumerate(arr)]


def _id_name(ident: str) -> str:
    """`happy/0.png` -> `happy_0`; `299` -> `299`."""
    root, dot, suffix = ident.rpartition(".")
    return safe_name(root if dot and f".{suffix.lower()}" in IMAGE_SUFFIXES else ident)


def safe_name(text: str) -> str:
    """A file-name-safe version of `text` (image ids, layer and class names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_.") or "x"
