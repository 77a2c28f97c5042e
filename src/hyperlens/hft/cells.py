"""The students of ``hyperlens hft train`` as cells for :func:`hyperlens.run.run_cells`.

One cell is one (track, featurisation, student, replicate seed) training (the seed's
online rule, ``"online"``, is a cell too: one pass over the rows without gradients):
:func:`student_cell` trains the student on the fitted training rows (the one training
loop, to a validation plateau or the fixed schedule), scores every held-out row and writes,
atomically and before it returns,

- ``OUT/cells/<run>.npz``: the per-row held-out metrics (NLL, KL, agreement, top-1, top-5),
  which the report's intervals over texts and paired ratios read;
- ``OUT/cells/<run>.safetensors``: the trained weights, for the runs the driver keeps (the
  main HyperField of the first seed, which the checks, the mixture and ``student/`` use).

Its JSON result (what the driver records in ``OUT/cells.jsonl``) holds the training
history, the parameter count and the seed means, so a run killed at any point and started
again trains only the missing students, with the same numbers. A student killed mid-training
resumes from its last finished epoch: every phase checkpoints each epoch under
``OUT/cells/<run>.ckpt/`` (weights, optimiser, generators, the high-error queue), removed
once the cell is recorded. On a Ray cluster of several
machines ``OUT`` and the capture must be on a folder every worker reaches.

A setup on a GPU (:attr:`StudentSetup.device`) trains each student there (a cell asks Ray
for one GPU) and scores its held-out rows on the CPU, as the baselines are scored; the
kept student is read back on the CPU for the checks and the speed.

A worker prepares a :class:`Prepared` (the teacher's unembedding and embeddings, the
capture, the fitted featuriser and its stored features) once per process from a
:class:`StudentSetup` of plain values; the driver registers its own, so an in-process cell
reuses it. Cells run on a fixed thread count (:func:`~hyperlens.run.pinned_threads`).
"""

from __future__ import annotations

import copy
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..run import Cell, Resources, Task, pinned_threads
from ..utils import (
    atomic_path,
    load_safetensors,
    release_freed_memory,
    save_safetensors,
    stable_hash,
)
from .capture import Capture, Unembedding, load_capture
from .evaluate import score, seed_means, student_fn
from .features import FeatureConfig, Featurizer
from .model import (
    MLPStudent,
    TransformerStudent,
    count_parameters,
    log_unigram,
    mlp_hidden_for,
    transformer_width_for,
)
from .train import (
    FeatureStore,
    StudentConfig,
    aux_stats,
    build_features,
    build_model,
    train_bf16,
    train_hyperfield,
    train_mlp,
    train_online,
    unembed_bf16,
)

__all__ = ["StudentSetup", "StudentRun", "Prepared", "prepare", "register", "prepared_for",
           "student_cell", "cells_for", "load_metrics", "load_student_model", "MODELS"]

#: the students a cell can train
MODELS = ("hyperfield", "mlp", "window-mlp", "transformer", "online")


#: StudentConfig fields added after runs were recorded, with their defaults
_LATER = {"shortlist": 0, "negatives": 1024, "transformer_lr": 3e-4, "bf16": False,
          "min_improvement": 0.0}


@dataclass(frozen=True)
class StudentSetup:
    """What prepares the cells of one (track, featurisation), as plain values."""

    teacher: str
    capture: str
    features: tuple[tuple[str, Any], ...]  # FeatureConfig fields
    student: tuple[tuple[str, Any], ...]  # StudentConfig fields
    n_fit: int
    train_rows: int = 0  # the capture's first training rows only (0: all)
    device: str = "cpu"  # where the students train (torch's name: cpu, cuda, cuda:1)

    @classmethod
    def of(cls, teacher: str, capture: str | Path, fc: FeatureConfig, sc: StudentConfig,
           n_fit: int, train_rows: int = 0, device: str = "cpu") -> StudentSetup:
        # as the device resolves them: the dense students' autocast and the vocabulary
        # products' bf16, so a cell computes what its key says on whichever CPU runs it
        student = asdict(sc) | {"bf16": train_bf16(sc, device),
                                "fast_unembed": unembed_bf16(sc, device)}
        for k, v in _LATER.items():  # at their defaults, keys of earlier runs stay the same
            if student[k] == v:
                student.pop(k)
        return cls(teacher, str(capture), tuple(sorted(asdict(fc).items())),
                   tuple(sorted(student.items())), int(n_fit), int(train_rows), str(device))

    @property
    def key(self) -> str:
        """The setup's hash. The device counts by its kind (another device's arithmetic
        gives other bits; another GPU of one kind does not), and not at all on the CPU, so
        the keys of CPU runs are those from before the option; the precision of the
        vocabulary products counts as resolved (a CPU with native bf16 trains through bf16
        products unless told otherwise)."""
        d = asdict(self)
        # float32 vocabulary products hash as the unresolved default did (keys of runs from
        # before), bf16 ones apart: cells whose arithmetic differs never share a key
        d["student"] = tuple((k, None if k == "fast_unembed" and v is False else v)
                             for k, v in d["student"])
        if not d["train_rows"]:  # keys of runs before the option stay the same
            d.pop("train_rows")
        kind = torch.device(d.pop("device")).type
        if kind != "cpu":
            d["device"] = kind
        return stable_hash(d, length=20)

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(**dict(self.features))

    def student_config(self) -> StudentConfig:
        return StudentConfig(**dict(self.student))


@dataclass(frozen=True)
class StudentRun:
    """One student of a setup: ``name`` as the report shows it, ``keep`` its weights."""

    model: str
    seed: int
    name: str
    keep: bool = False

    def stem(self, setup: StudentSetup) -> str:
        tag = re.sub(r"[^A-Za-z0-9._=-]+", "_", self.name).strip("._-") or "student"
        return f"{tag}--seed{self.seed}--{setup.key[:8]}"


@dataclass
class Prepared:
    """A process's loaded inputs for the cells of one setup."""

    cap: Capture
    unembed: Unembedding
    log_unigram: torch.Tensor
    stats: dict[str, torch.Tensor]
    feat: Featurizer
    train: FeatureStore
    heldout: FeatureStore
    d_model: int
    #: copies of :attr:`unembed` on other devices, by device name (:meth:`unembed_on`)
    moved: dict[str, Unembedding] = field(default_factory=dict, repr=False)

    def unembed_on(self, device: torch.device) -> Unembedding:
        """:attr:`unembed` on ``device``: itself on the CPU, elsewhere a copy made once (the
        CPU one stays where the driver's scoring and checks read it)."""
        if device.type == "cpu":
            return self.unembed
        if str(device) not in self.moved:
            self.moved[str(device)] = copy.deepcopy(self.unembed).to(device)
        return self.moved[str(device)]


#: prepared set-ups of this process, by :attr:`StudentSetup.key`
_PREPARED: dict[str, Prepared] = {}


def prepare(setup: StudentSetup, teacher: Any = None, cap: Capture | None = None,
            show_progress: bool | None = False) -> Prepared:
    """Load the capture and the teacher (unless given: the driver has both), fit the
    featuriser on the fitted rows and open (or build) the stored features: the same values
    in every process."""
    if teacher is None:
        from .. import models as hmodels

        teacher = hmodels.load(setup.teacher, device="cpu")
    if cap is None:
        cap = load_capture(setup.capture)
        if setup.train_rows:
            cap = cap.limited(setup.train_rows)
    fit_ = cap.train.head(setup.n_fit)
    fc = setup.feature_config()
    feat = Featurizer(teacher.token_embeddings(), fc).fit(
        fit_["ctx"], fit_["pos"], fit_["state"] if fc.track == "B" else None)
    U = Unembedding.from_model(teacher)
    lu = log_unigram(torch.from_numpy(np.asarray(fit_["target"]).astype(np.int64)),
                     U.vocab_size)
    prep = Prepared(cap, U, lu, aux_stats(fit_), feat,
                    build_features(feat, cap, "train", show_progress=show_progress),
                    build_features(feat, cap, "heldout", show_progress=show_progress),
                    int(teacher.hidden_size))
    release_freed_memory()  # the sketches' batch buffers: the students start without them
    return prep


def register(setup: StudentSetup, prepared: Prepared) -> None:
    """Let this process's cells of ``setup`` use ``prepared`` (the driver's own)."""
    _PREPARED[setup.key] = prepared


def prepared_for(setup: StudentSetup) -> Prepared:
    """This process's :class:`Prepared` of ``setup``, made on first use."""
    p = _PREPARED.get(setup.key)
    if p is None:
        p = _PREPARED[setup.key] = prepare(setup)
    return p


def _paths(out: str | Path, setup: StudentSetup, run: StudentRun) -> tuple[Path, Path]:
    stem = Path(out) / "cells" / run.stem(setup)
    return stem.with_suffix(".npz"), stem.with_suffix(".safetensors")


def _build(p: Prepared, sc: StudentConfig, run: StudentRun,
           device: torch.device | None = None) -> Any:
    """The untrained student of ``run`` (initialised from its seed, on the CPU), moved to
    ``device`` with its own copy of the unembedding there."""
    model = _build_on_cpu(p, sc, run)
    if device is not None and device.type != "cpu":
        model.unembed = p.unembed_on(device)
        model.to(device)
    return model


def _build_on_cpu(p: Prepared, sc: StudentConfig, run: StudentRun) -> Any:
    fc = p.feat.cfg
    d_aux = int(p.stats["mean"].numel())
    with torch.random.fork_rng():  # the global generator is seeded only inside this fork
        torch.manual_seed(run.seed)
        hf = build_model(sc, p.feat.d1, fc.d_tail, p.d_model, d_aux, p.unembed,
                         p.log_unigram, seed=run.seed)
    if run.model in ("hyperfield", "online"):  # the online rule trains the same model
        return hf
    n = count_parameters(hf)
    if run.model == "transformer":
        width = transformer_width_for(n, p.feat.d, fc.window, p.d_model, p.unembed.vocab_size)
        return TransformerStudent(p.feat.emb, fc.window, p.d_model, width, p.unembed,
                                  p.log_unigram, seed=run.seed)
    if run.model == "mlp":
        hidden = mlp_hidden_for(n, p.feat.d1 + fc.d_tail, p.d_model)
        return MLPStudent(p.feat.d1, fc.d_tail, p.d_model, hidden, p.unembed, p.log_unigram,
                          seed=run.seed)
    cols = p.feat.exact_columns
    if cols is None:
        raise DataError("the window MLP reads the unsketched last tokens; train it with "
                        "--features exact.")
    hidden = mlp_hidden_for(n, cols[1] - cols[0], p.d_model)
    return MLPStudent(p.feat.d1, fc.d_tail, p.d_model, hidden, p.unembed, p.log_unigram,
                      seed=run.seed, columns=cols)


def student_cell(setup: dict[str, Any], run: dict[str, Any], out: str, threads: int,
                 show_progress: bool | None = False) -> dict[str, Any]:
    """Train one student, score the held-out rows, write its files; the ledger's result."""
    st = StudentSetup(str(setup["teacher"]), str(setup["capture"]),
                      tuple(tuple(x) for x in setup["features"]),
                      tuple(tuple(x) for x in setup["student"]), int(setup["n_fit"]),
                      int(setup.get("train_rows", 0)), str(setup.get("device", "cpu")))
    r = StudentRun(**run)
    t0 = time.perf_counter()
    with pinned_threads(threads):
        p = prepared_for(st)
        sc = st.student_config()
        model = _build(p, sc, r, torch.device(st.device))
        U = model.unembed  # the unembedding on the student's device
        train, heldout = ((_ids(p.cap.train), _ids(p.cap.heldout)) if r.model == "transformer"
                          else (p.train, p.heldout))
        npz, weights = _paths(out, st, r)
        ckpt = npz.with_suffix(".ckpt")  # every epoch of every phase: a killed cell resumes
        with torch.random.fork_rng():
            torch.manual_seed(r.seed)
            if r.model == "hyperfield":
                hist = train_hyperfield(model, train, p.cap.train, p.stats, U, sc,
                                        seed=r.seed, show_progress=show_progress,
                                        checkpoint_dir=ckpt)
            elif r.model == "online":  # one pass without gradients: no checkpoints
                hist = train_online(model, train, p.cap.train, p.stats, sc, seed=r.seed,
                                    show_progress=show_progress)
            else:
                hist = train_mlp(model, train, p.cap.train, U, sc, seed=r.seed,
                                 show_progress=show_progress, checkpoint_dir=ckpt)
        X, T = heldout.tensors().values()  # scored on the CPU, as the baselines are
        metrics = score(student_fn(model, X, T), p.cap.heldout, p.unembed)
    npz.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **metrics)  # type: ignore[arg-type]
    if r.keep:
        save_safetensors(weights, {k: v.detach().contiguous()
                                   for k, v in model.state_dict().items()})
    shutil.rmtree(ckpt, ignore_errors=True)  # the ledger now holds the cell
    release_freed_memory()
    reseeds = hist.pop("reseeds", None)  # HyperField only
    train_s = float(hist.pop("seconds"))  # training, summed over the sittings of a resumed cell
    return {"summary": seed_means(metrics), "params": count_parameters(model),
            "history": hist, "reseeds": reseeds, "seconds": time.perf_counter() - t0,
            "train_seconds": train_s}


def _ids(sp: Any) -> FeatureStore:
    """A split's window token ids as the inputs of a student that reads ids (no tail)."""
    return FeatureStore(np.asarray(sp["ctx"]), np.zeros((len(sp), 0), np.float16))


def cells_for(setup: StudentSetup, runs: list[StudentRun], out: str | Path, threads: int
              ) -> list[Cell]:
    """One :func:`student_cell` per run, asking for ``threads`` CPUs (and, for a setup on a
    GPU, one GPU: Ray then runs one cell per GPU at a time)."""
    res = Resources.for_device(setup.device, num_cpus=threads)
    base = {"setup": asdict(setup), "out": str(out), "threads": threads}
    return [Cell({"setup": setup.key, "model": r.model, "seed": r.seed, "name": r.name},
                 Task(student_cell, base | {"run": asdict(r)}, res)) for r in runs]


_FIX = "rerun with --fresh (or delete OUT/cells.jsonl) to train the students again"


def outputs_present(out: str | Path, setup: StudentSetup, run: StudentRun) -> bool:
    """Whether a finished cell's files are in ``OUT/cells/``: its held-out rows and, for
    the kept student, its weights (a ledger copied without them names cells to retrain)."""
    npz, weights = _paths(out, setup, run)
    return npz.is_file() and (not run.keep or weights.is_file())


def load_metrics(out: str | Path, setup: StudentSetup, run: StudentRun) -> dict[str, np.ndarray]:
    """The per-row held-out metrics a finished cell wrote."""
    npz, _ = _paths(out, setup, run)
    if not npz.is_file():
        raise DataError(f"the held-out metrics {str(npz)!r} of the finished student "
                        f"{run.name} (seed {run.seed}) are missing; {_FIX}.")
    with np.load(npz) as z:
        return {k: z[k] for k in z.files}


def load_student_model(out: str | Path, setup: StudentSetup, run: StudentRun) -> Any:
    """The trained student of a kept cell, rebuilt and loaded from its weights."""
    p = prepared_for(setup)
    model = _build(p, setup.student_config(), run)
    _, weights = _paths(out, setup, run)
    if not weights.is_file():
        raise DataError(f"the weights {str(weights)!r} of the finished student {run.name} "
                        f"(seed {run.seed}) are missing; {_FIX}.")
    tensors, _ = load_safetensors(weights, what=f"the weights of {run.name}", fix=_FIX)
    model.load_state_dict(tensors)
    model.eval()
    return model
