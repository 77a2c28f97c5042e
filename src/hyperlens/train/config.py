"""Training settings (:class:`TrainConfig`, checked field by field) and the record of a run
(:class:`History`)."""

from __future__ import annotations

import contextvars
import hashlib
import json
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import ConfigError, HyperlensError, InputError

CHECKPOINT_NAME = "checkpoint.safetensors"
_FORMAT = "hyperlens.train/1"
_OPTIMIZERS = ("adamw", "adam", "sgd")
_SCHEDULES = ("constant", "linear", "cosine", "plateau")
_GEN: contextvars.ContextVar[torch.Generator | None] = contextvars.ContextVar(
    "hl_gen", default=None
)
_STEP: contextvars.ContextVar[Any] = contextvars.ContextVar("hl_step", default=None)


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
    evaluations without improvement; with ``early_stop_threshold`` t > 0 an evaluation
    counts as an improvement only when it beats the best by more than t times the best's
    magnitude (``value < best - t * |best|`` in ``"min"`` mode; PyTorch's
    ``ReduceLROnPlateau`` threshold in its relative mode), which also decides the plateau
    schedule's cuts and the weights ``restore_best`` keeps. ``shuffle=False`` keeps the
    data order;
    ``drop_last`` skips a final incomplete batch.

    ``restore_best=True`` keeps the weights of the best evaluation: ``early_stop_metric``
    and ``early_stop_mode`` pick it (``History.best``; on a tie the earlier one), the last
    step is evaluated too when the run does not end on an evaluation, and after training
    the module's trainable parameters hold that evaluation's values
    (``History.restored_step`` says which step; buffers keep their final values). The
    kept weights are part of the checkpoint, so a resumed run restores the same ones.
    ``eval_at_start=True`` also evaluates before the first step (step 0), so the starting
    weights are a candidate too: an adapter that is the identity at initialisation and never
    beats it on validation returns to the identity (``History.restored_step`` 0).

    ``checkpoint_dir`` makes the run resumable (a checkpoint at the end of every epoch);
    ``checkpoint_every=N`` also writes one after every N-th step, mid-epoch, for epochs
    too long to lose. Neither changes the numbers, so neither is part of the fingerprint
    a checkpoint must match.

    ``schedule="plateau"`` keeps the rate constant after warm-up and multiplies it by
    ``plateau_factor`` after every evaluation that does not improve ``early_stop_metric``
    (reduce on plateau; the reductions are part of the checkpoint); with
    ``early_stop_patience`` the run stops after that many such evaluations in a row.

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
    early_stop_threshold: float = 0.0
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    progress: bool | None = None
    restore_best: bool = False
    eval_at_start: bool = False
    plateau_factor: float = 0.5

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, _OPTIMIZERS)
        _choice("schedule", self.schedule, _SCHEDULES)
        _choice("early_stop_mode", self.early_stop_mode, ("min", "max"))
        self.lr = _real("lr", self.lr, "a finite learning rate > 0", lambda v: v > 0)
        self.weight_decay = _real("weight_decay", self.weight_decay, "a finite number >= 0",
                                  lambda v: v >= 0)
        self.momentum = _real("momentum", self.momentum, "a number in [0, 1)",
                              lambda v: 0 <= v < 1)
        self.plateau_factor = _real("plateau_factor", self.plateau_factor,
                                    "a number in (0, 1)", lambda v: 0 < v < 1)
        self.early_stop_threshold = _real("early_stop_threshold", self.early_stop_threshold,
                                          "a relative improvement in [0, 1)",
                                          lambda v: 0 <= v < 1)
        self._check_groups()
        self._check_betas()
        self.epochs = _int("epochs", self.epochs, 1)
        self.warmup_steps = _int("warmup_steps", self.warmup_steps, 0)
        for name in ("max_steps", "batch_size", "eval_every", "early_stop_patience",
                     "checkpoint_every"):
            setattr(self, name, _int(name, getattr(self, name), 1, none_ok=True))
        if self.grad_clip is not None:
            self.grad_clip = _real("grad_clip", self.grad_clip,
                                   "None or a finite max gradient norm > 0", lambda v: v > 0)
        if (not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool)
                or not -(2**63) <= int(self.seed) < 2**64):
            raise _bad("seed", self.seed, "an int in [-2**63, 2**64) (torch's seed range)")
        self.seed = int(self.seed)
        for name in ("shuffle", "drop_last", "restore_best", "eval_at_start"):
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
        elif self.checkpoint_every is not None:
            raise _bad("checkpoint_every", self.checkpoint_every,
                       "None unless checkpoint_dir names the folder to write to")

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
        for k in ("checkpoint_dir", "checkpoint_every", "progress"):
            d.pop(k)
        for k in ("restore_best", "eval_at_start"):  # checkpoints written before the options
            if not getattr(self, k):  # still resume
                d.pop(k)
        if self.schedule != "plateau":  # the factor acts only there
            d.pop("plateau_factor")
        if not self.early_stop_threshold:  # checkpoints written before the option resume
            d.pop("early_stop_threshold")
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
        seconds: wall-clock time of the run, summed over its sittings: a resumed run adds
            this call's time to what its checkpoint had recorded.
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


def current_step() -> int:
    """How many steps the running :func:`fit` has taken before the one in progress (0 in the
    first), counting the steps of a run it resumed: a loss that acts every N steps keys on
    this rather than on its own counter, so a resumed run acts at the same steps.
    Raises :class:`InputError` outside :func:`fit`.
    """
    st = _STEP.get()
    if st is None:
        raise InputError("current_step() is only available inside a loss_fn called by fit().")
    return int(st.step)
