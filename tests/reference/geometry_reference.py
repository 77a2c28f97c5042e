"""Naive oracles for hyperlens.functional.geometry: one simplex, one pair, one row at a time.

Slow on purpose: every quantity is computed straight from its textbook definition with
NumPy in float64, so the batched kernels can be checked against something obviously right.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "cm_volume_bordered",
    "cm_volumes_loop",
    "participation_ratio_svd",
    "effective_rank_svd",
    "stable_rank_svd",
    "bootstrap_cv_loop",
    "linear_cka_kernels",
    "unbiased_cka_kernels",
    "knn_overlap_bruteforce",
    "regular_simplex_volume",
    "regular_simplex",
]


def cm_volume_bordered(points: np.ndarray) -> float:
    """Volume of one simplex from the bordered Cayley-Menger determinant.

    ``points``: ``[k+1, d]``. The matrix is ``[[0, 1...], [1, D]]`` with ``D`` the squared
    distances; ``V^2 = (-1)^(k+1) det / (2^k (k!)^2)``. Negative round-off gives 0.
    """
    p = np.asarray(points, dtype=np.float64)
    m = p.shape[0]
    cm = np.ones((m + 1, m + 1))
    cm[0, 0] = 0.0
    for i in range(m):
        for j in range(m):
            cm[i + 1, j + 1] = float(np.sum((p[i] - p[j]) ** 2))
    k = m - 1
    vol_sq = (-1) ** (k + 1) * np.linalg.det(cm) / (2**k * math.factorial(k) ** 2)
    return math.sqrt(vol_sq) if vol_sq > 0 else 0.0


def cm_volumes_loop(X: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Volumes of the simplices ``indices`` ``[m, k+1]`` over rows of ``X``, one at a time."""
    return np.array([cm_volume_bordered(X[row]) for row in np.asarray(indices)])


def regular_simplex(k: int, d: int, edge: float = 1.0, seed: int = 0) -> np.ndarray:
    """Vertices ``[k+1, d]`` of a regular k-simplex with the given edge, randomly rotated
    and shifted in ``d >= k`` dimensions."""
    base = np.eye(k + 1) * (edge / math.sqrt(2.0))  # in R^{k+1}, pairwise distance = edge
    base = base - base.mean(0)
    # orthonormal basis of the k-dim affine hull, then embed in R^d with a random rotation
    u, _, _ = np.linalg.svd(base.T, full_matrices=False)
    coords = base @ u[:, :k]  # [k+1, k]
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return coords @ q[:k] + rng.standard_normal(d)


def regular_simplex_volume(k: int, edge: float = 1.0) -> float:
    """Closed form: ``V = a^k / k! * sqrt((k+1) / 2^k)``."""
    return edge**k / math.factorial(k) * math.sqrt((k + 1) / 2.0**k)


def _cov_eigs(X: np.ndarray) -> np.ndarray:
    Xc = np.asarray(X, dtype=np.float64) - np.mean(X, axis=0)
    s = np.linalg.svd(Xc, compute_uv=False)
    return s**2 / (X.shape[0] - 1)


def participation_ratio_svd(X: np.ndarray) -> float:
    ev = _cov_eigs(X)
    return float(ev.sum() ** 2 / (ev**2).sum())


def effective_rank_svd(X: np.ndarray) -> float:
    s = np.linalg.svd(np.asarray(X, dtype=np.float64), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def stable_rank_svd(X: np.ndarray) -> float:
    s = np.linalg.svd(np.asarray(X, dtype=np.float64), compute_uv=False)
    return float(np.sum(s**2) / s[0] ** 2)


def _hsic_biased(K: np.ndarray, L: np.ndarray) -> float:
    n = K.shape[0]
    H = np.eye(n) - 1.0 / n
    return float(np.trace(K @ H @ L @ H))


def linear_cka_kernels(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA from explicit ``n x n`` kernels and the centring matrix."""
    K = X @ X.T
    L = Y @ Y.T
    return _hsic_biased(K, L) / math.sqrt(_hsic_biased(K, K) * _hsic_biased(L, L))


def _hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    n = K.shape[0]
    Kt = K.copy()
    Lt = L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    term1 = np.trace(Kt @ Lt)
    term2 = (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ Kt @ Lt @ one)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def unbiased_cka_kernels(X: np.ndarray, Y: np.ndarray) -> float:
    """Unbiased CKA from explicit kernels and the HSIC U-statistic formula."""
    K = X @ X.T
    L = Y @ Y.T
    return _hsic_unbiased(K, L) / math.sqrt(_hsic_unbiased(K, K) * _hsic_unbiased(L, L))


def knn_overlap_bruteforce(X: np.ndarray, Y: np.ndarray, k: int) -> float:
    """Mean shared fraction of cosine k-nearest neighbours, one item at a time."""
    def neighbours(Z: np.ndarray, i: int) -> set[int]:
        z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
        sims = z @ z[i]
        sims[i] = -np.inf
        return set(np.argsort(-sims, kind="stable")[:k].tolist())

    fr = [len(neighbours(X, i) & neighbours(Y, i)) / k for i in range(X.shape[0])]
    return float(np.mean(fr))


def bootstrap_cv_loop(v: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Percentile-bootstrap replicates of the CV, one NumPy resample at a time."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        s = v[rng.integers(0, len(v), len(v))]
        out[b] = s.std() / s.mean()
    return out
