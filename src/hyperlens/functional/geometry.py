"""Representation geometry as pure, batched tensor functions.

Everything here takes plain tensors (or array-likes), runs on whatever device the input
lives on, and does the numerically delicate parts in float64:

* simplex volumes (Cayley-Menger) and the coefficient of variation (CV) of sampled
  simplex volumes against a null model: :func:`cayley_menger_volume`,
  :func:`sample_simplices`, :func:`simplex_volumes`, :func:`simplex_volume_cv`;
* spectra: :func:`eigenspectrum` (with the dimensions needed for 80/90/95/99 % of the
  variance), :func:`participation_ratio`, :func:`effective_rank`, :func:`stable_rank`;
* distributions: :func:`row_norms`, :func:`pair_values` (cosines or distances over exact or
  sampled pairs), :func:`distribution_stats`, :func:`cosine_stats`, :func:`norm_stats`;
* comparisons of two representations of the same items: :func:`linear_cka`,
  :func:`unbiased_cka`, :func:`knn_overlap`;
* uncertainty: :func:`bootstrap_ci` (rows resampled with replacement) and :func:`seed_ci`
  (one value per seed), both returning an :class:`Estimate` with a confidence interval.

Every random function takes an explicit ``seed`` and draws from a
:class:`torch.Generator` on the input's device, so the same seed gives the same bits on
the same device.

Examples:
    >>> import torch
    >>> from hyperlens.functional.geometry import cayley_menger_volume
    >>> tri = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(float(cayley_menger_volume(tri)), 6)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ..errors import InputError, ShapeError
from ..utils import check_finite, make_generator
from .stats import Estimate, from_replicates, t_interval

__all__ = [
    "Estimate",
    "SimplexCV",
    "Spectrum",
    "DistributionStats",
    "cayley_menger_volume",
    "sample_simplices",
    "simplex_volumes",
    "simplex_volume_cv",
    "null_points",
    "eigenspectrum",
    "participation_ratio",
    "variance_dims",
    "effective_rank",
    "stable_rank",
    "row_norms",
    "pair_values",
    "distribution_stats",
    "cosine_stats",
    "norm_stats",
    "linear_cka",
    "unbiased_cka",
    "knn_overlap",
    "bootstrap_ci",
    "seed_ci",
    "cv_ci",
]

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
                raise InputError(f"fractions must lie in (0, 1], got {f!r}; pass e.g. 0.9 for 90 %.")
            # tolerance so that 1.0 is reachable despite round-off in the cumulative sum
            idx = int(torch.searchsorted(cum, torch.tensor(f - 1e-12, dtype=cum.dtype, device=cum.device)))
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
        return {
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "cv": self.cv,
            "quantiles": {f"q{int(round(k * 100)):02d}": v for k, v in self.quantiles.items()},
            "n": self.n,
            "exact": self.exact,
        }


# --------------------------------------------------------------------------- validation
def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{name} must be a numeric array or tensor, got {type(x).__name__}; "
                "pass a torch.Tensor or numpy array."
            ) from exc
    if t.is_complex() or not (t.is_floating_point() or t.dtype in _INT_DTYPES):
        raise InputError(f"{name} must be real-valued, got dtype {t.dtype}; cast it to float first.")
    return t


_INT_DTYPES = {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool}


def _matrix(x: Any, name: str, *, min_rows: int = 1, min_cols: int = 1) -> torch.Tensor:
    """Validate a 2-D finite real matrix ``[n, d]``; keep its device and floating dtype."""
    t = _as_tensor(x, name)
    if t.ndim != 2:
        raise ShapeError(
            f"{name} must be a 2-D matrix [n, d], got shape {tuple(t.shape)}; "
            "reshape it (e.g. x.reshape(-1, x.shape[-1]))."
        )
    if t.shape[0] < min_rows:
        raise ShapeError(
            f"{name} needs at least {min_rows} row(s), got shape {tuple(t.shape)}; pass more rows."
        )
    if t.shape[1] < min_cols:
        raise ShapeError(f"{name} needs at least {min_cols} column(s), got shape {tuple(t.shape)}.")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    check_finite(t, name)
    return t


def _check_int(value: Any, name: str, *, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}.{hint}")
    if int(value) < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {int(value)}.{hint}")
    return int(value)


def _check_level(level: float) -> float:
    if not isinstance(level, (float, int)) or not 0.0 < float(level) < 1.0:
        raise InputError(f"level must be a float in (0, 1), got {level!r}; use 0.95 for a 95 % interval.")
    return float(level)


def _chunk_rows(per_row_bytes: int) -> int:
    return max(1, _CHUNK_BYTES // max(1, per_row_bytes))


# --------------------------------------------------------------------------- simplex volumes
def _volumes_from_vertices(points: torch.Tensor) -> torch.Tensor:
    """Volumes of simplices ``[m, k+1, d]`` (float64 in) -> ``[m]`` float64."""
    k = points.shape[-2] - 1
    edges = points[:, 1:, :] - points[:, :1, :]  # [m, k, d]
    gram = edges @ edges.transpose(-1, -2)  # [m, k, k]
    return _volumes_from_gram(gram, k)


def _volumes_from_gram(gram: torch.Tensor, k: int) -> torch.Tensor:
    det = torch.linalg.det(gram)  # [m]  = (k! V)^2
    bound = torch.diagonal(gram, dim1=-2, dim2=-1).prod(-1)  # Hadamard: det <= prod diag
    flat = det <= _DEGENERATE_RTOL * bound
    vol_sq = torch.where(flat, torch.zeros_like(det), det) / float(math.factorial(k)) ** 2
    return vol_sq.clamp_min(0.0).sqrt()


def cayley_menger_volume(points: Any) -> torch.Tensor:
    """k-dimensional volume of every simplex in a batch ``[..., k+1, d]``.

    Method: the Cayley-Menger determinant of a simplex equals, up to the factor
    ``(-1)^(k+1) 2^k``, the Gram determinant of its edge vectors from vertex 0, so we form
    ``E = P[1:] - P[0]`` (``[k, d]``), ``G = E E^T`` (``[k, k]``) and return
    ``sqrt(det G) / k!`` with a batched :func:`torch.linalg.det`, all in float64. The Gram
    form needs ``k x k`` rather than ``(k+2) x (k+2)`` determinants and avoids the bordered
    matrix's cancellation between squared distances, so it is both faster and more accurate
    than building the bordered matrix. Simplices whose determinant is within
    ``1e-12 * prod(diag G)`` of zero (flat to round-off; e.g. collinear or repeated points,
    or any simplex with ``k > d``) get volume exactly 0, never NaN.

    Args:
        points: vertices, any leading batch shape; ``k = points.shape[-2] - 1 >= 1``.

    Returns:
        float64 tensor of shape ``points.shape[:-2]`` on the input's device.

    Shapes:
        points: ``[..., k+1, d]`` -> ``[...]``

    Raises:
        ShapeError: fewer than 2 vertices (k < 1) or fewer than 2 dimensions.
        InputError: NaN / Inf in ``points``.
    """
    t = _as_tensor(points, "points")
    if t.ndim < 2:
        raise ShapeError(
            f"points must have shape [..., k+1, d], got shape {tuple(t.shape)}; "
            "stack the k+1 vertices of each simplex along dimension -2."
        )
    if t.shape[-2] < 2:
        raise ShapeError(
            f"points needs k+1 >= 2 vertices per simplex (k >= 1) along dimension -2, "
            f"got shape {tuple(t.shape)}."
        )
    if t.shape[-1] < 1:
        raise ShapeError(f"points has zero coordinates per vertex (shape {tuple(t.shape)}).")
    check_finite(t, "points")
    batch = t.shape[:-2]
    kp1, d = t.shape[-2], t.shape[-1]
    flat = t.reshape(-1, kp1, d)
    out = torch.empty(flat.shape[0], dtype=torch.float64, device=t.device)
    step = _chunk_rows(kp1 * d * 8 * 2)
    for s in range(0, flat.shape[0], step):
        out[s : s + step] = _volumes_from_vertices(flat[s : s + step].to(torch.float64))
    return out.reshape(batch)


def sample_simplices(n: int, k: int, n_samples: int, *, seed: int = 0, device: Any = "cpu") -> torch.Tensor:
    """Draw ``n_samples`` sets of ``k + 1`` distinct row indices from ``range(n)``.

    Each row is a uniform random (k+1)-subset, drawn independently of the others. Small
    pools use a batched random permutation (argsort of uniform keys); large pools draw with
    replacement and redraw only the rows that contain a repeat (few, since the chance of a
    repeat is about ``(k+1)^2 / 2n``).

    Shapes:
        returns: ``[n_samples, k+1]`` int64 on ``device``.
    """
    k = _check_int(k, "k", minimum=1, hint=" k is the simplex dimension; k=4 is the pentachoron.")
    n_samples = _check_int(n_samples, "n_samples", minimum=1)
    n = _check_int(n, "n", minimum=1)
    if n < k + 1:
        raise ShapeError(
            f"a {k}-simplex needs k+1 = {k + 1} distinct rows but the matrix has n = {n} rows; "
            f"pass more rows or a smaller k."
        )
    dev = torch.device(device)
    gen = make_generator(seed, dev)
    if n * n_samples <= 4_000_000 or (k + 1) ** 2 > n // 4:
        out = torch.empty(n_samples, k + 1, dtype=torch.int64, device=dev)
        step = max(1, 4_000_000 // n)
        for s in range(0, n_samples, step):
            m = min(step, n_samples - s)
            keys = torch.rand(m, n, generator=gen, device=dev)
            out[s : s + m] = keys.topk(k + 1, dim=1).indices
        return out
    idx = torch.randint(0, n, (n_samples, k + 1), generator=gen, device=dev)
    while True:
        srt = idx.sort(dim=1).values
        bad = (srt[:, 1:] == srt[:, :-1]).any(dim=1)
        n_bad = int(bad.sum())
        if n_bad == 0:
            return idx
        idx[bad] = torch.randint(0, n, (n_bad, k + 1), generator=gen, device=dev)


def simplex_volumes(X: Any, indices: Any) -> torch.Tensor:
    """Volumes of the simplices whose vertices are rows ``indices`` of ``X``.

    The rows are gathered a chunk at a time (bounded memory), centred on the column mean
    of ``X`` (volumes are translation invariant; centring keeps the float64 products well
    conditioned) and passed to the Gram-determinant kernel of :func:`cayley_menger_volume`.

    Shapes:
        X: ``[n, d]``; indices: ``[m, k+1]`` -> ``[m]`` float64.
    """
    Xt = _matrix(X, "X", min_rows=2)
    idx = torch.as_tensor(indices, device=Xt.device)
    if idx.ndim != 2 or idx.shape[1] < 2 or idx.dtype not in _INT_DTYPES - {torch.bool}:
        raise ShapeError(
            f"indices must be an integer tensor [m, k+1] with k+1 >= 2, got shape "
            f"{tuple(idx.shape)} and dtype {idx.dtype}."
        )
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= Xt.shape[0]):
        raise InputError(
            f"indices must lie in [0, {Xt.shape[0]}) for X with {Xt.shape[0]} rows, got values in "
            f"[{int(idx.min())}, {int(idx.max())}]."
        )
    return _volumes_at(_centred64(Xt), idx.long())


def _centred64(X: torch.Tensor) -> torch.Tensor:
    X64 = X.to(torch.float64)
    return X64 - X64.mean(dim=0, keepdim=True)


def _volumes_at(X64: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Volumes of the simplices ``idx`` ``[m, k+1]`` over the rows of ``X64`` ``[n, d]``.

    Only the inner products a simplex needs are computed: the ``(k+1)k/2`` vertex pairs of
    every simplex go into one sparse CSR pattern and a sampled dense-dense product
    (:func:`torch.sparse.sampled_addmm`) fills in ``<x_a, x_b>`` for exactly those pairs,
    reading rows of ``X`` in place. Gathering ``[m, k+1, d]`` vertex blocks instead moves
    ``(k+1) d`` floats per simplex through memory and is several times slower on CPU. The
    edge Gram matrix then follows from ``G_ij = H_ij - H_i0 - H_0j + H_00`` (rows of X are
    centred by the caller so the subtraction loses nothing in float64).
    """
    m, kp1 = idx.shape
    k = kp1 - 1
    out = torch.empty(m, dtype=torch.float64, device=X64.device)
    sq = (X64 * X64).sum(1)  # [n]
    iu, ju = torch.triu_indices(kp1, kp1, offset=1, device=X64.device)  # [P] vertex pairs
    step = max(1, 2_000_000 // max(1, iu.numel()))
    for s in range(0, m, step):
        ix = idx[s : s + step]  # [c, k+1]
        c = ix.shape[0]
        dots = _pair_dots(X64, ix[:, iu].reshape(-1), ix[:, ju].reshape(-1)).view(c, -1)
        H = torch.empty(c, kp1, kp1, dtype=torch.float64, device=X64.device)  # vertex Gram
        H[:, iu, ju] = dots
        H[:, ju, iu] = dots
        diag = torch.arange(kp1, device=X64.device)
        H[:, diag, diag] = sq[ix]
        G = H[:, 1:, 1:] - H[:, 1:, :1] - H[:, :1, 1:] + H[:, :1, :1]  # [c, k, k]
        out[s : s + c] = _volumes_from_gram(G, k)
    return out


def _pair_dots(X: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<X[a_p], X[b_p]>`` for every pair ``p`` via a sampled dense-dense product.

    Shapes:
        X: ``[n, d]``; a, b: ``[P]`` -> ``[P]``.
    """
    import warnings

    n = X.shape[0]
    # one CSR entry per distinct unordered pair (the sparse kernels want no repeats)
    key = torch.minimum(a, b) * n + torch.maximum(a, b)
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    rows = torch.div(uniq, n, rounding_mode="floor")
    crow = torch.zeros(n + 1, dtype=torch.int64, device=X.device)
    crow[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(
            crow, uniq - rows * n, torch.zeros(uniq.numel(), dtype=X.dtype, device=X.device),
            size=(n, n), check_invariants=False,
        )
        vals = torch.sparse.sampled_addmm(pattern, X, X.T, beta=0.0).values()
    return vals[inverse]


def cv_ci(
    volumes: torch.Tensor, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> Estimate:
    """CV (std / mean, population std) of ``volumes`` with a vectorised percentile bootstrap.

    Shapes:
        volumes: ``[m]`` -> Estimate over ``n_boot`` resamples.
    """
    v = volumes.to(torch.float64).flatten()
    if v.numel() < 2:
        raise InputError(
            f"volumes needs at least 2 values for a CV, got {v.numel()}; sample more simplices."
        )
    level = _check_level(level)
    n_boot = _check_int(n_boot, "n_boot", minimum=2)
    point = _cv(v)
    gen = make_generator(seed, v.device)
    reps = torch.empty(n_boot, dtype=torch.float64, device=v.device)
    step = max(1, 8_000_000 // v.numel())
    for s in range(0, n_boot, step):
        b = min(step, n_boot - s)
        ix = torch.randint(0, v.numel(), (b, v.numel()), generator=gen, device=v.device)
        reps[s : s + b] = _cv(v[ix])
    return _percentile_estimate(point, reps, level, "percentile bootstrap over simplices")


def _cv(v: torch.Tensor) -> torch.Tensor | float:
    mean = v.mean(dim=-1)
    std = v.std(dim=-1, correction=0)
    res = std / mean
    return float(res) if res.ndim == 0 else res


def _percentile_estimate(point: float, reps: torch.Tensor, level: float, method: str) -> Estimate:
    return from_replicates(float(point), reps, level=level, method=method)


def null_points(X: Any, null: NullModel, *, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """Draw a null-model point cloud matched to ``X``.

    * ``"gaussian"``: a Gaussian with the same mean and covariance as ``X`` (drawn as
      ``mean + Z V diag(sqrt(l))^T`` from the ``d x d`` covariance eigendecomposition);
    * ``"norms"``: the rows of ``X`` keep their norms but point in uniformly random
      directions (a random rotation per row: the same norm distribution, no structure);
    * ``"isotropic"``: an isotropic Gaussian with the same mean and total variance.

    Shapes:
        X: ``[n_x, d]`` -> ``[n or n_x, d]`` float64 on X's device.
    """
    Xt = _matrix(X, "X", min_rows=2)
    if null not in _NULL_MODELS:
        raise InputError(f"null must be one of {_NULL_MODELS} or None, got {null!r}.")
    m = Xt.shape[0] if n is None else _check_int(n, "n", minimum=1)
    dev = Xt.device
    gen = make_generator(seed, dev)
    X64 = Xt.to(torch.float64)
    mean = X64.mean(dim=0, keepdim=True)
    d = X64.shape[1]
    z = torch.randn(m, d, generator=gen, device=dev, dtype=torch.float64)
    if null == "norms":
        norms = X64.norm(dim=1)
        if m != Xt.shape[0]:
            norms = norms[torch.randint(0, Xt.shape[0], (m,), generator=gen, device=dev)]
        return z / z.norm(dim=1, keepdim=True).clamp_min(1e-300) * norms[:, None]
    Xc = X64 - mean
    if null == "isotropic":
        total = float((Xc * Xc).sum()) / max(1, Xt.shape[0] - 1)
        return mean + z * math.sqrt(total / d)
    cov = _second_moment(Xt, center=True) / max(1, Xt.shape[0] - 1)  # [d, d]
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs * evals.clamp_min(0.0).sqrt()[None, :]  # [d, d]; cov = root root^T
    return mean + z @ root.T


def simplex_volume_cv(
    X: Any,
    k: int = 4,
    n_samples: int = 1000,
    seed: int = 0,
    null: NullModel | None = None,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    pool: int | None = None,
) -> SimplexCV:
    """CV of the volumes of random k-simplices whose vertices are rows of ``X``.

    ``n_samples`` (k+1)-subsets of rows are drawn uniformly (distinct rows within a
    simplex), their volumes computed in float64 (:func:`simplex_volumes`), degenerate ones
    (volume 0) counted and left out, and ``cv = std / mean`` reported with a percentile
    bootstrap interval over the simplices. With ``null`` the same is done on a matched null
    point cloud of the same size (see :func:`null_points`) and the ratio ``cv / null_cv`` is
    reported with an interval from resampling both sides. The published pentachoron bands
    (CV about 0.20-0.23 for token embeddings) are claims to check against this null, since a
    structureless Gaussian in high dimension already has a small, dimension-dependent CV.

    Args:
        X: the point cloud (rows are points).
        k: simplex dimension (k=4: pentachora, 5 vertices).
        n_samples: simplices to draw.
        seed: seeds the simplex draw, the null cloud and the bootstraps.
        null: ``None``, ``"gaussian"``, ``"norms"`` or ``"isotropic"``.
        n_boot: bootstrap resamples for the intervals.
        level: interval coverage.
        pool: draw simplices only from the first ``pool`` rows (``None``: all rows).

    Shapes:
        X: ``[n, d]`` with ``n >= k + 1``.

    Raises:
        InputError: k < 1, NaN / Inf in X, unknown null; ShapeError: fewer than k+1 rows.
    """
    k = _check_int(k, "k", minimum=1, hint=" k is the simplex dimension; k=4 is the pentachoron.")
    Xt = _matrix(X, "X", min_rows=1)
    n_samples = _check_int(n_samples, "n_samples", minimum=2)
    if null is not None and null not in _NULL_MODELS:
        raise InputError(f"null must be None or one of {_NULL_MODELS}, got {null!r}.")
    if pool is not None:
        pool = _check_int(pool, "pool", minimum=k + 1)
        Xt = Xt[:pool]
    if Xt.shape[0] < k + 1:
        raise ShapeError(
            f"X needs at least k+1 = {k + 1} rows for {k}-simplices, got shape {tuple(Xt.shape)}; "
            "pass more rows or a smaller k."
        )
    level = _check_level(level)
    seeds = np.random.SeedSequence(int(seed)).generate_state(4, dtype=np.uint32).tolist()
    idx = sample_simplices(Xt.shape[0], k, n_samples, seed=seeds[0], device=Xt.device)
    vols = _volumes_at(_centred64(Xt), idx)
    good = vols > 0
    n_deg = int((~good).sum())
    if int(good.sum()) < 2:
        raise InputError(
            f"X gives only {int(good.sum())} non-degenerate {k}-simplices out of {n_samples}: its rows "
            f"span fewer than k = {k} dimensions (shape {tuple(Xt.shape)}); use a smaller k."
        )
    v = vols[good]
    cv = cv_ci(v, n_boot=n_boot, level=level, seed=seeds[1])
    if null is None:
        return SimplexCV(cv, None, None, None, float(v.mean()), None, None, k, n_samples, n_deg, None)
    Y = null_points(Xt, null, seed=seeds[2])
    nvols = _volumes_at(Y - Y.mean(dim=0, keepdim=True), idx)
    ngood = nvols > 0
    nv = nvols[ngood]
    if nv.numel() < 2:
        raise InputError(f"the {null!r} null model gave fewer than 2 non-degenerate simplices for X.")
    ncv = cv_ci(nv, n_boot=n_boot, level=level, seed=seeds[3])
    ratio = _ratio_ci(v, nv, n_boot=n_boot, level=level, seed=seeds[3] ^ 0x5EED)
    return SimplexCV(
        cv=cv,
        null=null,
        null_cv=ncv,
        ratio=ratio,
        mean_volume=float(v.mean()),
        null_mean_volume=float(nv.mean()),
        volume_ratio=float(v.mean() / nv.mean()),
        k=k,
        n_samples=n_samples,
        n_degenerate=n_deg,
        null_n_degenerate=int((~ngood).sum()),
    )


def _ratio_ci(a: torch.Tensor, b: torch.Tensor, *, n_boot: int, level: float, seed: int) -> Estimate:
    gen = make_generator(seed, a.device)
    point = _cv(a) / _cv(b)
    ra = torch.empty(n_boot, dtype=torch.float64, device=a.device)
    rb = torch.empty_like(ra)
    step = max(1, 8_000_000 // max(a.numel(), b.numel()))
    for s in range(0, n_boot, step):
        m = min(step, n_boot - s)
        ra[s : s + m] = _cv(a[torch.randint(0, a.numel(), (m, a.numel()), generator=gen, device=a.device)])
        rb[s : s + m] = _cv(b[torch.randint(0, b.numel(), (m, b.numel()), generator=gen, device=a.device)])
    return _percentile_estimate(point, ra / rb, level, "percentile bootstrap over simplices, both sides")


# --------------------------------------------------------------------------- spectra
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


def _pr_from_eigs(ev: torch.Tensor) -> float:
    s2 = float((ev * ev).sum())
    return float(ev.sum()) ** 2 / s2 if s2 > 0 else 0.0


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


def _erank_from_sq_singular(sq: torch.Tensor) -> float:
    s = sq.clamp_min(0.0).sqrt()
    total = s.sum()
    if float(total) <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


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
    v = _as_tensor(values, "values").to(torch.float64).flatten()
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
            vals = prod if metric == "cosine" else sq[s : s + blk.shape[0], None] + sq[None, :] - 2 * prod
            parts.append(vals[keep])
        out = torch.cat(parts)
    else:
        m = 200_000 if n_pairs is None else _check_int(n_pairs, "n_pairs", minimum=1)
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
    """Distribution of pairwise cosine similarities between distinct rows (see :func:`pair_values`)."""
    Xt = _matrix(X, "X", min_rows=2)
    n = Xt.shape[0]
    exact = n_pairs is None and n * (n - 1) // 2 <= max_exact_pairs
    vals = pair_values(Xt, metric="cosine", n_pairs=n_pairs, seed=seed, max_exact_pairs=max_exact_pairs)
    return distribution_stats(vals, exact=exact)


def norm_stats(X: Any) -> DistributionStats:
    """Distribution of the row norms of ``X`` (every row)."""
    return distribution_stats(row_norms(X), exact=True)


# --------------------------------------------------------------------------- representation similarity
def _paired(X: Any, Y: Any, min_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    Xt = _matrix(X, "X", min_rows=min_rows).to(torch.float64)
    Yt = _matrix(Y, "Y", min_rows=min_rows).to(torch.float64)
    if Xt.shape[0] != Yt.shape[0]:
        raise ShapeError(
            f"X and Y must describe the same items row by row: X has {Xt.shape[0]} rows "
            f"(shape {tuple(Xt.shape)}), Y has {Yt.shape[0]} (shape {tuple(Yt.shape)})."
        )
    if Xt.device != Yt.device:
        Yt = Yt.to(Xt.device)
    return Xt, Yt


def linear_cka(X: Any, Y: Any) -> float:
    """Linear centred kernel alignment (Kornblith et al., 2019) between two representations
    of the same ``n`` items: ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``.

    Invariant to orthogonal maps and isotropic scaling of either side; 1 for identical
    inputs. Computed in float64 from the ``d x d`` cross products, never ``n x n``.

    Shapes:
        X: ``[n, d1]``, Y: ``[n, d2]``.
    """
    Xt, Yt = _paired(X, Y, 2)
    Xc = Xt - Xt.mean(0, keepdim=True)
    Yc = Yt - Yt.mean(0, keepdim=True)
    cross = (Yc.T @ Xc).square().sum()
    nx = (Xc.T @ Xc).square().sum().sqrt()
    ny = (Yc.T @ Yc).square().sum().sqrt()
    den = float(nx * ny)
    return float(cross) / den if den > 0 else 0.0


def _hsic_u_terms(A: torch.Tensor, B: torch.Tensor) -> float:
    """Unbiased HSIC (Song et al., 2012) for linear kernels ``K = A A^T``, ``L = B B^T``
    without forming ``n x n`` matrices. ``K~`` / ``L~`` are the kernels with zero diagonal:

        HSIC_u = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n (n-3)).
    """
    n = A.shape[0]
    ka = (A * A).sum(1)  # diag K  [n]
    lb = (B * B).sum(1)  # diag L  [n]
    tr = (B.T @ A).square().sum() - (ka * lb).sum()  # tr(K~ L~)
    k1 = A @ A.sum(0) - ka  # K~ 1   [n]
    l1 = B @ B.sum(0) - lb  # L~ 1   [n]
    sk, sl = k1.sum(), l1.sum()
    val = tr + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 * l1).sum()
    return float(val) / (n * (n - 3))


def unbiased_cka(X: Any, Y: Any) -> float:
    """CKA from the unbiased HSIC U-statistic (Song et al., 2012; Nguyen et al., 2021) with
    linear kernels: removes the finite-sample bias that pushes linear CKA of unrelated
    high-dimensional representations towards 1. Needs ``n >= 4``. Can be slightly
    negative for unrelated inputs; 1 for identical ones; invariant to orthogonal maps and
    isotropic scaling. O(n d^2), no ``n x n`` kernel.

    Shapes:
        X: ``[n, d1]``, Y: ``[n, d2]`` with ``n >= 4``.
    """
    Xt, Yt = _paired(X, Y, 4)
    hxy = _hsic_u_terms(Xt, Yt)
    hxx = _hsic_u_terms(Xt, Xt)
    hyy = _hsic_u_terms(Yt, Yt)
    den = hxx * hyy
    return hxy / math.sqrt(den) if den > 0 else 0.0


def _knn(X: torch.Tensor, k: int, metric: str) -> torch.Tensor:
    n = X.shape[0]
    if metric == "cosine":
        Z = X / X.norm(dim=1, keepdim=True).clamp_min(1e-300)
        sq = None
    else:
        Z = X - X.mean(0, keepdim=True)
        sq = (Z * Z).sum(1)
    out = torch.empty(n, k, dtype=torch.int64, device=X.device)
    step = _chunk_rows(n * 8 * 2)
    for s in range(0, n, step):
        blk = Z[s : s + step]
        score = blk @ Z.T  # [b, n] larger = nearer
        if sq is not None:
            score = 2 * score - sq[None, :]  # -||a-b||^2 up to a per-row constant
        rows = torch.arange(s, s + blk.shape[0], device=X.device)
        score[torch.arange(blk.shape[0], device=X.device), rows] = -float("inf")
        out[s : s + step] = score.topk(k, dim=1).indices
    return out


def knn_overlap(
    X: Any, Y: Any, k: int = 10, *, metric: Literal["cosine", "euclidean"] = "cosine", per_point: bool = False
) -> float | torch.Tensor:
    """Mutual k-nearest-neighbour overlap between two representations of the same items.

    For each item, the fraction of its ``k`` nearest neighbours in ``X`` (itself excluded)
    that are also among its ``k`` nearest neighbours in ``Y``; the mean over items (or the
    per-item values with ``per_point=True``). 1 when the neighbourhoods agree; about
    ``k / (n - 1)`` for unrelated representations.

    Shapes:
        X: ``[n, d1]``, Y: ``[n, d2]`` with ``n >= k + 1`` -> float or ``[n]`` float64.
    """
    k = _check_int(k, "k", minimum=1)
    if metric not in ("cosine", "euclidean"):
        raise InputError(f"metric must be 'cosine' or 'euclidean', got {metric!r}.")
    Xt, Yt = _paired(X, Y, k + 1)
    nx = _knn(Xt, k, metric)
    ny = _knn(Yt, k, metric)
    hit = (nx[:, :, None] == ny[:, None, :]).any(dim=2).to(torch.float64)  # [n, k]
    per = hit.mean(dim=1)
    return per if per_point else float(per.mean())


# --------------------------------------------------------------------------- uncertainty
def bootstrap_ci(
    fn: Callable[..., Any],
    *arrays: Any,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Percentile bootstrap interval of ``fn(*arrays)`` over the rows of ``arrays``.

    Every array is indexed by the same resampled rows (paired resampling, so statistics of
    two representations of the same items, e.g. :func:`linear_cka`, stay paired). ``fn``
    must return a number. The loop runs over resamples, not rows; each call of ``fn`` is as
    vectorised as ``fn`` is. Statistics that are undefined on a resample (NaN, or an
    :class:`~hyperlens.errors.InputError` such as degenerate input) are dropped; ``n`` in the
    result says how many remained.

    Example:
        >>> import torch
        >>> X = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
        >>> est = bootstrap_ci(lambda t: float(t.norm(dim=1).mean()), X, n_boot=50, seed=0)
        >>> est.lo <= est.value <= est.hi
        True

    The percentile interval inherits a statistic's resampling bias: resampled rows repeat,
    which lowers spectral statistics such as :func:`participation_ratio`, so their intervals
    can sit below the point estimate. For those prefer :func:`seed_ci` over independent
    subsamples, or report the interval as the spread it is.
    """
    if not callable(fn):
        raise InputError(f"fn must be callable, got {type(fn).__name__}.")
    if not arrays:
        raise InputError("bootstrap_ci needs at least one array after fn; pass the data to resample.")
    n_boot = _check_int(n_boot, "n_boot", minimum=2)
    level = _check_level(level)
    tensors = [_as_tensor(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    n = tensors[0].shape[0] if tensors[0].ndim else 0
    for i, t in enumerate(tensors):
        if t.ndim == 0 or t.shape[0] != n:
            raise ShapeError(
                f"arrays must share their first dimension (rows); arrays[0] has {n} rows but "
                f"arrays[{i}] has shape {tuple(t.shape)}."
            )
    if n < 2:
        raise ShapeError(f"bootstrap_ci needs at least 2 rows, got {n}.")
    point = float(fn(*tensors))
    gen = make_generator(seed, tensors[0].device)
    reps = []
    for _ in range(n_boot):
        ix = torch.randint(0, n, (n,), generator=gen, device=tensors[0].device)
        try:
            reps.append(float(fn(*[t[ix.to(t.device)] for t in tensors])))
        except InputError:
            continue
    r = torch.tensor(reps, dtype=torch.float64)
    return _percentile_estimate(point, r, level, "percentile bootstrap over rows")


def seed_ci(fn: Callable[[int], Any], seeds: Iterable[int] | int = 5, *, level: float = 0.95) -> Estimate:
    """Mean of ``fn(seed)`` over seeds with a Student-t interval for that mean.

    ``seeds`` is an iterable of ints or a count (``range(count)``). Use it for statistics
    whose randomness is internal (a sampled CV, a trained model): each seed is one
    independent replicate.

    Example:
        >>> est = seed_ci(lambda s: float(s % 2), seeds=4)
        >>> est.value
        0.5
    """
    level = _check_level(level)
    seed_list = list(range(_check_int(seeds, "seeds", minimum=2))) if isinstance(seeds, (int, np.integer)) else list(seeds)
    if len(seed_list) < 2:
        raise InputError(f"seeds must give at least 2 seeds for an interval, got {seed_list!r}.")
    return t_interval([float(fn(int(s))) for s in seed_list], level)
