"""Tests for hyperlens.hdc.pca.StreamingPCA: agreement with scikit-learn up to sign flips,
batch-by-batch equal to full-batch, merging, whitening, the sketch pipeline and bad input.

Tolerance: float64 statistics are compared with ``atol = rtol = 1e-9``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import sketch_reference as ref
from sklearn.decomposition import PCA

from hyperlens.errors import HyperlensError, InputError, ShapeError
from hyperlens.functional.sketch import BlockSRHT, CountSketch, compose
from hyperlens.hdc.pca import NotFittedError, StreamingPCA

TOL = {"atol": 1e-9, "rtol": 1e-9}


def _data(seed: int, n: int = 600, d: int = 24) -> np.ndarray:
    """Correlated, off-centre data with a decaying spectrum."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * np.linspace(3.0, 0.1, d)[:, None]
    return rng.standard_normal((n, d)) @ mix + rng.uniform(-5, 5, d)


def _batches(x: np.ndarray, seed: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=6, replace=False))
    return [torch.from_numpy(b) for b in np.split(x, cuts)]  # uneven sizes, some may be 1 row


def _sign_align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flip the rows of ``a`` to agree in sign with the rows of ``b``."""
    return a * np.sign((a * b).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_sklearn_up_to_sign(seed: int) -> None:
    x = _data(seed)
    ours = StreamingPCA(n_components=6).fit(_batches(x, seed))
    theirs = PCA(n_components=6, svd_solver="full").fit(x)
    comps = ours.components_.numpy()
    np.testing.assert_allclose(_sign_align(comps, theirs.components_), theirs.components_,
                               atol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_.numpy(), theirs.explained_variance_,
                               rtol=1e-9)
    np.testing.assert_allclose(ours.explained_variance_ratio_.numpy(),
                               theirs.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose(ours.mean_.numpy(), theirs.mean_, rtol=1e-12, atol=1e-12)
    scores = ours.transform(torch.from_numpy(x)).numpy()
    flips = np.sign((comps * theirs.components_).sum(axis=1))
    np.testing.assert_allclose(scores * flips, theirs.transform(x), atol=1e-8)
    assert ours.n_samples_seen_ == 600 and ours.n_features_in_ == 24


@pytest.mark.parametrize("seed", [0, 5, 9])
def test_batch_by_batch_equals_full_batch_and_two_pass(seed: int) -> None:
    x = _data(seed, n=400, d=16)
    streamed = StreamingPCA()
    for batch in _batches(x, seed + 1):
        streamed.partial_fit(batch)
    full = StreamingPCA().fit(torch.from_numpy(x))
    mean, cov = ref.covariance_two_pass(x)
    torch.testing.assert_close(streamed.mean_, torch.from_numpy(mean), **TOL)
    torch.testing.assert_close(streamed.covariance_, torch.from_numpy(cov), **TOL)
    torch.testing.assert_close(streamed.covariance_, full.covariance_, **TOL)
    torch.testing.assert_close(streamed.components_, full.components_, atol=1e-7, rtol=0)
    torch.testing.assert_close(streamed.explained_variance_, full.explained_variance_, **TOL)


def test_merge_of_shards_equals_single_fit() -> None:
    x = _data(4, n=300, d=10)
    a = StreamingPCA().fit(torch.from_numpy(x[:120]))
    b = StreamingPCA().fit(torch.from_numpy(x[120:]))
    whole = StreamingPCA().fit(torch.from_numpy(x))
    a.merge(b)
    assert a.n_samples_seen_ == 300
    torch.testing.assert_close(a.covariance_, whole.covariance_, **TOL)
    torch.testing.assert_close(a.mean_, whole.mean_, **TOL)
    empty = StreamingPCA().merge(whole)
    torch.testing.assert_close(empty.covariance_, whole.covariance_, **TOL)


def test_whitening_gives_identity_covariance_and_inverts() -> None:
    x = torch.from_numpy(_data(6, n=500, d=12))
    pca = StreamingPCA(whiten=True).fit(x.split(77))
    z = pca.transform(x)
    torch.testing.assert_close(torch.cov(z.T), torch.eye(12, dtype=torch.float64), atol=1e-9,
                               rtol=0)
    torch.testing.assert_close(z.mean(dim=0), torch.zeros(12, dtype=torch.float64), atol=1e-9,
                               rtol=0)
    torch.testing.assert_close(pca.inverse_transform(z), x, **TOL)


def test_sign_convention_and_float32_transform() -> None:
    x = torch.from_numpy(_data(7, n=200, d=8))
    pca = StreamingPCA(n_components=3).fit(x)
    comps = pca.components_
    largest = comps.gather(1, comps.abs().argmax(dim=1, keepdim=True))
    assert bool((largest > 0).all())
    torch.testing.assert_close(comps @ comps.T, torch.eye(3, dtype=torch.float64), **TOL)
    y32 = pca.transform(x.float())
    assert y32.dtype == torch.float32 and y32.shape == (200, 3)
    torch.testing.assert_close(y32, pca.transform(x).float(), atol=1e-3, rtol=1e-4)
    assert (np.diff(pca.explained_variance_.numpy()) <= 0).all()


def test_sketch_pipeline_streams_like_one_batch() -> None:
    """CountSketch -> block SRHT -> PCA over batches equals the same on the whole set."""
    gen = torch.Generator().manual_seed(0)
    n, d_raw = 256, 3000
    latent = torch.randn(n, 8, generator=gen, dtype=torch.float64)
    x = latent @ torch.randn(8, d_raw, generator=gen, dtype=torch.float64)
    x += 0.01 * torch.randn(n, d_raw, generator=gen, dtype=torch.float64)
    pipe = compose(CountSketch.draw(d_raw, 1000, seed=1), BlockSRHT.draw(1000, 128, seed=2))
    streamed = StreamingPCA(n_components=8)
    for batch in x.split(50):
        streamed.partial_fit(pipe(batch))
    whole = StreamingPCA(n_components=8).fit(pipe(x))
    torch.testing.assert_close(streamed.covariance_, whole.covariance_, **TOL)
    # the 8-dimensional signal survives the sketches: 8 axes carry almost all variance
    assert float(streamed.explained_variance_ratio_.sum()) > 0.99


def test_bad_input_names_the_argument() -> None:
    x = torch.from_numpy(_data(8, n=50, d=6))
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(InputError, match="X contains NaN"):
        StreamingPCA().partial_fit(bad)
    pca = StreamingPCA().partial_fit(x)
    with pytest.raises(ShapeError, match="X has 7 features"):
        pca.partial_fit(torch.zeros(4, 7))
    with pytest.raises(ShapeError, match=r"X has 5 features, but StreamingPCA is expecting"):
        pca.transform(torch.zeros(4, 5))
    for k in (0, -2, 2.5, True):
        with pytest.raises(InputError, match="n_components"):
            StreamingPCA(n_components=k).fit(x)
    with pytest.raises(InputError, match="n_components=7 exceeds"):
        StreamingPCA(n_components=7).fit(x)
    with pytest.raises(InputError, match="eps"):
        StreamingPCA(eps=-1.0).fit(x)
    with pytest.raises(InputError, match="at least 2"):
        StreamingPCA().fit(x[:1])
    with pytest.raises(InputError, match="empty iterable"):
        StreamingPCA().fit(iter([]))
    with pytest.raises(ShapeError, match="2-D"):
        StreamingPCA().fit(torch.zeros(5))


def test_not_fitted_raises_hyperlens_error() -> None:
    pca = StreamingPCA()
    with pytest.raises(NotFittedError, match="not fitted"):
        pca.transform(torch.zeros(2, 3))
    with pytest.raises(HyperlensError):
        _ = pca.components_
    assert not hasattr(pca, "components_")  # NotFittedError is also an AttributeError


def test_solved_attributes_are_read_only_views_of_the_solution() -> None:
    pca = StreamingPCA(n_components=2).fit(torch.from_numpy(_data(0, n=40, d=5)))
    for name in ("covariance_", "components_", "explained_variance_",
                 "explained_variance_ratio_"):
        assert getattr(pca, name) is pca._solve()[name.removesuffix("_")]
        with pytest.raises(AttributeError, match=f"{name} is learned by fit"):
            setattr(pca, name, torch.zeros(1))
    assert "components_" not in vars(pca)


def test_randomized_solver_matches_exact_on_decaying_spectrum() -> None:
    gen = torch.Generator().manual_seed(3)
    d, n = 300, 2000
    # ten well separated axes above a flat noise floor (the regime PCA is used in)
    spectrum = torch.cat((torch.logspace(2, 1, 10, dtype=torch.float64),
                          torch.logspace(-2, -3, d - 10, dtype=torch.float64)))
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * spectrum.sqrt()
    x = x @ torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))[0]
    exact = StreamingPCA(n_components=10, solver="eigh").fit(x.split(500))
    fast = StreamingPCA(n_components=10, solver="randomized", seed=1).fit(x.split(500))
    torch.testing.assert_close(fast.explained_variance_, exact.explained_variance_,
                               rtol=1e-6, atol=0)
    overlap = (fast.components_ * exact.components_).sum(dim=1)  # signs are canonical
    torch.testing.assert_close(overlap, torch.ones(10, dtype=torch.float64), atol=1e-5, rtol=0)
    again = StreamingPCA(n_components=10, solver="randomized", seed=1).fit(x)
    torch.testing.assert_close(again.components_, fast.components_, atol=1e-9, rtol=0)
    with pytest.raises(InputError, match="solver"):
        StreamingPCA(solver="svd").fit(x)
