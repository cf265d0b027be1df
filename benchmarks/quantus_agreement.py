"""Quantus as an oracle for onnxplain's metrics (a script, not a test: Quantus is not a dependency).

Quantus 0.6.0 cannot join the `test` extra: it requires `opencv-python`, whose `cv2` package
overwrites the `opencv-python-headless` one the project uses (the GUI build that then wins links
Qt and libGL, which servers lack), and its AUC helper calls `np.trapz`, removed in NumPy 2.4.
Run it from a side folder instead, leaving the environment untouched:

    .venv/bin/pip install --no-deps --target /tmp/quantus quantus pandas cachetools
    PYTHONPATH=/tmp/quantus .venv/bin/python benchmarks/quantus_agreement.py

(`--no-deps` keeps opencv-python out; with it `pip check` reports quantus' missing opencv-python,
which is why the side folder, not the project's environment.)

What it compares, on the same tiny seeded CNN (its ONNX for onnxplain, the torch module for Quantus)
and the same maps:
1. Pixel flipping (Quantus `PixelFlipping`, black baseline = the image minimum, one pixel per step,
   softmax scores) against onnxplain's deletion curve with steps = H*W on images whose minimum is
   black, for the tiny CNN and for the left-half model (whose scores sweep 0..1): the curves must
   agree point by point (Quantus on the original torch modules).
2. Model parameter randomisation (Quantus `MPRT`, top-down cascading, Spearman, abs): onnxplain's
   `spearman` on the very maps Quantus computed for its randomised models must give Quantus'
   scores; and the verdicts (mean Spearman at full randomisation vs 0.5) of both tools must agree
   on a real CNN's saliency (not flagged) and on input-times-constant saliency (flagged), although
   the two randomise differently (Quantus: torch `reset_parameters`; onnxplain: same-scale random
   values in the ONNX graph).
Prints a markdown table; exits 1 when an agreement fails.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Quantus imports TensorFlow when it is installed (the keras extra is), and TensorFlow's LLVM clashes
# with triton's, which torch.onnx loads ("Option registered more than once"): hide TensorFlow.
sys.modules["tensorflow"] = None  # type: ignore[assignment]
import quantus  # noqa: E402

from onnxplain.engine import Model, explain, make_explanation  # noqa: E402
from onnxplain.engine.metrics import deletion_insertion, randomisation_check, spearman  # noqa: E402
from tests.conftest import DATA, export_onnx, make_tiny_cnn  # noqa: E402
from tests.engine.metrics_models import SIZE, LeftHalf, SquareSum  # noqa: E402


def torch_saliency(model: nn.Module, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """|d score / d x| (N, 1, H, W), the explain_func Quantus calls on each randomised model."""
    x = torch.tensor(np.asarray(inputs), dtype=torch.float32, requires_grad=True)
    out = model(x)
    out[torch.arange(len(x)), torch.as_tensor(np.asarray(targets), dtype=torch.long)].sum().backward()
    return x.grad.abs().numpy()


def pixel_flipping(model: Model, module: nn.Module, x: np.ndarray, maps: np.ndarray,
                   targets: np.ndarray) -> tuple[float, float, float]:
    """(max |ours - Quantus'| over all curve points, lowest and highest score on the curves)."""
    e = make_explanation(model, "given", x, targets, maps, params={})
    ours = deletion_insertion(model, e, steps=SIZE * SIZE, baseline="black", random_reference=False)
    metric = quantus.PixelFlipping(features_in_step=1, perturb_baseline="black", normalise=True, abs=False,
                                   disable_warnings=True)
    theirs = np.array(metric(model=module, x_batch=x, y_batch=targets, a_batch=maps[:, None], softmax=True,
                             channel_first=True, device="cpu"))
    return float(np.abs(ours.deletion[:, 1:] - theirs).max()), float(theirs.min()), float(theirs.max())


def mprt(module: nn.Module, x: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(max |our spearman - Quantus'| on Quantus' own maps, Quantus' mean Spearman at full randomisation)."""
    seen: list[np.ndarray] = []

    def explain_func(model, inputs, targets, **kwargs):
        a = torch_saliency(model, inputs, targets)
        seen.append(a[:, 0])
        return a

    metric = quantus.MPRT(layer_order="top_down", seed=0, abs=True, normalise=True, disable_warnings=True)
    scores = metric(model=module, x_batch=x, y_batch=targets, a_batch=None, explain_func=explain_func,
                    channel_first=True, device="cpu", softmax=False)
    original, stages = seen[0], seen[2:]  # [a_batch, original again, one per randomised layer]
    layer_scores = [np.asarray(v) for k, v in scores.items() if k != "original"]
    diff = max(float(np.abs(spearman(original, maps) - ref).max()) for maps, ref in zip(stages, layer_scores))
    return diff, float(layer_scores[-1].mean())


def main() -> int:
    faces = np.load(DATA / "skimage_lfw_subset_200x25x25.npy")[:6]
    rows, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        cnn = make_tiny_cnn(seed=0)
        cnn_model = Model(export_onnx(cnn, Path(tmp) / "cnn.onnx", (2, 1, SIZE, SIZE)))
        left = LeftHalf().eval()
        left_model = Model(export_onnx(left, Path(tmp) / "left.onnx", (2, 1, SIZE, SIZE)))
        for mname, module, model in (("tiny CNN", cnn, cnn_model), ("left-half model", left, left_model)):
            x = model.spec.to_model_input(faces)
            x[:, 0, 0, 0] = 0.0  # a black pixel in every image: Quantus' "black" (the minimum) is then ours
            targets = model.predict(x).argmax(axis=1)
            sal = explain(model, x, "saliency", targets, preprocessed=True).maps
            noise = np.random.default_rng(0).normal(size=sal.shape).astype(np.float32)
            for name, maps in (("saliency", sal), ("noise", noise)):
                d, lo, hi = pixel_flipping(model, module, x, maps, targets)
                rows.append((f"pixel flipping vs deletion curve, {mname}, {name} maps (6 x 256 points)",
                             f"max abs diff {d:.2e} (scores span {lo:.3f} .. {hi:.3f})"))
                ok &= d < 1e-4

        square = SquareSum().eval()
        square_model = Model(export_onnx(square, Path(tmp) / "square.onnx", (2, 1, SIZE, SIZE)))
        for name, module, model in (("tiny CNN", cnn, cnn_model), ("input x constant", square, square_model)):
            tx = model.spec.to_model_input(faces)
            tt = model.predict(tx).argmax(axis=1)
            diff, quantus_last = mprt(module, tx, tt)
            ours = randomisation_check(model, tx, "saliency", targets=tt, preprocessed=True, keep_maps=False)
            rows.append((f"MPRT spearman on Quantus' maps, {name}", f"max abs diff {diff:.2e}"))
            rows.append((f"MPRT verdict, {name}", f"Quantus {quantus_last:.3f}, onnxplain {ours.final_spearman:.3f} "
                         f"(flagged: {quantus_last > 0.5} / {ours.flagged})"))
            ok &= diff < 1e-5 and (quantus_last > 0.5) == ours.flagged
    print(f"Quantus {quantus.__version__}, numpy {np.__version__}, torch {torch.__version__}\n")
    print("| comparison | result |\n| --- | --- |")
    for what, result in rows:
        print(f"| {what} | {result} |")
    print(f"\nagreement: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
