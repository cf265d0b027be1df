"""Tiny models and 'methods' with a known answer for the metrics tests (and benchmarks/quantus_agreement.py).

- LeftHalf: a linear two-class model that only reads the left half of the image (class 0's logit is
  a positive weighting of the left-half pixels, 0 on black, about 10 on a mid-grey image; class 1's
  is 5): its saliency ranks exactly the pixels that matter.
- SquareSum: out_k = w_k * sum(x^2) + b_k: its saliency 2 |w_k| |x| is the image times a constant
  whatever the weights (an edge detector in disguise).
- noise_maps / edge_detector: 'methods' with the method signature that ignore the model.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

SIZE = 16


class LeftHalf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        w = torch.rand(SIZE, SIZE, generator=g) + 0.5
        w[:, SIZE // 2:] = 0.0
        self.fc = nn.Linear(SIZE * SIZE, 2)
        with torch.no_grad():  # class 0: logit 0 (black) .. ~10 (image); class 1: constant 5
            self.fc.weight.zero_()
            self.fc.weight[0] = w.flatten() * (40.0 / (SIZE * SIZE))
            self.fc.bias.copy_(torch.tensor([0.0, 5.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


class SquareSum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.fc = nn.Linear(1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x * x).flatten(1).sum(1, keepdim=True))


def noise_maps(model, x, targets, *, batch_size, seed):
    """A 'method' that ignores the model: seeded Gaussian noise."""
    return np.random.default_rng(seed).normal(size=(len(x), model.spec.height, model.spec.width)).astype(np.float32)


def edge_detector(model, x, targets, *, batch_size, seed):
    """Adebayo et al.'s edge detector: Sobel gradient magnitude of the image, no model involved."""
    pix = model.spec.model_to_pixels(x).mean(axis=-1)
    gx = np.stack([cv2.Sobel(p, cv2.CV_32F, 1, 0) for p in pix])
    gy = np.stack([cv2.Sobel(p, cv2.CV_32F, 0, 1) for p in pix])
    return np.hypot(gx, gy).astype(np.float32)
