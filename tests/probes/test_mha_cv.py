"""Tests for hyperlens.probes.mha_cv and the ``mha-cv`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperlens import cli
from hyperlens.errors import ConfigError
from hyperlens.probes.mha_cv import (
    ACTIVATION_QUANTITIES,
    PHASES,
    WEIGHT_QUANTITIES,
    MHAClassifier,
    MHACVConfig,
    measure_cv,
    noise_patterns,
    run_mha_cv,
    train_and_measure,
)

TINY = dict(dims=(16,), heads=(1, 4), epochs=6, n_simplices=60, n_boot=30, samples_per_class=10,
            test_per_class=5, n_classes=4, vocab=32)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="not divisible"):
        MHACVConfig(dims=(30,), heads=(4,))
    with pytest.raises(ConfigError, match="band"):
        MHACVConfig(band=(0.3, 0.1))
    with pytest.raises(ConfigError, match="--null"):
        MHACVConfig(null="uniform")
    with pytest.raises(ConfigError, match="epochs"):
        MHACVConfig(epochs=1)


def test_noise_patterns_seeded_and_noisy() -> None:
    x, y, pat = noise_patterns(5, 200, 8, 1000, noise=0.25, seed=3)
    x2, y2, _ = noise_patterns(5, 200, 8, 1000, noise=0.25, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (1000, 8) and torch.bincount(y).tolist() == [200] * 5
    kept = (x == pat[y]).float().mean().item()
    # 25 % replaced (a replacement hits the pattern token 1/1000 of the time)
    assert 0.70 < kept < 0.80
    xt, yt, pat_t = noise_patterns(5, 10, 8, 1000, noise=0.0, seed=9, patterns=pat)
    assert torch.equal(pat_t, pat) and torch.equal(xt, pat[yt])


def test_activations_consistent_with_forward() -> None:
    torch.manual_seed(0)
    model = MHAClassifier(32, 16, 4, 6, 3).eval()
    x = torch.randint(0, 32, (5, 6))
    acts = model.activations(x)
    assert acts["act_Q"].shape == (4, 30, 4) and acts["act_post"].shape == (30, 16)
    logits = model.head(acts["act_post"].reshape(5, 6, 16).mean(1))
    torch.testing.assert_close(logits, model(x))
    # per-head queries are the head slices of the full query projection
    h = model.embed(x).reshape(30, 16)
    q = h @ model.mha.in_proj_weight[:16].T + model.mha.in_proj_bias[:16]
    torch.testing.assert_close(acts["act_Q"][2], q[:, 8:12])
    w = model.weights()
    assert w["W_K_heads"].shape == (4, 4, 16)
    torch.testing.assert_close(w["W_K_heads"][1], model.mha.in_proj_weight[16:32][4:8].detach())


def test_measure_cv_intervals_and_too_small_heads() -> None:
    cfg = MHACVConfig(**TINY)  # type: ignore[arg-type]
    torch.manual_seed(0)
    model = MHAClassifier(32, 16, 4, 8, 4)
    x, _, _ = noise_patterns(4, 10, 8, 32, seed=0)
    rows = measure_cv(model, x, cfg, seed=1)
    assert set(rows) == set(WEIGHT_QUANTITIES) | set(ACTIVATION_QUANTITIES)
    for name, r in rows.items():
        if r.cv is None:
            assert r.note  # says why (head_dim 4 < k + 1 rows, or 4 dims = k: flat)
            continue
        assert r.lo <= r.cv <= r.hi, name  # type: ignore[operator]
        assert r.null_cv is not None and r.ratio is not None
    assert rows["W_Q/head"].cv is None and "rows" in rows["W_Q/head"].note
    assert rows["W_cls"].cv is None  # 4 classes: fewer rows than a pentachoron needs
    assert rows["emb"].cv is not None and rows["act_Q/head"].cv is not None


def test_train_and_measure_seeded_and_learns() -> None:
    cfg = MHACVConfig(
        **{**TINY, "epochs": 30, "lr": 1e-2, "noise": 0.1, "n_simplices": 40, "n_boot": 20}  # type: ignore[arg-type]
    )
    a = train_and_measure(16, 2, cfg, seed=5, device=torch.device("cpu"))
    b = train_and_measure(16, 2, cfg, seed=5, device=torch.device("cpu"))
    assert a == b
    assert a["loss_last"] < 0.5 * a["loss_first"]
    assert a["train_acc"] > 0.9 and a["test_acc_ci"][0] <= a["test_acc"] <= a["test_acc_ci"][1]
    assert set(a["cv"]) == set(PHASES)
    # training moved the weights: post-training embedding CV differs from pre-training
    assert a["cv"]["pre"]["emb"]["cv"] != a["cv"]["post"]["emb"]["cv"]


def test_run_with_two_seeds_uses_t_intervals() -> None:
    cfg = MHACVConfig(**{**TINY, "heads": (2,), "seeds": (0, 1)})  # type: ignore[arg-type]
    res = run_mha_cv(cfg, device="cpu", show_progress=False)
    assert len(res.runs) == 2
    cell = res.cell(16, 2, "post", "emb")
    vals = [r["cv"]["post"]["emb"]["cv"] for r in res.runs]
    assert cell["n_seeds"] == 2
    assert cell["cv"] == pytest.approx(sum(vals) / 2)
    assert cell["lo"] < cell["cv"] < cell["hi"]
    assert cell["in_band"] == (0.13 < cell["cv"] < 0.30)


def test_command_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli.main(["mha-cv", "--dims", "16", "--heads", "1", "4", "--epochs", "4",
                     "--n-simplices", "40", "--n-boot", "20", "--n-classes", "4",
                     "--samples-per-class", "8", "--vocab", "32", "--band", "0.1", "0.4",
                     "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["experiment"] == "mha-cv"
    assert res["config"]["band"] == [0.1, 0.4] and res["config"]["dims"] == [16]
    assert len(res["data"]["runs"]) == 2
    titles = [s["title"] for s in res["sections"]]
    assert "Band membership" in titles
    files = {p["file"] for s in res["sections"] for p in s["plots"]}
    assert "mha_cv_weights_heatmap.png" in files
    for f in files:
        assert (out / f).stat().st_size > 0
    assert (out / "index.html").exists()
    assert res["summary"][0][0] == "grid"
