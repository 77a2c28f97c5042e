"""The data-scaling study: one capture cut at several sizes, every size a full train run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from hyperlens.config import RunContext
from hyperlens.errors import ConfigError, InputError
from hyperlens.experiments.hft_scale import HftScaleConfig, run_scale


def test_a_limited_capture_keeps_whole_texts_and_every_held_out_row(small_capture):
    cap = small_capture
    text = np.asarray(cap.train["text"])
    n = len(text)
    half = cap.limited(n // 2)
    assert half.limit == len(half.train) <= n // 2
    assert len(half.heldout) == len(cap.heldout)
    kept = np.asarray(half.train["text"])
    assert not np.isin(text[len(kept):], kept).any()  # no text is cut in two
    assert cap.limited(10 * n).limit == n
    with pytest.raises(InputError, match="keeps no whole text"):
        cap.limited(1)


def test_scale_options_are_refused_before_any_work():
    with pytest.raises(ConfigError, match="--train-tokens 4000"):
        HftScaleConfig(train_tokens=1000, sizes=(2000, 4000))
    with pytest.raises(ConfigError, match="--sizes"):
        HftScaleConfig(train_tokens=4000, sizes=(4000,), train_limit=100)


def test_the_curve_names_the_layer_and_the_input_with_their_intervals(tmp_path):
    from hyperlens.experiments.hft_scale import _GAP, _sections
    from hyperlens.report import Report

    cols = ["model", "parameters", "ppl ", "ppl lo", "ppl hi"]

    def point(n: int, hf: float, kn: float, ratios: dict) -> dict:
        rows = [["KN-5", 0, kn, kn - 1, kn + 1], ["A: HyperField", 9, hf, hf - 1, hf + 1]]
        return {"train_tokens": n, "fit_tokens": int(0.9 * n), "columns": cols, "rows": rows,
                "ratios": ratios}

    layer, inp = _GAP[1][1], _GAP[2][1]
    pts = {1000: point(1000, 150.0, 100.0, {_GAP[0][1]: [1.5, 1.4, 1.6],
                                            layer: [1.3, 1.2, 1.4], inp: [1.1, 1.05, 1.2]}),
           4000: point(4000, 90.0, 100.0, {_GAP[0][1]: [0.9, 0.85, 0.95],
                                           layer: [1.2, 1.1, 1.3]})}
    rep = Report("hft-scale", out_dir=tmp_path)
    _sections(rep, pts)
    cross = next(s for s in rep.sections if s.title == "Crossover with KN-5")
    assert "1,000: 1.500 [1.400, 1.600]" in cross.text and "from 4,000" in cross.text
    gap = next(s for s in rep.sections if s.title == "The layer or the input")
    rows = {r[0]: r[1:] for r in gap.tables[0]["rows"]}
    assert rows[_GAP[1][0]] == ["1.300 [1.200, 1.400]", "1.200 [1.100, 1.300]"]
    assert rows[_GAP[2][0]] == ["1.100 [1.050, 1.200]", ""]  # not measured at 4,000
    assert _GAP[3][0] not in rows  # measured at no size: no row
    curve = next(s for s in rep.sections if s.title == "Perplexity against training tokens")
    assert "1,000: not recorded" in curve.text and "not the same" not in curve.text


def test_the_curve_says_how_each_size_trained():
    """--precision auto resolves by the CPU, so sizes run on different machines may have
    trained differently: each size's report says how, and the curve says when they differ."""
    from hyperlens.experiments.hft_scale import _precision

    def res(sc: dict, flags: list | None = None) -> dict:
        env = {} if flags is None else {"cpu_flags": flags}
        return {"data": {"student config": sc}, "environment": env}

    assert _precision(res({"bf16": False, "fast_unembed": False})) == "float32"
    assert _precision(res({"bf16": True, "fast_unembed": True})) == (
        "dense students in bf16 autocast, bf16 vocabulary products")
    # reports from before the choice was resolved: the recorded CPU decides, if recorded
    assert _precision(res({"bf16": False, "fast_unembed": None}, ["avx2"])) == "float32"
    assert _precision(res({"bf16": False, "fast_unembed": None}, ["avx512_bf16"])) == (
        "bf16 vocabulary products")
    assert _precision(res({"bf16": False, "fast_unembed": None})).startswith("not recorded")


@pytest.mark.integration
def test_scale_trains_each_size_on_the_same_held_out_rows(tmp_path, monkeypatch):
    """SmolLM2 over a few hundred SST-2 tokens, two sizes, the smallest students."""
    from functools import partial
    from pathlib import Path

    from hyperlens import models as hmodels
    from hyperlens.errors import DependencyError, ModelNotFoundError
    from hyperlens.hft import checks

    try:
        hmodels.load("smollm2", device="cpu")
    except (ModelNotFoundError, DependencyError) as exc:
        pytest.skip(f"SmolLM2 is not available offline here: {exc}")
    sst2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "sst2" / "dev.tsv"
    monkeypatch.setattr(checks, "throughput",
                        partial(checks.throughput, steps=2, repeats=1, bf16=False))
    cfg = HftScaleConfig(
        dataset=str(sst2), data_dir=str(sst2.parents[1]), text_column="sentence",
        train_tokens=240, heldout_tokens=100, layer=2, heads=(0, 1), window=16,
        capture_dir=tmp_path / "cap", sizes=(120, 240), seeds=(0,), k1=8, k2=8, top_k=2,
        mix_heads=2, d_sketch=64, exact_tokens=2, patience=1, max_epochs=2, val_share=0.2,
        online=False, mlp=False, n_boot=10)
    rep = run_scale(cfg, RunContext(seed=0, device="cpu", progress=False, out=tmp_path / "s"))
    pts = rep.data["points"]
    assert sorted(pts) == [120, 240]
    assert pts[120]["train_tokens"] <= 120 < pts[240]["train_tokens"]
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    sec = next(s for s in res["sections"] if s["title"] == "Perplexity against training tokens")
    assert len(sec["tables"][0]["columns"]) == 3 and sec["plots"][0]["spec"]["xscale"] == "log"
    kn = [next(r for r in pts[n]["rows"] if r[0] == "KN-5") for n in (120, 240)]
    teacher = [next(r for r in pts[n]["rows"] if r[0] == "teacher") for n in (120, 240)]
    assert kn[0] != kn[1] and teacher[0] == teacher[1]  # fitted on more; scored on the same
    again = run_scale(replace(cfg), RunContext(seed=0, device="cpu", progress=False,
                                               out=tmp_path / "s"))
    assert again.data["points"][240]["rows"] == pts[240]["rows"]  # read back, not retrained
