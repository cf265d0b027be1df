"""`onnxplain report` at real Food-11 size: a MobileNet-like net (11 classes,
seeded random weights) exported from a TorchScript file at 1x3x224x224, and a Food-11 style folder of
colour JPEGs `<class>_<i>.jpg` cut from the two real photos in ../shared/data. Prints the wall time
and what each section of the report cost (report.json's per-section seconds).

    .venv/bin/python -m benchmarks.report_real_size --out /tmp/food --per-class 1
    .venv/bin/python -m benchmarks.report_real_size --out /tmp/food --sections evaluation,saliency

Why a stand-in: the real Food-11 models the issue timed are not in the zoo; this one has their input
size, class count and architecture family, which is what the report's cost depends on.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ONNXPLAIN_SHARED", ROOT.parent / "shared")) / "data"
SIZE = 224
CLASSES = 11


def make_images(folder: Path, per_class: int, seed: int = 0) -> Path:
    """`per_class` colour 224x224 JPEGs per class, random crops of the two real photos (scaled, flipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = [cv2.imread(str(DATA / "skimage_astronaut.png")), cv2.imread(str(DATA / "oarriaga_12_angry_men.jpg"))]
    rng = np.random.default_rng(seed)
    for k in range(CLASSES):
        for i in range(per_class):
            photo = photos[(k + i) % 2]
            h, w = photo.shape[:2]
            side = int(rng.integers(min(h, w) // 3, min(h, w)))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = cv2.resize(photo[y:y + side, x:x + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            cv2.imwrite(str(folder / f"{k}_{i}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def mobilenet_like(classes: int = CLASSES) -> "torch.nn.Module":
    """A small MobileNet-v1-style net: a stride-2 stem, six depthwise-separable blocks (four of them stride
    2), global average pooling, one linear layer; 16-256 channels, about 0.2 M parameters and 25 MFLOPs at
    224x224. Sized on the issue's own figure: its occlusion (3,025 windows x 11 images in 44 s) means about
    1.3 ms per forward pass, which this net takes here, where mobilenet_v2 (300 MFLOPs) takes over 10x more."""
    from torch import nn

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]

    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6()]
    for cin, cout, stride in ((16, 32, 2), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2)):
        layers += block(cin, cout, stride)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, classes))


def make_model(path: Path, arch: str = "mobilenet-like", seed: int = 0) -> Path:
    """The net with seeded weights, traced to TorchScript (then exported by onnxplain)."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    net = (torchvision.models.mobilenet_v2(num_classes=CLASSES) if arch == "mobilenet_v2" else mobilenet_like()).eval()
    with torch.no_grad():  # BatchNorm statistics that keep activations in range, as a trained net has
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.jit.trace(net, torch.rand(1, 3, SIZE, SIZE)).save(str(path))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=1)
    ap.add_argument("--images", type=int, default=5, help="images per class in the data folder")
    ap.add_argument("--sections", default=None, help="passed to report --sections")
    ap.add_argument("--arch", choices=("mobilenet-like", "mobilenet_v2"), default="mobilenet-like")
    ap.add_argument("--onnxplain", default=str(Path(sys.executable).with_name("onnxplain")),
                    help="the onnxplain to time (another checkout's, for a before/after)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "food11"
    if not data.exists():
        make_images(data, args.images)
    pt = args.out / f"{args.arch}_food11.pt"
    onnx_path = args.out / f"{args.arch}_food11.onnx"
    exe = args.onnxplain
    if not onnx_path.exists():
        make_model(pt, args.arch)
        subprocess.run([exe, "export", str(pt), "-o", str(onnx_path), "--input-shape", f"1,3,{SIZE},{SIZE}",
                        "--labels", "food11", "--quiet"], check=True)
    cmd = [exe, "report", str(onnx_path), "--data", str(data), "--per-class", str(args.per_class),
           "--out", str(args.out / f"report-{time.strftime('%H%M%S')}"), "--quiet", "--json"]
    if args.sections:
        cmd += ["--sections", args.sections]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    report = json.loads((Path(cmd[cmd.index("--out") + 1]) / "report.json").read_text())
    sections = {k: v.get("seconds") for k, v in report["sections"].items()}
    result = {"wall_seconds": round(wall, 1), "report_seconds": round(report["seconds"], 1),
              "per_class": args.per_class, "arch": args.arch, "onnxplain": exe, "images": len(list(data.glob("*.jpg"))), "sections": sections,
              "command": " ".join(cmd)}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
