"""Transfer sweeps: the cells of a cross-architecture transfer study and what computes them.

A *cell* is one configuration at one replicate seed: a ceiling (one model's float and HDC
probes on its own embeddings) or a transfer (an aligner fitted on anchors, a classifier
trained on the teacher's codes and scored on the student's). :func:`ceiling_cell` and
:func:`transfer_cell` compute one each as pure functions of their inputs, so a cell run
in-process and one run as a Ray task give the same numbers.

- :class:`SweepDesign`: which cells a choice of stages reads (:meth:`SweepDesign.plan`);
- :class:`TransferProtocol`: the options that change a cell's numbers (their hash is the
  ledger's fingerprint);
- :class:`TransferSweep`: what the cells share (each dataset's pool and per-seed splits, the
  embeddings) and the ledger it fills with :func:`hyperlens.run.run_cells`.

Every replicate seed re-splits a dataset's pool into train / test / anchor rows and redraws
the random projection; ``pool_seed`` draws which rows form the pool (and their order), so it
changes every split too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError
from ..report import Report
from ..run import Cell, Executor, Ledger, LocalExecutor, Resources, Shared, Task, run_cells
from ..utils import stable_hash
from .base import make_aligner
from .evaluate import (
    CeilingScores,
    FeatureScaler,
    ProbeScores,
    ceiling_scores,
    check_disjoint,
    transfer_scores,
)

__all__ = [
    "STAGES",
    "CeilingSpec",
    "TransferSpec",
    "SweepDesign",
    "TransferProtocol",
    "TransferSweep",
    "ceiling_cell",
    "transfer_cell",
]

#: The stages of a transfer study, in report order.
STAGES = ("0", "1", "2", "3", "4", "teachers")


# --------------------------------------------------------------------------- cells
def _scaled(emb: np.ndarray, rows: Mapping[str, np.ndarray], mode: str) -> np.ndarray:
    """``emb`` after ``input_scaling`` fitted on this seed's anchor pool (label-free, disjoint
    from the test split, so the scaling sees no test vector)."""
    if mode == "none":
        return emb
    return FeatureScaler(mode).fit(emb[rows["anchors"]]).transform(emb)


def _aligner_params(name: str, seed: int, device: str) -> dict[str, Any]:
    if name == "contrastive":
        return {"seed": int(seed), "device": str(device)}
    return {}


def ceiling_cell(emb: np.ndarray, pool: dict[str, Any], *, seed: int, hdc_dim: int, tau: float,
                 C: float, C_float: float, input_scaling: str) -> dict[str, Any]:
    """One ceiling cell: float and HDC probes trained and tested on one model's embeddings.

    Shapes: ``emb [N, d]`` (the dataset's pool); ``pool["labels"] [N]``.
    """
    r = pool["rows"][seed]
    labels = pool["labels"]
    x = _scaled(emb, r, input_scaling)
    c = ceiling_scores(x[r["train"]], labels[r["train"]], x[r["test"]], labels[r["test"]],
                       hdc_dim=hdc_dim, tau=tau, seed=seed, C=C, C_float=C_float)
    return {"hdc_acc": c.hdc.acc, "hdc_bal_acc": c.hdc.bal_acc, "float_acc": c.float.acc,
            "float_bal_acc": c.float.bal_acc, "majority": c.majority}


def transfer_cell(emb_t: np.ndarray, emb_s: np.ndarray, pool: dict[str, Any],
                  ceil: dict[str, Any], *, aligner: str, n_anchors: str, seed: int, hdc_dim: int,
                  tau: float, C: float, C_float: float, input_scaling: str,
                  device: str) -> dict[str, Any]:
    """One transfer cell: fit ``aligner`` on the anchors, train on the teacher's codes, test
    on the student's. ``ceil`` is the student's :func:`ceiling_cell` at the same seed and
    width. The result keeps ``fit_seconds`` for the ledger; :class:`TransferSweep` moves it
    to the run's timings.

    Shapes: ``emb_t [N, d_t]``, ``emb_s [N, d_s]`` over the same pool.
    """
    c = CeilingScores(hdc=ProbeScores(ceil["hdc_acc"], ceil["hdc_bal_acc"]),
                      float=ProbeScores(ceil["float_acc"], ceil["float_bal_acc"]),
                      majority=ceil["majority"])
    r = pool["rows"][seed]
    labels = pool["labels"]
    xt, xs = _scaled(emb_t, r, input_scaling), _scaled(emb_s, r, input_scaling)
    anchors = r["anchors"] if str(n_anchors) == "all" else r["anchors"][: int(n_anchors)]
    al = make_aligner(aligner, **_aligner_params(aligner, seed, device))
    s = transfer_scores(al, xt[anchors], xs[anchors], xt[r["train"]], labels[r["train"]],
                        xs[r["test"]], labels[r["test"]], ceiling=c, hdc_dim=hdc_dim, tau=tau,
                        seed=seed, C=C, C_float=C_float)
    out = s.as_dict()
    out["n_anchors"] = int(len(anchors))
    if hasattr(al, "correlations_"):
        out["extra"] = {"top_correlation": float(al.correlations_[0])}
    return out


#: Result fields that are durations: kept in the ledger, never in what the cells report.
_DURATIONS = ("fit_seconds",)


def _without_durations(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in _DURATIONS}


# --------------------------------------------------------------------------- planning
class CeilingSpec(NamedTuple):
    """A ceiling cell: one model on one dataset at one seed and code width."""

    model: str
    dataset: str
    seed: int
    hdc_dim: int


class TransferSpec(NamedTuple):
    """A transfer cell: teacher -> student with one aligner and anchor count."""

    teacher: str
    student: str
    dataset: str
    aligner: str
    anchors: str
    seed: int
    hdc_dim: int

    def ceiling(self) -> CeilingSpec:
        """The student's ceiling cell this transfer is scored against."""
        return CeilingSpec(self.student, self.dataset, self.seed, self.hdc_dim)


def _cell_key(spec: CeilingSpec | TransferSpec) -> dict[str, Any]:
    """The ledger key of a cell: its kind and every field of its spec."""
    return {"kind": "ceiling" if isinstance(spec, CeilingSpec) else "transfer", **spec._asdict()}


@dataclass(frozen=True)
class SweepDesign:
    """Which cells a transfer study reads: the stages and the models, datasets, aligners,
    anchor counts, code widths and replicate seeds each stage sweeps.

    ``pair`` is the main pair (stages 1, 2, 4 run it in both directions); ``models`` the
    stage 0 models and the stage 3 pair matrix; ``teachers`` and ``student`` the teacher
    study; ``aligner``, ``n_anchors`` and ``hdc_dim`` the fixed values of the stages that do
    not sweep them.
    """

    stages: tuple[str, ...]
    models: tuple[str, ...]
    pair: tuple[str, str]
    dataset: str
    datasets: tuple[str, ...]
    aligners: tuple[str, ...]
    aligner: str
    anchors: tuple[str, ...]
    n_anchors: int
    hdc_dims: tuple[int, ...]
    hdc_dim: int
    seeds: tuple[int, ...]
    teachers: tuple[str, ...]
    student: str

    def directions(self) -> list[tuple[str, str]]:
        """The main pair both ways: ``[(a, b), (b, a)]``."""
        a, b = self.pair
        return [(a, b), (b, a)]

    def fixed(self, teacher: str, student: str, dataset: str, seed: int,
              hdc_dim: int | None = None) -> TransferSpec:
        """A transfer cell at the fixed aligner and anchor count."""
        return TransferSpec(teacher, student, dataset, self.aligner, str(self.n_anchors), seed,
                            self.hdc_dim if hdc_dim is None else hdc_dim)

    def plan(self) -> tuple[list[CeilingSpec], list[TransferSpec]]:
        """The ceiling and transfer cells the chosen stages read, in stage order (each
        transfer's student ceiling included)."""
        ceil: list[CeilingSpec] = []
        trans: list[TransferSpec] = []
        seeds, ds, dim = self.seeds, self.dataset, self.hdc_dim
        dirs = self.directions()
        st = set(self.stages)
        if "0" in st:
            ceil += [CeilingSpec(m, ds, s, dim) for m in self.models for s in seeds]
        if "1" in st:
            ceil += [CeilingSpec(m, ds, s, d) for m in self.pair for d in self.hdc_dims
                     for s in seeds]
            trans += [self.fixed(t, u, ds, s, d) for t, u in dirs for d in self.hdc_dims
                      for s in seeds]
        if "2" in st:
            trans += [TransferSpec(t, u, ds, al, str(a), s, dim) for t, u in dirs
                      for al in self.aligners for a in self.anchors for s in seeds]
            ceil += [CeilingSpec(m, ds, s, dim) for m in self.pair for s in seeds]
        if "3" in st:
            trans += [self.fixed(t, u, ds, s) for t in self.models for u in self.models
                      if t != u for s in seeds]
        if "4" in st:
            trans += [self.fixed(t, u, d, s) for d in self.datasets for t, u in dirs
                      for s in seeds]
        if "teachers" in st:
            others = [t for t in self.teachers if t != self.student]
            trans += [self.fixed(t, self.student, ds, s) for t in others for s in seeds]
            ceil += [CeilingSpec(t, ds, s, dim) for t in others for s in seeds]
        ceil += [t.ceiling() for t in trans]
        return ceil, trans


@dataclass(frozen=True)
class TransferProtocol:
    """How each cell is computed: split sizes, probe and code settings, embedding options.

    ``pool_seed`` draws each dataset's pool; ``load_options`` go to
    :func:`hyperlens.data.load` (columns, invalid rows, encoding).
    """

    train: int
    test: int
    anchor_pool: int
    tau: float
    C: float
    C_float: float
    pooling: str
    layer: int
    input_scaling: str
    batch_size: int = 32
    allow_anchor_overlap: bool = False
    pool_seed: int = 0
    data_dir: str | None = None
    load_options: Mapping[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Hash of the options that change a cell's numbers (not which cells run)."""
        return stable_hash(self.train, self.test, self.anchor_pool, self.tau, self.C,
                           self.C_float, self.pooling, self.layer, self.input_scaling,
                           self.pool_seed, length=12)

    def cell_params(self) -> dict[str, Any]:
        return {"tau": self.tau, "C": self.C, "C_float": self.C_float,
                "input_scaling": self.input_scaling}


# --------------------------------------------------------------------------- the sweep
@dataclass
class Pool:
    """One dataset's embedded pool and its per-seed train / test / anchor rows."""

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    rows: dict[int, dict[str, np.ndarray]]


class TransferSweep:
    """State shared by the cells of one study: pools, embeddings, the ledger of finished
    cells.

    Args:
        design: which cells to compute (:meth:`prefetch` runs :meth:`SweepDesign.plan`).
        protocol: how to compute them.
        ledger: finished cells (its fingerprint should be ``protocol.fingerprint()``).
        executor: runs the missing cells (default: this process).
        device: where models embed texts and the contrastive aligner trains.
        report: when given, loading and cell phases are timed in ``report.timings``.

    After cells ran, :attr:`fit_seconds` holds the aligner-and-probe fitting time per
    aligner over the transfer cells computed by this sweep (resumed cells add nothing) and
    :attr:`datasets` what each pool holds.
    """

    def __init__(self, design: SweepDesign, protocol: TransferProtocol, ledger: Ledger, *,
                 executor: Executor | None = None, device: Any = "cpu",
                 report: Report | None = None) -> None:
        self.design = design
        self.protocol = protocol
        self.store = ledger
        self.executor = executor or LocalExecutor()
        self.device = device
        self.report = report
        self.computed = 0
        self.fit_seconds: dict[str, float] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self._pools: dict[str, Pool] = {}
        self._emb: dict[tuple[str, str], np.ndarray] = {}
        self._shared: dict[tuple[str, ...], Shared] = {}
        self._handles: dict[str, Any] = {}

    def _timer(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self.report.timer(name) if self.report is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ data
    def pool(self, dataset: str) -> Pool:
        """The dataset's pool (``train + test + anchor_pool`` distinct texts drawn with
        ``pool_seed``) and each replicate seed's disjoint rows."""
        if dataset in self._pools:
            return self._pools[dataset]
        from .. import data as hdata

        p = self.protocol
        with self._timer(f"data:{dataset}"):
            ds = hdata.load(dataset, data_dir=p.data_dir, **p.load_options)
            # repeated texts would put one text on both sides of a split: keep the first
            _, first = np.unique(np.asarray(ds.texts, dtype=object), return_index=True)
            n_dupes = len(ds) - first.size
            if n_dupes:
                ds = ds.select(np.sort(first))
            need = p.train + p.test + p.anchor_pool
            if len(ds) < need:
                raise ConfigError(
                    f"dataset {dataset!r} has {len(ds)} rows but train + test + anchor pool = "
                    f"{p.train} + {p.test} + {p.anchor_pool} = {need}; lower --train, "
                    "--test or --anchor-pool."
                )
            # one pool per dataset (embedded once), drawn with the pool seed; seeds re-split it
            ds = ds.subsample(need, seed=p.pool_seed)
            rows: dict[int, dict[str, np.ndarray]] = {}
            for seed in self.design.seeds:
                sp = ds.split(train=p.train, test=p.test, anchors=p.anchor_pool, seed=seed)
                check_disjoint(sp.anchors.texts, sp.test.texts,
                               allow_overlap=p.allow_anchor_overlap)
                rows[seed] = {k: np.asarray(v) for k, v in sp.rows.items()}
        pool = Pool(list(ds.texts), np.asarray(ds.labels), list(ds.label_names), rows)
        self.datasets[dataset] = {
            "pool": len(ds), "duplicates_dropped": int(n_dupes),
            "class_counts": np.bincount(pool.labels).tolist(), "label_names": pool.label_names}
        self._pools[dataset] = pool
        return pool

    def embeddings(self, model: str, dataset: str) -> np.ndarray:
        """``model``'s embeddings of the dataset's pool (through the embedding cache)."""
        key = (model, dataset)
        if key in self._emb:
            return self._emb[key]
        from .. import models as hmodels

        pool = self.pool(dataset)
        p = self.protocol
        with self._timer(f"embed:{model}:{dataset}"):
            if model not in self._handles:
                self._handles[model] = hmodels.load(model, device=self.device)
            x = hmodels.embed(pool.texts, self._handles[model], pooling=p.pooling,
                              layer=p.layer, batch_size=p.batch_size, cache=True,
                              executor=self.executor)
        self._emb[key] = np.asarray(x, dtype=np.float32)
        return self._emb[key]

    def inputs(self, model: str, dataset: str, seed: int) -> np.ndarray:
        """The pool's embeddings after ``input_scaling``, fitted on this seed's anchor pool
        (what the cells of this seed read)."""
        return _scaled(self.embeddings(model, dataset), self.pool(dataset).rows[seed],
                       self.protocol.input_scaling)

    # ------------------------------------------------------------------ tasks
    def _share(self, *key: str) -> Shared:
        """A cell input handed to the executor once: embeddings or a dataset's labels and rows."""
        if key not in self._shared:
            if key[0] == "emb":
                value: Any = self.embeddings(key[1], key[2])
            else:
                p = self.pool(key[1])
                value = {"labels": p.labels, "rows": p.rows}
            self._shared[key] = self.executor.share(value)
        return self._shared[key]

    def _ceiling_task(self, c: CeilingSpec) -> Task:
        return Task(ceiling_cell, {"emb": self._share("emb", c.model, c.dataset),
                                   "pool": self._share("pool", c.dataset), "seed": c.seed,
                                   "hdc_dim": c.hdc_dim, **self.protocol.cell_params()})

    def _transfer_task(self, t: TransferSpec) -> Task:
        ceil = self.store.get(_cell_key(t.ceiling()))
        if ceil is None:
            ceil = self.ceiling(t.ceiling())
        device = str(self.device)
        # the contrastive aligner is the only cell that runs torch on a GPU
        gpu = t.aligner == "contrastive" and "cuda" in device
        return Task(transfer_cell,
                    {"emb_t": self._share("emb", t.teacher, t.dataset),
                     "emb_s": self._share("emb", t.student, t.dataset),
                     "pool": self._share("pool", t.dataset), "ceil": _without_durations(ceil),
                     "aligner": t.aligner, "n_anchors": str(t.anchors), "seed": t.seed,
                     "hdc_dim": t.hdc_dim, "device": device, **self.protocol.cell_params()},
                    Resources(num_gpus=1.0 if gpu else 0.0))

    def _run(self, cells: list[Cell], executor: Executor, desc: str,
             show_progress: bool | None = None) -> int:
        """Compute the missing ``cells``; the transfer cells' fitting time goes to
        :attr:`fit_seconds`."""
        todo = [c for c in cells if c.key not in self.store]
        n = run_cells(todo, self.store, executor, desc=desc, show_progress=show_progress)
        for c in {self.store.cell_id(c.key): c for c in todo}.values():
            result = self.store.get(c.key) or {}
            if "fit_seconds" in result:
                name = f"fit:{c.key['aligner']}"
                self.fit_seconds[name] = self.fit_seconds.get(name, 0.0) + result["fit_seconds"]
        self.computed += n
        return n

    def _cell(self, key: dict[str, Any], task: Callable[[], Task]) -> dict[str, Any]:
        if key not in self.store:
            self._run([Cell(key, task())], LocalExecutor(), desc="cell", show_progress=False)
        result = self.store.get(key)
        assert result is not None  # run_cells recorded it
        return _without_durations(result)

    # ------------------------------------------------------------------ cells
    def ceiling(self, c: CeilingSpec) -> dict[str, Any]:
        """The ceiling cell's scores (from the ledger, else computed here)."""
        with self._timer("ceilings"):
            return self._cell(_cell_key(c), lambda: self._ceiling_task(c))

    def transfer(self, t: TransferSpec) -> dict[str, Any]:
        """The transfer cell's scores (from the ledger, else computed here)."""
        with self._timer(f"transfer:{t.aligner}"):
            return self._cell(_cell_key(t), lambda: self._transfer_task(t))

    def prefetch(self, show_progress: bool | None = None) -> int:
        """Compute every planned cell missing from the ledger with the sweep's executor:
        ceilings first (transfer cells read them), then transfers. Returns the count."""
        ceil, trans = self.design.plan()
        n = 0
        with self._timer("cells:ceilings"):
            n += self._run([Cell(_cell_key(c), self._ceiling_task(c))
                            for c in _missing(ceil, self)],
                           self.executor, "ceilings", show_progress)
        with self._timer("cells:transfer"):
            n += self._run([Cell(_cell_key(t), self._transfer_task(t))
                            for t in _missing(trans, self)],
                           self.executor, "transfer", show_progress)
        return n


def _missing(specs: list[Any], sweep: TransferSweep) -> Iterator[Any]:
    """The specs whose cell is not in the ledger yet (each once)."""
    seen: set[str] = set()
    for s in specs:
        cid = sweep.store.cell_id(_cell_key(s))
        if cid not in seen and cid not in sweep.store.cells:
            seen.add(cid)
            yield s
