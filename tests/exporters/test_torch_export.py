"""PyTorch -> ONNX: the zoo's TorchScript, state_dict and whole-pickle files, and generated state_dicts
in every container students use; outputs checked against the torch module run here, or real MNIST digits."""
from __future__ import annotations

import gzip
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from onnxplain.engine import Model
from onnxplain.engine.errors import BadInputError, ConversionError, UnsupportedModelError
from onnxplain.exporters import ExportWorker, export
from tests.conftest import DATA, zoo_path
from tests.exporters.export_helpers import onnx_outputs, read_sidecar

pytestmark = pytest.mark.slow

STUDENT_PY = '''
import torch
import torch.nn.functional as F
from torch import nn


class StudentNet(nn.Module):
    def __init__(self, num_classes=7, width=8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 4 * 4, 32), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(32, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class CNN(nn.Module):
    """The class zoo t05 was pickled from (its script's __main__), rewritten from its layers."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1, self.fc2 = nn.Linear(1152, 128), nn.Linear(128, 256)
        self.fc3, self.fc4 = nn.Linear(256, 512), nn.Linear(512, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.pool(F.relu(self.conv3(x)))
        x = x.view(-1, 1152)
        return self.fc4(F.relu(self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))))


class DNN(nn.Module):
    """A plain DNN on flattened pixels: forward takes (N, in_features)."""

    def __init__(self, in_features=144, classes=4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x):
        return self.net(x)


class Noisy(nn.Module):
    """Draws random numbers in forward: no export can match it, so parity must fail."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(x + torch.rand_like(x)).mean(dim=(2, 3))
'''


class Marker:
    """Unpickling this writes a file: the proof that code from the file ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({str(self.path)!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory):
    """(path of model.py, the module imported here) for building weights and reference outputs."""
    folder = tmp_path_factory.mktemp("student")
    path = folder / "model.py"
    path.write_text(STUDENT_PY)
    spec = importlib.util.spec_from_file_location("student_model_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def student_net(module, num_classes: int = 5):
    torch.manual_seed(0)
    net = module.StudentNet(num_classes=num_classes)
    with torch.no_grad():
        bn = net.features[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def mnist(n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    def read(name: str) -> np.ndarray:
        data = gzip.decompress((DATA / name).read_bytes())
        dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(data[3])]
        return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3]).reshape(dims)

    return read("mnist_t10k-images-idx3-ubyte.gz")[:n], read("mnist_t10k-labels-idx1-ubyte.gz")[:n]


def mnist_accuracy(onnx_path: Path) -> float:
    images, labels = mnist()
    model = Model(onnx_path)
    return float((model.predict_images(list(images)).argmax(axis=1) == labels).mean())


# ----------------------------------------------------------------------------- the zoo
def test_t04_torchscript_saved_on_cuda_exports_on_cpu(export_worker: ExportWorker, tmp_path: Path) -> None:
    out = export(zoo_path("t04"), tmp_path / "t04.onnx", input_shape="1,1,28,28", labels="digits",
                 worker=export_worker)
    side = read_sidecar(out)
    assert side["parity"]["max_abs_diff"] <= 1e-4
    assert side["source"]["format"] == "torchscript" and side["source"]["serialization"] == "torchscript"
    assert side["source"]["format_version"].isdigit()  # the zip's own serialization format record
    assert side["input"]["layout"] == "NCHW" and side["input"]["dynamic_batch"] is True
    assert side["exporter"]["converter"] == {"name": "torch.onnx (torchscript)", "opset": 17}
    assert mnist_accuracy(out) > 0.95  # real MNIST test digits, x/255: the export is the trained network
    convs = [layer.name for layer in Model(out).conv_layers()]
    assert convs == ["features.0", "features.4", "features.8"]


def test_t04_at_another_input_size_is_refused_for_mixing_images(export_worker: ExportWorker, tmp_path: Path) -> None:
    """t04 flattens with view(-1, n): at 48x48 each image becomes 4 rows. ONNX would reproduce that
    exactly, so parity alone cannot catch it; one output row per image can."""
    with pytest.raises(UnsupportedModelError, match=r"returns 8 output row\(s\) for 2 images.*check `input_shape`"):
        export(zoo_path("t04"), tmp_path / "t04.onnx", input_shape="1,1,48,48", worker=export_worker)
    assert not (tmp_path / "t04.onnx").exists()


def test_t06_torchscript_exports(export_worker: ExportWorker, tmp_path: Path) -> None:
    out = export(zoo_path("t06"), tmp_path / "t06.onnx", input_shape=(1, 1, 120, 120), scale=1 / 255, mean=0.5,
                 std=0.5, labels="Closed,Open,yawn,no_yawn", worker=export_worker)
    side = read_sidecar(out)
    assert side["parity"]["max_abs_diff"] <= 1e-4
    assert side["labels"] == ["Closed", "Open", "yawn", "no_yawn"]
    assert side["preprocessing"] == {"scale": pytest.approx(1 / 255), "mean": [0.5], "std": [0.5]}
    assert onnx_outputs(out, np.zeros((5, 1, 120, 120), np.float32)).shape == (5, 4)
    assert [layer.name for layer in Model(out).layers()] == ["conv1", "conv2", "conv3", "fc1", "fc2", "fc3"]


def test_torchscript_without_input_shape_gets_the_one_size_it_runs_on(export_worker: ExportWorker,
                                                                      tmp_path: Path) -> None:
    """t04 flattens with view(-1, 1152): of the usual sizes only 28x28 gives one row per image."""
    out = export(zoo_path("t04"), tmp_path / "t04.onnx", worker=export_worker)
    assert read_sidecar(out)["source"]["input_inferred"].startswith("1x28x28, the only one of the usual sizes")
    assert mnist_accuracy(out) > 0.95


def test_torchscript_of_an_uncommon_size_gets_it(export_worker: ExportWorker, tmp_path: Path) -> None:
    """t06 takes 120x120 (MANIFEST): none of the usual sizes; of the run of sizes its flatten accepts,
    120 is the one its pooling divides evenly."""
    out = export(zoo_path("t06"), tmp_path / "t06.onnx", worker=export_worker)
    side = read_sidecar(out)
    assert (side["input"]["height"], side["input"]["width"], side["input"]["channels"]) == (120, 120, 1)
    assert "none of the usual sizes fits" in side["source"]["input_inferred"]


def test_t03_state_dict_without_arch_lists_keys(export_worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        export(zoo_path("t03"), tmp_path / "t03.onnx", worker=export_worker)
    message = str(info.value)
    assert "state_dict" in message and "feat_extraction.0.weight (10, 1, 3, 3)" in message
    assert "arch='path/to/model.py'" in message and "\n" not in message


def test_t05_whole_pickle_refused_without_trust(export_worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=r"whole pickled model.*__main__\.CNN.*trust=True"):
        export(zoo_path("t05"), tmp_path / "t05.onnx", input_shape="1,1,28,28", worker=export_worker)


def test_t05_trusted_names_the_missing_class(export_worker: ExportWorker, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=r"class CNN from module __main__.*arch='path/to/model\.py:CNN'"):
        export(zoo_path("t05"), tmp_path / "t05.onnx", input_shape="1,1,28,28", trust=True, worker=export_worker)


def test_t05_trusted_with_the_class_from_arch(student, export_worker: ExportWorker, tmp_path: Path) -> None:
    """The pickle's __main__.CNN is found in --arch: the whole pickled model (saved on CUDA) exports."""
    path, _ = student
    out = export(zoo_path("t05"), tmp_path / "t05.onnx", input_shape="1,1,28,28", trust=True,
                 arch=f"{path}:CNN", worker=export_worker)
    assert read_sidecar(out)["source"]["content"] == "whole model (CNN)"
    assert mnist_accuracy(out) > 0.95


# ----------------------------------------------------------------------------- generated state_dicts
def containers(state: dict) -> dict[str, tuple[object, dict]]:
    """What students save, and the extra flags each needs."""
    return {
        "plain": (state, {}),
        "model_state_dict": ({"epoch": 30, "model_state_dict": state, "optimizer": {"lr": 0.01}}, {}),
        "state_dict": ({"state_dict": state, "best_acc": 0.68}, {}),
        "net": ({"net": state, "acc": 0.6}, {}),
        "ema_with_key": ({"ema": state, "meta": "x"}, {"weights_key": "ema"}),
        "data_parallel": ({f"module.{k}": v for k, v in state.items()}, {}),
    }


@pytest.mark.parametrize("kind", ["plain", "model_state_dict", "state_dict", "net", "ema_with_key", "data_parallel"])
def test_state_dict_containers(kind: str, student, export_worker: ExportWorker, tmp_path: Path) -> None:
    path, module = student
    net = student_net(module)
    obj, flags = containers(net.state_dict())[kind]
    torch.save(obj, tmp_path / "weights.pth")
    out = export(tmp_path / "weights.pth", tmp_path / "w.onnx", arch=f"{path}:StudentNet", trust=True,
                 arch_args='{"num_classes": 5}', input_shape="1,1,16,16", worker=export_worker, **flags)
    x = np.random.default_rng(3).normal(size=(6, 1, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_outputs(out, x), expected, atol=1e-5)
    assert [layer.name for layer in Model(out).conv_layers()] == ["features.0", "features.4"]


def test_legacy_serialization(student, export_worker: ExportWorker, tmp_path: Path) -> None:
    path, module = student
    net = student_net(module)
    torch.save(net.state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    out = export(tmp_path / "old.pt", tmp_path / "old.onnx", arch=f"{path}:StudentNet", trust=True, arch_args={"num_classes": 5},
                 input_shape="1,1,16,16", worker=export_worker)
    side = read_sidecar(out)
    assert side["source"]["format"] == "torch-legacy"
    assert side["source"]["serialization"] == "torch legacy pickle (< 1.6)"
    x = np.random.default_rng(4).normal(size=(2, 1, 16, 16)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(onnx_outputs(out, x), net(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_dnn_on_flattened_pixels_gets_an_image_input(student, export_worker: ExportWorker, tmp_path: Path) -> None:
    path, module = student
    torch.manual_seed(0)
    net = module.DNN().eval()
    torch.save(net.state_dict(), tmp_path / "dnn.pt")
    out = export(tmp_path / "dnn.pt", tmp_path / "dnn.onnx", arch=f"{path}:DNN", trust=True, input_shape="1,144",
                 worker=export_worker)
    side = read_sidecar(out)
    assert (side["input"]["layout"], side["input"]["height"], side["input"]["width"], side["input"]["channels"]) == (
        "NHWC", 12, 12, 1)
    assert side["parity"]["max_abs_diff"] <= 1e-5 and side["exporter"]["converter"]["flat_input"] == 144
    x = np.random.default_rng(3).uniform(0, 1, (5, 12, 12, 1)).astype(np.float32)
    with torch.no_grad():  # row-major flattening of the image, as x.reshape(N, -1)
        np.testing.assert_allclose(onnx_outputs(out, x), net(torch.from_numpy(x.reshape(5, -1))).numpy(), atol=1e-5)
    torch.save(module.DNN(in_features=150).state_dict(), tmp_path / "dnn150.pt")
    with pytest.raises(BadInputError, match=r"150 values per image.*flatten inside the model"):
        export(tmp_path / "dnn150.pt", tmp_path / "dnn150.onnx", arch=f"{path}:DNN", trust=True, arch_args={"in_features": 150},
               input_shape="1,150", worker=export_worker)


def test_weights_that_do_not_fit_the_arch(student, export_worker: ExportWorker, tmp_path: Path) -> None:
    path, module = student
    torch.save(student_net(module, num_classes=5).state_dict(), tmp_path / "w.pt")
    with pytest.raises(BadInputError, match=r"do not fit.*wrong shape.*classifier\.4\.weight \(5, 32\) vs \(7, 32\)"):
        export(tmp_path / "w.pt", tmp_path / "w.onnx", arch=f"{path}:StudentNet", trust=True, input_shape="1,1,16,16",
               arch_args={"num_classes": 7}, worker=export_worker)
    # without --arch-args the number of classes is read from the weights' last layer
    out = export(tmp_path / "w.pt", tmp_path / "w.onnx", arch=f"{path}:StudentNet", trust=True,
                 input_shape="1,1,16,16", worker=export_worker)
    assert read_sidecar(out)["source"]["arch_args"] == {"num_classes": 5}
    with pytest.raises(BadInputError, match="has no model class 'Resnet'.*StudentNet"):
        export(tmp_path / "w.pt", tmp_path / "w.onnx", arch=f"{path}:Resnet", trust=True, worker=export_worker)


def test_module_colon_class_arch(export_worker: ExportWorker, tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_1(num_classes=4).eval()
    torch.save({"model": net.state_dict()}, tmp_path / "sq.pth")
    out = export(tmp_path / "sq.pth", tmp_path / "sq.onnx", arch="torchvision.models:squeezenet1_1",
                 arch_args={"num_classes": 4}, input_shape="1,3,64,64", worker=export_worker)
    x = np.random.default_rng(5).uniform(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(onnx_outputs(out, x), net(torch.from_numpy(x)).numpy(), atol=1e-4)
    assert read_sidecar(out)["source"]["weights_key"] == "model"


def test_sidecar_beside_the_source_gives_the_input_shape(student, export_worker: ExportWorker, tmp_path: Path) -> None:
    path, module = student
    torch.save(student_net(module).state_dict(), tmp_path / "w.pt")
    (tmp_path / "w.pt.json").write_text(json.dumps({"input": {"channels": 1, "height": 16, "width": 16}}))
    out = export(tmp_path / "w.pt", tmp_path / "w.onnx", arch=f"{path}:StudentNet", trust=True, arch_args={"num_classes": 5},
                 worker=export_worker)
    assert read_sidecar(out)["input"]["height"] == 16


@pytest.mark.parametrize("how", ["zip", "legacy", "plain"])
def test_hostile_pickle_refused_and_never_run(how: str, export_worker: ExportWorker, tmp_path: Path) -> None:
    marker = tmp_path / "pwned.marker"
    payload = {"state_dict": {"w": torch.zeros(2)}, "hook": Marker(marker)}
    src = tmp_path / "evil.pth"
    if how == "plain":
        src.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, src, _use_new_zipfile_serialization=how == "zip")
    with pytest.raises(UnsupportedModelError, match=r"(__builtin__|builtins)\.exec.*would run code.*trust=True"):
        export(src, tmp_path / "evil.onnx", input_shape="1,1,8,8", worker=export_worker)
    assert not marker.exists()
    assert not (tmp_path / "evil.onnx").exists()


def test_parity_failure_fails_unless_allowed(student, export_worker: ExportWorker, tmp_path: Path) -> None:
    path, module = student
    torch.manual_seed(0)
    torch.save(module.Noisy().state_dict(), tmp_path / "noisy.pt")
    flags = dict(arch=f"{path}:Noisy", trust=True, input_shape="1,1,8,8", worker=export_worker)
    with pytest.raises(ConversionError, match=r"differs from the source model by .*allow_mismatch=True"):
        export(tmp_path / "noisy.pt", tmp_path / "noisy.onnx", **flags)
    assert not (tmp_path / "noisy.onnx").exists()
    out = export(tmp_path / "noisy.pt", tmp_path / "noisy.onnx", allow_mismatch=True, **flags)
    parity = read_sidecar(out)["parity"]
    assert parity["passed"] is False and parity["max_abs_diff"] > 1e-3


def test_real_images_join_the_parity_check(student, faces: np.ndarray, export_worker: ExportWorker,
                                           tmp_path: Path) -> None:
    path, module = student
    torch.save(student_net(module).state_dict(), tmp_path / "w.pt")
    out = export(tmp_path / "w.pt", tmp_path / "w.onnx", arch=f"{path}:StudentNet", trust=True, arch_args={"num_classes": 5},
                 input_shape="1,1,16,16", images=faces[:10], worker=export_worker)
    parity = read_sidecar(out)["parity"]
    assert parity["real_images"] == 10 and parity["real_max_abs_diff"] <= 1e-4
    assert parity["max_abs_diff"] >= parity["real_max_abs_diff"]
