"""Small tensor helpers shared by the terrain measurements."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


# --------------------------------------------------------------------------- small helpers
def _sample_rows(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """``min(k, n)`` distinct row indices, sorted, drawn with ``gen``."""
    if k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:k].sort().values


def _unit_rows(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def _percentiles(values: torch.Tensor) -> dict[str, float]:
    q = torch.tensor([p / 100.0 for p in _PERCENTILES], dtype=torch.float64)
    v = values.detach().double().flatten()
    if v.numel() > 16_000_000:  # torch.quantile has an input size limit
        v = v[:: math.ceil(v.numel() / 16_000_000)]
    vals = torch.quantile(v, q)
    return {f"p{p}": float(x) for p, x in zip(_PERCENTILES, vals, strict=True)}


def _histogram(values: torch.Tensor, bins: int) -> dict[str, list[float]]:
    """Pre-binned histogram ``{"edges", "counts"}`` (the report's hist spec)."""
    v = values.detach().double().flatten()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + 1e-9
    counts = torch.histc(v, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _bootstrap_mean_ci(values: torch.Tensor, n_boot: int, gen: torch.Generator,
                       stat: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` (default mean) over the last axis.

    ``stat`` maps a ``[B, n]`` batch of resamples to ``[B]``; all resamples are drawn at once.
    """
    v = values.detach().double().flatten()
    n = v.numel()
    if n < 2:
        return (float("nan"), float("nan"))
    idx = torch.randint(0, n, (n_boot, n), generator=gen)
    res = v[idx]
    s = res.mean(dim=1) if stat is None else stat(res)
    a = (1.0 - level) / 2.0
    q = torch.quantile(s, torch.tensor([a, 1.0 - a], dtype=torch.float64))
    return (float(q[0]), float(q[1]))


def _pearson_rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of ``x [n]`` with each row of ``y [B, n]`` -> ``[B]``."""
    xc = x - x.mean()
    yc = y - y.mean(dim=-1, keepdim=True)
    return (yc @ xc) / (yc.norm(dim=-1) * xc.norm()).clamp_min(1e-300)
