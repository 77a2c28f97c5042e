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
* uncertainty: :func:`seed_ci` (one value per seed), returning an :class:`Estimate` with a
  confidence interval; intervals by resampling rows come from
  :func:`hyperlens.functional.stats.bootstrap_ci`, the one bootstrap of the package.

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

from ..stats import Estimate
from ._base import (
    DistributionStats,
    NullModel,
    SimplexCV,
    Spectrum,
    coefficient_of_variation,
    spectrum_participation_ratio,
)
from .distributions import (
    cosine_moments,
    cosine_stats,
    distribution_stats,
    norm_stats,
    pair_values,
    row_norms,
)
from .similarity import knn_overlap, linear_cka, unbiased_cka
from .simplex import (
    cayley_menger_volume,
    cv_ci,
    null_points,
    sample_simplices,
    simplex_volume_cv,
    simplex_volumes,
)
from .spectra import effective_rank, eigenspectrum, participation_ratio, stable_rank, variance_dims
from .uncertainty import seed_ci

__all__ = [
    "Estimate",
    "SimplexCV",
    "Spectrum",
    "DistributionStats",
    "NullModel",
    "cayley_menger_volume",
    "sample_simplices",
    "simplex_volumes",
    "simplex_volume_cv",
    "null_points",
    "eigenspectrum",
    "participation_ratio",
    "spectrum_participation_ratio",
    "coefficient_of_variation",
    "variance_dims",
    "effective_rank",
    "stable_rank",
    "row_norms",
    "pair_values",
    "distribution_stats",
    "cosine_moments",
    "cosine_stats",
    "norm_stats",
    "linear_cka",
    "unbiased_cka",
    "knn_overlap",
    "seed_ci",
    "cv_ci",
]
