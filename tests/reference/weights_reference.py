"""Naive per-matrix and per-head loops used as oracles for the weight battery."""

from __future__ import annotations

import numpy as np
import torch


def spectral_metrics_naive(w: torch.Tensor) -> dict[str, float]:
    """Stable rank, PR, active fraction, rank90 and condition from a full float64 SVD."""
    s = torch.linalg.svd(w.double(), full_matrices=False).S.numpy()
    e = s**2
    cum = np.cumsum(e) / e.sum()
    return {
        "stable_rank": float(e.sum() / e[0]),
        "participation_ratio": float(s.sum() ** 2 / e.sum()),
        "active_fraction": float((s > 0.01 * s[0]).mean()),
        "rank90": int(np.argmax(cum >= 0.9 - 1e-12) + 1),
        "condition": float(s[0] / s[-1]),
    }


def qk_head_naive(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Per-head QK geometry on the full d x d matrix M = Aᵀ B (float64)."""
    m = (a.double().T @ b.double())
    s = torch.linalg.svdvals(m).numpy()
    sym = (m + m.T) / 2
    ev = torch.linalg.eigvalsh(sym).numpy()
    return {
        "stable_rank": float((s**2).sum() / s[0] ** 2),
        "participation_ratio": float(s.sum() ** 2 / (s**2).sum()),
        "symmetry_deviation": float(
            torch.linalg.matrix_norm(m - m.T) / torch.linalg.matrix_norm(m)
        ),
        "pos_mass": float(ev[ev > 0].sum() / np.abs(ev).sum()),
    }


def sparsity_naive(w: torch.Tensor, thresholds: list[float]) -> list[int]:
    a = w.abs().reshape(-1)
    return [int((a < t).sum()) for t in thresholds]
