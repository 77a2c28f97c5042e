"""Local stand-ins for the intervention foundation, used only until it is merged.

The modulators are written against the foundation's contract: ``hyperlens.inject`` (``AdapterConfig``,
``Adapter``, ``register_adapter``, ``make_adapter``, ``attach``, ``save_adapter``,
``load_adapter``) and ``hyperlens.train`` (``TrainConfig``, ``fit``). ``modulator.py`` and
``experiments/modulate.py`` import them from this file until they exist; each piece here
implements only what the modulators use (``attach`` uses the foundation's ``intervene``):

- the adapter registry and one-file safetensors save / load (config and model identity in
  the header, no pickle).
- :func:`fit`: one seeded loop (Adam(W) with per-pattern learning rates and no-decay
  patterns, constant or cosine schedule, gradient clipping, periodic evaluation, frozen
  model checked unchanged).

When foundation M2/M3 are merged, delete this file and import those names from there.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..models.handle import ModelHandle
from ..models.hooks import intervene


def _module(model: Any) -> nn.Module:
    mod = model.module if isinstance(model, ModelHandle) else model
    if not isinstance(mod, nn.Module):
        raise InputError(f"model must be a ModelHandle or nn.Module, got {type(model).__name__}.")
    return mod


# --------------------------------------------------------------------------- adapters
@dataclass
class AdapterConfig:
    """Base of adapter configurations; subclasses validate in :meth:`validate`."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        return None


class Adapter(nn.Module):
    """A trainable module that acts on a frozen model through :meth:`interventions`."""

    config_class: type[AdapterConfig] = AdapterConfig
    adapter_name: str = ""

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config

    def interventions(self, model: Any) -> dict[str, Callable[[torch.Tensor, Any], torch.Tensor]]:
        raise NotImplementedError


_ADAPTERS: dict[str, type[Adapter]] = {}


def register_adapter(name: str) -> Callable[[type[Adapter]], type[Adapter]]:
    def deco(cls: type[Adapter]) -> type[Adapter]:
        cls.adapter_name = name
        _ADAPTERS[name] = cls
        return cls

    return deco


def available_adapters() -> list[str]:
    return sorted(_ADAPTERS)


def make_adapter(name: str, **cfg: Any) -> Adapter:
    if name not in _ADAPTERS:
        raise InputError(f"unknown adapter {name!r}; available: {', '.join(available_adapters())}.")
    cls = _ADAPTERS[name]
    return cls(cls.config_class(**cfg))


@contextlib.contextmanager
def attach(model: Any, adapter: Adapter) -> Iterator[Adapter]:
    with intervene(model, adapter.interventions(model)):
        yield adapter


def save_adapter(adapter: Adapter, path: str | Path, model: Any = None) -> Path:
    from safetensors.torch import save_file

    from ..utils import atomic_path

    meta = {
        "adapter": adapter.adapter_name,
        "config": json.dumps(asdict(adapter.config)),
        "model": model.identity() if isinstance(model, ModelHandle) else "",
    }
    state = {k: v.detach().contiguous().cpu() for k, v in adapter.state_dict().items()}
    out = Path(path)
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return out


def load_adapter(path: str | Path) -> Adapter:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "adapter" not in meta or "config" not in meta:
        raise InputError(f"{path} is not an adapter file (its header lacks 'adapter' / 'config').")
    adapter = make_adapter(meta["adapter"], **json.loads(meta["config"]))
    adapter.load_state_dict(load_file(str(path)))
    return adapter


# --------------------------------------------------------------------------- training
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
    batch_size: int = 16
    grad_clip: float | None = 1.0
    seed: int = 0
    eval_every: int | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in {"adamw", "adam", "sgd"}:
            raise ConfigError(f"optimizer must be adamw|adam|sgd, got {self.optimizer!r}.")
        if self.schedule not in {"constant", "linear", "cosine"}:
            raise ConfigError(f"schedule must be constant|linear|cosine, got {self.schedule!r}.")


@dataclass
class History:
    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _checksum(mods: list[nn.Module]) -> float:
    with torch.no_grad():
        return float(sum(p.double().sum() for m in mods for p in m.parameters()))


def fit(
    module: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Any],
    data: Any,
    cfg: TrainConfig,
    *,
    frozen: Any = None,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    collate: Callable[[list[Any]], Any] | None = None,
) -> History:
    import time

    from ..utils import progress

    frozen_mods = [
        _module(f)
        for f in (frozen if isinstance(frozen, list) else [frozen] if frozen is not None else [])
    ]
    for f in frozen_mods:
        f.requires_grad_(False)
    before = _checksum(frozen_mods)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        lr = next((v for pat, v in cfg.param_lr.items() if fnmatch.fnmatch(name, pat)), cfg.lr)
        wd = 0.0 if any(fnmatch.fnmatch(name, pat) for pat in cfg.no_decay) else cfg.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    param_groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[
        cfg.optimizer
    ]
    opt = opt_cls(param_groups)
    n = len(data)
    per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps is not None else per_epoch * cfg.epochs
    base = [g["lr"] for g in opt.param_groups]

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * step / max(1, total)))
        if cfg.schedule == "linear":
            return 1.0 - step / max(1, total)
        return 1.0

    gen = torch.Generator().manual_seed(cfg.seed)
    hist = History()
    t0 = time.perf_counter()
    step = 0
    module.train()
    bar = progress(range(total), total=total, desc="train", enabled=cfg.progress)
    it = iter(bar)
    while step < total:
        order = torch.randperm(n, generator=gen).tolist()
        for s in range(0, n, cfg.batch_size):
            if step >= total:
                break
            items = [data[i] for i in order[s : s + cfg.batch_size]]
            batch = collate(items) if collate is not None else items
            for g, b in zip(opt.param_groups, base, strict=True):
                g["lr"] = b * factor(step)
            out = loss_fn(module, batch)
            loss, metrics = out if isinstance(out, tuple) else (out, {})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            next(it, None)
            hist.steps.append(step)
            hist.train_loss.append(float(loss.detach()))
            hist.metrics.append({k: float(v) for k, v in metrics.items()})
            if eval_fn is not None and cfg.eval_every and step % cfg.eval_every == 0:
                module.eval()
                hist.evals.append({"step": step, **eval_fn(module)})
                module.train()
    module.eval()
    hist.seconds = time.perf_counter() - t0
    if frozen_mods and _checksum(frozen_mods) != before:
        raise RuntimeError("a frozen module changed during fit")
    return hist
