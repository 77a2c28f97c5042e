"""Transfer evaluation: scores, statistics, the shared HDC space, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score

from hyperlens.align import (
    FeatureScaler,
    LinearProbe,
    balanced_accuracy,
    ceiling_scores,
    chance_corrected_efficiency,
    check_disjoint,
    efficiency,
    hdc_codes,
    majority_accuracy,
    make_aligner,
    select_probe,
    shared_projection,
    summarize,
    transfer_scores,
)
from hyperlens.errors import InputError, ShapeError


def _task(seed: int, n: int = 700, d_t: int = 24, d_s: int = 16, latent: int = 6):
    """Labels from a latent; teacher and student are two noisy linear views of it."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent))
    y = (z[:, 0] + 0.5 * z[:, 1] > 0.5).astype(np.int64)  # unbalanced on purpose
    t = z @ rng.standard_normal((latent, d_t)) + 0.2 * rng.standard_normal((n, d_t))
    s = z @ rng.standard_normal((latent, d_s)) + 0.2 * rng.standard_normal((n, d_s)) + 1.0
    return t, s, y


def test_summarize_is_a_student_t_interval() -> None:
    vals = [0.80, 0.84, 0.83]
    st = summarize(vals)
    mean, sd = np.mean(vals), np.std(vals, ddof=1)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert st["mean"] == pytest.approx(mean)
    assert st["std"] == pytest.approx(sd)
    assert st["lo"] == pytest.approx(mean - half)
    assert st["hi"] == pytest.approx(mean + half)
    assert st["n"] == 3
    one = summarize([0.5])
    assert one["lo"] == one["hi"] == 0.5 and one["std"] == 0.0
    assert summarize([float("nan"), 1.0])["n"] == 1
    assert summarize([])["n"] == 0


def test_scores_against_sklearn_and_their_anchor_points() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    p = np.where(rng.random(200) < 0.7, y, rng.integers(0, 3, 200))
    assert balanced_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p))
    y_train = np.array([1, 1, 1, 0])
    y_test = np.array([1, 1, 0, 0, 1])
    assert majority_accuracy(y_train, y_test) == pytest.approx(0.6)
    # the majority answer scores 0, the ceiling 1
    assert chance_corrected_efficiency(0.6, 0.8, 0.6) == pytest.approx(0.0)
    assert chance_corrected_efficiency(0.8, 0.8, 0.6) == pytest.approx(1.0)
    assert efficiency(0.6, 0.8) == pytest.approx(0.75)
    assert math.isnan(chance_corrected_efficiency(0.6, 0.6, 0.6))


def test_hdc_codes_are_ternary_and_shared_by_seed() -> None:
    rng = np.random.default_rng(1)
    z = rng.standard_normal((20, 8))
    p1, p2 = shared_projection(8, 64, seed=3), shared_projection(8, 64, seed=3)
    assert p1.shape == (8, 64)
    np.testing.assert_array_equal(p1.numpy(), p2.numpy())
    c = hdc_codes(z, p1, tau=0.3)
    assert c.shape == (20, 64)
    assert set(np.unique(c.numpy()).tolist()) <= {-1, 0, 1}
    # a per-row threshold: rescaling a row does not change its code
    np.testing.assert_array_equal(hdc_codes(z * 7.0, p1, tau=0.3).numpy(), c.numpy())


def test_linear_probe_learns_and_refuses_one_class() -> None:
    t, _, y = _task(2)
    probe = LinearProbe(standardize=True).fit(t[:500], y[:500])
    assert np.mean(probe.predict(t[500:]) == y[500:]) > 0.9
    with pytest.raises(InputError, match="single class"):
        LinearProbe().fit(t[:10], np.zeros(10, dtype=np.int64))
    with pytest.raises(InputError, match="C="):
        LinearProbe(C=0.0)


def test_linear_probe_methods_match_scikit_learn_pipelines() -> None:
    """The one probe reproduces StandardScaler + RidgeClassifierCV / LogisticRegression."""
    from sklearn.linear_model import LogisticRegression, RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    t, _, y = _task(4)
    x = t.astype(np.float32)
    sc = StandardScaler().fit(x[:500])
    ridge = RidgeClassifierCV(alphas=np.logspace(-2, 4, 13)).fit(sc.transform(x[:500]), y[:500])
    ours = LinearProbe(standardize=True, method="ridge").fit(x[:500], y[:500])
    np.testing.assert_array_equal(ours.predict(x[500:]), ridge.predict(sc.transform(x[500:])))
    logit = LogisticRegression(C=0.3, max_iter=500).fit(sc.transform(x[:500]), y[:500])
    ours = LinearProbe(C=0.3, standardize=True, solver="lbfgs", max_iter=500).fit(x[:500], y[:500])
    np.testing.assert_allclose(ours.model_.coef_, logit.coef_, rtol=1e-6)
    with pytest.raises(InputError, match="method='svm'"):
        LinearProbe(method="svm")
    with pytest.raises(InputError, match="max_iter must be"):
        LinearProbe(max_iter=0)


def test_select_probe_picks_c_on_validation_rows() -> None:
    t, _, y = _task(5)
    rows = {"train": np.arange(0, 400), "val": np.arange(400, 550), "eval": np.arange(550, 700)}
    pred, info = select_probe(t, y, rows, Cs=(1e-4, 1.0))
    assert pred.shape == (150,) and info["C"] == 1.0 and info["val_acc"] > 0.85
    ref = LinearProbe(C=1.0, standardize=True, solver="lbfgs", max_iter=500)
    ref.fit(t[:400], y[:400])
    np.testing.assert_array_equal(pred, ref.predict(t[550:]))
    # wide and binary: the dual problem (liblinear) is solved
    rng = np.random.default_rng(0)
    xw, yw = rng.normal(size=(60, 200)), (np.arange(60) % 2)
    xw[:, 0] += 3 * yw
    rows_w = {"train": np.arange(40), "val": np.arange(40, 50), "eval": np.arange(50, 60)}
    pred_w, _ = select_probe(xw, yw, rows_w, Cs=(1.0,))
    assert pred_w.shape == (10,)
    with pytest.raises(InputError, match="Cs is empty"):
        select_probe(t, y, rows, Cs=())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alignment_recovers_transfer_and_none_does_not(seed: int) -> None:
    t, s, y = _task(seed)
    tr, te, an = slice(0, 400), slice(400, 600), slice(600, 700)
    ceil = ceiling_scores(s[tr], y[tr], s[te], y[te], hdc_dim=512, seed=seed)
    assert ceil.hdc.acc > 0.85 and ceil.float.acc > 0.9
    assert 0.5 < ceil.majority < 0.8
    res = {}
    for name in ("none", "procrustes", "cca", "ridge"):
        res[name] = transfer_scores(make_aligner(name), t[an], s[an], t[tr], y[tr], s[te], y[te],
                                    ceiling=ceil, hdc_dim=512, seed=seed)
    # the views are related by a general linear map: CCA and ridge model it exactly,
    # Procrustes (a rotation) only approximately
    assert res["procrustes"].cc_eff > res["none"].cc_eff + 0.2
    for name in ("cca", "ridge"):
        r = res[name]
        assert r.eff > 0.9, (name, r)
        assert r.cc_eff > 0.7, (name, r)
        assert r.float_eff > 0.9, (name, r)
        assert r.ceiling == ceil.hdc.acc and r.majority == ceil.majority
    # no alignment: unrelated coordinates, far below the aligned pipelines
    assert res["none"].cc_eff < res["ridge"].cc_eff - 0.3


def test_transfer_is_reproducible() -> None:
    t, s, y = _task(5)
    ceil = ceiling_scores(s[:400], y[:400], s[400:600], y[400:600], hdc_dim=256, seed=7)
    runs = [transfer_scores(make_aligner("cca"), t[600:], s[600:], t[:400], y[:400], s[400:600],
                            y[400:600], ceiling=ceil, hdc_dim=256, seed=7) for _ in range(2)]
    a, b = (r.as_dict() for r in runs)
    a.pop("fit_seconds"), b.pop("fit_seconds")
    assert a == b


def test_bad_input() -> None:
    t, s, y = _task(6)
    ceil = ceiling_scores(s[:300], y[:300], s[300:400], y[300:400], hdc_dim=128)
    with pytest.raises(InputError, match="single class"):
        ceiling_scores(s[:300], np.ones(300, dtype=np.int64), s[300:400], y[300:400])
    with pytest.raises(ShapeError, match="paired row by row"):
        transfer_scores(make_aligner("procrustes"), t[600:], s[610:], t[:300], y[:300],
                        s[300:400], y[300:400], ceiling=ceil, hdc_dim=128)
    with pytest.raises(ShapeError, match="labels"):
        ceiling_scores(s[:300], y[:299], s[300:400], y[300:400])
    with pytest.raises(InputError, match=">= 0"):
        ceiling_scores(s[:300], y[:300] - 1, s[300:400], y[300:400])
    with pytest.raises(InputError, match="disjoint"):
        check_disjoint(["a", "b"], ["b", "c"])
    assert check_disjoint(["a", "b"], ["b", "c"], allow_overlap=True) == 1
    assert check_disjoint(["a"], ["c"]) == 0


def test_feature_scaler_standardises_on_the_fitted_rows_only() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 5)) * [1.0, 10.0, 0.1, 3.0, 1.0] + [0.0, 5.0, -2.0, 1.0, 0.0]
    x[:, 4] = 7.0  # a constant feature must stay finite, not blow up
    sc = FeatureScaler("zscore").fit(x[:100])
    z = sc.transform(x[:100])
    np.testing.assert_allclose(z[:, :4].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :4].std(0), 1.0, atol=1e-5)
    assert np.all(np.isfinite(sc.transform(x))) and np.all(z[:, 4] == 0)
    # the other rows are scaled with the fitted statistics, not their own
    np.testing.assert_allclose(sc.transform(x[100:]), (x[100:] - sc.mean_) / sc.scale_,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(FeatureScaler("none").fit(x).transform(x), x.astype(np.float32))
    with pytest.raises(InputError, match="must be one of"):
        FeatureScaler("whiten")
    with pytest.raises(ShapeError, match="own scaler"):
        sc.transform(x[:, :3])
    with pytest.raises(InputError, match="at least 2 rows"):
        FeatureScaler().fit(x[:1])


def test_zscore_rescues_codes_dominated_by_loud_features() -> None:
    """A few high-variance features that carry no label drown the code unless z-scored."""
    t, s, y = _task(8, n=900)
    rng = np.random.default_rng(8)
    s = np.hstack([s, 1000.0 * rng.standard_normal((s.shape[0], 4))])  # "rogue" dimensions
    tr, te = slice(0, 600), slice(600, 900)
    raw = ceiling_scores(s[tr], y[tr], s[te], y[te], hdc_dim=512, seed=1)
    sc = FeatureScaler().fit(s[tr])
    scaled = ceiling_scores(sc.transform(s[tr]), y[tr], sc.transform(s[te]), y[te],
                            hdc_dim=512, seed=1)
    assert scaled.hdc.acc > raw.hdc.acc + 0.1
    assert scaled.hdc.acc > 0.85


@pytest.mark.parametrize("max_dim", [2048, 4])  # 4 forces newton-cg on these 16-d features
def test_probe_solvers_reach_the_logistic_optimum(max_dim: int, monkeypatch) -> None:
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setattr(LinearProbe, "CHOLESKY_MAX_DIM", max_dim)
    _, s, y = _task(9, n=600)
    probe = LinearProbe(C=0.5, standardize=True).fit(s, y)
    assert probe.solver_ == ("newton-cholesky" if max_dim == 2048 else "newton-cg")
    z = (s - s.mean(0)) / s.std(0)
    ref = LogisticRegression(C=0.5, solver="lbfgs", tol=1e-10, max_iter=10_000).fit(z, y)
    np.testing.assert_allclose(probe.model_.coef_, ref.coef_, rtol=1e-3, atol=1e-2)
    assert np.mean(probe.predict(s) == ref.predict(z)) > 0.99
