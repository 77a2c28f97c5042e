"""Confidence intervals by resampling rows or repeating seeds."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from ...errors import InputError, ShapeError
from ...utils import make_generator
from ..stats import Estimate, t_interval
from ._base import (
    _as_tensor,
    _check_int,
    _check_level,
)
from .simplex import _percentile_estimate


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
