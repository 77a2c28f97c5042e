"""Features on disk, and training of the HyperField student, the MLP and the tuned lens.

Every gradient-trained model goes through the project's one training loop
(``hyperlens.train.fit``). Losses (per minibatch, float32 parameters):

* distillation: ``KL(teacher || student)`` over the full vocabulary at every position, plus
  ``hard * CE(next token)``; teacher logits are recomputed from the stored final state
  through the frozen unembedding (bf16 products while training when ``fast_unembed``);
  an MLP's or the transformer's forward pass in bf16 autocast with ``bf16`` (float32
  weights and loss);
  with ``shortlist`` = k > 0 the KL is taken on the batch's shortlist of the teacher's top-k
  tokens with a sampled back-off for the rest (:mod:`~hyperlens.hft.shortlist`; validation
  and evaluation stay full-vocabulary);
* Stage 1 (HyperField only): mean squared error of the aux head against the z-scored
  layer-``l`` state and q/k/v, alone while pretraining Stage 1, and with weight ``aux``
  during end-to-end fine-tuning.

Schedule of :func:`train_hyperfield`: Stage 1 alone (aux loss), Stage 2 with Stage 1
frozen (distillation), then both end to end (distillation + aux). The high-error queue
receives every batch's per-sample KL and idle tensors are reseeded every ``reseed_every``
steps.

Training to a plateau (``patience`` > 0, the default): the last ``val_share`` of the
training texts (the capture shuffled the texts, so they are a random sample of them) is a
validation slice that no model fits; every phase of every student is evaluated on it after
each epoch (KL to the teacher for the distilled phases, the aux error for Stage 1), halves
its rate after every epoch without a better value, stops after ``patience`` of them in a
row (at most ``max_epochs``) and keeps the weights of its best epoch. ``patience=0`` is the
seed's fixed schedule over every training text (``stage1_epochs``, ``stage2_epochs``,
``e2e_epochs``, ``lens_epochs``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..functional import kernels
from ..train import TrainConfig, current_step, fit
from ..utils import atomic_path, derive_seed, make_generator, progress, trim_every, trimmed
from .capture import Capture, CapturedSplit, Unembedding
from .features import Featurizer
from .model import HyperFieldModel, MLPStudent, TransformerStudent, TunedLens, distill_loss
from .rows import RowFile, RowWriter, Standardised
from .shortlist import Shortlist, shortlist_loss, teacher_targets

__all__ = ["StudentConfig", "FeatureStore", "build_model", "build_features", "aux_stats",
           "fit_rows", "train_bf16", "unembed_bf16",
           "train_hyperfield", "train_mlp", "train_tuned_lens", "train_online",
           "TrainConfig", "fit"]


@dataclass
class StudentConfig:
    """HyperField / MLP / lens training settings; ``hyperlens hft train`` takes its defaults
    from here. Each layer routes ``heads`` times and mixes ``top`` tensors per head (8 x 4,
    chosen on a validation split of the training texts with ``scripts/hft_tune.py``; 1 x 16
    is the seed's single convex mixture)."""

    d_embed: int = 1024
    k1: int = 1024
    top1: int = 4
    tau1: float = 1.0
    k2: int = 2048
    top2: int = 4
    tau2: float = 0.8
    d_route: int = 64
    heads1: int = 8
    heads2: int = 8
    lr: float = 3e-3
    mlp_lr: float = 1e-3
    lens_epochs: int = 4
    lens_lr: float = 1e-3
    batch_size: int = 256
    stage1_epochs: int = 1
    stage2_epochs: int = 2
    e2e_epochs: int = 1
    hard: float = 0.1
    aux: float = 0.1
    reseed_every: int = 50
    fast_unembed: bool | None = None  # None: bf16 products only where the CPU has native bf16
    eta: float = 0.03
    eta_g: float = 0.003
    online_epochs: int = 1
    patience: int = 3
    min_improvement: float = 0.0  # share of the best validation value an epoch must gain
    max_epochs: int = 16
    val_share: float = 0.1
    val_rows: int = 8192
    shortlist: int = 0  # > 0: train on the teacher's top-k shortlist (hft/shortlist.py)
    negatives: int = 1024
    transformer_lr: float = 3e-4
    bf16: bool | None = False  # the dense students' forward in bf16 autocast (None: auto)

    @property
    def plateau(self) -> bool:
        """Whether every phase trains to a validation plateau (else the fixed epochs)."""
        return self.patience > 0

    def validate(self) -> None:
        """Refuse settings the training would reject only after its first stage (cheap;
        :func:`build_model` and the command call it before any training)."""
        ints = {"d_embed": 1, "k1": 1, "top1": 1, "k2": 1, "top2": 1, "d_route": 1,
                "heads1": 1, "heads2": 1, "lens_epochs": 1, "batch_size": 1,
                "stage1_epochs": 1, "stage2_epochs": 1, "e2e_epochs": 0, "reseed_every": 0,
                "online_epochs": 1, "patience": 0, "max_epochs": 1, "val_rows": 1,
                "shortlist": 0, "negatives": 1}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InputError(f"{name} must be an int >= {lo}, got {v!r}.")
        for name in ("tau1", "tau2", "lr", "mlp_lr", "lens_lr", "transformer_lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 < v < float("inf")):
                raise InputError(f"{name} must be a finite number > 0, got {v!r}.")
        for name in ("hard", "aux", "eta", "eta_g"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < float("inf")):
                raise InputError(f"{name} must be a finite number >= 0, got {v!r}.")
        if not (isinstance(self.min_improvement, (int, float)) and 0 <= self.min_improvement < 1):
            raise InputError(f"min_improvement must be a number in [0, 1), got "
                             f"{self.min_improvement!r}.")
        if not (isinstance(self.val_share, (int, float)) and 0 < self.val_share < 0.5):
            raise InputError(f"val_share must be a number in (0, 0.5), got {self.val_share!r}.")
        for k, top, heads in (("k1", self.top1, self.heads1), ("k2", self.top2, self.heads2)):
            n = getattr(self, k)
            if n % heads or top > n // heads:
                raise InputError(f"{k} ({n}) must be a multiple of its routing heads ({heads}) "
                                 f"with at least top ({top}) tensors per head.")


def train_bf16(sc: Any, device: Any = "cpu") -> bool:
    """Whether the dense students (the MLPs, the transformer) train in bfloat16 autocast:
    the forward pass through the student (and so its backward) in bf16 where ``device`` has
    native bf16 units (``bf16=None``: a CUDA GPU, or a CPU by its capability), or as
    ``bf16`` says. Weights, optimiser, loss, validation and every held-out figure stay
    float32. The HyperField student always trains in float32: bf16 rounding changes which
    HyperTensors a row mixes, and so several per cent of its output
    (``benchmarks/bench_hft_precision.py``), so its bf16 forward would not be the model that
    is scored."""
    if sc.bf16 is not None:
        return bool(sc.bf16)
    return _native_bf16(device)


def _native_bf16(device: Any) -> bool:
    if torch.device(device).type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return kernels.features().bf16


def unembed_bf16(sc: Any, device: Any = "cpu") -> bool:
    """Whether the frozen vocabulary products run in bf16 while training on ``device``: where
    it has native bf16 units (about 2x float32 on such a CPU; ``fast_unembed=None``), not
    where bf16 would be emulated (several times slower), unless ``fast_unembed`` says."""
    return _native_bf16(device) if sc.fast_unembed is None else bool(sc.fast_unembed)


def _unembed_dtype(sc: Any, unembed: Unembedding) -> torch.dtype:
    """Precision of the frozen vocabulary products while training (:func:`unembed_bf16` on
    the device of ``unembed``)."""
    return torch.bfloat16 if unembed_bf16(sc, unembed.weight.device) else torch.float32


@dataclass
class FeatureStore:
    """The students' inputs of one split: the stored features (float16 files whose rows are
    read per batch, :class:`~hyperlens.hft.rows.RowFile`), or arrays (the window ids)."""

    x1: RowFile | np.ndarray  # [n, d1]
    tail: RowFile | np.ndarray  # [n, d_tail]

    def tensors(self) -> dict[str, Any]:
        """``x1`` and ``tail`` as the loop and the predictors take them: row files as they
        are (``rf[a:b]`` and ``rf[idx]`` give tensors), arrays as tensors."""
        return {k: v if isinstance(v, RowFile) else torch.from_numpy(np.ascontiguousarray(v))
                for k, v in (("x1", self.x1), ("tail", self.tail))}


def build_model(sc: StudentConfig, d1: int, d_tail: int, d_model: int, d_aux: int,
                unembed: Unembedding, log_unigram: torch.Tensor, seed: int = 0
                ) -> HyperFieldModel:
    """The two-stage student of configuration ``sc``."""
    sc.validate()
    return HyperFieldModel(d1, d_tail, d_model, d_aux, unembed, log_unigram,
                           d_embed=sc.d_embed, k1=sc.k1, top1=sc.top1, tau1=sc.tau1, k2=sc.k2,
                           top2=sc.top2, tau2=sc.tau2, d_route=sc.d_route, heads1=sc.heads1,
                           heads2=sc.heads2, seed=seed)


def _key(feat: Featurizer, capture: Capture) -> str:
    what: dict[str, Any] = {"f": feat.config(), "c": capture.config, "n": feat.n_fitted}
    if feat.cfg.track == "B":  # state statistics streamed in float64 sums: not the old bits
        what["state stats"] = "streamed"
    if capture.limit is not None:  # the first rows of the capture only
        what["rows"] = capture.limit
    blob = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def build_features(feat: Featurizer, capture: Capture, split: str, *, batch: int = 2048,
                   show_progress: bool | None = None) -> FeatureStore:
    """Compute (or reopen) the projected Stage-1 inputs and tails of ``split`` under
    ``<capture>/features-<hash>/`` (atomic; a re-run reuses them)."""
    sp: CapturedSplit = capture.train if split == "train" else capture.heldout
    folder = capture.root / f"features-{_key(feat, capture)}" / split
    if not (folder / "tail.npy").exists():
        n = len(sp)
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            # written block by block: a memory map's dirty pages would count in the
            # process's resident memory until the end (5 GB at 250k rows)
            with RowWriter(tmp / "x1.npy", (n, feat.d1), np.float16) as x1, \
                    RowWriter(tmp / "tail.npy", (n, feat.cfg.d_tail), np.float16) as tl:
                for a in trimmed(progress(range(0, n, batch), total=-(-n // batch),
                                          desc=f"features {split}", enabled=show_progress),
                                 trim_every(batch)):
                    rows = slice(a, a + batch)
                    state = sp["state"][rows] if feat.cfg.track == "B" else None
                    x1.write(feat.stage1(sp["ctx"][rows], sp["pos"][rows], state).numpy())
                    tl.write(feat.tail(sp["ctx"][rows]).numpy())
    return FeatureStore(RowFile(folder / "x1.npy"), RowFile(folder / "tail.npy"))


def aux_stats(sp: CapturedSplit) -> dict[str, torch.Tensor]:
    """Mean and std of the Stage-1 targets (layer-l state and q/k/v) on training rows."""
    a = np.concatenate([sp["state"][:20000], sp["qkv"][:20000]], axis=1).astype(np.float32)
    t = torch.from_numpy(a)
    return {"mean": t.mean(0), "std": t.std(0).clamp_min(1e-4)}


def fit_rows(sp: CapturedSplit, sc: StudentConfig) -> int:
    """How many leading training rows the students fit: every row under the fixed schedule,
    else the rows of the first ``1 - val_share`` of the training texts (the rest is the
    validation slice; rows are grouped by text, in text order)."""
    n = len(sp)
    if not sc.plateau:
        return n
    text = np.asarray(sp["text"])
    if n and bool(np.any(np.diff(text) < 0)):
        raise InputError("the capture's training rows are not grouped by text in order; "
                         "capture again with this version.")
    texts = np.unique(text)
    if len(texts) < 2:
        raise InputError(f"a validation slice needs at least 2 training texts, the capture has "
                         f"{len(texts)}; capture more text or train with patience 0.")
    n_val = max(1, round(len(texts) * sc.val_share))
    return int(np.searchsorted(text, texts[len(texts) - n_val], side="left"))


def _data(store: FeatureStore, sp: CapturedSplit, stats: dict[str, torch.Tensor] | None,
          device: torch.device, shortlist: dict[str, torch.Tensor] | None = None
          ) -> dict[str, torch.Tensor]:
    """The training tensors of a split on ``device`` (the student's; on the CPU they stay
    memory-mapped), with the teacher's top-k and log normaliser when training on a
    shortlist."""
    d = store.tensors()
    d["final"] = sp.source("final")
    d["target"] = _next_ids(sp)
    if stats is not None:  # z-scored as each batch is read: no copy of every row
        d["aux"] = Standardised([sp.source("state"), sp.source("qkv")], stats["mean"],
                                stats["std"])
    d |= shortlist or {}
    return {k: v.to(device) for k, v in d.items()}


def _next_ids(sp: CapturedSplit) -> torch.Tensor:
    """The split's next-token ids as int64 (the shortlist's positives)."""
    return torch.from_numpy(np.ascontiguousarray(sp["target"]).astype(np.int64))


def _shortlist(sc: StudentConfig, sp: CapturedSplit, teacher: Unembedding,
               log_prior: torch.Tensor | None, show: bool | None
               ) -> tuple[Shortlist | None, dict[str, torch.Tensor] | None]:
    """With ``sc.shortlist``: the loss's :class:`Shortlist` (negatives from ``log_prior``,
    the training unigram: a student's starting bias, required then) and every row's teacher
    top-k and log normaliser, in the precision of the training products."""
    if not sc.shortlist:
        return None, None
    if log_prior is None:
        raise InputError("a shortlist target needs log_prior (the training unigram, "
                         "hyperlens.hft.model.log_unigram).")
    teacher.compute_dtype = _unembed_dtype(sc, teacher)
    targets = teacher_targets(sp["final"], teacher, sc.shortlist, show_progress=show,
                              cache=sp.cache)
    return Shortlist(teacher, log_prior.detach().clone(), sc.negatives), targets


def _split(data: dict[str, torch.Tensor], sp: CapturedSplit, sc: StudentConfig
           ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """``(rows to fit, validation rows or None)``: leading slices, so nothing is copied."""
    n_fit = fit_rows(sp, sc)
    if not sc.plateau:
        return data, None

    def part(v: Any, a: int, b: int) -> Any:
        return v.rows(a, b) if hasattr(v, "rows") else v[a:b]

    return ({k: part(v, 0, n_fit) for k, v in data.items()},
            {k: part(v, n_fit, n_fit + sc.val_rows) for k, v in data.items()})


@torch.no_grad()
def _val_distill(model: Any, val: dict[str, torch.Tensor], teacher: Unembedding,
                 batch: int = 512) -> dict[str, float]:
    """Mean KL(teacher || student) and perplexity of the true token on validation rows."""
    kl_sum = ce_sum = 0.0
    n = int(val["target"].shape[0])
    for a in range(0, n, batch):
        y, _ = model(val["x1"][a:a + batch].float(), val["tail"][a:a + batch].float())
        _, kl, ce = distill_loss(model.logits(y), teacher(val["final"][a:a + batch].float()),
                                 val["target"][a:a + batch], 0.0)
        kl_sum += float(kl.sum())
        ce_sum += float(ce.sum())
    return {"val_kl": kl_sum / n, "val_ppl": float(np.exp(ce_sum / n))}


@torch.no_grad()
def _val_aux(model: HyperFieldModel, val: dict[str, torch.Tensor], batch: int = 2048
             ) -> dict[str, float]:
    """Mean squared error of the Stage-1 aux head on validation rows."""
    tot = 0.0
    n = int(val["x1"].shape[0])
    for a in range(0, n, batch):
        z1 = model.embed(val["x1"][a:a + batch].float())
        tot += float(((model.aux(z1) - val["aux"][a:a + batch].float()) ** 2).mean(1).sum())
    return {"val_aux": tot / n}


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _distill(model: Any, batch: dict[str, torch.Tensor], teacher: Unembedding,
             hard: float, aux_w: float, reseed_every: int = 0, base: int = 0,
             sl: Shortlist | None = None, bf16: bool = False
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """The distillation loss of one batch. A HyperField student also feeds its high-error
    queue, and reseeds idle tensors before every ``reseed_every``-th step counted over its
    distillation phases (``base``: the steps of the phases before this one); the step comes
    from the loop, so a resumed phase reseeds where an uninterrupted one does. With ``sl``
    the KL is the shortlist target (:mod:`~hyperlens.hft.shortlist`). ``bf16``: the
    student's forward pass in bfloat16 autocast, its outputs back in float32 for the loss
    (CPU autocast would keep the log-softmax in bf16)."""
    mets: dict[str, float] = {}
    if isinstance(model, HyperFieldModel):
        done = base + current_step()
        moved = 0
        if reseed_every and done and done % reseed_every == 0:
            # reseeding rewrites parameters in place, so it runs before this step's forward
            # pass, never between a forward pass and its backward pass
            with torch.no_grad():
                moved = model.stage2.reseed()
        mets["reseeded"] = float(moved)
    x1, tail = batch["x1"].float(), batch["tail"].float()
    with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=bf16):
        y, z1 = model(x1, tail)
    y, z1 = y.float(), None if z1 is None else z1.float()
    if sl is not None:
        loss, kl, ce = shortlist_loss(model, y, batch["final"], batch["topk"], batch["lse"],
                                      batch["target"], sl, hard)
    else:
        with torch.no_grad():
            t_logits = teacher(batch["final"].float())
        loss, kl, ce = distill_loss(model.logits(y), t_logits, batch["target"], hard)
    mets |= {"kl": float(kl.detach().mean()), "ce": float(ce.detach().mean())}
    if isinstance(model, HyperFieldModel):
        if aux_w > 0 and z1 is not None:
            aux = ((model.aux(z1) - batch["aux"].float()) ** 2).mean()
            loss = loss + aux_w * aux
            mets["aux"] = float(aux.detach())
        with torch.no_grad():
            model.stage2.observe(model.stage2_input(z1.detach(), tail), kl.detach())
    return loss, mets


def _hist(h: Any) -> dict[str, Any]:
    d = h.as_dict()
    d.pop("seconds", None)  # timings belong to the report's timings
    return d


def _cfg(sc: StudentConfig, epochs: int, seed: int, show: bool | None, lr: float | None = None,
         metric: str = "val_kl", ckpt: Path | None = None) -> TrainConfig:
    """The seed's fixed schedule (cosine over ``epochs``), or training to a plateau of the
    validation ``metric``: the rate halves after every epoch that does not improve it
    (reduce on plateau; with ``min_improvement`` only a gain of more than that share of
    the best value counts), the phase stops after ``patience`` such epochs in a row or
    ``max_epochs``, and the best epoch is kept (the starting weights are a candidate too).
    With ``ckpt`` (a phase's folder) every epoch is checkpointed and a rerun resumes."""
    where = None if ckpt is None else str(ckpt)
    if not sc.plateau:
        return TrainConfig(optimizer="adam", lr=lr or sc.lr, epochs=epochs,
                           batch_size=sc.batch_size, schedule="cosine", warmup_steps=20,
                           grad_clip=5.0, seed=seed, progress=show, checkpoint_dir=where)
    return TrainConfig(optimizer="adam", lr=lr or sc.lr, epochs=sc.max_epochs,
                       batch_size=sc.batch_size, schedule="plateau", warmup_steps=20,
                       grad_clip=5.0, seed=seed, progress=show,
                       early_stop_patience=sc.patience, early_stop_metric=metric,
                       early_stop_threshold=sc.min_improvement, restore_best=True,
                       eval_at_start=True, checkpoint_dir=where)


def _phase(ckpt: str | Path | None, name: str) -> Path | None:
    return None if ckpt is None else Path(ckpt) / name


def _reseeds(*hists: Any) -> int:
    return int(sum(m.get("reseeded", 0.0) for h in hists for m in h.train_metrics))


def _evaluator(val: dict[str, torch.Tensor] | None, fn: Any) -> dict[str, Any]:
    """``fit``'s options: the validation ``eval_fn`` when training to a plateau."""
    return {} if val is None else {"eval_fn": lambda m: fn(m, val)}


def train_hyperfield(model: HyperFieldModel, train: FeatureStore, sp: CapturedSplit,
                     stats: dict[str, torch.Tensor], teacher: Unembedding, sc: StudentConfig,
                     *, seed: int = 0, show_progress: bool | None = None,
                     checkpoint_dir: str | Path | None = None) -> dict[str, Any]:
    """The three-phase schedule, on the device of ``model`` (and ``teacher``); returns the
    histories, reseed counts and ``seconds`` (training time of all phases, summed over the
    sittings of a resumed run). With ``checkpoint_dir`` each phase checkpoints every epoch
    in a folder of its own there, and a rerun resumes where it stopped, to the same
    weights."""
    sl, targets = _shortlist(sc, sp, teacher, model.unigram, show_progress)
    data, val = _split(_data(train, sp, stats, _device_of(model), targets), sp, sc)
    n_init = min(len(data["target"]), 20000)
    model.init_stage1(data["x1"][:n_init].float(), data["aux"][:n_init].float(), seed)
    out: dict[str, Any] = {}
    s1 = list(model.stage1.parameters()) + list(model.aux.parameters())

    def stage1_loss(m: Any, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        z1 = m.embed(b["x1"].float())
        aux = ((m.aux(z1) - b["aux"].float()) ** 2).mean()
        return aux, {"aux": float(aux.detach())}

    for p in model.parameters():
        p.requires_grad_(False)
    for p in s1:
        p.requires_grad_(True)
    h1 = fit(model, stage1_loss, {"x1": data["x1"], "aux": data["aux"]},
             _cfg(sc, sc.stage1_epochs, seed, show_progress, metric="val_aux",
                  ckpt=_phase(checkpoint_dir, "stage1")),
             **_evaluator(val, _val_aux))
    out["stage1"] = _hist(h1)
    # read again (not kept through Stage 1): half precision, made float32 chunk by chunk
    model.init_stage2(data["x1"][:n_init], data["tail"][:n_init], data["final"][:n_init],
                      seed)
    teacher.compute_dtype = _unembed_dtype(sc, teacher)
    base = {"steps": 0}  # distillation steps of the phases before the running one

    def loss2(m: nn.Module, b: dict[str, torch.Tensor]) -> Any:
        return _distill(m, b, teacher, sc.hard, 0.0, sc.reseed_every, 0, sl)

    def loss_e2e(m: nn.Module, b: dict[str, torch.Tensor]) -> Any:
        return _distill(m, b, teacher, sc.hard, sc.aux, sc.reseed_every, base["steps"], sl)

    def val_kl(m: nn.Module, v: dict[str, torch.Tensor]) -> dict[str, float]:
        return _val_distill(m, v, teacher)

    for p in model.parameters():
        p.requires_grad_(True)
    for p in s1:
        p.requires_grad_(False)
    h2 = fit(model, loss2, data,
             _cfg(sc, sc.stage2_epochs, derive_seed(seed, "stage2"), show_progress,
                  ckpt=_phase(checkpoint_dir, "stage2")),
             **_evaluator(val, val_kl))
    out["stage2"] = _hist(h2)
    hists = [h2]
    if sc.e2e_epochs:
        for p in model.parameters():
            p.requires_grad_(True)
        base["steps"] = len(h2.train_loss)
        h3 = fit(model, loss_e2e, data, _cfg(sc, sc.e2e_epochs, derive_seed(seed, "e2e"),
                                              show_progress, lr=sc.lr / 3,
                                              ckpt=_phase(checkpoint_dir, "e2e")),
                 **_evaluator(val, val_kl))
        out["e2e"] = _hist(h3)
        hists.append(h3)
    teacher.compute_dtype = torch.float32
    out["reseeds"] = _reseeds(*hists)
    out["seconds"] = h1.seconds + sum(h.seconds for h in hists)  # every phase, every sitting
    model.eval()
    return out


def train_mlp(model: MLPStudent | TransformerStudent, train: FeatureStore, sp: CapturedSplit,
              teacher: Unembedding, sc: StudentConfig, *, seed: int = 0,
              show_progress: bool | None = None, checkpoint_dir: str | Path | None = None
              ) -> dict[str, Any]:
    """An MLP or the transformer (``train`` then holds the window ids): the same data, loss
    and validation as the HyperField student (under the fixed schedule, its number of
    distillation epochs); ``checkpoint_dir`` and ``seconds`` as for
    :func:`train_hyperfield`."""
    sl, targets = _shortlist(sc, sp, teacher, model.unigram, show_progress)
    data, val = _split(_data(train, sp, None, _device_of(model), targets), sp, sc)
    teacher.compute_dtype = _unembed_dtype(sc, teacher)
    bf16 = train_bf16(sc, _device_of(model))

    def loss(m: nn.Module, b: dict[str, torch.Tensor]) -> Any:
        return _distill(m, b, teacher, sc.hard, 0.0, sl=sl, bf16=bf16)

    lr = sc.transformer_lr if isinstance(model, TransformerStudent) else sc.mlp_lr
    h = fit(model, loss, data, _cfg(sc, sc.stage2_epochs + sc.e2e_epochs, seed, show_progress,
                                    lr=lr, ckpt=_phase(checkpoint_dir, "mlp")),
            **_evaluator(val, lambda m, v: _val_distill(m, v, teacher)))
    teacher.compute_dtype = torch.float32
    model.eval()
    return {**_hist(h), "seconds": h.seconds}  # summed over the sittings of a resumed run


def train_tuned_lens(lens: TunedLens, sp: CapturedSplit, teacher: Unembedding,
                     sc: StudentConfig, *, seed: int = 0, show_progress: bool | None = None,
                     checkpoint_dir: str | Path | None = None,
                     log_prior: torch.Tensor | None = None) -> dict[str, Any]:
    """Affine map of the layer-l state trained on the students' KL target and validation
    slice (Track B baseline): with ``sc.shortlist`` the shortlist estimate, its negatives
    drawn from ``log_prior`` (the training unigram, required then), else the
    full-vocabulary KL; validation is full-vocabulary either way. ``checkpoint_dir`` and
    ``seconds`` as for :func:`train_hyperfield`."""
    dev = _device_of(lens)
    sl, targets = _shortlist(sc, sp, teacher, log_prior, show_progress)
    full = {"state": sp.source("state"), "final": sp.source("final")}
    if targets is not None:
        full |= {"target": _next_ids(sp), **targets}
    data, val = _split({k: v.to(dev) for k, v in full.items()}, sp, sc)
    if val is not None:
        val = {k: val[k] for k in ("state", "final")}
    lens.unembed.compute_dtype = _unembed_dtype(sc, lens.unembed)

    def kl_of(m: Any, b: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            t = m.unembed(b["final"].float())
        q = torch.log_softmax(m(b["state"].float()), -1)
        p = torch.log_softmax(t, -1)
        return (p.exp() * (p - q)).sum(-1)

    def loss(m: Any, b: dict[str, torch.Tensor]) -> Any:
        if sl is None:
            kl = kl_of(m, b).mean()
        else:
            kl, _, _ = shortlist_loss(m, m.state(b["state"].float()), b["final"], b["topk"],
                                      b["lse"], b["target"], sl, 0.0)
        return kl, {"kl": float(kl.detach())}

    @torch.no_grad()
    def val_kl(m: Any, v: dict[str, torch.Tensor]) -> dict[str, float]:
        n = int(v["state"].shape[0])
        tot = sum(float(kl_of(m, {k: x[a:a + 512] for k, x in v.items()}).sum())
                  for a in range(0, n, 512))
        return {"val_kl": tot / n}

    cfg = replace(_cfg(sc, sc.lens_epochs, seed, show_progress, lr=sc.lens_lr,
                       ckpt=_phase(checkpoint_dir, "lens")), grad_clip=None)
    h = fit(lens, loss, data, cfg, **_evaluator(val, val_kl))
    lens.unembed.compute_dtype = torch.float32
    lens.eval()
    return {**_hist(h), "seconds": h.seconds}


@torch.no_grad()
def train_online(model: HyperFieldModel, train: FeatureStore, sp: CapturedSplit,
                 stats: dict[str, torch.Tensor], sc: StudentConfig, *, seed: int = 0,
                 batch: int = 64, show_progress: bool | None = None) -> dict[str, Any]:
    """The seed's online rule, no gradients: Stage 1 regresses the aux targets through the
    aux head's initial (orthonormal) map, Stage 2 regresses the teacher's final state
    (minus its mean; the unigram bias carries the mean), each with rates ``eta``/``eta_g``.
    Returns the residual curve (at most about 200 points) and the ``seconds`` it took."""
    t0 = time.perf_counter()
    data, _ = _split(_data(train, sp, stats, _device_of(model)), sp, sc)  # the same rows
    n = int(data["target"].shape[0])
    n_init = min(n, 20000)
    model.init_stage1(data["x1"][:n_init].float(), data["aux"][:n_init].float(), seed)
    model.init_stage2(data["x1"][:n_init], data["tail"][:n_init], data["final"][:n_init], seed)
    P = model.aux.weight.detach().clone()  # [d_aux, d_embed]
    mean_final = data["final"][:n_init].float().mean(0)
    gen = make_generator(seed)
    res: list[float] = []
    model.train()
    for _ in range(sc.online_epochs):
        order = torch.randperm(n, generator=gen)
        for a in progress(range(0, n, batch), total=-(-n // batch), desc="online",
                          enabled=show_progress):
            idx = order[a:a + batch]
            x1 = data["x1"][idx].float()
            e1 = model.stage1.online_step(x1, data["aux"][idx].float() @ P, sc.eta, sc.eta_g)
            z1 = model.embed(x1)
            x2 = model.stage2_input(z1, data["tail"][idx].float())
            e2 = model.stage2.online_step(x2, data["final"][idx].float() - mean_final,
                                          sc.eta, sc.eta_g)
            res.append(float((e2 ** 2).mean()))
            _ = e1
    model.eval()
    return {"residual": res[:: max(1, len(res) // 200)], "seconds": time.perf_counter() - t0}
