"""Simplex volumes by one Gram matrix, the compiled bootstrap, against the naive oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import geometry_reference as ref

from hyperlens.functional import geometry as G
from hyperlens.functional.geometry import simplex as S
from hyperlens.functional.kernels import numba_available


def _cloud(n: int, d: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    scales = np.arange(1, d + 1) ** -0.5
    return torch.from_numpy((rng.standard_normal((n, d)) * scales + 0.1).astype(np.float32))


def test_gram_and_pair_paths_equal_the_bordered_loop() -> None:
    X = _cloud(300, 40, 0)
    idx = G.sample_simplices(300, 4, 2000, seed=1)
    X64 = S._centred64(X)
    by_gram = S._volumes_by_gram(X64, idx)
    pairs = S._volumes_by_pairs(X64, idx)
    loop = ref.cm_volumes_loop(X.numpy().astype(np.float64), idx.numpy()[:300])
    assert np.allclose(by_gram.numpy()[:300], loop, rtol=1e-6, atol=0)
    assert torch.allclose(by_gram, pairs, rtol=1e-12, atol=0)
    # the public path picks the Gram once simplices need more pairs than n^2 / 16
    assert S._use_gram(300, 2000, 5) and not S._use_gram(5000, 100_000, 5)
    assert torch.allclose(G.simplex_volumes(X, idx), by_gram, rtol=1e-12, atol=0)


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_compiled_edge_volumes_equal_the_pair_products() -> None:
    X = _cloud(2000, 64, 2)
    idx = G.sample_simplices(2000, 4, 3000, seed=5)
    X64 = S._centred64(X)
    assert not S._use_gram(2000, 3000, 5)  # the compiled path runs
    ours = S._volumes_at(X64, idx)
    assert torch.allclose(ours, S._volumes_by_pairs(X64, idx), rtol=1e-12, atol=0)
    loop = ref.cm_volumes_loop(X.numpy().astype(np.float64), idx.numpy()[:200])
    assert np.allclose(ours.numpy()[:200], loop, rtol=1e-6, atol=0)
    # flat simplices (points on a line, k > 1) are exactly 0 on the compiled path too
    line = torch.zeros(2000, 16, dtype=torch.float64)
    line[:, 3] = torch.linspace(-5.0, 5.0, 2000, dtype=torch.float64)
    flat_idx = G.sample_simplices(2000, 3, 100, seed=2)
    assert not S._use_gram(2000, 100, 4)
    flat = S._volumes_at(S._centred64(line), flat_idx)
    assert torch.equal(flat, torch.zeros(100, dtype=torch.float64))


def test_gram_path_degenerate_simplices_are_zero() -> None:
    X = torch.zeros(50, 8, dtype=torch.float64)
    X[:, 0] = torch.arange(50, dtype=torch.float64)  # all points on a line
    idx = G.sample_simplices(50, 3, 400, seed=0)
    vols = S._volumes_by_gram(S._centred64(X), idx)
    assert torch.equal(vols, torch.zeros(400, dtype=torch.float64))


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_compiled_bootstrap_matches_a_numpy_bootstrap() -> None:
    from hyperlens.functional.compiled import bootstrap_cv

    v = np.random.default_rng(0).gamma(20.0, 1.0, 5000)
    ours = bootstrap_cv(v, 4000, seed=3)
    theirs = ref.bootstrap_cv_loop(v, 4000, seed=3)
    assert np.array_equal(ours, bootstrap_cv(v, 4000, seed=3))  # reproducible
    assert not np.array_equal(ours, bootstrap_cv(v, 4000, seed=4))
    # same sampling distribution: mean and spread agree within Monte Carlo error
    se = theirs.std() / np.sqrt(len(theirs))
    assert abs(ours.mean() - theirs.mean()) < 5 * se * np.sqrt(2)
    assert 0.9 < ours.std() / theirs.std() < 1.1
    lo, hi = np.percentile(ours, [2.5, 97.5])
    rlo, rhi = np.percentile(theirs, [2.5, 97.5])
    assert abs(lo - rlo) < 0.1 * (rhi - rlo) and abs(hi - rhi) < 0.1 * (rhi - rlo)
    # a constant sample has CV 0 in every replicate
    assert np.array_equal(bootstrap_cv(np.full(100, 2.5), 10, 0), np.zeros(10))


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_compiled_bootstrap_does_not_depend_on_threads() -> None:
    import numba

    from hyperlens.functional.compiled import bootstrap_cv

    v = np.random.default_rng(1).random(3000)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = bootstrap_cv(v, 64, seed=9)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, bootstrap_cv(v, 64, seed=9))


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
@pytest.mark.parametrize("k", [2, 3, 4])
def test_compiled_volumes_read_float32_rows_exactly(k: int) -> None:
    # float32 rows go to the compiled pass as they are (edges exact in float64); the
    # pentachoron kernel (k = 4) and the any-k kernel agree with the centred pair products
    X = _cloud(1500, 96, 7) * 30.0 + 100.0  # far from the origin: centring matters
    idx = G.sample_simplices(1500, k, 2500, seed=k)
    assert not S._use_gram(1500, 2500, k + 1)
    ours32 = S._volumes_at(X, idx)
    ours64 = S._volumes_at(X.double(), idx)
    pairs = S._volumes_by_pairs(S._centred64(X), idx)
    assert torch.allclose(ours32, pairs, rtol=1e-9, atol=0)
    assert torch.allclose(ours64, ours32, rtol=1e-12, atol=0)
    loop = ref.cm_volumes_loop(X.numpy().astype(np.float64), idx.numpy()[:150])
    assert np.allclose(ours32.numpy()[:150], loop, rtol=1e-6, atol=0)
    assert torch.equal(G.simplex_volumes(X, idx), ours32)
    # half precision rows are widened to float32 (exactly) first
    h = X.half()
    assert torch.allclose(S._volumes_at(h, idx), S._volumes_at(h.float(), idx), rtol=0, atol=0)


def test_sample_simplices_rows_are_distinct_and_reproducible() -> None:
    for n, k, m in [(5000, 4, 20_000), (40, 3, 500), (12, 4, 300)]:
        a = G.sample_simplices(n, k, m, seed=11)
        assert a.shape == (m, k + 1)
        srt = a.sort(dim=1).values
        assert not bool((srt[:, 1:] == srt[:, :-1]).any())
        assert int(a.min()) >= 0 and int(a.max()) < n
        assert torch.equal(a, G.sample_simplices(n, k, m, seed=11))
    # every vertex index about equally often (uniform subsets)
    a = G.sample_simplices(6000, 4, 60_000, seed=2)
    counts = torch.bincount(a.flatten(), minlength=6000).double()
    assert abs(float(counts.mean()) - 50.0) < 1e-9 and float(counts.std()) < 1.3 * 50**0.5


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_compiled_binomial_has_the_binomial_law() -> None:
    from scipy import stats

    from hyperlens.functional.compiled import binomial_draws

    seeds = np.arange(60_000, dtype=np.uint64) * np.uint64(0x9E37) + np.uint64(5)
    for n, p in [(25, 0.3), (8, 0.93), (1, 0.5), (60, 0.02)]:
        d = binomial_draws(n, p, seeds)
        assert d.min() >= 0 and d.max() <= n
        expected = stats.binom.pmf(np.arange(n + 1), n, p) * len(d)
        obs = np.bincount(d, minlength=n + 1).astype(float)
        keep = expected > 5
        scale = obs[keep].sum() / expected[keep].sum()
        assert stats.chisquare(obs[keep], expected[keep] * scale).pvalue > 1e-4, (n, p)
    big = binomial_draws(100_000, 0.04096, seeds)
    assert abs(big.mean() - 4096.0) < 5 * (4096 * 0.96 / len(seeds)) ** 0.5
    assert 0.95 < big.var() / (100_000 * 0.04096 * (1 - 0.04096)) < 1.05
    assert np.array_equal(binomial_draws(10, 0.0, seeds[:5]), np.zeros(5, dtype=np.int64))
    assert np.array_equal(binomial_draws(10, 1.0, seeds[:5]), np.full(5, 10, dtype=np.int64))


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_segmented_bootstrap_over_many_segments_matches_numpy() -> None:
    # 5 full segments of 4,096 values and a partial one: the same law as NumPy's resampling
    from hyperlens.functional.compiled import BOOT_SEGMENT, bootstrap_cv

    m = 5 * BOOT_SEGMENT + 1234
    v = np.random.default_rng(4).lognormal(0.0, 0.5, m)
    ours = bootstrap_cv(v, 3000, seed=1)
    theirs = ref.bootstrap_cv_loop(v, 3000, seed=1)
    se = theirs.std() / np.sqrt(len(theirs))
    assert abs(ours.mean() - theirs.mean()) < 5 * se * np.sqrt(2)
    assert 0.9 < ours.std() / theirs.std() < 1.1
    # the replicate CVs centre on the sample's own CV
    point = v.std() / v.mean()
    assert abs(np.median(ours) - point) < 0.1 * ours.std() + 3 * se
