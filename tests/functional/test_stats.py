"""The statistics module against scipy's reference implementations and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from hyperlens.errors import InputError, ShapeError
from hyperlens.functional import geometry, stats
from hyperlens.functional.stats import (
    Estimate,
    bootstrap_ci,
    from_replicates,
    mcnemar,
    paired_bootstrap,
    permutation_pvalue,
    t_interval,
    wilson_interval,
)


def test_estimate_is_one_type_and_serialises() -> None:
    assert geometry.Estimate is Estimate
    e = Estimate(0.5, 0.4, 0.6, 0.9, "t over seeds", 3)
    assert e.as_dict() == {"value": 0.5, "lo": 0.4, "hi": 0.6, "level": 0.9,
                           "method": "t over seeds", "n": 3, "std": e.std}
    assert math.isnan(e.std)
    with pytest.raises(AttributeError):
        e.value = 1.0  # type: ignore[misc]
    assert e.interval == (0.4, 0.6)


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95, 0.99])
def test_t_interval_matches_scipy(level: float) -> None:
    vals = np.random.default_rng(3).normal(1.0, 0.3, size=7)
    e = t_interval(vals, level)
    lo, hi = sps.t.interval(level, len(vals) - 1, loc=vals.mean(), scale=sps.sem(vals))
    assert e.value == pytest.approx(vals.mean(), rel=1e-12)
    assert (e.lo, e.hi) == pytest.approx((lo, hi), rel=1e-12)
    assert e.std == pytest.approx(vals.std(ddof=1), rel=1e-12)
    assert e.n == 7 and e.level == level and e.method == "t over seeds"


def test_t_interval_drops_nan_and_degenerates_cleanly() -> None:
    assert t_interval([1.0, float("nan"), 3.0]).n == 2
    one = t_interval([0.5])
    assert one.value == 0.5 and math.isnan(one.lo) and math.isnan(one.hi) and one.n == 1
    empty = t_interval([])
    assert math.isnan(empty.value) and empty.n == 0
    with pytest.raises(ShapeError):
        t_interval(np.ones((2, 2)))
    with pytest.raises(InputError, match="level"):
        t_interval([1.0, 2.0], level=95)


def test_wilson_matches_scipy_binomtest() -> None:
    for k, n in [(0, 20), (1, 20), (50, 100), (99, 100), (100, 100), (7, 9)]:
        for level in (0.9, 0.95):
            ref = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
            w = wilson_interval(k, n, level)
            assert (w.lo, w.hi) == pytest.approx((ref.low, ref.high), abs=1e-12)
            assert w.value == k / n and w.n == n and w.method == "wilson"
            assert 0.0 <= w.lo <= w.value <= w.hi <= 1.0


@pytest.mark.parametrize("k,n", [(5, 3), (-1, 3), (1, 0), (1.5, 3)])
def test_wilson_rejects_bad_counts(k: object, n: object) -> None:
    with pytest.raises(InputError):
        wilson_interval(k, n)  # type: ignore[arg-type]


def test_bootstrap_mean_agrees_with_scipy_percentile() -> None:
    x = np.random.default_rng(0).exponential(size=300)
    e = bootstrap_ci(x, n_boot=4000, seed=1)
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="percentile",
                        random_state=np.random.default_rng(2)).confidence_interval
    assert e.value == pytest.approx(x.mean())
    # Two independent Monte Carlo estimates of the same quantiles: agree to ~MC error.
    assert e.lo == pytest.approx(ref.low, abs=0.02) and e.hi == pytest.approx(ref.high, abs=0.02)
    assert e.n == 4000 and e.method.startswith("percentile bootstrap")


def test_bootstrap_seeded_and_vectorised_equals_loop() -> None:
    x = np.random.default_rng(5).normal(size=(80, 3))
    a = bootstrap_ci(x, lambda t: float(t[:, 0].mean()), n_boot=200, seed=4)
    assert a == bootstrap_ci(x, lambda t: float(t[:, 0].mean()), n_boot=200, seed=4)
    assert a != bootstrap_ci(x, lambda t: float(t[:, 0].mean()), n_boot=200, seed=5)
    v = bootstrap_ci(x, lambda t: t[..., 0].mean(-1), n_boot=200, seed=4, vectorized=True)
    assert (v.value, v.lo, v.hi) == pytest.approx((a.value, a.lo, a.hi), rel=1e-12)


def test_bootstrap_torch_input_and_tuple_pairing() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 4, generator=g)
    e = bootstrap_ci(torch.as_tensor(X[:, 0]), n_boot=300, seed=0)
    n = bootstrap_ci(X[:, 0].numpy(), n_boot=300, seed=0)
    assert (e.lo, e.hi) == pytest.approx((n.lo, n.hi), rel=1e-6)
    # Paired resampling: the statistic of (X, X) is always 0.
    same = bootstrap_ci((X, X), lambda a, b: float((a - b).abs().max()), n_boot=50)
    assert same.lo == same.hi == 0.0


def test_bootstrap_unpaired_resamples_each_sample_on_its_own() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(2.0, 1.0, size=300), rng.normal(1.0, 1.0, size=200)
    est = bootstrap_ci((a, b), lambda x, y: float(x.mean() - y.mean()), n_boot=400, seed=3,
                       paired=False)
    vec = bootstrap_ci((a, b), lambda x, y: x.mean(-1) - y.mean(-1), n_boot=400, seed=3,
                       paired=False, vectorized=True)
    assert (est.lo, est.hi) == pytest.approx((vec.lo, vec.hi), rel=1e-12)
    assert est.value == pytest.approx(a.mean() - b.mean())
    # the standard error of a difference of independent means
    se = math.hypot(a.std(ddof=1) / math.sqrt(300), b.std(ddof=1) / math.sqrt(200))
    assert est.std == pytest.approx(se, rel=0.15)
    assert "each sample on its own" in est.method
    # independent draws: (X, X) no longer gives identical resamples
    X = rng.normal(size=50)
    diff = bootstrap_ci((X, X), lambda x, y: float(x.mean() - y.mean()), n_boot=50,
                        paired=False)
    assert diff.hi > diff.lo
    with pytest.raises(ShapeError, match=r"data\[1\] needs at least 2 items"):
        bootstrap_ci((a, b[:1]), lambda x, y: 0.0, paired=False)


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ShapeError):
        bootstrap_ci([1.0])
    with pytest.raises(ShapeError):
        bootstrap_ci(3.0)
    with pytest.raises(ShapeError):
        bootstrap_ci((np.ones(4), np.ones(5)), lambda a, b: 0.0)
    with pytest.raises(InputError, match="n_boot"):
        bootstrap_ci([1.0, 2.0], n_boot=1)
    with pytest.raises(InputError, match="statistic"):
        bootstrap_ci([1.0, 2.0], statistic="mean")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="statistic"):
        bootstrap_ci((np.ones(4), np.ones(4)))


def test_bootstrap_drops_undefined_resamples() -> None:
    def stat(t: np.ndarray) -> float:
        if len(np.unique(t)) < 2:
            raise InputError("degenerate")
        return float(t.std())

    e = bootstrap_ci(np.array([0.0, 1.0, 1.0]), stat, n_boot=400, seed=0)
    assert 0 < e.n < 400


def test_paired_bootstrap_difference_and_pairing() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=200)
    a, b = base + 0.1, base  # perfectly paired: the difference never varies
    d = paired_bootstrap(a, b, n_boot=300)
    assert d.value == pytest.approx(0.1) and d.lo == pytest.approx(0.1)
    assert d.hi == pytest.approx(0.1)
    unpaired_width = bootstrap_ci(a, n_boot=300).hi - bootstrap_ci(a, n_boot=300).lo
    assert unpaired_width > 10 * (d.hi - d.lo)
    med = paired_bootstrap(a, b, statistic=lambda x: float(np.median(x)), n_boot=100)
    assert med.value == pytest.approx(0.1)
    with pytest.raises(ShapeError):
        paired_bootstrap(np.ones(3), np.ones(4))


def test_mcnemar_exact_and_chi_square() -> None:
    a = np.array([1] * 10 + [1] * 6 + [0] * 1 + [0] * 3, dtype=bool)
    b = np.array([1] * 10 + [0] * 6 + [1] * 1 + [0] * 3, dtype=bool)
    stat, p = mcnemar(a, b)
    assert stat == 1.0 and p == pytest.approx(sps.binomtest(1, 7, 0.5).pvalue)
    # Large discordant counts: the continuity-corrected chi-square.
    a2 = np.r_[np.ones(40), np.zeros(20)].astype(bool)
    b2 = np.r_[np.zeros(40), np.ones(20)].astype(bool)
    stat2, p2 = mcnemar(a2, b2)
    assert stat2 == pytest.approx((abs(40 - 20) - 1) ** 2 / 60)
    assert p2 == pytest.approx(sps.chi2.sf(stat2, 1))
    assert mcnemar([1, 0], [1, 0]) == (0.0, 1.0)
    with pytest.raises(ShapeError):
        mcnemar([1, 0], [1, 0, 1])
    with pytest.raises(InputError):
        mcnemar([2, 0], [1, 0])


def test_permutation_pvalue_add_one() -> None:
    null = np.arange(99, dtype=float)
    assert permutation_pvalue(1000.0, null) == pytest.approx(1 / 100)
    assert permutation_pvalue(-1.0, null) == 1.0
    assert permutation_pvalue(-1.0, null, "less") == pytest.approx(1 / 100)
    assert permutation_pvalue(49.0, null, "two-sided") == pytest.approx(1.0)
    assert permutation_pvalue(98.0, null, "two-sided") == pytest.approx(0.04)
    with pytest.raises(InputError, match="alternative"):
        permutation_pvalue(1.0, null, "bigger")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        permutation_pvalue(float("nan"), null)
    with pytest.raises(InputError):
        permutation_pvalue(1.0, [float("nan")])


def test_from_replicates_quantiles() -> None:
    reps = np.linspace(0, 1, 101)
    e = from_replicates(0.5, reps, level=0.9, method="m")
    assert (e.lo, e.hi) == pytest.approx((0.05, 0.95))
    assert e.n == 101 and e.method == "m"
    assert from_replicates(0.5, []).n == 0


def test_module_exports_the_contract() -> None:
    for name in ("Estimate", "t_interval", "bootstrap_ci", "paired_bootstrap",
                 "wilson_interval", "mcnemar", "permutation_pvalue"):
        assert name in stats.__all__ and callable(getattr(stats, name))


# --------------------------------------------------------------------------- two levels
def test_two_level_bootstrap_covers_a_mean_that_varies_between_seeds():
    """Seeds with their own offsets (training noise) plus item noise: the two-level interval
    covers the true mean about 95 % of the time, the item-only bootstrap of the pooled
    scores far less (it ignores the spread between seeds)."""
    import numpy as np

    from hyperlens.functional.stats import bootstrap_ci, two_level_bootstrap

    rng = np.random.default_rng(0)
    hits_two, hits_items, sims = 0, 0, 150
    for k in range(sims):
        v = rng.normal(0.0, 0.3, size=(8, 1)) + rng.normal(0.0, 1.0, size=(8, 60))
        e = two_level_bootstrap(v, n_boot=400, seed=k)
        hits_two += e.lo <= 0.0 <= e.hi
        f = bootstrap_ci(v.T.mean(1), n_boot=400, seed=k)  # items, seeds averaged first
        hits_items += f.lo <= 0.0 <= f.hi
    assert 0.85 <= hits_two / sims <= 1.0
    assert hits_items / sims < 0.8


def test_two_level_bootstrap_with_one_seed_is_the_item_bootstrap_width():
    import numpy as np

    from hyperlens.functional.stats import bootstrap_ci, two_level_bootstrap

    v = np.random.default_rng(1).normal(size=(1, 500))
    a = two_level_bootstrap(v, n_boot=2000, seed=3)
    b = bootstrap_ci(v[0], n_boot=2000, seed=4)
    assert a.value == pytest.approx(b.value)
    assert (a.hi - a.lo) == pytest.approx(b.hi - b.lo, rel=0.15)


def test_two_level_from_replicates_draws_seeds_over_shared_item_resamples():
    import numpy as np

    from hyperlens.functional.stats import from_replicates, two_level_from_replicates

    rng = np.random.default_rng(2)
    one = np.concatenate([[0.2], 0.2 + 0.01 * rng.normal(size=999)])
    same = two_level_from_replicates(np.stack([one, one, one]))
    ref = from_replicates(0.2, one[1:])
    assert (same.value, same.lo, same.hi) == pytest.approx((ref.value, ref.lo, ref.hi))
    apart = np.stack([one - 0.05, one, one + 0.05])  # seeds disagree: a wider interval
    wide = two_level_from_replicates(apart)
    assert wide.value == pytest.approx(0.2) and wide.hi - wide.lo > 2 * (ref.hi - ref.lo)


def test_two_level_inputs_are_checked():
    import numpy as np

    from hyperlens.errors import InputError, ShapeError
    from hyperlens.functional.stats import (
        detectable_difference,
        two_level_bootstrap,
        two_level_from_replicates,
    )

    with pytest.raises(ShapeError, match="n_seeds, n_items"):
        two_level_bootstrap(np.ones(5))
    with pytest.raises(InputError, match="NaN"):
        two_level_bootstrap(np.array([[1.0, np.nan]]))
    with pytest.raises(ShapeError, match="1 \\+ n_boot"):
        two_level_from_replicates(np.ones((3, 1)))
    with pytest.raises(InputError, match="power"):
        detectable_difference(0.1, power=1.0)
    assert detectable_difference(0.01) == pytest.approx(0.0280, abs=1e-4)


def test_two_level_ratio_shares_its_draws_and_refuses_a_zero_floor():
    from hyperlens.functional.stats import two_level_ratio

    rng = np.random.default_rng(0)
    den = rng.normal(1.0, 0.3, (3, 200))
    e = two_level_ratio(0.5 * den, den, n_boot=300, seed=1)
    # numerator and denominator resampled together: the ratio of proportional grids is exact
    assert e.value == pytest.approx(0.5) and e.lo == pytest.approx(0.5)
    assert e.hi == pytest.approx(0.5)
    noisy = two_level_ratio(0.5 * den + rng.normal(0, 0.5, den.shape), den, n_boot=300, seed=1)
    assert noisy.lo < noisy.value < noisy.hi and noisy.hi - noisy.lo > 0.01
    with pytest.raises(ShapeError):
        two_level_ratio(den, den[:, :10])
    with pytest.raises(InputError, match="denominator"):
        two_level_ratio(den, np.zeros_like(den))
