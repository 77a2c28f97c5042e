"""Tests for hyperlens.functional.geometry: theory, naive references, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference import geometry_reference as ref

from hyperlens.errors import HyperlensError, InputError, ShapeError
from hyperlens.functional import geometry as G
from hyperlens.utils import derive_seed

# Tolerances, stated once: float64 kernels against float64 NumPy loops.
RTOL64 = 1e-9
ATOL64 = 1e-12


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _random_orthogonal(d: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(_randn(d, d, seed=seed))
    return q * torch.sign(torch.diagonal(r))[None, :]


# --------------------------------------------------------------------------- simplex volumes
@pytest.mark.parametrize(
    ("k", "d"), [(1, 1), (1, 7), (2, 2), (2, 5), (3, 3), (4, 4), (4, 16), (4, 96), (6, 9)]
)
@pytest.mark.parametrize("edge", [1.0, 2.5])
def test_regular_simplex_matches_closed_form(k: int, d: int, edge: float) -> None:
    pts = torch.from_numpy(ref.regular_simplex(k, d, edge=edge, seed=k * 31 + d))
    vol = G.cayley_menger_volume(pts)
    assert vol.dtype == torch.float64
    assert vol.shape == ()
    torch.testing.assert_close(
        vol,
        torch.tensor(ref.regular_simplex_volume(k, edge), dtype=torch.float64),
        rtol=1e-9,
        atol=0.0,
    )


def test_unit_right_simplices() -> None:
    # origin + the k unit vectors: volume 1 / k!
    for k in range(1, 7):
        pts = torch.cat([torch.zeros(1, k), torch.eye(k)])
        assert math.isclose(
            float(G.cayley_menger_volume(pts)), 1.0 / math.factorial(k), rel_tol=1e-12
        )


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_collinear_and_repeated_points_give_zero(k: int) -> None:
    direction = _randn(1, 32, seed=1)
    t = _randn(k + 1, 1, seed=2)
    collinear = 3.0 + t * direction  # [k+1, 32] on one line
    if k >= 2:
        vol = G.cayley_menger_volume(collinear)
        assert float(vol) == 0.0
    repeated = _randn(k + 1, 8, seed=3)
    repeated[1] = repeated[0]
    assert float(G.cayley_menger_volume(repeated)) == 0.0
    # more vertices than dimensions: always flat
    flat = _randn(k + 1, max(1, k - 1), seed=4)
    if k >= 2:
        assert float(G.cayley_menger_volume(flat)) == 0.0


def test_coplanar_pentachoron_is_zero_not_nan() -> None:
    pts = torch.zeros(7, 5, 6, dtype=torch.float64)
    pts[..., :3] = _randn(7, 5, 3, seed=5)  # five points in a 3-d subspace: flat 4-simplex
    vol = G.cayley_menger_volume(pts)
    assert not torch.isnan(vol).any()
    assert torch.equal(vol, torch.zeros(7, dtype=torch.float64))


@pytest.mark.parametrize(("k", "d"), [(1, 3), (2, 4), (4, 16), (4, 64), (5, 12)])
def test_batched_volumes_equal_naive_loop(k: int, d: int) -> None:
    X = _randn(40, d, seed=k + d) * 2.0 + 5.0
    idx = G.sample_simplices(40, k, 300, seed=k)
    expected = torch.from_numpy(ref.cm_volumes_loop(X.numpy(), idx.numpy()))
    # explicit-vertex kernel on a [3, 100, k+1, d] batch
    pts = X[idx].reshape(3, 100, k + 1, d)
    torch.testing.assert_close(
        G.cayley_menger_volume(pts).reshape(-1), expected, rtol=1e-8, atol=1e-10
    )
    # index kernel (sparse pair products)
    torch.testing.assert_close(G.simplex_volumes(X, idx), expected, rtol=1e-8, atol=1e-10)


def test_volume_float32_input_computed_in_float64() -> None:
    X = _randn(30, 10, seed=9)
    idx = G.sample_simplices(30, 4, 50, seed=0)
    v32 = G.simplex_volumes(X.float(), idx)
    assert v32.dtype == torch.float64
    torch.testing.assert_close(
        v32, G.simplex_volumes(X.float().double(), idx), rtol=RTOL64, atol=ATOL64
    )


def test_volume_invariant_to_rotation_translation_and_scales_as_power() -> None:
    X = _randn(25, 12, seed=11)
    idx = G.sample_simplices(25, 3, 40, seed=1)
    Q = _random_orthogonal(12, seed=12)
    base = G.simplex_volumes(X, idx)
    torch.testing.assert_close(G.simplex_volumes(X @ Q + 7.0, idx), base, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(G.simplex_volumes(2.0 * X, idx), base * 8.0, rtol=1e-9, atol=1e-12)


def test_sample_simplices_distinct_rows_and_seeded() -> None:
    for n, k in [(5, 4), (6, 4), (1000, 4), (50_000, 3)]:
        idx = G.sample_simplices(n, k, 2000, seed=3)
        assert idx.shape == (2000, k + 1)
        srt = idx.sort(dim=1).values
        assert bool((srt[:, 1:] != srt[:, :-1]).all())
        assert int(idx.min()) >= 0 and int(idx.max()) < n
        assert torch.equal(idx, G.sample_simplices(n, k, 2000, seed=3))
        assert not torch.equal(idx, G.sample_simplices(n, k, 2000, seed=4))
    # uniform use of rows
    counts = torch.bincount(
        G.sample_simplices(10, 4, 20_000, seed=0).flatten(), minlength=10
    ).double()
    assert float((counts / counts.sum() - 0.1).abs().max()) < 0.01


# --------------------------------------------------------------------------- simplex CV
def test_simplex_cv_seeded_and_null_close_to_one_for_gaussian() -> None:
    X = _randn(2000, 64, seed=21)
    a = G.simplex_volume_cv(X, k=4, n_samples=1500, seed=7, null="gaussian", n_boot=300)
    b = G.simplex_volume_cv(X, k=4, n_samples=1500, seed=7, null="gaussian", n_boot=300)
    assert a == b
    assert a.cv.lo <= a.cv.value <= a.cv.hi
    assert a.null_cv is not None and a.ratio is not None
    assert a.ratio.lo <= a.ratio.value <= a.ratio.hi
    # data are themselves Gaussian: ratio to the matched Gaussian null covers 1
    assert a.ratio.lo < 1.0 < a.ratio.hi
    assert a.n_degenerate == 0
    assert 0.9 < a.volume_ratio < 1.1  # type: ignore[operator]


def test_simplex_cv_detects_structure_against_null() -> None:
    # a scale mixture (half the rows shrunk to 0.3): the matched Gaussian has the same
    # covariance but homogeneous points, so the data's volumes vary far more than the null's,
    # while the "norms" null keeps the per-row scales and explains the excess.
    scale = torch.where(torch.arange(1000) < 500, 0.3, 1.0).to(torch.float64)[:, None]
    X = _randn(1000, 16, seed=22) * scale
    gauss = G.simplex_volume_cv(X, k=4, n_samples=1500, seed=0, null="gaussian", n_boot=300)
    assert gauss.ratio is not None and gauss.ratio.lo > 1.5
    norms = G.simplex_volume_cv(X, k=4, n_samples=1500, seed=0, null="norms", n_boot=300)
    assert norms.ratio is not None and norms.ratio.lo < 1.0 < norms.ratio.hi * 1.15


@pytest.mark.parametrize("null", ["norms", "isotropic"])
def test_simplex_cv_other_nulls_run(null: str) -> None:
    X = _randn(500, 20, seed=23) * torch.linspace(0.1, 3.0, 20, dtype=torch.float64)
    res = G.simplex_volume_cv(X, n_samples=500, seed=1, null=null, n_boot=200)  # type: ignore[arg-type]
    assert res.null == null
    assert res.null_cv is not None and res.null_cv.value > 0
    assert res.as_dict()["null"] == null


def test_simplex_cv_matches_naive_cv() -> None:
    X = _randn(300, 10, seed=24)
    res = G.simplex_volume_cv(X, k=3, n_samples=400, seed=5, n_boot=100)
    idx = G.sample_simplices(300, 3, 400, seed=derive_seed(5, "simplices"))
    vols = ref.cm_volumes_loop(X.numpy(), idx.numpy())
    assert math.isclose(res.cv.value, float(vols.std() / vols.mean()), rel_tol=1e-9)


def test_null_points_match_moments() -> None:
    scale = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    X = _randn(4000, 6, seed=25) * scale + 1.0
    Y = G.null_points(X, "gaussian", seed=0)
    torch.testing.assert_close(Y.mean(0), X.mean(0), atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(Y.T), torch.cov(X.T), atol=0.15, rtol=0.05)
    Z = G.null_points(X, "norms", seed=0)
    torch.testing.assert_close(Z.norm(dim=1), X.norm(dim=1), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- spectra
def test_participation_ratio_isotropic_gaussian_close_to_d() -> None:
    for d in (8, 64):
        X = _randn(40_000, d, seed=d)
        pr = G.participation_ratio(X)
        # finite-sample PR of an isotropic Gaussian is d / (1 + d / n) to first order
        assert abs(pr - d / (1 + d / 40_000)) < 0.02 * d


def test_participation_ratio_matches_svd_and_extremes() -> None:
    X = _randn(200, 30, seed=31) * torch.logspace(0, -2, 30, dtype=torch.float64)
    assert math.isclose(
        G.participation_ratio(X), ref.participation_ratio_svd(X.numpy()), rel_tol=1e-9
    )
    line = _randn(100, 1, seed=32) * _randn(1, 30, seed=33)
    assert math.isclose(G.participation_ratio(line), 1.0, rel_tol=1e-9)
    # wide matrix takes the n x n route
    W = _randn(20, 300, seed=34)
    assert math.isclose(
        G.participation_ratio(W), ref.participation_ratio_svd(W.numpy()), rel_tol=1e-9
    )


def test_eigenspectrum_dims_and_dict() -> None:
    ev = torch.tensor([5.0, 3.0, 1.0, 0.5, 0.5], dtype=torch.float64)
    X = _randn(50_000, 5, seed=35) * ev.sqrt()
    spec = G.eigenspectrum(X)
    assert spec.eigenvalues.shape == (5,)
    assert bool((spec.eigenvalues[:-1] >= spec.eigenvalues[1:]).all())
    torch.testing.assert_close(spec.eigenvalues, ev, rtol=0.05, atol=0.02)
    dims = spec.dims_for()
    assert dims == {0.8: 2, 0.9: 3, 0.95: 4, 0.99: 5}
    assert G.variance_dims(X, [0.5]) == {0.5: 1}
    d = spec.as_dict()
    assert d["dims_for"]["90%"] == 3 and d["dim"] == 5
    assert math.isclose(float(spec.cumulative[-1]), 1.0, rel_tol=1e-12)


def test_effective_rank_bounds_and_reference() -> None:
    for seed in range(5):
        r = 3 + seed
        X = _randn(60, r, seed=seed) @ _randn(r, 40, seed=seed + 100)  # rank r
        er = G.effective_rank(X)
        assert 1.0 <= er <= r + 1e-9
        assert math.isclose(er, ref.effective_rank_svd(X.numpy()), rel_tol=1e-6)
    # equal singular values: erank = rank
    Q = _random_orthogonal(12, seed=5)[:, :7]
    assert math.isclose(G.effective_rank(Q), 7.0, rel_tol=1e-9)
    # rank one: erank = 1
    assert math.isclose(
        G.effective_rank(_randn(9, 1, seed=6) @ _randn(1, 5, seed=7)), 1.0, rel_tol=1e-6
    )


def test_stable_rank_orthogonal_and_reference() -> None:
    for n in (4, 16, 33):
        assert math.isclose(G.stable_rank(_random_orthogonal(n, seed=n)), float(n), rel_tol=1e-9)
    X = _randn(70, 20, seed=40)
    sr = G.stable_rank(X)
    assert math.isclose(sr, ref.stable_rank_svd(X.numpy()), rel_tol=1e-9)
    assert 1.0 <= sr <= 20.0


# --------------------------------------------------------------------------- distributions
def test_pair_values_exact_and_sampled() -> None:
    X = _randn(60, 9, seed=41)
    cos = G.pair_values(X, metric="cosine")
    Xn = (X / X.norm(dim=1, keepdim=True)).numpy()
    iu = np.triu_indices(60, 1)
    torch.testing.assert_close(cos, torch.from_numpy((Xn @ Xn.T)[iu]), rtol=RTOL64, atol=ATOL64)
    dist = G.pair_values(X, metric="euclidean")
    full = np.linalg.norm(X.numpy()[:, None] - X.numpy()[None], axis=2)[iu]
    torch.testing.assert_close(dist, torch.from_numpy(full), rtol=1e-9, atol=1e-9)
    sampled = G.pair_values(X, metric="cosine", n_pairs=5000, seed=2)
    assert sampled.shape == (5000,)
    assert abs(float(sampled.mean()) - float(cos.mean())) < 0.03
    stats = G.cosine_stats(X)
    assert stats.exact and stats.n == 60 * 59 // 2
    assert stats.min <= stats.quantiles[0.5] <= stats.max
    assert not G.cosine_stats(X, n_pairs=100).exact


def test_norm_stats() -> None:
    X = torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]])
    s = G.norm_stats(X)
    assert s.n == 3 and s.min == 1.0 and s.max == 10.0 and math.isclose(s.mean, 16 / 3)
    assert math.isclose(s.quantiles[0.5], 5.0)


# --------------------------------------------------------------------------- CKA, k-NN
def test_cka_identity_invariances_and_reference() -> None:
    X = _randn(120, 20, seed=50)
    Y = X @ _randn(20, 15, seed=51) + 0.5 * _randn(120, 15, seed=52)
    Q = _random_orthogonal(20, seed=53)
    for fn in (G.linear_cka, G.unbiased_cka):
        assert math.isclose(fn(X, X), 1.0, rel_tol=1e-9)
        base = fn(X, Y)
        assert math.isclose(fn(X @ Q, Y), base, rel_tol=1e-9)
        assert math.isclose(fn(3.7 * X, 0.2 * Y), base, rel_tol=1e-9)
        assert math.isclose(fn(X + 4.0, Y - 1.0), base, rel_tol=1e-9)
        assert math.isclose(fn(X, Y), fn(Y, X), rel_tol=1e-9)
    Xn, Yn = X.numpy(), Y.numpy()
    Xc, Yc = Xn - Xn.mean(0), Yn - Yn.mean(0)
    assert math.isclose(G.linear_cka(X, Y), ref.linear_cka_kernels(Xc, Yc), rel_tol=1e-9)
    assert math.isclose(G.unbiased_cka(X, Y), ref.unbiased_cka_kernels(Xn, Yn), rel_tol=1e-9)


def test_unbiased_cka_near_zero_for_independent_wide_features() -> None:
    X = _randn(100, 500, seed=54)
    Y = _randn(100, 500, seed=55)
    assert G.linear_cka(X, Y) > 0.5  # the biased estimator is fooled in high dimension
    assert abs(G.unbiased_cka(X, Y)) < 0.1


def test_knn_overlap_reference_and_extremes() -> None:
    X = _randn(80, 12, seed=60)
    Y = X @ _randn(12, 12, seed=61) + 0.3 * _randn(80, 12, seed=62)
    assert math.isclose(
        G.knn_overlap(X, Y, k=5), ref.knn_overlap_bruteforce(X.numpy(), Y.numpy(), 5), rel_tol=1e-12
    )
    assert G.knn_overlap(X, 2.0 * X @ _random_orthogonal(12, seed=63), k=7) == 1.0
    per = G.knn_overlap(X, Y, k=5, per_point=True)
    assert isinstance(per, torch.Tensor) and per.shape == (80,)
    assert G.knn_overlap(X, Y, k=4, metric="euclidean") > G.knn_overlap(
        X, _randn(80, 12, seed=64), k=4
    )


# --------------------------------------------------------------------------- uncertainty
def test_bootstrap_ci_of_geometry_statistics_covers_and_is_seeded() -> None:
    """Geometry statistics get their intervals from the one bootstrap, stats.bootstrap_ci."""
    from hyperlens.functional.stats import bootstrap_ci

    assert not hasattr(G, "bootstrap_ci")  # one bootstrap API, in functional.stats
    X = _randn(400, 10, seed=70)
    a = bootstrap_ci(X, G.participation_ratio, n_boot=60, seed=1)
    assert a == bootstrap_ci(X, G.participation_ratio, n_boot=60, seed=1)
    assert a.lo < a.hi and a.n == 60 and a.level == 0.95
    # an unbiased statistic: the interval covers the point estimate and the true mean 0
    mean0 = bootstrap_ci(X, lambda t: float(t[:, 0].mean()), n_boot=200, seed=2)
    assert mean0.lo < mean0.value < mean0.hi
    assert mean0.lo < 0.0 < mean0.hi
    assert math.isclose(mean0.std, 1 / math.sqrt(400), rel_tol=0.25)
    Y = X @ _randn(10, 10, seed=71)
    paired = bootstrap_ci((X, Y), G.linear_cka, n_boot=30, seed=0)
    assert paired.lo <= paired.hi <= 1.0 + 1e-12


def test_coefficient_of_variation_population_and_sample() -> None:
    v = torch.tensor([[1.0, 2.0, 3.0, 6.0], [2.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    ref = np.array([np.std(r) / np.mean(r) for r in v.numpy()])
    assert np.allclose(G.coefficient_of_variation(v).numpy(), ref, rtol=1e-12)
    sample = np.std(v[0].numpy(), ddof=1) / np.mean(v[0].numpy())
    assert float(G.coefficient_of_variation(v[0], correction=1)) == pytest.approx(sample)


def test_cosine_moments_match_all_pairs() -> None:
    X = _randn(30, 6, seed=5) + 0.3
    U = X / X.norm(dim=1, keepdim=True)
    C = (U @ U.T)[~torch.eye(30, dtype=torch.bool)]
    mean, std = G.cosine_moments(X)
    assert mean == pytest.approx(float(C.mean()), rel=1e-10)
    assert std == pytest.approx(float(C.std(correction=0)), rel=1e-8)
    stats = G.cosine_stats(X)  # the distribution over the same pairs agrees
    assert stats.mean == pytest.approx(mean, rel=1e-10)
    assert stats.std == pytest.approx(std, rel=1e-8)


def test_seed_ci_mean_and_t_interval() -> None:
    est = G.seed_ci(lambda s: float(s), seeds=[1, 2, 3, 4, 5])
    assert est.value == 3.0 and est.n == 5
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert math.isclose(est.hi - est.value, half, rel_tol=1e-9)
    cv = G.seed_ci(
        lambda s: (
            G.simplex_volume_cv(_randn(200, 8, seed=0), n_samples=200, seed=s, n_boot=50).cv.value
        ),
        seeds=4,
    )
    assert cv.lo < cv.value < cv.hi


def test_cv_ci_matches_direct() -> None:
    v = torch.rand(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 1.0
    est = G.cv_ci(v, n_boot=200, seed=0)
    assert math.isclose(est.value, float(v.std(correction=0) / v.mean()), rel_tol=1e-12)
    assert est.lo < est.value < est.hi


# --------------------------------------------------------------------------- devices
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
def test_cuda_matches_cpu() -> None:
    X = _randn(500, 64, seed=80)
    idx = G.sample_simplices(500, 4, 1000, seed=0)
    torch.testing.assert_close(
        G.simplex_volumes(X.cuda(), idx.cuda()).cpu(),
        G.simplex_volumes(X, idx),
        rtol=1e-9,
        atol=1e-12,
    )
    assert math.isclose(G.participation_ratio(X.cuda()), G.participation_ratio(X), rel_tol=1e-9)
    assert math.isclose(
        G.unbiased_cka(X.cuda(), X.cuda() ** 2), G.unbiased_cka(X, X**2), rel_tol=1e-9
    )
    res = G.simplex_volume_cv(X.cuda(), n_samples=500, seed=0, null="gaussian", n_boot=100)
    assert res.cv.lo <= res.cv.value <= res.cv.hi


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises_hyperlens_error_naming_argument() -> None:
    X = _randn(10, 4, seed=90)
    with pytest.raises(ShapeError, match="X needs at least k\\+1 = 5 rows"):
        G.simplex_volume_cv(X[:4], k=4)
    with pytest.raises(InputError, match="k must be >= 1"):
        G.simplex_volume_cv(X, k=0)
    with pytest.raises(InputError, match="k must be an int"):
        G.simplex_volume_cv(X, k=2.5)  # type: ignore[arg-type]
    bad = X.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(InputError, match="X contains NaN"):
        G.simplex_volume_cv(bad)
    with pytest.raises(InputError, match="points contains NaN"):
        G.cayley_menger_volume(bad[:5])
    with pytest.raises(ShapeError, match="points needs k\\+1 >= 2"):
        G.cayley_menger_volume(X[:1])
    with pytest.raises(ShapeError, match="points must have shape"):
        G.cayley_menger_volume(torch.ones(3))
    with pytest.raises(InputError, match="null must be"):
        G.simplex_volume_cv(X, null="uniform")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="X must be 2-D"):
        G.participation_ratio(torch.ones(3, 4, 5))
    with pytest.raises(ShapeError, match="same items"):
        G.linear_cka(X, X[:5])
    with pytest.raises(ShapeError, match="X needs at least 4"):
        G.unbiased_cka(X[:3], X[:3])
    with pytest.raises(InputError, match="Y contains NaN"):
        G.linear_cka(X, bad)
    with pytest.raises(ShapeError, match="a 4-simplex needs"):
        G.sample_simplices(3, 4, 10)
    with pytest.raises(InputError, match="level must be"):
        G.cv_ci(torch.rand(10), level=1.5)
    with pytest.raises(InputError, match="indices must lie"):
        G.simplex_volumes(X, torch.tensor([[0, 1, 20]]))
    with pytest.raises(HyperlensError, match="span fewer than"):
        G.simplex_volume_cv(torch.ones(10, 6), k=2)
    with pytest.raises(InputError, match="fractions"):
        G.eigenspectrum(X).dims_for([1.5])
