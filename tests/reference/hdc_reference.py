"""Naive reference implementations of the HDC kernels, used as oracles in the tests.

Written for obviousness, not speed: Python loops over rows, bits and trits, NumPy int64
arithmetic, full sorts. Keep inputs small.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "ternarize_quantile_loop",
    "ternarize_sorted",
    "ternarize_tau_std",
    "dot_naive",
    "cosine_naive",
    "hamming_naive",
    "bundle_naive",
    "pack_twobit_naive",
    "pack_base3_naive",
    "topk_naive",
]


def ternarize_quantile_loop(x: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The per-row ``torch.quantile`` rule of the original notebook (strict ``>``)."""
    out = torch.zeros(x.shape, dtype=torch.int8)
    for i in range(x.shape[0]):
        v = x[i]
        t = torch.quantile(v.abs(), sparsity)
        out[i] = torch.where(v > t, 1, torch.where(v < -t, -1, 0)).to(torch.int8)
    return out


def ternarize_sorted(x: np.ndarray, sparsity: float) -> np.ndarray:
    """Documented semantics, by full sort: zero every |x| <= the k-th smallest magnitude."""
    n, d = x.shape
    k = min(d, math.floor(sparsity * (d - 1)) + 1)
    out = np.zeros((n, d), dtype=np.int8)
    for i in range(n):
        mags = sorted(abs(float(v)) for v in x[i])
        t = mags[k - 1]
        for j in range(d):
            if abs(float(x[i, j])) > t:
                out[i, j] = 1 if x[i, j] > 0 else -1
    return out


def ternarize_tau_std(x: np.ndarray, tau: float) -> np.ndarray:
    out = np.zeros(x.shape, dtype=np.int8)
    for i in range(x.shape[0]):
        row = x[i].astype(np.float64)
        t = tau * row.std()  # population std (ddof=0)
        out[i] = np.where(row > t, 1, np.where(row < -t, -1, 0))
    return out


def dot_naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.int64)
    b = b.astype(np.int64)
    return np.array([[int((a[i] * b[j]).sum()) for j in range(len(b))] for i in range(len(a))])


def cosine_naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            na = np.sqrt((a[i].astype(np.float64) ** 2).sum())
            nb = np.sqrt((b[j].astype(np.float64) ** 2).sum())
            if na > 0 and nb > 0:
                out[i, j] = (a[i].astype(np.float64) @ b[j].astype(np.float64)) / (na * nb)
    return out


def hamming_naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([[int((a[i] != b[j]).sum()) for j in range(len(b))] for i in range(len(a))])


def bundle_naive(x: np.ndarray, kind: str, tie: str = "first", threshold: int = 0) -> np.ndarray:
    """Bundle ``[n, d]`` codes position by position."""
    n, d = x.shape
    out = np.zeros(d, dtype=np.int8)
    for j in range(d):
        s = int(x[:, j].astype(np.int64).sum())
        if kind == "sum":
            out[j] = 0 if abs(s) <= threshold else (1 if s > 0 else -1)
        elif s != 0:
            out[j] = 1 if s > 0 else -1
        else:
            out[j] = {"first": int(x[0, j]), "positive": 1, "negative": -1, "zero": 0}[tie]
    return out


def pack_twobit_naive(codes: np.ndarray) -> np.ndarray:
    n, d = codes.shape
    nb = (d + 7) // 8
    out = np.zeros((n, 2 * nb), dtype=np.uint8)
    for i in range(n):
        for j in range(d):
            if codes[i, j] == 1:
                out[i, j // 8] |= 1 << (j % 8)
            elif codes[i, j] == -1:
                out[i, nb + j // 8] |= 1 << (j % 8)
    return out


def pack_base3_naive(codes: np.ndarray) -> np.ndarray:
    n, d = codes.shape
    nb = (d + 4) // 5
    out = np.zeros((n, nb), dtype=np.uint8)
    for i in range(n):
        for b in range(nb):
            value = 0
            for j in range(5):
                pos = 5 * b + j
                trit = int(codes[i, pos]) if pos < d else 0
                value += (trit + 1) * 3**j
            out[i, b] = value
    return out


def topk_naive(scores: np.ndarray, k: int, largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Rank each row by score (descending if ``largest``), ties to the lower index."""
    idx = np.zeros((scores.shape[0], k), dtype=np.int64)
    val = np.zeros((scores.shape[0], k), dtype=scores.dtype)
    for i, row in enumerate(scores):
        order = sorted(range(len(row)), key=lambda j: ((-row[j] if largest else row[j]), j))[:k]
        idx[i] = order
        val[i] = row[order]
    return val, idx
