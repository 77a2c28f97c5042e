"""The hft command refuses bad options before loading any model."""

import pytest

from hyperlens.cli import build_parser
from hyperlens.errors import InputError
from hyperlens.experiments import hft


def _args(*argv):
    return build_parser().parse_args(["hft", *argv])


@pytest.mark.parametrize("argv", [
    ["train", "--top-k", "64", "--k1", "32"],
    ["train", "--train-tokens", "0"],
    ["train", "--hard", "-0.5"],
    ["train", "--hard", "nan"],
    ["train", "--dataset", "no/such/file.txt"],
    ["eval"],
    ["generate"],
    ["capture", "--heads"],
])
def test_bad_options_raise_early(argv, monkeypatch):
    import hyperlens.models as hm

    monkeypatch.setattr(hm, "load", lambda *a, **k: pytest.fail("model loaded before checks"))
    if argv[-1] == "--heads":
        with pytest.raises(SystemExit):
            _args(*argv)
        return
    with pytest.raises(InputError):
        hft.main(_args(*argv))


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
