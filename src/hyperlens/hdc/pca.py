"""Streaming PCA and whitening, fitted batch by batch.

Method: exact covariance accumulation. Each batch contributes its count, mean and centred
scatter matrix in float64; batches (and whole estimators, via :meth:`StreamingPCA.merge`)
are combined with the pairwise update of Chan, Golub and LeVeque (1979)::

    n = n_a + n_b,   delta = mean_b - mean_a,
    mean = mean_a + delta * n_b / n,
    M2 = M2_a + M2_b + outer(delta, delta) * n_a * n_b / n,

and the principal axes come from one symmetric eigendecomposition of ``M2 / (n - 1)``.

Why this rather than an incremental SVD (scikit-learn's ``IncrementalPCA``): the result is
the exact PCA of all rows seen, independent of batch sizes and order up to float64
rounding, and shards fitted on different machines merge exactly. Centring each batch on
its own mean before the merge avoids the cancellation of the naive ``sum x x^T - n m m^T``
formula. The price is ``d x d`` float64 state (128 MiB at ``d = 4,096``, the sketch
workspace this is meant for) and one eigendecomposition, done lazily when a learned
attribute or ``transform`` is first needed after new data. The full ``O(d^3)``
``torch.linalg.eigh`` is exact; when only ``k << d`` axes are kept, ``solver="randomized"``
(seeded randomised subspace iteration on the exact covariance, Halko, Martinsson and Tropp
2011) costs ``O(d^2 k)`` per power iteration instead. For ``d`` much above ``10^4`` use an
incremental SVD instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass
from typing import Any, overload

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from ..errors import InputError, NotFittedError, ShapeError
from ..utils import as_float_matrix, check_array_kind

__all__ = ["StreamingPCA", "NotFittedError"]


class _Solved:
    """A read-only learned attribute ``<key>_`` of :class:`StreamingPCA`: entry ``<key>`` of
    the eigendecomposition, solved on first use after new data."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name.removesuffix("_")

    @overload
    def __get__(self, obj: None, owner: type) -> _Solved: ...

    @overload
    def __get__(self, obj: StreamingPCA, owner: type) -> torch.Tensor: ...

    def __get__(self, obj: StreamingPCA | None, owner: type) -> torch.Tensor | _Solved:
        return self if obj is None else obj._solve()[self.key]

    def __set__(self, obj: StreamingPCA, value: Any) -> None:
        raise AttributeError(f"{self.key}_ is learned by fit; it cannot be set.")


@dataclass(eq=False, repr=False)
class StreamingPCA(TransformerMixin, BaseEstimator):
    """PCA / PCA-whitening estimator fitted from a stream of batches (scikit-learn style).

    Args:
        n_components: number of principal axes kept (``None``: all ``d``). Axes beyond the
            rank of the data (``n_samples_seen_ - 1``) have zero variance and arbitrary
            directions.
        whiten: if true, ``transform`` divides each coordinate by the square root of its
            variance, so outputs have identity covariance on the fitted data.
        eps: whitening floor, relative to the largest variance: each variance is clamped
            to at least ``eps * explained_variance_[0]`` before its square root is taken,
            so near-zero axes are not blown up.
        solver: ``"eigh"`` (exact), ``"randomized"`` (top ``k`` axes by subspace iteration
            with ``k + 10`` columns and ``n_iter`` power steps), or ``"auto"`` (default:
            randomized when ``d > 1024`` and ``k <= d / 4``, else exact).
        n_iter: power iterations of the randomized solver.
        seed: seed of the randomized solver's Gaussian start (CPU generator).

    Learned attributes (available after ``fit`` / ``partial_fit``):
        ``n_samples_seen_``, ``n_features_in_``, ``mean_`` ``[d]``, ``covariance_`` ``[d, d]``
        (unbiased), ``components_`` ``[k, d]`` (rows are unit principal axes, sorted by
        decreasing variance, each signed so that its largest-magnitude entry is positive),
        ``explained_variance_`` ``[k]``, ``explained_variance_ratio_`` ``[k]``. All are
        float64 tensors on the device of the first batch.

    Shapes:
        partial_fit / fit: ``X [n, d]`` (or an iterable of such batches);
        transform: ``[n, d] -> [n, k]``; inverse_transform: ``[n, k] -> [n, d]``.

    Example:
        >>> import torch
        >>> pca = StreamingPCA(n_components=2)
        >>> for batch in torch.randn(100, 5, generator=torch.Generator().manual_seed(0)).split(32):
        ...     _ = pca.partial_fit(batch)
        >>> pca.transform(torch.zeros(3, 5)).shape
        torch.Size([3, 2])
    """

    n_components: int | None = None
    _: KW_ONLY
    whiten: bool = False
    eps: float = 1e-6
    solver: str = "auto"
    n_iter: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        self._reset()

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        self._n = 0
        self._mean: torch.Tensor | None = None  # [d] float64
        self._m2: torch.Tensor | None = None  # [d, d] float64 centred scatter
        self._solved: dict[str, torch.Tensor] | None = None
        self._cast: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, ...]] = {}

    def _validate_params(self) -> None:
        k = self.n_components
        bad_type = isinstance(k, bool) or not isinstance(k, (int, np.integer))
        if k is not None and (bad_type or k <= 0):
            raise InputError(
                f"n_components must be a positive int or None, got {k!r}; pass e.g. "
                "n_components=256, or None to keep every axis."
            )
        if not isinstance(self.whiten, bool):
            raise InputError(f"whiten must be True or False, got {self.whiten!r}.")
        if not (isinstance(self.eps, (int, float)) and 0.0 <= float(self.eps) < 1.0):
            raise InputError(f"eps must be a float in [0, 1), got {self.eps!r}; use eps=1e-6.")
        if self.solver not in ("auto", "eigh", "randomized"):
            raise InputError(
                f"solver must be 'auto', 'eigh' or 'randomized', got {self.solver!r}."
            )
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, int) or self.n_iter < 0:
            raise InputError(f"n_iter must be an int >= 0, got {self.n_iter!r}; use n_iter=6.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise InputError(f"seed must be an int, got {type(self.seed).__name__} {self.seed!r}.")

    def set_params(self, **params: Any) -> StreamingPCA:
        """Set constructor parameters (scikit-learn style); a fitted state is kept until the
        next ``fit`` but its solved axes are recomputed with the new settings."""
        super().set_params(**params)
        self._solved = None
        self._cast = {}
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"StreamingPCA({args})"

    # ------------------------------------------------------------------ fitting
    def __sklearn_is_fitted__(self) -> bool:
        return self._mean is not None

    def partial_fit(self, X: Any, y: Any = None) -> StreamingPCA:
        """Add one batch ``X [n, d]`` to the running mean and scatter matrix."""
        self._validate_params()
        device = self._mean.device if self._mean is not None else None
        x = as_float_matrix(X, "X", dtype=torch.float64, device=device)
        if self._mean is not None and x.shape[1] != self._mean.shape[0]:
            raise ShapeError(
                f"X has {x.shape[1]} features, but StreamingPCA is expecting "
                f"{self._mean.shape[0]} features as input (shape {tuple(x.shape)}); pass "
                "batches with the same width or call fit() to start over."
            )
        n_b = x.shape[0]
        mean_b = x.mean(dim=0)
        xc = x - mean_b
        m2_b = xc.T @ xc  # [d, d]
        if self._mean is None or self._m2 is None:
            self._n, self._mean, self._m2 = n_b, mean_b, m2_b
        else:
            self._n, self._mean, self._m2 = _chan_merge(
                self._n, self._mean, self._m2, n_b, mean_b, m2_b
            )
        self._solved = None
        self._cast = {}
        return self

    def fit(self, X: Any, y: Any = None) -> StreamingPCA:
        """Fit from scratch on ``X [n, d]`` or on an iterable of batches (consumed once)."""
        self._validate_params()
        self._reset()
        nested_numbers = isinstance(X, (list, tuple)) and bool(X) and not isinstance(
            X[0], (torch.Tensor, np.ndarray)
        )
        if type(X).__module__.startswith("scipy.sparse"):
            check_array_kind(X, "X")
        if isinstance(X, (torch.Tensor, np.ndarray)) or nested_numbers:
            self.partial_fit(X)
        elif isinstance(X, Iterable):
            for batch in X:
                self.partial_fit(batch)
            if self._n == 0:
                raise InputError(
                    "X is an empty iterable of batches; pass at least one [n, d] batch."
                )
        else:
            self.partial_fit(X)
        self._solve()
        return self

    def merge(self, other: StreamingPCA) -> StreamingPCA:
        """Fold the statistics of ``other`` (fitted on other rows) into this estimator."""
        if not isinstance(other, StreamingPCA):
            raise InputError(f"other must be a StreamingPCA, got {type(other).__name__}.")
        if other._mean is None or other._m2 is None:
            return self
        if self._mean is None or self._m2 is None:
            self._n = other._n
            self._mean, self._m2 = other._mean.clone(), other._m2.clone()
        else:
            if other._mean.shape != self._mean.shape:
                raise ShapeError(
                    f"other was fitted on {other._mean.shape[0]} features, this one on "
                    f"{self._mean.shape[0]}; only estimators of the same width can merge."
                )
            self._n, self._mean, self._m2 = _chan_merge(
                self._n,
                self._mean,
                self._m2,
                other._n,
                other._mean.to(self._mean.device),
                other._m2.to(self._mean.device),
            )
        self._solved = None
        self._cast = {}
        return self

    # ------------------------------------------------------------------ solving
    def _solve(self) -> dict[str, torch.Tensor]:
        if self._solved is not None:
            return self._solved
        if self._mean is None or self._m2 is None:
            raise NotFittedError(
                "StreamingPCA is not fitted yet; call fit(X) or partial_fit(batch) first."
            )
        if self._n < 2:
            raise InputError(
                f"StreamingPCA has seen n_samples={self._n}; a covariance needs at least 2. "
                "Feed more rows with partial_fit before using the estimator."
            )
        d = self._mean.shape[0]
        k = d if self.n_components is None else int(self.n_components)
        if k > d:
            raise InputError(
                f"n_components={k} exceeds the number of features d={d}; pass "
                f"n_components <= {d}."
            )
        self._validate_params()
        cov = self._m2 / (self._n - 1)
        cov = 0.5 * (cov + cov.T)
        solver = self.solver
        if solver == "auto":
            solver = "randomized" if d > 1024 and 4 * k <= d else "eigh"
        if solver == "randomized" and k + 10 < d:
            evals, comps = _randomized_top_eigh(cov, k, self.n_iter, int(self.seed))
        else:
            evals_all, evecs = torch.linalg.eigh(cov)  # ascending
            evals = evals_all.flip(0)[:k]
            comps = evecs.flip(1)[:, :k].T.contiguous()  # [k, d]
        evals = evals.clamp_min(0.0)
        # deterministic signs: the largest-magnitude entry of every axis is positive
        idx = comps.abs().argmax(dim=1)
        signs = torch.sign(comps.gather(1, idx[:, None])).squeeze(1)
        signs[signs == 0] = 1.0
        comps = comps * signs[:, None]
        total = torch.diagonal(cov).sum()
        ratio = evals / total if float(total) > 0 else torch.zeros_like(evals)
        floor = float(self.eps) * float(evals[0]) if k else 0.0
        scale = 1.0 / torch.sqrt(evals.clamp_min(max(floor, torch.finfo(torch.float64).tiny)))
        self._solved = {
            "covariance": cov,
            "components": comps,
            "explained_variance": evals,
            "explained_variance_ratio": ratio,
            "whiten_scale": scale,
        }
        return self._solved

    @property
    def n_samples_seen_(self) -> int:
        if self._mean is None:
            raise NotFittedError("StreamingPCA is not fitted yet; call fit or partial_fit first.")
        return self._n

    @property
    def n_features_in_(self) -> int:
        if self._mean is None:
            raise NotFittedError("StreamingPCA is not fitted yet; call fit or partial_fit first.")
        return int(self._mean.shape[0])

    @property
    def mean_(self) -> torch.Tensor:
        if self._mean is None:
            raise NotFittedError("StreamingPCA is not fitted yet; call fit or partial_fit first.")
        return self._mean

    covariance_ = _Solved()
    components_ = _Solved()
    explained_variance_ = _Solved()
    explained_variance_ratio_ = _Solved()

    # ------------------------------------------------------------------ transforming
    def _params_for(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
        key = (dtype, device)
        if key not in self._cast:
            solved = self._solve()
            mean = self.mean_.to(device=device, dtype=dtype)
            comps = solved["components"].to(device=device, dtype=dtype)
            scale = solved["whiten_scale"].to(device=device, dtype=dtype)
            self._cast[key] = (mean, comps, scale)
        return self._cast[key]

    def _input(self, X: Any, name: str, width: int) -> torch.Tensor:
        if isinstance(X, torch.Tensor) and X.is_floating_point():
            x = as_float_matrix(X, name, dtype=X.dtype)
        else:
            x = as_float_matrix(X, name, dtype=torch.float32)
        if x.shape[1] != width:
            raise ShapeError(
                f"{name} has {x.shape[1]} features, but StreamingPCA is expecting {width} "
                f"features as input (shape {tuple(x.shape)}); pass [n, {width}]."
            )
        return x

    def transform(self, X: Any) -> torch.Tensor:
        """Project (and whiten, if set) ``X``; float inputs keep their dtype, others become
        float32. Shapes: ``[n, d] -> [n, k]``."""
        d = self.n_features_in_
        x = self._input(X, "X", d)
        mean, comps, scale = self._params_for(x.dtype, x.device)
        y = (x - mean) @ comps.T  # [n, k]
        return y * scale if self.whiten else y

    def fit_transform(self, X: Any, y: Any = None) -> torch.Tensor:
        return self.fit(X).transform(X)

    def inverse_transform(self, Y: Any) -> torch.Tensor:
        """Map ``[n, k]`` scores back to ``[n, d]`` (exact when ``k == d``)."""
        k = int(self.components_.shape[0])
        y = self._input(Y, "Y", k)
        mean, comps, scale = self._params_for(y.dtype, y.device)
        if self.whiten:
            y = y / scale
        return y @ comps + mean


def _randomized_top_eigh(
    cov: torch.Tensor, k: int, n_iter: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` eigenpairs of a symmetric PSD ``cov [d, d]`` by randomised subspace iteration.

    Returns eigenvalues ``[k]`` (descending) and eigenvectors as rows ``[k, d]``.
    """
    d = cov.shape[0]
    width = min(d, k + 10)
    gen = torch.Generator().manual_seed(seed)
    omega = torch.randn(d, width, generator=gen, dtype=cov.dtype).to(cov.device)
    q, _ = torch.linalg.qr(cov @ omega)
    for _ in range(n_iter):  # power iterations sharpen the spectrum's decay
        q, _ = torch.linalg.qr(cov @ q)
    small = q.T @ cov @ q  # [width, width]
    small = 0.5 * (small + small.T)
    evals, vecs = torch.linalg.eigh(small)
    evals = evals.flip(0)[:k]
    comps = (q @ vecs.flip(1)[:, :k]).T.contiguous()
    return evals, comps


def _chan_merge(
    n_a: int,
    mean_a: torch.Tensor,
    m2_a: torch.Tensor,
    n_b: int,
    mean_b: torch.Tensor,
    m2_b: torch.Tensor,
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Pairwise merge of (count, mean, centred scatter) statistics (Chan et al., 1979)."""
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = m2_a + m2_b
    m2.addr_(delta, delta, alpha=n_a * n_b / n)
    return n, mean, m2
