"""The one training loop: a small trainable module against data (and a frozen model).

Usage::

    from hyperlens.train import TrainConfig, fit

    def loss_fn(module, batch):                      # -> loss, or (loss, {"acc": ...})
        x, y = batch
        return torch.nn.functional.cross_entropy(module(x), y)

    cfg = TrainConfig(optimizer="adamw", lr=1e-3, epochs=5, batch_size=64, seed=0,
                      checkpoint_dir="runs/probe/ckpt")
    hist = fit(probe, loss_fn, (X, y), cfg, frozen=model, eval_fn=lambda m: {"acc": ...})
    report.section("Training").plot("loss.png", hist.plot_spec())

What :func:`fit` guarantees:

- **Seeded, and the caller's RNG untouched.** Training runs inside
  :func:`torch.random.fork_rng` seeded with ``cfg.seed`` (dropout and anything else that
  draws from torch's global generator), so the global state after ``fit`` is what it was
  before. Batches come from a seeded permutation drawn from :func:`step_generator`, which a
  loss may also use for its own draws (negatives, masks): those are then resumed exactly.
  Pass a factory (``lambda: MyHead(...)``) instead of a module to initialise it under the
  same seed.
- **The frozen model is proven unchanged.** Every module in ``frozen`` has
  ``requires_grad`` switched off for the run (restored afterwards) and a BLAKE2 checksum
  of its parameters and buffers taken before and compared after; a difference, or a
  gradient that reached it, raises :class:`FrozenModelChanged`. Only parameters of
  ``module`` that still require gradients are trained.
- **Resumable.** With ``checkpoint_dir``, the trainable parameters (not the frozen model),
  the optimizer state, both random generators, the history and the early-stopping state
  are written at the end of each epoch to one safetensors file (no pickle), atomically. A
  rerun with the same configuration and module shapes continues from it; on CPU the final
  weights are bit-identical to an uninterrupted run, also after ``kill -9``. A damaged
  checkpoint (truncated, garbage, tensors missing) is moved aside to
  ``checkpoint.safetensors.damaged`` with a warning, and training starts again from step 0.
- **Best weights on request.** ``restore_best=True`` ends with the weights of the best
  evaluation (see :class:`TrainConfig`), ``History.restored_step`` naming its step.
- **Curves.** :class:`History` keeps the loss of every step and every evaluation, and
  :meth:`History.plot_spec` gives a report line plot.

Per-parameter learning rates: ``param_lr={"*.bias": 1e-2}`` (fnmatch patterns on the
parameter names of ``module``; the first match wins; others get ``lr``);
``no_decay=("*.bias", "*norm*")`` puts matches in a group without weight decay.

This loop is our own rather than a trainer library's (Lightning, Accelerate, HF Trainer):
those bring callbacks, loggers and device plumbing, but none proves a frozen model
unchanged or resumes bit for bit without pickle, which is the point here.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import hashlib
import json
import math
import numbers
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, DataError, HyperlensError, InputError
from .models.handle import ModelHandle
from .utils import load_safetensors, progress, retain_freed_memory, save_safetensors

__all__ = [
    "TrainConfig",
    "History",
    "fit",
    "fit_module",
    "step_generator",
    "FrozenModelChanged",
    "checksum",
    "CHECKPOINT_NAME",
]

CHECKPOINT_NAME = "checkpoint.safetensors"
_FORMAT = "hyperlens.train/1"
_OPTIMIZERS = ("adamw", "adam", "sgd")
_SCHEDULES = ("constant", "linear", "cosine")
_GEN: contextvars.ContextVar[torch.Generator | None] = contextvars.ContextVar(
    "hl_gen", default=None
)


class FrozenModelChanged(HyperlensError):  # noqa: N818 - named for what happened
    """A model that :func:`fit` was told to keep frozen changed or received gradients."""


def _bad(name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(
        f"TrainConfig.{name}={value!r} ({type(value).__name__}) is invalid: expected {expected}."
    )


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _real(name: str, v: Any, expected: str, ok: Callable[[float], bool]) -> float:
    """``v`` when it is a finite real number (not a bool) that passes ``ok``."""
    if not _is_real(v) or not math.isfinite(float(v)) or not ok(float(v)):
        raise _bad(name, v, expected)
    return v if type(v) in (int, float) else float(v)


def _int(name: str, v: Any, lo: int, *, none_ok: bool = False) -> Any:
    """``v`` as an int >= ``lo`` (or None when ``none_ok``); bools and floats are refused."""
    if v is None and none_ok:
        return None
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or int(v) < lo:
        raise _bad(name, v, f"{'None or ' if none_ok else ''}an int >= {lo}")
    return int(v)


def _flag(name: str, v: Any, *, none_ok: bool = False) -> None:
    if not (isinstance(v, bool) or (none_ok and v is None)):
        raise _bad(name, v, f"{'None, ' if none_ok else ''}True or False")


def _choice(name: str, v: Any, options: Sequence[str]) -> None:
    if not isinstance(v, str) or v not in options:
        raise _bad(name, v, f"one of {tuple(options)}")


@dataclass
class TrainConfig:
    """Everything that decides a training run. Validated on construction (:class:`ConfigError`).

    ``batch_size=None`` trains on the whole data at once. ``max_steps`` (when set) ends
    training after that many steps, whatever ``epochs`` says. ``eval_every`` counts steps
    (``None``: at the end of each epoch, when an ``eval_fn`` is given). Early stopping
    watches ``early_stop_metric`` (a key of ``eval_fn``'s dict, or ``"train_loss"``, the
    mean loss since the previous evaluation) and stops after ``early_stop_patience``
    evaluations without improvement. ``shuffle=False`` keeps the data order;
    ``drop_last`` skips a final incomplete batch.

    ``restore_best=True`` keeps the weights of the best evaluation: ``early_stop_metric``
    and ``early_stop_mode`` pick it (``History.best``; on a tie the earlier one), the last
    step is evaluated too when the run does not end on an evaluation, and after training
    the module's trainable parameters hold that evaluation's values
    (``History.restored_step`` says which step; buffers keep their final values). The
    kept weights are part of the checkpoint, so a resumed run restores the same ones.

    Every field is checked on construction: type (a bool is not a number), finiteness
    and range; ``betas`` two numbers in [0, 1), ``momentum`` in [0, 1).
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    param_lr: dict[str, float] = field(default_factory=dict)
    no_decay: tuple[str, ...] = ()
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int | None = 32
    shuffle: bool = True
    drop_last: bool = False
    grad_clip: float | None = None
    seed: int = 0
    eval_every: int | None = None
    early_stop_patience: int | None = None
    early_stop_metric: str = "train_loss"
    early_stop_mode: str = "min"
    checkpoint_dir: str | None = None
    progress: bool | None = None
    restore_best: bool = False

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, _OPTIMIZERS)
        _choice("schedule", self.schedule, _SCHEDULES)
        _choice("early_stop_mode", self.early_stop_mode, ("min", "max"))
        self.lr = _real("lr", self.lr, "a finite learning rate > 0", lambda v: v > 0)
        self.weight_decay = _real("weight_decay", self.weight_decay, "a finite number >= 0",
                                  lambda v: v >= 0)
        self.momentum = _real("momentum", self.momentum, "a number in [0, 1)",
                              lambda v: 0 <= v < 1)
        self._check_groups()
        self._check_betas()
        self.epochs = _int("epochs", self.epochs, 1)
        self.warmup_steps = _int("warmup_steps", self.warmup_steps, 0)
        for name in ("max_steps", "batch_size", "eval_every", "early_stop_patience"):
            setattr(self, name, _int(name, getattr(self, name), 1, none_ok=True))
        if self.grad_clip is not None:
            self.grad_clip = _real("grad_clip", self.grad_clip,
                                   "None or a finite max gradient norm > 0", lambda v: v > 0)
        if (not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool)
                or not -(2**63) <= int(self.seed) < 2**64):
            raise _bad("seed", self.seed, "an int in [-2**63, 2**64) (torch's seed range)")
        self.seed = int(self.seed)
        for name in ("shuffle", "drop_last", "restore_best"):
            _flag(name, getattr(self, name))
        _flag("progress", self.progress, none_ok=True)
        if not isinstance(self.early_stop_metric, str) or not self.early_stop_metric:
            raise _bad("early_stop_metric", self.early_stop_metric,
                       "the name of a metric of eval_fn, or 'train_loss'")
        if self.checkpoint_dir is not None:
            if not isinstance(self.checkpoint_dir, (str, os.PathLike)) or not str(
                    os.fspath(self.checkpoint_dir)):
                raise _bad("checkpoint_dir", self.checkpoint_dir, "None or a folder path")
            self.checkpoint_dir = str(os.fspath(self.checkpoint_dir))

    def _check_groups(self) -> None:
        expected = "a dict {fnmatch pattern: finite learning rate >= 0}"
        if not isinstance(self.param_lr, Mapping):
            raise _bad("param_lr", self.param_lr, expected)
        for k, v in self.param_lr.items():
            if not isinstance(k, str):
                raise _bad("param_lr", self.param_lr, expected)
            _real(f"param_lr[{k!r}]", v, "a finite learning rate >= 0", lambda x: x >= 0)
        self.param_lr = dict(self.param_lr)
        if not isinstance(self.no_decay, (tuple, list)) or not all(
                isinstance(p, str) for p in self.no_decay):
            raise _bad("no_decay", self.no_decay,
                       "a tuple of fnmatch patterns such as ('*.bias', '*norm*')")
        self.no_decay = tuple(self.no_decay)

    def _check_betas(self) -> None:
        b = self.betas
        expected = "two numbers in [0, 1), such as (0.9, 0.999)"
        if not isinstance(b, (tuple, list)) or len(b) != 2 or not all(
                _is_real(x) and 0 <= float(x) < 1 for x in b):
            raise _bad("betas", b, expected)
        self.betas = (float(b[0]), float(b[1]))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["no_decay"] = list(self.no_decay)
        d["betas"] = list(self.betas)
        return d

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed (everything but the bookkeeping)."""
        d = self.as_dict()
        for k in ("checkpoint_dir", "progress"):
            d.pop(k)
        if not self.restore_best:  # checkpoints written before the option still resume
            d.pop("restore_best")
        return hashlib.blake2b(json.dumps(d, sort_keys=True).encode(), digest_size=16).hexdigest()


@dataclass
class History:
    """What :func:`fit` recorded.

    Attributes:
        steps: the global step (1-based) of each recorded training step.
        epochs: the epoch (0-based) of each step.
        train_loss: the loss of each step.
        train_metrics: the metrics dict a loss function returned at each step (may be empty).
        evals: one dict per evaluation: ``{"step", "epoch", "train_loss", **eval_fn(module)}``.
        best: the evaluation with the best ``early_stop_metric`` (``None`` without evals).
        stopped_early: whether early stopping ended the run.
        resumed_from: the step a resumed run started from (0 for a fresh run).
        restored_step: with ``restore_best``, the step whose weights the module holds after
            :func:`fit` (the step of ``best``); ``None`` otherwise.
        seconds: wall-clock time of this call (not of the resumed part before it).
    """

    steps: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_metrics: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    stopped_early: bool = False
    resumed_from: int = 0
    restored_step: int | None = None
    seconds: float = 0.0

    def epoch_loss(self, reduce: str = "mean") -> list[float]:
        """The loss per epoch: ``"mean"`` or ``"sum"`` over its steps."""
        out: dict[int, list[float]] = {}
        for e, v in zip(self.epochs, self.train_loss, strict=True):
            out.setdefault(e, []).append(v)
        agg = sum if reduce == "sum" else (lambda xs: sum(xs) / len(xs))
        return [float(agg(out[e])) for e in sorted(out)]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> History:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def plot_spec(
        self, title: str = "Training", metrics: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """A report line-plot spec: the training loss per step and each evaluated metric."""
        series: list[dict[str, Any]] = [
            {"label": "train loss", "x": list(self.steps), "y": list(self.train_loss)}
        ]
        keys = metrics
        if keys is None:
            keys = sorted({k for e in self.evals for k in e} - {"step", "epoch"})
        for k in keys:
            pts = [(e["step"], e[k]) for e in self.evals if k in e]
            if pts:
                series.append({"label": f"eval {k}", "x": [p[0] for p in pts],
                               "y": [p[1] for p in pts]})
        return {"kind": "line", "title": title, "xlabel": "step", "ylabel": "value",
                "series": series}


def step_generator() -> torch.Generator:
    """The seeded generator of the running :func:`fit` (batch order and a loss's own draws).

    Draws from it are part of the checkpoint, so a resumed run repeats them exactly.
    Raises :class:`InputError` outside :func:`fit`.
    """
    gen = _GEN.get()
    if gen is None:
        raise InputError("step_generator() is only available inside a loss_fn called by fit().")
    return gen


# --------------------------------------------------------------------------- frozen guard
def _frozen_modules(frozen: Any) -> list[nn.Module]:
    if frozen is None:
        return []
    items = frozen if isinstance(frozen, (list, tuple)) else [frozen]
    out: list[nn.Module] = []
    for f in items:
        mod = f.module if isinstance(f, ModelHandle) else f
        if mod is None and isinstance(f, ModelHandle):
            continue  # a static model has no parameters to guard
        if not isinstance(mod, nn.Module):
            raise InputError(
                f"frozen must be an nn.Module, a ModelHandle or a list of them, got "
                f"{type(f).__name__}."
            )
        out.append(mod)
    return out


def checksum(module: nn.Module) -> str:
    """A BLAKE2 digest of every parameter and buffer of ``module`` (names, dtypes, bytes)."""
    h = hashlib.blake2b(digest_size=20)
    tensors: list[tuple[str, torch.Tensor]] = [*module.named_parameters(), *module.named_buffers()]
    for name, t in tensors:
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        data = t.detach().to("cpu").contiguous()
        h.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return h.hexdigest()


@contextlib.contextmanager
def _guard(frozen: list[nn.Module]) -> Iterator[None]:
    flags = [[p.requires_grad for p in m.parameters()] for m in frozen]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    before = [checksum(m) for m in frozen]
    ok = False
    try:
        yield
        ok = True
    finally:
        for m, fl in zip(frozen, flags, strict=True):
            for p, f in zip(m.parameters(), fl, strict=True):
                p.requires_grad_(f)
    if ok:
        for i, m in enumerate(frozen):
            if any(p.grad is not None for p in m.parameters()):
                raise FrozenModelChanged(
                    f"frozen model {i} ({type(m).__name__}) received gradients during fit; "
                    "something detached requires_grad=False or set .grad by hand."
                )
            if checksum(m) != before[i]:
                raise FrozenModelChanged(
                    f"frozen model {i} ({type(m).__name__}) changed during fit (its checksum "
                    "differs); make sure the loss does not update it in place."
                )


# --------------------------------------------------------------------------- data
def _data_len(data: Any) -> int:
    if isinstance(data, Mapping):
        lens = {k: len(v) for k, v in data.items()}
    elif isinstance(data, tuple):
        lens = {str(i): len(v) for i, v in enumerate(data)}
    else:
        try:
            return len(data)
        except TypeError as exc:
            raise InputError(
                f"data must be sized and indexable (a torch Dataset, a list, or a dict/tuple of "
                f"equal-length tensors), got {type(data).__name__}."
            ) from exc
    if not lens or len(set(lens.values())) != 1:
        raise InputError(
            f"the tensors in data must have the same length along dim 0, got {lens}."
        )
    return next(iter(lens.values()))


def _take(v: Any, idx: torch.Tensor) -> Any:
    if isinstance(v, torch.Tensor):
        return v[idx.to(v.device)]
    return [v[int(i)] for i in idx]


def _batch(data: Any, idx: torch.Tensor, collate: Callable[[list[Any]], Any] | None) -> Any:
    if isinstance(data, Mapping):
        return {k: _take(v, idx) for k, v in data.items()}
    if isinstance(data, tuple):
        return tuple(_take(v, idx) for v in data)
    if isinstance(data, torch.Tensor):
        return data[idx.to(data.device)]
    items = [data[int(i)] for i in idx]
    if collate is not None:
        return collate(items)
    from torch.utils.data import default_collate

    return default_collate(items)


# --------------------------------------------------------------------------- optimizer
def _param_groups(named: list[tuple[str, nn.Parameter]], cfg: TrainConfig) -> list[dict[str, Any]]:
    """One group per (lr, weight decay) pair, parameters kept in module order."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    names: dict[tuple[float, float], list[str]] = {}
    for name, p in named:
        lr = next((v for pat, v in cfg.param_lr.items() if fnmatch.fnmatchcase(name, pat)), cfg.lr)
        decay = not any(fnmatch.fnmatchcase(name, pat) for pat in cfg.no_decay)
        wd = cfg.weight_decay if decay else 0.0
        groups.setdefault((float(lr), float(wd)), []).append(p)
        names.setdefault((float(lr), float(wd)), []).append(name)
    return [{"params": ps, "lr": lr, "weight_decay": wd, "initial_lr": lr, "names": names[(lr, wd)]}
            for (lr, wd), ps in groups.items()]


def _optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    clean = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(clean, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(clean, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(clean, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate for the optimizer step ``step`` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "linear":
        return 1.0 - frac
    return 0.5 * (1.0 + math.cos(math.pi * frac))


# --------------------------------------------------------------------------- checkpoints
def _module_fingerprint(named: list[tuple[str, nn.Parameter]]) -> str:
    desc = [(n, list(p.shape), str(p.dtype)) for n, p in named]
    return hashlib.blake2b(json.dumps(desc).encode(), digest_size=16).hexdigest()


@dataclass
class _State:
    """What the loop carries from epoch to epoch, and a checkpoint restores."""

    step: int = 0
    epoch0: int = 0
    stale: int = 0
    best_val: float | None = None
    since: list[float] = field(default_factory=list)  # losses since the last evaluation
    best_step: int | None = None  # restore_best: the kept evaluation and its parameters
    best_params: dict[str, torch.Tensor] | None = None

    def meta(self, epoch: int) -> dict[str, Any]:
        return {"step": self.step, "epoch": epoch, "stale": self.stale,
                "best_val": self.best_val, "since": list(self.since),
                "best_step": self.best_step}


def _save_checkpoint(
    path: Path, named: list[tuple[str, nn.Parameter]], opt: torch.optim.Optimizer,
    gen: torch.Generator, meta: dict[str, Any], best: Mapping[str, torch.Tensor] | None,
) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for name, p in named:
        tensors[f"param/{name}"] = p
    for name, t in (best or {}).items():
        tensors[f"best/{name}"] = t
    index = {id(q): i for i, (_, q) in enumerate(named)}
    opt_scalars: dict[str, dict[str, Any]] = {}
    for key, st in opt.state.items():
        i = index[id(key)]
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt/{i}/{k}"] = v
            else:
                opt_scalars.setdefault(str(i), {})[k] = v
    tensors["rng/global"] = torch.get_rng_state()
    tensors["rng/steps"] = gen.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for d, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{d}"] = st
    meta = {**meta, "opt_scalars": opt_scalars}
    save_safetensors(path, tensors, {"format": _FORMAT, "meta": json.dumps(meta)})


def _load_checkpoint(
    path: Path, fingerprint: Mapping[str, str], named: list[tuple[str, nn.Parameter]],
    cfg: TrainConfig,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The checkpoint's tensors and meta, checked complete before anything is applied.

    Raises :class:`ConfigError` for another kind of file or another run's checkpoint, and
    :class:`DataError` for a damaged one (unreadable, or tensors or fields missing).
    """
    def check(md: Mapping[str, str]) -> None:
        if md.get("format") != _FORMAT:
            raise ConfigError(
                f"{path} is not a hyperlens training checkpoint (format {md.get('format')!r}); "
                "point checkpoint_dir at a folder of its own."
            )

    fix = "it cannot be resumed"
    tensors, md = load_safetensors(path, what="training checkpoint", fix=fix, check=check)
    try:
        meta = json.loads(md["meta"])
        if meta.get("fingerprint") == fingerprint:
            int(meta["step"]), int(meta["epoch"]), int(meta["stale"]), meta["best_val"]
            History.from_dict(meta["history"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"training checkpoint {str(path)!r} is damaged (its header lacks or "
                        f"garbles {exc}); {fix}.") from exc
    if meta.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"the checkpoint in {cfg.checkpoint_dir} was written by a different configuration "
            "or module; use another checkpoint_dir or delete it to start over."
        )
    need = [f"param/{nm}" for nm, _ in named] + ["rng/global", "rng/steps"]
    if cfg.restore_best and meta.get("best_step") is not None:
        need += [f"best/{nm}" for nm, _ in named]
    missing = [k for k in need if k not in tensors]
    if missing:
        raise DataError(f"training checkpoint {str(path)!r} is damaged (tensors {missing[:3]} "
                        f"are missing); {fix}.")
    return tensors, meta


def _resume(
    path: Path, fingerprint: Mapping[str, str], named: list[tuple[str, nn.Parameter]],
    opt: torch.optim.Optimizer, gen: torch.Generator, devices: list[int], cfg: TrainConfig,
) -> tuple[History, _State] | None:
    """Load the checkpoint into the run; a damaged one is set aside (None: start afresh)."""
    try:
        tensors, meta = _load_checkpoint(path, fingerprint, named, cfg)
    except DataError as exc:
        aside = path.with_name(path.name + ".damaged")
        os.replace(path, aside)
        warnings.warn(f"{exc} Moved it to {str(aside)!r}; training starts again from step 0.",
                      stacklevel=5)
        return None
    with torch.no_grad():
        for nm, p in named:
            p.copy_(tensors[f"param/{nm}"])
    _restore_optimizer(opt, named, tensors, meta.get("opt_scalars", {}))
    torch.set_rng_state(tensors["rng/global"])
    gen.set_state(tensors["rng/steps"])
    for d in devices:
        if f"rng/cuda{d}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng/cuda{d}"], d)
    hist = History.from_dict(meta["history"])
    st = _State(step=int(meta["step"]), epoch0=int(meta["epoch"]) + 1, stale=int(meta["stale"]),
                best_val=meta["best_val"], since=[float(v) for v in meta.get("since", [])])
    hist.resumed_from = st.step
    if cfg.restore_best and meta.get("best_step") is not None:
        st.best_step = int(meta["best_step"])
        st.best_params = {nm: tensors[f"best/{nm}"].to(p.device) for nm, p in named}
    return hist, st


# --------------------------------------------------------------------------- the loop
def fit(
    module: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Any],
    data: Any,
    cfg: TrainConfig,
    *,
    frozen: Any = None,
    eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
    collate: Callable[[list[Any]], Any] | None = None,
) -> History:
    """Train the parameters of ``module`` that require gradients; return the :class:`History`.

    Args:
        module: the trainable module (to initialise it under ``cfg.seed`` too, build it
            in a factory and call :func:`fit_module`).
        loss_fn: ``loss_fn(module, batch) -> loss`` or ``(loss, {"name": float})``.
        data: a sized indexable: torch Dataset, list, tensor, or a dict/tuple of tensors
            with equal length (batches keep that structure).
        cfg: the :class:`TrainConfig`.
        frozen: a module, :class:`ModelHandle` or list of them proven unchanged.
        eval_fn: ``eval_fn(module) -> {"metric": value}``, called in eval mode without grads.
        collate: joins a list of items into a batch for list / Dataset data (default:
            torch's ``default_collate``).

    The module is in train mode for the steps and in eval mode when ``fit`` returns.
    """
    if not isinstance(module, nn.Module):
        raise InputError(
            f"module must be an nn.Module, got {type(module).__name__}; for a factory use "
            "fit_module."
        )
    hist, _ = _fit(module, loss_fn, data, cfg, frozen=frozen, eval_fn=eval_fn, collate=collate)
    return hist


def fit_module(
    factory: Callable[[], nn.Module],
    loss_fn: Callable[[nn.Module, Any], Any],
    data: Any,
    cfg: TrainConfig,
    **kwargs: Any,
) -> tuple[nn.Module, History]:
    """:func:`fit` with a module built by ``factory()`` under ``cfg.seed``; returns both."""
    hist, mod = _fit(factory, loss_fn, data, cfg, **kwargs)
    return mod, hist


def _fit(
    module: nn.Module | Callable[[], nn.Module],
    loss_fn: Callable[[nn.Module, Any], Any],
    data: Any,
    cfg: TrainConfig,
    *,
    frozen: Any = None,
    eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
    collate: Callable[[list[Any]], Any] | None = None,
) -> tuple[History, nn.Module]:
    if not isinstance(cfg, TrainConfig):
        raise InputError(f"cfg must be a TrainConfig, got {type(cfg).__name__}.")
    if not callable(loss_fn):
        raise InputError(
            f"loss_fn must be callable loss_fn(module, batch), got {type(loss_fn).__name__}."
        )
    if not isinstance(module, nn.Module) and not callable(module):
        raise InputError(
            f"module must be an nn.Module or a factory returning one, got {type(module).__name__}."
        )
    if (eval_fn is None and cfg.early_stop_metric != "train_loss"
            and (cfg.restore_best or cfg.early_stop_patience is not None)):
        raise ConfigError(
            f"early_stop_metric={cfg.early_stop_metric!r} needs an eval_fn that returns it "
            "(restore_best and early stopping watch it); pass eval_fn or use 'train_loss'."
        )
    n = _data_len(data)
    if n == 0:
        raise InputError("data is empty; pass at least one training example.")
    retain_freed_memory()  # steps reuse their large buffers instead of re-faulting them
    frozen_mods = _frozen_modules(frozen)
    bs = n if cfg.batch_size is None else min(cfg.batch_size, n)
    per_epoch = n // bs if cfg.drop_last else math.ceil(n / bs)
    if per_epoch == 0:
        raise InputError(f"batch_size={bs} with drop_last leaves no batch from {n} examples.")
    total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * per_epoch
    n_epochs = math.ceil(total / per_epoch)
    ckpt = Path(cfg.checkpoint_dir) / CHECKPOINT_NAME if cfg.checkpoint_dir else None

    start = time.perf_counter()
    devices: list[int] = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        devices = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices), _guard(frozen_mods):
        torch.manual_seed(cfg.seed)  # inside the forked RNG: the caller's state comes back
        if not isinstance(module, nn.Module):
            module = module()
            if not isinstance(module, nn.Module):
                raise InputError(
                    f"the module factory returned {type(module).__name__}, not an nn.Module."
                )
        named = [(nm, p) for nm, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise InputError(
                f"{type(module).__name__} has no parameter that requires gradients; nothing "
                "to train."
            )
        frozen_ids = {id(p) for m in frozen_mods for p in m.parameters()}
        if any(id(p) in frozen_ids for _, p in named):
            raise InputError("module shares parameters with a frozen model; train only your own.")
        opt = _optimizer(_param_groups(named, cfg), cfg)
        gen = torch.Generator().manual_seed(cfg.seed)
        fp = {"config": cfg.fingerprint(), "module": _module_fingerprint(named)}
        resumed = None
        if ckpt is not None and ckpt.exists():
            resumed = _resume(ckpt, fp, named, opt, gen, devices, cfg)
        hist, st = resumed or (History(), _State())
        token = _GEN.set(gen)
        bar = progress(range(total), total=total, desc="train", enabled=cfg.progress, unit="step")
        loop = _Loop(module, loss_fn, data, collate, eval_fn, cfg, named, opt, hist, st, total,
                     iter(bar))
        for _ in range(st.step):
            next(loop.bar, None)
        try:
            for epoch in range(st.epoch0, n_epochs):
                if hist.stopped_early or st.step >= total:
                    break
                order = torch.randperm(n, generator=gen) if cfg.shuffle else torch.arange(n)
                loop.epoch(epoch, [order[b * bs:(b + 1) * bs] for b in range(per_epoch)])
                if ckpt is not None:
                    _save_checkpoint(ckpt, named, opt, gen, {"fingerprint": fp, **st.meta(epoch),
                                     "history": hist.as_dict()}, st.best_params)
        finally:
            _GEN.reset(token)
            close = getattr(bar, "close", None)
            if callable(close):
                close()
        loop.restore_best()
        module.eval()
    hist.seconds = time.perf_counter() - start
    return hist, module


class _Loop:
    """The steps and evaluations of one :func:`fit` call; progress lives in ``st`` / ``hist``."""

    def __init__(
        self, module: nn.Module, loss_fn: Callable[[nn.Module, Any], Any], data: Any,
        collate: Callable[[list[Any]], Any] | None,
        eval_fn: Callable[[nn.Module], Mapping[str, float]] | None, cfg: TrainConfig,
        named: list[tuple[str, nn.Parameter]], opt: torch.optim.Optimizer, hist: History,
        st: _State, total: int, bar: Iterator[Any],
    ) -> None:
        self.module, self.loss_fn, self.data, self.collate = module, loss_fn, data, collate
        self.eval_fn, self.cfg, self.named, self.opt = eval_fn, cfg, named, opt
        self.hist, self.st, self.total, self.bar = hist, st, total, bar

    def epoch(self, epoch: int, batches: list[torch.Tensor]) -> None:
        cfg, st, hist = self.cfg, self.st, self.hist
        self.module.train()
        for idx in batches:
            if st.step >= self.total:
                break
            self.step(idx, epoch)
            if cfg.eval_every is not None and st.step % cfg.eval_every == 0:
                self.evaluate(epoch)
                if hist.stopped_early:
                    break
        if cfg.eval_every is None and (
                self.eval_fn is not None or cfg.early_stop_patience or cfg.restore_best):
            self.evaluate(epoch)
        elif cfg.restore_best and st.step >= self.total and (
                not hist.evals or hist.evals[-1]["step"] != st.step):
            self.evaluate(epoch)  # the final weights are a candidate too

    def step(self, idx: torch.Tensor, epoch: int) -> None:
        cfg, st, hist = self.cfg, self.st, self.hist
        if cfg.warmup_steps or cfg.schedule != "constant":
            factor = _lr_factor(st.step, self.total, cfg)
            for g in self.opt.param_groups:
                g["lr"] = g["initial_lr"] * factor
        out = self.loss_fn(self.module, _batch(self.data, idx, self.collate))
        loss, metrics = (out if isinstance(out, tuple) else (out, {}))
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise InputError(
                "loss_fn must return a scalar tensor (or (loss, metrics)); got "
                f"{type(loss).__name__} {getattr(loss, 'shape', '')}."
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for _, p in self.named], cfg.grad_clip)
        self.opt.step()
        st.step += 1
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise InputError(
                f"the training loss became {lv} at step {st.step}; lower lr "
                f"(now {cfg.lr}) or set grad_clip."
            )
        hist.steps.append(st.step)
        hist.epochs.append(epoch)
        hist.train_loss.append(lv)
        hist.train_metrics.append({k: float(v) for k, v in dict(metrics).items()})
        st.since.append(lv)
        next(self.bar, None)

    def evaluate(self, epoch: int) -> None:
        st = self.st
        st.stale, st.best_val, better = _evaluate(
            self.module, self.eval_fn, self.hist, self.cfg, st.step, epoch, st.since, st.stale,
            st.best_val)
        st.since = []
        if better and self.cfg.restore_best:
            st.best_step = st.step
            st.best_params = {nm: p.detach().clone() for nm, p in self.named}

    def restore_best(self) -> None:
        """With ``restore_best``: put the kept evaluation's parameters back."""
        st = self.st
        if not self.cfg.restore_best or st.best_params is None:
            return
        with torch.no_grad():
            for nm, p in self.named:
                p.copy_(st.best_params[nm])
        self.hist.restored_step = st.best_step


def _restore_optimizer(
    opt: torch.optim.Optimizer, named: list[tuple[str, nn.Parameter]],
    tensors: Mapping[str, torch.Tensor], scalars: Mapping[str, Mapping[str, Any]],
) -> None:
    for i, (_, p) in enumerate(named):
        st: dict[str, Any] = {}
        prefix = f"opt/{i}/"
        for k, v in tensors.items():
            if k.startswith(prefix):
                st[k[len(prefix):]] = v.to(p.device)
        st.update(scalars.get(str(i), {}))
        if st:
            opt.state[p] = st


def _evaluate(
    module: nn.Module, eval_fn: Callable[[nn.Module], Mapping[str, float]] | None,
    hist: History, cfg: TrainConfig, step: int, epoch: int, since: list[float],
    stale: int, best_val: float | None,
) -> tuple[int, float | None, bool]:
    row: dict[str, float] = {"step": step, "epoch": epoch}
    if since:
        row["train_loss"] = float(sum(since) / len(since))
    if eval_fn is not None:
        was = module.training
        module.eval()
        with torch.no_grad():
            res = eval_fn(module)
        module.train(was)
        if not isinstance(res, Mapping):
            raise InputError(f"eval_fn must return a dict of floats, got {type(res).__name__}.")
        row.update({k: float(v) for k, v in res.items()})
    hist.evals.append(row)
    key = cfg.early_stop_metric
    if key not in row:
        if cfg.early_stop_patience is not None or cfg.restore_best:
            raise ConfigError(
                f"early_stop_metric={key!r} is not among the evaluated values {sorted(row)}; "
                "return it from eval_fn or use 'train_loss'."
            )
        return stale, best_val, False
    val = row[key]
    if best_val is None:
        better = True
    else:
        better = val < best_val if cfg.early_stop_mode == "min" else val > best_val
    if better:
        hist.best = dict(row)
        return 0, val, True
    stale += 1
    if cfg.early_stop_patience is not None and stale >= cfg.early_stop_patience:
        hist.stopped_early = True
    return stale, best_val, False

