"""Aligners: theory checks on synthetic data, references, registry, save/load, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference.align_reference import cca_correlations_naive, ridge_loo_naive

from hyperlens.align import (
    Aligner,
    CCAAligner,
    ProcrustesAligner,
    available_aligners,
    load_aligner,
    make_aligner,
    register_aligner,
)
from hyperlens.align.base import _REGISTRY
from hyperlens.align.ridge import ridge_loo_path
from hyperlens.errors import ConfigError, HyperlensError, InputError, ShapeError

FAST = {"contrastive": {"epochs": 30, "hidden_dim": 32, "shared_dim": 16, "pca_dim": 16}}


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _linked(n: int, d_t: int, d_s: int, latent: int, noise: float, seed: int):
    """Two views of one latent cloud: teacher = Z A + e, student = Z B + e."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent)) * np.linspace(2.0, 0.5, latent)
    a = rng.standard_normal((latent, d_t))
    b = rng.standard_normal((latent, d_s))
    t = z @ a + noise * rng.standard_normal((n, d_t))
    s = z @ b + noise * rng.standard_normal((n, d_s)) + 2.0
    return t, s


def _row_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


# --------------------------------------------------------------------------- Procrustes
@pytest.mark.parametrize("seed", range(5))
def test_procrustes_recovers_a_known_rotation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, d = 200, 12
    x = rng.standard_normal((n, d)) * np.linspace(3, 1, d)
    q = _orthogonal(d, rng)
    y = x @ q + 0.01 * rng.standard_normal((n, d)) + 5.0
    al = ProcrustesAligner().fit(x, y)
    # same width: no PCA, the rotation is q itself (up to the noise)
    np.testing.assert_allclose(al.rotation_.numpy(), q, atol=0.02)
    assert al.residual_ < 0.02
    np.testing.assert_allclose(al.transform_teacher(x), al.transform_student(y), atol=0.02)
    assert al.dim_ == d


def test_procrustes_scaling_and_mismatched_widths() -> None:
    t, s = _linked(400, 30, 20, latent=8, noise=0.05, seed=0)
    al = ProcrustesAligner(n_components=8, scaling=True).fit(t, s)
    assert al.dim_ == 8
    assert 0.0 < al.scale_ <= 1.0 + 1e-9
    cos = _row_cos(al.transform_teacher(t[:100]), al.transform_student(s[:100]))
    assert cos.mean() > 0.9
    default = ProcrustesAligner().fit(t, s)
    assert default.dim_ == 20  # min(d_t, d_s, n - 1)


def test_procrustes_fewer_anchors_than_dimensions_caps_components() -> None:
    t, s = _linked(10, 30, 40, latent=4, noise=0.01, seed=1)
    al = ProcrustesAligner().fit(t, s)
    assert al.dim_ == 9
    with pytest.raises(InputError, match="n_components"):
        ProcrustesAligner(n_components=12).fit(t, s)


# --------------------------------------------------------------------------- CCA
def test_cca_matches_the_textbook_eigenproblem() -> None:
    t, s = _linked(300, 10, 7, latent=4, noise=0.5, seed=2)
    al = CCAAligner(reg=0.1).fit(t, s)
    ref = cca_correlations_naive(t, s, 0.1, 0.1)[:7]
    np.testing.assert_allclose(al.correlations_.numpy(), ref, atol=1e-8)


def test_cca_canonical_variates_are_correlated_as_reported() -> None:
    t, s = _linked(2000, 10, 8, latent=3, noise=0.3, seed=3)
    al = CCAAligner(reg=0.0, weighting="none").fit(t, s)
    zt, zs = al.transform_teacher(t), al.transform_student(s)
    emp = np.array([np.corrcoef(zt[:, j], zs[:, j])[0, 1] for j in range(3)])
    np.testing.assert_allclose(emp, al.correlations_.numpy()[:3], atol=1e-4)
    assert al.correlations_[0] > 0.95


def test_cca_without_ridge_collapses_and_the_ridge_prevents_it() -> None:
    rng = np.random.default_rng(4)
    # pure noise, fewer anchors (60) than d_t + d_s (80): nothing is truly shared
    t, s = rng.standard_normal((60, 40)), rng.standard_normal((60, 40))
    plain = CCAAligner(reg=0.0).fit(t, s)
    assert float(plain.correlations_[0]) > 0.999  # the degenerate fit of the seed
    for reg in ("auto", 0.1, 1.0):
        al = CCAAligner(reg=reg).fit(t, s)
        assert float(al.correlations_.max()) < 0.99
        assert float(al.correlations_.max()) <= 1.0


def test_cca_component_count_errors() -> None:
    t, s = _linked(20, 10, 8, latent=3, noise=0.1, seed=5)
    assert CCAAligner(n_components=3).fit(t, s).dim_ == 3
    with pytest.raises(InputError, match="n_components=9"):
        CCAAligner(n_components=9).fit(t, s)
    few_t, few_s = t[:5], s[:5]
    with pytest.raises(InputError, match="more anchors"):
        CCAAligner(n_components=6).fit(few_t, few_s)
    with pytest.raises(InputError, match="reg"):
        CCAAligner(reg=-1.0).fit(t, s)


# --------------------------------------------------------------------------- ridge
def test_ridge_loo_matches_refitting() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((25, 6))
    y = x @ rng.standard_normal((6, 3)) + 0.3 * rng.standard_normal((25, 3))
    alphas = torch.tensor([0.01, 1.0, 10.0], dtype=torch.float64)
    err, *_ = ridge_loo_path(torch.as_tensor(x), torch.as_tensor(y), alphas)
    ref = [ridge_loo_naive(x, y, float(a)) for a in alphas]
    np.testing.assert_allclose(err.numpy(), ref, rtol=1e-8)


def test_ridge_recovers_an_affine_map() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 10))
    w = rng.standard_normal((10, 6))
    y = x @ w + 3.0
    al = make_aligner("ridge", alpha=1e-8, direction="teacher_to_student").fit(x, y)
    np.testing.assert_allclose(al.coef_.numpy(), w, atol=1e-6)
    np.testing.assert_allclose(al.transform_teacher(x), al.transform_student(y), atol=1e-5)
    assert al.dim_ == 6
    back = make_aligner("ridge", alpha=1e-8).fit(x, y)  # student -> teacher
    assert back.dim_ == 10
    np.testing.assert_allclose(
        back.transform_teacher(x[:50]) @ w, back.transform_student(y[:50]) @ w, atol=1e-4
    )
    auto = make_aligner("ridge").fit(x, y + 0.1 * rng.standard_normal(y.shape))
    assert auto.alpha_ > 0


# --------------------------------------------------------------------------- relative, none
def test_relative_is_invariant_to_rotation_scale_and_shift() -> None:
    rng = np.random.default_rng(8)
    q = _orthogonal(9, rng)
    t = rng.standard_normal((50, 9))
    al = make_aligner("relative").fit(t, 3.0 * t @ q - 1.5)
    assert al.dim_ == 50
    x = rng.standard_normal((5, 9))
    np.testing.assert_allclose(al.transform_teacher(x), al.transform_student(3.0 * x @ q - 1.5),
                               atol=1e-5)


def test_none_aligner_pads_the_narrow_side() -> None:
    t, s = np.ones((4, 3)), np.ones((4, 5))
    al = make_aligner("none").fit(t, s)
    zt = al.transform_teacher(t)
    assert zt.shape == (4, 5)
    np.testing.assert_array_equal(zt[:, 3:], 0)


# --------------------------------------------------------------------------- contrastive
def test_contrastive_pulls_pairs_together_and_is_seeded() -> None:
    t, s = _linked(200, 12, 10, latent=5, noise=0.1, seed=9)
    for loss in ("margin", "infonce"):
        al = make_aligner("contrastive", loss=loss, seed=3, **FAST["contrastive"]).fit(t, s)
        zt, zs = al.transform_teacher(t), al.transform_student(s)
        paired = _row_cos(zt, zs).mean()
        shuffled = _row_cos(zt, np.roll(zs, 1, axis=0)).mean()
        assert paired > shuffled + 0.3, (loss, paired, shuffled)
        assert al.loss_history_[-1] < al.loss_history_[0]
        again = make_aligner("contrastive", loss=loss, seed=3, **FAST["contrastive"]).fit(t, s)
        np.testing.assert_array_equal(again.transform_teacher(t), zt)
    other = make_aligner("contrastive", seed=4, **FAST["contrastive"]).fit(t, s)
    first = make_aligner("contrastive", seed=3, **FAST["contrastive"]).fit(t, s)
    assert not np.array_equal(other.transform_teacher(t), first.transform_teacher(t))


def test_contrastive_bad_config() -> None:
    t, s = _linked(20, 4, 4, latent=2, noise=0.1, seed=0)
    with pytest.raises(InputError, match="loss"):
        make_aligner("contrastive", loss="triplet").fit(t, s)


# --------------------------------------------------------------------------- registry, save/load
def test_registry_lists_the_builtin_aligners() -> None:
    assert {"none", "procrustes", "cca", "ridge", "relative", "contrastive"} <= set(
        available_aligners()
    )
    with pytest.raises(ConfigError, match="available"):
        make_aligner("nope")
    with pytest.raises(ConfigError, match=r"aligner 'procrustes' got unknown parameter\(s\) "
                                          r"\['bogus'\]; it accepts \['n_components', 'scaling'\]"):
        make_aligner("procrustes", bogus=1)


def test_users_can_register_their_own_aligner() -> None:
    @register_aligner("test_flip")
    class FlipAligner(Aligner):
        def __init__(self, sign: float = -1.0) -> None:
            self.sign = sign

        def _fit(self, teacher: torch.Tensor, student: torch.Tensor) -> None:
            self.dim_ = teacher.shape[1]

        def _transform(self, x: torch.Tensor, side: str) -> torch.Tensor:
            return x * self.sign if side == "teacher" else x

    try:
        al = make_aligner("test_flip").fit(np.ones((3, 2)), np.ones((3, 2)))
        np.testing.assert_array_equal(al.transform_teacher(np.ones((1, 2))), -np.ones((1, 2)))
        with pytest.raises(ConfigError, match="already registered"):
            register_aligner("test_flip")(ProcrustesAligner)
    finally:
        _REGISTRY.pop("test_flip", None)


@pytest.mark.parametrize("name", ["none", "procrustes", "cca", "ridge", "relative", "contrastive"])
def test_save_load_roundtrip(name: str, tmp_path) -> None:
    t, s = _linked(80, 9, 7, latent=4, noise=0.1, seed=10)
    al = make_aligner(name, **FAST.get(name, {})).fit(t, s)
    path = al.save(tmp_path / f"{name}.safetensors")
    back = load_aligner(path)
    assert type(back) is type(al)
    assert back.get_params() == al.get_params()
    np.testing.assert_array_equal(back.transform_teacher(t[:5]), al.transform_teacher(t[:5]))
    np.testing.assert_array_equal(back.transform_student(s[:5]), al.transform_student(s[:5]))


def test_transforms_keep_torch_in_torch_out() -> None:
    t, s = _linked(50, 6, 6, latent=3, noise=0.1, seed=11)
    al = ProcrustesAligner().fit(torch.as_tensor(t), torch.as_tensor(s))
    out = al.transform_teacher(torch.as_tensor(t[:3], dtype=torch.float32))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert isinstance(al.transform_student(s[:3]), np.ndarray)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ["none", "procrustes", "cca", "ridge", "relative", "contrastive"])
def test_bad_input_raises_clear_errors(name: str, tmp_path) -> None:
    t, s = _linked(30, 5, 4, latent=2, noise=0.1, seed=12)
    al = make_aligner(name, **FAST.get(name, {}))
    with pytest.raises(ShapeError, match="paired row by row"):
        al.fit(t, s[:20])
    with pytest.raises(InputError, match="not fitted"):
        al.transform_teacher(t)
    bad = t.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        al.fit(bad, s)
    with pytest.raises(ShapeError, match="2-D"):
        al.fit(t[:, 0], s)
    al.fit(t, s)
    with pytest.raises(ShapeError, match="columns"):
        al.transform_teacher(s)
    with pytest.raises(HyperlensError):
        load_aligner(tmp_path / "missing.safetensors")
