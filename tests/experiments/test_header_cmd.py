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
