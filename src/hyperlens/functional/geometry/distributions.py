"""Distributions of norms, cosines and distances over exact or sampled pairs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch

from ...errors import InputError
from ...utils import as_real_tensor, check_finite, check_int, make_generator
from ._base import (
    DistributionStats,
    _chunk_rows,
    _matrix,
)


# --------------------------------------------------------------------------- distributions
def row_norms(X: Any) -> torch.Tensor:
    """Euclidean norm of every row, float64. Shapes: ``[n, d] -> [n]``."""
    Xt = _matrix(X, "X")
    return Xt.to(torch.float64).norm(dim=1)


_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def distribution_stats(values: Any, *, exact: bool = True) -> DistributionStats:
    """Mean, std (population), min, max, CV and the 1/5/25/50/75/95/99 % quantiles of ``values``.

    Shapes:
        values: any shape, flattened; at least one value.
    """
    v = as_real_tensor(values, "values").to(torch.float64).flatten()
    if v.numel() == 0:
        raise InputError("values is empty; pass at least one value.")
    check_finite(v, "values")
    mean = float(v.mean())
    std = float(v.std(correction=0)) if v.numel() > 1 else 0.0
    qs = _quantiles(v, _QUANTILES)
    return DistributionStats(
        mean=mean,
        std=std,
        min=float(v.min()),
        max=float(v.max()),
        cv=std / abs(mean) if mean != 0 else float("nan"),
        quantiles=dict(zip(_QUANTILES, qs, strict=True)),
        n=int(v.numel()),
        exact=exact,
    )


def _quantiles(v: torch.Tensor, probs: Sequence[float]) -> list[float]:
    # torch.quantile refuses inputs above 2**24 elements; sort-based quantiles have no limit.
    srt = v.sort().values
    n = srt.numel()
    out = []
    for p in probs:
        pos = p * (n - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, n - 1)
        w = pos - lo
        out.append(float(srt[lo] * (1 - w) + srt[hi] * w))
    return out


def pair_values(
    X: Any,
    *,
    metric: Literal["cosine", "euclidean", "sqeuclidean"] = "cosine",
    n_pairs: int | None = None,
    seed: int = 0,
    max_exact_pairs: int = 5_000_000,
) -> torch.Tensor:
    """Cosine similarities or distances between pairs of distinct rows of ``X`` (float64).

    Every unordered pair ``i < j`` when ``n_pairs`` is ``None`` and there are at most
    ``max_exact_pairs`` of them (row blocks, bounded memory); otherwise ``n_pairs`` (default
    200,000) pairs drawn uniformly with ``i != j``. Zero rows have cosine 0 with everything.

    Shapes:
        X: ``[n, d]`` with ``n >= 2`` -> ``[n (n - 1) / 2]`` or ``[n_pairs]``.
    """
    Xt = _matrix(X, "X", min_rows=2)
    if metric not in ("cosine", "euclidean", "sqeuclidean"):
        raise InputError(f"metric must be 'cosine', 'euclidean' or 'sqeuclidean', got {metric!r}.")
    n = Xt.shape[0]
    X64 = Xt.to(torch.float64)
    if metric == "cosine":
        X64 = X64 / X64.norm(dim=1, keepdim=True).clamp_min(1e-300)
    else:
        X64 = X64 - X64.mean(dim=0, keepdim=True)
    total = n * (n - 1) // 2
    if n_pairs is None and total <= max_exact_pairs:
        parts = []
        step = _chunk_rows(n * 8 * 2)
        sq = (X64 * X64).sum(1)
        for s in range(0, n - 1, step):
            blk = X64[s : s + step]
            prod = blk @ X64.T  # [b, n]
            rows = torch.arange(s, s + blk.shape[0], device=X64.device)[:, None]
            cols = torch.arange(n, device=X64.device)[None, :]
            keep = cols > rows
            vals = (
                prod
                if metric == "cosine"
                else sq[s : s + blk.shape[0], None] + sq[None, :] - 2 * prod
            )
            parts.append(vals[keep])
        out = torch.cat(parts)
    else:
        m = 200_000 if n_pairs is None else check_int(n_pairs, "n_pairs", minimum=1)
        gen = make_generator(seed, X64.device)
        i = torch.randint(0, n, (m,), generator=gen, device=X64.device)
        j = (i + torch.randint(1, n, (m,), generator=gen, device=X64.device)) % n
        out = torch.empty(m, dtype=torch.float64, device=X64.device)
        step = _chunk_rows(Xt.shape[1] * 8 * 2)
        for s in range(0, m, step):
            a, b = X64[i[s : s + step]], X64[j[s : s + step]]
            out[s : s + step] = (a * b).sum(1) if metric == "cosine" else ((a - b) ** 2).sum(1)
    if metric == "euclidean":
        out = out.clamp_min(0.0).sqrt()
    elif metric == "sqeuclidean":
        out = out.clamp_min(0.0)
    return out


def cosine_stats(
    X: Any, *, n_pairs: int | None = None, seed: int = 0, max_exact_pairs: int = 5_000_000
) -> DistributionStats:
    """Distribution of pairwise cosines between distinct rows (see :func:`pair_values`)."""
    Xt = _matrix(X, "X", min_rows=2)
    n = Xt.shape[0]
    exact = n_pairs is None and n * (n - 1) // 2 <= max_exact_pairs
    vals = pair_values(
        Xt, metric="cosine", n_pairs=n_pairs, seed=seed, max_exact_pairs=max_exact_pairs
    )
    return distribution_stats(vals, exact=exact)


def cosine_moments(X: Any) -> tuple[float, float]:
    """Exact mean and std (population) of the cosine over all pairs of distinct rows.

    Rows are scaled to unit length (zero rows stay zero). Uses
    ``sum_{i != j} c_ij = ||sum u||^2 - n`` and
    ``sum_{i != j} c_ij^2 = ||U^T U||_F^2 - n`` (``= ||U U^T||_F^2``, whichever Gram matrix is
    smaller): O(n d min(n, d)) instead of materialising every pair. The Gram product runs in
    float32 above 10^6 entries (relative error ~1e-6 on these sums), the rest in float64.
    :func:`cosine_stats` gives quantiles as well, from the pairs themselves.

    Shapes:
        X: ``[n, d]``, ``n >= 2`` -> ``(mean, std)``.

    Example:
        >>> cosine_moments(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))[0] > 0
        True
    """
    Xt = _matrix(X, "X", min_rows=2)
    U = Xt / Xt.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n, d = U.shape
    s = U.double().sum(dim=0)
    Uc = U.float() if n * d > 1_000_000 else U.double()
    gram = ((Uc.T @ Uc) if d <= n else (Uc @ Uc.T)).double()
    pairs = n * (n - 1)
    mean = (float(s @ s) - n) / pairs
    second = (float((gram * gram).sum()) - n) / pairs
    return mean, math.sqrt(max(second - mean * mean, 0.0))


def norm_stats(X: Any) -> DistributionStats:
    """Distribution of the row norms of ``X`` (every row)."""
    return distribution_stats(row_norms(X), exact=True)
