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
