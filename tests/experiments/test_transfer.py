"""``hyperlens transfer`` end to end on a small local dataset with synthetic embeddings.

The stages, the report and the resume logic are exercised without loading models: the
embedding step is replaced by three synthetic "models" (noisy linear views of a
label-dependent latent, of different widths). Real models are covered by
``test_transfer_integration.py``.
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from hyperlens.errors import ConfigError
from hyperlens.experiments import transfer as tr

WIDTHS = {"ma": 14, "mb": 10, "mc": 6}


def _fake_embeddings(self: tr.TransferRun, model: str, dataset: str) -> np.ndarray:
    pool = self.pool(dataset)
    n = len(pool.texts)
    rng_text = np.random.default_rng(0)  # the texts' latent: shared by every model
    z = rng_text.standard_normal((n, 4))
    z[:, 0] += 1.6 * (pool.labels - pool.labels.mean())
    rng = np.random.default_rng(zlib.crc32(model.encode()))
    x = z @ rng.standard_normal((4, WIDTHS[model])) + 0.3 * rng.standard_normal((n, WIDTHS[model]))
    return x.astype(np.float32)


@pytest.fixture()
def small_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = (rng.random(260) < 0.6).astype(int)
    lines = ["text,label"] + [f"review number {i} says {'good' if y else 'bad'},{y}"
                              for i, y in enumerate(labels)]
    lines.append("review number 3 says " + ("good" if labels[3] else "bad") + f",{labels[3]}")
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(csv: Path, **over) -> tr.TransferConfig:
    base = dict(models=["ma", "mb", "mc"], pair=["ma", "mb"], dataset=str(csv),
                datasets=[str(csv)], train=100, test=40, anchor_pool=60,
                anchors=["20", "all"], n_anchors=20, hdc_dims=[128, 256], hdc_dim=256,
                seeds=[1, 2], teachers=["ma", "mc"], student="mb",
                aligners=["none", "procrustes", "cca", "ridge", "relative"], device="cpu")
    base.update(over)
    return tr.TransferConfig(**base)


def test_all_stages_write_tables_plots_and_resume(
    small_csv: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(tr.TransferRun, "embeddings", _fake_embeddings)
    out = tmp_path / "run"
    path = tr.run_transfer(_config(small_csv), out)
    res = json.loads((path / "results.json").read_text())
    titles = [s["title"] for s in res["sections"]]
    for t in ("Stage 0", "Stage 1", "Stage 2", "Stage 3", "Stage 4", "Teacher study"):
        assert any(x.startswith(t) for x in titles), (t, titles)
    for sec in res["sections"]:
        assert sec["tables"] and sec["plots"], sec["title"]
        for p in sec["plots"]:
            assert (path / p["file"]).is_file()
        if sec["title"].startswith(("Stage 2", "Stage 3", "Stage 4", "Teacher")):
            for table in sec["tables"]:
                assert "chance-corr. eff." in table["columns"]
                assert "bal. acc" in table["columns"]
    assert (path / "index.html").is_file()
    assert res["data"]["datasets"][str(small_csv)]["duplicates_dropped"] == 1
    # stage 2 numbers: aligned transfer beats no alignment on these linked views
    s2 = res["data"]["stage2"]
    assert s2["ma->mb|ridge|all"]["cc_eff"]["mean"] > s2["ma->mb|none|all"]["cc_eff"]["mean"]
    for rec in s2.values():
        assert len(rec["per_seed"]) == 2
        assert rec["eff"]["lo"] <= rec["eff"]["mean"] <= rec["eff"]["hi"]
    assert res["data"]["cells"]["computed"] == len((out / "cells.jsonl").read_text().splitlines())


def _no_timing(stage2: dict) -> dict:
    return {k: {m: v for m, v in rec.items() if m not in {"fit_seconds", "per_seed"}}
            for k, rec in stage2.items()}


def test_interrupted_runs_resume(small_csv: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tr.TransferRun, "embeddings", _fake_embeddings)
    out = tmp_path / "run"
    cfg = dict(stages=["2"], aligners=["procrustes", "ridge"])
    res = json.loads((tr.run_transfer(_config(small_csv, **cfg), out) / "results.json").read_text())
    s2 = res["data"]["stage2"]
    computed = res["data"]["cells"]["computed"]
    lines = (out / "cells.jsonl").read_text().splitlines()
    assert computed == len(lines) > 0

    # a rerun resumes everything
    res2 = json.loads(
        (tr.run_transfer(_config(small_csv, **cfg), out) / "results.json").read_text()
    )
    assert res2["data"]["cells"] == {"resumed": computed, "computed": 0, "file": "cells.jsonl"}
    assert res2["data"]["stage2"] == s2

    # an interrupted run (half the cells on disk, one line torn) computes only the rest
    kept = lines[: len(lines) // 2]
    (out / "cells.jsonl").write_text("\n".join(kept) + "\n" + lines[-1][:25])
    res3 = json.loads(
        (tr.run_transfer(_config(small_csv, **cfg), out) / "results.json").read_text()
    )
    assert res3["data"]["cells"]["resumed"] == len(kept)
    assert res3["data"]["cells"]["computed"] == computed - len(kept)
    assert _no_timing(res3["data"]["stage2"]) == _no_timing(s2)

    # a changed protocol option invalidates the finished cells; --fresh ignores them
    res4 = json.loads((tr.run_transfer(_config(small_csv, **cfg, tau=0.5), out)
                       / "results.json").read_text())
    assert res4["data"]["cells"]["resumed"] == 0
    res5 = json.loads((tr.run_transfer(_config(small_csv, **cfg, fresh=True), out)
                       / "results.json").read_text())
    assert res5["data"]["cells"]["resumed"] == 0 and res5["data"]["cells"]["computed"] == computed


def test_cli_arguments_and_stage_selection(small_csv: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tr.TransferRun, "embeddings", _fake_embeddings)
    p = argparse.ArgumentParser()
    tr.add_arguments(p)
    args = p.parse_args(["--stages", "2", "--pair", "mc", "mb", "--dataset", str(small_csv),
                         "--aligners", "procrustes", "cca", "--anchors", "20", "30",
                         "--train", "100", "--test", "40", "--anchor-pool", "60",
                         "--seeds", "5", "6", "7", "--hdc-dim", "128", "--n-anchors", "20"])
    args.out, args.seed, args.device = tmp_path / "cli", 0, "cpu"
    res = json.loads((tr.main(args) / "results.json").read_text())
    assert [s["title"] for s in res["sections"]] == ["Stage 2: aligners x anchors"]
    assert set(res["data"]["stage2"]) == {f"{d}|{a}|{n}" for d in ("mc->mb", "mb->mc")
                                          for a in ("procrustes", "cca") for n in ("20", "30")}
    assert res["data"]["stage2"]["mc->mb|cca|30"]["eff"]["n"] == 3


def test_bad_configurations(small_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stages"):
        tr.run_transfer(_config(small_csv, stages=["9"]), tmp_path / "a")
    with pytest.raises(ConfigError, match="not registered"):
        tr.run_transfer(_config(small_csv, aligners=["magic"]), tmp_path / "b")
    with pytest.raises(ConfigError, match="anchor-pool"):
        tr.run_transfer(_config(small_csv, anchors=["100"]), tmp_path / "c")
    with pytest.raises(ConfigError, match="two different models"):
        tr.run_transfer(_config(small_csv, pair=["ma", "ma"]), tmp_path / "d")
    with pytest.raises(ConfigError, match="rows"):
        tr.run_transfer(_config(small_csv, stages=["0"], train=1000), tmp_path / "e")
    with pytest.raises(ConfigError, match="input-scaling"):
        tr.run_transfer(_config(small_csv, input_scaling="pca"), tmp_path / "f")


def test_input_scaling_uses_anchor_statistics(small_csv: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tr.TransferRun, "embeddings", _fake_embeddings)
    from hyperlens.report import Report

    cfg = _config(small_csv, seeds=[1])
    run = tr.TransferRun(cfg, tmp_path, Report("t", {}, out_dir=tmp_path))
    x = run.inputs("ma", str(small_csv), 1)
    anchors = run.pool(str(small_csv)).rows[1]["anchors"]
    np.testing.assert_allclose(x[anchors].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x[anchors].std(0), 1.0, atol=1e-4)
    assert not np.allclose(x, run.embeddings("ma", str(small_csv)))
    raw = tr.TransferRun(_config(small_csv, seeds=[1], input_scaling="none"), tmp_path,
                         Report("t", {}, out_dir=tmp_path))
    np.testing.assert_array_equal(raw.inputs("ma", str(small_csv), 1),
                                  raw.embeddings("ma", str(small_csv)))
    # the option is part of the protocol: finished cells of the other setting are not reused
    assert cfg.fingerprint() != raw.cfg.fingerprint()


def test_tour_section_adds_a_transfer_table(small_csv: Path, tmp_path: Path, monkeypatch) -> None:
    from hyperlens import models as hmodels
    from hyperlens.report import Report

    def fake_embed(texts, handle, **kw):
        rng = np.random.default_rng(0)
        y = np.array([t.endswith("good") for t in texts], dtype=float)
        z = rng.standard_normal((len(texts), 4))
        z[:, 0] += 1.6 * y
        m = np.random.default_rng(zlib.crc32(handle.encode()))
        return (z @ m.standard_normal((4, WIDTHS[handle]))).astype(np.float32)

    monkeypatch.setattr(hmodels, "load", lambda name, device=None: name)
    monkeypatch.setattr(hmodels, "embed", fake_embed)
    rep = Report("tour", {"dataset": str(small_csv), "models": ["ma", "mb"], "n_texts": 200},
                 out_dir=tmp_path / "tour")
    tr.tour_section(rep, seed=0, device="cpu")
    sec = rep.sections[-1]
    assert sec.title == "Cross-architecture transfer"
    rows = sec.tables[0]["rows"]
    assert len(rows) == 4  # two directions x two aligners
    assert "chance-corr. eff." in sec.tables[0]["columns"]
    for row in rows:
        assert 0.0 <= row[2] <= 1.0
    assert (rep.save() / "index.html").is_file()
