"""PyTorch files as students hand them in, exported with no --arch, no --input-shape, no --weights-key:
the class found in their scripts without running them, the input size inferred, every checkpoint kind
and vintage (nested dicts with label maps, fp16, pre-1.6 files with CUDA storages, DataParallel)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from onnxplain.engine import Model
from onnxplain.engine.errors import BadInputError, UnsupportedModelError
from onnxplain.exporters import ExportWorker, export
from tests.exporters.export_helpers import onnx_outputs, read_sidecar
from tests.exporters.student_scripts import (
    POOLED_PY, PRETRAINED_PY, TRAIN_PY, TWINS_PY, build, write_student,
)

pytestmark = pytest.mark.slow
FER = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]


@pytest.fixture()
def alice(tmp_path: Path):
    """(folder with train.py + layers.py, marker path, the trained-looking ConvNet(7))."""
    marker = tmp_path / "MARKER.txt"
    folder = tmp_path / "alice"
    write_student(folder, marker)
    torch.manual_seed(1)
    net = build(TRAIN_PY, "ConvNet", 7).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return folder, marker, net


def _same_outputs(onnx_path: Path, net: torch.nn.Module, shape: tuple[int, ...], atol: float = 1e-5) -> None:
    x = np.random.default_rng(0).uniform(0, 1, size=(4, *shape)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(onnx_outputs(onnx_path, x), net(torch.from_numpy(x)).numpy(), atol=atol)


@contextlib.contextmanager
def _saved_as_if_on_cuda():
    """torch.save records each storage's device; pretend it was a GPU, as files from Colab are."""
    import torch.serialization as ser

    original = ser.location_tag
    ser.location_tag = lambda storage: "cuda:0"
    try:
        yield
    finally:
        ser.location_tag = original


def test_training_checkpoint_beside_the_script(alice, export_worker: ExportWorker, tmp_path: Path) -> None:
    """{model_state, optimizer_state, epoch, config, label_map}: class, arguments, input size, weights key
    and class names all found; the script's top level never runs."""
    folder, marker, net = alice
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.rand(2, 1, 48, 48)).sum().backward()
    optimizer.step()  # a real optimizer state (its tensors must not pass for the model's)
    torch.save({"model_state": net.state_dict(), "optimizer_state": optimizer.state_dict(), "epoch": 30,
                "config": {"lr": 1e-3, "batch": 64}, "label_map": {name: i for i, name in enumerate(FER)}},
               folder / "best.pth")
    with pytest.raises(UnsupportedModelError, match=r"model class from the student's code \(layers\.py, train\.py "
                                                    r"\(classes Attention, ConvNet\)\).*trust=True"):
        export(folder / "best.pth", tmp_path / "a.onnx", worker=export_worker)
    out = export(folder / "best.pth", tmp_path / "a.onnx", trust=True, worker=export_worker)
    source = read_sidecar(out)["source"]
    assert source["model_class"].startswith("ConvNet (train.py:") and source["arch_args"] == {"num_type": 7}
    assert source["weights_key"] == "model_state" and "1x48x48" in source["input_inferred"]
    assert Model(out).spec.labels == tuple(FER)
    _same_outputs(out, net, (1, 48, 48))
    assert not marker.exists()


def test_arch_file_needs_trust_and_runs_only_the_class(alice, export_worker: ExportWorker, tmp_path: Path) -> None:
    folder, marker, net = alice
    torch.save(net.state_dict(), tmp_path / "w.pth")  # no .py beside it: --arch says where
    with pytest.raises(UnsupportedModelError, match="trust=True"):
        export(tmp_path / "w.pth", tmp_path / "w.onnx", arch=f"{folder / 'train.py'}:ConvNet", worker=export_worker)
    out = export(tmp_path / "w.pth", tmp_path / "w.onnx", arch=f"{folder / 'train.py'}:ConvNet",
                 input_shape="1,1,48,48", trust=True, worker=export_worker)
    _same_outputs(out, net, (1, 48, 48))
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["fp16", "legacy_cuda", "zip_cuda", "data_parallel", "nested", "numpy_extras"])
def test_every_vintage_of_weights(kind: str, alice, export_worker: ExportWorker, tmp_path: Path) -> None:
    folder, marker, net = alice
    state = net.state_dict()
    path = folder / "weights.pt"
    if kind == "fp16":
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, path)
    elif kind in ("legacy_cuda", "zip_cuda"):
        with _saved_as_if_on_cuda():
            torch.save(state, path, _use_new_zipfile_serialization=kind == "zip_cuda")
    elif kind == "data_parallel":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif kind == "nested":
        torch.save({"checkpoint": {"network": {"weights": state}}, "idx_to_class": {str(i): n for i, n in enumerate(FER)}},
                   path)
    else:  # what training scripts put beside the weights: argparse options and numpy scalars
        import argparse

        torch.save({"net": state, "args": argparse.Namespace(lr=0.01, epochs=30), "best_acc": np.float64(0.68),
                    "classes": FER}, path)
    out = export(path, tmp_path / "w.onnx", trust=True, worker=export_worker)
    side = read_sidecar(out)
    if kind == "fp16":
        assert side["source"]["weights_dtype"] == "float16"
        net = net.half().float()  # what the file holds
    if kind in ("nested", "numpy_extras"):
        assert Model(out).spec.labels == tuple(FER)
    if kind == "nested":
        assert side["source"]["weights_key"] == "checkpoint/network/weights"
    _same_outputs(out, net, (1, 48, 48), atol=1e-4)
    assert not marker.exists()


def test_legacy_cuda_file_needs_map_location(alice, tmp_path: Path) -> None:
    """The fixture really is a CUDA-saved file: plain torch.load fails on this CPU-only machine."""
    _, _, net = alice
    with _saved_as_if_on_cuda():
        torch.save(net.state_dict(), tmp_path / "cuda.pt", _use_new_zipfile_serialization=False)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "cuda.pt", weights_only=True)


def test_classes_that_fit_equally_or_not_at_all(export_worker: ExportWorker, tmp_path: Path) -> None:
    (tmp_path / "twins.py").write_text(TWINS_PY)
    torch.save(build(TWINS_PY, "TwinA").state_dict(), tmp_path / "w.pth")
    with pytest.raises(BadInputError, match=r"fit several model classes \(TwinA \(twins\.py:\d+\), TwinB "
                                            r"\(twins\.py:\d+\)\).*arch='FILE\.py:CLASS'"):
        export(tmp_path / "w.pth", tmp_path / "w.onnx", trust=True, input_shape="1,1,16,16", worker=export_worker)
    out = export(tmp_path / "w.pth", tmp_path / "w.onnx", trust=True, arch=f"{tmp_path / 'twins.py'}:TwinB",
                 input_shape="1,1,16,16", worker=export_worker)
    _same_outputs(out, _twin(tmp_path), (1, 16, 16))
    other = tmp_path / "other"
    other.mkdir()
    (other / "twins.py").write_text(TWINS_PY)
    torch.save({"conv.weight": torch.zeros(4, 1, 5, 5), "conv.bias": torch.zeros(4), "head.weight": torch.zeros(7, 4)},
               other / "w.pth")
    with pytest.raises(UnsupportedModelError, match=r"no model class fits the weights of w\.pth \(3 tensors\): "
                                                    r"TwinA.*wrong shape 1 \(conv\.weight \(4, 1, 5, 5\) vs "
                                                    r"\(4, 1, 3, 3\)\)"):
        export(other / "w.pth", tmp_path / "o.onnx", trust=True, input_shape="1,1,16,16", worker=export_worker)


def _twin(folder: Path) -> torch.nn.Module:
    net = build(TWINS_PY, "TwinB").eval()
    net.load_state_dict(torch.load(folder / "w.pth", weights_only=True))
    return net


def test_input_size_from_the_data_or_the_one_that_runs(export_worker: ExportWorker, tmp_path: Path) -> None:
    (tmp_path / "pooled.py").write_text(POOLED_PY)
    torch.manual_seed(0)
    net = build(POOLED_PY, "Pooled").eval()
    torch.save(net.state_dict(), tmp_path / "w.pth")
    with pytest.raises(BadInputError, match=r"runs on several \(3x28x28, 3x32x32, .*3x256x256\); "
                                            r"pass input_shape='1,3,H,W'"):
        export(tmp_path / "w.pth", tmp_path / "w.onnx", trust=True, worker=export_worker)
    out = export(tmp_path / "w.pth", tmp_path / "w.onnx", trust=True, data_shape=(3, 64, 64), worker=export_worker)
    assert (Model(out).spec.height, Model(out).spec.channels) == (64, 3)
    assert read_sidecar(out)["source"]["input_inferred"] == "3x64x64, the size of the data"
    varied = export(tmp_path / "w.pth", tmp_path / "v.onnx", trust=True, data_shape=(3, 0, 0), worker=export_worker)
    assert Model(varied).spec.height == 224 and "ImageNet" in read_sidecar(varied)["source"]["input_inferred"]
    gray = export(tmp_path / "w.pth", tmp_path / "g.onnx", trust=True, data_shape=(1, 48, 48), worker=export_worker)
    assert (Model(gray).spec.height, Model(gray).spec.channels) == (48, 3)  # the model's channels, the data's size
    _same_outputs(gray, net, (3, 48, 48))


def test_pretrained_constructor_builds_offline(export_worker: ExportWorker, tmp_path: Path) -> None:
    """`squeezenet1_1(weights="IMAGENET1K_V1")` in __init__ would download; the student's weights replace them."""
    (tmp_path / "food.py").write_text(PRETRAINED_PY)
    import torchvision

    torch.manual_seed(0)
    backbone = torchvision.models.squeezenet1_1(num_classes=11).eval()
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    torch.save(state, tmp_path / "food.pth")
    out = export(tmp_path / "food.pth", tmp_path / "f.onnx", trust=True, data_shape=(3, 0, 0), worker=export_worker)
    source = read_sidecar(out)["source"]
    assert source["model_class"].startswith("FoodNet") and source.get("arch_args") in (None, {})
    assert Model(out).spec.height == 224
    x = np.random.default_rng(0).uniform(0, 1, size=(2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(onnx_outputs(out, x), backbone(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_lightning_checkpoint_with_its_hyper_parameters(export_worker: ExportWorker, tmp_path: Path) -> None:
    """A Lightning module wrapping the student's net (`model.` before every key), built with its checkpoint's
    hyper_parameters, saved under torch.compile (`_orig_mod.`), with a BatchNorm from before torch 0.4.1
    (no num_batches_tracked)."""
    (tmp_path / "lit.py").write_text(POOLED_PY + '''

import pytorch_lightning as pl   # not installed here


class Lit(pl.LightningModule):
    def __init__(self, classes):
        super().__init__()
        self.model = Pooled(3, classes)
''')
    torch.manual_seed(0)
    net = build(POOLED_PY, "Pooled", 3, 5).eval()
    state = {f"_orig_mod.model.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"classes": 5, "in_channels": 3, "lr": 0.01},
                "pytorch-lightning_version": "1.9.0"}, tmp_path / "epoch=9.ckpt")
    out = export(tmp_path / "epoch=9.ckpt", tmp_path / "lit.onnx", trust=True, data_shape=(3, 32, 32),
                 worker=export_worker)
    source = read_sidecar(out)["source"]
    assert source["model_class"].startswith("Pooled") and source["arch_args"] == {"in_channels": 3, "classes": 5}
    _same_outputs(out, net, (3, 32, 32))


def test_old_batchnorm_without_num_batches_tracked(alice, export_worker: ExportWorker, tmp_path: Path) -> None:
    folder, _, net = alice
    old = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, folder / "old.pth", _use_new_zipfile_serialization=False)
    out = export(folder / "old.pth", tmp_path / "o.onnx", trust=True, worker=export_worker)
    _same_outputs(out, net, (1, 48, 48))
