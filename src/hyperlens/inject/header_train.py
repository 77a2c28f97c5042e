"""The training pieces the header's stages share: one fit over row numbers with the best
held-out evaluation kept, and a scope with torch's default generator seeded.

:mod:`hyperlens.inject.header_arms` (the classification arms) and
:mod:`hyperlens.inject.header_recon` (reconstruction) both train through these.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["train_loop"]


@contextmanager
def _torch_seeded(seed: int) -> Iterator[None]:
    """Torch's default generator seeded with ``seed`` inside the block, restored after."""
    devices: list[int] = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        devices = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def train_loop(module: nn.Module, loss_fn: Any, n: int, *, lr: float,
               param_lr: dict[str, float], steps: int, batch_size: int, seed: int,
               eval_fn: Any, eval_every: int, frozen: Any = None,
               patience: int | None = None, weight_decay: float = 0.0,
               checkpoint_dir: Path | None = None) -> dict[str, Any]:
    """:func:`hyperlens.train.fit` over ``range(n)`` with ``restore_best`` on held-out accuracy.

    ``loss_fn(rows)`` gets a batch of row numbers. ``eval_fn()`` returns the held-out
    accuracy, or a dict holding it as ``"val_acc"`` beside other numbers (kept in each
    evaluation's record, e.g. ``"train_acc"``); the module ends at its best evaluated state
    (never chosen on the test set). AdamW decays every trained weight by ``weight_decay``.
    With ``patience``, training stops once that many evaluations in a row have not
    improved it (``steps`` is then a cap) and ``"stopped_early"`` says whether it did.
    Returns the history dict plus ``best_step`` and ``best_val_acc``. A bar shows the
    steps when stderr is a terminal or ``HYPERLENS_PROGRESS=1``. With ``checkpoint_dir``
    the state is written there at every evaluation and a rerun resumes from it (the caller
    removes the folder once the result is safe).
    """
    from ..train import TrainConfig, fit

    epochs = math.ceil(steps * batch_size / n)
    tc = TrainConfig(optimizer="adamw", lr=lr, weight_decay=weight_decay, param_lr=param_lr,
                     epochs=max(1, epochs),
                     max_steps=steps, batch_size=batch_size, grad_clip=1.0, seed=seed,
                     eval_every=eval_every, progress=None, restore_best=True,
                     early_stop_metric="val_acc", early_stop_mode="max",
                     early_stop_patience=patience,
                     checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
                     checkpoint_every=eval_every if checkpoint_dir is not None else None)
    def evaluate(_m: nn.Module) -> dict[str, float]:
        out = eval_fn()
        return ({k: float(v) for k, v in out.items()} if isinstance(out, dict)
                else {"val_acc": float(out)})

    hist = fit(module, lambda _m, rows: loss_fn(rows), torch.arange(n), tc, frozen=frozen,
               eval_fn=evaluate)
    module.eval()
    skip = ("epoch", "train_loss")
    return {"steps": hist.steps, "train_loss": hist.train_loss,
            "evals": [{k: (int(v) if k == "step" else float(v)) for k, v in e.items()
                       if k not in skip} for e in hist.evals],
            "best_val_acc": float(hist.best["val_acc"]) if hist.best else -1.0,
            "best_step": hist.restored_step, "stopped_early": bool(hist.stopped_early)}
