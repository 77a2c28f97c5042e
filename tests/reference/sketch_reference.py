"""Naive oracles for hyperlens.functional.sketch and hyperlens.hdc.pca.

Each builds the dense matrix of a sketch element by element from its random tables, the
way the definitions read, in NumPy float64. Slow on purpose; only for small sizes.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

__all__ = [
    "countsketch_matrix",
    "srht_matrix",
    "block_srht_matrix",
    "fwht_dense",
    "covariance_two_pass",
    "countsketch_inner_product_variance",
]


def fwht_dense(x: np.ndarray, normalize: bool = True) -> np.ndarray:
    """``x @ H_d`` (``/ sqrt(d)`` when normalised) with ``H_d`` from scipy."""
    d = x.shape[-1]
    h = scipy.linalg.hadamard(d).astype(np.float64)
    out = x.astype(np.float64) @ h
    return out / math.sqrt(d) if normalize else out


def countsketch_matrix(buckets: np.ndarray, signs: np.ndarray, d_out: int) -> np.ndarray:
    """``M[j, h(j)] = s_j``, one coordinate at a time."""
    d_in = len(buckets)
    m = np.zeros((d_in, d_out))
    for j in range(d_in):
        m[j, int(buckets[j])] += float(signs[j])
    return m


def srht_matrix(signs: np.ndarray, rows: np.ndarray, d_out: int) -> np.ndarray:
    """``sqrt(d / d_out) * (H_d / sqrt(d))[:, rows]`` after sign flips, zero rows for padding."""
    signs = np.asarray(signs, dtype=np.float64)
    d_in = len(signs)
    d = 1
    while d < d_in:
        d *= 2
    h = scipy.linalg.hadamard(d).astype(np.float64) / math.sqrt(d)
    m = np.zeros((d_in, d_out))
    for j in range(d_in):
        for k, r in enumerate(rows):
            m[j, k] = math.sqrt(d / d_out) * signs[j] * h[j, int(r)]
    return m


def block_srht_matrix(
    signs_in: np.ndarray, rows: np.ndarray, signs_out: np.ndarray, d_in: int
) -> np.ndarray:
    """``sum_i E_i P H_b D_i x_i / sqrt(d_out)`` written out entry by entry."""
    signs_in = np.asarray(signs_in, dtype=np.float64)
    signs_out = np.asarray(signs_out, dtype=np.float64)
    p, b = signs_in.shape
    d_out = len(rows)
    h = scipy.linalg.hadamard(b).astype(np.float64)
    m = np.zeros((d_in, d_out))
    for j in range(d_in):
        blk, pos = divmod(j, b)
        for k, r in enumerate(rows):
            m[j, k] = signs_out[blk, k] * h[pos, int(r)] * signs_in[blk, pos] / math.sqrt(d_out)
    return m


def covariance_two_pass(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of all rows at once (two passes, float64)."""
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    return mean, xc.T @ xc / (x.shape[0] - 1)


def countsketch_inner_product_variance(x: np.ndarray, y: np.ndarray, d_out: int) -> float:
    """Exact variance of ``<Sx, Sy>`` for CountSketch with independent uniform hashing:
    ``(||x||^2 ||y||^2 + <x, y>^2 - 2 sum_j x_j^2 y_j^2) / d_out``."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    return float(
        (np.dot(x, x) * np.dot(y, y) + np.dot(x, y) ** 2 - 2 * np.sum(x**2 * y**2)) / d_out
    )
