"""One home for the statistics every battery reports: intervals, resampling, tests.

Every number hyperlens reports with uncertainty is an :class:`Estimate`. It comes from one
of four interval makers and two tests:

* :func:`t_interval`: the mean of independent replicates (one value per seed) with a
  Student-t interval;
* :func:`bootstrap_ci`: a percentile bootstrap over items (the first axis of the data);
* :func:`paired_bootstrap`: the difference of a statistic between two systems scored on
  the same items, resampling the same items for both;
* :func:`wilson_interval`: a binomial proportion (an accuracy) with the Wilson score
  interval, which stays inside [0, 1] and behaves at 0 and n;
* :func:`two_level_bootstrap` / :func:`two_level_from_replicates`: a mean over seeds
  *and* items (every seed scores the same items), resampling both levels, so the interval
  carries the training noise between seeds and the sampling noise of the items;
* :func:`cv_delta_interval`: a coefficient of variation (std / mean) of many independent
  values with the large-sample (delta-method) interval from their first four moments;
* :func:`mcnemar`: are two classifiers' error rates on the same items different?
* :func:`permutation_pvalue`: the add-one p-value of an observed statistic against
  values drawn under a null model.

:func:`from_replicates` turns any set of resampled values into a percentile
:class:`Estimate`, for the resampling schemes that are not plain item bootstraps (for
instance two independent samples resampled separately). :func:`detectable_difference` gives the
power of a test: the smallest true difference it finds with a given probability.

Resampling draws from ``numpy.random.default_rng(seed)``, so the same seed gives the
same interval on every device; data given as a torch tensor is indexed where it lives.

Examples:
    >>> from hyperlens.functional.stats import t_interval, wilson_interval
    >>> est = t_interval([0.70, 0.72, 0.71, 0.69])
    >>> round(est.value, 3), est.n, est.method
    (0.705, 4, 't over seeds')
    >>> w = wilson_interval(8, 10)
    >>> round(w.lo, 4), round(w.hi, 4)
    (0.4902, 0.9433)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ..errors import InputError, ShapeError
from ..utils import check_int, check_level

__all__ = [
    "Estimate",
    "t_interval",
    "bootstrap_ci",
    "paired_bootstrap",
    "wilson_interval",
    "cv_delta_interval",
    "ratio_delta_interval",
    "mcnemar",
    "permutation_pvalue",
    "from_replicates",
    "two_level_bootstrap",
    "two_level_ratio",
    "two_level_from_replicates",
    "detectable_difference",
]

Alternative = Literal["greater", "less", "two-sided"]
# Elements of index memory per chunk of resamples in the vectorised bootstrap.
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A statistic with a confidence interval.

    Attributes:
        value: the point estimate (the statistic on all items, or the mean over seeds).
        lo, hi: the interval's bounds (NaN when there is too little data for one).
        level: the interval's coverage (0.95 for a 95 % interval).
        method: how the interval was made (``"t over seeds"``, ``"percentile bootstrap"``,
            ``"wilson"``, ...).
        n: how many values the interval rests on (seeds, kept resamples, or trials).
        std: the standard deviation of the per-seed or resampled values (NaN when not
            defined, e.g. for a Wilson interval).

    Example:
        >>> e = Estimate(0.5, 0.4, 0.6, 0.95, "t over seeds", 5)
        >>> f"{e:.2f}"
        '0.50 [0.40, 0.60]'
        >>> sorted(e.as_dict())
        ['hi', 'level', 'lo', 'method', 'n', 'std', 'value']
    """

    value: float
    lo: float
    hi: float
    level: float = 0.95
    method: str = ""
    n: int = 0
    std: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)

    @property
    def interval(self) -> tuple[float, float]:
        """``(lo, hi)``."""
        return (self.lo, self.hi)

    def __format__(self, spec: str) -> str:
        spec = spec or ".4f"
        return f"{self.value:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"


# --------------------------------------------------------------------------- validation
def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "shape")


def _as_items(x: Any, name: str) -> Any:
    """A numpy array or a torch tensor with at least one axis (items on axis 0)."""
    if _is_tensor(x):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise InputError(
                f"{name} must be an array of items, got {type(x).__name__}: {err}"
            ) from err
        if arr.dtype == object:
            raise InputError(
                f"{name} must be numeric (items on the first axis), got an object array of "
                f"shape {arr.shape}; pass equal-length numeric rows."
            )
    if arr.ndim == 0:
        raise ShapeError(f"{name} needs an items axis, got a scalar {x!r}; pass a sequence.")
    return arr


def _finite_1d(values: Any, name: str) -> np.ndarray:
    if _is_tensor(values):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be a sequence of numbers, got {values!r}: {err}") from err
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D (one value per replicate), got shape {arr.shape}.")
    return arr[np.isfinite(arr)]


def _take(x: Any, idx: np.ndarray) -> Any:
    if _is_tensor(x):
        import torch

        return x[torch.as_tensor(idx, device=x.device)]
    return x[idx]


def _mean_of_items(x: Any) -> float:
    """The default statistic: the mean of every value in the resample."""
    return float(x.mean())


def _batched_mean(x: Any) -> Any:
    """``[b, n, ...] -> [b]``: the mean over every axis but the first."""
    flat = x.reshape(x.shape[0], -1)
    return flat.mean(1)


# --------------------------------------------------------------------------- intervals
def from_replicates(
    point: float, replicates: Any, *, level: float = 0.95, method: str = "percentile bootstrap"
) -> Estimate:
    """A percentile :class:`Estimate` around ``point`` from resampled ``replicates``.

    Non-finite replicates (a statistic undefined on one resample) are dropped; ``n`` says
    how many remained. With none left the bounds are NaN.

    Shapes:
        replicates: ``[n_boot]`` (numpy, torch or a list).

    Example:
        >>> from_replicates(1.0, [0.0, 1.0, 2.0, float("nan")], level=0.5).n
        3
    """
    level = check_level(level)
    reps = _finite_1d(replicates, "replicates")
    if reps.size == 0:
        return Estimate(float(point), math.nan, math.nan, level, method, 0, math.nan)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    std = float(reps.std(ddof=1)) if reps.size > 1 else 0.0
    return Estimate(float(point), float(lo), float(hi), level, method, int(reps.size), std)


def t_interval(values: Any, level: float = 0.95) -> Estimate:
    """Mean of independent replicates (one value per seed) with a Student-t interval.

    Non-finite values are dropped. With fewer than two values left the bounds are NaN.

    Shapes:
        values: ``[n_seeds]``.

    Example:
        >>> e = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
        >>> e.value, round(e.hi - e.value, 4)
        (3.0, 1.9632)
    """
    from scipy import stats as sps

    level = check_level(level)
    vals = _finite_1d(values, "values")
    if vals.size < 2:
        mean = float(vals.mean()) if vals.size else math.nan
        return Estimate(mean, math.nan, math.nan, level, "t over seeds", int(vals.size), math.nan)
    mean = float(vals.mean())
    sd = float(vals.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2.0, vals.size - 1)) * sd / math.sqrt(vals.size)
    return Estimate(mean, mean - half, mean + half, level, "t over seeds", int(vals.size), sd)


def _z(level: float) -> float:
    """Two-sided standard-normal quantile of ``level``."""
    from scipy import stats as sps

    return float(sps.norm.ppf(0.5 + level / 2.0))


def cv_delta_interval(values: Any, level: float = 0.95) -> Estimate:
    """CV (population std / mean) of independent values with a delta-method interval.

    For ``n`` i.i.d. values with CV ``c``, skewness ``g`` and kurtosis ``k`` (both
    standardised), the sample CV is asymptotically normal with variance
    ``c**2 * (c**2 - g * c + (k - 1) / 4) / n`` (first-order expansion of ``std / mean``
    in the sample mean and variance, whose covariance is set by the third and fourth
    central moments). The interval is ``c -+ z * se``. It needs no resampling, so it costs
    one pass over the values; for large ``n`` it agrees with the percentile bootstrap
    (the tests compare the two and check coverage on skewed data), for small ``n`` or
    very heavy tails prefer the bootstrap. ``std`` holds the standard error.

    Shapes:
        values: ``[n]`` (numpy, torch or a list), ``n >= 3``.

    Example:
        >>> import numpy as np
        >>> v = np.random.default_rng(0).gamma(25.0, size=100_000)  # CV 0.2
        >>> e = cv_delta_interval(v)
        >>> e.lo < 0.2 < e.hi, e.method
        (True, 'delta method')
    """
    level = check_level(level)
    v = _finite_1d(values, "values").astype(np.float64, copy=False)
    if v.size < 3:
        raise InputError(
            f"values needs at least 3 finite values for a CV interval, got {v.size}."
        )
    mean = float(v.mean())
    c = v - mean
    c2 = c * c
    m2 = float(c2.mean())
    if mean == 0.0 or m2 == 0.0:
        cv = 0.0 if m2 == 0.0 and mean != 0.0 else math.nan
        return Estimate(cv, cv, cv, level, "delta method", int(v.size), 0.0)
    m3 = float((c2 * c).mean())
    m4 = float((c2 * c2).mean())
    cv = math.sqrt(m2) / mean
    skew = m3 / m2**1.5
    kurt = m4 / (m2 * m2)
    var = cv * cv * (cv * cv - skew * cv + (kurt - 1.0) / 4.0) / v.size
    se = math.sqrt(max(var, 0.0))
    half = _z(level) * se
    return Estimate(cv, cv - half, cv + half, level, "delta method", int(v.size), se)


def ratio_delta_interval(a: Estimate, b: Estimate, level: float = 0.95) -> Estimate:
    """``a / b`` of two independent normal-approximation estimates (``std`` holding each
    one's standard error, as :func:`cv_delta_interval` returns them), with the interval
    taken on the log scale: ``se(log r) = hypot(se_a / a, se_b / b)``.

    Example:
        >>> a = Estimate(0.4, 0.38, 0.42, 0.95, "delta method", 1000, 0.01)
        >>> b = Estimate(0.2, 0.19, 0.21, 0.95, "delta method", 1000, 0.005)
        >>> r = ratio_delta_interval(a, b)
        >>> round(r.value, 3), round(r.lo, 3), round(r.hi, 3)
        (2.0, 1.866, 2.144)
    """
    level = check_level(level)
    if a.value == 0.0 or b.value == 0.0:
        raise InputError("ratio_delta_interval needs non-zero estimates on both sides.")
    r = a.value / b.value
    se_log = math.hypot(a.std / a.value, b.std / b.value)
    z = _z(level)
    return Estimate(r, r * math.exp(-z * se_log), r * math.exp(z * se_log), level,
                    "delta method, both sides", min(a.n, b.n), abs(r) * se_log)


def _resample_indices(
    sizes: Sequence[int], n_boot: int, seed: int
) -> list[list[np.ndarray]]:
    """Chunks of bootstrap indices from one seeded stream, one ``[b, n_i]`` block per size.

    ``sum(b) == n_boot``. One size is the paired case (every array indexed by the same
    rows); several sizes draw each array's rows on their own, in turn, chunk by chunk.
    """
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_ELEMENTS // max(1, sum(sizes)))
    out = []
    for s in range(0, n_boot, step):
        b = min(step, n_boot - s)
        out.append([rng.integers(0, n, size=(b, n)) for n in sizes])
    return out


def _replicates(
    arrays: Sequence[Any],
    statistic: Callable[..., Any],
    *,
    n_boot: int,
    seed: int,
    vectorized: bool,
    paired: bool = True,
) -> np.ndarray:
    """``[n_boot]`` values of ``statistic`` on resampled items (NaN where undefined)."""
    sizes = [int(arrays[0].shape[0])] if paired else [int(a.shape[0]) for a in arrays]
    reps: list[float] = []
    for blocks in _resample_indices(sizes, n_boot, seed):
        per_array = blocks * len(arrays) if paired else blocks
        b = per_array[0].shape[0]
        if vectorized:
            vals = statistic(*[_take(a, idx) for a, idx in zip(arrays, per_array, strict=True)])
            if _is_tensor(vals):
                vals = vals.detach().cpu().numpy()
            vals = np.asarray(vals, dtype=np.float64).reshape(-1)
            if vals.shape[0] != b:
                raise ShapeError(
                    f"a vectorized statistic must return one value per resample ({b}),"
                    f" got shape {vals.shape}; pass vectorized=False for a per-resample function."
                )
            reps.extend(vals.tolist())
            continue
        for r in range(b):
            try:
                reps.append(float(statistic(*[_take(a, idx[r])
                                              for a, idx in zip(arrays, per_array, strict=True)])))
            except InputError:
                reps.append(math.nan)
    return np.asarray(reps, dtype=np.float64)


def _prepare(data: Any, name: str, *, paired: bool = True) -> tuple[list[Any], bool]:
    """``data`` (one array, or a tuple of arrays resampled together) -> (arrays, was_tuple)."""
    if isinstance(data, tuple):
        if not data:
            raise InputError(f"{name} is an empty tuple; pass an array or a tuple of arrays.")
        arrays = [_as_items(a, f"{name}[{i}]") for i, a in enumerate(data)]
        tup = True
    else:
        arrays = [_as_items(data, name)]
        tup = False
    n = int(arrays[0].shape[0])
    for i, a in enumerate(arrays):
        if paired and int(a.shape[0]) != n:
            raise ShapeError(
                f"the arrays in {name} must share their first axis (items): {name}[0] has {n} "
                f"items but {name}[{i}] has shape {tuple(a.shape)}; pass paired=False to "
                "resample each array on its own."
            )
        if int(a.shape[0]) < 2:
            which = name if len(arrays) == 1 else f"{name}[{i}]"
            raise ShapeError(
                f"{which} needs at least 2 items to resample, got {int(a.shape[0])}."
            )
    return arrays, tup


def _seed_draws(rng: np.random.Generator, n_seeds: int, n_boot: int) -> np.ndarray:
    """``[n_boot, n_seeds]`` weights: how often each seed is drawn (with replacement),
    divided by the number of seeds."""
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    w = np.zeros((n_boot, n_seeds))
    np.add.at(w, (np.arange(n_boot)[:, None], draws), 1.0)
    return w / n_seeds


def two_level_bootstrap(
    values: Any, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> Estimate:
    """Mean of per-item scores over seeds and items, with a two-level percentile bootstrap.

    ``values[s, i]`` is seed ``s``'s score on item ``i`` (a 0/1 correctness, a per-item
    difference between two systems, ...), every seed scored on the same items. Each
    resample draws the seeds with replacement and, independently, the items with
    replacement, and averages the drawn grid; so the interval widens with the spread
    between seeds as well as with the items. With one seed it is the item bootstrap.

    Shapes:
        values: ``[n_seeds, n_items]``.

    Example:
        >>> import numpy as np
        >>> v = np.array([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
        >>> e = two_level_bootstrap(v, n_boot=200, seed=0)
        >>> round(e.value, 3), e.method, e.lo <= e.value <= e.hi
        (0.75, 'two-level bootstrap (seeds x items)', True)
    """
    level = check_level(level)
    n_boot = check_int(n_boot, "n_boot", minimum=1)
    v = _grid(values, "values")
    reps = _two_level_means([v], n_boot, seed)[0]
    return from_replicates(float(v.mean()), reps, level=level,
                           method="two-level bootstrap (seeds x items)")


def _grid(values: Any, name: str) -> np.ndarray:
    """``values`` as a finite float64 ``[n_seeds, n_items]`` array (both at least 1)."""
    v = np.asarray(values.detach().cpu() if _is_tensor(values) else values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        raise ShapeError(f"{name} must be [n_seeds, n_items] with both at least 1, got shape "
                         f"{v.shape}.")
    if not np.isfinite(v).all():
        raise InputError(f"{name} hold NaN or infinite scores; drop or fill them first.")
    return v


def _two_level_means(grids: list[np.ndarray], n_boot: int, seed: int) -> list[np.ndarray]:
    """``[n_boot]`` two-level resampled means of each ``[S, N]`` grid, every grid on the
    same draws of seeds and items."""
    S, N = grids[0].shape
    rng = np.random.default_rng(seed)
    item_counts = np.zeros((n_boot, N))
    np.add.at(item_counts, (np.arange(n_boot)[:, None], rng.integers(0, N, (n_boot, N))), 1.0)
    seed_w = _seed_draws(rng, S, n_boot)
    return [(seed_w * (v @ (item_counts / N).T).T).sum(1) for v in grids]


def two_level_ratio(
    numerator: Any, denominator: Any, *, n_boot: int = 1000, level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """``mean(numerator) / mean(denominator)`` with a two-level percentile bootstrap.

    Both are ``[n_seeds, n_items]`` per-item scores on the same seeds and items (e.g. a
    system's gain over a floor, and a ceiling's gain over the same floor); every resample
    draws seeds and items once and takes both means on that draw, so the interval keeps
    their correlation. Resamples whose denominator is 0 are dropped.

    Example:
        >>> import numpy as np
        >>> num = np.array([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
        >>> den = np.ones((2, 4))
        >>> e = two_level_ratio(num, den, n_boot=200, seed=0)
        >>> round(e.value, 3), e.lo <= e.value <= e.hi
        (0.5, True)
    """
    level = check_level(level)
    n_boot = check_int(n_boot, "n_boot", minimum=1)
    a, b = _grid(numerator, "numerator"), _grid(denominator, "denominator")
    if a.shape != b.shape:
        raise ShapeError(f"numerator {a.shape} and denominator {b.shape} must have the same "
                         "[n_seeds, n_items] shape.")
    if b.mean() == 0:
        raise InputError("the denominator's mean is 0: the ratio is undefined (the ceiling "
                         "does not rise above the floor).")
    ra, rb = _two_level_means([a, b], n_boot, seed)
    ok = rb != 0
    return from_replicates(float(a.mean() / b.mean()), ra[ok] / rb[ok], level=level,
                           method="two-level bootstrap of a ratio (seeds x items)")


def two_level_from_replicates(
    replicates: Any, *, level: float = 0.95, seed: int = 0
) -> Estimate:
    """Mean over seeds of a statistic whose item bootstrap each seed already drew.

    ``replicates[s]`` holds seed ``s``'s statistic on all items (column 0) and on item
    resamples (columns 1..), the resamples *shared* by every seed (resample ``b`` draws the
    same items for each seed), as a correlation over pairs of items needs. Resample ``b``
    of the result draws the seeds with replacement and averages their column ``b``; the
    point is the mean of column 0 over seeds.

    Shapes:
        replicates: ``[n_seeds, 1 + n_boot]``.

    Example:
        >>> import numpy as np
        >>> r = np.array([[0.10, 0.08, 0.12, 0.11], [0.14, 0.13, 0.15, 0.12]])
        >>> e = two_level_from_replicates(r, seed=0)
        >>> round(e.value, 3), e.n
        (0.12, 3)
    """
    level = check_level(level)
    r = np.asarray(replicates.detach().cpu() if _is_tensor(replicates) else replicates,
                   dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 1 or r.shape[1] < 2:
        raise ShapeError(f"replicates must be [n_seeds, 1 + n_boot] with n_boot >= 1, got "
                         f"shape {r.shape}.")
    S, B = r.shape[0], r.shape[1] - 1
    reps = (_seed_draws(np.random.default_rng(seed), S, B) * r[:, 1:].T).sum(1)
    return from_replicates(float(r[:, 0].mean()), reps, level=level,
                           method="two-level bootstrap (seeds x items)")


def detectable_difference(std_error: float, *, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true difference that a two-sided test at ``level`` confidence finds with
    probability ``power``, given the standard error of the estimated difference (normal
    approximation: ``(z_{(1+level)/2} + z_power) * std_error``; 2.80 standard errors at
    95 % and 80 %).

    Example:
        >>> round(detectable_difference(0.01), 4)
        0.028
    """
    from scipy import stats as sps

    level = check_level(level)
    if not 0.0 < power < 1.0:
        raise InputError(f"power must be in (0, 1), got {power!r}; e.g. 0.8.")
    if not math.isfinite(std_error) or std_error < 0:
        raise InputError(f"std_error must be a finite number >= 0, got {std_error!r}.")
    return (_z(level) + float(sps.norm.ppf(power))) * float(std_error)


def bootstrap_ci(
    data: Any,
    statistic: Callable[..., Any] | None = None,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    vectorized: bool = False,
    paired: bool = True,
) -> Estimate:
    """Percentile bootstrap interval of ``statistic(data)`` over items (the first axis).

    ``data`` is an array (numpy, torch, or a list) whose first axis holds the items, or a
    tuple of such arrays with the same number of items: every array is indexed by the same
    resampled items, and ``statistic`` gets them as separate arguments (so a statistic of
    two representations of the same items stays paired). With ``paired=False`` the arrays
    of a tuple are independent samples (their lengths may differ) and each is resampled on
    its own, e.g. a ratio of two groups' statistics. ``statistic`` returns a number
    and defaults to the mean; with ``vectorized=True`` it gets a batch of resamples
    (``[b, n, ...]`` per array) and returns ``[b]`` values, which is much faster.
    Resamples on which the statistic is undefined (NaN, or an
    :class:`~hyperlens.errors.InputError`) are dropped; ``n`` says how many remained.

    The percentile interval inherits the statistic's resampling bias: repeated items lower
    spectral statistics such as a participation ratio, so their intervals can sit below
    the point estimate. For those prefer :func:`t_interval` over independent subsamples.

    Shapes:
        data: ``[n, ...]`` or a tuple of ``[n, ...]`` arrays (``[n_i, ...]`` when not
        paired) -> Estimate.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=500)
        >>> e = bootstrap_ci(x, n_boot=500, seed=1)
        >>> e.lo < e.value < e.hi and e.n == 500
        True
    """
    arrays, tup = _prepare(data, "data", paired=paired)
    n_boot = check_int(n_boot, "n_boot", minimum=2)
    level = check_level(level)
    if statistic is None:
        if tup:
            raise InputError(
                "bootstrap_ci got a tuple of arrays but no statistic; pass statistic= taking "
                "one argument per array."
            )
        statistic, vectorized, fn = _batched_mean, True, _mean_of_items
    elif not callable(statistic):
        raise InputError(f"statistic must be callable, got {type(statistic).__name__}.")
    else:
        fn = statistic
    if vectorized:
        point_val = statistic(*[a[None] for a in arrays])
        point = float(np.asarray(point_val.detach().cpu() if _is_tensor(point_val)
                                 else point_val, dtype=np.float64).reshape(-1)[0])
    else:
        point = float(fn(*arrays))
    reps = _replicates(arrays, statistic, n_boot=n_boot, seed=seed, vectorized=vectorized,
                       paired=paired)
    method = "percentile bootstrap over items" + ("" if paired else ", each sample on its own")
    return from_replicates(point, reps, level=level, method=method)


def paired_bootstrap(
    a: Any,
    b: Any,
    *,
    statistic: Callable[[Any], Any] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    vectorized: bool = False,
) -> Estimate:
    """Interval for ``statistic(a) - statistic(b)`` over paired items.

    ``a`` and ``b`` hold two systems' per-item scores (e.g. 0/1 correctness) on the same
    items, in the same order; each resample draws the same items for both. ``statistic``
    defaults to the mean (the difference of accuracies); ``vectorized`` as in
    :func:`bootstrap_ci`.

    Shapes:
        a, b: ``[n, ...]`` with the same ``n`` -> Estimate of the difference.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> a = (rng.random(400) < 0.8).astype(float)
        >>> b = (rng.random(400) < 0.6).astype(float)
        >>> paired_bootstrap(a, b, n_boot=500).lo > 0
        True
    """
    arrays, _ = _prepare((a, b), "(a, b)")
    if statistic is None:
        single: Callable[[Any], Any] = _batched_mean
        vectorized = True
    elif not callable(statistic):
        raise InputError(f"statistic must be callable, got {type(statistic).__name__}.")
    else:
        single = statistic

    def diff(x: Any, y: Any) -> Any:
        return single(x) - single(y)

    n_boot = check_int(n_boot, "n_boot", minimum=2)
    level = check_level(level)
    if vectorized:
        pv = diff(arrays[0][None], arrays[1][None])
        point = float(np.asarray(pv.detach().cpu() if _is_tensor(pv) else pv,
                                 dtype=np.float64).reshape(-1)[0])
    else:
        point = float(diff(*arrays))
    reps = _replicates(arrays, diff, n_boot=n_boot, seed=seed, vectorized=vectorized)
    return from_replicates(point, reps, level=level, method="paired percentile bootstrap")


def wilson_interval(k: int, n: int, level: float = 0.95) -> Estimate:
    """A proportion ``k / n`` with its Wilson score interval.

    Example:
        >>> w = wilson_interval(50, 100)
        >>> round(w.lo, 4), round(w.hi, 4), w.method
        (0.4038, 0.5962, 'wilson')
    """
    n = check_int(n, "n", minimum=1)
    k = check_int(k, "k", minimum=0)
    if k > n:
        raise InputError(f"k must be <= n (successes out of trials), got k={k}, n={n}.")
    level = check_level(level)
    z = _z(level)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), level, "wilson", n)


# --------------------------------------------------------------------------- tests
def _bool_vector(x: Any, name: str) -> np.ndarray:
    if _is_tensor(x):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D (one entry per item), got shape {arr.shape}.")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise InputError(
                f"{name} must hold booleans or 0/1 (item correct or not), got values "
                f"{np.unique(arr)[:5].tolist()}."
            )
        arr = arr.astype(bool)
    return arr


def mcnemar(correct_a: Any, correct_b: Any) -> tuple[float, float]:
    """McNemar's test: do two classifiers scored on the same items differ in accuracy?

    Only the discordant items count: ``b`` where A is right and B wrong, ``c`` the other
    way round. With ``b + c < 25`` the p-value is the exact two-sided binomial test of
    ``min(b, c)`` in ``b + c`` trials at 1/2 (the statistic is ``min(b, c)``); otherwise
    the statistic is the continuity-corrected chi-square ``(|b - c| - 1)^2 / (b + c)`` with
    one degree of freedom. No discordant items give ``(0.0, 1.0)``.

    Shapes:
        correct_a, correct_b: ``[n]`` booleans (or 0/1) -> (statistic, p_value).

    Example:
        >>> mcnemar([1, 1, 1, 1, 0, 1], [0, 0, 0, 1, 0, 1])
        (0.0, 0.25)
    """
    from scipy import stats as sps

    a = _bool_vector(correct_a, "correct_a")
    b_ = _bool_vector(correct_b, "correct_b")
    if a.shape != b_.shape:
        raise ShapeError(
            f"correct_a and correct_b must score the same items, got shapes {a.shape} and "
            f"{b_.shape}."
        )
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    if b + c == 0:
        return 0.0, 1.0
    if b + c < 25:
        return float(min(b, c)), float(sps.binomtest(min(b, c), b + c, 0.5).pvalue)
    stat = (abs(b - c) - 1.0) ** 2 / (b + c)
    return float(stat), float(sps.chi2.sf(stat, 1))


def permutation_pvalue(
    observed: float, null_values: Any, alternative: Alternative = "greater"
) -> float:
    """Add-one p-value of ``observed`` against ``null_values`` drawn under a null model.

    ``"greater"``: ``(1 + #{null >= observed}) / (1 + m)``; ``"less"`` mirrors it;
    ``"two-sided"`` is twice the smaller one-sided p-value, capped at 1. The add-one rule
    keeps the p-value valid (never 0) for ``m`` permutations.

    Shapes:
        null_values: ``[m]`` -> float.

    Example:
        >>> permutation_pvalue(3.0, [0.0, 1.0, 2.0, 3.5])
        0.4
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise InputError(
            f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}."
        )
    try:
        obs = float(observed)
    except (TypeError, ValueError) as err:
        raise InputError(f"observed must be a number, got {observed!r}.") from err
    if not math.isfinite(obs):
        raise InputError(f"observed must be finite, got {obs}; check the statistic.")
    null = _finite_1d(null_values, "null_values")
    if null.size == 0:
        raise InputError("null_values has no finite values; draw at least one null statistic.")
    m = null.size
    greater = (1.0 + float((null >= obs).sum())) / (1.0 + m)
    less = (1.0 + float((null <= obs).sum())) / (1.0 + m)
    if alternative == "greater":
        return greater
    if alternative == "less":
        return less
    return min(1.0, 2.0 * min(greater, less))
