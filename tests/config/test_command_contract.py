"""The command contract: configs checked when built, options and TOML keys generated."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from hyperlens.config import (
    Command,
    Config,
    RunContext,
    above,
    at_least,
    derive_seed,
    option,
    start_report,
)
from hyperlens.config.commandline import add_options, build
from hyperlens.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Demo(Config):
    CONTEXT = frozenset({"seed", "device", "executor"})

    model: str = option(help="the model")
    n_boot: int = option(1000, help="resamples", check=at_least(1), aliases=("--boot",))
    lr: float = option(1e-3, help="learning rate", check=above(0))
    seeds: tuple[int, ...] = option((0, 1, 2), help="replicate seeds", check=at_least(0))
    arm: Literal["a", "b"] = option("a", help="arm")
    fresh: bool = option(False, help="start over")
    data_dir: Path | None = option(None, help="data folder")

    def check(self) -> None:
        if self.arm == "b" and self.fresh:
            raise ConfigError("--arm b cannot be combined with --fresh; drop one.")


def _run(config: Demo, ctx: RunContext):  # pragma: no cover - never called
    raise AssertionError


CMD = Command("demo", "a demo", Demo, _run)


def _parse(argv: list[str]) -> dict:
    p = argparse.ArgumentParser()
    add_options(p, Demo)
    return vars(p.parse_args(argv))


def test_values_are_converted_and_checked():
    cfg = Demo(model="m", n_boot="20", lr="0.5", seeds=["4", 5], arm="b", data_dir="x")
    assert (cfg.n_boot, cfg.lr, cfg.seeds, cfg.data_dir) == (20, 0.5, (4, 5), Path("x"))
    for kwargs, text in [
        ({"n_boot": 0}, "--n-boot must be an integer >= 1, got 0"),
        ({"n_boot": True}, "--n-boot must be an integer"),
        ({"n_boot": 2.5}, "--n-boot must be an integer"),
        ({"lr": "nan"}, "--lr must be a number > 0"),
        ({"lr": -1}, "--lr must be a number > 0"),
        ({"seeds": [1, -2]}, "--seeds must be a list of integers >= 0; -2 is not"),
        ({"seeds": []}, "--seeds needs at least 1"),
        ({"arm": "c"}, "--arm must be one of a, b, got 'c'"),
        ({"n_boot": [3, 4]}, "--n-boot takes one value"),
        ({"arm": "b", "fresh": True}, "--arm b cannot be combined"),
    ]:
        with pytest.raises(ConfigError, match=text.replace("(", r"\(").replace("+", r"\+")):
            Demo(model="m", **kwargs)
    with pytest.raises(ConfigError, match="--model is required"):
        Demo()


def test_command_line_and_toml_layer_over_defaults(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('seed = 3\nn-boot = 50\n[demo]\nmodel = "m"\nlr = 0.1\nseeds = [7]\n')
    typed = _parse(["--lr", "0.2", "--config", str(toml), "--no-fresh"])
    cfg, ctx = build(CMD, typed, env={})
    assert (cfg.model, cfg.n_boot, cfg.lr, cfg.seeds, cfg.fresh) == ("m", 50, 0.2, (7,), False)
    assert ctx.seed == 3 and ctx.executor == "local"
    toml.write_text("[demo]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="'bogus' is not an option of 'hyperlens demo'"):
        build(CMD, _parse(["--config", str(toml)]), env={})
    toml.write_text('[demo]\nmodel = "m"\nn_boot = "many"\n')
    with pytest.raises(ConfigError, match=r"--n-boot must be .* got 'many'.*--config"):
        build(CMD, _parse(["--config", str(toml)]), env={})


def test_alias_warns_with_the_new_spelling(capsys):
    cfg, _ = build(CMD, _parse(["--model", "m", "--boot", "9"]), ["--boot", "9"], env={})
    assert cfg.n_boot == 9
    assert "--boot is now --n-boot" in capsys.readouterr().err


def test_ray_address_from_the_environment_applies_only_to_ray_runs():
    env = {"HYPERLENS_RAY_ADDRESS": "127.0.0.1:6379"}
    _, ctx = build(CMD, _parse(["--model", "m"]), env=env)
    assert ctx.executor == "local" and ctx.ray_address is None
    with pytest.raises(ConfigError, match="--executor local"):
        build(CMD, _parse(["--model", "m", "--ray-address", "h:1"]), env={})


def test_only_the_context_options_a_command_honours_are_offered():
    p = argparse.ArgumentParser()
    add_options(p, Demo)
    flags = {s for a in p._actions for s in a.option_strings if a.help != argparse.SUPPRESS}
    assert {"--seed", "--device", "--executor", "--ray-address", "--out"} <= flags
    assert "--dtype" not in flags  # Demo does not declare it, so it is not offered
    with pytest.raises(ConfigError, match="has no precision setting: --dtype does nothing"):
        build(CMD, _parse(["--model", "m", "--dtype", "float32"]), env={})


def test_derive_seed_is_keyed_and_stable():
    assert derive_seed(5) == 5
    assert derive_seed(5, "split") == derive_seed(5, "split")
    assert len({derive_seed(s, k) for s in range(3) for k in ("a", "b")}) == 6
    assert derive_seed(0, "split") < 2**63
    ctx = RunContext(seed=4)
    assert ctx.rng("x").integers(1 << 30) == RunContext(seed=4).rng("x").integers(1 << 30)
    with pytest.raises(ConfigError):
        derive_seed(-1, "a")


def test_start_report_records_the_context(tmp_path):
    cfg = Demo(model="m")
    rep = start_report("demo", cfg, RunContext(seed=9, device="cpu", out=tmp_path / "r"))
    assert rep.config["context"] == {"seed": 9, "device": "cpu",
                                     "dtype": rep.config["context"]["dtype"],
                                     "executor": "local"}
    assert rep.config["n_boot"] == 1000 and rep.seed == 9


def test_a_command_without_dtype_records_the_precision_it_runs_in(tmp_path):
    cfg = Demo(model="m")
    assert "dtype" not in Demo.CONTEXT
    rep = start_report("demo", cfg, RunContext(device="cpu", dtype="bfloat16", out=tmp_path))
    assert rep.config["context"]["dtype"] == "float32"  # its models load at full precision
