"""`grade` on a whole class: real zoo models, generated Keras and PyTorch models, and broken or hostile
submissions. Exact counts per status, the hanging one stopped by the time limit, and a second run
that redoes nothing."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from onnxplain.cli.app import app
from onnxplain.engine.grading import discover_submissions

from tests.conftest import DATA, export_onnx, make_tiny_cnn, zoo_path

pytestmark = pytest.mark.slow

KERAS_SCRIPT = textwrap.dedent('''
    import sys, numpy as np, tf_keras as keras
    out = sys.argv[1]
    def cnn(seed, lam=False):
        keras.utils.set_random_seed(seed)
        layers = [keras.layers.InputLayer(input_shape=(48, 48, 1)),
                  keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(),
                  keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.GlobalAveragePooling2D()]
        if lam:
            layers.append(keras.layers.Lambda(lambda t: t * 2.0))
        layers.append(keras.layers.Dense(7, activation="softmax"))
        return keras.Sequential(layers)
    cnn(1).save(out + "/erin.h5")
    cnn(2).save(out + "/frank.hdf5")
    cnn(3, lam=True).save(out + "/grace_lambda.h5")
''')

NET_PY = textwrap.dedent('''
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, 7)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))
''')


class _Sleeper:
    """Unpickling this calls time.sleep: a submission that hangs the exporter."""

    def __reduce__(self):  # noqa: D105
        import time

        return (time.sleep, (3600,))


class _Killer:
    """Unpickling this kills the process that unpickles it: a submission that crashes the exporter."""

    def __reduce__(self):  # noqa: D105
        return (os._exit, (139,))


def _build_class(root: Path) -> Path:
    subs = root / "subs"
    subs.mkdir()
    # Real third-party models (see ../shared/zoo/MANIFEST.md).
    for key, name in [("k01", "k01.hdf5"), ("k03", "k03.hdf5"), ("k04", "k04.h5"), ("o01", "o01.onnx"),
                      ("o02", "o02.onnx"), ("o03", "o03.onnx"), ("t04", "t04.pt")]:
        shutil.copy(zoo_path(key), subs / name)
    (subs / "k05_with_arch").mkdir()
    shutil.copy(zoo_path("k05"), subs / "k05_with_arch" / "weights.h5")
    shutil.copy(zoo_path("k05_arch"), subs / "k05_with_arch" / "model.json")
    shutil.copy(zoo_path("k05"), subs / "k05_weights_only.h5")
    # Generated Keras models (one with a Lambda layer), made by tf_keras in a child process.
    subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(subs)], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    # Generated PyTorch models: an ONNX export, a TorchScript file, a state_dict with its class in a .py.
    cnn = make_tiny_cnn(channels=1, classes=7, seed=4)
    export_onnx(cnn, subs / "heidi.onnx", (2, 1, 48, 48))
    torch.jit.trace(make_tiny_cnn(channels=1, classes=7, seed=5), torch.rand(1, 1, 48, 48)).save(str(subs / "ivan.pt"))
    (subs / "judy").mkdir()
    (subs / "judy" / "net.py").write_text(NET_PY)
    torch.manual_seed(6)
    namespace: dict = {}
    exec(NET_PY, namespace)  # the test's own code, to make judy's weights
    torch.save(namespace["Net"]().state_dict(), subs / "judy" / "weights.pth")
    # Broken and hostile submissions.
    (subs / "ken").mkdir()
    torch.save(make_tiny_cnn(channels=1, classes=7).state_dict(), subs / "ken" / "weights.pth")  # no class code
    (subs / "leo_truncated.h5").write_bytes(zoo_path("k03").read_bytes()[:5000])
    (subs / "mallory_random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (subs / "nina_sleeps.pkl").write_bytes(pickle.dumps(_Sleeper()))
    (subs / "oscar_crashes.pkl").write_bytes(pickle.dumps(_Killer()))
    (subs / "peggy_empty").mkdir()
    (subs / "peggy_empty" / "README.txt").write_text("I forgot to upload my model")
    return subs


def _data(root: Path) -> Path:
    """14 real faces (scikit-image's LFW subset), 48x48, labelled 0..6 twice over."""
    faces = np.load(DATA / "skimage_lfw_subset_200x25x25.npy")[:14]
    x = np.stack([cv2.resize(f, (48, 48)) for f in faces])
    path = root / "data.npz"
    np.savez(path, x=(x * 255).astype(np.uint8), y=np.arange(14) % 7)
    return path


EXPECTED = {
    # k01 k03 k04 o01 o02 o03 (10 classes: no accuracy, still explained) k05+arch, erin frank, grace (a Lambda
    # layer, allowed by --trust), heidi (ONNX), ivan (TorchScript), judy (state_dict + Net from her net.py)
    "ok": 13,
    # k05 alone (weights, no architecture), ken (state_dict, no class anywhere), leo (truncated .h5), mallory
    # (random bytes), peggy (no model file), t04 (an MNIST net that flattens with view(-1, n): given the class's
    # 1x48x48 input it returns 4 rows per image, refused by the exporter)
    "unsupported": 6,
    "timeout": 1,       # nina: unpickling sleeps for an hour
    "crashed": 1,       # oscar: unpickling kills the export process
}


def test_grade_a_class(tmp_path: Path) -> None:
    subs = _build_class(tmp_path)
    assert len(discover_submissions(subs)) >= 20
    data = _data(tmp_path)
    out = tmp_path / "out"
    args = ["grade", str(subs), "--data", str(data), "--out", str(out), "--workers", "2", "--methods", "saliency",
            "--timeout", "25", "--trust", "--arch-name", "Net", "--input-shape", "1,1,48,48", "--json", "--quiet"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["id"]: r for r in summary["submissions"]}
    print(json.dumps({k: (r["status"], r["reason"][:120]) for k, r in rows.items()}, indent=1))
    assert summary["counts"] == EXPECTED
    assert rows["nina_sleeps"]["status"] == "timeout" and "time limit" in rows["nina_sleeps"]["reason"]
    assert rows["oscar_crashes"]["status"] == "crashed"
    assert rows["k05_weights_only"]["status"] == "unsupported"
    assert "put the model's architecture (model.to_json() saved as a .json file) in the student's folder" in \
        rows["k05_weights_only"]["reason"]  # in grade's terms: grade has no --arch
    assert "state_dict" in rows["ken"]["reason"]
    assert "output row(s)" in rows["t04"]["reason"] and ".partial" not in rows["t04"]["reason"]
    assert rows["o03"]["accuracy"] is None and "10 classes" in rows["o03"]["note"]
    assert all("\n" not in r["reason"] for r in rows.values())
    for sid, r in rows.items():
        if r["status"] == "ok":
            assert (out / sid / "report.html").exists() and (out / sid / "maps.npz").exists()
            assert r["parameters"] > 0 and r["torch_parity"] <= 1e-4
            # Exported files carry the source-vs-onnxruntime parity; ONNX submissions have no source to compare.
            assert (r["parity"] is None) if r["format"] == "onnx" else (r["parity"] <= 1e-3)
    assert rows["k01"]["framework"] == "keras" and rows["k01"]["framework_version"] == "2.0.5"
    assert rows["o01"]["accuracy"] is not None
    assert (out / "summary.csv").read_text().count("\n") == len(rows) + 1
    index = (out / "index.html").read_text()
    assert "saliency: side by side" in index
    for sid, r in rows.items():  # each graded student's name links to their page; the others are plain text
        assert (f'<a href="{sid}/report.html">{sid}</a>' in index) == (r["status"] == "ok"), sid
    assert not list(out.glob(".*partial")), "no half-written submission folders"
    # A second run with nothing changed redoes nothing.
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    doc = json.loads(second.stdout)
    assert doc["skipped"] == len(rows) and doc["counts"] == EXPECTED
