"""Student scripts as they are handed in: the model class in the middle of a training script that imports
packages this machine does not have, reads a CSV and trains at module level. Running any of the top level
writes MARKER (a path filled in by `script()`), so a test can prove it never ran."""
from __future__ import annotations

import textwrap
from pathlib import Path

TRAIN_PY = textwrap.dedent('''
    import os
    import argparse
    import numpy as np
    import not_an_installed_package_xyz as pd   # pandas on the student's machine
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from layers import conv_block

    WIDTH = 4
    open(MARKER, "w").write("the top level ran")
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    data = pd.read_csv("train.csv")


    def head_size(width):
        return 2 * width * 12 * 12


    class FERDataset(torch.utils.data.Dataset):
        def __init__(self, frame):
            self.frame = frame

        def __len__(self):
            return len(self.frame)


    class Attention(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.gate = nn.Conv2d(channels, 1, 1)

        def forward(self, x):
            return x * torch.sigmoid(self.gate(x))


    class ConvNet(nn.Module):
        """Takes the number of emotions as a required argument."""

        def __init__(self, num_type):
            super().__init__()
            self.features = nn.Sequential(conv_block(1, WIDTH), conv_block(WIDTH, 2 * WIDTH))
            self.attention = Attention(2 * WIDTH)
            self.fc = nn.Linear(head_size(WIDTH), num_type)

        def forward(self, x):
            x = self.attention(self.features(x))
            return self.fc(x.view(x.size(0), -1))


    model = ConvNet(7)
    for epoch in range(args.epochs):
        for batch in data:
            pass
    torch.save(model.state_dict(), "model.pth")
''')

LAYERS_PY = textwrap.dedent('''
    import torch.nn as nn
    open(MARKER, "w").write("layers.py's top level ran")


    def conv_block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))
''')

# Two classes with the same parameters (only forward differs): the weights alone cannot tell them apart.
TWINS_PY = textwrap.dedent('''
    import torch
    from torch import nn


    class TwinA(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, 7)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


    class TwinB(TwinA):
        def forward(self, x):
            return self.fc(torch.tanh(self.conv(x)).amax(dim=(2, 3)))
''')

# A global-pooling net: it runs on every input size, so the size must come from the data.
POOLED_PY = textwrap.dedent('''
    import torch
    from torch import nn


    class Pooled(nn.Module):
        def __init__(self, in_channels=3, classes=11):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 8, 3, stride=2, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, classes)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))
''')

# A constructor that asks torch.hub for ImageNet weights (no network here): it must still build.
PRETRAINED_PY = textwrap.dedent('''
    import torchvision
    from torch import nn


    class FoodNet(nn.Module):
        def __init__(self, n_food=11):
            super().__init__()
            self.backbone = torchvision.models.squeezenet1_1(weights="IMAGENET1K_V1")
            self.backbone.classifier[1] = nn.Conv2d(512, n_food, 1)

        def forward(self, x):
            return self.backbone(x)
''')


def script(text: str, marker: Path) -> str:
    """The script with its marker path filled in."""
    return text.replace("MARKER", repr(str(marker)))


def write_student(folder: Path, marker: Path) -> Path:
    """train.py + layers.py in `folder`; returns train.py."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "layers.py").write_text(script(LAYERS_PY, marker))
    path = folder / "train.py"
    path.write_text(script(TRAIN_PY, marker))
    return path


def build(text: str, name: str, *args, **kwargs):
    """The class built the way the test's author would (exec of the class's own code, no top level)."""
    import ast

    tree = ast.parse(text)
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef))
            and not (isinstance(n, ast.ImportFrom) and n.module == "layers")
            and not (isinstance(n, ast.Import) and any("not_an_installed" in a.name for a in n.names))]
    namespace: dict = {"WIDTH": 4}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "<test>", "exec"), namespace)  # noqa: S102
    if "conv_block" not in namespace:
        exec(compile(ast.parse(LAYERS_PY.replace("open(MARKER", "# open(MARKER")), "<test>", "exec"), namespace)
    return namespace[name](*args, **kwargs)
