"""How fast is the torch module the bridge builds? Plain onnx2torch vs onnxplain's optimised module
(forward+backward, what every gradient method pays) vs onnxruntime (forward only), in images/s.

    .venv/bin/python -m benchmarks.torch_bridge_speed [--models o01,o03,k01] [--batches 1,64,512] [--device cpu]

Models: zoo o01 (tf2onnx, NHWC 48x48x1), o03 (PyTorch, NCHW 1x28x28) and a tf2onnx export of zoo k01
(Keras 2.0.5 mini-Xception: separable convs, BatchNorm, residual Adds), made here as the issue states
it: `tf_keras.models.load_model` + `tf2onnx.convert.from_keras(opset=17, input_signature=(None,48,48,1))`.
"plain" is `onnx2torch.convert(model)` on the file as it is (what Captum is compared on); "optimised"
is `engine.torch_bridge.to_torch(model)`. Each row checks the modules' outputs against onnxruntime
first. Timings go through `onnxplain.benchmarks.timing.time_call`; the table gives the best of the
repeats (on a shared machine the slower runs measure the other tenants); prints a markdown table.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .run import zoo_file

K01_SIGNATURE = (None, 48, 48, 1)


def export_k01(out: Path) -> None:
    """zoo k01 through tf2onnx at opset 17 (run in a child process: TensorFlow's and torch's LLVM
    cannot share one process)."""
    import tensorflow as tf
    import tf2onnx
    import tf_keras

    keras_model = tf_keras.models.load_model(str(zoo_file("k01")), compile=False)
    signature = (tf.TensorSpec(K01_SIGNATURE, tf.float32, name="input"),)
    tf2onnx.convert.from_keras(keras_model, input_signature=signature, opset=17, output_path=str(out))


def model_file(key: str, folder: Path) -> Path:
    if key != "k01":
        return zoo_file(key)
    out = folder / "k01_tf2onnx_opset17.onnx"
    subprocess.run([sys.executable, "-m", "benchmarks.torch_bridge_speed", "--export-k01", str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def fwd_bwd(module: Any, x: Any) -> Callable[[], None]:
    """One forward and backward to the input: the unit of work of saliency, IG, SmoothGrad, Grad-CAM."""

    def run() -> None:
        xg = x.detach().requires_grad_(True)
        out = module(xg)
        out = out[0] if isinstance(out, (tuple, list)) else out
        out[:, 0].sum().backward()

    return run


def bench_model(key: str, path: Path, batches: Sequence[int], device: str, repeats: int,
                budget: float, threads: int) -> list[list[str]]:
    import onnx
    import onnx2torch
    import torch

    from onnxplain.engine import Model
    from onnxplain.benchmarks.timing import device_sync, time_call
    from onnxplain.engine.torch_bridge import to_torch

    model = Model(path, device=device, threads=threads or None)
    proto = onnx.load(path)
    modules = {"plain onnx2torch": onnx2torch.convert(proto).eval(), "optimised": to_torch(proto)}
    sync = device_sync(device)
    rng = np.random.default_rng(0)
    rows = []
    for name, module in modules.items():
        module.to(model.torch_device)
        for p in module.parameters():
            p.requires_grad_(False)
    for batch in batches:
        pixels = rng.uniform(0, 255, (batch, model.spec.height, model.spec.width, model.spec.channels))
        x = model.spec.pixels_to_model(pixels.astype(np.float32))
        ref = model.predict(x, batch_size=batch)
        xt = torch.from_numpy(x).to(model.torch_device)
        speeds = [best(time_call(lambda: model.predict(x, batch_size=batch), repeats=repeats, images=batch,
                                 budget_s=budget))]
        for name, module in modules.items():
            with torch.no_grad():
                got = module(xt).float().cpu().numpy()
            diff = float(np.abs(got - ref).max())
            if diff > 1e-4:
                raise SystemExit(f"{key} {name}: differs from onnxruntime by {diff:.2e}")
            with torch.no_grad():
                speeds.append(best(time_call(lambda: module(xt), repeats=repeats, sync=sync, images=batch,
                                             budget_s=budget)))
            speeds.append(best(time_call(fwd_bwd(module, xt), repeats=repeats, sync=sync, images=batch,
                                         budget_s=budget)))
        ort, plain_f, plain_fb, opt_f, opt_fb = speeds
        row = [key, str(batch)] + [f"{v:,.0f}" for v in (ort, plain_f, opt_f, plain_fb, opt_fb)]
        row += [f"{opt_fb / plain_fb:.1f}x", f"{ort / opt_f:.1f}x"]
        rows.append(row)
        print(" | ".join(row), file=sys.stderr)
    return rows


def best(timing: Any) -> float:
    """Images/s of the fastest run: on a shared machine the slower runs measure the other tenants."""
    return timing.images / min(timing.samples)


def markdown(rows: list[list[str]], device: str) -> str:
    head = ["model", "batch", "onnxruntime fwd", "plain fwd", "optimised fwd", "plain fwd+bwd",
            "optimised fwd+bwd", "optimised/plain (fwd+bwd)", "onnxruntime/optimised (fwd)"]
    lines = [f"torch bridge speed on {device}: images/s, best of the repeats; fwd+bwd = forward and "
             f"backward to the input", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.torch_bridge_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="o01,o03,k01")
    ap.add_argument("--batches", default="1,64,512")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per measurement before repeating stops")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for torch and onnxruntime (0: their defaults); 1 is steadier on a busy machine")
    ap.add_argument("--export-k01", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.export_k01 is not None:
        export_k01(args.export_k01)
        return 0
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="bridge_speed_") as tmp:
        paths = {key: model_file(key, Path(tmp)) for key in args.models.split(",")}
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        rows = []
        for key, path in paths.items():
            rows += bench_model(key, path, batches, args.device, args.repeats, args.budget, args.threads)
    print(markdown(rows, args.device + (f", {args.threads} thread(s)" if args.threads else "")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
