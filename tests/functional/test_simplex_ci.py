"""The simplex CV's two intervals: the delta method agrees with the bootstrap and covers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hyperlens.errors import InputError
from hyperlens.functional import geometry as G
from hyperlens.functional.geometry import simplex as S
from hyperlens.functional.stats import cv_delta_interval

M = S.DELTA_MIN_VOLUMES


def _samples(kind: str, m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gamma":  # CV 0.2, mildly skewed
        return rng.gamma(25.0, size=m)
    if kind == "lognormal":  # CV 0.533, skewed, kurtosis about 8
        return rng.lognormal(0.0, 0.5, size=m)
    X = torch.from_numpy(rng.standard_normal((600, 24)).astype(np.float32))
    idx = G.sample_simplices(600, 4, m, seed=seed)
    return G.simplex_volumes(X, idx).numpy()  # real pentachoron volumes


@pytest.mark.parametrize("kind", ["gamma", "lognormal", "volumes"])
def test_delta_interval_agrees_with_the_bootstrap_at_the_switch(kind: str) -> None:
    v = _samples(kind, M, 3)
    delta = cv_delta_interval(v)
    boot = G.cv_ci(torch.from_numpy(v), n_boot=4000, seed=1, ci="bootstrap")
    assert delta.value == pytest.approx(boot.value, rel=1e-12)
    width = boot.hi - boot.lo
    assert abs(delta.lo - boot.lo) < 0.08 * width
    assert abs(delta.hi - boot.hi) < 0.08 * width
    # and the standard error matches the bootstrap replicates' spread
    assert delta.std == pytest.approx(boot.std, rel=0.08)


def test_delta_interval_covers_the_true_cv_on_skewed_data() -> None:
    true_cv = math.sqrt(math.exp(0.25) - 1.0)  # lognormal(0, 0.5)
    rng = np.random.default_rng(11)
    hits = 0
    reps = 400
    for _ in range(reps):
        e = cv_delta_interval(rng.lognormal(0.0, 0.5, size=M))
        hits += e.lo <= true_cv <= e.hi
    assert 0.92 <= hits / reps <= 0.98


def test_delta_interval_edge_cases() -> None:
    with pytest.raises(InputError, match="at least 3"):
        cv_delta_interval([1.0, 2.0])
    flat = cv_delta_interval([2.0] * 10)
    assert (flat.value, flat.lo, flat.hi) == (0.0, 0.0, 0.0)
    # non-finite values are dropped, as in every interval maker
    a = cv_delta_interval([1.0, 2.0, 3.0, 4.0, float("nan")])
    b = cv_delta_interval([1.0, 2.0, 3.0, 4.0])
    assert a == b


def test_auto_takes_the_delta_method_from_the_threshold_on() -> None:
    X = torch.from_numpy(np.random.default_rng(0).standard_normal((400, 16)).astype(np.float32))
    big = G.simplex_volume_cv(X, n_samples=M, seed=2)
    small = G.simplex_volume_cv(X, n_samples=2000, seed=2, n_boot=200)
    forced = G.simplex_volume_cv(X, n_samples=M, seed=2, ci="bootstrap", n_boot=2000)
    assert big.cv.method == "delta method"
    assert small.cv.method.startswith("percentile bootstrap")
    assert forced.cv.method.startswith("percentile bootstrap")
    assert big.cv.value == pytest.approx(forced.cv.value, rel=1e-12)  # same simplices
    width = forced.cv.hi - forced.cv.lo
    assert abs(big.cv.lo - forced.cv.lo) < 0.1 * width
    assert abs(big.cv.hi - forced.cv.hi) < 0.1 * width


def test_delta_ratio_against_a_null_agrees_with_the_bootstrap() -> None:
    X = torch.from_numpy(np.random.default_rng(1).standard_normal((400, 16)).astype(np.float32))
    X[:, 0] *= 4.0  # anisotropic: the isotropic null has a different CV
    d = G.simplex_volume_cv(X, n_samples=M, seed=4, null="isotropic")
    b = G.simplex_volume_cv(X, n_samples=M, seed=4, null="isotropic", ci="bootstrap",
                            n_boot=2000)
    assert d.ratio is not None and b.ratio is not None
    assert d.ratio.method == "delta method, both sides"
    assert d.ratio.value == pytest.approx(b.ratio.value, rel=1e-12)
    width = b.ratio.hi - b.ratio.lo
    assert abs(d.ratio.lo - b.ratio.lo) < 0.1 * width
    assert abs(d.ratio.hi - b.ratio.hi) < 0.1 * width


def test_unknown_ci_fails_before_any_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("volumes computed before the check")

    monkeypatch.setattr(S, "_volumes_at", boom)
    with pytest.raises(InputError, match="ci must be one of"):
        G.simplex_volume_cv(torch.randn(50, 8), ci="jackknife")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="ci must be one of"):
        G.cv_ci(torch.rand(100) + 1.0, ci="wald")  # type: ignore[arg-type]
