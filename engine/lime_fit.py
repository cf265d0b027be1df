"""LIME's local model in closed form: lime's kernel and its weighted ridge, for many images and
every class at once.

What the lime package fits for an image (`LimeImageExplainer.explain_instance` with its defaults
`num_features=100000`, `feature_selection='auto'`): 'auto' picks 'highest_weights' (more than 6
features), which fits Ridge(alpha=0.01) only to rank the features and keeps all of them (there
are fewer than 100000), then fits `Ridge(alpha=1, fit_intercept=True)` with the kernel weights as
sample weights on all features. The ranking fit changes only the column order, not the answer,
so the local model is that last ridge, which scikit-learn solves as: centre X and y by their
weighted means, scale rows by sqrt(weight), solve (Xc' W Xc + alpha I) b = Xc' W yc; the
intercept is y_mean - x_mean . b, and the score is the weighted R^2 on the same samples.

Images with fewer superpixels than the widest one are padded with all-zero columns: a zero
column stays zero after centring, so its block of the system is alpha*I and its coefficient
is exactly 0 while the others are unchanged. That lets one batched solve serve every image.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController


@functools.lru_cache(maxsize=1)
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()  # scans the loaded BLAS libraries once (~15 ms)


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """A context in which BLAS runs on one thread: LIME's products are small (S ~ 50), and a
    multi-threaded OpenBLAS beside onnxruntime's threads on a busy 2-core machine took 60-100 ms for a
    0.1 ms product."""
    return _threadpools().limit(limits=1, user_api="blas")


def lime_kernel(distances: np.ndarray, kernel_width: float = 0.25) -> np.ndarray:
    """lime_image's default kernel: sqrt(exp(-d^2 / width^2))."""
    d = np.asarray(distances, dtype=np.float64)
    return np.sqrt(np.exp(-(d**2) / float(kernel_width) ** 2))


def cosine_distance_to_ones(masks: np.ndarray, n_features: np.ndarray | int) -> np.ndarray:
    """Cosine distance of each binary row to the all-ones row (lime's `distance_metric='cosine'`).

    For a row with k ones among S features it is 1 - k / sqrt(k * S) = 1 - sqrt(k / S); an
    all-zero row is at distance 1, as scikit-learn's `cosine_distances` gives.
    `masks` is (..., n, S_max); `n_features` (...) the real feature count of each set.
    """
    k = np.asarray(masks).sum(axis=-1, dtype=np.float64)
    s = np.asarray(n_features, dtype=np.float64)[..., None]
    return np.clip(1.0 - np.sqrt(k / s), 0.0, 2.0)


@dataclass(frozen=True)
class RidgeFit:
    """Per set b and class c: coef (B, K, S), intercept (B, K), score (B, K) (weighted R^2) and
    local_pred (B, K), the local model's value on the first row (the unperturbed image)."""

    coef: np.ndarray
    intercept: np.ndarray
    score: np.ndarray
    local_pred: np.ndarray


def weighted_ridge(data: np.ndarray, labels: np.ndarray, weights: np.ndarray, alpha: float = 1.0) -> RidgeFit:
    """scikit-learn's `Ridge(alpha, fit_intercept=True).fit(data, labels, sample_weight=weights)`
    and its `score`, in closed form for B independent sets and all K label columns at once.

    data (B, n, S) or (n, S); labels (B, n, K) or (n, K); weights (B, n) or (n,).
    BLAS runs single-threaded here (`one_blas_thread`).
    """
    with one_blas_thread():
        return _weighted_ridge(data, labels, weights, alpha)


def _weighted_ridge(data: np.ndarray, labels: np.ndarray, weights: np.ndarray, alpha: float) -> RidgeFit:
    single = np.ndim(data) == 2
    X = np.asarray(data, dtype=np.float64)
    Y = np.asarray(labels, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if single:
        X, Y, w = X[None], Y[None], w[None]
    if Y.ndim == 2:
        Y = Y[..., None]
    sw = w.sum(axis=1)  # (B,)
    x_mean = np.einsum("bn,bns->bs", w, X) / sw[:, None]
    y_mean = np.einsum("bn,bnk->bk", w, Y) / sw[:, None]
    # A constant column (a saturated probability) is centred exactly: coefficients 0, R^2 1, as sklearn gets.
    constant = np.all(Y == Y[:, :1, :], axis=1)
    y_mean = np.where(constant, Y[:, 0, :], y_mean)
    Xc = X - x_mean[:, None, :]
    Yc = Y - y_mean[:, None, :]
    Xw = Xc * w[:, :, None]
    gram = np.matmul(Xw.transpose(0, 2, 1), Xc)  # (B, S, S)
    gram[:, np.arange(gram.shape[1]), np.arange(gram.shape[1])] += alpha
    rhs = np.matmul(Xw.transpose(0, 2, 1), Yc)  # (B, S, K)
    coef = np.linalg.solve(gram, rhs)  # (B, S, K)
    intercept = y_mean - np.einsum("bs,bsk->bk", x_mean, coef)
    pred = np.matmul(X, coef) + intercept[:, None, :]  # (B, n, K)
    ss_res = np.einsum("bn,bnk->bk", w, (Y - pred) ** 2)
    ss_tot = np.einsum("bn,bnk->bk", w, Yc**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        # sklearn's r2_score: a constant target scores 1 when fitted exactly, else 0.
        score = np.where(ss_tot != 0, 1.0 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    fit = RidgeFit(coef=coef.transpose(0, 2, 1), intercept=intercept, score=score, local_pred=pred[:, 0, :])
    if single:
        return RidgeFit(fit.coef[0], fit.intercept[0], fit.score[0], fit.local_pred[0])
    return fit
