"""Naive reference implementations used as oracles by the aligner tests."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def cca_correlations_naive(x: np.ndarray, y: np.ndarray, lam_x: float, lam_y: float) -> np.ndarray:
    """Canonical correlations from the generalised eigenproblem, written the textbook way.

    ``Cxy Cyy^-1 Cyx a = rho^2 Cxx a`` with ``C.. = S.. + lam * mean_var * I``.
    """
    n = x.shape[0]
    xc = x - x.mean(0)
    yc = y - y.mean(0)
    cxx = xc.T @ xc / n
    cyy = yc.T @ yc / n
    cxy = xc.T @ yc / n
    cxx = cxx + lam_x * np.trace(cxx) / cxx.shape[0] * np.eye(cxx.shape[0])
    cyy = cyy + lam_y * np.trace(cyy) / cyy.shape[0] * np.eye(cyy.shape[0])
    m = cxy @ np.linalg.solve(cyy, cxy.T)
    vals = scipy.linalg.eigh(m, cxx, eigvals_only=True)[::-1]
    return np.sqrt(np.clip(vals, 0, None))


def ridge_loo_naive(x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """Mean leave-one-out squared error of ridge (no intercept), refitting n times."""
    errs = []
    for i in range(x.shape[0]):
        keep = np.arange(x.shape[0]) != i
        xk, yk = x[keep], y[keep]
        w = np.linalg.solve(xk.T @ xk + alpha * np.eye(x.shape[1]), xk.T @ yk)
        errs.append(((x[i] @ w - y[i]) ** 2).sum())
    return float(np.mean(errs))
