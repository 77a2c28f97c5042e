"""The trained runs of ``hyperlens modulate`` as cells for :func:`hyperlens.run.run_cells`.

One cell is one (model, modulator, geometry, starting alpha, replicate seed) run:
:func:`train_cell` trains the adapter (:func:`~hyperlens.inject.modulate_train.train_run`),
scores it on the held-out synsets (:func:`~hyperlens.inject.modulate_train.evaluate`) and
writes, atomically and before it returns,

- ``OUT/adapters/<run>.safetensors``: the trained adapter (:func:`~hyperlens.inject.save_adapter`,
  adapter-only), which the later steps (coherence, alpha sweep, generations) load with
  :func:`load_trained` instead of keeping every adapter in memory;
- ``OUT/adapters/<run>.reps.safetensors``: the held-out definition embeddings ``[n_test, d]``
  that the relational scores read (too large for a ledger line).

Its JSON result (what the driver records in ``OUT/cells.jsonl``) holds the training curve,
the final alphas and the per-synset task scores. The cell writes the files itself, so on a
Ray cluster of several machines ``OUT`` must be a folder every worker reaches.

A worker prepares a model's :class:`~hyperlens.inject.modulate_train.Setup` (the loaded
model, the WordNet split, anchors, geometries and targets) once per process from a
:class:`SetupSpec` of plain values (:func:`setup_for`); the driver registers its own, so an
in-process cell reuses it. Set-up and cells run on a fixed thread count
(:func:`~hyperlens.run.pinned_threads`), so a cell gives the same bits in this process and
on a worker.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError, InputError
from ..run import Cell, Resources, Task, pinned_threads
from ..utils import Timer, load_safetensors, save_safetensors, stable_hash
from . import modulate_train as mt
from .base import load_adapter, save_adapter

__all__ = ["SetupSpec", "check_layers", "prepare_setup", "setup_for", "register", "release",
           "pop_timings", "cell_key", "run_cells_for", "train_cell", "run_record",
           "load_trained", "adapter_path", "reps_path", "best_rate"]


@dataclass(frozen=True)
class SetupSpec:
    """Everything that prepares one model's runs, as plain values a worker can receive."""

    model: str
    device: str
    dtype: str
    anchors: int
    test: int
    layers: tuple[int, ...] | None
    split_seed: int
    control_seeds: tuple[tuple[str, int], ...]
    split_paths: str = "all"
    lerp_target: str = "subspace"
    field_gates: str = "zero"
    val: int = 0
    lerp_subspace: str = "no-massive"

    @property
    def key(self) -> str:
        return stable_hash(asdict(self), length=20)


#: prepared set-ups of this process, by :attr:`SetupSpec.key`: a worker prepares one once
_SETUPS: dict[str, mt.Setup] = {}
#: training time of the cells computed in this process (the driver adds them to its report)
_TIMINGS: dict[str, float] = {}


def check_layers(layers: Sequence[int], model: str, n_blocks: int) -> None:
    """A :class:`ConfigError` naming ``--layers`` when a block is not in ``0..n_blocks-1``."""
    out = [b for b in layers if not 0 <= b < n_blocks]
    if out:
        raise ConfigError(f"--layers {' '.join(map(str, out))} out of range for {model} "
                          f"({n_blocks} blocks: use 0..{n_blocks - 1}).")


def prepare_setup(spec: SetupSpec, threads: int) -> mt.Setup:
    """Load ``spec.model`` and prepare its runs (:func:`~.modulate_train.prepare`) on
    ``threads`` threads; the model is checked (a transformer, ``--layers`` in range) before
    anything else is computed."""
    from ..data import wordnet_reader
    from ..models import load

    wn = wordnet_reader()
    h = load(spec.model, device=spec.device, dtype=spec.dtype)
    if h.module is None:
        raise InputError(f"--models: {spec.model!r} has no transformer to modulate.")
    if spec.layers is not None:
        check_layers(spec.layers, spec.model, h.num_layers)
    with pinned_threads(threads):
        return mt.prepare(spec.model, h, wn, n_anchors=spec.anchors, n_test=spec.test,
                          layers=spec.layers, split_seed=spec.split_seed,
                          split_paths=spec.split_paths, lerp_target=spec.lerp_target,
                          field_gates=spec.field_gates, n_val=spec.val,
                          lerp_subspace=spec.lerp_subspace,
                          control_seeds=dict(spec.control_seeds))


def register(spec: SetupSpec, setup: mt.Setup) -> None:
    """Let this process's cells of ``spec`` use ``setup`` (the driver's own)."""
    _SETUPS[spec.key] = setup


def release(spec: SetupSpec) -> None:
    """Forget the set-up of ``spec`` in this process (its model can be freed)."""
    _SETUPS.pop(spec.key, None)


def setup_for(spec: SetupSpec, threads: int) -> mt.Setup:
    """This process's set-up of ``spec``, prepared on first use."""
    s = _SETUPS.get(spec.key)
    if s is None:
        s = _SETUPS[spec.key] = prepare_setup(spec, threads)
    return s


def pop_timings() -> dict[str, float]:
    """The training times of the cells computed in this process since the last call."""
    out = dict(_TIMINGS)
    _TIMINGS.clear()
    return out


# --------------------------------------------------------------------------- files
def _stem(model: str, run: mt.RunSpec) -> str:
    name = f"{model}--{run.key.replace('/', '-')}"
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).lstrip("._-") or "run"


def adapter_path(out: str | Path, model: str, run: mt.RunSpec) -> Path:
    """Where the trained adapter of ``run`` lives: ``OUT/adapters/<model>--<run>.safetensors``."""
    return Path(out) / "adapters" / f"{_stem(model, run)}.safetensors"


def reps_path(out: str | Path, model: str, run: mt.RunSpec) -> Path:
    """Where the held-out definition embeddings of ``run`` live (next to its adapter)."""
    return Path(out) / "adapters" / f"{_stem(model, run)}.reps.safetensors"


_FIX = "rerun with --fresh (or delete OUT/cells.jsonl) to train the runs again"


def load_trained(s: mt.Setup, out: str | Path, run: mt.RunSpec) -> Any:
    """The trained adapter of ``run`` from its file, on the model's device."""
    path = adapter_path(out, s.name, run)
    if not path.is_file():
        raise DataError(f"the trained adapter {str(path)!r} of the finished run {run.key} is "
                        f"missing; {_FIX}.")
    return load_adapter(path, s.handle).to(s.handle.device)


def _load_reps(s: mt.Setup, out: str | Path, run: mt.RunSpec) -> dict[str, torch.Tensor]:
    path = reps_path(out, s.name, run)
    if not path.is_file():
        raise DataError(f"the held-out embeddings {str(path)!r} of the finished run {run.key} "
                        f"are missing; {_FIX}.")
    tensors, _ = load_safetensors(path, what="held-out embeddings file", fix=_FIX)
    return tensors


# --------------------------------------------------------------------------- cells
def train_cell(spec: SetupSpec, run: dict[str, Any], *, steps: int, batch_size: int, lr: float,
               out: str, threads: int, eval_every: int | None = None,
               patience: int | None = None) -> dict[str, Any]:
    """Train and score one run (``run``: the fields of a :class:`~.modulate_train.RunSpec`);
    write its adapter and held-out embeddings under ``out/adapters``; return its metrics
    (with a validation slice: the validation curve, whether the run stopped on a plateau
    and the step whose adapter was kept). The ``meandiff`` control is not trained: its
    multiplier is chosen on the validation slice
    (:func:`~hyperlens.inject.modulate_controls.fit_meandiff`)."""
    from .modulate_controls import fit_meandiff

    s = setup_for(spec, threads)
    rs = mt.RunSpec(**run)
    with pinned_threads(threads), Timer(_TIMINGS)(f"{s.name}:train:{rs.key}"):
        if rs.kind == "meandiff":
            ad, scales = fit_meandiff(s)
            hist = None
        else:
            ad, hist = mt.train_run(s, rs, steps=steps, batch_size=batch_size, lr=lr,
                                    eval_every=eval_every, patience=patience)
        ev = mt.evaluate(s, ad, s.test)
    save_adapter(ad, adapter_path(out, s.name, rs), model=s.handle)
    save_safetensors(reps_path(out, s.name, rs),
                     {k: ev[k] for k in ("reps", "reps_last") if k in ev},
                     {"run": rs.key, "model": s.name})
    scores = {"top1": ev["top1"].tolist(), "top10": ev["top10"].tolist()}
    if hist is None:  # meandiff: the multiplier's validation curve instead of training
        return scores | {"final_alpha": [], "history": [], "train_loss": [],
                         "steps_trained": 0, "stopped_early": False, "kept_step": None,
                         "val_curve": [], "scale_curve": scales,
                         "scale": min(scales[1:], key=lambda p: p[1])[0] if scales else 1.0}
    return scores | {
        "final_alpha": mt.block_alphas(s, ad),
        "loss_first": hist.train_loss[0],
        "loss_last": float(np.mean(hist.train_loss[-5:])),
        "history": hist.train_metrics,
        "alpha_drift": mt.alpha_drift(hist.train_metrics, s.layers),
        "train_loss": hist.train_loss,
        "steps_trained": len(hist.train_loss),
        "stopped_early": bool(hist.stopped_early),
        "kept_step": hist.restored_step,
        "val_curve": [[int(e["step"]), float(e["val_loss"])] for e in hist.evals
                      if "val_loss" in e],
    }


def cell_key(spec: SetupSpec, run: mt.RunSpec) -> dict[str, Any]:
    return {"model": spec.model, "run": run.key}


def run_cells_for(spec: SetupSpec, plan: Sequence[mt.RunSpec], *, steps: int, batch_size: int,
                  lr: float, out: str | Path, threads: int,
                  eval_every: int | None = None, patience: int | None = None) -> list[Cell]:
    """One :func:`train_cell` per planned run, asking for ``threads`` CPUs (and a GPU when
    the model lives on one)."""
    res = Resources.for_device(spec.device, num_cpus=threads)
    kw = {"spec": spec, "steps": steps, "batch_size": batch_size, "lr": lr, "out": str(out),
          "threads": threads, "eval_every": eval_every, "patience": patience}
    return [Cell(cell_key(spec, r), Task(train_cell, kw | {"run": asdict(r)}, res))
            for r in plan]


def best_rate(results: Sequence[tuple[float, dict[str, Any] | None]]) -> tuple[float, list[float]]:
    """The rate whose run reached the lowest validation loss among ``(rate, result)`` pairs
    of finished cells (the earlier rate on a tie), and each rate's best validation loss."""
    best = [min((v for _, v in (res or {}).get("val_curve") or []), default=float("inf"))
            for _, res in results]
    pick = min(range(len(results)), key=lambda i: (best[i], i))
    return float(results[pick][0]), best


def run_record(s: mt.Setup, out: str | Path, run: mt.RunSpec, result: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished cell as the experiment uses it: the run's row (its spec and training
    metrics) and its held-out scores (``reps`` and, for decoders, ``reps_last`` from the
    file; ``top1`` / ``top10``)."""
    row = {"key": run.key, "kind": run.kind, "geometry": run.geometry, "alpha0": run.alpha0,
           "seed": run.seed, "alpha_lr": run.alpha_lr, "subspace": run.subspace,
           "lr": run.lr, "control": run.control} | {
               k: v for k, v in result.items() if k not in ("top1", "top10")}
    ev: dict[str, Any] = dict(_load_reps(s, out, run))  # reps (and reps_last: decoders)
    ev |= {"top1": np.asarray(result["top1"], dtype=np.float32),
           "top10": np.asarray(result["top10"], dtype=np.float32)}
    return row, ev
