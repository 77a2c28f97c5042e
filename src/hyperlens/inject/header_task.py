"""The classification task of a semantic header study: prompts, arms, split and settings.

A frozen causal LM reads ``{prefix}{text}`` + header + ``{cue}`` and answers with a class
(through a classifier head on its last state, or with the verbaliser word of the class).
This module holds what the arms share before any model loads: the built-in prompts and
verbalisers (:data:`PROMPTS`), the names of the arms, the settings of one study
(:class:`HeaderProtocol`), the split of the texts (:func:`load_split`) and the checks that
need only the dataset's labels or the zoo's record of a model (:func:`check_header_inputs`).
:mod:`hyperlens.inject.header_arms` trains and scores the arms.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..utils import stable_hash

__all__ = ["PROMPTS", "ARMS_B", "FULL_DEPTH", "FROM_RECON", "PRESENT_ONLY", "ARM_TITLES",
           "TEXT_MODES", "ABLATED", "LR_FAMILIES", "HeaderProtocol", "Split", "load_split",
           "label_names_of", "verbalizer_words", "check_header_inputs", "competing_runnable",
           "set_threads"]


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
#: the arms trained through the frozen LM (stage B)
ARMS_B = ("hdc", "hdc-frozen", "float", "shuffled", "random", "prompt", "lm-static", "lm-hdc",
          "hdc-recon", "hdc-prefix")
#: the stage B arms that run the whole prompt through the LM on every step (the seed's
#: full-depth prefix at layer 0: nothing can be cached): trained on a subset of the training
#: texts (``prefix_texts``) and run only when asked for
FULL_DEPTH = ("hdc-prefix",)
#: the stage B arms that start from the stage R (reconstruction) header: they need stage R in
#: the same run, the projector header and the header at the input embeddings (layer 0)
FROM_RECON = ("hdc-recon",)
#: the stage B arms that need the text in the prompt (they keep stage A's trained head)
PRESENT_ONLY = ("hdc-frozen",)
ARM_TITLES = {
    "baseline": "A: head on LM state (baseline)", "logistic": "A: logistic on LM state",
    "minilm": "A: MiniLM float -> logistic", "hdc-logistic": "A: HDC -> logistic",
    "fusion": "A: late fusion [LM; MiniLM] -> head", "zeroshot": "A: zero-shot (raw)",
    "zeroshot-cal": "A: zero-shot (calibrated)", "best-layer": "A: best layer probe (by val)",
    "hdc": "B: HDC header + head", "hdc-frozen": "B: HDC header, baseline head frozen",
    "hdc-recon": "B: HDC header from reconstruction (stage R) + head",
    "hdc-prefix": "B: HDC header as a full-depth prefix at layer 0 (the seed's form) + head",
    "float": "B: float header + head",
    "shuffled": "B: shuffled HDC header + head", "random": "B: random ternary codes + head",
    "prompt": "B: prompt tuning (static k) + head", "lm-static": "B: LM answer, static prompt",
    "lm-hdc": "B: LM answer, gated HDC header", "hdc-ablate": "B: HDC header fed shuffled codes",
    "lm-hdc-ablate": "B: LM answer, gated HDC fed shuffled codes",
    "notext": "A: no text (the training majority: the LM's calibrated prior without the text)",
    "fulltext": "A: full text in the prompt, head on LM state (upper bound)",
    "fulltext-zs": "A: full text in the prompt, zero-shot calibrated (upper bound)",
}
#: where the text is: in the prompt beside the header (the seed's setting), or withheld so
#: that the header is its only carrier
TEXT_MODES = ("present", "withheld")
#: trained arms whose header is also fed codes permuted across evaluation texts at test time
ABLATED = ("hdc", "lm-hdc")
#: the arm whose held-out accuracy picks the header learning rate of each family of arms
LR_FAMILIES: dict[str, tuple[str, ...]] = {
    "hdc": ("hdc", "hdc-frozen", "hdc-recon", "hdc-prefix", "float", "shuffled", "random"),
    "prompt": ("prompt",),
    "lm-static": ("lm-static",), "lm-hdc": ("lm-hdc",)}


@dataclass(frozen=True)
class HeaderProtocol:
    """The settings of one header study (``hyperlens header`` builds it from its options).

    ``base_seed`` (the run's ``--seed``) draws the training pool, its held-out slice, any
    evaluation subset and the bootstrap over texts of the arms that run once; each of
    ``seeds`` (the replicates) redraws the HDC projection, the initialisations and the
    batch order. ``insert_layer=None`` lets the run pick two thirds of the depth.
    """

    dataset: str = "sst2"
    data_dir: str | None = None
    model: str = "smollm2"
    encoder: str = "minilm"
    n_train: int = 640
    n_val: int = 160
    n_eval: int = 0  # 0: all SST-2 dev sentences (872); AG News: 1000 test articles
    seeds: tuple[int, ...] = (0, 1, 2)
    stages: tuple[str, ...] = ("A", "B")
    arms: tuple[str, ...] = tuple(a for a in ARMS_B if a not in FULL_DEPTH)
    k: int = 4
    variant: str = "projector"
    insert_layer: int | None = None
    hdc_dim: int = 10_000
    sparsity: float = 0.7
    steps: int = 80
    batch_size: int = 16
    lr: float = 1e-2  # used when lr_grid is empty
    lr_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    head_lr: float = 1e-3
    eval_every: int = 20
    max_tokens: int = 64
    verbalizer: tuple[str, ...] | None = None
    kv_dtype: str = "float16"
    n_boot: int = 2000
    margin: float = 0.02  # the rule (text present): the gain over the baseline in every seed
    base_seed: int = 0
    device: str = "cpu"
    text: str = "present"
    patience: int | None = None  # stage B: evaluations without improvement before stopping
    weight_decay: float = 0.0  # stage B: AdamW decay of the header and head weights
    code_dropout: float = 0.0  # stage B: share of code entries zeroed per training example
    prefix_texts: int = 1000  # the full-depth arm's training texts (named in its cell key)
    dtype: str = "float32"  # the frozen LM's precision (the codes and headers stay float32)

    @property
    def withheld(self) -> bool:
        """The prompt holds the instruction and the cue but not the text."""
        return self.text == "withheld"

    def fingerprint(self) -> str:
        """What changes a finished (arm, seed) cell: everything but the seeds, the stages,
        the arms, the device and the number of resamples (the LM's precision included)."""
        keys = ("dataset", "model", "encoder", "n_train", "n_val", "n_eval", "k", "variant",
                "insert_layer", "hdc_dim", "sparsity", "steps", "batch_size", "lr", "lr_grid",
                "head_lr", "eval_every", "max_tokens", "verbalizer", "kv_dtype", "base_seed")
        extra: list[Any] = ["text-withheld"] if self.withheld else []  # else: as before
        if self.patience is not None:
            extra.append(("patience", self.patience))
        for k in ("weight_decay", "code_dropout"):  # cells of runs without them stay valid
            if getattr(self, k):
                extra.append((k, getattr(self, k)))
        if self.dtype != "float32":  # float32 runs keep the cells of the runs before --dtype
            extra.append(("dtype", self.dtype))
        return stable_hash(*[getattr(self, k) for k in keys], *extra, length=12)


class _Verbalised(Protocol):
    @property
    def dataset(self) -> str: ...

    @property
    def verbalizer(self) -> Sequence[str] | None: ...


# --------------------------------------------------------------------------- data
@dataclass
class Split:
    """Texts in the order train, held-out slice, evaluation; ``rows`` gives each part."""

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    rows: dict[str, np.ndarray]  # train / val / eval positions in texts


def load_split(p: HeaderProtocol) -> Split:
    """Training subset + held-out slice from the train split; evaluation from dev / test.

    ``p.base_seed`` draws the pool of ``n_train + n_val`` training texts, which of them are
    held out, and the evaluation subset where one is drawn (AG News, ``n_eval`` of SST-2, a
    local file's test part).
    """
    from .. import data as hdata

    seed = p.base_seed
    if p.dataset == "agnews":
        train = hdata.load("agnews", split="train", data_dir=p.data_dir)
        ev = hdata.load("agnews", split="test", data_dir=p.data_dir)
        ev = ev.subsample(p.n_eval or 1000, seed=seed)
    elif p.dataset == "sst2":
        train = hdata.load("sst2", split="train", data_dir=p.data_dir)
        ev = hdata.load("sst2", split="dev", data_dir=p.data_dir)
        if p.n_eval:
            ev = ev.subsample(p.n_eval, seed=seed)
    else:
        full = hdata.load(p.dataset, data_dir=p.data_dir)
        sp = full.split(test=p.n_eval or 0.2, seed=seed)
        train, ev = sp.train, sp.test
    ev_set = set(ev.texts)
    keep = np.array([t not in ev_set for t in train.texts])
    _, first = np.unique(np.asarray(train.texts, dtype=object), return_index=True)
    mask = np.zeros(len(train), dtype=bool)
    mask[first] = True
    train = train.select(np.flatnonzero(mask & keep))
    need = p.n_train + p.n_val
    if len(train) < need:
        raise ConfigError(f"{p.dataset} has {len(train)} usable training texts but --n-train "
                          f"+ --n-val = {need}; lower them.")
    pool = train.subsample(need, seed=seed)
    sp = pool.split(train=p.n_train, test=p.n_val, seed=seed)
    texts = list(sp.train.texts) + list(sp.test.texts) + list(ev.texts)
    labels = np.concatenate([sp.train.labels, sp.test.labels, ev.labels]).astype(np.int64)
    a, b = p.n_train, p.n_train + p.n_val
    rows = {"train": np.arange(a), "val": np.arange(a, b), "eval": np.arange(b, len(texts))}
    return Split(texts, labels, list(train.label_names), rows)


def label_names_of(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The dataset's class names, read without loading any model."""
    from .. import data as hdata

    if dataset in ("agnews", "sst2"):
        return list(hdata.load(dataset, split="test" if dataset == "agnews" else "dev",
                               data_dir=data_dir).label_names)
    return list(hdata.load(dataset, data_dir=data_dir).label_names)


def verbalizer_words(spec: _Verbalised, label_names: Sequence[str]) -> list[str]:
    """One answer word per class, in label order; raises when a class has none.

    ``spec`` has ``dataset`` (its built-in verbaliser) and ``verbalizer`` (the words given,
    or ``None``): a :class:`HeaderProtocol` or the command's config.
    """
    names = list(label_names)
    if spec.verbalizer is not None:
        if len(spec.verbalizer) != len(names):
            raise ConfigError(f"--verbalizer has {len(spec.verbalizer)} words but the dataset "
                              f"has {len(names)} classes {names}; give one each.")
        return [w if w.startswith(" ") else " " + w for w in spec.verbalizer]
    if spec.dataset not in PROMPTS:
        raise ConfigError(f"--dataset {spec.dataset!r} has no built-in prompt; use one of "
                          f"{sorted(PROMPTS)} or give --verbalizer (one word per class).")
    table = PROMPTS[spec.dataset][2]
    missing = [n for n in names if n not in table]
    if missing:
        raise ConfigError(f"labels {missing} are not the verbaliser's (it knows "
                          f"{sorted(table)}); pass --verbalizer with one word per class.")
    return [table[n] for n in names]


def check_header_inputs(p: HeaderProtocol) -> None:
    """Checks that need the dataset's labels or the zoo's record of a model, not the model.

    Raises :class:`~hyperlens.errors.InputError` for a named model without input
    embeddings (an encoder or static vectors), :class:`~hyperlens.errors.ConfigError` for
    an insert layer past a named model's last block or labels that are not the
    verbaliser's, and :class:`~hyperlens.errors.ModelNotFoundError` for a model or encoder
    that cannot be found offline.
    """
    from .. import models as hmodels

    rows = {r["name"]: r for r in hmodels.list_models()}
    entry = rows.get(str(p.model).strip().lower())
    if entry is not None:
        if entry["kind"] != "decoder":
            decoders = sorted(n for n, r in rows.items() if r["kind"] == "decoder")
            raise InputError(f"--model {p.model!r} is a {entry['kind']} model without input "
                             "embeddings a causal LM reads pseudo-tokens through; use a "
                             f"causal LM: {', '.join(decoders)} or an HF id.")
        if p.insert_layer is not None and p.insert_layer >= entry["layers"]:
            raise ConfigError(f"--insert-layer {p.insert_layer} is past the last block of "
                              f"{p.model} ({entry['layers']} blocks: 0..{entry['layers'] - 1}).")
    verbalizer_words(p, label_names_of(p.dataset, p.data_dir))
    for name in (p.model, p.encoder):
        hmodels.check_available(name)


# --------------------------------------------------------------------------- threads
def competing_runnable(samples: int = 5, interval: float = 0.02) -> int | None:
    """Runnable threads of other processes, whatever their priority: the most seen in
    ``samples`` looks ``interval`` seconds apart (a busy thread is now and then between
    time slices, so one look can miss it).

    Niced jobs count too: they do yield the CPU, but not at once, and a multi-threaded
    kernel waits at every barrier for its slowest thread. Measured on 2 cores beside one
    single-threaded job at nice 19: a 2-thread elementwise product of ``[16, 8, 576]``
    took 2.5 ms instead of 10 us (a header training step 5 s instead of 0.1 s). ``None``
    where ``/proc`` cannot be read (not Linux).
    """
    import time

    root = Path("/proc")
    if not (root / "self" / "stat").exists():
        return None
    me = os.getpid()
    most = 0
    for i in range(max(1, samples)):
        if i:
            time.sleep(interval)
        busy = 0
        for task in root.glob("[0-9]*/task/[0-9]*/stat"):
            try:
                if int(task.parts[2]) == me:
                    continue
                fields = task.read_text().rsplit(")", 1)[1].split()
            except (OSError, ValueError, IndexError):
                continue  # the task ended while we looked
            if fields[0] == "R":  # after the command name, the state is field 3 of proc(5)
                busy += 1
        most = max(most, busy)
    return most


def set_threads(n: int | None = None) -> int:
    """Set torch's CPU threads to ``n``; ``None`` uses the cores other work leaves.

    On a shared machine whose cores are all taken, multi-threaded kernels spin-wait on each
    other: a SmolLM2 suffix batch took 25 s with 2 threads and 1.3 s with one. Every
    runnable thread of another process counts, niced or not (:func:`competing_runnable`);
    without ``/proc`` the load average decides.
    """
    cores = os.cpu_count() or 1
    if n is None:
        busy = competing_runnable()
        if busy is None:
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
            n = 1 if load > cores else torch.get_num_threads()
        else:
            n = max(1, min(torch.get_num_threads(), cores - busy))
    n = max(1, int(n))
    torch.set_num_threads(n)
    return n
