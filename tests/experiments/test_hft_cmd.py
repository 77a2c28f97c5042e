"""The hft command refuses bad options before loading any model."""

import json

import pytest

from hyperlens.cli import build_parser
from hyperlens.errors import InputError
from hyperlens.experiments import hft


def _args(*argv):
    return build_parser().parse_args(["hft", *argv])


@pytest.fixture
def no_model(monkeypatch):
    import hyperlens.models as hm

    monkeypatch.setattr(hm, "load", lambda *a, **k: pytest.fail("model loaded before checks"))


@pytest.mark.parametrize("argv", [
    ["train", "--top-k", "64", "--k1", "32"],
    ["train", "--hard", "-0.5"],
    ["train", "--hard", "nan"],
    ["train", "--dataset", "no/such/file.txt"],
    ["eval"],
    ["generate"],
])
def test_bad_options_raise_early(argv, no_model):
    with pytest.raises(InputError):
        hft.main(_args(*argv))


@pytest.mark.parametrize("argv, said", [
    (["capture", "--heads"], "expected at least one argument"),
    (["capture", "--heads", "-1"], "--heads: must be an integer >= 0, got '-1'"),
    (["capture", "--layer", "-2"], "--layer: must be an integer >= 0"),
    (["train", "--train-tokens", "0"], "--train-tokens: must be an integer >= 1"),
    (["train", "--boot", "0"], "--boot: must be an integer >= 1, got '0'"),
    (["train", "--stage1-epochs", "0"], "--stage1-epochs: must be an integer >= 1"),
    (["train", "--lr", "0"], "--lr: must be a number > 0"),
    (["generate", "--n-tokens", "0"], "--n-tokens: must be an integer >= 1, got '0'"),
    (["generate", "--n-tokens", "-3"], "--n-tokens: must be an integer >= 1, got '-3'"),
])
def test_bad_values_are_refused_while_options_are_read(argv, said, capsys):
    with pytest.raises(SystemExit) as exc:
        _args(*argv)
    assert exc.value.code == 2
    assert said in capsys.readouterr().err


def test_cli_refuses_boot_zero_in_one_line(capsys, no_model):
    from hyperlens.cli import main

    with pytest.raises(SystemExit):
        main(["hft", "train", "--boot", "0"])
    assert "--boot: must be an integer >= 1, got '0'" in capsys.readouterr().err


def test_help_explains_the_token_counts(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["hft", "capture", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "issue default" not in out
    assert "tokens the teacher predicts in the training texts" in out


def test_capture_dir_of_another_capture_is_refused_before_the_teacher(tmp_path, no_model):
    """`hft train --capture-dir C --dataset agnews --train-tokens 50000` on a folder that
    holds a capture of other settings once reported numbers of that other capture."""
    cap = tmp_path / "C"
    cap.mkdir()
    made = hft._capture_cfg(_args("capture", "--dataset", "sst2"))
    (cap / "manifest.json").write_text(json.dumps(
        {"config": made.as_manifest(), "shards": {"train": [], "heldout": []},
         "complete": True}))
    args = _args("train", "--capture-dir", str(cap), "--dataset", "agnews",
                 "--train-tokens", "50000")
    with pytest.raises(InputError, match=r"dataset \(--dataset\): 'sst2' in the capture, "
                                         r"'agnews' asked; train_tokens \(--train-tokens\): "
                                         r"32000 in the capture, 50000 asked\. Pass another "
                                         r"--capture-dir"):
        hft.main(args)
    ok = _args("train", "--capture-dir", str(cap), "--dataset", "sst2")
    hft.validate(ok)  # the same options pass


def test_capture_dir_naming_a_file_is_refused(tmp_path, no_model):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(InputError, match="is an existing file"):
        hft.main(_args("capture", "--capture-dir", str(f)))


def test_empty_text_file_is_refused_before_the_teacher(tmp_path, no_model):
    f = tmp_path / "empty.txt"
    f.write_text("\n  \n")
    args = _args("capture", "--dataset", str(f), "--capture-dir", str(tmp_path / "c"),
                 "--out", str(tmp_path / "out"))
    args.progress = False
    with pytest.raises(InputError, match=r"--dataset .*empty\.txt holds no text"):
        hft.main(args)
    assert not (tmp_path / "c").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("action", ["eval", "generate"])
def test_student_folder_problems_are_refused_before_the_teacher(tmp_path, action, no_model):
    with pytest.raises(InputError, match="holds no saved student.*--out folder of"):
        hft.main(_args(action, "--student", str(tmp_path)))
    bad = tmp_path / "student"
    bad.mkdir()
    (bad / "student.json").write_text("{oops")
    with pytest.raises(InputError, match="student.json is not valid JSON"):
        hft.main(_args(action, "--student", str(tmp_path)))  # the --out folder is accepted


def test_registered_in_cli():
    from hyperlens.cli import COMMAND_MODULES

    assert "hyperlens.experiments.hft" in COMMAND_MODULES


def test_hard_reaches_the_student_config():
    from hyperlens.hft.train import StudentConfig

    assert _args("train").hard == StudentConfig().hard
    assert _args("train", "--hard", "1.0").hard == 1.0


def test_cli_defaults_are_the_student_config_defaults():
    from hyperlens.hft.train import StudentConfig

    a, sc = _args("train"), StudentConfig()
    assert (a.k1, a.k2, a.top_k, a.top_k, a.mix_heads, a.mix_heads) == (
        sc.k1, sc.k2, sc.top1, sc.top2, sc.heads1, sc.heads2)
    assert (a.lr, a.batch_size, a.stage1_epochs, a.stage2_epochs, a.e2e_epochs) == (
        sc.lr, sc.batch_size, sc.stage1_epochs, sc.stage2_epochs, sc.e2e_epochs)


def test_mixture_row_is_the_equal_weight_linear_mixture():
    import torch

    g = torch.Generator().manual_seed(0)
    la = torch.log_softmax(torch.randn(5, 11, generator=g), -1)
    lb = torch.log_softmax(torch.randn(5, 11, generator=g), -1)
    got = hft._mix_fn(lambda r: la[r], lambda r: lb[r])(slice(1, 4))
    want = ((la.exp() + lb.exp()) / 2).log()[1:4]
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got.exp().sum(-1), torch.ones(3))


def test_tour_section_passes_every_train_option(monkeypatch, tmp_path):
    """The tour builds its namespace from the CLI parser, so an option added to the CLI
    reaches run_train from the tour too (a hand-written namespace once lacked --hard)."""
    from hyperlens.report import Report

    seen = {}

    def fake_run_train(ns, out):
        seen.update(vars(ns))
        raise RuntimeError("stop here")

    monkeypatch.setattr(hft, "run_train", fake_run_train)
    with pytest.raises(RuntimeError, match="stop here"):
        hft.tour_section(Report("tour", {}, out_dir=tmp_path), seed=3)
    full = vars(_args("train"))
    missing = {k for k in full if k not in seen
               and k not in ("command", "device", "config", "executor", "ray_address", "_module")}
    assert not missing
    assert seen["hard"] == full["hard"] and seen["seed"] == 3 and seen["train_tokens"] == 4000
