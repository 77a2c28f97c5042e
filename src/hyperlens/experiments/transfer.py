"""``hyperlens transfer``: cross-architecture transfer through shared ternary HDC codes.

A classifier trained on a teacher model's HDC codes is scored on a student model's HDC
codes after an aligner, fitted on paired anchor texts, has mapped both models into one
shared space (``hyperlens.align.evaluate`` has the exact protocol). Stages:

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

``--seed`` draws each dataset's pool of texts (and so every split of it); each of
``--seeds`` (the replicates) re-splits the pool into train / test / anchors and redraws the
random projection. Every (stage, configuration, seed) cell lands in ``cells.jsonl`` in the
report folder as soon as it finishes (the file is rewritten atomically); a rerun with the
same ``--out`` skips finished cells, so an interrupted run resumes where it stopped, under
either executor. The cells and their planning live in ``hyperlens.align.sweep``; this
module holds the options and the report layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..align import (
    FeatureScaler,
    available_aligners,
    ceiling_scores,
    check_disjoint,
    make_aligner,
    summarize,
    transfer_scores,
)
from ..align.sweep import (
    STAGES,
    CeilingSpec,
    SweepDesign,
    TransferProtocol,
    TransferSpec,
    TransferSweep,
)
from ..config import Command, RunContext, above, at_least, option, start_report
from ..config.shared import DataFileOptions
from ..errors import ConfigError
from ..report import Report
from ..run import Ledger

__all__ = ["TransferConfig", "run", "COMMANDS", "STAGES", "tour_section"]

#: The ledger of finished cells, under its former name (other sweeps import it from here).
CellStore = Ledger

METRICS = ("acc", "bal_acc", "eff", "cc_eff", "float_acc", "float_bal_acc", "float_eff",
           "float_cc_eff")


@dataclass(frozen=True, kw_only=True)
class TransferConfig(DataFileOptions):
    """Options of ``hyperlens transfer`` (the defaults are the paper protocol)."""

    CONTEXT = frozenset({"seed", "device", "executor"})
    RANDOM = ("which texts of each dataset form the pool, and so every replicate's train / "
              "test / anchor split")

    stages: tuple[Literal["0", "1", "2", "3", "4", "teachers"], ...] = option(
        STAGES, help="stages to run")
    models: tuple[str, ...] = option(
        ("minilm", "smollm2", "glove-50d"), metavar="MODEL",
        help="models for stage 0 and the stage 3 pair matrix")
    pair: tuple[str, ...] = option(
        ("minilm", "smollm2"), min_items=2, metavar="MODEL",
        help="the main pair, two models run both ways in stages 1, 2 and 4")
    dataset: str = option("sst2", help="main dataset (a name or a local file)")
    datasets: tuple[str, ...] = option(("sst2", "agnews", "rotten-tomatoes"),
                                       help="datasets for stage 4")
    data_dir: Path | None = option(None, help="folder holding sst2/ and agnews/")
    aligners: tuple[str, ...] = option(
        ("none", "procrustes", "cca", "ridge", "relative", "contrastive"),
        help=f"aligners for stage 2 (registered: {', '.join(available_aligners())})")
    aligner: str = option("ridge", help="aligner for stages 1, 3, 4 and the teacher study")
    anchors: tuple[str, ...] = option(
        ("100", "500", "1000", "all"), help="anchor counts for stage 2 ('all' = the whole "
                                            "anchor pool)")
    n_anchors: int = option(500, check=at_least(1),
                            help="anchor count for stages 1, 3, 4 and the teacher study")
    hdc_dims: tuple[int, ...] = option((1024, 2048, 4096, 8192), check=at_least(1),
                                       help="code widths for stage 1")
    hdc_dim: int = option(4096, check=at_least(1), help="code width of the other stages")
    tau: float = option(0.3, check=above(0), help="ternary threshold x row std")
    seeds: tuple[int, ...] = option(
        (42, 123, 456), check=at_least(0),
        help="replicate seeds: each re-splits the pool and redraws the projection")
    train: int = option(3000, check=at_least(2), help="training texts")
    test: int = option(500, check=at_least(2), help="test texts")
    anchor_pool: int = option(2000, check=at_least(2),
                              help="anchor texts set aside from the training side")
    teachers: tuple[str, ...] = option(("minilm", "glove-50d", "wordllama"), metavar="MODEL",
                                       help="teachers for the teacher study")
    student: str = option("smollm2", help="student for the teacher study")
    C: float = option(1.0, flag="--C", check=above(0),
                      help="inverse L2 strength of the probe on HDC codes")
    C_float: float = option(1.0, flag="--C-float", check=above(0),
                            help="inverse L2 strength of the float probe")
    input_scaling: Literal["zscore", "none"] = option(
        "zscore", help="per-feature scaling of each model's embeddings before aligning and "
                       "encoding, fitted on the anchor pool (tames the few high-variance "
                       "dimensions of decoder hidden states)")
    pooling: Literal["mean", "cls", "last"] = option("mean", help="how token states become "
                                                                  "one text vector")
    layer: int = option(-1, help="hidden layer (-1 = last)")
    batch_size: int = option(32, check=at_least(1), help="texts per forward pass")
    allow_anchor_overlap: bool = option(
        False, help="accept anchor texts that also occur in the test set (leaks)")
    fresh: bool = option(False, help="ignore finished cells in OUT/cells.jsonl and recompute "
                                     "everything")

    def check(self) -> None:
        known = set(available_aligners())
        for flag, names in (("--aligners", self.aligners), ("--aligner", (self.aligner,))):
            for name in names:
                if name not in known:
                    raise ConfigError(f"{flag}: aligner {name!r} is not registered; "
                                      f"available: {', '.join(sorted(known))}.")
        for a in self.anchors:
            if a != "all" and not (a.isdigit() and int(a) > 0):
                raise ConfigError(f"--anchors takes positive counts or 'all', got {a!r}.")
            if a != "all" and int(a) > self.anchor_pool:
                raise ConfigError(f"--anchors {a} exceeds --anchor-pool {self.anchor_pool}; "
                                  "raise the pool or ask for fewer anchors.")
        # --n-anchors is read by stages 1, 3, 4 and the teacher study only
        if set(self.stages) & {"1", "3", "4", "teachers"} and self.n_anchors > self.anchor_pool:
            raise ConfigError(f"--n-anchors {self.n_anchors} exceeds --anchor-pool "
                              f"{self.anchor_pool}; raise the pool or use fewer anchors.")
        if len(self.pair) != 2 or self.pair[0] == self.pair[1]:
            raise ConfigError(f"--pair takes two different models, got {' '.join(self.pair)}.")

    def design(self) -> SweepDesign:
        """Which cells the chosen stages read."""
        return SweepDesign(**{f.name: getattr(self, f.name) for f in fields(SweepDesign)})

    def protocol(self, pool_seed: int = 0) -> TransferProtocol:
        """How each cell is computed; ``pool_seed`` (the run's ``--seed``) draws the pools."""
        names = {f.name for f in fields(TransferProtocol)} - {"pool_seed", "data_dir",
                                                               "load_options"}
        return TransferProtocol(**{n: getattr(self, n) for n in names}, pool_seed=pool_seed,
                                data_dir=None if self.data_dir is None else str(self.data_dir),
                                load_options=self.read_options())


# --------------------------------------------------------------------------- entry point
def run(config: TransferConfig, ctx: RunContext | None = None) -> Report:
    """Run the chosen stages and write the report folder (saved, and returned).

    Missing cells are computed by ``ctx.make_executor()`` (in this process, or as Ray tasks
    with ``executor="ray"``), then the stages read them from the ledger and lay out the
    report. Durations (phases, and the aligner fitting time of the cells computed in this
    run) are in the report's ``timings`` only, so the results do not depend on the executor.
    """
    ctx = ctx or RunContext()
    rep = start_report("transfer", config, ctx,
                       description="Cross-architecture transfer: a classifier trained on one "
                                   "model's HDC codes, tested on another's after alignment on "
                                   "anchor texts.")
    out = Path(rep.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    protocol = config.protocol(ctx.seed)
    ledger = Ledger(out / "cells.jsonl", protocol.fingerprint(), fresh=config.fresh)
    with ctx.make_executor() as executor:
        sweep = TransferSweep(config.design(), protocol, ledger, executor=executor,
                              device=ctx.torch_device, report=rep)
        with rep.timer("cells"):
            sweep.prefetch(show_progress=None if ctx.progress else False)
        rep.data["datasets"] = sweep.datasets
        for stage in STAGES:
            if stage in config.stages:
                with rep.timer(f"stage:{stage}"):
                    _STAGE_LAYOUTS[stage](rep, config, sweep)
    rep.timings.update(sweep.fit_seconds)
    ledger.report_into(rep, computed=sweep.computed)
    rows = [["cells computed / resumed", f"{sweep.computed} / {ledger.resumed}"]]
    for d, b in rep.data.get("stage2_best", {}).items():
        rows.append([f"best @{config.n_anchors} {d}",
                     f"{b['aligner']}: eff {_fmt(b['eff'])}, chance-corr. {_fmt(b['cc_eff'])}, "
                     f"bal. acc {_fmt(b['bal_acc'])}"])
    rep.summary(rows)
    rep.save()
    return rep


# --------------------------------------------------------------------------- helpers for tables
def _ceilings(sweep: TransferSweep, model: str, dataset: str,
              hdc_dim: int) -> list[dict[str, Any]]:
    """One ceiling cell per replicate seed."""
    return [sweep.ceiling(CeilingSpec(model, dataset, s, hdc_dim)) for s in sweep.design.seeds]


def _transfers(sweep: TransferSweep, teacher: str, student: str, dataset: str, *,
               aligner: str | None = None, anchors: str | None = None,
               hdc_dim: int | None = None) -> list[dict[str, Any]]:
    """One transfer cell per replicate seed (the fixed aligner, anchors, width by default)."""
    d = sweep.design
    return [sweep.transfer(TransferSpec(teacher, student, dataset, aligner or d.aligner,
                                        str(anchors or d.n_anchors), s, hdc_dim or d.hdc_dim))
            for s in d.seeds]


def _stats(cells: Sequence[dict[str, Any]], metric: str) -> dict[str, float]:
    return summarize([c[metric] for c in cells])


def _fmt(st: dict[str, float]) -> str:
    if st["n"] == 0:
        return "n/a"
    if st["n"] == 1:
        return f"{st['mean']:.3f}"
    return f"{st['mean']:.3f} ± {st['hi'] - st['mean']:.3f}"


TRANSFER_COLUMNS = ["acc", "bal. acc", "efficiency", "chance-corr. eff.", "float acc",
                    "float eff.", "float chance-corr. eff."]


def _transfer_cols(cells: Sequence[dict[str, Any]]) -> list[str]:
    return [_fmt(_stats(cells, m)) for m in ("acc", "bal_acc", "eff", "cc_eff", "float_acc",
                                              "float_eff", "float_cc_eff")]


def _summary_record(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {m: _stats(cells, m) for m in METRICS} | {
        "ceiling": _stats(cells, "ceiling"), "majority": _stats(cells, "majority"),
        "per_seed": list(cells)}


# --------------------------------------------------------------------------- stages
def stage0(rep: Report, cfg: TransferConfig, sweep: TransferSweep) -> None:
    recs: dict[str, dict[str, Any]] = {}
    rows, bars_f, bars_h, lo_f, hi_f, lo_h, hi_h = [], [], [], [], [], [], []
    for model in cfg.models:
        cells = _ceilings(sweep, model, cfg.dataset, cfg.hdc_dim)
        f, h = _stats(cells, "float_acc"), _stats(cells, "hdc_acc")
        fb, hb = _stats(cells, "float_bal_acc"), _stats(cells, "hdc_bal_acc")
        loss = summarize([c["float_acc"] - c["hdc_acc"] for c in cells])
        maj = _stats(cells, "majority")
        recs[model] = {"float_acc": f, "hdc_acc": h, "float_bal_acc": fb, "hdc_bal_acc": hb,
                       "hdc_loss": loss, "majority": maj, "per_seed": cells}
        rows.append([model, _fmt(f), _fmt(fb), _fmt(h), _fmt(hb), _fmt(loss), f"{maj['mean']:.3f}"])
        bars_f.append(f["mean"]); lo_f.append(f["lo"]); hi_f.append(f["hi"])  # noqa: E702
        bars_h.append(h["mean"]); lo_h.append(h["lo"]); hi_h.append(h["hi"])  # noqa: E702
    sec = rep.section(
        "Stage 0: ceilings",
        f"Linear probes trained and tested on each model's own representation of {cfg.dataset} "
        f"({cfg.train} train / {cfg.test} test texts, {cfg.pooling} pooling, layer {cfg.layer}): "
        f"float embeddings and {cfg.hdc_dim}-d ternary codes (tau = {cfg.tau} x row std). "
        f"Mean ± 95 % t-interval over seeds {list(cfg.seeds)}. The HDC ceiling is the "
        "denominator of every efficiency below.")
    sec.table("Ceilings", ["model", "float acc", "float bal. acc", "HDC acc", "HDC bal. acc",
                           "float - HDC", "majority"], rows)
    sec.plot("stage0_ceilings.png", {
        "kind": "bar", "title": f"Ceilings on {cfg.dataset}", "ylabel": "test accuracy",
        "categories": list(cfg.models),
        "series": [{"label": "float", "values": bars_f, "lo": lo_f, "hi": hi_f},
                   {"label": f"HDC {cfg.hdc_dim}", "values": bars_h, "lo": lo_h, "hi": hi_h}],
        "hlines": [{"y": float(np.mean([r["majority"]["mean"] for r in recs.values()])),
                    "label": "majority class"}]})
    rep.data["stage0"] = recs


def stage1(rep: Report, cfg: TransferConfig, sweep: TransferSweep) -> None:
    recs: dict[str, dict[str, Any]] = {"ceilings": {}, "transfer": {}}
    rows, series = [], []
    for model in cfg.pair:
        ys, los, his = [], [], []
        for dim in cfg.hdc_dims:
            cells = _ceilings(sweep, model, cfg.dataset, dim)
            h = _stats(cells, "hdc_acc")
            loss = summarize([c["float_acc"] - c["hdc_acc"] for c in cells])
            recs["ceilings"][f"{model}@{dim}"] = {"hdc_acc": h, "hdc_loss": loss,
                                                  "float_acc": _stats(cells, "float_acc")}
            rows.append([model, "ceiling (own codes)", dim, _fmt(h), _fmt(loss), "", ""])
            ys.append(h["mean"]); los.append(h["lo"]); his.append(h["hi"])  # noqa: E702
        series.append({"label": f"{model} ceiling", "x": list(cfg.hdc_dims), "y": ys, "lo": los,
                       "hi": his})
    for teacher, student in cfg.design().directions():
        ys, los, his = [], [], []
        for dim in cfg.hdc_dims:
            cells = _transfers(sweep, teacher, student, cfg.dataset, hdc_dim=dim)
            a = _stats(cells, "acc")
            recs["transfer"][f"{teacher}->{student}@{dim}"] = _summary_record(cells)
            rows.append([f"{teacher} -> {student}", f"transfer ({cfg.aligner})", dim, _fmt(a),
                         _fmt(summarize([c["float_acc"] - c["acc"] for c in cells])),
                         _fmt(_stats(cells, "eff")), _fmt(_stats(cells, "cc_eff"))])
            ys.append(a["mean"]); los.append(a["lo"]); his.append(a["hi"])  # noqa: E702
        series.append({"label": f"{teacher} -> {student}", "x": list(cfg.hdc_dims), "y": ys,
                       "lo": los, "hi": his})
    sec = rep.section(
        "Stage 1: HDC dimension",
        "Accuracy of ternary codes against the float embeddings they come from, per code "
        f"width: each model's own ceiling, and transfer with the {cfg.aligner} aligner at "
        f"{cfg.n_anchors} anchors (float - HDC is the loss from quantisation).")
    sec.table("HDC dimension sweep", ["model / pair", "what", "HDC dim", "HDC acc",
                                      "float - HDC", "efficiency", "chance-corr. eff."], rows)
    sec.plot("stage1_hdc_dim.png", {
        "kind": "line", "title": f"HDC dimension ({cfg.dataset})", "xlabel": "HDC dimension",
        "ylabel": "test accuracy", "xscale": "log", "series": series})
    rep.data["stage1"] = recs


def stage2(rep: Report, cfg: TransferConfig, sweep: TransferSweep) -> None:
    recs: dict[str, Any] = {}
    sec = rep.section(
        "Stage 2: aligners x anchors",
        f"Each aligner fitted on 100 to {cfg.anchor_pool} paired anchors (texts from the "
        f"training side, disjoint from the test set), {cfg.hdc_dim}-d codes, {cfg.dataset}. "
        "Efficiency = transfer / student HDC ceiling; chance-corrected efficiency = (transfer - "
        "majority) / (ceiling - majority) is 0 for always answering the majority class; "
        "the float columns repeat the pipeline without HDC. Mean ± 95 % t-interval half-width "
        f"over seeds {list(cfg.seeds)}.")
    best: dict[str, Any] = {}
    for teacher, student in cfg.design().directions():
        direction = f"{teacher}->{student}"
        rows, series = [], []
        for aligner in cfg.aligners:
            ys, los, his, xs = [], [], [], []
            for a in cfg.anchors:
                cells = _transfers(sweep, teacher, student, cfg.dataset, aligner=aligner,
                                   anchors=a)
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
        student_cells = _ceilings(sweep, student, cfg.dataset, cfg.hdc_dim)
        ceiling = _stats(student_cells, "hdc_acc")
        majority = _stats(student_cells, "majority")
        teacher_ceiling = _stats(_ceilings(sweep, teacher, cfg.dataset, cfg.hdc_dim), "hdc_acc")
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
    rep.data["stage2"] = recs
    rep.data["stage2_best"] = {d: {k: v for k, v in b.items() if k != "per_seed"}
                                      for d, b in best.items()}


def stage3(rep: Report, cfg: TransferConfig, sweep: TransferSweep) -> None:
    models = list(cfg.models)
    eff = np.full((len(models), len(models)), np.nan)
    cc = np.full_like(eff, np.nan)
    rows, recs = [], {}
    for i, teacher in enumerate(models):
        for j, student in enumerate(models):
            if i == j:
                continue
            cells = _transfers(sweep, teacher, student, cfg.dataset)
            rec = _summary_record(cells)
            recs[f"{teacher}->{student}"] = rec
            eff[i, j] = rec["eff"]["mean"]
            cc[i, j] = rec["cc_eff"]["mean"]
            rows.append([teacher, student, *_transfer_cols(cells)])
    sec = rep.section(
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
    rep.data["stage3"] = recs


def stage4(rep: Report, cfg: TransferConfig, sweep: TransferSweep) -> None:
    rows, recs, series = [], {}, []
    dirs = cfg.design().directions()
    vals: dict[str, list[float]] = {f"{t}->{s}": [] for t, s in dirs}
    los: dict[str, list[float]] = {k: [] for k in vals}
    his: dict[str, list[float]] = {k: [] for k in vals}
    for dataset in cfg.datasets:
        pool = sweep.pool(dataset)
        for teacher, student in dirs:
            cells = _transfers(sweep, teacher, student, dataset)
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
    sec = rep.section(
        "Stage 4: datasets",
        f"The main pair in both directions on each dataset ({cfg.aligner}, {cfg.n_anchors} "
        "anchors). Multi-class sets (AG News: 4 classes) have a lower majority rate, so raw "
        "and chance-corrected efficiency agree more closely there.")
    sec.table("Datasets", ["dataset", "classes", "pair", "ceiling", "majority",
                           *TRANSFER_COLUMNS], rows)
    sec.plot("stage4_datasets.png", {"kind": "bar", "title": "Efficiency by dataset",
                                     "ylabel": "efficiency", "categories": list(cfg.datasets),
                                     "series": series, "hlines": [{"y": 1.0, "label": "ceiling"}]})
    rep.data["stage4"] = recs


def stage_teachers(rep: Report, cfg: TransferConfig, sweep: TransferSweep) -> None:
    rows, recs, vals, los, his, cats = [], {}, [], [], [], []
    cc_vals = []
    for teacher in cfg.teachers:
        if teacher == cfg.student:
            continue
        cells = _transfers(sweep, teacher, cfg.student, cfg.dataset)
        rec = _summary_record(cells)
        recs[teacher] = rec
        own = _stats(_ceilings(sweep, teacher, cfg.dataset, cfg.hdc_dim), "hdc_acc")
        rows.append([teacher, _fmt(own), *_transfer_cols(cells)])
        cats.append(teacher)
        vals.append(rec["acc"]["mean"]); los.append(rec["acc"]["lo"]); his.append(rec["acc"]["hi"])  # noqa: E702
        cc_vals.append(rec["cc_eff"]["mean"])
    sec = rep.section(
        "Teacher study",
        f"Several teachers into one student ({cfg.student}), {cfg.aligner} aligner, "
        f"{cfg.n_anchors} anchors, {cfg.dataset}. 'teacher ceiling' is the teacher's own HDC "
        "probe: a stronger teacher helps only if the alignment carries its extra structure.")
    sec.table("Teachers", ["teacher", "teacher ceiling", *TRANSFER_COLUMNS], rows)
    sec.plot("teachers.png", {"kind": "bar", "title": f"Teachers -> {cfg.student}",
                              "ylabel": "transfer accuracy", "categories": cats,
                              "series": [{"label": "transfer accuracy", "values": vals, "lo": los,
                                          "hi": his}]})
    rep.data["teachers"] = recs


_STAGE_LAYOUTS: dict[str, Callable[[Report, TransferConfig, TransferSweep], None]] = {
    "0": stage0, "1": stage1, "2": stage2, "3": stage3, "4": stage4, "teachers": stage_teachers,
}


# --------------------------------------------------------------------------- tour
def tour_section(report: Report, *, seed: int = 0, device: str = "cpu") -> None:
    """Add a compact transfer section to a tour report: minilm <-> smollm2 on rotten-tomatoes.

    Uses the tour's texts (its ``dataset`` and ``n_texts`` from ``report.config``) through
    the embedding cache, 500 anchors, ridge and Procrustes, one seed. About a minute on two
    cores when the embeddings are cached.
    """
    from .. import data as hdata, models as hmodels

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
        ceil = ceiling_scores(xs[r["train"]], y[r["train"]], xs[r["test"]], y[r["test"]],
                              hdc_dim=4096, tau=0.3, seed=seed)
        for aligner in ("procrustes", "ridge"):
            s = transfer_scores(make_aligner(aligner), xt[r["anchors"]], xs[r["anchors"]],
                                xt[r["train"]], y[r["train"]], xs[r["test"]], y[r["test"]],
                                ceiling=ceil, hdc_dim=4096, tau=0.3, seed=seed)
            rows.append([f"{teacher} -> {student}", aligner, s.acc, s.bal_acc, ceil.hdc.acc,
                         s.majority, s.eff, s.cc_eff, s.float_eff])
            metrics[f"{teacher}->{student}:{aligner}"] = {
                k: v for k, v in s.as_dict().items() if k != "fit_seconds"}
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


COMMANDS = (
    Command("transfer", "cross-architecture transfer via shared HDC codes: ceilings, HDC sweep, "
            "aligners, pairs, datasets", TransferConfig, run, description=__doc__ or ""),
)
