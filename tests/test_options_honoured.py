"""Every option is honoured: read by the run, and ``--seed`` changes what is drawn.

For each command, its smallest configurations run for real (offline models and data):

- every option of its config is read by ``run`` in at least one of them (an option that
  nothing reads does nothing; reads by ``to_dict`` for the report do not count);
- a command that draws at random (``Config.RANDOM``) gives other numbers with another
  ``--seed`` and the same numbers with the same one; a command that draws nothing gives the
  same numbers whatever the seed;
- the device and precision the report records are the ones the context resolved.

``SMALL`` lists the configurations; the ``hft`` actions, which run as a chain (train
captures; eval and generate read the student it saved), run in :func:`hft_runs`.
``scripts/options_table.py`` prints the table of options and whether each is honoured from
the same data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hyperlens.config import Config, RunContext
from hyperlens.errors import DependencyError, ModelNotFoundError

pytestmark = pytest.mark.integration

SST2_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "dev.tsv"

#: command -> (models it needs, list of small configurations as keyword arguments).
SMALL: dict[str, tuple[tuple[str, ...], list[dict[str, Any]]]] = {
    "align-vocab": (("minilm", "glove-50d"), [
        {"models": ("minilm", "glove-50d"), "max_test": 300, "k": 5, "n_components": 40},
        {"models": ("glove-50d", "minilm"), "max_test": 300, "test_fraction": 0.3,
         "cased": True, "whole_words": True, "scaling": False},
    ]),
    "terrain": (("glove-50d", "wordllama"), [
        {"models": ("glove-50d",), "cosine_sample": 200, "distance_sample": 200,
         "n_simplices": 200, "n_permutations": 50, "n_boot": 50, "spectrum_blocks": 8,
         "spectrum_bootstrap": 10, "histogram_bins": 10, "layers": False},
        {"models": ("glove-50d", "wordllama"), "texts": str(SST2_DEV), "n_texts": 8,
         "data_dir": str(SST2_DEV.parents[1]),
         "cosine_sample": 100, "distance_sample": 100, "n_simplices": 100,
         "n_permutations": 20, "n_boot": 20, "spectrum_blocks": 4, "spectrum_bootstrap": 4,
         "max_positions": 8, "max_length": 8, "batch_size": 4, "histogram_bins": 8,
         "cv_band": (0.1, 0.3), "pr_band": (0.4, 0.6), "text_column": "sentence",
         "label_column": "label", "drop_invalid": True, "encoding": "utf-8"},
    ]),
    "weights": (("minilm",), [
        {"models": ("minilm",), "precision": "float64", "thresholds": (1e-3, 1e-2),
         "chunk_mb": 8, "threads": 1},
        {"models": ("minilm", "minilm"), "precision": "svd"},
    ]),
    "relational": (("glove-50d",), [
        {"models": ("glove-50d",), "pos": "n,v", "sense": "file",
         "measures": ("path", "wup", "lch"), "max_entries": 120, "n_main": 100,
         "n_redraws": 2, "n_sample": 50, "n_permutations": 9, "n_boot": 20,
         "n_simplices": 20, "decoder_read": "mean", "simulate_root": False, "batch_size": 8,
         "cache": False, "per_pos": False},
    ]),
    "tour": (("glove-50d",), [
        {"models": ("glove-50d",), "dataset": str(SST2_DEV), "n_texts": 120,
         "test_fraction": 0.25, "pooling": "last", "batch_size": 8, "sections": (),
         "data_dir": str(SST2_DEV.parents[1]), "text_column": "sentence",
         "label_column": "label", "drop_invalid": True, "encoding": "utf-8"},
    ]),
    "header": (("smollm2", "minilm"), [
        {"dataset": "rotten-tomatoes", "n_train": 24, "n_val": 12, "n_eval": 24,
         "seeds": (0,), "stages": ("A",), "hdc_dim": 256, "max_tokens": 16, "n_boot": 100,
         "insert_layer": 26, "text": ("present",)},
        {"dataset": "sst2", "data_dir": str(SST2_DEV.parents[1]), "model": "smollm2",
         "encoder": "minilm", "n_train": 16, "n_val": 8, "n_eval": 16, "seeds": (0, 1),
         "stages": ("A", "B"), "arms": ("hdc", "lm-static"), "k": 2, "variant": "mlp",
         "insert_layer": 27, "hdc_dim": 128, "sparsity": 0.6, "steps": 2, "batch_size": 8,
         "lr": 0.02, "lr_grid": (), "head_lr": 0.002, "eval_every": 1, "max_tokens": 12,
         "verbalizer": ("negative", "positive"), "kv_dtype": "float32", "threads": 1,
         "n_boot": 100, "fresh": True, "weight_decay": 0.01, "code_dropout": 0.1,
         "text": ("present",), "margin": 0.05},
    ]),
    "transfer": (("glove-50d", "minilm"), [
        {"stages": ("0", "2"), "models": ("glove-50d",), "pair": ("glove-50d", "minilm"),
         "dataset": str(SST2_DEV), "datasets": (str(SST2_DEV),),
         "data_dir": str(SST2_DEV.parents[1]), "aligners": ("ridge",), "aligner": "ridge",
         "anchors": ("20",), "n_anchors": 20, "hdc_dims": (128,), "hdc_dim": 128, "tau": 0.5,
         "seeds": (0,), "train": 40, "test": 20, "anchor_pool": 30,
         "teachers": ("glove-50d",), "student": "minilm", "C": 0.5, "C_float": 2.0,
         "input_scaling": "none", "pooling": "mean", "layer": -1, "batch_size": 8,
         "allow_anchor_overlap": True, "fresh": True, "text_column": "sentence",
         "label_column": "label", "drop_invalid": True, "encoding": "utf-8"},
    ]),
    "modulate": (("minilm",), [
        {"models": ("minilm",), "modulators": ("lerp",), "seeds": (0,), "control_seeds": (0,),
         "controls": ("shuffled",), "layers": (5,), "anchors": 65, "test": 8, "steps": 2,
         "batch_size": 4, "lr": 0.01, "alpha_lr": (0.1,), "alpha": 0.2, "field_alpha": 0.02,
         "alpha_starts": (), "field_alpha_starts": (), "sweep": (0.1, 0.29154, 0.3),
         "n_boot": 10, "n_coherence": 4, "data_dir": str(SST2_DEV.parents[1]),
         "split_paths": "first", "lerp_subspace": "all"},
    ]),
    "mha-cv": ((), [
        {"dims": (8,), "heads": (1, 2), "epochs": 4, "n_simplices": 20, "n_boot": 10,
         "n_classes": 3, "samples_per_class": 6, "test_per_class": 3, "vocab": 16,
         "seq_len": 6, "noise": 0.3, "lr": 0.01, "k": 3, "null": "norms",
         "band": (0.1, 0.5), "seeds": (0, 1), "max_points": 50},
        {"dims": (8,), "heads": (2,), "epochs": 2, "n_simplices": 10, "n_boot": 10,
         "n_classes": 2, "samples_per_class": 4, "vocab": 8, "null": "none", "fresh": True},
    ]),
}


def _command(name: str) -> Any:
    import importlib

    from hyperlens.cli import COMMAND_MODULES

    for mod in COMMAND_MODULES:
        for cmd in getattr(importlib.import_module(mod), "COMMANDS", ()):
            if cmd.name == name:
                return cmd
    raise KeyError(name)


def _require(names: tuple[str, ...]) -> None:
    from hyperlens import models as hmodels

    for name in names:
        try:
            hmodels.load(name, device="cpu")
        except (ModelNotFoundError, DependencyError) as exc:
            pytest.skip(f"model {name!r} is not available offline here: {exc}")


@contextmanager
def _reads(cls: type[Config]) -> Iterator[set[str]]:
    """The option names that code outside ``Config.to_dict`` reads while the block runs."""
    names = {o.name for o in cls.options()}
    seen: set[str] = set()
    original = cls.__getattribute__
    state = {"in_to_dict": 0}
    to_dict = Config.to_dict

    def getattribute(self: Any, attr: str) -> Any:
        if attr in names and not state["in_to_dict"]:
            seen.add(attr)
        return original(self, attr)

    def counted_to_dict(self: Any) -> Any:
        state["in_to_dict"] += 1
        try:
            return to_dict(self)
        finally:
            state["in_to_dict"] -= 1

    cls.__getattribute__ = getattribute  # type: ignore[method-assign]
    Config.to_dict = counted_to_dict  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        cls.__getattribute__ = original  # type: ignore[method-assign]
        Config.to_dict = to_dict  # type: ignore[method-assign]


def _numbers(folder: Path, drop: tuple[str, ...] = ()) -> Any:
    """The results without timings, environment, creation time, the recorded seed and config
    (and the dotted paths in ``drop``)."""
    from hyperlens.report import VOLATILE_KEYS, comparable

    res = json.loads((folder / "results.json").read_text("utf-8"))
    return comparable(res, (*VOLATILE_KEYS, "seed", "config", *drop))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_option_is_read_and_the_seed_is_honoured(name: str, tmp_path: Path) -> None:
    cmd = _command(name)
    needs, variants = SMALL[name]
    _require(needs)
    read: set[str] = set()
    for i, kwargs in enumerate(variants):
        config = cmd.config(**kwargs)
        with _reads(cmd.config) as seen:
            rep = cmd.run(config, RunContext(seed=0, device="cpu", out=tmp_path / f"v{i}"))
        read |= seen
        ctx_record = rep.config["context"]
        assert ctx_record["device"] == "cpu"
    unread = sorted({o.name for o in cmd.config.options()} - read)
    assert not unread, f"{name}: options that no run read: {unread}"

    config = cmd.config(**variants[0])
    a = _numbers(cmd.run(config, RunContext(seed=0, out=tmp_path / "s0")).out_dir)
    b = _numbers(cmd.run(config, RunContext(seed=1, out=tmp_path / "s1")).out_dir)
    a2 = _numbers(cmd.run(config, RunContext(seed=0, out=tmp_path / "s0b")).out_dir)
    assert a == a2, f"{name}: the same --seed gave different numbers"
    if cmd.config.RANDOM:
        assert a != b, f"{name} draws {cmd.config.RANDOM} but --seed changed nothing"
    else:
        assert a == b, f"{name} says it draws nothing, but --seed changed its numbers"


# --------------------------------------------------------------------------- hft
#: ``hft capture``: SmolLM2 over a few hundred tokens of SST-2, two heads of an early layer.
HFT_CAPTURE: dict[str, Any] = {
    "teacher": "smollm2", "dataset": str(SST2_DEV), "data_dir": str(SST2_DEV.parents[1]),
    "text_column": "sentence", "train_tokens": 240, "heldout_tokens": 100, "layer": 2,
    "heads": (0, 1), "window": 16, "cut_fraction": 0.5}
#: ``hft train``: the same capture, then the smallest students for one epoch per stage.
HFT_TRAIN: dict[str, Any] = HFT_CAPTURE | {
    "tracks": ("A",), "seeds": (0,), "k1": 8, "k2": 8, "top_k": 2, "mix_heads": 2,
    "d_sketch": 64, "pca": None, "stage1_epochs": 1, "stage2_epochs": 1, "e2e_epochs": 1,
    "batch_size": 64, "lr": 3e-3, "hard": 0.5, "online": True, "mlp": True, "n_boot": 10,
    "features": ("exact", "sketch"), "exact_tokens": 2, "patience": 1, "max_epochs": 2,
    "val_share": 0.2}
#: What an ``hft train`` or ``hft eval`` report measures rather than computes: the speeds and
#: peak memory (the sections repeat the data's numbers beside the speeds).
HFT_MEASURED = ("data.max_rss_mb", "data.checks A.throughput", "data.throughput", "sections")


def _hft_run(action: str, kwargs: dict[str, Any], seed: int, out: Path, read: set[str],
             cwd: Path | None = None) -> Any:
    """``hft ACTION`` with ``kwargs`` at ``seed`` (default capture folders under ``cwd``),
    adding the options it read to ``read``; returns its numbers."""
    import os

    cmd = _command(f"hft {action}")
    config = cmd.config(**kwargs)
    here = Path.cwd()
    if cwd is not None:
        cwd.mkdir(parents=True, exist_ok=True)
        os.chdir(cwd)
    try:
        with _reads(cmd.config) as seen:
            rep = cmd.run(config, RunContext(seed=seed, device="cpu", progress=False, out=out))
    finally:
        os.chdir(here)
    read |= seen
    assert rep.config["context"]["device"] == "cpu"
    numbers = _numbers(rep.out_dir, HFT_MEASURED if action in ("train", "eval") else ())
    if action == "capture":  # what was captured, not only where and how much
        from hyperlens.experiments.hft import _capture_dir
        from hyperlens.hft.capture import load_capture

        cap = load_capture((cwd or here) / _capture_dir(config, RunContext(seed=seed)))
        numbers["rows"] = {split: {k: json.dumps(getattr(cap, split)[k][:].tolist())
                                   for k in ("text", "target")}
                           for split in ("train", "heldout")}
    return numbers


@contextmanager
def _short_speed_check() -> Iterator[None]:
    """``hft train``'s and ``hft eval``'s throughput check at its smallest (2 steps, one
    repeat, float32 only): its speeds are measured, not compared, and the full check takes
    minutes on two cores."""
    from functools import partial

    from hyperlens.hft import checks

    full = checks.throughput
    checks.throughput = partial(full, steps=2, repeats=1, bf16=False)  # type: ignore[assignment]
    try:
        yield
    finally:
        checks.throughput = full  # type: ignore[assignment]


def hft_runs(tmp: Path) -> dict[str, tuple[set[str], Any, Any, Any]]:
    """train (capturing first), capture, then eval and generate on the student train saved;
    per action the options its runs read and its numbers at seeds 0, 1 and 0 again.

    Each run finds or makes its capture in the default folder under its working folder
    ``a``, ``b`` or ``a2``: the first train run captures in ``a`` (and so reads the corpus
    options), the capture runs keep that one and capture in ``b`` and ``a2`` (the same seed
    again), and the other train runs reuse those."""
    reads: dict[str, set[str]] = {a: set() for a in ("capture", "train", "eval", "generate")}
    runs: dict[str, dict[str, Any]] = {a: {} for a in reads}
    seeds = {"a": 0, "b": 1, "a2": 0}

    def each_seed(action: str, kwargs: dict[str, Any], in_own_folder: bool = False) -> None:
        for tag, seed in seeds.items():
            if tag not in runs[action]:
                runs[action][tag] = _hft_run(action, kwargs, seed, tmp / f"{action}-{tag}",
                                             reads[action], tmp / tag if in_own_folder else None)

    with _short_speed_check():
        runs["train"]["a"] = _hft_run("train", HFT_TRAIN, 0, tmp / "train", reads["train"],
                                      tmp / "a")
        each_seed("capture", HFT_CAPTURE, in_own_folder=True)
        each_seed("train", HFT_TRAIN, in_own_folder=True)
        from hyperlens.experiments.hft import CaptureOptions, _capture_dir

        capture = tmp / "a" / _capture_dir(CaptureOptions(**HFT_CAPTURE), RunContext(seed=0))
        each_seed("eval", {"student": tmp / "train", "capture_dir": capture, "n_boot": 20})
    each_seed("generate", {"student": tmp / "train" / "student", "prompt": "The film is",
                           "n_tokens": 4})
    return {a: (reads[a], runs[a]["a"], runs[a]["b"], runs[a]["a2"]) for a in reads}


def test_hft_actions_read_every_option_and_honour_the_seed(tmp_path: Path) -> None:
    _require(("smollm2",))
    for action, (read, a, b, a2) in hft_runs(tmp_path).items():
        cls = _command(f"hft {action}").config
        unread = sorted({o.name for o in cls.options()} - read)
        assert not unread, f"hft {action}: options that no run read: {unread}"
        assert a == a2, f"hft {action}: the same --seed gave different numbers"
        if cls.RANDOM:
            assert a != b, f"hft {action} draws {cls.RANDOM} but --seed changed nothing"
        else:
            assert a == b, f"hft {action} says it draws nothing, but --seed changed its numbers"
