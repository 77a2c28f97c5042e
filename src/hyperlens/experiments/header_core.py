"""The arms of ``hyperlens header``: configuration, split, cached LM states, stages A and B.

:mod:`hyperlens.experiments.header` (the command) summarises and reports what these
functions compute; see its docstring for the design. Everything chosen here (C of the
probes, the baseline head's epoch, checkpoints, the header learning rate) is chosen on
the held-out slice of the training split; the evaluation texts are only predicted.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..align.evaluate import select_probe
from ..errors import ConfigError, InputError
from ..report import Report
from ..utils import cache_dir, stable_hash

__all__ = ["HeaderRunConfig", "HeaderRun", "PROMPTS", "ARMS_B", "ARM_TITLES", "LR_FAMILIES",
           "load_split", "label_names_of", "verbalizer_words", "stage_a", "stage_b",
           "choose_lrs", "set_threads"]


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
    "lm-hdc-ablate": "B: LM answer, gated HDC fed shuffled codes",
}
#: trained arms whose header is also fed codes permuted across evaluation texts at test time
ABLATED = ("hdc", "lm-hdc")


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
    steps: int = 80  # two passes over the 640 training texts
    batch_size: int = 16
    lr: float = 1e-2  # used when lr_grid is empty
    lr_grid: list[float] = field(default_factory=lambda: [3e-3, 1e-2, 3e-2])
    head_lr: float = 1e-3
    eval_every: int = 20
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


def competing_runnable() -> int | None:
    """Runnable threads of other processes at normal or higher priority (nice <= 0).

    Niced jobs yield the CPU to a normal-priority run, so they do not count. ``None`` where
    ``/proc`` cannot be read (not Linux).
    """
    root = Path("/proc")
    if not (root / "self" / "stat").exists():
        return None
    me = os.getpid()
    busy = 0
    for task in root.glob("[0-9]*/task/[0-9]*/stat"):
        try:
            if int(task.parts[2]) == me:
                continue
            fields = task.read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue  # the task ended while we looked
        # after the command name: state is field 3 and nice field 19 of proc(5)
        if fields[0] == "R" and int(fields[16]) <= 0:
            busy += 1
    return busy


def set_threads(spec: str) -> int:
    """Set torch's CPU threads: ``auto`` uses the cores that normal-priority work leaves free.

    On a shared machine whose cores are all taken, multi-threaded kernels spin-wait on each
    other: a SmolLM2 suffix batch took 25 s with 2 threads and 1.3 s with one. Niced jobs
    do not count (they yield); without ``/proc`` the load average decides.
    """
    cores = os.cpu_count() or 1
    if spec == "auto":
        busy = competing_runnable()
        if busy is None:
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
            n = 1 if load > cores else torch.get_num_threads()
        else:
            n = max(1, min(torch.get_num_threads(), cores - busy))
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
            "", s, *select_probe(run.hdc_codes(s).float().numpy(), y, r)))
    s0 = cfg.seeds[0]
    run.cell("logistic", s0, lambda: run.record("", s0, *select_probe(last, y, r)))
    run.cell("minilm", s0, lambda: run.record("", s0, *select_probe(run.minilm, y, r)))
    zs = pc.verb_logits.numpy()
    run.cell("zeroshot", s0, lambda: run.record("", s0, zs[r["eval"]].argmax(1)))
    # calibration: a logistic map of the verbaliser logits, fitted on training texts only
    run.cell("zeroshot-cal", s0, lambda: run.record("", s0, *select_probe(zs, y, r,
                                                                          Cs=(1.0, 100.0))))

    def layers() -> dict[str, Any]:
        val_acc, ev_acc, preds = [], [], []
        for li in range(pc.states.shape[0]):
            pred, info = select_probe(pc.states[li].numpy(), y, r, Cs=(0.1,))
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
    if arm in ABLATED:
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


def stage_b(run: HeaderRun, after_seed: Callable[[], Any] | None = None) -> None:
    """The stage B arms, seed by seed (``after_seed()`` runs after each: the CLI's report)."""
    lrs = choose_lrs(run)
    for seed in run.cfg.seeds:
        for arm in run.cfg.arms:
            run.cell(arm, seed, lambda a=arm, s=seed: arm_b(run, a, s, lrs[a]))
            if arm in ABLATED:
                rec = run.store.get({"arm": arm, "seed": seed})
                if rec is not None and "ablate_correct" in rec:
                    run.correct.setdefault(f"{arm}-ablate", {})[seed] = np.asarray(
                        rec["ablate_correct"], dtype=bool)
        if after_seed is not None:
            after_seed()

