"""Result types, constants and input validation shared by the geometry modules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from ...errors import InputError, ShapeError
from ...utils import as_float_matrix
from ..stats import Estimate

NullModel = Literal["gaussian", "norms", "isotropic"]
_NULL_MODELS = ("gaussian", "norms", "isotropic")
_VARIANCE_LEVELS = (0.80, 0.90, 0.95, 0.99)
# A simplex whose Gram determinant is below this fraction of Hadamard's bound (the product
# of its squared edge lengths from vertex 0) is flat to float64 round-off: volume 0.
_DEGENERATE_RTOL = 1e-12
# Bytes of float64 working memory per chunk in the batched kernels.
_CHUNK_BYTES = 16 * 2**20


# --------------------------------------------------------------------------- result types
@dataclass(frozen=True)
class SimplexCV:
    """CV of sampled k-simplex volumes, with its null model and confidence intervals.

    Attributes:
        cv: std / mean of the non-degenerate volumes (population std), with a percentile
            bootstrap interval over the sampled simplices.
        null: the null model's name (``None`` when no null was asked for).
        null_cv: the same statistic on the null model's points (``None`` without a null).
        ratio: ``cv / null_cv`` with a bootstrap interval (resampling both sides).
        mean_volume: mean non-degenerate volume of the data.
        null_mean_volume: mean non-degenerate volume under the null.
        volume_ratio: ``mean_volume / null_mean_volume``.
        k: simplex dimension (k + 1 vertices; k = 4 is the pentachoron).
        n_samples: simplices sampled (from the data, and again from the null).
        n_degenerate: data simplices whose volume was 0 (repeated or affinely dependent rows);
            they are left out of the CV.
        null_n_degenerate: the same count for the null.
    """

    cv: Estimate
    null: str | None
    null_cv: Estimate | None
    ratio: Estimate | None
    mean_volume: float
    null_mean_volume: float | None
    volume_ratio: float | None
    k: int
    n_samples: int
    n_degenerate: int
    null_n_degenerate: int | None

    def in_band(self, lo: float = 0.13, hi: float = 0.30) -> bool:
        """Whether the point estimate of the CV lies strictly inside ``(lo, hi)``."""
        return lo < self.cv.value < hi

    def as_dict(self) -> dict[str, Any]:
        return {
            "cv": self.cv.as_dict(),
            "null": self.null,
            "null_cv": None if self.null_cv is None else self.null_cv.as_dict(),
            "ratio": None if self.ratio is None else self.ratio.as_dict(),
            "mean_volume": self.mean_volume,
            "null_mean_volume": self.null_mean_volume,
            "volume_ratio": self.volume_ratio,
            "k": self.k,
            "n_samples": self.n_samples,
            "n_degenerate": self.n_degenerate,
            "null_n_degenerate": self.null_n_degenerate,
        }


@dataclass(frozen=True)
class Spectrum:
    """Eigenspectrum of a covariance (or second-moment) matrix.

    Attributes:
        eigenvalues: float64, descending, clipped at 0; ``[min(n, d)]`` values (the
            non-zero part of the ``d x d`` spectrum).
        dim: the feature dimension ``d`` of the input.
        n: the number of rows of the input.
        centered: whether the row mean was removed first (covariance) or not.
    """

    eigenvalues: torch.Tensor
    dim: int
    n: int
    centered: bool

    @property
    def total_variance(self) -> float:
        return float(self.eigenvalues.sum())

    @property
    def explained(self) -> torch.Tensor:
        """Fraction of the total variance per component ``[min(n, d)]``."""
        total = self.eigenvalues.sum()
        return self.eigenvalues / total if float(total) > 0 else torch.zeros_like(self.eigenvalues)

    @property
    def cumulative(self) -> torch.Tensor:
        return torch.cumsum(self.explained, 0)

    @property
    def participation_ratio(self) -> float:
        """``(sum l)^2 / sum l^2``: between 1 (one direction) and ``d`` (isotropic)."""
        return _pr_from_eigs(self.eigenvalues)

    @property
    def effective_rank(self) -> float:
        """Entropy effective rank of the spectrum (see :func:`effective_rank`)."""
        return _erank_from_sq_singular(self.eigenvalues)

    def dims_for(self, fractions: Iterable[float] = _VARIANCE_LEVELS) -> dict[float, int]:
        """The fewest leading components that explain each fraction of the variance."""
        cum = self.cumulative
        out: dict[float, int] = {}
        for f in fractions:
            f = float(f)
            if not 0.0 < f <= 1.0:
                raise InputError(
                    f"fractions must lie in (0, 1], got {f!r}; pass e.g. 0.9 for 90 %."
                )
            # tolerance so that 1.0 is reachable despite round-off in the cumulative sum
            idx = int(
                torch.searchsorted(cum, torch.tensor(f - 1e-12, dtype=cum.dtype, device=cum.device))
            )
            out[f] = min(idx + 1, cum.numel())
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "n": self.n,
            "centered": self.centered,
            "total_variance": self.total_variance,
            "participation_ratio": self.participation_ratio,
            "participation_ratio_over_dim": self.participation_ratio / self.dim,
            "effective_rank": self.effective_rank,
            "dims_for": {f"{int(round(k * 100))}%": v for k, v in self.dims_for().items()},
            "eigenvalues": self.eigenvalues.detach().cpu().tolist(),
        }


@dataclass(frozen=True)
class DistributionStats:
    """Summary of a 1-D sample of values (norms, cosines, distances).

    ``quantiles`` maps a probability (0.01 ... 0.99) to its quantile; ``exact`` says whether
    the values were every pair / row (True) or a random sample (False).
    """

    mean: float
    std: float
    min: float
    max: float
    cv: float
    quantiles: dict[float, float] = field(default_factory=dict)
    n: int = 0
    exact: bool = True

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["quantiles"] = {f"q{int(round(k * 100)):02d}": v for k, v in self.quantiles.items()}
        return out


# --------------------------------------------------------------------------- validation
_INT_DTYPES = {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool}


def _matrix(x: Any, name: str, *, min_rows: int = 1, min_cols: int = 1) -> torch.Tensor:
    """Validate a 2-D finite real matrix ``[n, d]``; keep its device and floating dtype."""
    t = as_float_matrix(x, name, dtype=None, min_rows=min_rows)
    if t.shape[1] < min_cols:
        raise ShapeError(f"{name} needs at least {min_cols} column(s), got shape {tuple(t.shape)}.")
    return t


def _chunk_rows(per_row_bytes: int) -> int:
    return max(1, _CHUNK_BYTES // max(1, per_row_bytes))


# --------------------------------------------------------------------------- shared kernels
def _second_moment(X: torch.Tensor, *, center: bool) -> torch.Tensor:
    """``Xc^T Xc`` in float64, ``[d, d]``, accumulated over row chunks (bounded memory)."""
    n, d = X.shape
    mean = X.to(torch.float64).mean(dim=0, keepdim=True) if center else None
    acc = torch.zeros(d, d, dtype=torch.float64, device=X.device)
    step = _chunk_rows(d * 8)
    for s in range(0, n, step):
        c = X[s : s + step].to(torch.float64)
        if mean is not None:
            c = c - mean
        acc.addmm_(c.T, c)
    return acc


def coefficient_of_variation(values: torch.Tensor, *, correction: int = 0) -> torch.Tensor:
    """Coefficient of variation ``std / mean`` along the last axis (the one implementation).

    ``correction=0`` (default) uses the population std, ``1`` the sample std. Meant for
    positive data (volumes, norms, distances): a zero mean gives NaN or Inf.

    Shapes:
        values: ``[..., m]`` -> ``[...]`` (same dtype).

    Example:
        >>> float(coefficient_of_variation(torch.tensor([1.0, 3.0])))
        0.5
    """
    return values.std(dim=-1, correction=correction) / values.mean(dim=-1)


def spectrum_participation_ratio(values: torch.Tensor) -> torch.Tensor:
    """Participation ratio ``(sum v)^2 / sum v^2`` along the last axis; 0 where all v are 0.

    The one implementation of the formula: on covariance eigenvalues it is the effective
    number of dimensions a cloud uses; on singular values, that of a weight matrix.

    Shapes:
        values: ``[..., m]`` -> ``[...]`` (same dtype).

    Example:
        >>> float(spectrum_participation_ratio(torch.tensor([1.0, 1.0, 0.0])))
        2.0
    """
    s2 = (values * values).sum(-1)
    pr = values.sum(-1) ** 2 / s2.clamp_min(torch.finfo(values.dtype).tiny)
    return torch.where(s2 > 0, pr, torch.zeros_like(pr))


def _pr_from_eigs(ev: torch.Tensor) -> float:
    return float(spectrum_participation_ratio(ev))


def _erank_from_sq_singular(sq: torch.Tensor) -> float:
    s = sq.clamp_min(0.0).sqrt()
    total = s.sum()
    if float(total) <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
