"""``hyperlens terrain``: the embedding terrain of one model, or two side by side.

Runs :func:`hyperlens.probes.terrain.run_terrain` on each model and writes a report with
a 3 x 3 plot panel per model, tables of every measurement, the published-band checks
(pentachoron CV 0.20-0.23, PR / d 0.53-0.56) against their nulls, and, with two
``--models``, a side-by-side section. :func:`tour_section` adds a compact version to
``hyperlens tour``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Command, RunContext, at_least, option, start_report
from ..config.shared import DataFileOptions, check_side_by_side
from ..probes import wordlists
from ..probes.terrain import TerrainConfig, TerrainSubject, run_terrain, terrain_panel
from ..report import Report

__all__ = ["TerrainRunConfig", "run", "COMMANDS", "tour_section", "add_terrain_sections"]


@dataclass(frozen=True, kw_only=True)
class TerrainRunConfig(TerrainConfig, DataFileOptions):
    """Options of ``hyperlens terrain``: the models, the texts and the battery's sizes."""

    RANDOM = "the token, pair and simplex samples, permutations and bootstrap resamples"

    models: tuple[str, ...] = option(help="one model, or two shown side by side (zoo name, "
                                     "Hugging Face id or local folder)", aliases=("--model",),
                                     metavar="MODEL", unique=True)
    texts: str = option("builtin", help="texts for the layer statistics: 'builtin' (48 varied "
                        "sentences) or a dataset name/file for hyperlens.data.load")
    n_texts: int = option(64, help="texts drawn from --texts when it is a dataset",
                          check=at_least(2))
    data_dir: str | None = option(None, help="folder holding the labelled data sets")
    layers: bool = option(True, help="run the layer-by-layer forward passes (--no-layers "
                          "skips them)")

    def check(self) -> None:
        super().check()
        check_side_by_side(self.models)


def _load_texts(
    texts: str, n_texts: int, data_dir: str | None, seed: int,
    read: dict[str, Any] | None = None,
) -> tuple[list[str], str]:
    if texts == "builtin":
        return list(wordlists.TERRAIN_SENTENCES), "built-in sentences"
    from .. import data as hdata

    ds = hdata.load(texts, data_dir=data_dir, **(read or {}))
    if len(ds) > n_texts:
        ds = ds.subsample(n_texts, seed=seed)
    return list(ds.texts), f"{n_texts} texts from {ds.name}"


def _fmt_ci(ci: Sequence[float]) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _overview_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    def get(r: dict[str, Any], *path: str) -> Any:
        cur: Any = r
        for p in path:
            if not isinstance(cur, dict) or p not in cur:
                return None
            cur = cur[p]
        return cur

    def manifold(r: dict[str, Any], key: str) -> str:
        m = r["numbers"][key]
        if not m.get("available"):
            return "n/a"
        return (
            f"r={m['corr_offset_cosine']:.3f} (p={m['p_corr']:.3g}), "
            f"gap={m['adjacency_gap']:.3f} (p={m['p_gap']:.3g})"
        )

    rows: list[list[Any]] = []
    spec: list[tuple[str, Any]] = [
        ("kind", lambda r: r["kind"]),
        ("vocabulary x dim", lambda r: f"{r['vocab_size']} x {r['dim']}"),
        ("layers", lambda r: r["num_layers"]),
        ("norm mean / CV", lambda r: f"{r['norms']['mean']:.3f} / {r['norms']['cv']:.3f}"),
        ("cosine mean (all pairs)", lambda r: r["cosine"]["mean"]),
        (
            "cosine std vs 1/sqrt(d)",
            lambda r: f"{r['cosine']['std']:.3f} vs {r['cosine']['isotropic_std']:.3f}",
        ),
        ("cosine mean after centring", lambda r: r["cosine"]["centered_mean"]),
        (
            "PR / d [95% CI]",
            lambda r: f"{r['spectrum']['pr_over_d']:.3f} {_fmt_ci(r['spectrum']['pr_over_d_ci'])}",
        ),
        ("PR / d, column-shuffled null", lambda r: r["spectrum"]["null_pr_over_d"]),
        (
            "dims for 90 / 95 / 99 % variance",
            lambda r: " / ".join(
                str(r["spectrum"]["dims_for_variance"][k]) for k in ("90", "95", "99")
            ),
        ),
        (
            "effective rank / stable rank",
            lambda r: f"{r['spectrum']['effective_rank']:.1f} / {r['spectrum']['stable_rank']:.1f}",
        ),
        (
            "pentachoron CV [95% CI]",
            lambda r: (
                f"{r['pentachoron']['embeddings']['cv']:.3f} "
                f"{_fmt_ci(r['pentachoron']['embeddings']['cv_ci'])}"
            ),
        ),
        (
            "  Gaussian null (same covariance)",
            lambda r: (
                f"{r['pentachoron']['gaussian']['cv']:.3f} "
                f"{_fmt_ci(r['pentachoron']['gaussian']['cv_ci'])}"
            ),
        ),
        (
            "  isotropic null",
            lambda r: (
                f"{r['pentachoron']['isotropic']['cv']:.3f} "
                f"{_fmt_ci(r['pentachoron']['isotropic']['cv_ci'])}"
            ),
        ),
        (
            "  CV ratio to Gaussian [95% CI]",
            lambda r: (
                f"{r['pentachoron']['ratio_to_gaussian']:.3f} "
                f"{_fmt_ci(r['pentachoron']['ratio_to_gaussian_ci'])}"
            ),
        ),
        ("digits 0-9", lambda r: manifold(r, "digits")),
        ("number words zero-nine", lambda r: manifold(r, "number_words")),
        (
            "category gap within-between (p)",
            lambda r: (
                f"{r['categories']['gap']:.3f} (p={r['categories']['p_gap']:.3g}, null "
                f"{_fmt_ci(r['categories']['null_gap_ci'])})"
                if r["categories"].get("available")
                else "n/a"
            ),
        ),
        (
            "nearest neighbour in same category",
            lambda r: (
                f"{r['categories']['nn_purity']:.2f} (chance "
                f"{r['categories']['nn_purity_chance']:.2f})"
                if r["categories"].get("available")
                else "n/a"
            ),
        ),
        ("distance CV", lambda r: r["distances"]["cv"]),
        ("positions", lambda r: r["positions"]["type"]),
    ]
    for label, fn in spec:
        row: list[Any] = [label]
        for r in results:
            try:
                row.append(fn(r))
            except (KeyError, TypeError):
                row.append(get(r, "missing"))
        rows.append(row)
    return rows


def _model_text(r: dict[str, Any]) -> str:
    s, p, c = r["spectrum"], r["pentachoron"], r["cosine"]
    parts = [
        f"{r['model']} ({r['kind']}): {r['vocab_size']} tokens x {r['dim']} dimensions.",
        f"Mean pairwise cosine over all token pairs {c['mean']:.3f} (spread {c['std']:.3f}; random "
        f"directions would give 0 +/- {c['isotropic_std']:.3f}); after removing the mean embedding "
        "it is "
        f"{c['centered_mean']:.3f}.",
        f"The covariance has participation ratio {s['participation_ratio']:.1f} = "
        f"{s['pr_over_d']:.3f} d "
        f"(95% CI {_fmt_ci(s['pr_over_d_ci'])}); shuffling each column on its own, which keeps the "
        f"per-dimension variances and removes correlations, gives {s['null_pr_over_d']:.3f} d.",
        f"Pentachoron volume CV {p['embeddings']['cv']:.3f} against {p['gaussian']['cv']:.3f} for "
        "a Gaussian "
        f"with the same covariance (ratio {p['ratio_to_gaussian']:.2f}, CI "
        f"{_fmt_ci(p['ratio_to_gaussian_ci'])}).",
    ]
    if not r["layers"].get("available"):
        parts.append(r["layers"].get("note", "No layer statistics."))
    parts.append(f"Positions: {r['positions'].get('note', r['positions']['type'])}.")
    return " ".join(parts)


def add_terrain_sections(rep: Report, results: list[dict[str, Any]], *, prefix: str = "terrain",
                         compact: bool = False, title: str = "Embedding terrain") -> None:
    """Add the terrain sections for ``results`` (one dict per model) to ``rep``."""
    names = [r["model"] for r in results]
    sec = rep.section(
        title if compact else "Overview",
        "Token embedding geometry of " + " and ".join(names) + ". Cosine mean and spread are exact "
        "over all token pairs; PR / d has a block-bootstrap interval; pentachoron CVs have "
        "bootstrap "
        "intervals and two nulls (a Gaussian with the embeddings' mean and covariance, and an "
        "isotropic Gaussian with the same total variance); digit, number-word and category "
        "statistics are tested against label permutations.",
    )
    sec.table("Terrain at a glance", ["measure", *names], _overview_rows(results))
    band_rows = []
    for r in results:
        p, s = r["pentachoron"], r["spectrum"]
        band_rows.append([
            r["model"], r["dim"], p["embeddings"]["cv"], _fmt_ci(p["embeddings"]["cv_ci"]),
            "yes" if p["ci_overlaps_band"] else "no", p["gaussian"]["cv"],
            "yes" if p["gaussian_in_band"] else "no",
            s["pr_over_d"], _fmt_ci(s["pr_over_d_ci"]), "yes" if s["pr_ci_overlaps_band"] else "no",
        ])
    cv_band, pr_band = results[0]["pentachoron"]["band"], results[0]["spectrum"]["pr_band"]
    sec.table(
        f"Published bands: pentachoron CV {cv_band[0]}-{cv_band[1]}, PR / d "
        f"{pr_band[0]}-{pr_band[1]}",
        [
            "model",
            "d",
            "CV",
            "CV 95% CI",
            "CI meets band",
            "Gaussian-null CV",
            "null in band",
            "PR / d",
            "PR / d 95% CI",
            "CI meets band",
        ],
        band_rows,
        note="The CV of a Gaussian simplex shrinks roughly like sqrt(2 / d), so the CV band says "
             "as "
        "much about the dimension as about the embeddings; compare each CV with its own null.",
    )
    for r in results:
        sec.metrics({f"{r['model']}.pr_over_d": r["spectrum"]["pr_over_d"],
                     f"{r['model']}.pentachoron_cv": r["pentachoron"]["embeddings"]["cv"],
                     f"{r['model']}.pentachoron_cv_null": r["pentachoron"]["gaussian"]["cv"],
                     f"{r['model']}.cosine_mean": r["cosine"]["mean"]})
    if compact:
        _side_by_side(sec, results, prefix)
        return
    for r in results:
        _model_sections(rep, r, prefix)
    if len(results) > 1:
        _side_by_side(
            rep.section(
                "Side by side",
                "Both models on shared axes: spectra as fractions of "
                "variance against relative component index, layers against relative depth.",
            ),
            results,
            prefix,
        )


def _model_sections(rep: Report, r: dict[str, Any], prefix: str) -> None:
    """The full sections of one model: its panel and every measurement's table."""
    ms = rep.section(f"Terrain: {r['model']}", _model_text(r))
    ms.plot(
        f"{prefix}_{_safe(r['model'])}_panel.png",
        terrain_panel(r),
        caption="Row 1: norms, cosines, eigenspectrum vs column-shuffled null. Row 2: "
                "pentachoron "
        "volumes vs Gaussian null, number tokens, categories vs permutation null. Row 3: "
        "layers and positions (static models: distances, category centroids, number words).",
    )
    nums = []
    for key in ("digits", "number_words"):
        m = r["numbers"][key]
        if m.get("available"):
            nums.append([key, m["corr_offset_cosine"], _fmt_ci(m["null_corr_ci"]), m["p_corr"],
                         m["adjacency_gap"], _fmt_ci(m["null_gap_ci"]), m["p_gap"]])
        else:
            nums.append([key, None, m["note"], None, None, None, None])
    ms.table(
        "Number manifold: cosine against |i - j|",
        ["tokens", "corr(|i-j|, cos)", "null 95%", "p", "adjacency gap", "null 95%", "p"],
        nums,
    )
    cat = r["categories"]
    if cat.get("available"):
        ms.table(
            "Semantic categories (within-category mean cosine vs label permutations)",
            ["category", "tokens", "within mean", "lift over vocabulary mean", "null 95%", "p"],
            [
                [
                    q["category"],
                    q["n"],
                    q["within_mean"],
                    q["lift"],
                    _fmt_ci(q["null_ci"]),
                    q["p"],
                ]
                for q in cat["per_category"]
            ],
        )
    sp = r["special_tokens"]
    if sp.get("available"):
        ms.table(
            "Special tokens",
            [
                "token",
                "id",
                "norm",
                "norm percentile",
                "mean cos to tokens",
                "max cos to tokens",
            ],
            [
                [
                    t["token"],
                    t["id"],
                    t["norm"],
                    t["norm_percentile"],
                    t["mean_cos_to_tokens"],
                    t["max_cos_to_tokens"],
                ]
                for t in sp["tokens"]
            ],
        )
    _layer_and_position_tables(ms, r)


def _layer_and_position_tables(ms: Any, r: dict[str, Any]) -> None:
    """The layer-by-layer statistics and the position embeddings of one model."""
    lay = r["layers"]
    if lay.get("available"):
        ms.table(
            f"Layer by layer ({lay['n_sequences']} sequences, {lay['source']})",
            [
                "layer",
                "tokens",
                "norm",
                "norm 95% CI",
                "median norm",
                "max / median",
                "cos all tokens",
                "cos within sentence",
                "95% CI",
                "PR/d tokens",
                "PR/d sentences",
            ],
            [
                [
                    q["layer"],
                    q["tokens"],
                    q["norm_mean"],
                    _fmt_ci(q["norm_ci"]),
                    q["norm_median"],
                    q["norm_max_over_median"],
                    q["cos_all"],
                    q["cos_within"],
                    _fmt_ci(q["cos_within_ci"]),
                    q["pr_over_d"],
                    q["pooled_pr_over_d"],
                ]
                for q in lay["layers"]
            ],
        )
    pos = r["positions"]
    if pos["type"] == "absolute":
        ms.table(
            "Learned absolute positions",
            [
                "module",
                "positions",
                "used",
                "Spearman(offset, cos)",
                "cos at offset 1",
                "cos at last offset",
                "PR / d",
            ],
            [
                [
                    pos["module"],
                    pos["positions_total"],
                    pos["positions_used"],
                    pos["spearman_offset_cosine"],
                    pos["cosine_by_offset"][0],
                    pos["cosine_by_offset"][-1],
                    pos["pr_over_d"],
                ]
            ],
        )
    elif pos["type"] == "relative":
        ms.table(
            "Relative attention buckets",
            ["module", "buckets", "heads", "bidirectional", "heads favouring near offsets"],
            [
                [
                    pos["module"],
                    pos["buckets"],
                    pos["heads"],
                    pos["bidirectional"],
                    pos["local_heads"],
                ]
            ],
        )
    elif pos["type"] == "rotary":
        ms.table(
            "Rotary positions (no learned vectors)",
            ["theta", "head dim", "rotary dims", "note"],
            [[pos["theta"], pos["head_dim"], pos["rotary_dims"], pos["note"]]],
        )


def _safe(name: str) -> str:
    """``name`` as a plot file-name part (letters, digits, '.', '_', '-')."""
    out = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
    return out.lstrip("._-") or "model"


def _side_by_side(sec: Any, results: list[dict[str, Any]], prefix: str) -> None:
    subs: list[dict[str, Any]] = []
    series = []
    for r in results:
        ev = r["spectrum"]["eigenvalues"]
        tot = sum(ev) or 1.0
        d = len(ev)
        series.append(
            {"label": r["model"], "x": [(i + 1) / d for i in range(d)], "y": [v / tot for v in ev]}
        )
    subs.append(
        {
            "kind": "line",
            "title": "Eigenspectrum (fraction of variance)",
            "xlabel": "component / d",
            "ylabel": "fraction",
            "yscale": "log",
            "series": series,
        }
    )
    subs.append({"kind": "hist", "title": "Token cosine (sampled pairs)", "xlabel": "cosine",
                 "series": [{"label": r["model"], **r["cosine"]["histogram"]} for r in results]})
    subs.append(
        {
            "kind": "bar",
            "title": "Pentachoron CV vs Gaussian null",
            "ylabel": "CV",
            "categories": [r["model"] for r in results],
            "series": [
                {
                    "label": "embeddings",
                    "values": [r["pentachoron"]["embeddings"]["cv"] for r in results],
                    "lo": [r["pentachoron"]["embeddings"]["cv_ci"][0] for r in results],
                    "hi": [r["pentachoron"]["embeddings"]["cv_ci"][1] for r in results],
                },
                {
                    "label": "Gaussian null",
                    "values": [r["pentachoron"]["gaussian"]["cv"] for r in results],
                    "lo": [r["pentachoron"]["gaussian"]["cv_ci"][0] for r in results],
                    "hi": [r["pentachoron"]["gaussian"]["cv_ci"][1] for r in results],
                },
            ],
        }
    )
    lay_cos, lay_pr = [], []
    for r in results:
        if r["layers"].get("available"):
            rows = r["layers"]["layers"]
            L = max(len(rows) - 1, 1)
            x = [q["layer"] / L for q in rows]
            lay_cos.append({"label": r["model"], "x": x, "y": [q["cos_within"] for q in rows]})
            lay_pr.append({"label": r["model"], "x": x, "y": [q["pr_over_d"] for q in rows]})
    subs.append(
        {
            "kind": "line",
            "title": "Within-sentence token cosine by depth",
            "xlabel": "layer / layers",
            "ylabel": "mean cosine",
            "series": lay_cos,
        }
    )
    subs.append({"kind": "line", "title": "Token-state PR / d by depth", "xlabel": "layer / layers",
                 "ylabel": "PR / d", "series": lay_pr})
    dig = [r for r in results if r["numbers"]["digits"].get("available")]
    subs.append(
        {
            "kind": "line",
            "title": "Digit cosine by |i - j|",
            "xlabel": "|i - j|",
            "ylabel": "mean cosine",
            "series": [
                {
                    "label": r["model"],
                    "x": list(range(1, 10)),
                    "y": r["numbers"]["digits"]["mean_cosine_by_offset"],
                }
                for r in dig
            ],
        }
    )
    names = "_vs_".join(_safe(r["model"]) for r in results)
    sec.plot(
        f"{prefix}_{names}_side_by_side.png",
        {"kind": "panel", "title": "Terrain side by side", "rows": 2, "cols": 3, "subplots": subs},
    )


def _subject(name: str, device: Any) -> TerrainSubject:
    from .. import models as hmodels

    return TerrainSubject.from_handle(hmodels.load(name, device=device))


def run(config: TerrainRunConfig, ctx: RunContext | None = None) -> Report:
    """Run the terrain battery on each of ``config.models`` and write the report."""
    ctx = ctx or RunContext()
    dev = ctx.torch_device
    battery = TerrainConfig(**{o.name: getattr(config, o.name) for o in TerrainConfig.options()})
    text_list, text_source = _load_texts(config.texts, config.n_texts, config.data_dir,
                                         ctx.seed, config.read_options())
    names = " and ".join(config.models)
    rep = start_report("terrain", config, ctx,
                       description=f"Embedding terrain of {names}; layer statistics over "
                                   f"{text_source}.")
    results = []
    for name in config.models:
        with rep.timer(f"load:{name}"):
            subject = _subject(name, dev)
        res = run_terrain(subject, battery, seed=ctx.seed, texts=text_list, device=dev,
                          layers=config.layers)
        _move_timings(rep, res, name)
        res["model"] = name
        results.append(res)
        del subject
    add_terrain_sections(rep, results)
    rep.data["terrain"] = {r["model"]: r for r in results}
    rep.summary([[f"{r['model']}: PR/d, pentachoron CV (null)",
                  f"{r['spectrum']['pr_over_d']:.3f}, {r['pentachoron']['embeddings']['cv']:.3f} "
                  f"({r['pentachoron']['gaussian']['cv']:.3f})"] for r in results])
    rep.save()
    return rep


def _move_timings(rep: Report, res: dict[str, Any], name: str) -> None:
    """The battery's per-part wall and CPU seconds go to the report's timings only."""
    for part, seconds in res.pop("timings", {}).items():
        rep.timings[f"terrain:{name}:{part}"] = seconds
    for part, seconds in res.pop("cpu_seconds", {}).items():
        rep.timings[f"terrain:{name}:{part}:cpu"] = seconds


#: Sample sizes for the tour: about half the default work, same estimators.
TOUR_CONFIG: dict[str, Any] = dict(
    cosine_sample=1500,
    distance_sample=1000,
    n_simplices=1000,
    n_permutations=500,
    n_boot=300,
    spectrum_bootstrap=50,
    spectrum_blocks=32,
)


def tour_section(report: Report, *, models: Sequence[str] = ("minilm", "smollm2"), seed: int = 0,
                 device: str = "cpu") -> None:
    """Add a compact "Embedding terrain" section for ``models`` to ``report``.

    Uses smaller samples (``TOUR_CONFIG``) and 24 built-in sentences for the layer
    statistics; the full numbers are kept in ``report.data["terrain"]``.
    """
    from ..utils import resolve_device

    dev = resolve_device(device)
    cfg = TerrainConfig(**TOUR_CONFIG)
    results = []
    for name in models:
        with report.timer(f"terrain:{name}"):
            subject = _subject(name, dev)
            res = run_terrain(
                subject, cfg, seed=seed, texts=list(wordlists.TERRAIN_SENTENCES[::2]),
                device=dev
            )
            _move_timings(report, res, name)
            res["model"] = name
            results.append(res)
    add_terrain_sections(report, results, prefix="tour_terrain", compact=True)
    report.data["terrain"] = {r["model"]: r for r in results}


COMMANDS = (
    Command("terrain", "token-embedding, layer and position geometry of a model (two side by "
            "side with --models A B)", TerrainRunConfig, run, description=__doc__ or ""),
)
