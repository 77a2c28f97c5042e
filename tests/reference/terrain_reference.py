"""Naive loops that the terrain battery's vectorised statistics are checked against."""

from __future__ import annotations

import numpy as np


def pair_cosine_moments(x: np.ndarray) -> tuple[float, float]:
    """Mean and std of the cosine over all ordered pairs i != j, one pair at a time."""
    vals = []
    for i in range(x.shape[0]):
        for j in range(x.shape[0]):
            if i != j:
                vals.append(float(x[i] @ x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])))
    v = np.asarray(vals)
    return float(v.mean()), float(v.std())


def digit_stats(cos: np.ndarray) -> tuple[float, float]:
    """Pearson r of |i - j| with cos[i, j] over i < j, and adjacent minus non-adjacent mean."""
    offs, vals = [], []
    m = cos.shape[0]
    for i in range(m):
        for j in range(i + 1, m):
            offs.append(j - i)
            vals.append(cos[i, j])
    offs_a, vals_a = np.asarray(offs, float), np.asarray(vals)
    r = float(np.corrcoef(offs_a, vals_a)[0, 1])
    gap = float(vals_a[offs_a == 1].mean() - vals_a[offs_a > 1].mean())
    return r, gap


def category_gap(x: np.ndarray, labels: list[int]) -> float:
    """Mean cosine of same-label pairs minus different-label pairs (i != j), pair by pair."""
    same, diff = [], []
    for i in range(x.shape[0]):
        for j in range(x.shape[0]):
            if i == j:
                continue
            c = float(x[i] @ x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
            (same if labels[i] == labels[j] else diff).append(c)
    return float(np.mean(same) - np.mean(diff))
