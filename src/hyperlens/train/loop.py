"""The one training loop: :func:`fit` and :func:`fit_module`, with the frozen-model guard."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict, Unpack

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..models.handle import ModelHandle
from ..utils import progress, retain_freed_memory
from .checkpoint import _module_fingerprint, _resume, _save_checkpoint, _State, state_buffers
from .config import _GEN, _STEP, CHECKPOINT_NAME, FrozenModelChanged, History, TrainConfig


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
    take = getattr(v, "take_rows", None)  # a row source: rows read per batch (from disk)
    if callable(take):
        return take(idx)
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


def _fusable(groups: list[dict[str, Any]]) -> bool:
    """Whether every parameter suits PyTorch's fused Adam kernel: floating point, all on one
    CPU or CUDA device. Fused, one step updates every tensor in a single vectorised pass
    (about 5x the per-tensor loop on a CPU for a HyperField student's 26M parameters,
    ``benchmarks/bench_train_adam.py``); it
    is the same algorithm, equal to the loop within float rounding."""
    ps = [p for g in groups for p in g["params"]]
    devices = {p.device for p in ps}
    return (len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda")
            and all(p.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
                    for p in ps))


def _optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    clean = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    if cfg.optimizer in ("adam", "adamw"):
        kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return kind(clean, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                    fused=_fusable(clean) or None)
    return torch.optim.SGD(clean, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate for the optimizer step ``step`` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule in ("constant", "plateau"):  # plateau: the loop scales it by its cuts
        return 1.0
    span = max(1, total - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "linear":
        return 1.0 - frac
    return 0.5 * (1.0 + math.cos(math.pi * frac))


# --------------------------------------------------------------------------- the loop
class FitOptions(TypedDict, total=False):
    """The keyword options of :func:`fit` and :func:`fit_module` (described in :func:`fit`);
    each defaults to None."""

    frozen: Any
    eval_fn: Callable[[nn.Module], Mapping[str, float]] | None
    collate: Callable[[list[Any]], Any] | None


def fit(
    module: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Any],
    data: Any,
    cfg: TrainConfig,
    **options: Unpack[FitOptions],
) -> History:
    """Train the parameters of ``module`` that require gradients; return the :class:`History`.

    Args:
        module: the trainable module (to initialise it under ``cfg.seed`` too, build it
            in a factory and call :func:`fit_module`).
        loss_fn: ``loss_fn(module, batch) -> loss`` or ``(loss, {"name": float})``.
        data: a sized indexable: torch Dataset, list, tensor, or a dict/tuple of tensors
            with equal length (batches keep that structure); a value of a dict/tuple may
            also be a row source, with ``len()`` and ``take_rows(idx) -> tensor`` (rows read
            per batch, e.g. from disk).
        cfg: the :class:`TrainConfig`.
        **options: the :class:`FitOptions`: ``frozen``, a module, :class:`ModelHandle` or
            list of them proven unchanged; ``eval_fn``, ``eval_fn(module) -> {"metric":
            value}``, called in eval mode without grads; ``collate``, joins a list of items
            into a batch for list / Dataset data (default: torch's ``default_collate``).

    The module is in train mode for the steps and in eval mode when ``fit`` returns.
    """
    if not isinstance(module, nn.Module):
        raise InputError(
            f"module must be an nn.Module, got {type(module).__name__}; for a factory use "
            "fit_module."
        )
    hist, _ = _fit(module, loss_fn, data, cfg, **options)
    return hist


def fit_module(
    factory: Callable[[], nn.Module],
    loss_fn: Callable[[nn.Module, Any], Any],
    data: Any,
    cfg: TrainConfig,
    **options: Unpack[FitOptions],
) -> tuple[nn.Module, History]:
    """:func:`fit` with a module built by ``factory()`` under ``cfg.seed``; returns both."""
    hist, mod = _fit(factory, loss_fn, data, cfg, **options)
    return mod, hist


def _fit(
    module: nn.Module | Callable[[], nn.Module],
    loss_fn: Callable[[nn.Module, Any], Any],
    data: Any,
    cfg: TrainConfig,
    **options: Unpack[FitOptions],
) -> tuple[History, nn.Module]:
    unknown = sorted(set(options) - set(FitOptions.__annotations__))
    if unknown:
        raise ConfigError(
            f"fit got unknown option(s) {unknown}; it takes {list(FitOptions.__annotations__)}."
        )
    eval_fn, collate = options.get("eval_fn"), options.get("collate")
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
    frozen_mods = _frozen_modules(options.get("frozen"))
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
        bufs = state_buffers(module) if ckpt is not None else []
        resumed = None
        if ckpt is not None and ckpt.exists():
            resumed = _resume(ckpt, fp, named, opt, gen, devices, cfg, bufs)
        hist, st = resumed or (History(), _State())
        before = hist.seconds  # the sittings a resumed run had already spent
        token, step_token = _GEN.set(gen), _STEP.set(st)
        bar = progress(range(total), total=total, desc="train", enabled=cfg.progress, unit="step")
        loop = _Loop(module, loss_fn, data, collate, eval_fn, cfg, named, opt, hist, st, total,
                     iter(bar))
        for _ in range(st.step):
            next(loop.bar, None)
        try:
            if cfg.eval_at_start and st.step == 0 and not hist.evals:
                loop.evaluate(st.epoch0)  # step 0: the starting weights are a candidate
            for epoch in range(st.epoch0, n_epochs):
                if hist.stopped_early or st.step >= total:
                    break
                if st.order is not None:  # resumed mid-epoch: its order, its first batches done
                    order, first, st.order, st.in_epoch = st.order, st.in_epoch, None, 0
                else:
                    first = 0
                    order = torch.randperm(n, generator=gen) if cfg.shuffle else torch.arange(n)

                def save(done: int, epoch: int = epoch, order: torch.Tensor = order) -> None:
                    assert ckpt is not None  # done > 0: mid-epoch, the order kept with it
                    hist.seconds = before + time.perf_counter() - start
                    _save_checkpoint(ckpt, named, opt, gen, {
                        "fingerprint": fp, **st.meta(epoch, done), "history": hist.as_dict()},
                        st.best_params, bufs, order if done else None)

                loop.epoch(epoch, [order[b * bs:(b + 1) * bs] for b in range(per_epoch)], first,
                           save if ckpt is not None and cfg.checkpoint_every else None)
                if ckpt is not None:
                    save(0)
        finally:
            _GEN.reset(token)
            _STEP.reset(step_token)
            close = getattr(bar, "close", None)
            if callable(close):
                close()
        loop.restore_best()
        module.eval()
    hist.seconds = before + time.perf_counter() - start
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

    def epoch(self, epoch: int, batches: list[torch.Tensor], first: int = 0,
              save: Callable[[int], None] | None = None) -> None:
        """Run ``batches[first:]`` (a resumed epoch skips those done); ``save(done)`` writes
        a mid-epoch checkpoint every ``checkpoint_every`` steps."""
        cfg, st, hist = self.cfg, self.st, self.hist
        self.module.train()
        for b in range(first, len(batches)):
            if st.step >= self.total:
                break
            self.step(batches[b], epoch)
            if cfg.eval_every is not None and st.step % cfg.eval_every == 0:
                self.evaluate(epoch)
                if hist.stopped_early:
                    break
            if (save is not None and cfg.checkpoint_every and b + 1 < len(batches)
                    and st.step < self.total and st.step % cfg.checkpoint_every == 0):
                save(b + 1)
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
            if cfg.schedule == "plateau":
                factor *= cfg.plateau_factor ** st.reductions
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
        if self.cfg.schedule == "plateau" and not better and st.best_val is not None:
            st.reductions += 1
            self.hist.evals[-1]["lr_scale"] = self.cfg.plateau_factor ** st.reductions
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
        margin = cfg.early_stop_threshold * abs(best_val)
        better = (val < best_val - margin if cfg.early_stop_mode == "min"
                  else val > best_val + margin)
    if better:
        hist.best = dict(row)
        return 0, val, True
    stale += 1
    if cfg.early_stop_patience is not None and stale >= cfg.early_stop_patience:
        hist.stopped_early = True
    return stale, best_val, False
