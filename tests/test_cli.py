from __future__ import annotations

import pytest

from hyperlens import cli
from hyperlens.report import Report


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("tour", "models", "report"):
        assert name in out


def test_every_command_has_help(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0, name
    capsys.readouterr()


def test_report_command_rebuilds(tmp_path, capsys):
    rep = Report("demo", out_dir=tmp_path / "r")
    rep.section("s").plot("a.png", {"kind": "line", "series": [{"x": [0, 1], "y": [1, 0]}]})
    rep.save()
    (tmp_path / "r" / "a.png").unlink()
    assert cli.main(["report", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "a.png").exists()
    assert "index.html" in capsys.readouterr().out


def test_report_command_on_missing_folder_fails_cleanly(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_device_cuda_without_gpu_is_a_clean_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible; the no-GPU error path cannot be exercised here")
    rc = cli.main(["tour", "--device", "cuda", "--out", str(tmp_path / "t")])
    assert rc == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_config_file_fills_options_and_flags_override(tmp_path, monkeypatch):
    seen = {}

    def fake_run(config, ctx):
        seen.update(config.to_dict(), seed=ctx.seed)
        rep = Report("tour", out_dir=ctx.out)
        rep.save()
        return rep

    from hyperlens.experiments import tour

    monkeypatch.setattr(tour, "COMMANDS", (tour.COMMANDS[0].__class__(
        "tour", tour.HELP, tour.TourConfig, fake_run),))
    cfg = tmp_path / "c.toml"
    cfg.write_text('seed = 5\n[tour]\nn-texts = 123\nmodels = ["glove-50d"]\n')
    assert (
        cli.main(["tour", "--config", str(cfg), "--n-texts", "77", "--out", str(tmp_path / "o")])
        == 0
    )
    assert seen["seed"] == 5 and seen["n_texts"] == 77 and seen["models"] == ["glove-50d"]


def test_config_file_unknown_key(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[tour]\nbogus = 1\n")
    assert cli.main(["tour", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "'bogus' is not an option" in capsys.readouterr().err
