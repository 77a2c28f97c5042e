"""``hyperlens mha-cv``: pentachoron-volume CV of a small attention classifier over a grid
of model width x head count, before, halfway and after training, against a null model.

See :mod:`hyperlens.probes.mha_cv` for the model, the data and the measured quantities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Command, RunContext, start_report
from ..probes.mha_cv import (
    ACTIVATION_QUANTITIES,
    PHASES,
    WEIGHT_QUANTITIES,
    MHACVConfig,
    MHACVResult,
    cell_fingerprint,
    run_mha_cv,
)
from ..report import Report
from ..run import Ledger

__all__ = ["run", "build_report", "COMMANDS", "MHACVConfig"]

_WEIGHTS_MAIN = ("emb", "W_Q", "W_K", "W_V", "W_out", "W_cls")
_ACTS_MAIN = ("act_emb", "act_Q/head", "act_K/head", "act_V/head", "act_post/head", "act_post")


def run(cfg: MHACVConfig, ctx: RunContext | None = None) -> Report:
    """Run the sweep and write its report folder; returns the saved report.

    Every trained model is a cell in ``OUT/cells.jsonl``: a rerun with the same ``out``
    trains only the missing ones, under whichever executor the context names.
    """
    ctx = ctx or RunContext()
    dev = ctx.torch_device
    rep = start_report(
        "mha-cv", cfg, ctx,
        title="hyperlens mha-cv: simplex-volume CV across width and heads",
        description=(
            "A token embedding, one multi-head attention block and a linear classifier learn "
            f"{cfg.n_classes} seeded noisy token patterns. For each width x head count we "
            f"measure the coefficient of variation of {cfg.k}-simplex volumes of the weights "
            "and of the activations before, halfway and after training, with bootstrap "
            f"intervals, against a {cfg.null} null model, and check membership of the band "
            f"{cfg.band[0]} < CV < {cfg.band[1]}."
        ),
    )
    ledger = Ledger(Path(rep.out_dir) / "cells.jsonl", cell_fingerprint(cfg, dev),
                    fresh=cfg.fresh)
    with ctx.make_executor() as executor:
        rep.data["executor"] = executor.describe()
        with rep.timer("sweep"):
            result = run_mha_cv(cfg, device=dev, show_progress=None if ctx.progress else False,
                                executor=executor, ledger=ledger)
    ledger.report_into(rep)
    build_report(rep, result)
    rep.save()
    return rep


def _fmt(cell: dict[str, Any], key: str = "cv") -> str:
    lo_key, hi_key = {
        "cv": ("lo", "hi"),
        "null_cv": ("null_lo", "null_hi"),
        "ratio": ("ratio_lo", "ratio_hi"),
    }[key]
    if cell.get(key) is None:
        return "n/a" + (f" ({cell['note']})" if cell.get("note") else "")
    star = "*" if key == "cv" and cell.get("in_band") else ""
    return f"{cell[key]:.3f}{star} [{cell[lo_key]:.3f}, {cell[hi_key]:.3f}]"


def build_report(rep: Report, result: MHACVResult) -> Report:
    """Add the sweep's tables, plots and summary to ``rep`` (every CV with its interval)."""
    grid = _grid(result)
    rep.data["runs"] = result.runs
    rep.data["summary"] = [
        {
            "dim": d,
            "heads": h,
            "head_dim": d // h,
            "phase": ph,
            "quantity": q,
            **result.cell(d, h, ph, q),
        }
        for d, h in grid
        for ph in PHASES
        for q in (*WEIGHT_QUANTITIES, *ACTIVATION_QUANTITIES)
    ]
    rep.data["quantities"] = {**WEIGHT_QUANTITIES, **ACTIVATION_QUANTITIES}
    for add in (_training_section, _phase_sections, _band_section, _summary):
        add(rep, result)
    return rep


def _training_section(rep: Report, result: MHACVResult) -> None:
    """Loss and accuracy of every trained model."""
    grid = _grid(result)
    sec = rep.section(
        "Training",
        "Full-batch Adam on the noise patterns; accuracy on the training set "
        "and on a held-out set drawn from the same patterns, with 95 % Wilson intervals.",
    )
    rows = []
    for d, h in grid:
        runs = [r for r in result.runs if r["dim"] == d and r["heads"] == h]
        for r in runs:
            rows.append(
                [
                    d,
                    h,
                    d // h,
                    r["seed"],
                    round(r["loss_first"], 4),
                    round(r["loss_last"], 4),
                    f"{r['train_acc']:.3f} [{r['train_acc_ci'][0]:.3f}, "
                    f"{r['train_acc_ci'][1]:.3f}]",
                    f"{r['test_acc']:.3f} [{r['test_acc_ci'][0]:.3f}, {r['test_acc_ci'][1]:.3f}]",
                ]
            )
    sec.table(
        "Training per model",
        [
            "dim",
            "heads",
            "head_dim",
            "seed",
            "loss (first)",
            "loss (last)",
            "train acc [95% CI]",
            "test acc [95% CI]",
        ],
        rows,
    )
    sec.plot("mha_cv_accuracy.png", {
        "kind": "bar", "title": "Held-out accuracy (95 % Wilson interval)", "ylabel": "accuracy",
        "categories": [f"D{d}/H{h}" for d, h in grid],
        "series": [{"label": f"seed {s}",
                    "values": [_run(result, d, h, s)["test_acc"] for d, h in grid],
                    "lo": [_run(result, d, h, s)["test_acc_ci"][0] for d, h in grid],
                    "hi": [_run(result, d, h, s)["test_acc_ci"][1] for d, h in grid]}
                   for s in sorted({r["seed"] for r in result.runs})],
    })


def _phase_sections(rep: Report, result: MHACVResult) -> None:
    """The CV tables and heatmaps of weights and activations per phase."""
    cfg = result.config
    lo_b, hi_b = cfg.band
    grid = _grid(result)
    interval = ("Student-t 95 % interval over seeds" if len(cfg.seeds) >= 2
                else "95 % percentile bootstrap interval over the sampled simplices")
    for title, quantities, fname in (("Weights", WEIGHT_QUANTITIES, "weights"),
                                     ("Activations", ACTIVATION_QUANTITIES, "activations")):
        sec = rep.section(
            f"{title}: CV by width and heads",
            f"CV of {cfg.k}-simplex volumes [{interval}]; * marks {lo_b} < CV < {hi_b}. "
            "Per-head quantities are the mean over heads. "
            + ("; ".join(f"{q}: {desc}" for q, desc in quantities.items())) + ".",
        )
        for phase in PHASES:
            rows = [
                [d, h, d // h, *[_fmt(result.cell(d, h, phase, q)) for q in quantities]]
                for d, h in grid
            ]
            sec.table(f"{title}, {phase}-training", ["dim", "heads", "head_dim", *quantities], rows)
        if cfg.null_model is not None:
            rows = [
                [d, h, d // h, *[_fmt(result.cell(d, h, "post", q), "null_cv") for q in quantities]]
                for d, h in grid
            ]
            sec.table(f"{title}, {cfg.null} null model (post-training shapes)",
                      ["dim", "heads", "head_dim", *quantities], rows,
                      note="The same statistic on a matched null point cloud with the same size.")
            rows = [
                [d, h, d // h, *[_fmt(result.cell(d, h, "post", q), "ratio") for q in quantities]]
                for d, h in grid
            ]
            sec.table(
                f"{title}, CV / null CV after training",
                ["dim", "heads", "head_dim", *quantities],
                rows,
                note="Intervals exclude 1 where the trained geometry differs from the null.",
            )
        main_q = _WEIGHTS_MAIN if title == "Weights" else _ACTS_MAIN
        sec.plot(f"mha_cv_{fname}_heatmap.png", {
            "kind": "panel", "title": f"{title}: post-training CV (rows: dim, columns: heads)",
            "rows": 2, "cols": 3,
            "subplots": [_heatmap(result, q, "post") for q in main_q],
        }, caption=f"Intervals for every cell are in the tables above ({interval}).")
        sec.plot(
            f"mha_cv_{fname}_by_head_dim.png",
            {
                "kind": "panel",
                "title": f"{title}: CV against head_dim with 95 % intervals",
                "rows": 2,
                "cols": 3,
                "subplots": [_line(result, q) for q in main_q],
            },
        )


def _band_section(rep: Report, result: MHACVResult) -> None:
    """Which CVs lie in the band after training, beside the null."""
    cfg = result.config
    lo_b, hi_b = cfg.band
    sec = rep.section(
        "Band membership",
        f"Share of the measured quantities with {lo_b} < CV < {hi_b} per grid cell after training, "
        "for the "
        "trained model and for the matched null. A band that the null also occupies says nothing "
        "about "
        "learning; the CV / null ratio and its interval are the quantities to read.",
    )
    qs = [*WEIGHT_QUANTITIES, *ACTIVATION_QUANTITIES]
    counts: dict[str, list[list[float]]] = {"data": [], "null": []}
    rows = []
    for d in cfg.dims:
        row_d, row_n = [], []
        for h in cfg.heads:
            cells = [result.cell(d, h, "post", q) for q in qs]
            valid = [c for c in cells if c["cv"] is not None]
            frac = sum(bool(c["in_band"]) for c in valid) / max(1, len(valid))
            nvalid = [c for c in valid if c["null_in_band"] is not None]
            nfrac = (
                sum(bool(c["null_in_band"]) for c in nvalid) / max(1, len(nvalid))
                if nvalid
                else float("nan")
            )
            row_d.append(frac)
            row_n.append(nfrac)
            inb = [
                q for q, c in zip(qs, cells, strict=True) if c["cv"] is not None and c["in_band"]
            ]
            sig = [q for q, c in zip(qs, cells, strict=True)
                   if c.get("ratio_lo") is not None and (c["ratio_lo"] > 1 or c["ratio_hi"] < 1)]
            rows.append(
                [
                    d,
                    h,
                    d // h,
                    f"{sum(bool(c['in_band']) for c in valid)}/{len(valid)}",
                    f"{sum(bool(c['null_in_band']) for c in nvalid)}/{len(nvalid)}"
                    if nvalid
                    else "n/a",
                    ", ".join(inb) or "-",
                    ", ".join(sig) or "-",
                ]
            )
        counts["data"].append(row_d)
        counts["null"].append(row_n)
    sec.table("In band after training", ["dim", "heads", "head_dim", "in band", "null in band",
                                         "quantities in band", "ratio interval excludes 1"], rows)
    sec.plot(
        "mha_cv_band.png",
        {
            "kind": "panel",
            "title": "Share of quantities in the band after training",
            "rows": 1,
            "cols": 2,
            "subplots": [
                {
                    "kind": "heatmap",
                    "title": title,
                    "matrix": counts[key],
                    "xlabel": "heads",
                    "ylabel": "dim",
                    "xticklabels": [str(h) for h in cfg.heads],
                    "yticklabels": [str(d) for d in cfg.dims],
                    "vmin": 0,
                    "vmax": 1,
                    "annotate": True,
                    "fmt": ".2f",
                }
                for title, key in (("trained", "data"), (f"{cfg.null} null", "null"))
            ],
        },
        caption="Shares of point estimates; see the tables for each CV's interval.",
    )


def _summary(rep: Report, result: MHACVResult) -> None:
    """Counts over the grid after training, and the printed summary."""
    cfg = result.config
    grid = _grid(result)
    qs = [*WEIGHT_QUANTITIES, *ACTIVATION_QUANTITIES]
    sec = rep.section("Band membership")
    total = [result.cell(d, h, "post", q) for d, h in grid for q in qs]
    valid = [c for c in total if c["cv"] is not None]
    n_in = sum(bool(c["in_band"]) for c in valid)
    n_null = sum(bool(c["null_in_band"]) for c in valid if c["null_in_band"] is not None)
    n_sig = sum(
        1
        for c in valid
        if c.get("ratio_lo") is not None and (c["ratio_lo"] > 1 or c["ratio_hi"] < 1)
    )
    sec.metrics({"in_band_post": n_in, "null_in_band_post": n_null, "measured_post": len(valid),
                 "ratio_excludes_one_post": n_sig})
    best = max(result.runs, key=lambda r: r["test_acc"])
    rep.summary([
        ["grid", f"{len(cfg.dims)} dims x {len(cfg.heads)} heads x {len(cfg.seeds)} seed(s)"],
        ["CVs in band after training", f"{n_in}/{len(valid)}"],
        [f"{cfg.null} null CVs in band", f"{n_null}/{len(valid)}"],
        ["CV / null ratio interval excludes 1", f"{n_sig}/{len(valid)}"],
        ["best held-out accuracy", f"{best['test_acc']:.3f} (D{best['dim']}/H{best['heads']})"],
    ])


def _grid(result: MHACVResult) -> list[tuple[int, int]]:
    """Every (width, heads) cell of the sweep, in report order."""
    return [(d, h) for d in result.config.dims for h in result.config.heads]


def _run(result: MHACVResult, d: int, h: int, s: int) -> dict[str, Any]:
    return next(r for r in result.runs if r["dim"] == d and r["heads"] == h and r["seed"] == s)


def _heatmap(result: MHACVResult, q: str, phase: str) -> dict[str, Any]:
    cfg = result.config
    mat = [[result.cell(d, h, phase, q)["cv"] for h in cfg.heads] for d in cfg.dims]
    return {"kind": "heatmap", "title": q, "matrix": mat, "xlabel": "heads", "ylabel": "dim",
            "xticklabels": [str(h) for h in cfg.heads], "yticklabels": [str(d) for d in cfg.dims],
            "annotate": True, "fmt": ".2f", "cmap": "viridis"}


def _line(result: MHACVResult, q: str) -> dict[str, Any]:
    cfg = result.config
    series = []
    for d in cfg.dims:
        for phase in ("pre", "post"):
            cells = [(d // h, result.cell(d, h, phase, q)) for h in cfg.heads]
            cells = [(x, c) for x, c in cells if c["cv"] is not None]
            if not cells:
                continue
            cells.sort(key=lambda t: t[0])
            series.append({"label": f"D{d} {phase}", "x": [x for x, _ in cells],
                           "y": [c["cv"] for _, c in cells], "lo": [c["lo"] for _, c in cells],
                           "hi": [c["hi"] for _, c in cells]})
    return {"kind": "line", "title": q, "xlabel": "head_dim", "ylabel": "CV", "xscale": "log",
            "hlines": [{"y": cfg.band[0], "label": "band"}, {"y": cfg.band[1], "label": ""}],
            "series": series}


COMMANDS = (
    Command("mha-cv", "simplex-volume CV of embedding, Q/K/V, output and classifier across "
            "width x heads (seed 004)", MHACVConfig, run, description=__doc__ or ""),
)
