"""``hyperlens header``: does a semantic header (codes as pseudo-tokens) help a frozen LM?

Text -> MiniLM -> ternary HDC code -> :class:`~hyperlens.inject.header.SemanticHeader` ->
``k`` pseudo-tokens placed just before the answer cue of a frozen causal LM's prompt
(``...Text: {text}`` + header + ``\\nSentiment:``). One split (a training subset of the
task's train split, with a held-out slice of it for every choice of hyperparameters or
checkpoint; evaluation on all 872 SST-2 dev sentences, or a fixed AG News test subset),
several seeds (each redraws the HDC projection, initialisations and batch order).

Stage A (cached, no gradients through the LM): the original classifier head on the
prompt's last hidden state (the baseline), logistic regression on it, one probe per
layer, MiniLM float -> logistic, HDC -> logistic, late fusion [LM state; MiniLM] -> head,
and the LM's own zero-shot answer (verbaliser logits), raw and calibrated on training data.

Stage B (trained through the frozen LM): HDC header + head; float (MiniLM) header + head;
shuffled HDC (codes permuted across texts); random ternary codes; input-independent prompt
tuning with the same ``k``; on the LM side without a head (the LM answers with the label
word): a static prompt vs an HDC header gated to start exactly at that prompt; and a
test-time ablation (the trained HDC header fed shuffled codes).

Cost: under causal masking the header cannot change any position before it, so each
prefix's keys and values are computed once (:class:`~hyperlens.inject.prefix_cache.PrefixCache`,
kept on disk) and training runs only the pseudo-tokens and the cue; inserting the header at
block ``--insert-layer`` also caches every layer below it. ``--placement prefix`` runs the
seed's full-depth prefix header instead (every position changes, nothing is cached).
Finished (arm, seed) cells are appended to ``OUT/cells.jsonl``; a rerun resumes.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..functional.stats import bootstrap_ci, mcnemar, paired_bootstrap, t_interval
from ..report import Report
from ..utils import cache_dir, stable_hash
from .options import nonnegative_int, positive_float, positive_int, unit_fraction

__all__ = ["COMMAND", "HELP", "add_arguments", "main", "HeaderRunConfig", "run_header",
           "ARMS_B", "PROMPTS", "tour_section"]

COMMAND = "header"
HELP = "semantic header: HDC codes as pseudo-tokens for a frozen causal LM, with controls"

#: (prefix template, answer cue, verbaliser word per class name)
PROMPTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "sst2": ("Classify the sentiment of this text as positive or negative.\nText: {text}",
             "\nSentiment:", {"negative": " negative", "positive": " positive"}),
    "rotten-tomatoes": ("Classify the sentiment of this text as positive or negative.\nText: "
                        "{text}", "\nSentiment:",
                        {"rotten": " negative", "fresh": " positive",
                         "negative": " negative", "positive": " positive"}),
    "agnews": ("Classify the topic of this news article as World, Sports, Business or "
               "Science.\nText: {text}", "\nTopic:",
               {"World": " World", "Sports": " Sports", "Business": " Business",
                "Sci/Tech": " Science"}),
}
ARMS_B = ("hdc", "float", "shuffled", "random", "prompt", "lm-static", "lm-hdc")
ARM_TITLES = {
    "baseline": "A: head on LM state (baseline)", "logistic": "A: logistic on LM state",
    "minilm": "A: MiniLM float -> logistic", "hdc-logistic": "A: HDC -> logistic",
    "fusion": "A: late fusion [LM; MiniLM] -> head", "zeroshot": "A: zero-shot (raw)",
    "zeroshot-cal": "A: zero-shot (calibrated)", "best-layer": "A: best layer probe (by val)",
    "hdc": "B: HDC header + head", "float": "B: float header + head",
    "shuffled": "B: shuffled HDC header + head", "random": "B: random ternary codes + head",
    "prompt": "B: prompt tuning (static k) + head", "lm-static": "B: LM answer, static prompt",
    "lm-hdc": "B: LM answer, gated HDC header", "hdc-ablate": "B: HDC header fed shuffled codes",
}


@dataclass
class HeaderRunConfig:
    """Options of one run (the CLI fills it)."""

    dataset: str = "sst2"
    data_dir: str | None = None
    model: str = "smollm2"
    encoder: str = "minilm"
    n_train: int = 640
    n_val: int = 160
    n_eval: int = 0  # 0: all SST-2 dev sentences (872); AG News: 1000 test articles
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    stages: list[str] = field(default_factory=lambda: ["A", "B"])
    arms: list[str] = field(default_factory=lambda: list(ARMS_B))
    k: int = 4
    variant: str = "projector"
    placement: str = "cue"
    insert_layer: int | None = None  # None: two thirds of the depth (SmolLM2: 20, Gemma 3: 12)
    hdc_dim: int = 10_000
    sparsity: float = 0.7
    steps: int = 20
    batch_size: int = 16
    lr: float = 1e-2  # used when lr_grid is empty
    lr_grid: list[float] = field(default_factory=lambda: [3e-3, 1e-2, 3e-2])
    head_lr: float = 1e-3
    eval_every: int = 10
    max_tokens: int = 64
    verbalizer: list[str] | None = None
    kv_dtype: str = "float16"
    threads: str = "auto"
    n_boot: int = 2000
    fresh: bool = False
    device: str = "cpu"

    def validate(self) -> None:
        if self.dataset not in PROMPTS and self.verbalizer is None:
            raise ConfigError(f"--dataset {self.dataset!r} has no built-in prompt; use one of "
                              f"{sorted(PROMPTS)} or give --verbalizer (one word per class).")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k <= 0:
            raise ConfigError(f"--k must be a positive number of pseudo-tokens, got {self.k!r}.")
        bad = sorted(set(self.arms) - set(ARMS_B))
        if bad:
            raise ConfigError(f"--arms {bad} unknown; choose from {list(ARMS_B)}.")
        if set(self.stages) - {"A", "B"}:
            raise ConfigError(f"--stages takes A and/or B, got {self.stages}.")
        if self.placement not in ("cue", "prefix"):
            raise ConfigError(f"--placement must be 'cue' or 'prefix', got {self.placement!r}.")
        if self.insert_layer is not None and (isinstance(self.insert_layer, bool)
                                              or self.insert_layer < 0):
            raise ConfigError(f"--insert-layer must be a block index >= 0, got "
                              f"{self.insert_layer!r}.")
        if self.placement == "prefix" and self.insert_layer != 0:
            raise ConfigError("--placement prefix changes every position, so it runs at full "
                              "depth: give --insert-layer 0.")
        if self.variant not in ("mlp", "projector", "gated"):
            raise ConfigError(f"--variant must be mlp, projector or gated, got {self.variant!r}.")
        for name in ("n_train", "n_val", "steps", "batch_size", "eval_every", "hdc_dim",
                     "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got "
                                  f"{getattr(self, name)}.")
        for x in [self.lr, self.head_lr, *self.lr_grid]:
            if not (isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 10):
                raise ConfigError(f"learning rates must be numbers in (0, 10), got {x!r} "
                                  "(--lr, --head-lr, --lr-grid).")
        if not self.seeds:
            raise ConfigError("--seeds is empty; give at least one seed.")
        if self.kv_dtype not in ("float16", "bfloat16", "float32"):
            raise ConfigError(f"--kv-dtype must be float16, bfloat16 or float32, got "
                              f"{self.kv_dtype!r}.")
        if self.threads != "auto" and not str(self.threads).isdigit():
            raise ConfigError(f"--threads takes 'auto' or a count, got {self.threads!r}.")

    def fingerprint(self) -> str:
        keys = ("dataset", "model", "encoder", "n_train", "n_val", "n_eval", "k", "variant",
                "placement", "insert_layer", "hdc_dim", "sparsity", "steps", "batch_size", "lr",
                "lr_grid", "head_lr", "eval_every", "max_tokens", "verbalizer", "kv_dtype")
        return stable_hash(*[getattr(self, k) for k in keys], length=12)


def set_threads(spec: str) -> int:
    """Set torch's CPU threads: ``auto`` uses one thread when the machine is oversubscribed.

    On a shared machine whose load exceeds its cores, multi-threaded kernels spin-wait on
    each other: a SmolLM2 suffix batch took 25 s with 2 threads and 1.3 s with one.
    """
    if spec == "auto":
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        n = 1 if load > (os.cpu_count() or 1) else torch.get_num_threads()
    else:
        n = max(1, int(spec))
    torch.set_num_threads(n)
    return n


# --------------------------------------------------------------------------- data
@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    rows: dict[str, np.ndarray]  # train / val / eval positions in texts


def load_split(cfg: HeaderRunConfig) -> Split:
    """Training subset + held-out slice from the train split; evaluation from dev / test."""
    from .. import data as hdata

    if cfg.dataset == "agnews":
        train = hdata.load("agnews", split="train", data_dir=cfg.data_dir)
        ev = hdata.load("agnews", split="test", data_dir=cfg.data_dir)
        ev = ev.subsample(cfg.n_eval or 1000, seed=0)
    elif cfg.dataset == "sst2":
        train = hdata.load("sst2", split="train", data_dir=cfg.data_dir)
        ev = hdata.load("sst2", split="dev", data_dir=cfg.data_dir)
        if cfg.n_eval:
            ev = ev.subsample(cfg.n_eval, seed=0)
    else:
        full = hdata.load(cfg.dataset, data_dir=cfg.data_dir)
        sp = full.split(test=cfg.n_eval or 0.2, seed=0)
        train, ev = sp.train, sp.test
    ev_set = set(ev.texts)
    keep = np.array([t not in ev_set for t in train.texts])
    _, first = np.unique(np.asarray(train.texts, dtype=object), return_index=True)
    mask = np.zeros(len(train), dtype=bool)
    mask[first] = True
    train = train.select(np.flatnonzero(mask & keep))
    need = cfg.n_train + cfg.n_val
    if len(train) < need:
        raise ConfigError(f"{cfg.dataset} has {len(train)} usable training texts but --n-train "
                          f"+ --n-val = {need}; lower them.")
    pool = train.subsample(need, seed=0)
    sp = pool.split(train=cfg.n_train, test=cfg.n_val, seed=0)
    texts = list(sp.train.texts) + list(sp.test.texts) + list(ev.texts)
    labels = np.concatenate([sp.train.labels, sp.test.labels, ev.labels]).astype(np.int64)
    a, b = cfg.n_train, cfg.n_train + cfg.n_val
    rows = {"train": np.arange(a), "val": np.arange(a, b), "eval": np.arange(b, len(texts))}
    return Split(texts, labels, list(train.label_names), rows)


def label_names_of(cfg: HeaderRunConfig) -> list[str]:
    """The dataset's class names, read without loading any model."""
    from .. import data as hdata

    if cfg.dataset in ("agnews", "sst2"):
        return list(hdata.load(cfg.dataset, split="test" if cfg.dataset == "agnews" else "dev",
                               data_dir=cfg.data_dir).label_names)
    return list(hdata.load(cfg.dataset, data_dir=cfg.data_dir).label_names)


def verbalizer_words(cfg: HeaderRunConfig, label_names: list[str]) -> list[str]:
    """One answer word per class, in label order; raises when a class has none."""
    if cfg.verbalizer is not None:
        if len(cfg.verbalizer) != len(label_names):
            raise ConfigError(f"--verbalizer has {len(cfg.verbalizer)} words but the dataset "
                              f"has {len(label_names)} classes {label_names}; give one each.")
        return [w if w.startswith(" ") else " " + w for w in cfg.verbalizer]
    table = PROMPTS[cfg.dataset][2]
    missing = [n for n in label_names if n not in table]
    if missing:
        raise ConfigError(f"labels {missing} are not the verbaliser's (it knows "
                          f"{sorted(table)}); pass --verbalizer with one word per class.")
    return [table[n] for n in label_names]


# --------------------------------------------------------------------------- small models
class Head(nn.Module):
    """The original classifier: standardise, Linear(d, 256), GELU, dropout, Linear(256, C)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float().clamp_min(1e-6))
        self.net = nn.Sequential(nn.Linear(mean.numel(), 256), nn.GELU(), nn.Dropout(0.1),
                                 nn.Linear(256, n_classes))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net((h - self.mean) / self.std)


def train_loop(module: nn.Module, loss_fn: Any, n: int, *, lr: float,
               param_lr: dict[str, float], steps: int, batch_size: int, seed: int,
               eval_fn: Any, eval_every: int, frozen: Any = None) -> dict[str, Any]:
    """:func:`hyperlens.train.fit` over ``range(n)``, keeping the best held-out state.

    ``loss_fn(rows)`` gets a batch of row numbers. ``eval_fn()`` returns the held-out
    accuracy; the module ends at its best evaluated state (never chosen on the test set).
    Returns the history dict plus ``best_step`` and ``best_val_acc``.
    """
    from ..train import TrainConfig, fit

    best: dict[str, Any] = {"acc": -1.0, "state": None, "step": None}

    def evaluate(m: nn.Module) -> dict[str, float]:
        acc = float(eval_fn())
        if acc > best["acc"]:
            best.update(acc=acc, state={k: v.detach().clone() for k, v in m.state_dict().items()})
        return {"val_acc": acc}

    epochs = math.ceil(steps * batch_size / n)
    tc = TrainConfig(optimizer="adamw", lr=lr, param_lr=param_lr, epochs=max(1, epochs),
                     max_steps=steps, batch_size=batch_size, grad_clip=1.0, seed=seed,
                     eval_every=eval_every, progress=False)
    hist = fit(module, lambda _m, rows: loss_fn(rows), torch.arange(n), tc, frozen=frozen,
               eval_fn=evaluate)
    if not hist.evals or hist.evals[-1]["step"] != hist.steps[-1]:
        module.eval()
        with torch.no_grad():
            hist.evals.append({"step": hist.steps[-1], **evaluate(module)})
    if best["state"] is not None:
        module.load_state_dict(best["state"])
    module.eval()
    out: dict[str, Any] = {"steps": hist.steps, "train_loss": hist.train_loss,
           "evals": [{"step": int(e["step"]), "val_acc": float(e["val_acc"])}
                     for e in hist.evals]}
    out["best_val_acc"] = best["acc"]
    out["best_step"] = next((e["step"] for e in out["evals"] if e["val_acc"] == best["acc"]),
                            None)
    return out


def logistic(x: np.ndarray, y: np.ndarray, rows: dict[str, np.ndarray],
             Cs: tuple[float, ...] = (0.01, 0.1, 1.0)) -> tuple[np.ndarray, dict[str, Any]]:
    """Standardised logistic regression; C chosen on the held-out slice. Returns eval preds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(x[rows["train"]])
    z = sc.transform(x).astype(np.float32)
    best: tuple[float, Any, float] | None = None
    # far more features than texts (HDC codes): the dual problem is the small one
    dual = z.shape[1] > len(rows["train"]) and np.unique(y).size == 2  # liblinear: binary
    for C in Cs:
        clf = (LogisticRegression(C=C, solver="liblinear", dual=True, max_iter=500) if dual
               else LogisticRegression(C=C, max_iter=500))
        clf.fit(z[rows["train"]], y[rows["train"]])
        acc = float((clf.predict(z[rows["val"]]) == y[rows["val"]]).mean())
        if best is None or acc > best[0]:
            best = (acc, clf, C)
    assert best is not None
    return best[1].predict(z[rows["eval"]]), {"C": best[2], "val_acc": best[0]}


# --------------------------------------------------------------------------- the run
class HeaderRun:
    """State shared by the arms: split, features, the prefix cache, finished cells."""

    def __init__(self, cfg: HeaderRunConfig, out: Path, report: Report) -> None:
        self.cfg, self.out, self.rep = cfg, out, report
        self.split = load_split(cfg)
        self.words = verbalizer_words(cfg, self.split.label_names)
        self.n_classes = len(self.split.label_names)
        self.y = torch.from_numpy(self.split.labels)
        self.correct: dict[str, dict[int, np.ndarray]] = {}
        self.curves: dict[str, dict[str, Any]] = {}
        self.lrs: dict[str, float] = {}

    # ------------------------------------------------------------------ heavy inputs
    def load_models(self) -> None:
        from .. import models as hmodels
        from ..inject.header import check_lm

        cfg = self.cfg
        with self.rep.timer("load models"):
            self.lm: Any = hmodels.load(cfg.model, device=cfg.device)
        if self.lm.kind != "decoder" or self.lm.module is None:
            raise InputError(f"--model {cfg.model!r} is a {self.lm.kind} model; the header "
                             "needs a causal LM (decoder) with input embeddings.")
        self.d_model = check_lm(self.lm.module)
        lm_config: Any = self.lm.module.config
        n_layers = int(lm_config.num_hidden_layers)
        if cfg.insert_layer is None:
            cfg.insert_layer = round(2 * n_layers / 3)
            self.rep.config["insert_layer"] = cfg.insert_layer
        if cfg.insert_layer >= n_layers:
            raise ConfigError(f"--insert-layer {cfg.insert_layer} is past the last block of "
                              f"{cfg.model} ({n_layers} blocks: 0..{n_layers - 1}).")
        self.layer: int = cfg.insert_layer
        from .transfer import CellStore

        self.store = CellStore(self.out / "cells.jsonl", cfg.fingerprint(), fresh=cfg.fresh)
        tok = self.lm.tokenizer
        self.verb_ids = []
        for w in self.words:
            ids = tok(w, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise ConfigError(f"verbaliser word {w!r} is {len(ids)} tokens for {cfg.model}; "
                                  "each answer word must be one token (pass --verbalizer).")
            self.verb_ids.append(ids[0])
        for p in self.lm.module.parameters():
            p.requires_grad_(False)
        self.lm.module.eval()

    def features(self) -> None:
        from .. import models as hmodels

        with self.rep.timer("embed minilm"):
            enc = hmodels.load(self.cfg.encoder, device=self.cfg.device)
            self.minilm = np.asarray(hmodels.embed(self.split.texts, enc, pooling="mean",
                                                   cache=True), dtype=np.float32)
        self._codes: dict[int, torch.Tensor] = {}

    def hdc_codes(self, seed: int) -> torch.Tensor:
        """Ternary codes ``[N, hdc_dim]`` int8; projection drawn from ``seed``, fitted on train."""
        from ..hdc import TernaryEncoder

        if seed not in self._codes:
            enc = TernaryEncoder(dim=self.cfg.hdc_dim, threshold="quantile",
                                 sparsity=self.cfg.sparsity, seed=seed)
            enc.fit(self.minilm[self.split.rows["train"]])
            out = enc.transform(self.minilm)
            assert isinstance(out, torch.Tensor)
            self._codes[seed] = out
        return self._codes[seed]

    def prompts(self) -> tuple[list[list[int]], list[int]]:
        tmpl, cue, _ = PROMPTS.get(self.cfg.dataset, PROMPTS["sst2"])
        tok = self.lm.tokenizer
        head, tail = tmpl.split("{text}")
        h_ids = tok(head, add_special_tokens=True)["input_ids"]
        t_ids = tok(tail, add_special_tokens=False)["input_ids"] if tail else []
        body = tok(self.split.texts, add_special_tokens=False, truncation=True,
                   max_length=self.cfg.max_tokens)["input_ids"]
        return [h_ids + b + t_ids for b in body], tok(cue, add_special_tokens=False)["input_ids"]

    def prefix_cache(self) -> Any:
        from ..inject.prefix_cache import PrefixCache

        cfg = self.cfg
        prefix, cue = self.prompts()
        self.prefix_ids, self.cue_ids = prefix, cue
        layer = self.layer
        key = stable_hash(self.lm.identity(), prefix, cue, self.verb_ids, layer, cfg.kv_dtype,
                          length=24)
        path = cache_dir("header") / f"prefix-{key}.safetensors"
        dtype = getattr(torch, cfg.kv_dtype)
        with self.rep.timer("prefix cache"):
            if path.exists():
                pc = PrefixCache.load(path, self.lm.module, cue, self.verb_ids, layer=layer)
                self.rep.data["prefix_cache"] = {"file": str(path), "reused": True}
            else:
                pc = PrefixCache(self.lm.module, prefix, cue, self.verb_ids, kv_dtype=dtype,
                                 layer=layer, extra_tokens=cfg.k)
                pc.save(path)
                self.rep.data["prefix_cache"] = {"file": str(path), "reused": False}
        self.rep.data["prefix_cache"].update({
            "MB": pc.nbytes / 1e6, "prefix_tokens": int(pc.lengths.sum()),
            "suffix_tokens_per_text": cfg.k + len(cue), "insert_layer": layer})
        self.pc = pc
        return pc

    # ------------------------------------------------------------------ helpers
    def baseline_head_path(self, seed: int) -> Path:
        return self.out / f"baseline-head-seed{seed}.safetensors"

    def record(self, arm: str, seed: int, pred: np.ndarray, extra: dict[str, Any] | None = None
               ) -> dict[str, Any]:
        y = self.split.labels[self.split.rows["eval"]]
        c = (np.asarray(pred) == y)
        return {"correct": c.astype(int).tolist(), **(extra or {})}

    def cell(self, arm: str, seed: int, compute: Any) -> None:
        key = {"arm": arm, "seed": seed}
        done = self.store.get(key)
        if done is None:
            t0 = time.perf_counter()
            with self.rep.timer(f"arm:{arm}"):
                done = compute()
            done["seconds"] = time.perf_counter() - t0
            self.store.put(key, done)
        self.correct.setdefault(arm, {})[seed] = np.asarray(done["correct"], dtype=bool)
        if "curve" in done:
            self.curves.setdefault(arm, {})[str(seed)] = done["curve"]


# --------------------------------------------------------------------------- stage A
def stage_a(run: HeaderRun) -> None:
    cfg, sp, pc = run.cfg, run.split, run.pc
    r = sp.rows
    y = sp.labels
    last = pc.states[-1].numpy()
    ytr = torch.from_numpy(y[r["train"]])

    def head_arm(x: np.ndarray, seed: int, save: Path | None = None) -> dict[str, Any]:
        xt = torch.from_numpy(x).float()
        torch.manual_seed(seed)
        head = Head(xt[r["train"]].mean(0), xt[r["train"]].std(0), run.n_classes)
        xtr, xva = xt[r["train"]], xt[r["val"]]

        def loss_fn(rows: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(head(xtr[rows]), ytr[rows])

        def val() -> float:
            with torch.no_grad():
                return float((head(xva).argmax(1).numpy() == y[r["val"]]).mean())

        n = len(r["train"])
        steps = 40 * math.ceil(n / cfg.batch_size)  # 40 epochs; the best on val is kept
        hist = train_loop(head, loss_fn, n, lr=cfg.head_lr, param_lr={}, steps=steps,
                          batch_size=cfg.batch_size, seed=seed, eval_fn=val,
                          eval_every=math.ceil(n / cfg.batch_size))
        with torch.no_grad():
            pred = head(xt[r["eval"]]).argmax(1).numpy()
        if save is not None:  # the baseline head warm-starts the head of the stage B arms
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(save))
        return run.record("", seed, pred, {"best_step": hist.get("best_step"),
                                           "val_acc": hist["best_val_acc"]})

    fused = np.concatenate([last, run.minilm], axis=1)
    for seed in cfg.seeds:
        path = run.baseline_head_path(seed)
        if not path.exists():
            run.store.cells.pop(run.store.cell_id({"arm": "baseline", "seed": seed}), None)
        run.cell("baseline", seed, lambda s=seed, p=path: head_arm(last, s, p))
        run.cell("fusion", seed, lambda s=seed: head_arm(fused, s))
        run.cell("hdc-logistic", seed, lambda s=seed: run.record(
            "", s, *logistic(run.hdc_codes(s).float().numpy(), y, r)))
    s0 = cfg.seeds[0]
    run.cell("logistic", s0, lambda: run.record("", s0, *logistic(last, y, r)))
    run.cell("minilm", s0, lambda: run.record("", s0, *logistic(run.minilm, y, r)))
    zs = pc.verb_logits.numpy()
    run.cell("zeroshot", s0, lambda: run.record("", s0, zs[r["eval"]].argmax(1)))
    # calibration: a logistic map of the verbaliser logits, fitted on training texts only
    run.cell("zeroshot-cal", s0, lambda: run.record("", s0, *logistic(zs, y, r,
                                                                        Cs=(1.0, 100.0))))

    def layers() -> dict[str, Any]:
        val_acc, ev_acc, preds = [], [], []
        for li in range(pc.states.shape[0]):
            pred, info = logistic(pc.states[li].numpy(), y, r, Cs=(0.1,))
            val_acc.append(info["val_acc"])
            ev_acc.append(float((pred == y[r["eval"]]).mean()))
            preds.append(pred)
        best = int(np.argmax(val_acc))
        return run.record("", s0, preds[best], {"best_layer": best, "val_acc": val_acc,
                                                "eval_acc": ev_acc})

    run.cell("best-layer", s0, layers)
    for arm in ("logistic", "minilm", "zeroshot", "zeroshot-cal", "best-layer"):
        for seed in cfg.seeds[1:]:  # deterministic arms: the same answers under every seed
            run.correct[arm][seed] = run.correct[arm][s0]


# --------------------------------------------------------------------------- stage B
def _codes_for(run: HeaderRun, arm: str, seed: int) -> torch.Tensor | None:
    """Per-text inputs of an arm's header ``[N, D]`` (None for input-independent prompts)."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    if arm in ("hdc", "lm-hdc"):
        return run.hdc_codes(seed)
    if arm == "float":
        return torch.from_numpy(run.minilm)
    if arm == "shuffled":
        codes = run.hdc_codes(seed)
        perm = torch.arange(codes.shape[0])
        for rows in run.split.rows.values():  # permute within each part of the split
            t = torch.from_numpy(rows)
            perm[t] = t[torch.randperm(t.numel(), generator=gen)]
        return codes[perm]
    if arm == "random":
        n, d = run.hdc_codes(seed).shape
        nz = int(round((1 - run.cfg.sparsity) * d))
        out = torch.zeros(n, d, dtype=torch.int8)
        idx = torch.rand(n, d, generator=gen).argsort(dim=1)[:, :nz]
        sign = torch.randint(0, 2, (n, nz), generator=gen, dtype=torch.int8) * 2 - 1
        out.scatter_(1, idx, sign)
        return out
    return None


class Arm(nn.Module):
    """Header (or static prompt) + head, or the LM's verbaliser logits."""

    def __init__(self, run: HeaderRun, arm: str, seed: int) -> None:
        from ..inject.header import HeaderConfig, SemanticHeader, embedding_norm

        super().__init__()
        cfg, pc = run.cfg, run.pc
        torch.manual_seed(seed)
        self.run_, self.arm = run, arm
        self.codes = _codes_for(run, arm, seed)
        self.lm_side = arm.startswith("lm-")
        variant = {"prompt": "static", "lm-static": "static", "lm-hdc": "gated"}.get(
            arm, cfg.variant)
        width = 1 if self.codes is None else int(self.codes.shape[1])
        train_rows = torch.from_numpy(run.split.rows["train"])
        if run.layer > 0:
            ref = pc.cue_states[train_rows]  # [n, c, d] residual stream at the insert layer
        else:
            emb = run.lm.module.get_input_embeddings()
            with torch.no_grad():
                ref = emb(pc.cue.to(pc.device))[None].float().cpu()
        # through the embedding module at layer 0, so a scaled embedding (Gemma 3) is matched
        norm = (float(ref.norm(dim=-1).mean()) if run.layer > 0 else
                embedding_norm(run.lm.module, pc.cue))
        hc = HeaderConfig(code_dim=width, d_model=run.d_model, k=cfg.k, variant=variant,
                          placement="cue", cue_len=len(run.cue_ids), target_norm=norm,
                          code_kind="float" if arm == "float" else "ternary")
        self.header = SemanticHeader(hc)
        if variant in ("static", "gated"):
            base = ref.mean(0)  # the cue's own vectors, cycled to k
            self.header.init_prompt(base[torch.arange(cfg.k) % base.shape[0]])
        self.head = None if self.lm_side else Head(pc.states[-1, train_rows].mean(0),
                                                   pc.states[-1, train_rows].std(0),
                                                   run.n_classes)
        warm = run.baseline_head_path(seed)
        if self.head is not None and warm.exists():  # start from the trained baseline head
            from safetensors.torch import load_file

            self.head.load_state_dict(load_file(str(warm)))

    def forward(self, rows: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        codes = self.codes if codes is None else codes
        n = rows.numel()
        pseudo = self.header(n if codes is None else codes[rows])
        h = self.run_.pc.suffix_forward(rows, pseudo)
        if self.head is not None:
            return self.head(h)
        return self.run_.pc.label_logits(h)

    def predict(self, rows: np.ndarray, codes: torch.Tensor | None = None,
                batch: int = 64) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(rows), batch):
                out.append(self(torch.from_numpy(rows[i: i + batch]), codes).argmax(1))
        return torch.cat(out).numpy()


def arm_b(run: HeaderRun, arm: str, seed: int, lr: float,
          search: bool = False) -> dict[str, Any]:
    """Train one stage B arm; ``search=True`` scores only the held-out slice (no evaluation)."""
    cfg, sp = run.cfg, run.split
    r = sp.rows
    model = Arm(run, arm, seed)
    train_rows = torch.from_numpy(r["train"])

    def loss_fn(rows: torch.Tensor) -> torch.Tensor:
        gl = train_rows[rows]
        return nn.functional.cross_entropy(model(gl), run.y[gl])

    def val() -> float:
        return float((model.predict(r["val"]) == sp.labels[r["val"]]).mean())

    t0 = time.perf_counter()
    hist = train_loop(model, loss_fn, len(r["train"]), lr=lr,
                      param_lr={"head.*": cfg.head_lr}, steps=cfg.steps,
                      batch_size=cfg.batch_size, seed=seed, eval_fn=val,
                      eval_every=cfg.eval_every, frozen=run.lm.module)
    t1 = time.perf_counter()
    if search:  # the evaluation texts are never touched while choosing
        vals = [e["val_acc"] for e in hist["evals"]]
        return {"best_val_acc": hist["best_val_acc"], "mean_val_acc": float(np.mean(vals)),
                "best_step": hist["best_step"], "lr": lr, "train_s": t1 - t0}
    pred = model.predict(r["eval"])
    out = run.record("", seed, pred, {"curve": hist, "train_s": t1 - t0, "lr": lr,
                                      "eval_s": time.perf_counter() - t1})
    if arm == "hdc":
        # test-time ablation: the trained header fed codes permuted across evaluation texts
        assert model.codes is not None
        gen = torch.Generator().manual_seed(20_000 + seed)
        ev = torch.from_numpy(r["eval"])
        perm = torch.arange(model.codes.shape[0])
        perm[ev] = ev[torch.randperm(ev.numel(), generator=gen)]
        pa = model.predict(r["eval"], codes=model.codes[perm])
        y = sp.labels[r["eval"]]
        out["ablate_correct"] = (pa == y).astype(int).tolist()
        if model.header.config.variant != "static":
            from ..inject import save_adapter

            save_adapter(model.header, run.out / f"header-{arm}-seed{seed}.safetensors",
                         model=run.lm)
    return out


#: the arm whose held-out accuracy picks the header learning rate of each family of arms
LR_FAMILIES: dict[str, tuple[str, ...]] = {
    "hdc": ("hdc", "float", "shuffled", "random"), "prompt": ("prompt",),
    "lm-static": ("lm-static",), "lm-hdc": ("lm-hdc",)}


def choose_lrs(run: HeaderRun) -> dict[str, float]:
    """Header learning rate per stage B arm, chosen on the held-out slice of the training set.

    For each family in :data:`LR_FAMILIES` that has an arm to run, its first arm is trained
    at every ``--lr-grid`` value (first seed, the same steps); the value with the best
    held-out accuracy (ties: the better mean over the run's evaluations) serves the whole
    family in every seed. The evaluation texts play no part. An empty grid uses ``--lr``.
    """
    cfg = run.cfg
    grid = list(cfg.lr_grid)
    chosen: dict[str, float] = {}
    search: dict[str, Any] = {}
    s0 = cfg.seeds[0]
    for probe, family in LR_FAMILIES.items():
        todo = [a for a in family if a in cfg.arms]
        if not todo:
            continue
        if len(grid) <= 1:
            best = grid[0] if grid else cfg.lr
        else:
            scores: dict[float, dict[str, Any]] = {}
            for lr in grid:
                key = {"arm": f"lr-search:{probe}", "lr": lr, "seed": s0}
                rec = run.store.get(key)
                if rec is None:
                    t0 = time.perf_counter()
                    with run.rep.timer(f"lr search:{probe}"):
                        rec = arm_b(run, probe, s0, lr, search=True)
                    rec["seconds"] = time.perf_counter() - t0
                    run.store.put(key, rec)
                scores[lr] = rec
            best = max(grid, key=lambda x: (scores[x]["best_val_acc"], scores[x]["mean_val_acc"]))
            search[probe] = {"grid": grid, "chosen": best, "arms": todo,
                             "val_acc": [scores[x]["best_val_acc"] for x in grid],
                             "seconds": float(sum(scores[x]["seconds"] for x in grid))}
        for a in todo:
            chosen[a] = best
    run.rep.data["lr_search"] = search
    run.lrs = chosen
    return chosen


def stage_b(run: HeaderRun) -> None:
    lrs = choose_lrs(run)
    for seed in run.cfg.seeds:
        for arm in run.cfg.arms:
            run.cell(arm, seed, lambda a=arm, s=seed: arm_b(run, a, s, lrs[a]))
            if arm == "hdc":
                rec = run.store.get({"arm": "hdc", "seed": seed})
                if rec is not None and "ablate_correct" in rec:
                    run.correct.setdefault("hdc-ablate", {})[seed] = np.asarray(
                        rec["ablate_correct"], dtype=bool)
        write_report(run)
        run.rep.save()  # a complete report of what has finished, after every seed


# --------------------------------------------------------------------------- summary
def summarise(run: HeaderRun) -> dict[str, Any]:
    cfg = run.cfg
    base = run.correct.get("baseline", {})
    seeds = cfg.seeds
    table: dict[str, Any] = {}
    for arm, per in run.correct.items():
        accs = [float(per[s].mean()) for s in seeds if s in per]
        if not accs:
            continue
        rec: dict[str, Any] = {"per_seed": accs}
        rec["acc"] = (t_interval(accs) if len(set(accs)) > 1 else
                      bootstrap_ci(per[seeds[0]].astype(float), n_boot=cfg.n_boot)).as_dict()
        if base and arm != "baseline":
            diffs = [paired_bootstrap(per[s].astype(float), base[s].astype(float),
                                      n_boot=cfg.n_boot, seed=s) for s in seeds
                     if s in per and s in base]
            mc = [mcnemar(per[s], base[s]) for s in seeds if s in per and s in base]
            rec["vs_baseline"] = [d.as_dict() for d in diffs]
            rec["mcnemar_p"] = [float(p) for _, p in mc]
        table[arm] = rec
    return table


def beats(run: HeaderRun, a: str, b: str, margin: float = 0.0) -> tuple[bool, list[Any]]:
    """In every seed: mean(a) - mean(b) >= margin and the paired 95 % interval above 0."""
    ca, cb = run.correct.get(a, {}), run.correct.get(b, {})
    res = []
    ok = bool(ca) and bool(cb)
    for s in run.cfg.seeds:
        if s not in ca or s not in cb:
            ok = False
            continue
        d = paired_bootstrap(ca[s].astype(float), cb[s].astype(float), n_boot=run.cfg.n_boot,
                             seed=s)
        res.append(d)
        ok = ok and d.value >= margin and d.lo > 0
    return ok, res


def verdict(run: HeaderRun) -> str:
    if "hdc" not in run.correct or "baseline" not in run.correct:
        return "not decided: the HDC header arm or the baseline did not run."
    ok_base, d_base = beats(run, "hdc", "baseline", margin=0.02)
    ok_shuf, _ = beats(run, "hdc", "shuffled")
    ok_prompt, _ = beats(run, "hdc", "prompt")
    ok_fusion, _ = beats(run, "hdc", "fusion")
    mean_d = float(np.mean([d.value for d in d_base])) if d_base else float("nan")
    parts = [f"HDC header vs baseline: {mean_d:+.3f} mean over seeds "
             f"(per-seed paired 95 % CIs: "
             + ", ".join(f"[{d.lo:+.3f}, {d.hi:+.3f}]" for d in d_base) + ")."]
    helps = ok_base and ok_shuf and ok_prompt
    if helps:
        parts.append("The header HELPS by the rule (>= 2 points over the baseline with the "
                     "paired CI above 0 in every seed, and it beats the shuffled-code and "
                     "prompt-tuning controls).")
    else:
        why = []
        if not ok_base:
            why.append("it is not >= 2 points above the baseline with the CI above 0 in every "
                       "seed")
        for arm, name in (("shuffled", "the shuffled-code control"),
                          ("prompt", "input-independent prompt tuning")):
            ok = ok_shuf if arm == "shuffled" else ok_prompt
            if arm not in run.correct:
                why.append(f"{name} did not run, so the header cannot be shown to beat it")
            elif not ok:
                why.append(f"it does not beat {name} in every seed")
        parts.append("The header does NOT help by the rule: " + "; ".join(why) + ".")
    if "fusion" in run.correct and not ok_fusion:
        fus_up, _ = beats(run, "fusion", "baseline")
        if fus_up:
            parts.append("It does not beat late fusion either: MiniLM's features help (late "
                         "fusion beats the baseline), but the header route adds nothing.")
        else:
            parts.append("It does not beat late fusion, which itself is not above the "
                         "baseline in every seed.")
    return " ".join(parts)


def arm_seconds(run: HeaderRun, arm: str) -> float:
    """Mean wall time of an arm's cells over seeds (a test-time ablation shares its arm's)."""
    base = "hdc" if arm == "hdc-ablate" else arm
    secs = [rec["result"].get("seconds", float("nan")) for rec in run.store.cells.values()
            if rec["key"].get("arm") == base and rec["key"].get("seed") in run.cfg.seeds]
    return float(np.mean(secs)) if secs else float("nan")


def write_report(run: HeaderRun) -> None:
    cfg, rep = run.cfg, run.rep
    rep.sections.clear()  # rewritten from the cells each time (after every seed, at the end)
    table = summarise(run)
    rep.data["arms"] = table
    rows, cats, vals, los, his = [], [], [], [], []
    order = [a for a in ARM_TITLES if a in table]
    for arm in order:
        rec = table[arm]
        acc = rec["acc"]
        vb = rec.get("vs_baseline", [])
        dmean = np.mean([d["value"] for d in vb]) if vb else float("nan")
        dlo = min((d["lo"] for d in vb), default=float("nan"))
        dhi = max((d["hi"] for d in vb), default=float("nan"))
        pmax = max(rec.get("mcnemar_p", [float("nan")]))
        secs = arm_seconds(run, arm)
        rows.append([ARM_TITLES[arm], f"{acc['value']:.3f} [{acc['lo']:.3f}, {acc['hi']:.3f}]",
                     " ".join(f"{a:.3f}" for a in rec["per_seed"]),
                     "" if not vb else f"{dmean:+.3f} [{dlo:+.3f}, {dhi:+.3f}]",
                     "" if not vb else f"{pmax:.3g}", f"{secs:.0f}"])
        cats.append(arm)
        vals.append(acc["value"])
        los.append(acc["lo"])
        his.append(acc["hi"])
    y = run.split.labels[run.split.rows["eval"]]
    majority = float(np.bincount(y).max() / len(y))
    text = verdict(run)
    rep.data["verdict"] = text
    sec = rep.section(
        "Arms", f"{cfg.model} frozen, {cfg.dataset}: {cfg.n_train} training texts, {cfg.n_val} "
        f"held out for every choice (C, epoch, checkpoint), {len(y)} evaluation texts; "
        f"k = {cfg.k} pseudo-tokens before the answer cue, entering at block "
        f"{cfg.insert_layer}; {cfg.steps} steps of {cfg.batch_size}; seeds {cfg.seeds}. "
        "Accuracy: mean with a t-interval over seeds (a bootstrap over items for deterministic "
        "arms); Δ vs baseline: mean over seeds of the paired difference with the widest "
        "per-seed paired 95 % bootstrap bounds; McNemar p: the largest over seeds. "
        f"Majority class {majority:.3f}. Verdict: {text}")
    sec.table("Accuracy per arm", ["arm", "accuracy [95 % CI]", "per seed",
                                   "Δ vs baseline [paired CI]", "McNemar p",
                                   "time per seed (s)"], rows)
    sec.plot("arms.png", {"kind": "bar", "title": f"Accuracy per arm ({cfg.dataset})",
                          "ylabel": "evaluation accuracy", "categories": cats,
                          "series": [{"label": "accuracy", "values": vals, "lo": los,
                                      "hi": his}],
                          "hlines": [{"y": majority, "label": "majority class"}]})
    search = rep.data.get("lr_search") or {}
    if search:
        rep.section("Learning-rate search", "Header learning rate of each family of stage B "
                    f"arms, chosen by held-out accuracy ({cfg.n_val} texts of the training "
                    f"split, seed {cfg.seeds[0]}, {cfg.steps} steps); the evaluation texts take "
                    "no part.").table(
            "Held-out accuracy per learning rate",
            ["searched on", "serves", *[f"lr {x:g}" for x in next(iter(search.values()))["grid"]],
             "chosen", "time (s)"],
            [[probe, " ".join(v["arms"]), *[f"{a:.3f}" for a in v["val_acc"]],
              f"{v['chosen']:g}", f"{v['seconds']:.0f}"] for probe, v in search.items()])
    bl = run.store.get({"arm": "best-layer", "seed": cfg.seeds[0]})
    if bl is not None:
        x = list(range(len(bl["val_acc"])))
        rep.section("Per-layer probes", "Logistic probe on the prompt's last-position state of "
                    "each layer (hidden.0 = embeddings).").plot("layers.png", {
                        "kind": "line", "title": "Probe accuracy per layer", "xlabel": "layer",
                        "ylabel": "accuracy", "series": [
                            {"label": "held-out slice", "x": x, "y": bl["val_acc"]},
                            {"label": "evaluation", "x": x, "y": bl["eval_acc"]}]})
    if run.curves:
        series_loss, series_val = [], []
        for arm, per in run.curves.items():
            c = per.get(str(cfg.seeds[0]))
            if not c:
                continue
            series_loss.append({"label": arm, "x": c["steps"], "y": c["train_loss"]})
            series_val.append({"label": arm, "x": [e["step"] for e in c["evals"]],
                               "y": [e["val_acc"] for e in c["evals"]]})
        s = rep.section("Training curves", f"Stage B, seed {cfg.seeds[0]}: training loss per "
                        "step and held-out accuracy at each evaluation.")
        s.plot("train_loss.png", {"kind": "line", "title": "Training loss", "xlabel": "step",
                                  "ylabel": "cross-entropy", "series": series_loss})
        s.plot("val_acc.png", {"kind": "line", "title": "Held-out accuracy", "xlabel": "step",
                               "ylabel": "accuracy", "series": series_val})
        rep.data["curves"] = run.curves
    rep.summary([["verdict", text]] + [[ARM_TITLES[a], f"{table[a]['acc']['value']:.3f}"]
                                        for a in order])


def run_header(cfg: HeaderRunConfig, out: Path, *, seed: int = 0) -> Path:
    """Validate, build the inputs, run the stages, write the report; returns the folder."""
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = set_threads(cfg.threads)
    rep = Report("header", asdict(cfg), out_dir=out, seed=seed, device=cfg.device,
                 description="Semantic header: codes of a text as pseudo-tokens for a frozen "
                             "causal LM, against the controls that say whether it helps.")
    rep.data["threads"] = threads
    run = HeaderRun(cfg, out, rep)  # data and verbaliser checks, before any model loads
    if cfg.placement == "prefix":
        raise ConfigError("--placement prefix (full depth) is available in Python through "
                          "hyperlens.inject.attach; this command trains the cached cue header.")
    run.load_models()
    run.features()
    run.prefix_cache()
    rep.data["split"] = {k: int(len(v)) for k, v in run.split.rows.items()}
    if "A" in cfg.stages:
        with rep.timer("stage A"):
            stage_a(run)
    if "B" in cfg.stages:
        with rep.timer("stage B"):
            stage_b(run)
    write_report(run)
    return rep.save()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = HeaderRunConfig()
    p.add_argument("--dataset", default=d.dataset, help="sst2 (default) | agnews | a file")
    p.add_argument("--data-dir", default=None, help="folder holding sst2/ and agnews/")
    p.add_argument("--model", default=d.model,
                   help="frozen causal LM: smollm2 (default), gemma3 or an HF id")
    p.add_argument("--encoder", default=d.encoder, help="sentence encoder for the codes")
    p.add_argument("--n-train", type=positive_int, default=d.n_train,
                   help=f"training texts ({d.n_train})")
    p.add_argument("--n-val", type=positive_int, default=d.n_val,
                   help=f"held-out training texts for every choice ({d.n_val})")
    p.add_argument("--n-eval", type=nonnegative_int, default=d.n_eval,
                   help="evaluation texts (0: all 872 SST-2 dev; AG News 1000)")
    p.add_argument("--seeds", nargs="+", type=nonnegative_int, default=d.seeds)
    p.add_argument("--stages", nargs="+", default=d.stages, choices=["A", "B"])
    p.add_argument("--arms", nargs="+", default=d.arms, choices=list(ARMS_B),
                   help="stage B arms")
    p.add_argument("--k", type=positive_int, default=d.k, help=f"pseudo-tokens ({d.k})")
    p.add_argument("--variant", default=d.variant, choices=["mlp", "projector", "gated"],
                   help="header of the head arms (projector)")
    p.add_argument("--placement", default=d.placement, choices=["cue", "prefix"])
    p.add_argument("--insert-layer", type=nonnegative_int, default=d.insert_layer,
                   help="block where the header enters (0 = input embeddings, full depth; "
                        "default: two thirds of the depth)")
    p.add_argument("--hdc-dim", type=positive_int, default=d.hdc_dim)
    p.add_argument("--sparsity", type=unit_fraction, default=d.sparsity)
    p.add_argument("--steps", type=positive_int, default=d.steps,
                   help=f"training steps per arm ({d.steps})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--lr-grid", nargs="*", type=positive_float, default=d.lr_grid,
                   help="header learning rates tried on the held-out slice (default: "
                        f"{' '.join(f'{x:g}' for x in d.lr_grid)}; none: use --lr)")
    p.add_argument("--lr", type=positive_float, default=d.lr,
                   help="header learning rate when --lr-grid is empty (1e-2)")
    p.add_argument("--head-lr", type=positive_float, default=d.head_lr)
    p.add_argument("--eval-every", type=positive_int, default=d.eval_every,
                   help="steps between held-out evaluations (checkpoint choice)")
    p.add_argument("--max-tokens", type=positive_int, default=d.max_tokens,
                   help="text tokens kept")
    p.add_argument("--verbalizer", nargs="+", default=None, help="one answer word per class")
    p.add_argument("--kv-dtype", default=d.kv_dtype, choices=["float16", "bfloat16", "float32"])
    p.add_argument("--threads", default=d.threads, help="torch threads: auto | N")
    p.add_argument("--n-boot", type=positive_int, default=d.n_boot)
    p.add_argument("--fresh", action="store_true", help="ignore finished cells in OUT")


def config_from_args(args: argparse.Namespace) -> HeaderRunConfig:
    fields_ = HeaderRunConfig.__dataclass_fields__
    values = {k: getattr(args, k) for k in fields_ if hasattr(args, k)}
    if values.get("device") == "auto":
        values["device"] = "cpu"
    return HeaderRunConfig(**values)


def check_inputs(cfg: HeaderRunConfig) -> None:
    """Checks that need the dataset's labels or the zoo's record of a model, not the model.

    Raises :class:`ConfigError` / :class:`InputError` for a named model without input
    embeddings (an encoder or static vectors), an insert layer past a named model's last
    block, or labels that are not the verbaliser's.
    """
    from .. import models as hmodels

    cfg.validate()
    rows = {r["name"]: r for r in hmodels.list_models()}
    entry = rows.get(str(cfg.model).strip().lower())
    if entry is not None:
        if entry["kind"] != "decoder":
            decoders = sorted(n for n, r in rows.items() if r["kind"] == "decoder")
            raise InputError(f"--model {cfg.model!r} is a {entry['kind']} model without input "
                             "embeddings a causal LM reads pseudo-tokens through; use a "
                             f"causal LM: {', '.join(decoders)} or an HF id.")
        if cfg.insert_layer is not None and cfg.insert_layer >= entry["layers"]:
            raise ConfigError(f"--insert-layer {cfg.insert_layer} is past the last block of "
                              f"{cfg.model} ({entry['layers']} blocks: 0..{entry['layers'] - 1}).")
    verbalizer_words(cfg, label_names_of(cfg))


def validate(args: argparse.Namespace) -> None:
    """Checks across options, the labels and the model's kind, before any model is loaded."""
    check_inputs(config_from_args(args))


def main(args: argparse.Namespace) -> Path:
    cfg = config_from_args(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out if args.out is not None else Path("runs") / f"header-{stamp}"
    return run_header(cfg, Path(out), seed=int(getattr(args, "seed", 0)))


def tour_section(report: Report, *, seed: int = 0, device: str = "cpu") -> None:
    """Stage A at a glance on the tour's dataset: cached LM states, no training through the LM.

    400 texts (200 train, 100 held out, 100 evaluation) of the tour's dataset
    (rotten-tomatoes by default), one seed. `hyperlens header` runs both stages.
    """
    conf = report.config or {}
    dataset = str(conf.get("dataset", "rotten-tomatoes"))
    if dataset not in PROMPTS:
        dataset = "rotten-tomatoes"
    cfg = HeaderRunConfig(dataset=dataset, data_dir=conf.get("data_dir"), n_train=200,
                          n_val=100, n_eval=100, seeds=[seed], stages=["A"], device=device)
    cfg.validate()
    out = Path(report.out_dir) / "header"
    out.mkdir(parents=True, exist_ok=True)
    sub = Report("header", asdict(cfg), out_dir=out, seed=seed, device=device)
    run = HeaderRun(cfg, out, sub)
    with report.timer("header:stage A"):
        run.load_models()
        run.features()
        run.prefix_cache()
        stage_a(run)
    table = summarise(run)
    rows = [[ARM_TITLES[a], f"{table[a]['acc']['value']:.3f}",
             f"[{table[a]['acc']['lo']:.3f}, {table[a]['acc']['hi']:.3f}]"]
            for a in ARM_TITLES if a in table]
    report.section(
        "Semantic header (stage A)",
        f"The cached arms of `hyperlens header` on {dataset} ({cfg.n_train} training texts, "
        f"{cfg.n_val} held out for every choice, {cfg.n_eval} evaluation texts, one seed, "
        f"{cfg.model}): the classifier head and probes on the prompt's last hidden state, "
        "MiniLM and HDC probes, late fusion and the LM's zero-shot answer (95 % bootstrap "
        "intervals over texts). `hyperlens header` adds the headers trained through the "
        "frozen LM and their controls.").table("Stage A", ["arm", "accuracy", "95 % CI"], rows)
