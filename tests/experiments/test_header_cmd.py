"""``hyperlens header`` on the real offline models, and its checks before heavy work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperlens.errors import ConfigError, DependencyError, ModelNotFoundError


def test_command_is_registered() -> None:
    from hyperlens.cli import COMMAND_MODULES, build_parser

    assert "hyperlens.experiments.header" in COMMAND_MODULES
    args = build_parser().parse_args(["header", "--k", "2", "--arms", "hdc", "prompt"])
    assert args.k == 2 and args.arms == ["hdc", "prompt"]


def test_bad_options_fail_before_any_model_loads(tmp_path: Path) -> None:
    from hyperlens.experiments.header import HeaderRunConfig, run_header

    with pytest.raises(ConfigError, match="--k"):
        run_header(HeaderRunConfig(k=0), tmp_path / "a")
    with pytest.raises(ConfigError, match="--insert-layer 0"):
        run_header(HeaderRunConfig(placement="prefix"), tmp_path / "b")
    with pytest.raises(ConfigError, match="--verbalizer"):
        run_header(HeaderRunConfig(dataset="my.csv"), tmp_path / "c")


@pytest.mark.integration
@pytest.mark.slow
def test_header_both_stages_on_rotten_tomatoes(tmp_path: Path) -> None:
    from hyperlens import models as hmodels
    from hyperlens.experiments.header import HeaderRunConfig, run_header

    for name in ("minilm", "smollm2"):
        try:
            hmodels.load(name, device="cpu")
        except (ModelNotFoundError, DependencyError) as exc:
            pytest.skip(f"model {name!r} is not available offline here: {exc}")
    cfg = HeaderRunConfig(dataset="rotten-tomatoes", n_train=96, n_val=48, n_eval=96,
                          seeds=[0], arms=["hdc", "prompt"], steps=4, batch_size=16,
                          eval_every=2, hdc_dim=2048, insert_layer=24)
    res = json.loads((run_header(cfg, tmp_path / "run") / "results.json").read_text())
    arms = res["data"]["arms"]
    for arm in ("baseline", "logistic", "minilm", "fusion", "zeroshot", "zeroshot-cal", "hdc",
                "prompt", "hdc-ablate"):
        acc = arms[arm]["acc"]
        assert 0.0 <= acc["lo"] <= acc["value"] <= acc["hi"] <= 1.0, arm
    assert arms["minilm"]["acc"]["value"] > 0.6  # MiniLM separates fresh from rotten
    assert "verdict" in res["data"] and "HDC header vs baseline" in res["data"]["verdict"]
    assert (tmp_path / "run" / "header-hdc-seed0.safetensors").exists()


def _no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperlens import models as hmodels

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("a model was loaded before the checks")

    monkeypatch.setattr(hmodels, "load", refuse)


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "minilm"], "encoder model without input embeddings"),
    (["--model", "glove-50d"], "static model without input embeddings"),
    (["--insert-layer", "30"], "past the last block of smollm2"),
    (["--lr-grid", "0.01", "20"], "learning rates must be numbers in"),
    (["--placement", "prefix"], "--insert-layer 0"),
    (["--dataset", "agnews", "--verbalizer", "yes", "no"], "one each"),
])
def test_cli_refuses_bad_input_before_any_model(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 shared_data: Path, argv: list[str],
                                                 message: str) -> None:
    from hyperlens import cli

    _no_model_loads(monkeypatch)
    rc = cli.main(["header", "--data-dir", str(shared_data), "--out", str(tmp_path / "o"),
                   *argv])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.json").exists()


def test_cli_refuses_labels_that_are_not_the_verbalisers(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from hyperlens import cli

    _no_model_loads(monkeypatch)
    data = tmp_path / "mood.csv"
    data.write_text("text,label\n" + "".join(f"text {i},{'happy' if i % 2 else 'sad'}\n"
                                             for i in range(40)), "utf-8")
    rc = cli.main(["header", "--dataset", str(data), "--verbalizer", "a", "b", "c",
                   "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--verbalizer has 3 words but the dataset has 2 classes" in err


@pytest.mark.parametrize("argv", [["--k", "0"], ["--k", "-2"], ["--steps", "0"],
                                  ["--sparsity", "1.5"]])
def test_cli_option_types_refuse_bad_numbers(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             argv: list[str]) -> None:
    from hyperlens import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["header", "--out", str(tmp_path / "o"), *argv])
    assert exc.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_threads_auto_counts_only_normal_priority_work() -> None:
    import torch

    from hyperlens.experiments.header_core import competing_runnable, set_threads

    before = torch.get_num_threads()
    try:
        busy = competing_runnable()
        assert busy is None or busy >= 0
        n = set_threads("auto")
        assert 1 <= n <= max(1, before)
        assert set_threads("1") == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
