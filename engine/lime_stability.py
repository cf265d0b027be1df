"""How stable a LIME explanation is: the probability that its top-k superpixels, with their signs, hold.

LIME's weights come from random perturbations, so another seed gives other weights; what a reader
takes from the figure is the top-k superpixels (lime's `get_image_and_mask(num_features=k)`) and
whether each raises or lowers the score. This module estimates how likely that set is to survive a
redraw of the perturbations, from the samples already drawn:

- the covariance of the ridge coefficients over redraws of the n perturbations is the sandwich
  (heteroscedasticity-robust) estimate A^-1 (sum_i g_i g_i') A^-1, with A = Xc' W Xc + alpha I (the
  matrix the ridge solves with) and g_i = w_i r_i xc_i / (1 - h_i) each sample's kernel-weighted
  residual, corrected for its leverage h_i (HC3, the jackknife), times its centred pattern: the variance
  a resampling of the samples would find, in closed form (the fit is linear in the outputs);
- another run's coefficients differ from ours by two such errors, its own and ours (given ours, the
  truth lies about one covariance away, and another run about one more): `image_stability` draws them
  from twice the covariance. With the covariance alone the recorded probability overstated how often
  two seeds agree (o01, 1,000 samples: 74% recorded, 66% of seed pairs identical; 400 samples: 61%
  against 41%); with twice it, 63% and 44%;
- the coefficients are drawn from the normal with that covariance around the fitted ones
  (`DRAWS` draws, seeded), and the stability is the share of draws whose top-k signed set equals the
  explanation's. Common random numbers across calls keep the estimate smooth as n grows.

Superpixels whose |weight| is below `NEGLIGIBLE` (a tenth) of the largest are not counted as "top":
a model that depends on one superpixel has one clear feature and k - 1 weights of ~0, whose order is
noise that no sample count settles (the ridge's shrinkage of the one real weight leaves a residual
that moves the others by ~c/sqrt(n) of it), and the signed map draws them near white anyway.

`samples="auto"` in `methods.lime` draws perturbations in rounds and stops once the explanation is
stable enough: the idea of S-LIME (Zhou, Hooker and Wang, KDD 2021), which picks LIME's sample count
with a test that the selected features are stable, here for the top-k set of a ridge. Its patterns
come in complementary pairs (`methods.lime.paired_masks`), so its covariance (`paired_covariance`) is
clustered by pair, with the jackknife's leverage correction: at 50-300 samples of ~45 superpixels the
fit's residuals are much smaller than fresh samples' errors, and the plain sandwich above made the
rule stop at ~50 samples on explanations whose top five changed from seed to seed (Jaccard 0.25). It
stops on the expected Jaccard index of the signed top-k set with a redraw (`expected_jaccard`), the
measure the benchmark compares with the lime package, rather than on the exact-set probability, which
asks for far more samples than the lime package's 1,000 give. The pair-clustered jackknife is
conservative enough that its own covariance already predicts how often seeds agree (benchmark: 70%
recorded against 68-80% of seed pairs identical), so it is not doubled; AUTO_JACCARD was set on it.
"""
from __future__ import annotations

import numpy as np

from .lime_fit import one_blas_thread

DRAWS = 1000
NEGLIGIBLE = 0.1
_STREAM = 0x57AB  # the draws' random stream, apart from the one the perturbations come from


def top_set(weights: np.ndarray, k: int) -> np.ndarray:
    """Signed membership (..., S) int8: sign(w) for the k largest |w| (stable order, as `top_masks`)
    that are at least NEGLIGIBLE of the largest |w|, 0 elsewhere. NaN (padding) never counts."""
    w = np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0)
    mag = np.abs(w)
    out = np.zeros(w.shape, dtype=np.int8)
    if k <= 0 or w.shape[-1] == 0:
        return out
    order = np.argsort(-mag, axis=-1, kind="stable")[..., :k]
    top_mag = np.take_along_axis(mag, order, axis=-1)
    keep = top_mag >= NEGLIGIBLE * mag.max(axis=-1, keepdims=True)
    keep &= top_mag > 0
    np.put_along_axis(out, order, np.where(keep, np.sign(np.take_along_axis(w, order, axis=-1)), 0).astype(np.int8),
                      axis=-1)
    return out


def ridge_covariance(data: np.ndarray, target: np.ndarray, kernel: np.ndarray, coef: np.ndarray,
                     intercept: float, alpha: float) -> np.ndarray:
    """Sandwich covariance (S, S), HC3, of the weighted ridge's coefficients for one image and one class:
    data (n, S) patterns, target (n,) outputs, kernel (n,) sample weights, coef (S,) and intercept fitted."""
    return clustered_covariance(data, target, kernel, coef, intercept, alpha, cluster=1)


def paired_covariance(data: np.ndarray, target: np.ndarray, kernel: np.ndarray, coef: np.ndarray,
                      intercept: float, alpha: float) -> np.ndarray:
    """`ridge_covariance` for patterns drawn in pairs (rows 2j, 2j+1; an even number of rows), since a
    pair, not a row, is the independent draw."""
    if len(data) % 2:
        raise ValueError(f"paired patterns come in pairs, got {len(data)} rows")
    return clustered_covariance(data, target, kernel, coef, intercept, alpha, cluster=2)


def clustered_covariance(data: np.ndarray, target: np.ndarray, kernel: np.ndarray, coef: np.ndarray,
                         intercept: float, alpha: float, *, cluster: int) -> np.ndarray:
    """The cluster-robust sandwich over clusters of `cluster` consecutive rows, each cluster's residuals
    corrected for its leverage, (I - H_gg)^-1 r_g (CR3, the jackknife over clusters; HC3 for single rows)."""
    X = np.asarray(data, dtype=np.float64)
    w = np.asarray(kernel, dtype=np.float64)
    n, s = X.shape
    if n % cluster:
        raise ValueError(f"patterns come in groups of {cluster}, got {n} rows")
    resid = np.asarray(target, dtype=np.float64) - (X @ coef + intercept)
    root_w = np.sqrt(w)
    U = (X - (w @ X) / w.sum()) * root_w[:, None]  # rows of the whitened, centred design
    A = U.T @ U
    A[np.diag_indices(s)] += alpha
    a_inv = np.linalg.inv(A)
    Ug, eg = U.reshape(-1, cluster, s), (root_w * resid).reshape(-1, cluster)
    lev = np.einsum("gas,st,gbt->gab", Ug, a_inv, Ug)
    e_adj = np.linalg.solve(np.eye(cluster) - lev, eg[..., None])[..., 0]
    g = np.einsum("gas,ga->gs", Ug, e_adj)
    cov = a_inv @ (g.T @ g) @ a_inv
    return (cov + cov.T) / 2


def _redraws(coef: np.ndarray, cov: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k signed sets of DRAWS seeded draws from N(coef, cov), and that of `coef`."""
    vals, vecs = np.linalg.eigh(cov)
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    z = np.random.default_rng([seed, _STREAM]).standard_normal((DRAWS, coef.size))
    return top_set(coef + z @ root.T, k), top_set(coef, k)


def stability(coef: np.ndarray, cov: np.ndarray, k: int, seed: int) -> float:
    """Probability that the top-k signed set of `coef` (S,) holds under N(coef, cov): the share of
    DRAWS seeded draws that give the same set."""
    if coef.size == 0 or k <= 0:
        return 1.0
    draws, fitted = _redraws(coef, cov, k, seed)
    return float(np.all(draws == fitted, axis=-1).mean())


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard index of signed sets (..., S) int8 as `top_set` gives them: a superpixel is shared when
    both mark it with the same sign; two empty sets are identical (1)."""
    both = ((a == b) & (a != 0)).sum(axis=-1)
    union = (a != 0).sum(axis=-1) + (b != 0).sum(axis=-1) - both
    return np.where(union > 0, both / np.maximum(union, 1), 1.0)


def expected_jaccard(coef: np.ndarray, cov: np.ndarray, k: int, seed: int) -> tuple[float, float]:
    """(expected Jaccard index of the top-k signed set of `coef` with a redraw's, `stability`), from the
    same DRAWS draws of N(coef, cov)."""
    if coef.size == 0 or k <= 0:
        return 1.0, 1.0
    draws, fitted = _redraws(coef, cov, k, seed)
    return float(jaccard(draws, fitted).mean()), float(np.all(draws == fitted, axis=-1).mean())


def image_stability(data: np.ndarray, target: np.ndarray, kernel: np.ndarray, coef: np.ndarray, intercept: float,
                    *, alpha: float, k: int, seed: int) -> float:
    """`stability` of one image's fit from its samples, as the probability that another run's top-k signed set
    is the same (hence twice the covariance): data (n, S) without padding columns (~3 ms for 1,000 samples of
    45 superpixels)."""
    with one_blas_thread():
        return stability(coef, 2 * ridge_covariance(data, target, kernel, coef, intercept, alpha), k, seed)


def paired_stability(data: np.ndarray, target: np.ndarray, kernel: np.ndarray, coef: np.ndarray, intercept: float,
                     *, alpha: float, k: int, seed: int) -> tuple[float, float]:
    """`expected_jaccard` of one image's fit from its paired samples (`paired_covariance`)."""
    with one_blas_thread():
        return expected_jaccard(coef, paired_covariance(data, target, kernel, coef, intercept, alpha), k, seed)
