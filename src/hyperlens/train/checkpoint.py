"""Checkpoints of the training loop: written atomically, resumed exactly, set aside when
damaged."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..utils import load_safetensors, save_safetensors
from .config import _FORMAT, History, TrainConfig


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
    reductions: int = 0  # schedule "plateau": evaluations that did not improve
    in_epoch: int = 0  # a checkpoint written mid-epoch: the batches of epoch0 already done
    order: torch.Tensor | None = None  # ... and that epoch's batch order

    def meta(self, epoch: int, in_epoch: int = 0) -> dict[str, Any]:
        """The checkpoint's bookkeeping after ``epoch`` (``in_epoch`` > 0: after that many
        of its batches, the epoch unfinished)."""
        return {"step": self.step, "epoch": epoch, "stale": self.stale,
                "best_val": self.best_val, "since": list(self.since),
                "best_step": self.best_step, "reductions": self.reductions,
                "in_epoch": in_epoch}


def state_buffers(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The buffers a checkpoint keeps: those of modules with a trainable parameter in them
    (running statistics, queues, usage counts), not those of submodules without one (a
    frozen lookup table held as buffers is a constant, and may be large)."""
    out: list[tuple[str, torch.Tensor]] = []
    for prefix, mod in module.named_modules():
        if any(p.requires_grad for p in mod.parameters()):
            out += [(f"{prefix}.{n}" if prefix else n, b)
                    for n, b in mod.named_buffers(recurse=False) if b is not None]
    return out


def _save_checkpoint(
    path: Path, named: list[tuple[str, nn.Parameter]], opt: torch.optim.Optimizer,
    gen: torch.Generator, meta: dict[str, Any], best: Mapping[str, torch.Tensor] | None,
    buffers: Sequence[tuple[str, torch.Tensor]] = (), order: torch.Tensor | None = None,
) -> None:
    """Write the run's state to ``path`` atomically; ``order`` is the batch order of an
    unfinished epoch (a checkpoint written mid-epoch)."""
    tensors: dict[str, torch.Tensor] = {}
    if order is not None:
        tensors["order/epoch"] = order
    for name, p in named:
        tensors[f"param/{name}"] = p
    for name, b in buffers:
        tensors[f"buffer/{name}"] = b
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
    if int(meta.get("in_epoch", 0)):
        need.append("order/epoch")
    missing = [k for k in need if k not in tensors]
    if missing:
        raise DataError(f"training checkpoint {str(path)!r} is damaged (tensors {missing[:3]} "
                        f"are missing); {fix}.")
    return tensors, meta


def _resume(
    path: Path, fingerprint: Mapping[str, str], named: list[tuple[str, nn.Parameter]],
    opt: torch.optim.Optimizer, gen: torch.Generator, devices: list[int], cfg: TrainConfig,
    buffers: Sequence[tuple[str, torch.Tensor]] = (),
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
        for nm, b in buffers:  # a checkpoint written before buffers were kept has none
            if f"buffer/{nm}" in tensors and tensors[f"buffer/{nm}"].shape == b.shape:
                b.copy_(tensors[f"buffer/{nm}"])
    _restore_optimizer(opt, named, tensors, meta.get("opt_scalars", {}))
    torch.set_rng_state(tensors["rng/global"])
    gen.set_state(tensors["rng/steps"])
    for d in devices:
        if f"rng/cuda{d}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng/cuda{d}"], d)
    hist = History.from_dict(meta["history"])
    in_epoch = int(meta.get("in_epoch", 0))  # mid-epoch: that epoch goes on, same order
    st = _State(step=int(meta["step"]), epoch0=int(meta["epoch"]) + (0 if in_epoch else 1),
                stale=int(meta["stale"]), best_val=meta["best_val"],
                since=[float(v) for v in meta.get("since", [])],
                reductions=int(meta.get("reductions", 0)), in_epoch=in_epoch,
                order=tensors["order/epoch"] if in_epoch else None)
    hist.resumed_from = st.step
    if cfg.restore_best and meta.get("best_step") is not None:
        st.best_step = int(meta["best_step"])
        st.best_params = {nm: tensors[f"best/{nm}"].to(p.device) for nm, p in named}
    return hist, st


def _restore_optimizer(
    opt: torch.optim.Optimizer, named: list[tuple[str, nn.Parameter]],
    tensors: Mapping[str, torch.Tensor], scalars: Mapping[str, Mapping[str, Any]],
) -> None:
    for i, (_, p) in enumerate(named):
        st: dict[str, Any] = {}
        prefix = f"opt/{i}/"
        for k, v in tensors.items():
            if k.startswith(prefix):
                if v.shape == p.shape:  # in the parameter's memory layout, as the optimizer
                    # made it (a column-major parameter keeps column-major moments)
                    st[k[len(prefix):]] = torch.empty_like(p, dtype=v.dtype).copy_(v)
                else:
                    st[k[len(prefix):]] = v.to(p.device)
        st.update(scalars.get(str(i), {}))
        if st:
            opt.state[p] = st
