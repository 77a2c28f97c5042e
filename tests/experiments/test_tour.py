from __future__ import annotations

import json

import pytest

from hyperlens import cli
from hyperlens.models import list_models


@pytest.fixture(autouse=True)
def _loud_again(monkeypatch):
    """A tour run quietens other packages for the whole process; undo it after each test."""
    from hyperlens.quiet import quiet_third_party

    for var in ("TRANSFORMERS_VERBOSITY", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(var, raising=False)
    yield
    quiet_third_party(verbose=True)


def _available(name: str) -> bool:
    return any(r["name"] == name and r["available"] for r in list_models())


@pytest.mark.integration
def test_tour_runs_end_to_end_on_real_models(tmp_path, capsys):
    for name in ("minilm", "glove-50d"):
        if not _available(name):
            pytest.skip(f"model package for {name!r} is not installed")
    out = tmp_path / "tour"
    rc = cli.main(["tour", "--models", "minilm", "glove-50d", "--n-texts", "300", "--sections",
                   "--out", str(out), "--no-progress", "--seed", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "index.html" in printed and "best layer / held-out accuracy: minilm" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["seed"] == 3 and results["config"]["context"]["seed"] == 3
    assert results["config"]["n_texts"] == 300
    geo = {g["model"]: g for g in results["data"]["geometry"]}
    assert geo["minilm"]["dim"] == 384 and geo["glove-50d"]["dim"] == 50
    assert 1.0 < geo["minilm"]["participation_ratio"] < 384
    # minilm separates fresh from rotten reviews better than chance on held-out texts
    assert geo["minilm"]["best_accuracy"] > results["data"]["majority"]
    rows = [t for s in results["sections"] for t in s["tables"] if t["title"] == "Every layer"][0][
        "rows"
    ]
    assert len([r for r in rows if r[0] == "minilm"]) == 7  # embedding output + 6 layers
    for png in ("tour_probes.png", "tour_cosines.png"):
        assert (out / png).stat().st_size > 1000
    assert "Linear probes per layer" in (out / "index.html").read_text()


# ----------------------------------------------------------------------------- section plan
KINDS = {"minilm": "encoder", "smollm2": "decoder", "gemma3": "decoder", "glove-50d": "static"}


def test_default_models_run_every_section_with_the_models_it_always_had():
    from hyperlens.experiments.tour import EXTRA_SECTIONS, plan_sections

    plan = plan_sections(["minilm", "smollm2"], None, KINDS)
    assert list(plan) == [n for n, _ in EXTRA_SECTIONS]
    assert plan["terrain"] == {"models": ("minilm", "smollm2")}
    assert plan["weights"] == {"model": "minilm"}
    assert plan["transfer"] == {"models": ("minilm", "smollm2")}
    assert plan["relational"] == {"models": ("minilm",)}
    assert plan["modulate"] == plan["header"] == plan["hft"] == {}


def test_sections_only_use_the_given_models_and_say_why_they_skip():
    from hyperlens.experiments.tour import plan_sections, skipped_sections

    plan = plan_sections(["glove-50d"], None, KINDS)
    assert plan["terrain"] == {"models": ("glove-50d",)}
    assert plan["relational"] == {"models": ("glove-50d",)}
    why = dict(skipped_sections(plan))
    assert set(why) == {"weights", "transfer", "modulate", "header", "hft"}
    assert why["hft"] == "needs smollm2 in --models"
    assert why["header"] == "needs smollm2 and minilm in --models"
    assert why["transfer"] == "needs two models in --models (got 1)"
    assert "minilm, smollm2, gemma3 or a model folder" in why["weights"]


def test_weights_reads_the_first_transformer_checkpoint(tmp_path):
    from hyperlens.experiments.tour import plan_sections

    assert plan_sections(["glove-50d", "SmolLM2"], ["weights"], KINDS) == {
        "weights": {"model": "SmolLM2"}}
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert plan_sections(["glove-50d", str(folder)], ["weights"], KINDS)["weights"] == {
        "model": str(folder)}
    assert isinstance(plan_sections(["org/not-here"], ["weights"], KINDS)["weights"], str)
    assert plan_sections(["minilm"], ["none"], KINDS) == {}


# ----------------------------------------------------------------------------- headlines
def _report_like_the_tour(tmp_path):
    """A report with sections shaped like the tour's (same titles, tables and metrics)."""
    from hyperlens.report import Report

    rep = Report("tour", out_dir=tmp_path / "r")
    rep.section("Sentence-space geometry").table(
        "Geometry of the last layer", ["model", "kind", "PR"],
        [["minilm", "encoder", 24.2], ["glove-50d", "static", 9.5]])
    rep.section("Linear probes per layer").table(
        "Best layer per model", ["model", "best layer", "accuracy", "last-layer accuracy"],
        [["minilm", 5, 0.8123, 0.8]])
    rep.section("Embedding terrain").metrics(
        {"minilm.pr_over_d": 0.3, "minilm.pentachoron_cv": 0.21,
         "minilm.pentachoron_cv_null": 0.19, "minilm.cosine_mean": 0.1})
    rep.section("minilm: overview").table(
        "Model", ["field", "value"], [["parameters", 22_713_216], ["matrices analysed", 36]])
    rep.section("minilm: spectra per role").table(
        "Per role", ["role", "stable rank"], [["attn.q", 12.0], ["mlp.up", 80.5], ["emb", 3.25]])
    rep.section("minilm: sparsity").table(
        "Share of |w| < t", ["role", "entries", "< 1e-06", "< 0.01"],
        [["attn.q", 10, 0.0, 0.5], ["all", 100, 0.001, 0.25]])
    rep.section("minilm: QK geometry per layer and head").table(
        "Per layer (mean over heads)", ["layer", "pos mass"], [[0, 0.5], [1, 0.7]])
    rep.section("minilm: MLP neurons").metrics(
        {"tour-minilm.mlp_dead": 0, "tour-minilm.mlp_weak": 12, "tour-minilm.mlp_neurons": 9216})
    rep.section("minilm: cross-layer similarity").table(
        "Per role", ["role", "adjacent mean"], [["attn.q", 0.01], ["mlp.up", 0.03]])
    rep.section("minilm: norm layers").table(
        "Norm vectors", ["name", "param", "mean"], [["ln", "weight", 0.9], ["ln", "bias", 0.0]])
    rep.section("minilm: every matrix").table(
        "Matrices", ["key", "stable rank"], [["q", 2.0], ["k", 4.0], ["v", 9.0]])
    rep.section("Cross-architecture transfer").table(
        "Transfer at a glance", ["pair", "aligner", "acc", "efficiency"],
        [["a -> b", "procrustes", 0.7, 0.9], ["a -> b", "ridge", 0.75, 0.95],
         ["b -> a", "ridge", 0.6, 0.8]])
    rep.section("WordNet relational alignment: minilm").table(
        "Correlation of cosine with WordNet similarity",
        ["synsets", "n", "measure", "representation", "Spearman [95% CI]"],
        [["nouns", 300, "path", "contextual (definition)", "0.210 [0.180, 0.240]"]])
    rep.section("Residual modulator (lerp) on held-out WordNet synsets").metrics(
        {"wordnet_minus_shuffled": {"value": 0.012, "lo": -0.003, "hi": 0.027}})
    rep.section("Semantic header (stage A)").table(
        "Stage A", ["arm", "accuracy", "95 % CI"],
        [["A: logistic on LM state", "0.700", "[0.610, 0.790]"],
         ["A: MiniLM float -> logistic", "0.760", "[0.680, 0.840]"]])
    rep.section("HyperField transformer (small)").table(
        "Held-out", ["model", "ppl", "KL", "agree"],
        [["uniform", 49152.0, 5.0, 0.0], ["teacher", 20.5, 0.0, 1.0],
         ["A: HyperField", 61.25, 1.1, 0.4]])
    rep.section("Something new").table("Counts", ["what", "n"], [["rows", 3]])
    return rep


def test_one_headline_row_per_section_then_the_skipped_ones(tmp_path):
    from hyperlens.experiments.tour import headline_rows

    rep = _report_like_the_tour(tmp_path)
    rows = headline_rows(rep, [("hft", "needs smollm2 in --models")])
    assert [r[0] for r in rows] == [s.title for s in rep.sections] + ["hft"]
    got = dict(rows)
    assert got["Sentence-space geometry"] == "participation ratio: minilm 24.2, glove-50d 9.5"
    assert got["Linear probes per layer"] == "best layer / held-out accuracy: minilm 5 / 0.8123"
    assert got["Embedding terrain"] == "pentachoron CV (Gaussian null): minilm 0.21 (0.19)"
    assert got["minilm: overview"] == "parameters / matrices analysed: 22.7 M / 36"
    assert got["minilm: spectra per role"] == (
        "stable rank, lowest to highest role: 3.25 (emb) to 80.5 (mlp.up)")
    assert got["minilm: sparsity"] == "share of all parameters with |w| < 1e-06: 0.001"
    assert got["minilm: QK geometry per layer and head"].endswith(": 0.6")
    assert got["minilm: MLP neurons"] == "dead / weak MLP neurons: 0 / 12 of 9216"
    assert got["minilm: cross-layer similarity"].endswith(": 0.02")
    assert got["minilm: norm layers"] == "mean learned norm scale: 0.9"
    assert got["minilm: every matrix"] == "matrices / median stable rank: 3 / 4"
    assert got["Cross-architecture transfer"] == (
        "accuracy (efficiency), best aligner: a -> b 0.75 (0.95, ridge); b -> a 0.6 (0.8, ridge)")
    assert got["WordNet relational alignment: minilm"] == (
        "Spearman with path similarity (nouns): 0.210 [0.180, 0.240]")
    assert got["Residual modulator (lerp) on held-out WordNet synsets"] == (
        "Pearson, WordNet minus shuffled geometry [95% CI]: +0.0120 [-0.0030, +0.0270]")
    assert got["Semantic header (stage A)"] == (
        "best arm, accuracy [95% CI]: A: MiniLM float -> logistic 0.760 [0.680, 0.840]")
    assert got["HyperField transformer (small)"] == (
        "held-out perplexity: A: HyperField 61.25 (teacher 20.5)")
    assert got["Something new"] == "Counts: rows, 3"  # no reader: its first table row
    assert got["hft"] == "skipped: needs smollm2 in --models"


def test_a_section_whose_table_changed_shape_still_gets_its_row(tmp_path):
    from hyperlens.experiments.tour import headline_rows
    from hyperlens.report import Report

    rep = Report("tour", out_dir=tmp_path / "r")
    rep.section("Linear probes per layer").table("Every layer", ["model", "layer"], [["m", 0]])
    rep.section("Embedding terrain")
    assert headline_rows(rep) == [["Linear probes per layer", "Every layer: m, 0"],
                                  ["Embedding terrain", "figures: none recorded"]]


# ----------------------------------------------------------------------------- a quiet run
@pytest.fixture
def tiny_model_folder(tmp_path, tiny_bert):
    """A tiny BERT saved with a word-level tokenizer over common English words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ("the a and of to is it in that film movie this but as with for its an be "
             "good bad not great funny story one more than all like")
    vocab = {"[PAD]": 0, "[UNK]": 1}
    vocab.update({w: i + 2 for i, w in enumerate(words.split())})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path / "tiny-bert"
    tiny_bert.save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                            model_max_length=60).save_pretrained(folder)
    return folder


def test_tour_prints_its_own_summary_and_skips_but_no_third_party_bars(
        tiny_model_folder, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "tour"
    rc = cli.main(["tour", "--models", str(tiny_model_folder), "--n-texts", "80",
                   "--sections", "transfer", "modulate", "hft", "--out", str(out),
                   "--no-progress"])
    assert rc == 0
    printed = capfd.readouterr()
    assert "Loading weights" not in printed.err
    assert "hyperlens tour: skipping hft: needs smollm2 in --models" in printed.err
    assert "hyperlens tour: skipping transfer: needs two models in --models (got 1)" in printed.err
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert [r[0] for r in summary] == ["Sentence-space geometry", "Linear probes per layer",
                                       "transfer", "modulate", "hft"]
    assert summary[1][1].startswith(f"best layer / held-out accuracy: {tiny_model_folder} ")
    assert summary[3][1] == "skipped: needs minilm in --models"
    assert summary[4][1] == "skipped: needs smollm2 in --models"
    for row in summary:
        assert row[0] in printed.out and row[1] in printed.out
