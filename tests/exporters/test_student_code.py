"""Finding the model classes in a student's scripts and rebuilding one without running the rest."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from onnxplain.engine.errors import BadInputError, UnsupportedModelError
from onnxplain.exporters import arch, student_code
from tests.exporters.student_scripts import TRAIN_PY, TWINS_PY, build, write_student


@pytest.fixture()
def student(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "MARKER.txt"
    return write_student(tmp_path / "alice", marker), marker


def test_model_classes_are_found_without_running_anything(student) -> None:
    path, marker = student
    files = student_code.read_files(student_code.python_files(path.parent))
    classes = student_code.model_classes(files)
    assert [c.name for c in classes] == ["Attention", "ConvNet"]  # the Dataset class is not a module
    assert classes[1].path == path and classes[1].line > 1
    assert not marker.exists()


def test_class_source_holds_only_what_the_class_needs(student) -> None:
    path, marker = student
    files = student_code.read_files(student_code.python_files(path.parent))
    convnet = next(c for c in student_code.model_classes(files) if c.name == "ConvNet")
    source = student_code.class_source(files, convnet)
    for needed in ("class ConvNet", "class Attention", "def head_size", "WIDTH = 4", "def conv_block",
                   "import torch.nn as nn", "import torch\n"):
        assert needed in source, needed
    for absent in ("not_an_installed_package_xyz", "parse_args", "read_csv", "MARKER", "FERDataset", "torch.save",
                   "for epoch"):
        assert absent not in source, absent


def test_built_class_equals_the_authors_and_the_top_level_never_runs(student) -> None:
    path, marker = student
    files = student_code.read_files(student_code.python_files(path.parent))
    convnet = next(c for c in student_code.model_classes(files) if c.name == "ConvNet")
    cls = student_code.build_class(files, convnet)
    torch.manual_seed(0)
    ours = cls(7).eval()
    reference = build(TRAIN_PY, "ConvNet", 7).eval()
    reference.load_state_dict(ours.state_dict())
    x = torch.rand(3, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))
    assert not marker.exists(), "the script's top level (or layers.py's) ran"


def test_candidates_need_trust_and_name_the_classes(student) -> None:
    path, marker = student
    with pytest.raises(UnsupportedModelError, match=r"model class from the student's code.*Attention, ConvNet.*trust=True"):
        arch.candidates(str(path.parent), trust=False, what="w.pth")
    with pytest.raises(BadInputError, match=r"no model class 'Resnet'; its model classes: Attention, ConvNet"):
        arch.candidates(f"{path}:Resnet", trust=True, what="w.pth")
    found = arch.candidates(f"{path}:ConvNet", trust=True, what="w.pth")
    assert [c.label.split()[0] for c in found] == ["ConvNet"]
    # torchvision is a library, not student code: no --trust needed
    assert arch.candidates("torchvision.models:squeezenet1_1", trust=False, what="w.pth")[0].factory.__name__ == \
        "squeezenet1_1"
    assert not marker.exists()


def test_python2_and_identical_copies(tmp_path: Path) -> None:
    (tmp_path / "old.py").write_text("print 'hello'\n")
    (tmp_path / "a.py").write_text(TWINS_PY)
    (tmp_path / "b.py").write_text(TWINS_PY)  # the same classes pasted into a second file
    files = student_code.read_files(student_code.python_files(tmp_path))
    assert next(f for f in files if f.path.name == "old.py").error.startswith("old.py line 1")
    assert [c.name for c in student_code.model_classes(files)] == ["TwinA", "TwinB"]


def test_python_files_skip_virtualenvs(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text("x = 1\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "torch.py").write_text("x = 2\n")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "site.py").write_text("x = 3\n")
    assert student_code.python_files(tmp_path) == [tmp_path / "model.py"]


def test_a_library_model_subclass_is_a_candidate(tmp_path: Path) -> None:
    """`class MyResNet(models.ResNet)` inherits forward: still a model class."""
    (tmp_path / "net.py").write_text("from torchvision import models\n\n\nclass MyResNet(models.ResNet):\n"
                                     "    def __init__(self):\n        super().__init__(models.resnet.BasicBlock, "
                                     "[1, 1, 1, 1], num_classes=7)\n")
    files = student_code.read_files([tmp_path / "net.py"])
    (cls,) = student_code.model_classes(files)
    net = student_code.build_class(files, cls)().eval()
    assert cls.name == "MyResNet" and net(torch.rand(1, 3, 32, 32)).shape == (1, 7)


ARGPARSE_PY = '''
import argparse
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--width", type=int, default=6)
parser.add_argument("--epochs", type=int, default=30)
args = parser.parse_args()
open(MARKER, "w").write("trained")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, args.width, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))
'''


def test_a_class_configured_by_argparse_gets_its_defaults(tmp_path: Path) -> None:
    """`args.width` in the class: the parser and its add_argument calls come along, and parse_args() sees no
    command line (the export process's own arguments must not reach it)."""
    marker = tmp_path / "marker"
    (tmp_path / "train.py").write_text(ARGPARSE_PY.replace("MARKER", repr(str(marker))))
    files = student_code.read_files([tmp_path / "train.py"])
    (cls,) = student_code.model_classes(files)
    assert "add_argument('--width'" in student_code.class_source(files, cls)
    net = student_code.build_class(files, cls)()
    assert net.conv.out_channels == 6 and not marker.exists()


def test_classes_in_a_notebook(tmp_path: Path) -> None:
    """Students hand in notebooks: code cells are read (magics and shell lines blanked, markdown skipped)."""
    import json

    cells = [{"cell_type": "markdown", "source": ["# My CNN\n", "class NotCode(nn.Module): pass"]},
             {"cell_type": "code", "source": ["%matplotlib inline\n", "!pip install torch\n", "import torch.nn as nn\n"]},
             {"cell_type": "code", "source": "%%time\nmodel.fit(x)"},
             {"cell_type": "code", "source": ["class Tiny(nn.Module):\n", "    def __init__(self):\n",
                                              "        super().__init__()\n", "        self.fc = nn.Linear(4, 2)\n",
                                              "    def forward(self, x):\n", "        return self.fc(x)\n"]}]
    (tmp_path / "hw3.ipynb").write_text(json.dumps({"cells": cells, "nbformat": 4}))
    assert student_code.python_files(tmp_path) == [tmp_path / "hw3.ipynb"]
    files = student_code.read_files(student_code.python_files(tmp_path))
    (cls,) = student_code.model_classes(files)
    assert cls.name == "Tiny" and student_code.build_class(files, cls)().fc.in_features == 4
