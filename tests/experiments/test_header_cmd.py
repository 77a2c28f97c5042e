"""``hyperlens header`` on the real offline models, and its checks before heavy work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperlens.config import RunContext
from hyperlens.errors import ConfigError, DependencyError, ModelNotFoundError


def test_command_is_registered_and_builds_its_config() -> None:
    from hyperlens.cli import COMMAND_MODULES, build_parser
    from hyperlens.config.commandline import build

    assert "hyperlens.experiments.header" in COMMAND_MODULES
    ns = build_parser().parse_args(["header", "--k", "2", "--arms", "hdc", "prompt",
                                    "--seeds", "3", "4", "--lr-grid", "--seed", "7"])
    typed = {k: v for k, v in vars(ns).items() if k not in {"command", "_command"}}
    config, ctx = build(ns._command, typed)
    assert config.k == (2,) and config.arms == ("hdc", "prompt") and config.seeds == (3, 4)
    assert config.lr_grid == () and ctx.seed == 7
    p = config.protocol(ctx)
    assert p.base_seed == 7 and p.seeds == (3, 4) and p.device == str(ctx.torch_device)


def test_arm_choices_are_the_library_arms() -> None:
    from hyperlens.experiments.header import HeaderRunConfig
    from hyperlens.inject.header_task import ARMS_B

    assert HeaderRunConfig.option("arms").choices == ARMS_B


def test_frozen_head_needs_the_text_and_the_default_arms_follow_the_text() -> None:
    from hyperlens.experiments.header import HeaderRunConfig

    with pytest.raises(ConfigError, match="hdc-frozen needs the text"):
        HeaderRunConfig(text="withheld", arms=("hdc", "hdc-frozen"))
    assert "hdc-frozen" not in HeaderRunConfig(text="withheld").stage_b_arms
    assert "hdc-frozen" in HeaderRunConfig(text="present").stage_b_arms
    both = HeaderRunConfig(arms=("hdc", "hdc-frozen"))  # the default: withheld, then present
    assert both.text == ("withheld", "present")
    withheld, present = both.setting("withheld"), both.setting("present")
    assert withheld.stage_b_arms == ("hdc",) and present.stage_b_arms == ("hdc", "hdc-frozen")
    assert "R" in withheld.stages and "R" not in present.stages  # R runs once, first
    assert both.protocol(RunContext(device="cpu")).text == "withheld"
    with pytest.raises(ConfigError, match="hdc-frozen needs the text"):
        HeaderRunConfig(arms=("hdc-frozen",))  # no arm left for the withheld setting
    with pytest.raises(ConfigError, match="stage R runs once"):
        HeaderRunConfig(stages=("R",))


def test_bad_options_are_refused_when_the_config_is_built() -> None:
    from hyperlens.experiments.header import HeaderRunConfig

    with pytest.raises(ConfigError, match="--k"):
        HeaderRunConfig(k=0)
    with pytest.raises(ConfigError, match="--verbalizer"):
        HeaderRunConfig(dataset="my.csv")
    with pytest.raises(ConfigError, match="--seeds names a value twice"):
        HeaderRunConfig(seeds=(1, 1))
    with pytest.raises(ConfigError, match="--n-boot must be an integer >= 100"):
        HeaderRunConfig(n_boot=10)
    with pytest.raises(ConfigError, match="--lr-grid"):
        HeaderRunConfig(lr_grid=(0.01, 20.0))


def test_seed_draws_the_pool_and_the_held_out_slice(shared_data: Path) -> None:
    from hyperlens.inject.header_task import HeaderProtocol, load_split

    def split(seed: int) -> list[list[str]]:
        sp = load_split(HeaderProtocol(dataset="rotten-tomatoes", n_train=40, n_val=20,
                                       n_eval=30, base_seed=seed))
        return [[sp.texts[i] for i in sp.rows[part]] for part in ("train", "val", "eval")]

    a, a2, b = split(0), split(0), split(7)
    assert a == a2
    assert a[0] != b[0] and a[1] != b[1] and a[2] != b[2]
    for part in (a, b):  # train, held-out and evaluation texts are disjoint
        assert not set(part[0]) & set(part[1]) and not set(part[0] + part[1]) & set(part[2])


def test_torch_seeding_is_local() -> None:
    from hyperlens.inject.header_train import _torch_seeded

    state = torch.get_rng_state()
    with _torch_seeded(5):
        x = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), state)
    with _torch_seeded(5):
        assert torch.equal(torch.rand(3), x)


def _require(*names: str) -> None:
    from hyperlens import models as hmodels

    for name in names:
        try:
            hmodels.load(name, device="cpu")
        except (ModelNotFoundError, DependencyError) as exc:
            pytest.skip(f"model {name!r} is not available offline here: {exc}")


@pytest.mark.integration
@pytest.mark.slow
def test_header_both_stages_on_rotten_tomatoes(tmp_path: Path) -> None:
    from hyperlens.experiments.header import HeaderRunConfig, run

    _require("minilm", "smollm2")
    cfg = HeaderRunConfig(dataset="rotten-tomatoes", n_train=96, n_val=48, n_eval=96,
                          seeds=(0,), arms=("hdc", "hdc-frozen", "prompt"), steps=4,
                          batch_size=16,
                          eval_every=2, hdc_dim=2048, insert_layer=24, text="present")
    state = torch.get_rng_state()
    rep = run(cfg, RunContext(device="cpu", out=tmp_path / "run"))
    assert torch.equal(torch.get_rng_state(), state)  # no global seeding left behind
    res = json.loads((rep.out_dir / "results.json").read_text())
    arms = res["data"]["arms"]
    for arm in ("baseline", "logistic", "minilm", "fusion", "zeroshot", "zeroshot-cal", "hdc",
                "prompt", "hdc-ablate"):
        acc = arms[arm]["acc"]
        assert 0.0 <= acc["lo"] <= acc["value"] <= acc["hi"] <= 1.0, arm
    assert arms["minilm"]["acc"]["value"] > 0.6  # MiniLM separates fresh from rotten
    assert "verdict" in res["data"] and "HDC header vs baseline" in res["data"]["verdict"]
    assert (tmp_path / "run" / "header-hdc-seed0.safetensors").exists()
    assert "baseline head frozen" in res["data"]["verdict"]
    # the frozen arm's head is the baseline's: it trained the header only
    assert "hdc-frozen" in arms and arms["hdc-frozen"]["vs_baseline"]["method"].startswith(
        "two-level")
    assert any(k.startswith("arm:") for k in res["timings"])
    pairs = {(r["arm"], r["control"]): r for r in res["data"]["paired"]}
    assert {("hdc", "baseline"), ("hdc", "prompt"), ("hdc", "fusion"),
            ("hdc-frozen", "baseline")} <= set(pairs)
    r = pairs[("hdc", "baseline")]
    assert r["difference"]["value"] == pytest.approx(arms["hdc"]["vs_baseline"]["value"])
    assert r["detectable"] > 0 and r["seeds"] == 1 and r["texts"] == 96
    assert "Paired comparisons" in [sec["title"] for sec in res["sections"]]
    assert "seconds" not in json.dumps(res["data"])  # durations only under timings


@pytest.mark.integration
@pytest.mark.slow
def test_header_with_the_text_withheld_reports_channel_efficiency(tmp_path: Path) -> None:
    from hyperlens.experiments.header import HeaderRunConfig, run

    _require("minilm", "smollm2")
    cfg = HeaderRunConfig(dataset="rotten-tomatoes", n_train=96, n_val=48, n_eval=96,
                          seeds=(0, 1), arms=("hdc", "shuffled"), steps=8, batch_size=16,
                          eval_every=2, hdc_dim=2048, insert_layer=24, text="withheld",
                          lr_grid=(), patience=1)
    rep = run(cfg, RunContext(device="cpu", out=tmp_path / "run"))
    res = json.loads((rep.out_dir / "results.json").read_text())
    arms = res["data"]["arms"]
    assert set(arms) >= {"notext", "fulltext", "fulltext-zs", "minilm", "hdc-logistic", "hdc",
                         "shuffled"}
    assert "baseline" not in arms and "fusion" not in arms  # they would read one constant state
    # no text: the training majority, the same under every seed
    assert len(set(arms["notext"]["per_seed"])) == 1
    assert arms["fulltext"]["acc"]["value"] > arms["notext"]["acc"]["value"]
    eff = res["data"]["efficiency"]
    assert eff["hdc"]["ceiling"] == "hdc-logistic" and eff["shuffled"]["acc"]["lo"] >= 0
    e = eff["hdc"]["efficiency"]
    assert e["lo"] <= e["value"] <= e["hi"] and "two-level" in e["method"]
    assert res["data"]["prefix_cache"]["text"] == "withheld"
    assert "channel efficiency" in res["data"]["verdict"]
    titles = [sec["title"] for sec in res["sections"]]
    assert "Channel efficiency (text withheld)" in titles and "Paired comparisons" in titles
    pairs = {(r["arm"], r["control"]) for r in res["data"]["paired"]}
    assert {("hdc", "shuffled"), ("hdc", "notext"), ("hdc", "hdc-logistic")} <= pairs
    for arm in ("hdc", "shuffled"):  # patience 1: stops at the first evaluation not better
        for c in res["data"]["curves"][arm].values():
            assert len(c["train_loss"]) <= 8 and isinstance(c["stopped_early"], bool)
            if c["stopped_early"]:
                vals = [e["val_acc"] for e in c["evals"]]
                assert vals[-1] <= max(vals[:-1])
    # the prompts hold no text: every prefix is the same instruction
    assert res["data"]["prefix_cache"]["prefix_tokens"] % (96 + 48 + 96) == 0


@pytest.mark.integration
@pytest.mark.slow
def test_reconstruction_stage_scores_the_withheld_text(tmp_path: Path) -> None:
    from hyperlens.experiments.header import HeaderRunConfig, run

    _require("minilm", "smollm2")
    cfg = HeaderRunConfig(dataset="rotten-tomatoes", n_train=32, n_val=16, n_eval=24,
                          seeds=(0,), stages=("R",), steps=4, batch_size=8, eval_every=2,
                          hdc_dim=1024, max_tokens=24, text="withheld")
    rep = run(cfg, RunContext(device="cpu", out=tmp_path / "run"))
    res = json.loads((rep.out_dir / "results.json").read_text())
    rec = res["data"]["reconstruction"]
    for cond in ("none", "shuffled", "header"):
        assert 0 < rec[cond]["nats_per_token"] < 20  # a real LM's NLL, not a placeholder
        b = rec[cond]["bits_per_text"]
        assert b["lo"] <= b["value"] <= b["hi"]
    assert set(rec["reduction"]) == {"shuffled", "none"}
    for e in rec["reduction"].values():  # the power: 2.8 standard errors at 95 % and 80 %
        assert e["detectable"] == pytest.approx(2.8016 * e["std"], rel=1e-3)
    titles = [sec["title"] for sec in res["sections"]]
    assert "Reconstruction (stage R)" in titles and "Arms" not in titles  # no empty arms plot
    assert not (rep.out_dir / "arms.png").exists()
    # a rerun reads the cell back and gives the same numbers
    again = run(cfg, RunContext(device="cpu", out=tmp_path / "run"))
    res2 = json.loads((again.out_dir / "results.json").read_text())
    assert res2["data"]["reconstruction"] == rec and res2["data"]["cells"]["computed"] == 0


def test_recon_arm_needs_stage_r_at_the_input_embeddings() -> None:
    from hyperlens.experiments.header import HeaderRunConfig

    for bad in ({"stages": ("A", "B")}, {"stages": ("R", "B"), "insert_layer": 20},
                {"stages": ("R", "B"), "insert_layer": 0, "variant": "mlp"}):
        with pytest.raises(ConfigError, match="hdc-recon"):
            HeaderRunConfig(arms=("hdc-recon",), **bad)
    assert "hdc-recon" not in HeaderRunConfig().stage_b_arms
    ready = HeaderRunConfig(stages=("R", "B"), insert_layer=0)
    assert "hdc-recon" in ready.stage_b_arms


@pytest.mark.integration
@pytest.mark.slow
def test_recon_arm_starts_from_the_stage_r_header(tmp_path: Path) -> None:
    from hyperlens.experiments.header import HeaderRunConfig, run
    from hyperlens.inject.header_recon import recon_header_path
    from hyperlens.utils import load_safetensors

    _require("minilm", "smollm2")
    cfg = HeaderRunConfig(dataset="rotten-tomatoes", n_train=24, n_val=8, n_eval=16,
                          seeds=(0,), stages=("R", "B"), arms=("hdc", "hdc-recon"), steps=2,
                          batch_size=8, eval_every=1, hdc_dim=256, max_tokens=16,
                          insert_layer=0, lr_grid=(), text="withheld")
    rep = run(cfg, RunContext(device="cpu", out=tmp_path / "run"))
    res = json.loads((rep.out_dir / "results.json").read_text())
    assert {"hdc", "hdc-recon"} <= set(res["data"]["arms"])
    tensors, _ = load_safetensors(recon_header_path(rep.out_dir, 0), what="recon", fix="-")
    assert any(k.startswith("net.") for k in tensors)


@pytest.mark.integration
@pytest.mark.slow
def test_a_cell_killed_mid_training_resumes_from_its_last_evaluation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperlens.experiments.header import HeaderRunConfig, run
    from hyperlens.train.loop import _Loop

    _require("minilm", "smollm2")
    cfg = HeaderRunConfig(dataset="rotten-tomatoes", n_train=48, n_val=8, n_eval=16,
                          seeds=(0,), stages=("B",), arms=("hdc",), steps=9, batch_size=4,
                          eval_every=3, hdc_dim=256, max_tokens=16, lr_grid=(),
                          text="withheld")
    ref = run(cfg, RunContext(device="cpu", out=tmp_path / "ref", progress=False))
    assert not any((tmp_path / "ref" / "checkpoints").glob("*"))  # removed once finished
    step = _Loop.step

    def dying(self: _Loop, idx: object, epoch: int) -> None:
        if self.st.step == 7:  # after the checkpoint of the evaluation at step 6
            raise KeyboardInterrupt
        step(self, idx, epoch)

    monkeypatch.setattr(_Loop, "step", dying)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, RunContext(device="cpu", out=tmp_path / "run", progress=False))
    assert len(list((tmp_path / "run" / "checkpoints").glob("*-hdc-seed0-*"))) == 1
    monkeypatch.setattr(_Loop, "step", step)
    again = run(cfg, RunContext(device="cpu", out=tmp_path / "run", progress=False))
    a = json.loads((tmp_path / "run" / "cells.jsonl").read_text().splitlines()[-1])["result"]
    b = json.loads((tmp_path / "ref" / "cells.jsonl").read_text().splitlines()[-1])["result"]
    assert a["curve"]["steps"] == b["curve"]["steps"] == list(range(1, 10))
    assert a == b and again.data["arms"] == ref.data["arms"]


def _no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperlens import models as hmodels

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("a model was loaded before the checks")

    monkeypatch.setattr(hmodels, "load", refuse)


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "minilm"], "encoder model without input embeddings"),
    (["--model", "glove-50d"], "static model without input embeddings"),
    (["--insert-layer", "30"], "past the last block of smollm2"),
    (["--lr-grid", "0.01", "20"], "--lr-grid must be a list of numbers strictly between"),
    (["--dataset", "agnews", "--verbalizer", "yes", "no"], "one each"),
    (["--n-boot", "50"], "--n-boot must be an integer >= 100"),
    (["--threads", "0"], "--threads must be an integer >= 1"),
    (["--seeds", "2", "2"], "--seeds names a value twice"),
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
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


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
                                  ["--sparsity", "1.5"], ["--placement", "prefix"]])
def test_cli_option_types_refuse_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            argv: list[str]) -> None:
    from hyperlens import cli

    try:
        rc = cli.main(["header", "--out", str(tmp_path / "o"), *argv])
    except SystemExit as exc:  # argparse: an option the command does not have
        rc = int(exc.code or 0)
    assert rc == 2
    err = capsys.readouterr().err
    assert argv[0] in err and ("must be" in err or "unrecognized" in err), err


def test_threads_auto_leaves_the_cores_other_work_uses() -> None:
    from hyperlens.inject.header_task import competing_runnable, set_threads

    before = torch.get_num_threads()
    try:
        busy = competing_runnable()
        assert busy is None or busy >= 0
        n = set_threads(None)
        assert 1 <= n <= max(1, before)
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_full_depth_prefix_arm_runs_only_when_named() -> None:
    from hyperlens.experiments.header import HeaderRunConfig
    from hyperlens.inject.header_task import HeaderProtocol

    assert "hdc-prefix" not in HeaderRunConfig().stage_b_arms
    assert "hdc-prefix" not in HeaderRunConfig(text="withheld").stage_b_arms
    assert "hdc-prefix" not in HeaderProtocol().arms
    cfg = HeaderRunConfig(arms=("hdc", "hdc-prefix"), prefix_texts=1200)
    assert cfg.stage_b_arms == ("hdc", "hdc-prefix")
    assert cfg.protocol(RunContext(device="cpu")).prefix_texts == 1200
    with pytest.raises(ConfigError, match="--prefix-texts"):
        HeaderRunConfig(prefix_texts=0)


@pytest.mark.integration
@pytest.mark.slow
def test_the_prefix_arm_reads_the_whole_prompt_under_padding(tmp_path: Path) -> None:
    from hyperlens.experiments.header import HeaderRunConfig, run
    from hyperlens.inject.header_arms import PrefixArm, prefix_subset, prepare
    from hyperlens.report import Report

    _require("minilm", "smollm2")
    cfg = HeaderRunConfig(dataset="rotten-tomatoes", n_train=40, n_val=16, n_eval=24,
                          seeds=(0,), arms=("hdc", "hdc-prefix"), steps=3, batch_size=8,
                          eval_every=1, hdc_dim=512, max_tokens=24, lr_grid=(),
                          prefix_texts=16, text="present")
    p = cfg.protocol(RunContext(device="cpu", dtype="float32"))  # exact up to float32 rounding
    hrun = prepare(p, tmp_path / "direct", Report("header", out_dir=tmp_path / "direct"))
    sub = prefix_subset(hrun)
    assert len(sub) == 16 and set(sub) <= set(hrun.split.rows["train"])
    assert np.array_equal(sub, prefix_subset(hrun))  # one subset for every replicate seed
    arm = PrefixArm(hrun, "hdc-prefix", 0).eval()
    assert arm.header.config.placement == "prefix"
    rows = torch.from_numpy(hrun.split.rows["eval"][:3])
    lengths = [len(arm.seqs[int(i)]) for i in rows]
    assert len(set(lengths)) > 1  # the batch is padded
    with torch.no_grad():
        together = arm(rows)
        alone = torch.cat([arm(rows[i: i + 1]) for i in range(len(rows))])
        other = arm(rows, codes=arm.codes.flip(0))  # the answer depends on the code
    torch.testing.assert_close(together, alone, atol=1e-3, rtol=1e-3)
    assert not torch.allclose(together, other)

    def through_the_whole_lm(rows: torch.Tensor) -> torch.Tensor:
        """The arm's answer read from the causal LM's own forward (LM head included)."""
        from hyperlens.inject.base import attach

        ids, mask = arm.inputs(rows)
        with attach(hrun.lm, arm.header), arm.header.use_codes(arm.codes[rows]):
            out = hrun.lm.module(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        assert arm.head is not None
        return arm.head(out.hidden_states[-1][:, -1].float())

    with torch.no_grad():  # the stack alone gives the LM's final state to the bit
        torch.testing.assert_close(together, through_the_whole_lm(rows), atol=0, rtol=0)
    rep = run(cfg, RunContext(device="cpu", out=tmp_path / "run"))
    res = json.loads((rep.out_dir / "results.json").read_text())
    assert "hdc-prefix" in res["data"]["arms"]
    curve = res["data"]["curves"]["hdc-prefix"]["0"]
    assert len(curve["train_loss"]) == 3
    cells = [json.loads(line) for line in (rep.out_dir / "cells.jsonl").read_text().splitlines()]
    assert {"arm": "hdc-prefix", "seed": 0, "texts": 16} in [c["key"] for c in cells]
    pairs = {(r["arm"], r["control"]) for r in res["data"]["paired"]}
    assert ("hdc-prefix", "hdc") in pairs


@pytest.mark.integration
def test_the_default_settings_run_one_after_the_other_into_one_report(tmp_path: Path) -> None:
    from hyperlens.experiments.header import HeaderRunConfig, run

    _require("minilm", "smollm2")
    cfg = HeaderRunConfig(dataset="rotten-tomatoes", n_train=16, n_val=8, n_eval=16,
                          seeds=(0,), arms=("hdc",), steps=2, batch_size=8, eval_every=1,
                          hdc_dim=256, max_tokens=12, insert_layer=26, lr_grid=(), n_boot=100,
                          threads=1)
    assert cfg.text == ("withheld", "present") and cfg.stages == ("A", "R", "B")
    out = tmp_path / "run"
    rep = run(cfg, RunContext(device="cpu", out=out, progress=False))
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and res["data"]["settings"] == {"withheld": "withheld",
                                                            "present": "present"}
    for name in ("withheld", "present"):  # each setting is a study of its own
        sub = json.loads((out / name / "results.json").read_text())
        assert sub["config"]["text"] == [name] and sub["data"]["arms"] == \
            res["data"][name]["arms"]
        assert (out / name / "cells.jsonl").exists()
        assert f"Text {name}: Arms" in [s["title"] for s in res["sections"]]
        assert (out / f"{name}-arms.png").exists()
    assert "reconstruction" in res["data"]["withheld"]  # R once, with the first setting
    assert "reconstruction" not in res["data"]["present"]
    assert "efficiency" in res["data"]["withheld"] and "efficiency" not in res["data"]["present"]
    intro = res["sections"][0]
    assert intro["title"] == "Settings" and [r[0] for r in intro["tables"][0]["rows"]] == [
        "withheld", "present"]
    assert intro["tables"][0]["rows"][0][4] == "A R B" and intro["tables"][0]["rows"][1][4] == "A B"
    assert [r[0] for r in rep.summary_rows][:1] == ["text withheld: verdict"]
    # killed or not, a rerun computes nothing and gives the same numbers
    again = run(cfg, RunContext(device="cpu", out=out, progress=False))
    assert again.data["withheld"]["cells"]["computed"] == 0
    assert again.data["present"]["cells"]["computed"] == 0
    assert again.data["present"]["arms"] == res["data"]["present"]["arms"]


def test_several_k_are_studies_of_their_own_with_stage_r_in_each() -> None:
    from hyperlens.experiments.header import HeaderRunConfig

    one = HeaderRunConfig(text="withheld", k=4)
    assert one.k == (4,) and [n for n, _, _ in one.settings()] == [""]
    cfg = HeaderRunConfig(k=(1, 16))
    got = [(n, lab, c.text, c.k, c.stages) for n, lab, c in cfg.settings()]
    assert got == [
        ("withheld-k1", "Text withheld, k = 1", ("withheld",), (1,), ("A", "R", "B")),
        ("withheld-k16", "Text withheld, k = 16", ("withheld",), (16,), ("A", "R", "B")),
        ("present-k1", "Text present, k = 1", ("present",), (1,), ("A", "B")),
        ("present-k16", "Text present, k = 16", ("present",), (16,), ("A", "B"))]
    ctx = RunContext(device="cpu")
    ps = [c.protocol(ctx) for _, _, c in cfg.settings()]
    assert [p.k for p in ps] == [1, 16, 1, 16] and len({p.fingerprint() for p in ps}) == 4
    only_k = HeaderRunConfig(text="withheld", k=(1, 4))
    assert [(n, lab) for n, lab, _ in only_k.settings()] == [("k1", "k = 1"), ("k4", "k = 4")]
    with pytest.raises(ConfigError, match="--k"):
        HeaderRunConfig(k=(4, 4))


def test_the_lm_precision_comes_from_the_context_and_names_the_cells() -> None:
    from hyperlens.experiments.header import HeaderRunConfig

    cfg = HeaderRunConfig(text="withheld")
    bf = cfg.protocol(RunContext(device="cpu", dtype="bfloat16"))
    fp = cfg.protocol(RunContext(device="cpu", dtype="float32"))
    assert bf.dtype == "bfloat16" and fp.dtype == "float32"
    assert bf.fingerprint() != fp.fingerprint()  # cells of one precision are not the other's
    assert "dtype" in HeaderRunConfig.CONTEXT
