"""Confidence intervals by repeating seeds.

Intervals by resampling rows come from :func:`hyperlens.functional.stats.bootstrap_ci`
(a tuple of arrays is resampled row-paired).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ...errors import InputError
from ...utils import check_int, check_level
from ..stats import Estimate, t_interval


# --------------------------------------------------------------------------- uncertainty
def seed_ci(
    fn: Callable[[int], Any], seeds: Iterable[int] | int = 5, *, level: float = 0.95
) -> Estimate:
    """Mean of ``fn(seed)`` over seeds with a Student-t interval for that mean.

    ``seeds`` is an iterable of ints or a count (``range(count)``). Use it for statistics
    whose randomness is internal (a sampled CV, a trained model): each seed is one
    independent replicate.

    Example:
        >>> est = seed_ci(lambda s: float(s % 2), seeds=4)
        >>> est.value
        0.5
    """
    level = check_level(level)
    seed_list = (
        list(range(check_int(seeds, "seeds", minimum=2)))
        if isinstance(seeds, (int, np.integer))
        else list(seeds)
    )
    if len(seed_list) < 2:
        raise InputError(f"seeds must give at least 2 seeds for an interval, got {seed_list!r}.")
    return t_interval([float(fn(int(s))) for s in seed_list], level)
