"""``hyperlens transfer`` end to end on a small local dataset with synthetic embeddings.

The stages, the report and the resume logic are exercised without loading models: the
embedding step is replaced by three synthetic "models" (noisy linear views of a
label-dependent latent, of different widths). Real models are covered by
``test_transfer_integration.py``.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hyperlens.align.sweep import STAGES, TransferSweep
from hyperlens.config import RunContext
from hyperlens.errors import ConfigError
from hyperlens.experiments import transfer as tr
from hyperlens.run import CELLS_TIMING, Ledger

WIDTHS = {"ma": 14, "mb": 10, "mc": 6}


def _fake_embeddings(self: TransferSweep, model: str, dataset: str) -> np.ndarray:
    pool = self.pool(dataset)
    n = len(pool.texts)
    rng_text = np.random.default_rng(0)  # the texts' latent: shared by every model
    z = rng_text.standard_normal((n, 4))
    z[:, 0] += 1.6 * (pool.labels - pool.labels.mean())
    rng = np.random.default_rng(zlib.crc32(model.encode()))
    x = z @ rng.standard_normal((4, WIDTHS[model])) + 0.3 * rng.standard_normal((n, WIDTHS[model]))
    return x.astype(np.float32)


@pytest.fixture()
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TransferSweep, "embeddings", _fake_embeddings)


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


def _config(csv: Path, **over: Any) -> tr.TransferConfig:
    base: dict[str, Any] = dict(
        models=["ma", "mb", "mc"], pair=["ma", "mb"], dataset=str(csv), datasets=[str(csv)],
        train=100, test=40, anchor_pool=60, anchors=["20", "all"], n_anchors=20,
        hdc_dims=[128, 256], hdc_dim=256, seeds=[1, 2], teachers=["ma", "mc"], student="mb",
        aligners=["none", "procrustes", "cca", "ridge", "relative"])
    base.update(over)
    return tr.TransferConfig(**base)


def _run(cfg: tr.TransferConfig, out: Path, **ctx: Any) -> dict[str, Any]:
    rep = tr.run(cfg, RunContext(out=out, device="cpu", **ctx))
    return json.loads((Path(rep.out_dir) / "results.json").read_text())


def _sweep(cfg: tr.TransferConfig, seed: int = 0) -> TransferSweep:
    protocol = cfg.protocol(seed)
    return TransferSweep(cfg.design(), protocol, Ledger(None, protocol.fingerprint()))


def _durations(value: Any, path: str = "") -> list[str]:
    """Where a duration field sits in ``value`` (none should, outside ``timings``)."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k in {"fit_seconds", "fit s"} or (isinstance(v, str) and v == "fit s"):
                found.append(f"{path}/{k}")
            found += _durations(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if v == "fit s":
                found.append(f"{path}[{i}]")
            found += _durations(v, f"{path}[{i}]")
    return found


def test_all_stages_write_tables_plots_and_resume(small_csv: Path, tmp_path: Path,
                                                  fake_models: None) -> None:
    out = tmp_path / "run"
    res = _run(_config(small_csv), out)
    titles = [s["title"] for s in res["sections"]]
    for t in ("Stage 0", "Stage 1", "Stage 2", "Stage 3", "Stage 4", "Teacher study"):
        assert any(x.startswith(t) for x in titles), (t, titles)
    for sec in res["sections"]:
        assert sec["tables"] and sec["plots"], sec["title"]
        for p in sec["plots"]:
            assert (out / p["file"]).is_file()
        if sec["title"].startswith(("Stage 2", "Stage 3", "Stage 4", "Teacher")):
            for table in sec["tables"]:
                assert "chance-corr. eff." in table["columns"]
                assert "bal. acc" in table["columns"]
    assert (out / "index.html").is_file()
    assert res["data"]["datasets"][str(small_csv)]["duplicates_dropped"] == 1
    # stage 2 numbers: aligned transfer beats no alignment on these linked views
    s2 = res["data"]["stage2"]
    assert s2["ma->mb|ridge|all"]["cc_eff"]["mean"] > s2["ma->mb|none|all"]["cc_eff"]["mean"]
    for rec in s2.values():
        assert len(rec["per_seed"]) == 2
        assert rec["eff"]["lo"] <= rec["eff"]["mean"] <= rec["eff"]["hi"]
    assert res["data"]["cells"]["computed"] == len((out / "cells.jsonl").read_text().splitlines())
    # durations only under timings: the aligners' fitting time of the cells computed here
    assert _durations({k: v for k, v in res.items() if k != "timings"}) == []
    assert {f"fit:{a}" for a in ("none", "procrustes", "cca", "ridge", "relative")} <= set(
        res["timings"])


def test_interrupted_runs_resume(small_csv: Path, tmp_path: Path, fake_models: None) -> None:
    out = tmp_path / "run"
    cfg = dict(stages=["2"], aligners=["procrustes", "ridge"])
    res = _run(_config(small_csv, **cfg), out)
    s2 = res["data"]["stage2"]
    computed = res["data"]["cells"]["computed"]
    lines = (out / "cells.jsonl").read_text().splitlines()
    assert computed == len(lines) > 0

    # a rerun resumes everything, with the same numbers and no fitting time to report
    res2 = _run(_config(small_csv, **cfg), out)
    assert (res2["data"]["cells"]["resumed"], res2["data"]["cells"]["computed"]) == (computed, 0)
    assert res2["timings"][CELLS_TIMING] == res["timings"][CELLS_TIMING] > 0
    assert res2["data"]["stage2"] == s2
    assert not any(k.startswith("fit:") for k in res2["timings"])

    # an interrupted run (half the cells on disk, one line torn) computes only the rest
    kept = lines[: len(lines) // 2]
    (out / "cells.jsonl").write_text("\n".join(kept) + "\n" + lines[-1][:25])
    res3 = _run(_config(small_csv, **cfg), out)
    assert res3["data"]["cells"]["resumed"] == len(kept)
    assert res3["data"]["cells"]["computed"] == computed - len(kept)
    assert res3["data"]["stage2"] == s2

    # a changed protocol option or --seed invalidates the finished cells; --fresh ignores them
    res4 = _run(_config(small_csv, **cfg, tau=0.5), out)
    assert res4["data"]["cells"]["resumed"] == 0
    res5 = _run(_config(small_csv, **cfg, fresh=True), out)
    assert res5["data"]["cells"]["resumed"] == 0 and res5["data"]["cells"]["computed"] == computed
    res6 = _run(_config(small_csv, **cfg), out, seed=3)
    assert res6["data"]["cells"]["resumed"] == 0


def test_seed_draws_the_pool_and_seeds_are_replicates(small_csv: Path, tmp_path: Path,
                                                      fake_models: None) -> None:
    cfg = _config(small_csv, stages=["0", "2"], aligners=["ridge"], anchors=["20"], seeds=[1])

    def numbers(res: dict[str, Any]) -> tuple[Any, Any]:
        return res["data"]["stage0"], res["data"]["stage2"]

    a = numbers(_run(cfg, tmp_path / "a", seed=0))
    assert numbers(_run(cfg, tmp_path / "b", seed=0)) == a  # same seed, same bits
    c = numbers(_run(cfg, tmp_path / "c", seed=7))
    assert c[0]["ma"]["per_seed"] != a[0]["ma"]["per_seed"]
    assert c[1]["ma->mb|ridge|20"]["per_seed"] != a[1]["ma->mb|ridge|20"]["per_seed"]
    # --seed draws the pool, so every replicate's split differs
    p0, p7 = _sweep(cfg, 0).pool(str(small_csv)), _sweep(cfg, 7).pool(str(small_csv))
    assert p0.texts != p7.texts and sorted(p0.texts) != sorted(p7.texts)
    test0 = {p0.texts[i] for i in p0.rows[1]["test"]}
    assert test0 != {p7.texts[i] for i in p7.rows[1]["test"]}
    # a replicate seed re-splits the same pool
    two = _sweep(_config(small_csv, seeds=[1, 2]), 0).pool(str(small_csv))
    assert two.texts == p0.texts
    assert {two.texts[i] for i in two.rows[2]["test"]} != test0


def test_cli_options_and_stage_selection(small_csv: Path, tmp_path: Path,
                                         fake_models: None) -> None:
    from hyperlens.cli import main

    out = tmp_path / "cli"
    rc = main(["transfer", "--stages", "2", "--pair", "mc", "mb", "--dataset", str(small_csv),
               "--aligners", "procrustes", "cca", "--anchors", "20", "30", "--train", "100",
               "--test", "40", "--anchor-pool", "60", "--seeds", "5", "6", "7", "--hdc-dim",
               "128", "--n-anchors", "20", "--device", "cpu", "--seed", "2", "--no-progress",
               "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert [s["title"] for s in res["sections"]] == ["Stage 2: aligners x anchors"]
    assert set(res["data"]["stage2"]) == {f"{d}|{a}|{n}" for d in ("mc->mb", "mb->mc")
                                          for a in ("procrustes", "cca") for n in ("20", "30")}
    assert res["data"]["stage2"]["mc->mb|cca|30"]["eff"]["n"] == 3
    assert res["seed"] == 2 and res["config"]["context"]["seed"] == 2
    assert res["config"]["pair"] == ["mc", "mb"] and res["config"]["seeds"] == [5, 6, 7]


def test_bad_configurations(small_csv: Path) -> None:
    for over, text in [
        (dict(stages=["9"]), "--stages"),
        (dict(aligners=["magic"]), "not registered"),
        (dict(aligner="magic"), "--aligner"),
        (dict(anchors=["100"]), "anchor-pool"),
        (dict(anchors=["0"]), "--anchors"),
        (dict(pair=["ma", "ma"]), "two different models"),
        (dict(pair=["ma", "mb", "mc"]), "--pair"),
        (dict(input_scaling="pca"), "--input-scaling"),
        (dict(seeds=[]), "--seeds"),
        (dict(encoding="klingon-8"), "--encoding"),
        (dict(stages=["1"], n_anchors=100), "--n-anchors"),
    ]:
        with pytest.raises(ConfigError, match=text):
            _config(small_csv, **over)
    _config(small_csv, stages=["0"], n_anchors=100)  # stage 0 does not read --n-anchors


def test_too_small_dataset_is_refused_before_any_embedding(small_csv: Path,
                                                           tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rows"):
        tr.run(_config(small_csv, stages=["0"], train=1000), RunContext(out=tmp_path / "e"))


def test_input_scaling_uses_anchor_statistics(small_csv: Path, fake_models: None) -> None:
    cfg = _config(small_csv, seeds=[1])
    sweep = _sweep(cfg)
    x = sweep.inputs("ma", str(small_csv), 1)
    anchors = sweep.pool(str(small_csv)).rows[1]["anchors"]
    np.testing.assert_allclose(x[anchors].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x[anchors].std(0), 1.0, atol=1e-4)
    assert not np.allclose(x, sweep.embeddings("ma", str(small_csv)))
    raw_cfg = _config(small_csv, seeds=[1], input_scaling="none")
    raw = _sweep(raw_cfg)
    np.testing.assert_array_equal(raw.inputs("ma", str(small_csv), 1),
                                  raw.embeddings("ma", str(small_csv)))
    # the option is part of the protocol: finished cells of the other setting are not reused
    assert cfg.protocol().fingerprint() != raw_cfg.protocol().fingerprint()


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
    assert _durations(sec.metrics) == []
    assert (rep.save() / "index.html").is_file()


def _cells(out: Path) -> dict:
    """Ledger results by cell id, without the one timing field."""
    recs = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)), "a cell was recorded twice"
    return {r["id"]: {k: v for k, v in r["result"].items() if k != "fit_seconds"} for r in recs}


def test_plan_covers_every_cell_the_stages_read(small_csv: Path, tmp_path: Path,
                                                fake_models: None) -> None:
    from hyperlens.report import Report

    cfg = _config(small_csv, seeds=[1])
    sweep = _sweep(cfg)
    n = sweep.prefetch()
    assert n == len(sweep.store) > 0
    rep = Report("t", {}, out_dir=tmp_path)
    for stage in STAGES:
        tr._STAGE_LAYOUTS[stage](rep, cfg, sweep)
    assert sweep.computed == n  # nothing was left for the stages to compute in-process


def _comparable(res: dict[str, Any]) -> dict[str, Any]:
    """``results.json`` without what may differ between executors: durations, the machine,
    the creation time and the executor's name."""
    out = {k: v for k, v in res.items() if k not in {"timings", "environment", "created"}}
    out["config"] = dict(out["config"], context={k: v for k, v in
                                                 out["config"]["context"].items()
                                                 if k != "executor"})
    return out


def test_local_and_ray_give_the_same_results(small_csv: Path, tmp_path: Path,
                                             fake_models: None, ray_executor) -> None:
    cfg = _config(small_csv, stages=["0", "2"], aligners=["procrustes", "ridge"], seeds=[1],
                  anchors=["20"])
    local = _run(cfg, tmp_path / "local")
    on_ray = _run(cfg, tmp_path / "ray", executor="ray",
                  ray_address=ray_executor.cluster_address)
    assert on_ray["config"]["context"]["executor"] == "ray"
    assert _comparable(on_ray) == _comparable(local)
    assert _cells(tmp_path / "ray") == _cells(tmp_path / "local")  # floats compared exactly


def test_sweeps_resume_across_executors(small_csv: Path, tmp_path: Path, fake_models: None,
                                        ray_executor) -> None:
    cfg = _config(small_csv, stages=["0", "2"], aligners=["procrustes", "ridge"], seeds=[1])
    ray = {"executor": "ray", "ray_address": ray_executor.cluster_address}
    _run(cfg, tmp_path / "local")
    ref = _cells(tmp_path / "local")
    # started under one executor, finished under the other: same numbers, each cell once
    lines = (tmp_path / "local" / "cells.jsonl").read_text().splitlines()
    half = len(lines) // 2
    for name, start, ctx in (("local-then-ray", lines[:half], ray),
                             ("ray-then-local", None, {})):
        out = tmp_path / name
        out.mkdir()
        if start is None:  # the cells Ray computed in the first run
            start = (tmp_path / "local-then-ray" / "cells.jsonl").read_text().splitlines()[half:]
        (out / "cells.jsonl").write_text("\n".join(start) + "\n")
        res = _run(cfg, out, **ctx)
        assert res["data"]["cells"]["resumed"] == len(start)
        assert res["data"]["cells"]["computed"] == len(lines) - len(start)
        assert _cells(out) == ref
