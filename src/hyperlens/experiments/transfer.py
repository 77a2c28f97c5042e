"""``hyperlens transfer``: cross-architecture transfer through shared ternary HDC codes.

A classifier trained on a teacher model's HDC codes is scored on a student model's HDC
codes after an aligner, fitted on paired anchor texts, has mapped both models into one
shared space (see :mod:`hyperlens.align.evaluate` for the exact protocol). Stages:

- ``0``: ceilings, linear probes on float embeddings and on HDC codes, per model;
- ``1``: HDC dimension sweep (ceiling loss against float, and transfer, per dimension);
- ``2``: aligners x anchor counts for the main pair, both directions, with CI bands;
- ``3``: every ordered pair among ``--models``;
- ``4``: datasets, main pair both directions;
- ``teachers``: several teachers into one student.

Before aligning, each model's embeddings are z-scored per feature with statistics of the
anchor pool (``--input-scaling zscore``, the default; ``none`` keeps raw vectors): decoder
hidden states have a few dimensions with outsized variance that would otherwise drive the
random projection and the aligners.

Every (stage, configuration, seed) cell lands in ``cells.jsonl`` in the report folder as
soon as it finishes (the file is rewritten atomically); a rerun with the same ``--out``
skips finished cells, so an interrupted run resumes where it stopped. Embeddings go
through the :func:`hyperlens.models.embed` cache and are shared by all stages.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..align import (
    INPUT_SCALING,
    CeilingScores,
    FeatureScaler,
    ProbeScores,
    available_aligners,
    ceiling_scores,
    check_disjoint,
    make_aligner,
    summarize,
    transfer_scores,
)
from ..errors import ConfigError
from ..report import Report, check_out_dir
from ..utils import atomic_write_text, stable_hash
from .options import (
    add_data_options,
    count_of_two,
    data_options,
    nonnegative_int,
    positive_float,
    positive_int,
)

__all__ = [
    "COMMAND",
    "HELP",
    "add_arguments",
    "main",
    "run_transfer",
    "TransferConfig",
    "TransferRun",
    "tour_section",
    "STAGES",
]

COMMAND = "transfer"
HELP = (
    "cross-architecture transfer via shared HDC codes: ceilings, HDC sweep, aligners, pairs, "
    "datasets"
)
STAGES = ("0", "1", "2", "3", "4", "teachers")
METRICS = ("acc", "bal_acc", "eff", "cc_eff", "float_acc", "float_bal_acc", "float_eff",
           "float_cc_eff", "fit_seconds")


@dataclass
class TransferConfig:
    """Every option of a transfer run (the CLI fills it; defaults are the paper protocol)."""

    stages: list[str] = field(default_factory=lambda: list(STAGES))
    models: list[str] = field(default_factory=lambda: ["minilm", "smollm2", "glove-50d"])
    pair: list[str] = field(default_factory=lambda: ["minilm", "smollm2"])
    dataset: str = "sst2"
    datasets: list[str] = field(default_factory=lambda: ["sst2", "agnews", "rotten-tomatoes"])
    data_dir: str | None = None
    aligners: list[str] = field(
        default_factory=lambda: ["none", "procrustes", "cca", "ridge", "relative", "contrastive"]
    )
    aligner: str = "ridge"
    anchors: list[str] = field(default_factory=lambda: ["100", "500", "1000", "all"])
    n_anchors: int = 500
    hdc_dims: list[int] = field(default_factory=lambda: [1024, 2048, 4096, 8192])
    hdc_dim: int = 4096
    tau: float = 0.3
    seeds: list[int] = field(default_factory=lambda: [42, 123, 456])
    train: int = 3000
    test: int = 500
    anchor_pool: int = 2000
    teachers: list[str] = field(default_factory=lambda: ["minilm", "glove-50d", "wordllama"])
    student: str = "smollm2"
    C: float = 1.0
    C_float: float = 1.0
    input_scaling: str = "zscore"
    pooling: str = "mean"
    layer: int = -1
    batch_size: int = 32
    allow_anchor_overlap: bool = False
    fresh: bool = False
    device: str = "auto"
    text_column: str | None = None
    label_column: str | None = None
    drop_invalid: bool = False
    encoding: str | None = None

    def validate(self) -> None:
        bad = sorted(set(self.stages) - set(STAGES))
        if bad:
            raise ConfigError(f"--stages {bad} unknown; choose from {list(STAGES)}.")
        known = set(available_aligners())
        for name in [*self.aligners, self.aligner]:
            if name not in known:
                raise ConfigError(
                    f"aligner {name!r} is not registered; available: {sorted(known)}."
                )
        for a in self.anchors:
            if a != "all" and not (str(a).isdigit() and int(a) > 0):
                raise ConfigError(f"--anchors takes positive counts or 'all', got {a!r}.")
            if a != "all" and int(a) > self.anchor_pool:
                raise ConfigError(
                    f"--anchors {a} exceeds --anchor-pool {self.anchor_pool}; raise the pool "
                    "or ask for fewer anchors."
                )
        # --n-anchors is read by stages 1, 3, 4 and the teacher study only
        if set(self.stages) & {"1", "3", "4", "teachers"} and self.n_anchors > self.anchor_pool:
            raise ConfigError(
                f"--n-anchors {self.n_anchors} exceeds --anchor-pool {self.anchor_pool}; "
                "raise the pool or use fewer anchors."
            )
        for name, v in (("n_anchors", self.n_anchors), ("hdc_dim", self.hdc_dim),
                        ("batch_size", self.batch_size), *(("hdc_dims", d) for d in self.hdc_dims)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= 1, got {v!r}.")
        for name, x in (("tau", self.tau), ("C", self.C), ("C_float", self.C_float)):
            if not isinstance(x, (int, float)) or isinstance(x, bool) or not x > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a number > 0, got {x!r}.")
        if len(self.pair) != 2 or self.pair[0] == self.pair[1]:
            raise ConfigError(f"--pair takes two different models, got {self.pair}.")
        if self.input_scaling not in INPUT_SCALING:
            raise ConfigError(f"--input-scaling {self.input_scaling!r} unknown; "
                              f"choose from {list(INPUT_SCALING)}.")
        if not self.seeds:
            raise ConfigError("--seeds is empty; give at least one seed.")
        for name, v in (
            ("train", self.train),
            ("test", self.test),
            ("anchor_pool", self.anchor_pool),
        ):
            if v < 2:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 2, got {v}.")

    def fingerprint(self) -> str:
        """Hash of the options that change a cell's numbers (not which cells run)."""
        return stable_hash(self.train, self.test, self.anchor_pool, self.tau, self.C,
                           self.C_float, self.pooling, self.layer, self.input_scaling, length=12)


# --------------------------------------------------------------------------- resumable cells
class CellStore:
    """Finished cells of a run, persisted as JSON lines; the file is rewritten atomically."""

    def __init__(self, path: Path, fingerprint: str, fresh: bool = False) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.cells: dict[str, dict[str, Any]] = {}
        self.resumed = 0
        if path.exists() and not fresh:
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a damaged line is recomputed
                if rec.get("fingerprint") == fingerprint:
                    self.cells[rec["id"]] = rec
            self.resumed = len(self.cells)

    @staticmethod
    def cell_id(key: dict[str, Any]) -> str:
        return stable_hash(key, length=20)

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        rec = self.cells.get(self.cell_id(key))
        return None if rec is None else rec["result"]

    def put(self, key: dict[str, Any], result: dict[str, Any]) -> None:
        rec: dict[str, Any] = {"id": self.cell_id(key), "fingerprint": self.fingerprint,
                               "key": key, "result": result}
        self.cells[rec["id"]] = rec
        text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in self.cells.values())
        atomic_write_text(self.path, text)


# --------------------------------------------------------------------------- data and embeddings
@dataclass
class _Pool:
    """One dataset's embedded pool and its per-seed train / test / anchor rows."""

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    rows: dict[int, dict[str, np.ndarray]]


class TransferRun:
    """State shared by the stages of one run: pools, embeddings, ceilings, finished cells."""

    def __init__(self, cfg: TransferConfig, out: Path, report: Report) -> None:
        from ..utils import resolve_device

        self.cfg = cfg
        self.out = out
        self.report = report
        self.device = resolve_device(cfg.device)
        self.store = CellStore(out / "cells.jsonl", cfg.fingerprint(), fresh=cfg.fresh)
        self._pools: dict[str, _Pool] = {}
        self._emb: dict[tuple[str, str], np.ndarray] = {}
        self._scaled: dict[tuple[str, str, int], np.ndarray] = {}
        self._handles: dict[str, Any] = {}
        self.computed = 0

    # ------------------------------------------------------------------ data
    def pool(self, dataset: str) -> _Pool:
        if dataset in self._pools:
            return self._pools[dataset]
        from .. import data as hdata

        cfg = self.cfg
        with self.report.timer(f"data:{dataset}"):
            ds = hdata.load(dataset, data_dir=cfg.data_dir, **data_options(cfg))
            # repeated texts would put one text on both sides of a split: keep the first
            _, first = np.unique(np.asarray(ds.texts, dtype=object), return_index=True)
            n_dupes = len(ds) - first.size
            if n_dupes:
                ds = ds.select(np.sort(first))
            need = cfg.train + cfg.test + cfg.anchor_pool
            if len(ds) < need:
                raise ConfigError(
                    f"dataset {dataset!r} has {len(ds)} rows but train + test + anchor pool = "
                    f"{cfg.train} + {cfg.test} + {cfg.anchor_pool} = {need}; lower --train, "
                    "--test or --anchor-pool."
                )
            # one fixed pool per dataset (embedded once); seeds re-split it
            ds = ds.subsample(need, seed=0) if len(ds) > need else ds
            rows: dict[int, dict[str, np.ndarray]] = {}
            for seed in cfg.seeds:
                sp = ds.split(train=cfg.train, test=cfg.test, anchors=cfg.anchor_pool, seed=seed)
                check_disjoint(sp.anchors.texts, sp.test.texts,
                               allow_overlap=cfg.allow_anchor_overlap)
                rows[seed] = {k: np.asarray(v) for k, v in sp.rows.items()}
        pool = _Pool(list(ds.texts), np.asarray(ds.labels), list(ds.label_names), rows)
        self.report.data.setdefault("datasets", {})[dataset] = {
            "pool": len(ds), "duplicates_dropped": int(n_dupes),
            "class_counts": np.bincount(pool.labels).tolist(), "label_names": pool.label_names}
        self._pools[dataset] = pool
        return pool

    def embeddings(self, model: str, dataset: str) -> np.ndarray:
        key = (model, dataset)
        if key in self._emb:
            return self._emb[key]
        from .. import models as hmodels

        pool = self.pool(dataset)
        with self.report.timer(f"embed:{model}:{dataset}"):
            if model not in self._handles:
                self._handles[model] = hmodels.load(model, device=self.device)
            x = hmodels.embed(pool.texts, self._handles[model], pooling=self.cfg.pooling,
                              layer=self.cfg.layer, batch_size=self.cfg.batch_size, cache=True)
        self._emb[key] = np.asarray(x, dtype=np.float32)
        return self._emb[key]

    def inputs(self, model: str, dataset: str, seed: int) -> np.ndarray:
        """The pool's embeddings after ``input_scaling``, fitted on this seed's anchor pool.

        The anchor pool is label-free and disjoint from the test split, so the scaling sees
        no test vector; ceilings and transfer cells read the same scaled vectors.
        """
        if self.cfg.input_scaling == "none":
            return self.embeddings(model, dataset)
        key = (model, dataset, seed)
        if key not in self._scaled:
            x = self.embeddings(model, dataset)
            anchors = self.pool(dataset).rows[seed]["anchors"]
            scaler = FeatureScaler(self.cfg.input_scaling).fit(x[anchors])
            self._scaled[key] = scaler.transform(x)
        return self._scaled[key]

    # ------------------------------------------------------------------ cells
    def _cell(self, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        done = self.store.get(key)
        if done is not None:
            return done
        result = compute()
        self.store.put(key, result)
        self.computed += 1
        return result

    def ceiling(self, model: str, dataset: str, seed: int, hdc_dim: int) -> dict[str, Any]:
        key = {"kind": "ceiling", "model": model, "dataset": dataset, "seed": seed,
               "hdc_dim": hdc_dim}

        def compute() -> dict[str, Any]:
            x = self.inputs(model, dataset, seed)
            pool = self.pool(dataset)
            r = pool.rows[seed]
            c = ceiling_scores(x[r["train"]], pool.labels[r["train"]], x[r["test"]],
                               pool.labels[r["test"]], hdc_dim=hdc_dim, tau=self.cfg.tau,
                               seed=seed, C=self.cfg.C, C_float=self.cfg.C_float)
            return {"hdc_acc": c.hdc.acc, "hdc_bal_acc": c.hdc.bal_acc, "float_acc": c.float.acc,
                    "float_bal_acc": c.float.bal_acc, "majority": c.majority}

        with self.report.timer("ceilings"):
            return self._cell(key, compute)

    def transfer(self, teacher: str, student: str, dataset: str, aligner: str, n_anchors: str | int,
                 seed: int, hdc_dim: int) -> dict[str, Any]:
        key = {"kind": "transfer", "teacher": teacher, "student": student, "dataset": dataset,
               "aligner": aligner, "anchors": str(n_anchors), "seed": seed, "hdc_dim": hdc_dim}

        def compute() -> dict[str, Any]:
            ceil = self.ceiling(student, dataset, seed, hdc_dim)
            c = CeilingScores(hdc=ProbeScores(ceil["hdc_acc"], ceil["hdc_bal_acc"]),
                              float=ProbeScores(ceil["float_acc"], ceil["float_bal_acc"]),
                              majority=ceil["majority"])
            xt = self.inputs(teacher, dataset, seed)
            xs = self.inputs(student, dataset, seed)
            pool = self.pool(dataset)
            r = pool.rows[seed]
            anchors = r["anchors"] if str(n_anchors) == "all" else r["anchors"][: int(n_anchors)]
            al = make_aligner(aligner, **_aligner_params(aligner, seed, self.device))
            s = transfer_scores(al, xt[anchors], xs[anchors], xt[r["train"]],
                                pool.labels[r["train"]], xs[r["test"]], pool.labels[r["test"]],
                                ceiling=c, hdc_dim=hdc_dim, tau=self.cfg.tau, seed=seed,
                                C=self.cfg.C, C_float=self.cfg.C_float)
            out = s.as_dict()
            out["n_anchors"] = int(len(anchors))
            if hasattr(al, "correlations_"):
                out["extra"] = {"top_correlation": float(al.correlations_[0])}
            return out

        with self.report.timer(f"transfer:{aligner}"):
            return self._cell(key, compute)


def _aligner_params(name: str, seed: int, device: Any) -> dict[str, Any]:
    if name == "contrastive":
        return {"seed": int(seed), "device": str(device)}
    return {}


# --------------------------------------------------------------------------- helpers for tables
def _stats(cells: Sequence[dict[str, Any]], metric: str) -> dict[str, float]:
    return summarize([c[metric] for c in cells])


def _fmt(st: dict[str, float]) -> str:
    if st["n"] == 0:
        return "n/a"
    if st["n"] == 1:
        return f"{st['mean']:.3f}"
    return f"{st['mean']:.3f} ± {st['hi'] - st['mean']:.3f}"


TRANSFER_COLUMNS = ["acc", "bal. acc", "efficiency", "chance-corr. eff.", "float acc",
                    "float eff.", "float chance-corr. eff.", "fit s"]


def _transfer_cols(cells: Sequence[dict[str, Any]]) -> list[str]:
    return [_fmt(_stats(cells, m)) for m in ("acc", "bal_acc", "eff", "cc_eff", "float_acc",
                                              "float_eff", "float_cc_eff")] + [
        f"{np.mean([c['fit_seconds'] for c in cells]):.3f}"]


def _summary_record(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {m: _stats(cells, m) for m in METRICS} | {
        "ceiling": _stats(cells, "ceiling"), "majority": _stats(cells, "majority"),
        "per_seed": list(cells)}


# --------------------------------------------------------------------------- stages
def stage0(run: TransferRun) -> None:
    cfg = run.cfg
    recs: dict[str, dict[str, Any]] = {}
    rows, bars_f, bars_h, lo_f, hi_f, lo_h, hi_h = [], [], [], [], [], [], []
    for model in cfg.models:
        cells = [run.ceiling(model, cfg.dataset, s, cfg.hdc_dim) for s in cfg.seeds]
        f, h = _stats(cells, "float_acc"), _stats(cells, "hdc_acc")
        fb, hb = _stats(cells, "float_bal_acc"), _stats(cells, "hdc_bal_acc")
        loss = summarize([c["float_acc"] - c["hdc_acc"] for c in cells])
        maj = _stats(cells, "majority")
        recs[model] = {"float_acc": f, "hdc_acc": h, "float_bal_acc": fb, "hdc_bal_acc": hb,
                       "hdc_loss": loss, "majority": maj, "per_seed": cells}
        rows.append([model, _fmt(f), _fmt(fb), _fmt(h), _fmt(hb), _fmt(loss), f"{maj['mean']:.3f}"])
        bars_f.append(f["mean"]); lo_f.append(f["lo"]); hi_f.append(f["hi"])  # noqa: E702
        bars_h.append(h["mean"]); lo_h.append(h["lo"]); hi_h.append(h["hi"])  # noqa: E702
    sec = run.report.section(
        "Stage 0: ceilings",
        f"Linear probes trained and tested on each model's own representation of {cfg.dataset} "
        f"({cfg.train} train / {cfg.test} test texts, {cfg.pooling} pooling, layer {cfg.layer}): "
        f"float embeddings and {cfg.hdc_dim}-d ternary codes (tau = {cfg.tau} x row std). "
        f"Mean ± 95 % t-interval over seeds {cfg.seeds}. The HDC ceiling is the denominator "
        "of every efficiency below.")
    sec.table("Ceilings", ["model", "float acc", "float bal. acc", "HDC acc", "HDC bal. acc",
                           "float - HDC", "majority"], rows)
    sec.plot("stage0_ceilings.png", {
        "kind": "bar", "title": f"Ceilings on {cfg.dataset}", "ylabel": "test accuracy",
        "categories": list(cfg.models),
        "series": [{"label": "float", "values": bars_f, "lo": lo_f, "hi": hi_f},
                   {"label": f"HDC {cfg.hdc_dim}", "values": bars_h, "lo": lo_h, "hi": hi_h}],
        "hlines": [{"y": float(np.mean([r["majority"]["mean"] for r in recs.values()])),
                    "label": "majority class"}]})
    run.report.data["stage0"] = recs


def _directions(cfg: TransferConfig) -> list[tuple[str, str]]:
    a, b = cfg.pair
    return [(a, b), (b, a)]


def stage1(run: TransferRun) -> None:
    cfg = run.cfg
    recs: dict[str, dict[str, Any]] = {"ceilings": {}, "transfer": {}}
    rows, series = [], []
    for model in cfg.pair:
        ys, los, his = [], [], []
        for dim in cfg.hdc_dims:
            cells = [run.ceiling(model, cfg.dataset, s, dim) for s in cfg.seeds]
            h = _stats(cells, "hdc_acc")
            loss = summarize([c["float_acc"] - c["hdc_acc"] for c in cells])
            recs["ceilings"][f"{model}@{dim}"] = {"hdc_acc": h, "hdc_loss": loss,
                                                  "float_acc": _stats(cells, "float_acc")}
            rows.append([model, "ceiling (own codes)", dim, _fmt(h), _fmt(loss), "", ""])
            ys.append(h["mean"]); los.append(h["lo"]); his.append(h["hi"])  # noqa: E702
        series.append({"label": f"{model} ceiling", "x": list(cfg.hdc_dims), "y": ys, "lo": los,
                       "hi": his})
    for teacher, student in _directions(cfg):
        ys, los, his = [], [], []
        for dim in cfg.hdc_dims:
            cells = [run.transfer(teacher, student, cfg.dataset, cfg.aligner, cfg.n_anchors, s, dim)
                     for s in cfg.seeds]
            a = _stats(cells, "acc")
            recs["transfer"][f"{teacher}->{student}@{dim}"] = _summary_record(cells)
            rows.append([f"{teacher} -> {student}", f"transfer ({cfg.aligner})", dim, _fmt(a),
                         _fmt(summarize([c["float_acc"] - c["acc"] for c in cells])),
                         _fmt(_stats(cells, "eff")), _fmt(_stats(cells, "cc_eff"))])
            ys.append(a["mean"]); los.append(a["lo"]); his.append(a["hi"])  # noqa: E702
        series.append({"label": f"{teacher} -> {student}", "x": list(cfg.hdc_dims), "y": ys,
                       "lo": los, "hi": his})
    sec = run.report.section(
        "Stage 1: HDC dimension",
        "Accuracy of ternary codes against the float embeddings they come from, per code "
        f"width: each model's own ceiling, and transfer with the {cfg.aligner} aligner at "
        f"{cfg.n_anchors} anchors (float - HDC is the loss from quantisation).")
    sec.table("HDC dimension sweep", ["model / pair", "what", "HDC dim", "HDC acc",
                                      "float - HDC", "efficiency", "chance-corr. eff."], rows)
    sec.plot("stage1_hdc_dim.png", {
        "kind": "line", "title": f"HDC dimension ({cfg.dataset})", "xlabel": "HDC dimension",
        "ylabel": "test accuracy", "xscale": "log", "series": series})
    run.report.data["stage1"] = recs


def stage2(run: TransferRun) -> None:
    cfg = run.cfg
    recs: dict[str, Any] = {}
    sec = run.report.section(
        "Stage 2: aligners x anchors",
        f"Each aligner fitted on 100 to {cfg.anchor_pool} paired anchors (texts from the "
        f"training side, disjoint from the test set), {cfg.hdc_dim}-d codes, {cfg.dataset}. "
        "Efficiency = transfer / student HDC ceiling; chance-corrected efficiency = (transfer - "
        "majority) / (ceiling - majority) is 0 for always answering the majority class; "
        "the float columns repeat the pipeline without HDC. Mean ± 95 % t-interval half-width "
        f"over seeds {cfg.seeds}.")
    best: dict[str, Any] = {}
    for teacher, student in _directions(cfg):
        direction = f"{teacher}->{student}"
        rows, series = [], []
        for aligner in cfg.aligners:
            ys, los, his, xs = [], [], [], []
            for a in cfg.anchors:
                cells = [run.transfer(teacher, student, cfg.dataset, aligner, a, s, cfg.hdc_dim)
                         for s in cfg.seeds]
                rec = _summary_record(cells)
                recs[f"{direction}|{aligner}|{a}"] = rec
                n_used = cells[0]["n_anchors"]
                rows.append([aligner, n_used, *_transfer_cols(cells)])
                e = rec["eff"]
                xs.append(n_used); ys.append(e["mean"]); los.append(e["lo"]); his.append(e["hi"])  # noqa: E702
                if str(a) == str(cfg.n_anchors) and (
                    direction not in best or e["mean"] > best[direction]["eff"]["mean"]
                ):
                    best[direction] = {"aligner": aligner, **rec}
            series.append({"label": aligner, "x": xs, "y": ys, "lo": los, "hi": his})
        ceiling = _stats([run.ceiling(student, cfg.dataset, s, cfg.hdc_dim) for s in cfg.seeds],
                         "hdc_acc")
        majority = _stats([run.ceiling(student, cfg.dataset, s, cfg.hdc_dim) for s in cfg.seeds],
                          "majority")
        teacher_ceiling = _stats([run.ceiling(teacher, cfg.dataset, s, cfg.hdc_dim)
                                  for s in cfg.seeds], "hdc_acc")
        sec.table(f"{teacher} -> {student}", ["aligner", "anchors", *TRANSFER_COLUMNS], rows,
                  note=f"student HDC ceiling {_fmt(ceiling)}, teacher HDC ceiling "
                       f"{_fmt(teacher_ceiling)}, majority {majority['mean']:.3f}. A classifier "
                       "trained on the teacher rarely beats the teacher's own ceiling, so a "
                       "weaker teacher caps efficiency near teacher / student ceiling = "
                       f"{teacher_ceiling['mean'] / max(ceiling['mean'], 1e-9):.3f}.")
        sec.plot(f"stage2_{teacher}_to_{student}.png".replace("/", "_"), {
            "kind": "line", "title": f"{teacher} -> {student}: efficiency vs anchors",
            "xlabel": "anchors", "ylabel": "efficiency (transfer / ceiling)", "xscale": "log",
            "series": series,
            "hlines": [{"y": majority["mean"] / max(ceiling["mean"], 1e-9),
                        "label": "majority class / ceiling"}, {"y": 1.0, "label": "ceiling"}]})
    sec.metrics({f"best@{cfg.n_anchors}:{d}": {"aligner": b["aligner"], "eff": b["eff"],
                                               "cc_eff": b["cc_eff"], "bal_acc": b["bal_acc"]}
                 for d, b in best.items()})
    run.report.data["stage2"] = recs
    run.report.data["stage2_best"] = {d: {k: v for k, v in b.items() if k != "per_seed"}
                                      for d, b in best.items()}


def stage3(run: TransferRun) -> None:
    cfg = run.cfg
    models = list(cfg.models)
    eff = np.full((len(models), len(models)), np.nan)
    cc = np.full_like(eff, np.nan)
    rows, recs = [], {}
    for i, teacher in enumerate(models):
        for j, student in enumerate(models):
            if i == j:
                continue
            cells = [run.transfer(teacher, student, cfg.dataset, cfg.aligner, cfg.n_anchors, s,
                                  cfg.hdc_dim) for s in cfg.seeds]
            rec = _summary_record(cells)
            recs[f"{teacher}->{student}"] = rec
            eff[i, j] = rec["eff"]["mean"]
            cc[i, j] = rec["cc_eff"]["mean"]
            rows.append([teacher, student, *_transfer_cols(cells)])
    sec = run.report.section(
        "Stage 3: model pairs",
        f"Every ordered pair among {models} ({cfg.aligner} aligner, {cfg.n_anchors} anchors, "
        f"{cfg.dataset}). Rows of the matrices are teachers, columns students.")
    sec.table("Model pairs", ["teacher", "student", *TRANSFER_COLUMNS], rows)
    for name, mat, title in (("stage3_pairs_eff.png", eff, "efficiency"),
                             ("stage3_pairs_cc_eff.png", cc, "chance-corrected efficiency")):
        sec.plot(name, {"kind": "heatmap", "title": f"Pair matrix: {title}",
                        "matrix": [[None if np.isnan(v) else float(v) for v in r] for r in mat],
                        "xticklabels": models, "yticklabels": models, "xlabel": "student",
                        "ylabel": "teacher", "annotate": True, "fmt": ".2f", "vmin": 0.0,
                        "vmax": 1.05})
    run.report.data["stage3"] = recs


def stage4(run: TransferRun) -> None:
    cfg = run.cfg
    rows, recs, series = [], {}, []
    dirs = _directions(cfg)
    vals: dict[str, list[float]] = {f"{t}->{s}": [] for t, s in dirs}
    los: dict[str, list[float]] = {k: [] for k in vals}
    his: dict[str, list[float]] = {k: [] for k in vals}
    for dataset in cfg.datasets:
        pool = run.pool(dataset)
        for teacher, student in dirs:
            cells = [run.transfer(teacher, student, dataset, cfg.aligner, cfg.n_anchors, s,
                                  cfg.hdc_dim) for s in cfg.seeds]
            rec = _summary_record(cells)
            recs[f"{dataset}|{teacher}->{student}"] = rec
            rows.append([dataset, len(pool.label_names), f"{teacher} -> {student}",
                         _fmt(rec["ceiling"]), f"{rec['majority']['mean']:.3f}",
                         *_transfer_cols(cells)])
            k = f"{teacher}->{student}"
            vals[k].append(rec["eff"]["mean"])
            los[k].append(rec["eff"]["lo"])
            his[k].append(rec["eff"]["hi"])  # noqa: E702
    for k in vals:
        series.append({"label": k, "values": vals[k], "lo": los[k], "hi": his[k]})
    sec = run.report.section(
        "Stage 4: datasets",
        f"The main pair in both directions on each dataset ({cfg.aligner}, {cfg.n_anchors} "
        "anchors). Multi-class sets (AG News: 4 classes) have a lower majority rate, so raw "
        "and chance-corrected efficiency agree more closely there.")
    sec.table("Datasets", ["dataset", "classes", "pair", "ceiling", "majority",
                           *TRANSFER_COLUMNS], rows)
    sec.plot("stage4_datasets.png", {"kind": "bar", "title": "Efficiency by dataset",
                                     "ylabel": "efficiency", "categories": list(cfg.datasets),
                                     "series": series, "hlines": [{"y": 1.0, "label": "ceiling"}]})
    run.report.data["stage4"] = recs


def stage_teachers(run: TransferRun) -> None:
    cfg = run.cfg
    rows, recs, vals, los, his, cats = [], {}, [], [], [], []
    cc_vals = []
    for teacher in cfg.teachers:
        if teacher == cfg.student:
            continue
        cells = [run.transfer(teacher, cfg.student, cfg.dataset, cfg.aligner, cfg.n_anchors, s,
                              cfg.hdc_dim) for s in cfg.seeds]
        rec = _summary_record(cells)
        recs[teacher] = rec
        own = _stats([run.ceiling(teacher, cfg.dataset, s, cfg.hdc_dim) for s in cfg.seeds],
                     "hdc_acc")
        rows.append([teacher, _fmt(own), *_transfer_cols(cells)])
        cats.append(teacher)
        vals.append(rec["acc"]["mean"]); los.append(rec["acc"]["lo"]); his.append(rec["acc"]["hi"])  # noqa: E702
        cc_vals.append(rec["cc_eff"]["mean"])
    sec = run.report.section(
        "Teacher study",
        f"Several teachers into one student ({cfg.student}), {cfg.aligner} aligner, "
        f"{cfg.n_anchors} anchors, {cfg.dataset}. 'teacher ceiling' is the teacher's own HDC "
        "probe: a stronger teacher helps only if the alignment carries its extra structure.")
    sec.table("Teachers", ["teacher", "teacher ceiling", *TRANSFER_COLUMNS], rows)
    sec.plot("teachers.png", {"kind": "bar", "title": f"Teachers -> {cfg.student}",
                              "ylabel": "transfer accuracy", "categories": cats,
                              "series": [{"label": "transfer accuracy", "values": vals, "lo": los,
                                          "hi": his}]})
    run.report.data["teachers"] = recs


_STAGE_FUNCS: dict[str, Callable[[TransferRun], None]] = {
    "0": stage0, "1": stage1, "2": stage2, "3": stage3, "4": stage4, "teachers": stage_teachers,
}


# --------------------------------------------------------------------------- entry points
def run_transfer(cfg: TransferConfig, out: Path, *, seed: int = 0) -> Path:
    """Run the chosen stages and write the report folder; returns the folder."""
    cfg.validate()
    out = check_out_dir(out)
    out.mkdir(exist_ok=True)
    rep = Report("transfer", _config_dict(cfg), out_dir=out, seed=seed, device=cfg.device,
                 description="Cross-architecture transfer: a classifier trained on one model's "
                             "HDC codes, tested on another's after alignment on anchor texts.")
    run = TransferRun(cfg, out, rep)
    start = time.perf_counter()
    for stage in STAGES:
        if stage in cfg.stages:
            with rep.timer(f"stage:{stage}"):
                _STAGE_FUNCS[stage](run)
    rep.data["cells"] = {"resumed": run.store.resumed, "computed": run.computed,
                         "file": "cells.jsonl"}
    rows = [["cells computed / resumed", f"{run.computed} / {run.store.resumed}"],
            ["wall time (s)", f"{time.perf_counter() - start:.1f}"]]
    for d, b in rep.data.get("stage2_best", {}).items():
        rows.append([f"best @{cfg.n_anchors} {d}",
                     f"{b['aligner']}: eff {_fmt(b['eff'])}, chance-corr. {_fmt(b['cc_eff'])}, "
                     f"bal. acc {_fmt(b['bal_acc'])}"])
    rep.summary(rows)
    return rep.save()


def _config_dict(cfg: TransferConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(cfg)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TransferConfig()
    p.add_argument("--stages", nargs="+", default=d.stages, choices=list(STAGES),
                   help="stages to run (default: all)")
    p.add_argument("--models", nargs="+", default=d.models,
                   help="models for stage 0 and the stage 3 pair matrix")
    p.add_argument("--pair", nargs=2, default=d.pair, metavar=("A", "B"),
                   help="main pair for stages 1, 2 and 4 (both directions)")
    p.add_argument("--dataset", default=d.dataset, help="main dataset (default: sst2)")
    p.add_argument("--datasets", nargs="+", default=d.datasets, help="datasets for stage 4")
    p.add_argument("--data-dir", default=None, help="folder holding sst2/ and agnews/")
    p.add_argument("--aligners", nargs="+", default=d.aligners,
                   help=f"aligners for stage 2 (registered: {', '.join(available_aligners())})")
    p.add_argument("--aligner", default=d.aligner,
                   help="aligner for stages 1, 3, 4 and the teacher study (default: ridge)")
    p.add_argument("--anchors", nargs="+", default=d.anchors,
                   help="anchor counts for stage 2 ('all' = the whole anchor pool)")
    p.add_argument("--n-anchors", type=positive_int, default=d.n_anchors,
                   help="anchor count for the other stages (default: 500)")
    p.add_argument("--hdc-dims", nargs="+", type=positive_int, default=d.hdc_dims,
                   help="code widths for stage 1")
    p.add_argument("--hdc-dim", type=positive_int, default=d.hdc_dim,
                   help="code width (default: 4096)")
    p.add_argument("--tau", type=positive_float, default=d.tau,
                   help="ternary threshold x row std (0.3)")
    p.add_argument("--seeds", nargs="+", type=nonnegative_int, default=d.seeds,
                   help="seeds: each re-splits the data and redraws projections (42 123 456)")
    p.add_argument("--train", type=count_of_two, default=d.train, help="training texts (3000)")
    p.add_argument("--test", type=count_of_two, default=d.test, help="test texts (500)")
    p.add_argument("--anchor-pool", type=count_of_two, default=d.anchor_pool,
                   help="anchor texts set aside from the training side (2000)")
    p.add_argument(
        "--teachers", nargs="+", default=d.teachers, help="teachers for the teacher study"
    )
    p.add_argument("--student", default=d.student, help="student for the teacher study")
    p.add_argument("--C", dest="C", type=positive_float, default=d.C,
                   help="inverse L2 strength of the probe on HDC codes (1.0)")
    p.add_argument("--C-float", dest="C_float", type=positive_float, default=d.C_float,
                   help="inverse L2 strength of the float probe (1.0)")
    p.add_argument("--input-scaling", default=d.input_scaling, choices=list(INPUT_SCALING),
                   help="per-feature scaling of each model's embeddings before aligning and "
                        "encoding, fitted on the anchor pool (default: zscore; tames the few "
                        "high-variance dimensions of decoder hidden states)")
    p.add_argument("--pooling", default=d.pooling, choices=["mean", "cls", "last"])
    p.add_argument("--layer", type=int, default=d.layer, help="hidden layer (-1 = last)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--allow-anchor-overlap", action="store_true",
                   help="accept anchor texts that also occur in the test set (leaks)")
    p.add_argument("--fresh", action="store_true",
                   help="ignore finished cells in OUT/cells.jsonl and recompute everything")
    add_data_options(p)


def _config_from_args(args: argparse.Namespace) -> TransferConfig:
    fields = TransferConfig.__dataclass_fields__
    values = {k: getattr(args, k) for k in fields if hasattr(args, k)}
    for k in ("anchors", "stages"):
        if k in values:
            values[k] = [str(v) for v in values[k]]
    return TransferConfig(**values)


def validate(args: argparse.Namespace) -> None:
    """Checks across options, before any model is loaded."""
    _config_from_args(args).validate()


def main(args: argparse.Namespace) -> Path:
    cfg = _config_from_args(args)
    out = (
        args.out
        if args.out is not None
        else Path("runs") / f"transfer-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    return run_transfer(cfg, Path(out), seed=int(getattr(args, "seed", 0)))


# --------------------------------------------------------------------------- tour
def tour_section(report: Report, *, seed: int = 0, device: str = "cpu") -> None:
    """Add a compact transfer section to a tour report: minilm <-> smollm2 on rotten-tomatoes.

    Uses the tour's texts (its ``dataset`` and ``n_texts`` from ``report.config``) through
    the embedding cache, 500 anchors, ridge and Procrustes, one seed. About a minute on two
    cores when the embeddings are cached.
    """
    from .. import data as hdata, models as hmodels
    from ..align import ceiling_scores as _ceil

    conf = report.config or {}
    dataset = str(conf.get("dataset", "rotten-tomatoes"))
    models = [m for m in conf.get("models", ["minilm", "smollm2"])][:2]
    if len(models) < 2:
        models = ["minilm", "smollm2"]
    n_texts = int(conf.get("n_texts", 4000) or 4000)
    ds = hdata.load(dataset, data_dir=conf.get("data_dir"))
    if len(ds) > n_texts:
        ds = ds.subsample(n_texts, seed=seed)
    n = len(ds)
    n_test = max(2, int(0.2 * n))
    n_anchor = min(500, n // 4)
    sp = ds.split(train=n - n_test - n_anchor, test=n_test, anchors=n_anchor, seed=seed)
    check_disjoint(sp.anchors.texts, sp.test.texts)
    r = sp.rows
    y = np.asarray(ds.labels)
    emb = {}
    for m in models:
        with report.timer(f"transfer:embed:{m}"):
            emb[m] = hmodels.embed(ds.texts, hmodels.load(m, device=device), pooling="mean",
                                   layer=-1, cache=True)
    rows = []
    metrics = {}
    # the same per-feature scaling as `hyperlens transfer`, fitted on the anchor texts only
    emb = {m: FeatureScaler("zscore").fit(x[r["anchors"]]).transform(x) for m, x in emb.items()}
    for teacher, student in ((models[0], models[1]), (models[1], models[0])):
        xt, xs = emb[teacher], emb[student]
        ceil = _ceil(xs[r["train"]], y[r["train"]], xs[r["test"]], y[r["test"]], hdc_dim=4096,
                     tau=0.3, seed=seed)
        for aligner in ("procrustes", "ridge"):
            s = transfer_scores(make_aligner(aligner), xt[r["anchors"]], xs[r["anchors"]],
                                xt[r["train"]], y[r["train"]], xs[r["test"]], y[r["test"]],
                                ceiling=ceil, hdc_dim=4096, tau=0.3, seed=seed)
            rows.append([f"{teacher} -> {student}", aligner, s.acc, s.bal_acc, ceil.hdc.acc,
                         s.majority, s.eff, s.cc_eff, s.float_eff])
            metrics[f"{teacher}->{student}:{aligner}"] = s.as_dict()
    sec = report.section(
        "Cross-architecture transfer",
        f"A classifier trained on one model's 4,096-d ternary codes, tested on the other's "
        f"after z-scoring each model on, and aligning on, {n_anchor} anchor texts ({dataset}, "
        f"{len(r['train'])} train / {n_test} test, one seed). Efficiency = transfer / the "
        "student's own HDC ceiling; chance-corrected efficiency is 0 for always answering the "
        "majority class. "
        "`hyperlens transfer` runs the full study.",
    )
    sec.table("Transfer at a glance", ["pair", "aligner", "acc", "bal. acc", "ceiling",
                                       "majority", "efficiency", "chance-corr. eff.",
                                       "float eff."], rows)
    sec.metrics(metrics)
