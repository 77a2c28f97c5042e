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
  same seed. A loss that acts every N steps keys on :func:`current_step` (resumed runs
  count on from the checkpoint).
- **The frozen model is proven unchanged.** Every module in ``frozen`` has
  ``requires_grad`` switched off for the run (restored afterwards) and a BLAKE2 checksum
  of its parameters and buffers taken before and compared after; a difference, or a
  gradient that reached it, raises :class:`FrozenModelChanged`. Only parameters of
  ``module`` that still require gradients are trained.
- **Resumable.** With ``checkpoint_dir``, the trainable parameters (not the frozen model),
  the buffers of the modules that own trainable parameters (running statistics, queues),
  the optimizer state, both random generators, the history and the early-stopping state
  are written at the end of each epoch to one safetensors file (no pickle), atomically;
  ``checkpoint_every=N`` writes it after every N-th step too (with the epoch's batch order,
  so a long epoch resumes from its middle). A
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

from .config import (
    CHECKPOINT_NAME,
    FrozenModelChanged,
    History,
    TrainConfig,
    current_step,
    step_generator,
)
from .loop import FitOptions, checksum, fit, fit_module

__all__ = [
    "TrainConfig",
    "History",
    "fit",
    "fit_module",
    "FitOptions",
    "step_generator",
    "current_step",
    "FrozenModelChanged",
    "checksum",
    "CHECKPOINT_NAME",
]
