"""Datasets and INPUTS: FER2013 CSV (train and test forms, bad rows), numeric CSV, ImageFolder,
Food-11, .npz/.npy, MNIST IDX, row selections and per-class picking."""
from __future__ import annotations

import gzip
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxplain.engine.data import (
    Dataset, load_dataset, parse_inputs, parse_rows, read_image, select_per_class, split_selection,
)
from onnxplain.engine.errors import BadInputError
from onnxplain.engine.labels import PRESETS
from tests.conftest import DATA


def write_fer_csv(path: Path, images: np.ndarray, labels: np.ndarray | None, *, header: str = "label,feature",
                  ids: bool = False) -> Path:
    lines = [header] if header else []
    for i, img in enumerate(images):
        pixels = " ".join(str(int(v)) for v in img.reshape(-1))
        first = str(i) if ids or labels is None else str(int(labels[i]))
        lines.append(f"{first},{pixels}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def fer(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(20, 48, 48), dtype=np.uint8)
    labels = np.arange(20) % 7
    return write_fer_csv(tmp_path / "train.csv", images, labels), images, labels


# ------------------------------------------------------------------------------------ FER2013 CSV
def test_fer_csv_round_trips_pixels_labels_and_names(fer) -> None:
    path, images, labels = fer
    ds = load_dataset(path)
    assert ds.images.dtype == np.uint8 and ds.images.shape == (20, 48, 48)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64
    assert ds.class_names == PRESETS["fer2013"]
    assert ds.ids[:3] == ("0", "1", "2") and ds.source == str(path)


def test_five_class_48x48_csv_is_not_named_like_fer2013(tmp_path: Path, fer) -> None:
    _, images, _ = fer
    path = write_fer_csv(tmp_path / "five.csv", images[:10], np.arange(10) % 5)
    ds = load_dataset(path)
    assert ds.class_names is None and ds.labels.max() == 4  # e.g. Angry, Happy, Neutral, Sad, Surprise


def test_fer_csv_limit_rows_and_kaggle_header(tmp_path: Path, fer) -> None:
    _, images, labels = fer
    kaggle = tmp_path / "fer2013.csv"
    lines = ["emotion,pixels,Usage"] + [f"{labels[i]},{' '.join(map(str, images[i].ravel()))},Training" for i in range(5)]
    kaggle.write_text("\n".join(lines))
    ds = load_dataset(kaggle, limit=3)
    assert len(ds) == 3
    np.testing.assert_array_equal(ds.labels, labels[:3])
    picked = load_dataset(fer[0], rows=[7, 2])
    np.testing.assert_array_equal(picked.images, images[[7, 2]])
    assert picked.ids == ("7", "2")


def test_fer_test_csv_has_ids_and_no_labels(tmp_path: Path, fer) -> None:
    _, images, _ = fer
    path = write_fer_csv(tmp_path / "test.csv", images[:4], None, header="id,feature", ids=True)
    ds = load_dataset(path)
    assert ds.labels is None and ds.class_names is None
    assert ds.ids == ("0", "1", "2", "3")
    np.testing.assert_array_equal(ds.images, images[:4])


def test_fer_csv_without_header_and_gzipped(tmp_path: Path, fer) -> None:
    _, images, labels = fer
    plain = write_fer_csv(tmp_path / "nohead.csv", images[:3], labels[:3], header="")
    gz = tmp_path / "nohead.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    for p in (plain, gz):
        ds = load_dataset(p)
        np.testing.assert_array_equal(ds.images, images[:3])
        np.testing.assert_array_equal(ds.labels, labels[:3])


@pytest.mark.parametrize(
    ("bad_row", "expect"),
    [
        ("3,1 2 3", r"line 4: 3 values, expected 2304"),
        ("x," + " ".join(["1"] * 2304), r"line 4: label 'x' is not an integer"),
        ("3," + " ".join(["1"] * 2303) + " abc", r"line 4: value 'abc' is not a finite number"),
        ("3," + " ".join(["1"] * 2303) + " 300", r"line 4: pixel value 300 is outside 0\.\.255"),
        ("3," + " ".join(["1"] * 2303) + " nan", r"line 4: value 'nan' is not a finite number"),
        ("3", r"line 4: 1 fields, expected 2"),
    ],
)
def test_bad_csv_row_names_its_line_and_the_problem(tmp_path: Path, fer, bad_row: str, expect: str) -> None:
    lines = fer[0].read_text().splitlines()
    lines.insert(3, bad_row)  # header is line 1, so the bad row is line 4
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines))
    with pytest.raises(BadInputError, match=expect):
        load_dataset(path)


def test_empty_and_header_only_csv(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "head.csv").write_text("label,feature\n")
    with pytest.raises(BadInputError, match="empty"):
        load_dataset(tmp_path / "empty.csv")
    with pytest.raises(BadInputError, match="header but no rows"):
        load_dataset(tmp_path / "head.csv")


def test_non_square_pixel_rows_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("label,feature\n0,1 2 3 4 5\n1,5 4 3 2 1\n")
    with pytest.raises(BadInputError, match="5 pixels, which is not a square"):
        load_dataset(path)


# ------------------------------------------------------------------------------------ numeric CSV
def test_sklearn_digits_csv_scaled_to_pixels() -> None:
    from sklearn.datasets import load_digits

    ds = load_dataset(DATA / "sklearn_digits.csv.gz")
    ref = load_digits()
    assert ds.images.shape == (1797, 8, 8) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, ref.target)
    np.testing.assert_array_equal(ds.images, np.round(ref.images * 255 / 16).astype(np.uint8))
    assert ds.class_names == PRESETS["digits"]


def test_numeric_csv_with_label_column_by_name(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(6, 4, 4))
    labels = np.array([1, 0, 2, 1, 0, 2])
    header = "label," + ",".join(f"pixel{i}" for i in range(16))
    rows = [f"{labels[i]}," + ",".join(map(str, images[i].ravel())) for i in range(6)]
    (tmp_path / "t.csv").write_text("\n".join([header, *rows]))
    ds = load_dataset(tmp_path / "t.csv")
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)


# ------------------------------------------------------------------------------------ folders
def _write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    assert cv2.imwrite(str(path), bgr)


def test_image_folder_classes_from_folder_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    made = {}
    for cls in ("happy", "angry"):
        for i in range(3):
            img = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
            _write_png(tmp_path / "faces" / cls / f"{i}.png", img)
            made[f"{cls}/{i}.png"] = img
    (tmp_path / "faces" / "notes.txt").write_text("ignored")
    ds = load_dataset(tmp_path / "faces")
    assert ds.class_names == ("angry", "happy")  # sorted, like torchvision's ImageFolder
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    for img, ident in zip(ds.images, ds.ids):
        np.testing.assert_array_equal(img, made[ident])  # RGB order preserved (cv2 reads BGR)


def test_image_folder_with_numbered_class_folders(tmp_path: Path) -> None:
    for cls in ("0", "2", "10"):
        _write_png(tmp_path / "digits" / cls / "a.png", np.zeros((4, 4), np.uint8))
    ds = load_dataset(tmp_path / "digits")
    assert ds.labels.tolist() == [0, 2, 10] and ds.class_names is None  # the folder names are the indices


def test_image_folder_mixed_sizes_and_colour_are_unified(tmp_path: Path) -> None:
    _write_png(tmp_path / "d" / "a" / "0.png", np.full((10, 10), 7, np.uint8))
    _write_png(tmp_path / "d" / "b" / "0.png", np.full((20, 30, 3), 9, np.uint8))
    ds = load_dataset(tmp_path / "d")
    assert ds.images.shape == (2, 10, 10, 3)
    ds = load_dataset(tmp_path / "d", size=(16, 16))
    assert ds.images.shape == (2, 16, 16, 3)
    assert np.all(ds.images[0] == 7) and np.all(ds.images[1] == 9)


def test_food11_folder_labels_from_file_names(tmp_path: Path) -> None:
    for cls, idx in [(0, 0), (3, 12), (10, 1), (3, 2)]:
        _write_png(tmp_path / "food" / f"{cls}_{idx}.jpg", np.full((8, 8, 3), 20 * cls, np.uint8))
    ds = load_dataset(tmp_path / "food")
    assert ds.ids == ("0_0.jpg", "3_2.jpg", "3_12.jpg", "10_1.jpg")  # natural order
    assert ds.labels.tolist() == [0, 3, 3, 10]
    assert ds.class_names == PRESETS["food11"]
    assert ds.class_name(3) == "Egg"


def test_unlabelled_folder_and_empty_folder(tmp_path: Path) -> None:
    _write_png(tmp_path / "test" / "17.png", np.zeros((5, 5), np.uint8))
    ds = load_dataset(tmp_path / "test")
    assert ds.labels is None and len(ds) == 1
    (tmp_path / "none").mkdir()
    with pytest.raises(BadInputError, match="no images"):
        load_dataset(tmp_path / "none")


# ------------------------------------------------------------------------------------ arrays, IDX
def test_npz_with_x_y_and_class_names(tmp_path: Path) -> None:
    x = np.random.default_rng(4).integers(0, 256, size=(5, 6, 6), dtype=np.uint8)
    y = np.array([0, 1, 1, 0, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))
    ds = load_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(ds.images, x)
    assert ds.labels.tolist() == y.tolist() and ds.class_names == ("a", "b", "c")
    np.savez(tmp_path / "onehot.npz", x=x, y=np.eye(3)[y])
    assert load_dataset(tmp_path / "onehot.npz").labels.tolist() == y.tolist()
    np.savez(tmp_path / "bad.npz", a=x, b=y)
    with pytest.raises(BadInputError, match="needs an array 'x'"):
        load_dataset(tmp_path / "bad.npz")


def test_nchw_npz_is_transposed(tmp_path: Path) -> None:
    x = np.random.default_rng(5).random((2, 3, 7, 9)).astype(np.float32)
    np.savez(tmp_path / "c.npz", x=x)
    ds = load_dataset(tmp_path / "c.npz")
    assert ds.images.shape == (2, 7, 9, 3)
    np.testing.assert_array_equal(ds.images[1, :, :, 2], x[1, 2])


def test_mnist_idx_pair() -> None:
    ds = load_dataset(DATA / "mnist_t10k-images-idx3-ubyte.gz", limit=50)
    assert ds.images.shape == (50, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first MNIST test labels
    assert ds.class_names == PRESETS["digits"]


def test_truncated_idx_and_unknown_format(tmp_path: Path) -> None:
    raw = gzip.decompress((DATA / "mnist_t10k-images-idx3-ubyte.gz").read_bytes())[:5000]
    (tmp_path / "t-images-idx3-ubyte").write_bytes(raw)
    with pytest.raises(BadInputError, match="truncated"):
        load_dataset(tmp_path / "t-images-idx3-ubyte")
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(BadInputError, match="not a dataset onnxplain reads"):
        load_dataset(tmp_path / "x.parquet")
    with pytest.raises(BadInputError, match="no such file"):
        load_dataset(tmp_path / "missing.csv")


# ------------------------------------------------------------------------------------ selection
@settings(max_examples=40, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=1, max_size=60), k=st.integers(1, 4), seed=st.integers(0, 9))
def test_select_per_class_properties(labels: list[int], k: int, seed: int) -> None:
    y = np.array(labels, dtype=np.int64)
    ds = Dataset(np.zeros((len(y), 2, 2), np.uint8), y, None, "mem", tuple(map(str, range(len(y)))))
    idx = select_per_class(ds, k, seed)
    assert len(set(idx.tolist())) == len(idx)  # no image twice
    for c in np.unique(y):
        assert int(np.sum(y[idx] == c)) == min(k, int(np.sum(y == c)))
    assert np.all(np.diff(y[idx]) >= 0)  # grouped by class, in class order
    np.testing.assert_array_equal(idx, select_per_class(ds, k, seed))  # deterministic


def test_select_per_class_depends_on_seed_and_needs_labels() -> None:
    y = np.repeat(np.arange(3), 50)
    ds = Dataset(np.zeros((150, 2, 2), np.uint8), y, None, "mem", tuple(map(str, range(150))))
    assert not np.array_equal(select_per_class(ds, 5, 0), select_per_class(ds, 5, 1))
    with pytest.raises(BadInputError, match="no labels"):
        select_per_class(Dataset(ds.images, None, None, "mem", ds.ids), 1)
    with pytest.raises(BadInputError, match="at least 1"):
        select_per_class(ds, 0)


def test_relabel_maps_dataset_names_into_the_model_order() -> None:
    ds = Dataset(np.zeros((3, 2, 2), np.uint8), np.array([0, 1, 2]), ("angry", "happy", "sad"), "mem", ("a", "b", "c"))
    mapped = ds.relabel(("Sad", "Angry", "Happy"))
    assert mapped.labels.tolist() == [1, 2, 0]
    with pytest.raises(BadInputError, match="not among the model's labels"):
        ds.relabel(("cat", "dog", "sad"))


# ------------------------------------------------------------------------------------ INPUTS
def test_parse_rows_and_selection_split(tmp_path: Path) -> None:
    assert parse_rows("0,299,5") == [0, 299, 5]
    assert parse_rows("3-5,1") == [3, 4, 5, 1]
    for bad in ("", "a", "5-3", "1,,2", "-1"):
        with pytest.raises(BadInputError):
            parse_rows(bad)
    assert split_selection("train.csv:0,2") == (Path("train.csv"), [0, 2])
    assert split_selection("plain.png") == (Path("plain.png"), None)


def test_parse_inputs_images_arrays_and_rows(tmp_path: Path, fer) -> None:
    gray = np.arange(30 * 40, dtype=np.uint8).reshape(30, 40)
    rgb = np.zeros((9, 7, 3), np.uint8)
    rgb[..., 0] = 200  # red
    _write_png(tmp_path / "g.png", gray)
    _write_png(tmp_path / "c.jpg", rgb)
    np.save(tmp_path / "batch.npy", np.zeros((3, 5, 5), np.float32))
    np.save(tmp_path / "one.npy", np.zeros((5, 5, 3), np.uint8))
    got = parse_inputs([str(tmp_path / "g.png"), str(tmp_path / "c.jpg"), str(tmp_path / "batch.npy"),
                        str(tmp_path / "one.npy"), f"{fer[0]}:5,0"])
    names = [n for n, _ in got]
    assert names == ["g", "c", "batch_0", "batch_1", "batch_2", "one", "train_5", "train_0"]
    np.testing.assert_array_equal(got[0][1], gray)
    assert got[1][1].shape == (9, 7, 3) and got[1][1][..., 0].mean() > 150 > got[1][1][..., 2].mean()  # BGR->RGB
    np.testing.assert_array_equal(got[6][1], fer[1][5])


def test_parse_inputs_errors(tmp_path: Path, fer) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(BadInputError, match="broken.png: not a readable image"):
        parse_inputs([str(tmp_path / "broken.png")])
    with pytest.raises(BadInputError, match="no such file"):
        parse_inputs([str(tmp_path / "nope.png")])
    with pytest.raises(BadInputError, match="row 20 is out of range; .* has 20 rows"):
        parse_inputs([f"{fer[0]}:20"])
    with pytest.raises(BadInputError, match="no input images"):
        parse_inputs([])


def test_read_image_real_photo_and_16_bit(tmp_path: Path) -> None:
    img = read_image(DATA / "skimage_astronaut.png")
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), deep)
