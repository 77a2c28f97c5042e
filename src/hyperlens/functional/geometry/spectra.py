"""Covariance spectra: eigenvalues, participation ratio, effective and stable rank."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ._base import (
    _VARIANCE_LEVELS,
    Spectrum,
    _erank_from_sq_singular,
    _matrix,
    _second_moment,
)


# --------------------------------------------------------------------------- spectra
def _sq_singular_values(X: torch.Tensor, *, center: bool) -> torch.Tensor:
    """Squared singular values of (centred) X, float64, descending, ``[min(n, d)]``.

    Uses the smaller of the two Gram matrices (``d x d`` via chunked accumulation, or
    ``n x n``) and ``eigvalsh`` rather than an SVD of the tall matrix: for a 49,152 x 576
    embedding matrix that is one pass over the rows plus a 576 x 576 eigensolve.
    """
    n, d = X.shape
    if n >= d:
        gram = _second_moment(X, center=center)
    else:
        X64 = X.to(torch.float64)
        if center:
            X64 = X64 - X64.mean(dim=0, keepdim=True)
        gram = X64 @ X64.T
    ev = torch.linalg.eigvalsh(gram).flip(0).clamp_min(0.0)
    return ev[: min(n, d)]


def eigenspectrum(X: Any, *, center: bool = True) -> Spectrum:
    """Eigenvalues of the covariance of ``X`` (``center=True``; divisor ``n - 1``) or of its
    uncentred second moment (``center=False``; divisor ``n``), with derived dimensions.

    Shapes:
        X: ``[n, d]`` -> ``Spectrum.eigenvalues`` ``[min(n, d)]`` float64.
    """
    Xt = _matrix(X, "X", min_rows=2 if center else 1)
    n, d = Xt.shape
    ev = _sq_singular_values(Xt, center=center) / (max(1, n - 1) if center else n)
    return Spectrum(eigenvalues=ev, dim=d, n=n, centered=center)


def participation_ratio(X: Any, *, center: bool = True) -> float:
    """Participation ratio ``(sum l)^2 / sum l^2`` of the covariance eigenvalues of ``X``.

    1 for points on a line, ``d`` for an isotropic cloud; ``PR / d`` is the fraction of
    dimensions in use. Returns 0.0 for a constant matrix.

    Shapes:
        X: ``[n, d]``.
    """
    return eigenspectrum(X, center=center).participation_ratio


def variance_dims(
    X: Any, fractions: Sequence[float] = _VARIANCE_LEVELS, *, center: bool = True
) -> dict[float, int]:
    """The fewest principal components explaining each fraction of the variance of ``X``."""
    return eigenspectrum(X, center=center).dims_for(fractions)


def effective_rank(X: Any, *, center: bool = False) -> float:
    """Entropy effective rank (Roy and Vetterli, 2007): ``exp(H(p))`` with
    ``p_i = s_i / sum s`` over the singular values ``s`` of ``X``.

    Lies between 1 and ``rank(X)``; equals ``r`` when ``X`` has ``r`` equal non-zero
    singular values. ``center=True`` measures the centred matrix instead. Returns 0.0 for
    the zero matrix.

    Shapes:
        X: ``[n, d]``.
    """
    Xt = _matrix(X, "X", min_rows=2 if center else 1)
    return _erank_from_sq_singular(_sq_singular_values(Xt, center=center))


def stable_rank(X: Any, *, center: bool = False) -> float:
    """Stable rank ``||X||_F^2 / ||X||_2^2`` (sum of squared singular values over the largest).

    At most ``rank(X)``; ``n`` for an ``n x n`` orthogonal matrix. 0.0 for the zero matrix.

    Shapes:
        X: ``[n, d]``.
    """
    Xt = _matrix(X, "X", min_rows=2 if center else 1)
    sq = _sq_singular_values(Xt, center=center)
    top = float(sq[0]) if sq.numel() else 0.0
    return float(sq.sum()) / top if top > 0 else 0.0
