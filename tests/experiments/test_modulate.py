"""``hyperlens modulate``: the config's checks before any loading, the run plan, the paired
relational statistics, where the models go, and (real MiniLM) a miniature end-to-end run
that the seeds reproduce, whose trained runs a rerun reads back from the ledger and
``OUT/adapters``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from hyperlens.config import RunContext
from hyperlens.errors import ConfigError, DataError, DependencyError, ModelNotFoundError
from hyperlens.experiments import modulate
from hyperlens.experiments.modulate import ModulateConfig
from hyperlens.inject import modulate_cells as mc, modulate_train as mt
from hyperlens.run import CELLS_TIMING


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"models": ("minilm",), "layers": (6,)}, "out of range"),
        ({"alpha": 1.5}, "--alpha "),
        ({"alpha": 0.0}, "--alpha "),
        ({"sweep": (-0.1,)}, "--sweep"),
        ({"field_alpha": 0.5}, "alpha_max"),
        ({"field_alpha_starts": (0.4,)}, "alpha_max"),
        ({"alpha_starts": (1.2,)}, "--alpha-starts"),
        ({"modulators": ("lora",)}, "--modulators"),
        ({"models": ("glove-50d",)}, "static"),
        ({"controls": ("noise",)}, "--controls"),
        ({"test": -5}, "--test"),
        ({"steps": -1}, "--steps"),
        ({"batch_size": 0}, "--batch-size"),
        ({"lr": -1}, "--lr"),
        ({"alpha_lr": 0}, "--alpha-lr"),
        ({"n_boot": 0}, "--n-boot"),
        ({"anchors": 64}, "--anchors"),
        ({"seeds": (0, 0)}, "--seeds"),
        ({"seeds": (-1,)}, "--seeds"),
        ({"seeds": ()}, "--seeds"),
        ({"control_seeds": (1, 1)}, "--control-seeds"),
    ],
)
def test_bad_config_is_refused(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ModulateConfig(**kw)


def test_seeds_are_a_list_of_replicate_seeds() -> None:
    cfg = ModulateConfig(seeds=[3, 7], controls=[], alpha_starts=[])
    assert cfg.seeds == (3, 7) and cfg.controls == ()
    plan = mt.plan_runs(("lerp", "field"), seeds=(3, 7), controls=("random",),
                        control_seeds=(5,), alpha0={"lerp": 0.1, "field": 0.01},
                        alpha_starts={"lerp": (0.5, 0.1), "field": ()})
    assert [(p.kind, p.geometry, p.alpha0, p.seed) for p in plan] == [
        ("lerp", "wordnet", 0.1, 3), ("lerp", "wordnet", 0.1, 7), ("lerp", "random", 0.1, 5),
        ("lerp", "wordnet", 0.5, 3),  # further starts: first replicate seed; 0.1 already ran
        ("field", "wordnet", 0.01, 3), ("field", "wordnet", 0.01, 7),
        ("field", "random", 0.01, 5),
    ]
    assert plan[0].key == "lerp/wordnet/a0=0.1/alr=0.3/seed=3"


def test_plan_adds_the_adapter_controls_once_and_the_chosen_alpha_lr() -> None:
    plan = mt.plan_runs(("lerp", "field"), seeds=(0, 1), controls=("pca", "lowrank", "meandiff"),
                        control_seeds=(0, 1), alpha0={"lerp": 0.1, "field": 0.2},
                        alpha_starts={}, alpha_lr={"lerp": 0.03, "field": 0.1})
    keys = [p.key for p in plan]
    assert keys[-3:] == ["lowrank/none/seed=0", "lowrank/none/seed=1", "meandiff/none"]
    assert {p.alpha_lr for p in plan if p.kind == "lerp"} == {0.03}
    assert {p.alpha_lr for p in plan if p.kind == "field"} == {0.1}
    assert [p.control for p in plan[-3:]] == ["lowrank", "lowrank", "meandiff"]
    assert len(set(keys)) == len(keys)
    trial = mt.plan_alpha_lr(("lerp",), seed=0, alpha0={"lerp": 0.1}, grid=(0.03, 0.3))
    assert [t.key for t in trial] == ["lerp/wordnet/a0=0.1/alr=0.03/seed=0",
                                      "lerp/wordnet/a0=0.1/alr=0.3/seed=0"]
    assert trial[0] in plan  # the chosen rate's first run is the plan's own: trained once
    tuned = mt.plan_runs(("lerp",), seeds=(0,), controls=("lowrank",), control_seeds=(0, 1),
                         alpha0={"lerp": 0.1}, alpha_starts={}, lowrank_lr=1e-3)
    assert [p.key for p in tuned if p.kind == "lowrank"] == [
        "lowrank/none/lr=0.001/seed=0", "lowrank/none/lr=0.001/seed=1"]
    search = mt.plan_lowrank_lr(seed=0, grid=(3e-4, 1e-3))
    assert [t.key for t in search] == ["lowrank/none/lr=0.0003/seed=0",
                                       "lowrank/none/lr=0.001/seed=0"]
    assert search[1] in tuned and search[0] not in tuned


def test_the_best_rate_is_the_lowest_validation_loss_the_earlier_on_a_tie() -> None:
    curve = {0.1: [[0, 1.0], [10, 0.7]], 0.3: [[0, 1.0], [10, 0.6]], 1.0: [[0, 1.0], [10, 0.6]]}
    assert mc.best_rate([(r, {"val_curve": c}) for r, c in curve.items()]) == (
        0.3, [0.7, 0.6, 0.6])
    assert mc.best_rate([(0.1, None), (0.3, {"val_curve": [[0, 2.0]]})])[0] == 0.3


def test_several_alpha_lrs_need_a_validation_slice() -> None:
    with pytest.raises(ConfigError, match="--alpha-lr"):
        ModulateConfig(alpha_lr=(0.1, 0.3), val_synsets=0)
    with pytest.raises(ConfigError, match="--lowrank-lr"):
        ModulateConfig(alpha_lr=(0.1,), lowrank_lr=(1e-3, 3e-3), val_synsets=0)
    assert ModulateConfig(alpha_lr=(0.1,), controls=("pca",), val_synsets=0).lowrank_lr
    assert ModulateConfig(alpha_lr=(0.1,), lowrank_lr=(1e-3,), val_synsets=0).alpha_lr == (0.1,)


def test_cli_takes_a_seed_list_and_the_context_precision(tmp_path: Path) -> None:
    from hyperlens.config.commandline import build
    from hyperlens.experiments.modulate import COMMANDS

    cfg, ctx = build(COMMANDS[0], {"seeds": ["0", "1"], "n_boot": "50", "dtype": "float32",
                                   "device": "cpu", "seed": "4"})
    assert isinstance(cfg, ModulateConfig)
    assert cfg.seeds == (0, 1) and cfg.n_boot == 50
    assert ctx.resolve_dtype() == "float32" and ctx.seed == 4
    cfg, ctx = build(COMMANDS[0], {"fresh": True, "executor": "local"})
    assert isinstance(cfg, ModulateConfig) and cfg.fresh and ctx.executor == "local"
    assert "executor" in ModulateConfig.CONTEXT


def test_cell_fingerprint_ignores_what_only_selects_runs() -> None:
    ctx = RunContext(seed=0, device="cpu", dtype="float32")
    fp = modulate.cell_fingerprint(ModulateConfig(), ctx)
    for same in ({"seeds": (5,)}, {"controls": ()}, {"sweep": ()}, {"n_boot": 7},
                 {"fresh": True}, {"models": ("minilm",)}, {"alpha_starts": ()}):
        assert modulate.cell_fingerprint(ModulateConfig(**same), ctx) == fp, same
    for other in ({"steps": 3}, {"anchors": 100}, {"lr": 1e-2}, {"layers": (0,)}):
        assert modulate.cell_fingerprint(ModulateConfig(**other), ctx) != fp, other
    assert modulate.cell_fingerprint(ModulateConfig(), RunContext(seed=1, device="cpu",
                                                                  dtype="float32")) != fp


def test_lerp_runs_name_their_subspace_and_the_others_do_not() -> None:
    ctx = RunContext(seed=0, device="cpu", dtype="float32")
    fp = modulate.cell_fingerprint(ModulateConfig(), ctx)  # the subspace is lerp's alone:
    assert modulate.cell_fingerprint(ModulateConfig(lerp_subspace="all"), ctx) == fp
    assert ModulateConfig().lerp_subspace == "no-massive"
    lerp = mt.RunSpec("lerp", "wordnet", 0.1, 0, 0.03)
    assert lerp.key == "lerp/wordnet/a0=0.1/alr=0.03/seed=0"  # "all": the earlier runs' key
    assert replace(lerp, subspace="no-massive").key == \
        "lerp/wordnet/a0=0.1/alr=0.03/sub=no-massive/seed=0"
    field = mt.RunSpec("field", "wordnet", 0.2, 0, 0.1, subspace="no-massive")
    assert "sub=" not in field.key
    spec: Any = SimpleNamespace(lerp_subspace="no-massive")
    out = modulate._lerp_in(spec, [lerp, mt.RunSpec("field", "wordnet", 0.2, 0, 0.1)])
    assert [r.subspace for r in out] == ["no-massive", "all"]


def test_a_finished_run_without_its_files_names_them_and_the_fix(tmp_path: Path) -> None:
    s: Any = SimpleNamespace(name="org/model", handle=None)
    run = mt.RunSpec("lerp", "wordnet", 0.1, 2)
    path = mc.adapter_path(tmp_path, "org/model", run)
    stem = "org_model--lerp-wordnet-a0=0.1-alr=0.3-seed=2"
    assert path == tmp_path / "adapters" / f"{stem}.safetensors"
    with pytest.raises(DataError, match=r"adapter .*seed=2\.safetensors.* is missing.*--fresh"):
        mc.load_trained(s, tmp_path, run)
    with pytest.raises(DataError, match=r"reps\.safetensors.* are missing.*--fresh"):
        mc.run_record(s, tmp_path, run, {"top1": [], "top10": []})


def test_alpha_drift_measures_the_last_quarter() -> None:
    hist = [{"alpha.0": 0.1 + 0.01 * i, "alpha.3": 0.2} for i in range(8)]
    assert mt.alpha_drift(hist, [0, 3]) == pytest.approx(0.01 * (7 - 5))
    assert mt.alpha_drift([{"alpha.0": 0.1}] * 4, [0]) == 0.0
    assert np.isnan(mt.alpha_drift(hist[:1], [0, 3]))


def test_relational_table_pairs_conditions_and_detects_signal(graph: Any) -> None:
    rng = np.random.default_rng(0)
    n = 60
    ids = np.sort(rng.choice(np.flatnonzero(graph.pos == "n"), n, replace=False))
    Z = rng.normal(size=(n, 5))
    S = Z @ Z.T
    S = (S - S.min()) / (S.max() - S.min())
    good = torch.tensor(Z + 0.1 * rng.normal(size=Z.shape))
    noise = torch.tensor(rng.normal(size=(n, 5)))
    table, raw, probe = mt.relational_table(
        {"plain": noise, "good": good}, ids, base="plain", n_boot=50, seed=0,
        similarities={"path": S, "wup": S}, n_perm=99,
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
    v, lo, hi = mt.paired_diff(raw["path"]["good"][:, 0], raw["path"]["plain"][:, 0])
    assert v == pytest.approx(t["good"]["lift_pearson"]) and lo <= v <= hi
    assert raw["path"]["good"].shape == (51, 2)


class _Loaded(Exception):
    pass


def _fake_load(calls: list[dict[str, Any]], num_layers: int = 6) -> Any:
    def load(name: str, device: Any = "auto", dtype: Any = None) -> Any:
        calls.append({"name": name, "device": device, "dtype": dtype})
        return SimpleNamespace(module=object(), num_layers=num_layers, device=device,
                               hidden_size=8)

    return load


def test_models_are_loaded_on_the_recorded_device_and_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hyperlens.models as hm

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(hm, "load", _fake_load(calls))

    def stop(*a: Any, **k: Any) -> Any:
        raise _Loaded  # the loading is what this test is about

    monkeypatch.setattr(mt, "prepare", stop)
    ctx = RunContext(device="cpu", dtype="float32", out=tmp_path / "r")
    with pytest.raises(_Loaded):
        modulate.run(ModulateConfig(models=("minilm",)), ctx)
    assert len(calls) == 1
    assert str(calls[0]["device"]) == ctx.record()["device"] == "cpu"
    assert calls[0]["dtype"] == ctx.record()["dtype"] == "float32"


def test_too_many_synsets_are_clamped_with_a_warning_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import hyperlens.models as hm
    from hyperlens.report import Report

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(hm, "load", _fake_load(calls))
    monkeypatch.setattr(mt, "prepare", lambda name, h, wn, **kw: SimpleNamespace(
        train=[0] * 300, test=[0] * kw["n_test"], lerp_dims=None, handle=h))
    rep = Report("modulate", out_dir=tmp_path / "r")
    cfg = ModulateConfig(models=("minilm",), anchors=100_000_000, test=50)
    modulate._load_setup(rep, cfg, RunContext(device="cpu"), "minilm")
    err = capsys.readouterr().err
    assert "--anchors 100000000" in err and "using 300" in err and "--test" not in err
    assert rep.data["minilm:synsets"] == {"anchors": {"asked": 100_000_000, "used": 300},
                                          "test": {"asked": 50, "used": 50}}


def test_layers_beyond_an_unknown_model_are_refused_after_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hyperlens.models as hm
    from hyperlens.report import Report

    monkeypatch.setattr(hm, "load", _fake_load([], num_layers=4))
    monkeypatch.setattr(mt, "prepare", lambda *a, **k: pytest.fail("prepared past the check"))
    cfg = ModulateConfig(models=("some/model",), layers=(2, 5))
    with pytest.raises(ConfigError, match="--layers 5 out of range for some/model"):
        modulate._load_setup(Report("modulate", out_dir=tmp_path / "r"), cfg,
                             RunContext(device="cpu"), "some/model")


# ------------------------------------------------------------------ real MiniLM, miniature
_TINY = dict(models=("minilm",), modulators=("lerp",), seeds=(0,),
             controls=("shuffled", "lowrank", "meandiff"), control_seeds=(0,), anchors=70,
             test=12, steps=2, batch_size=4, alpha_starts=(), sweep=(0.1, 0.29154, 0.3),
             n_boot=20, n_coherence=4, val_synsets=8, eval_every=1, alpha_lr=(0.1, 0.3),
             lowrank_lr=(1e-3, 3e-3), ceiling=False)
#: the miniature run's cells: alpha's rate chosen between two WordNet runs, then the
#: shuffled control at the chosen rate and the two adapter controls
_KEYS = ["lerp/wordnet/a0=0.1/alr=0.1/sub=no-massive/seed=0",
         "lerp/wordnet/a0=0.1/alr=0.3/sub=no-massive/seed=0",
         "lerp/shuffled/a0=0.1/alr={}/sub=no-massive/seed=0", "lowrank/none/lr=0.001/seed=0",
         "lowrank/none/lr=0.003/seed=0", "meandiff/none"]


def _numbers(res: dict[str, Any]) -> Any:
    return [[t["rows"] for t in sec["tables"]] for sec in res["sections"]]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The miniature run under --seed 0 (a), again in its folder with --fresh (b), under
    --seed 1 (c), and once more in a's folder (d: every run read back)."""
    from hyperlens import models as hmodels

    pytest.importorskip("transformers")
    try:
        hmodels.load("minilm", device="cpu")
    except (ModelNotFoundError, DependencyError) as exc:
        pytest.skip(f"minilm is not available offline here: {exc}")
    out: dict[str, Any] = {}
    root = tmp_path_factory.mktemp("modulate")
    for label, seed, folder, fresh in (("a", 0, "a", False), ("b", 0, "a", True),
                                       ("c", 1, "c", False), ("d", 0, "a", False)):
        before = torch.random.get_rng_state()
        ctx = RunContext(seed=seed, device="cpu", dtype="float32", out=root / folder)
        rep = modulate.run(ModulateConfig(**_TINY, fresh=fresh), ctx)  # type: ignore[arg-type]
        assert torch.equal(before, torch.random.get_rng_state())  # no global reseeding
        out[label] = json.loads((rep.out_dir / "results.json").read_text())
    out["folder"] = root / "a"
    return out


@pytest.mark.integration
def test_miniature_run_on_minilm(tiny_runs: dict[str, Any]) -> None:
    res = tiny_runs["a"]
    titles = [sec["title"] for sec in res["sections"]]
    assert any("relational alignment" in t for t in titles)
    assert any("alpha sweep" in t for t in titles)
    assert res["config"]["context"]["dtype"] == "float32"
    assert res["config"]["seeds"] == [0]
    runs = res["data"]["minilm:runs"]
    chosen = res["data"]["minilm:alpha_lr"]["lerp"]["chosen"]
    assert chosen in (0.1, 0.3)
    keys = [k.format(f"{chosen:g}") for k in _KEYS]
    assert sorted(r["key"] for r in runs) == sorted(keys)
    # the chosen rate
    assert runs[0]["key"] == f"lerp/wordnet/a0=0.1/alr={chosen:g}/sub=no-massive/seed=0"
    assert all("seconds" not in r and "steps_per_s" not in r for r in runs)
    assert all(f"minilm:train:{k}" in res["timings"] for k in keys)
    gate = res["data"]["minilm:task_gate"]
    assert set(gate) == {"lerp/wordnet", "lerp/shuffled", "-/lowrank", "-/meandiff",
                         "lerp/lowrank", "lerp/meandiff"}
    md = next(r for r in runs if r["kind"] == "meandiff")
    assert md["scale"] in [c for c, _ in md["scale_curve"]] and md["final_alpha"] == []
    low = next(r for r in runs if r["kind"] == "lowrank")
    assert low["final_alpha"] == [] and low["steps_trained"] >= 1
    rates = res["data"]["minilm:alpha_lr"]["lowrank"]
    assert rates["grid"] == [1e-3, 3e-3] and rates["chosen"] in rates["grid"]
    assert {r["lr"] for r in runs if r["kind"] == "lowrank"} == {1e-3, 3e-3}
    assert res["data"]["minilm:synsets"]["anchors"] == {"asked": 70, "used": 70}


@pytest.mark.integration
def test_the_seed_reproduces_the_run_and_another_seed_changes_it(
    tiny_runs: dict[str, Any]
) -> None:
    a, b, c = (_numbers(tiny_runs[k]) for k in "abc")
    assert a == b
    assert a != c
    la, lc = (tiny_runs[k]["data"]["minilm:runs"][0]["train_loss"] for k in "ac")
    assert la != lc  # another split trains on other anchors
    cells = tiny_runs["b"]["data"]["cells"]
    assert (cells["resumed"], cells["computed"], cells["timed"]) == (0, 6, 6)
    assert tiny_runs["b"]["timings"][CELLS_TIMING] > 0  # every cell's time is kept with it


@pytest.mark.integration
def test_a_rerun_reads_the_trained_runs_back_with_the_same_numbers(
    tiny_runs: dict[str, Any]
) -> None:
    a, d = tiny_runs["a"], tiny_runs["d"]
    cells = d["data"]["cells"]
    assert (cells["resumed"], cells["computed"]) == (6, 0)
    # the cells' cost is read back with them: a resumed study still says what it took
    assert d["timings"][CELLS_TIMING] == tiny_runs["b"]["timings"][CELLS_TIMING]
    assert not any(k.startswith("minilm:train:") for k in d["timings"])  # nothing trained
    # coherence and the alpha sweep ran on the adapter loaded from OUT/adapters
    assert _numbers(d) == _numbers(a)
    assert d["data"]["minilm:runs"] == a["data"]["minilm:runs"]
    assert d["data"]["minilm:lerp:sweep"] == a["data"]["minilm:lerp:sweep"]


@pytest.mark.integration
def test_every_run_leaves_its_adapter_in_the_report_folder(tiny_runs: dict[str, Any]) -> None:
    from hyperlens.inject import load_adapter

    folder = tiny_runs["folder"]
    runs = tiny_runs["a"]["data"]["minilm:runs"]
    for r in runs:
        spec = mt.RunSpec(r["kind"], r["geometry"], r["alpha0"], r["seed"], r["alpha_lr"],
                          r["subspace"], r["lr"])
        ad: Any = load_adapter(mc.adapter_path(folder, "minilm", spec))
        assert ad.name == {"meandiff": "steer"}.get(r["kind"], r["kind"])
        if r["kind"] == "lerp":
            final = ad.alphas().detach().reshape(len(r["final_alpha"]), -1).mean(1).tolist()
            assert final == r["final_alpha"]
        assert mc.reps_path(folder, "minilm", spec).is_file()
    names = sorted(p.name for p in (folder / "adapters").iterdir())
    stems = [f"minilm--{r['key'].replace('/', '-')}" for r in runs]
    assert names == sorted([f"{s}.safetensors" for s in stems]
                           + [f"{s}.reps.safetensors" for s in stems])
