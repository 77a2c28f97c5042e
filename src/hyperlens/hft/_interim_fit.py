"""Stand-in for ``hyperlens.train.fit`` (contract B, foundation M2) until that lands.

Same names and signature as the contract (``TrainConfig``, ``fit``, ``History``), only the
parts this package uses; :mod:`hyperlens.hft.train` imports the real one when it exists,
so this module is deleted once ``foundation`` M2 is merged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..utils import progress

__all__ = ["TrainConfig", "History", "fit"]


@dataclass
class TrainConfig:
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    param_lr: dict[str, float] = field(default_factory=dict)
    no_decay: tuple[str, ...] = ()
    schedule: str = "constant"
    warmup_steps: int = 0
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 256
    grad_clip: float | None = None
    seed: int = 0
    eval_every: int | None = None
    progress: bool | None = None


@dataclass
class History:
    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit(module: nn.Module, loss_fn: Callable[..., Any], data: dict[str, torch.Tensor],
        cfg: TrainConfig, *, frozen: Any = None, eval_fn: Callable[[nn.Module], dict] | None = None,
        collate: Callable[..., Any] | None = None) -> History:
    import fnmatch

    n = len(next(iter(data.values())))
    named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
    if not named:
        raise InputError("fit: the module has no trainable parameters.")
    groups = []
    for k, p in named:
        lr = cfg.lr
        for pat, v in cfg.param_lr.items():
            if fnmatch.fnmatch(k, pat):
                lr = v
        wd = 0.0 if any(fnmatch.fnmatch(k, pat) for pat in cfg.no_decay) else cfg.weight_decay
        groups.append({"params": [p], "lr": lr, "weight_decay": wd})
    opt: torch.optim.Optimizer
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=cfg.lr)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    base = [g["lr"] for g in opt.param_groups]

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = step / max(1, total)
        if cfg.schedule == "linear":
            return max(0.0, 1 - frac)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * frac))
        return 1.0

    gen = torch.Generator().manual_seed(cfg.seed)
    hist = History()
    step = 0
    module.train()
    for _epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for b0 in progress(range(0, n, cfg.batch_size), total=steps_per_epoch, desc="train",
                           enabled=cfg.progress):
            if step >= total:
                break
            idx = order[b0:b0 + cfg.batch_size]
            batch = {k: v[idx] for k, v in data.items()}
            if collate is not None:
                batch = collate(batch)
            for g, b in zip(opt.param_groups, base, strict=True):
                g["lr"] = b * factor(step)
            out = loss_fn(module, batch)
            loss, mets = (out if isinstance(out, tuple) else (out, {}))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for _, p in named], cfg.grad_clip)
            opt.step()
            hist.steps.append(step)
            hist.train_loss.append(float(loss.detach()))
            hist.metrics.append({k: float(v) for k, v in mets.items()})
            step += 1
            if eval_fn is not None and cfg.eval_every and step % cfg.eval_every == 0:
                module.eval()
                hist.evals.append({"step": step, **eval_fn(module)})
                module.train()
    module.eval()
    return hist
