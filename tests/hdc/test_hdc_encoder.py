"""TernaryEncoder: scikit-learn contract, seeds, streaming, packed output, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from hyperlens.errors import HyperlensError, InputError, ShapeError
from hyperlens.functional import hdc as F
from hyperlens.hdc import PackedCodes, TernaryEncoder


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(300, 48)) * rng.uniform(0.5, 3, size=48) + 2.0).astype(np.float32)


def test_init_only_stores_params_and_clones() -> None:
    enc = TernaryEncoder(dim=123, threshold="tau_std", tau=0.4, seed=9)
    assert enc.get_params()["dim"] == 123
    assert not hasattr(enc, "projection_")
    assert clone(enc).get_params() == enc.get_params()
    with pytest.raises(NotFittedError):
        enc.transform(np.zeros((2, 3)))


def test_fit_transform_matches_functional_pipeline(X: np.ndarray) -> None:
    enc = TernaryEncoder(dim=1000, sparsity=0.7, seed=3, batch_size=64).fit(X)
    assert enc.projection_.shape == (48, 1000) and enc.n_features_in_ == 48
    assert enc.mean_ is None and enc.scale_ is None
    codes = enc.transform(X)
    want = F.ternarize(torch.from_numpy(X) @ F.random_projection(48, 1000, seed=3), sparsity=0.7)
    assert torch.equal(codes, want)
    assert ((codes == 0).sum(1) == 700).all()
    assert torch.equal(enc.fit_transform(X), codes)


def test_seed_reproducible_and_different_seeds_differ(X: np.ndarray) -> None:
    a = TernaryEncoder(dim=512, seed=1).fit(X).transform(X)
    b = TernaryEncoder(dim=512, seed=1).fit(X).transform(X)
    c = TernaryEncoder(dim=512, seed=2).fit(X).transform(X)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_center_and_scale_are_learned(X: np.ndarray) -> None:
    enc = TernaryEncoder(dim=256, threshold="tau_std", tau=0.3, center=True, scale=True, batch_size=70).fit(X)
    Xd = X.astype(np.float64)
    np.testing.assert_allclose(enc.mean_.numpy(), Xd.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(enc.scale_.numpy(), Xd.std(0), rtol=1e-4)
    z = ((torch.from_numpy(X) - enc.mean_) / enc.scale_) @ enc.projection_
    torch.testing.assert_close(enc.project(X), z, rtol=1e-4, atol=1e-4)
    assert torch.equal(enc.transform(X[:5]), F.ternarize(enc.project(X[:5]), "tau_std", tau=0.3))


def test_constant_feature_gets_unit_scale() -> None:
    X = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    X[:, 2] = 7.0
    enc = TernaryEncoder(dim=64, center=True, scale=True).fit(X)
    assert float(enc.scale_[2]) == 1.0 and torch.isfinite(enc.project(X)).all()


@pytest.mark.parametrize("output", ["twobit", "base3"])
def test_packed_output_and_streaming(tmp_path, X: np.ndarray, output: str) -> None:
    enc = TernaryEncoder(dim=1001, seed=0, batch_size=32).fit(X)
    dense = enc.transform(X)
    packed = enc.transform(X, output=output)
    assert isinstance(packed, PackedCodes) and packed.scheme == output and packed.dim == 1001
    assert torch.equal(packed.to_dense(), dense)
    # np.memmap input, read batch by batch
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=X.shape)
    mm[:] = X
    assert torch.equal(enc.transform(mm), dense)
    parts = list(enc.transform_batches((X[i : i + 100] for i in range(0, 300, 100)), output=output))
    assert torch.equal(PackedCodes.concat(parts).data, packed.data)


def test_sparse_and_rademacher_projections(X: np.ndarray) -> None:
    for kind in ("sparse", "rademacher"):
        enc = TernaryEncoder(dim=200, projection=kind, threshold="fixed", tau=0.5).fit(X)
        codes = enc.transform(X)
        assert codes.dtype == torch.int8 and set(torch.unique(codes).tolist()) <= {-1, 0, 1}


@pytest.mark.parametrize(
    "params,word",
    [
        ({"sparsity": 1.2}, "sparsity"),
        ({"sparsity": 0.0}, "sparsity"),
        ({"threshold": "tau_std", "tau": -0.1}, "tau"),
        ({"dim": 0}, "dim"),
        ({"output": "int4"}, "output"),
        ({"projection": "fourier"}, "projection"),
        ({"batch_size": 0}, "batch_size"),
        ({"threshold": "median"}, "threshold"),
    ],
)
def test_bad_params_raise_on_fit(X: np.ndarray, params: dict, word: str) -> None:
    with pytest.raises(HyperlensError, match=word):
        TernaryEncoder(**params).fit(X)


def test_bad_data(X: np.ndarray) -> None:
    enc = TernaryEncoder(dim=64, batch_size=100).fit(X)
    bad = X.copy()
    bad[250, 3] = np.nan
    with pytest.raises(InputError, match="rows 200 to 299"):
        enc.transform(bad)
    with pytest.raises(InputError, match="NaN or Inf"):
        TernaryEncoder(dim=8, center=True).fit(bad)
    with pytest.raises(ShapeError, match="48"):
        enc.transform(X[:, :40])
    with pytest.raises(ShapeError, match="2-D"):
        enc.transform(X[0])
    with pytest.raises(ShapeError, match="at least one row"):
        enc.fit(X[:0])
    with pytest.raises(InputError, match="numeric"):
        enc.transform(np.array([["a"] * 48] * 2))
