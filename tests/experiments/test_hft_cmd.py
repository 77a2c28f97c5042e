"""The hft commands refuse bad options before loading any model; small pieces of the
training driver."""

import numpy as np
import pytest

from hyperlens import cli
from hyperlens.config import RunContext
from hyperlens.experiments import hft


@pytest.mark.parametrize("argv,needle", [
    (["train", "--top-k", "64", "--k1", "32"], "--mix-heads"),
    (["train", "--train-tokens", "0"], "--train-tokens"),
    (["train", "--hard", "-0.5"], "--hard"),
    (["train", "--hard", "nan"], "--hard"),
    (["train", "--dataset", "no/such/file.txt"], "--dataset"),
    (["train", "--heads", "-1"], "--heads"),
    (["train", "--seeds", "0", "0"], "--seeds"),
    (["train", "--boot", "0"], "--n-boot"),
    (["eval"], "--student"),
    (["generate"], "--student"),
    (["generate", "--student", "s", "--n-tokens", "0"], "--n-tokens"),
    (["generate", "--student", "s", "--n-tokens", "-3"], "--n-tokens"),
    (["train", "--stage1-epochs", "0"], "--stage1-epochs"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--min-improvement", "-0.01"], "--min-improvement"),
    (["train", "--min-improvement", "0.6"], "--min-improvement"),
    (["capture", "--layer", "-2"], "--layer"),
])
def test_bad_options_raise_early(argv, needle, monkeypatch, capsys, tmp_path):
    import hyperlens.models as hm

    monkeypatch.setattr(hm, "load", lambda *a, **k: pytest.fail("model loaded before checks"))
    assert cli.main(["hft", *argv, "--out", str(tmp_path / "r")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_capture_dir_naming_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert cli.main(["hft", "capture", "--capture-dir", str(f), "--out", str(tmp_path / "r")]) == 2
    assert "is an existing file" in capsys.readouterr().err


def test_registered_in_cli():
    from hyperlens.cli import COMMAND_MODULES
    from hyperlens.experiments import hft_saved

    assert {"hyperlens.experiments.hft", "hyperlens.experiments.hft_saved"} <= set(
        COMMAND_MODULES)
    assert [c.name for c in hft.COMMANDS + hft_saved.COMMANDS] == [
        "hft capture", "hft train", "hft eval", "hft generate"]


def test_cli_defaults_are_the_student_config_defaults():
    from hyperlens.hft.train import StudentConfig

    a, sc = hft.HftTrainConfig(), StudentConfig()
    assert (a.k1, a.k2, a.top_k, a.top_k, a.mix_heads, a.mix_heads, a.hard) == (
        sc.k1, sc.k2, sc.top1, sc.top2, sc.heads1, sc.heads2, sc.hard)
    assert (a.lr, a.batch_size, a.stage1_epochs, a.stage2_epochs, a.e2e_epochs) == (
        sc.lr, sc.batch_size, sc.stage1_epochs, sc.stage2_epochs, sc.e2e_epochs)


def test_mixture_row_is_the_equal_weight_linear_mixture():
    import torch

    g = torch.Generator().manual_seed(0)
    la = torch.log_softmax(torch.randn(5, 11, generator=g), -1)
    lb = torch.log_softmax(torch.randn(5, 11, generator=g), -1)
    from hyperlens.hft.evaluate import mix_fn

    got = mix_fn(lambda r: la[r], lambda r: lb[r])(slice(1, 4))
    want = ((la.exp() + lb.exp()) / 2).log()[1:4]
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got.exp().sum(-1), torch.ones(3))


def test_tour_section_runs_the_train_config(monkeypatch, tmp_path):
    """The tour builds a HyperFieldTrainConfig, so every option keeps the CLI's default
    unless the tour sets it, and the seed reaches the run."""
    from hyperlens.report import Report

    seen = {}

    def fake_run_train(cfg, ctx):
        seen.update(cfg.to_dict(), seed=ctx.seed)
        raise RuntimeError("stop here")

    monkeypatch.setattr(hft, "run_train", fake_run_train)
    with pytest.raises(RuntimeError, match="stop here"):
        hft.tour_section(Report("tour", {}, out_dir=tmp_path), seed=3)
    assert seen["hard"] == hft.HftTrainConfig().hard and seen["seed"] == 3
    assert seen["train_tokens"] == 4000 and seen["seeds"] == [3]


@pytest.fixture
def no_model(monkeypatch):
    import hyperlens.models as hm

    monkeypatch.setattr(hm, "load", lambda *a, **k: pytest.fail("model loaded before checks"))


def _refused(argv, tmp_path, capsys) -> str:
    assert cli.main(["hft", *argv, "--no-progress", "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
    return " ".join(capsys.readouterr().err.split())


def test_help_explains_the_token_counts(capsys):
    with pytest.raises(SystemExit):
        cli.main(["hft", "capture", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "issue default" not in out
    assert "tokens the teacher predicts in the training texts" in out


def test_capture_dir_of_another_capture_is_refused_before_the_teacher(tmp_path, capsys,
                                                                      no_model):
    """`hft train --capture-dir C --dataset agnews --train-tokens 50000` on a folder that
    holds a capture of other settings once reported numbers of that other capture."""
    import json

    cap = tmp_path / "C"
    cap.mkdir()
    made = hft._capture_cfg(hft.CaptureOptions(dataset="sst2"), RunContext())
    (cap / "manifest.json").write_text(json.dumps(
        {"config": made.as_manifest(), "shards": {"train": [], "heldout": []},
         "complete": True}))
    err = _refused(["train", "--capture-dir", str(cap), "--dataset", "agnews",
                    "--train-tokens", "50000"], tmp_path, capsys)
    assert ("dataset (--dataset): 'sst2' in the capture, 'agnews' asked; train_tokens "
            "(--train-tokens): 32000 in the capture, 50000 asked. Pass another --capture-dir"
            in err)


def test_empty_text_file_is_refused_before_the_teacher(tmp_path, capsys, no_model):
    f = tmp_path / "empty.txt"
    f.write_text("\n  \n")
    err = _refused(["capture", "--dataset", str(f), "--capture-dir", str(tmp_path / "c")],
                   tmp_path, capsys)
    assert "empty.txt holds no text" in err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("action", ["eval", "generate"])
def test_student_folder_problems_are_refused_before_the_teacher(tmp_path, action, capsys,
                                                                no_model):
    err = _refused([action, "--student", str(tmp_path)], tmp_path, capsys)
    assert "holds no saved student" in err and "--out folder of" in err
    bad = tmp_path / "student"
    bad.mkdir()
    (bad / "student.json").write_text("{oops")
    err = _refused([action, "--student", str(tmp_path)], tmp_path, capsys)
    assert "student.json is not valid JSON" in err  # the --out folder is accepted


def test_named_corpora_join_with_plus():
    from hyperlens.errors import ConfigError
    from hyperlens.experiments.hft import CaptureOptions, _texts

    one = _texts(CaptureOptions(dataset="rotten-tomatoes"))
    two = _texts(CaptureOptions(dataset="sst2"))
    both = _texts(CaptureOptions(dataset="rotten-tomatoes+sst2"))
    assert len(both) == len(one) + len(two) and both[: len(one)] == one
    with pytest.raises(ConfigError, match="only named corpora"):
        CaptureOptions(dataset="sst2+notes.txt")


def test_baseline_rows_round_trip_and_a_broken_file_is_scored_again(tmp_path):
    from hyperlens.experiments.hft import _read_rows, _write_rows

    rows = {"teacher, context cut to W": {"nll": np.arange(5.0), "agree": np.ones(5)},
            "KN-5": {"nll": np.linspace(0, 1, 5)}}
    path = tmp_path / "cells" / "baselines-x.npz"
    _write_rows(path, rows)
    back = _read_rows(path, 5)
    assert back is not None and set(back) == set(rows)
    for m, r in rows.items():
        assert set(back[m]) == set(r)
        for k, v in r.items():
            np.testing.assert_array_equal(back[m][k], v)
    assert _read_rows(path, 6) is None  # rows of another held-out set
    path.write_bytes(path.read_bytes()[:40])  # cut short
    assert _read_rows(path, 5) is None
    assert _read_rows(tmp_path / "missing.npz", 5) is None
