"""``hyperlens modulate``: input errors before any loading, the paired relational statistics,
and (slow, real models) a miniature end-to-end run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperlens.errors import InputError
from hyperlens.experiments import modulate, modulate_core as mc


def _opts(**kw):
    base = dict(
        models=["minilm"],
        modulators=["lerp"],
        seeds=1,
        control_seeds=1,
        controls=["random"],
        layers=None,
        anchors=100,
        test=40,
        steps=2,
        batch_size=4,
        lr=3e-3,
        alpha_lr=0.1,
        alpha=0.1,
        field_alpha=0.01,
        alpha_starts=[],
        sweep=[0.0, 0.29154],
        n_boot=5,
        n_coherence=4,
        data_dir=None,
    )
    return base | kw


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"layers": [6]}, "out of range"),
        ({"alpha": 1.5}, r"\[0, 1\]"),
        ({"sweep": [-0.1]}, r"\[0, 1\]"),
        ({"field_alpha": 0.5}, "alpha_max"),
        ({"field_alpha_starts": [0.4]}, "alpha_max"),
        ({"alpha_starts": [1.2]}, r"\[0, 1\]"),
        ({"modulators": ["lora"]}, "lerp and/or field"),
        ({"models": ["glove-50d"]}, "static"),
        ({"controls": ["noise"]}, "controls"),
    ],
)
def test_bad_input_is_refused_before_loading(kw, match, tmp_path, monkeypatch):
    import hyperlens.models as hm

    monkeypatch.setattr(hm, "load", lambda *a, **k: pytest.fail("model loaded before validation"))
    with pytest.raises(InputError, match=match):
        modulate.run_modulate(out=tmp_path, **_opts(**kw))


def test_alpha_drift_measures_the_last_quarter():
    hist = [{"alpha.0": 0.1 + 0.01 * i, "alpha.3": 0.2} for i in range(8)]
    assert modulate._drift(hist, [0, 3]) == pytest.approx(0.01 * (7 - 5))
    assert modulate._drift([{"alpha.0": 0.1}] * 4, [0]) == 0.0
    assert np.isnan(modulate._drift(hist[:1], [0, 3]))


def test_relational_table_pairs_conditions_and_detects_signal(graph):
    rng = np.random.default_rng(0)
    n = 60
    ids = np.sort(rng.choice(np.flatnonzero(graph.pos == "n"), n, replace=False))
    Z = rng.normal(size=(n, 5))
    S = Z @ Z.T
    S = (S - S.min()) / (S.max() - S.min())
    good = torch.tensor(Z + 0.1 * rng.normal(size=Z.shape))
    noise = torch.tensor(rng.normal(size=(n, 5)))
    table, raw, probe = mc.relational_table(
        {"plain": noise, "good": good},
        ids,
        base="plain",
        n_boot=50,
        seed=0,
        similarities={"path": S, "wup": S},
        n_perm=99,
    )
    t = table["path"]
    assert t["plain"]["lift_pearson"] == 0.0
    assert t["good"]["pearson"] > 0.8 and t["good"]["lift_pearson_lo"] > 0.5
    assert (
        abs(t["plain"]["pearson"]) < 0.2 and t["plain"]["pearson_lo"] < 0 < t["plain"]["pearson_hi"]
    )
    assert t["good"]["pearson_lo"] <= t["good"]["pearson"] <= t["good"]["pearson_hi"]
    assert t["good"]["mantel_p_pearson"] <= 0.02
    # the lift is the probe's own paired difference against the base, on the same resamples
    vs = probe["vs_baseline"]["good"]["path.pearson"]
    assert vs["value"] == pytest.approx(t["good"]["lift_pearson"])
    assert vs["lo"] == pytest.approx(t["good"]["lift_pearson_lo"])
    v, lo, hi = mc.paired_diff(raw["path"]["good"][:, 0], raw["path"]["plain"][:, 0])
    assert v == pytest.approx(t["good"]["lift_pearson"]) and lo <= v <= hi
    assert raw["path"]["good"].shape == (51, 2)


@pytest.mark.slow
@pytest.mark.integration
def test_miniature_run_on_minilm(tmp_path):
    import json

    pytest.importorskip("transformers")
    try:
        path = modulate.run_modulate(out=tmp_path / "rep", **_opts(modulators=["lerp", "field"]))
    except Exception as exc:  # noqa: BLE001
        if "not found" in str(exc).lower() or "not installed" in str(exc).lower():
            pytest.skip(str(exc))
        raise
    res = json.loads((path / "results.json").read_text())
    assert any("relational" in sec["title"] for sec in res["sections"])


def test_auto_dtype_is_bfloat16_only_with_native_bf16() -> None:
    from hyperlens.experiments.modulate import frozen_dtype
    from hyperlens.functional import kernels

    with kernels.force_kernels("avx2"):
        assert frozen_dtype("auto") == "float32"
    with kernels.force_kernels("amx"):
        assert frozen_dtype("auto") == "bfloat16"
    assert frozen_dtype("float32") == "float32" and frozen_dtype(None) is None
