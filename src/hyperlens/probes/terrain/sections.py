"""How a terrain result reads in a report: overview tables, per-model sections, side by side.

:func:`add_terrain_sections` lays out the results of :func:`run_terrain` (one dict per model,
each with its ``"model"`` name) as report sections: the band checks against their nulls, a
3 x 3 plot panel and the tables of every measurement per model, and, for two models, a
side-by-side section. ``hyperlens terrain`` and the tour both use it, so the two show a
model's terrain the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...report import Report
from .plots import terrain_panel

__all__ = ["add_terrain_sections"]


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
