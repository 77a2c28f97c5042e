"""How a weight-battery result reads in a report: a 3 x 3 panel, per-role tables, comparison.

:func:`add_model_sections` lays out one result of :func:`hyperlens.probes.weights.weight_battery`
(overview, spectra, sparsity, QK geometry, MLP neurons, cross-layer similarity, norm scales,
position bias and every matrix's row); :func:`add_comparison` puts two models side by side
with role-only labels, so an encoder and a decoder line up; :func:`summary_rows` gives the
headline rows. ``hyperlens weights`` and the tour both use them.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

import numpy as np

from ..report import Report

__all__ = ["panel_spec", "add_model_sections", "add_comparison", "summary_rows"]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "model"


def _fmt_layer(layer: Any) -> str:
    return "-" if layer is None else str(layer)


_ROLE_ORDER = ("q", "k", "v", "o", "mlp_up", "mlp_gate", "mlp_down")


def _main_groups(rows: list[dict[str, Any]], limit: int = 6) -> set[str]:
    """The few role groups worth a line in a crowded panel: self-attention Q/K/V/O and the MLP
    of the first stack, then the rest, up to ``limit``."""
    groups = {
        (r["group"], r["location"], r["attention"], r["role"])
        for r in rows
        if r["layer"] is not None
    }
    locs = sorted({g[1] for g in groups})

    def prio(g: tuple[str, str, Any, str]) -> tuple[int, int, int]:
        role = _ROLE_ORDER.index(g[3]) if g[3] in _ROLE_ORDER else 99
        return (locs.index(g[1]), 0 if g[2] in (None, "self") else 1, role)

    ranked = sorted(groups, key=prio)
    wanted = [g for g in ranked if g[3] in {"q", "k", "v", "mlp_up", "mlp_gate", "mlp_down"}]
    return {g[0] for g in (wanted or ranked)[:limit]}


def _series_by_layer(
    rows: list[dict[str, Any]], key: str, transform: Any = None
) -> list[dict[str, Any]]:
    keep = _main_groups(rows)
    by: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        if r["layer"] is None or r["group"] not in keep:
            continue
        v = r[key]
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        by[r["group"]].append((r["layer"], transform(v) if transform else v))
    out = []
    for g in sorted(by):
        pts = sorted(by[g])
        out.append({"label": g, "x": [p[0] for p in pts], "y": [p[1] for p in pts]})
    return out


def _spectrum_plot(res: dict[str, Any]) -> dict[str, Any]:
    """Median normalised singular values per role group (the panel's first plot)."""
    mats = res["matrices"]
    spec_series = []
    by_group: dict[str, list[str]] = defaultdict(list)
    for r in mats:
        by_group[r["group"]].append(r["key"])
    keep = _main_groups(mats) | {g for g in by_group if g.endswith((".embedding", ".unembedding"))}
    for g in sorted(by_group):
        if g not in keep:
            continue
        ys = [res["spectra"][k]["y"] for k in by_group[g]]
        if len({len(y) for y in ys}) != 1:
            continue
        med = np.median(np.array(ys), axis=0)
        spec_series.append(
            {"label": g, "x": res["spectra"][by_group[g][0]]["x"], "y": med.tolist()}
        )
    return {"kind": "line", "title": "Normalised singular values (median per role)",
            "xlabel": "index / rank", "ylabel": "σ / σ₁", "yscale": "log", "series": spec_series}


def _cross_layer_plot(cross: dict[str, Any]) -> dict[str, Any]:
    """Cross-layer cosine heatmap of the first query role (a text when there is none)."""
    ck = next((k for k in sorted(cross) if k.endswith(".q")), next(iter(sorted(cross)), None))
    if ck is not None:
        return {
            "kind": "heatmap",
            "title": f"Cross-layer cosine ({ck})",
            "matrix": cross[ck]["matrix"],
            "xticklabels": cross[ck]["labels"],
            "yticklabels": cross[ck]["labels"],
            "cmap": "RdBu_r",
            "vmin": -0.2,
            "vmax": 0.2,
            "annotate": False,
        }
    return {"kind": "text", "title": "Cross-layer cosine",
            "text": "fewer than two matrices per role"}


def panel_spec(res: dict[str, Any]) -> dict[str, Any]:
    """The 3 x 3 battery panel for one model's results (a report ``panel`` spec)."""
    name = res["model"]
    mats = res["matrices"]
    p1 = _spectrum_plot(res)
    p2 = {
        "kind": "line",
        "title": "Stable rank by layer",
        "xlabel": "layer",
        "ylabel": "stable rank",
        "series": _series_by_layer(mats, "stable_rank"),
    }
    lh = res["log_abs_hist"]
    p3 = {"kind": "hist", "title": "log10 |w| (every 4th parameter)", "xlabel": "log10 |w|",
          "series": [{"label": name, "edges": lh["edges"], "counts": lh["counts"]}],
          "vlines": [{"x": -2.0, "label": "0.01"}]}
    qk_series = []
    by_att: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in res["qk"]["layers"]:
        by_att[f"{r['location']}.{r['attention']}"].append((r["layer"], r["pos_mass_mean"]))
    for k in sorted(by_att):
        pts = sorted(by_att[k])
        qk_series.append({"label": k, "x": [p[0] for p in pts], "y": [p[1] for p in pts]})
    p4 = {
        "kind": "line",
        "title": "QK: positive eigenvalue mass (mean over heads)",
        "xlabel": "layer",
        "ylabel": "Σλ⁺ / Σ|λ|",
        "series": qk_series,
        "hlines": [{"y": 0.5, "label": "balanced"}],
    }
    mh = res["mlp"]["hist"]
    p5 = {
        "kind": "hist",
        "title": f"MLP neuron importance / layer mean ({res['mlp']['dead']} dead, "
        f"{res['mlp']['weak']} weak of {res['mlp']['total_neurons']})",
        "xlabel": "importance / layer mean",
        "xscale": "log",
        "density": False,
        "series": [
            {"label": name, "edges": [max(e, 1e-4) for e in mh["edges"]], "counts": mh["counts"]}
        ],
        "vlines": [{"x": 0.01, "label": "dead < 1 %"}, {"x": 0.1, "label": "weak < 10 %"}],
    }
    p6 = _cross_layer_plot(res["cross_layer"])
    norm_by: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for r in res["norms"]:
        if r["param"] == "weight" and r["layer"] is not None:
            norm_by[f"{r['location']}.{r['kind']}"].append((r["layer"], r["mean"], r["std"]))
    p7 = {
        "kind": "line",
        "title": "Norm scales (mean ± std)",
        "xlabel": "layer",
        "ylabel": "scale",
        "series": [
            {
                "label": k,
                "x": [p[0] for p in sorted(v)],
                "y": [p[1] for p in sorted(v)],
                "lo": [p[1] - p[2] for p in sorted(v)],
                "hi": [p[1] + p[2] for p in sorted(v)],
            }
            for k, v in sorted(norm_by.items())
        ],
        "hlines": [{"y": 1.0, "label": "1"}],
    }
    if res["position_bias"]:
        pb = sorted(res["position_bias"], key=lambda p: (p["location"] != "encoder", p["name"]))[0]
        p8 = {
            "kind": "heatmap",
            "title": f"Relative position bias ({pb['location']}, heads x buckets)",
            "matrix": np.array(pb["bias"]).T.tolist(),
            "xticklabels": list(range(pb["num_buckets"])),
            "yticklabels": [f"h{h}" for h in range(pb["num_heads"])],
            "cmap": "RdBu_r",
            "xlabel": "bucket",
            "annotate": False,
        }
    else:
        p8 = {"kind": "line", "title": "Power-law exponent α of the ESD tail", "xlabel": "layer",
              "ylabel": "α", "series": _series_by_layer(mats, "alpha"),
              "hlines": [{"y": 2.0, "label": "α = 2"}, {"y": 6.0, "label": "α = 6"}]}
    p9 = {"kind": "line", "title": "log10 condition number by layer", "xlabel": "layer",
          "ylabel": "log10 σ₁/σ_min", "series": _series_by_layer(mats, "condition", math.log10)}
    return {"kind": "panel", "title": f"Weight topology: {name}", "rows": 3, "cols": 3,
            "subplots": [p1, p2, p3, p4, p5, p6, p7, p8, p9]}


def add_model_sections(rep: Report, res: dict[str, Any], tag: str) -> None:
    """Every section of one model's battery, in reading order."""
    name, slug = res["model"], _slug(tag)
    for add in (_overview_section, _spectra_section, _sparsity_section, _qk_section,
                _mlp_section, _cross_layer_section, _norms_section, _position_section,
                _matrices_section):
        add(rep, res, name, slug)


def _overview_section(rep: Report, res: dict[str, Any], name: str, slug: str) -> None:
    """The model, its roles and the 3 x 3 panel."""
    sec = rep.section(
        f"{name}: overview",
        "Every tensor was classified from its name and config.json, then read one role "
        "group at a time from the safetensors file(s); no model was built and no data "
        "was run.",
    )
    tied = res["tied_embeddings"]
    sec.table("Model", ["field", "value"], [
        ["architecture", res["architecture"]], ["path", res["path"]],
        ["file size (MiB)", res["file_bytes"] / 2**20], ["parameters", res["n_parameters"]],
        ["tensors", res["n_tensors"]], ["matrices analysed", res["n_matrices"]],
        ["unclassified tensors", ", ".join(res["unclassified"]) or "none"],
        ["tied embeddings", f"{tied.get('tied')} ({tied.get('evidence')})"],
        ["attention", res["attention"]], ["precision", res["precision"]], ["device", res["device"]],
    ])
    counts: dict[tuple[Any, ...], int] = defaultdict(int)
    for r in res["roles"]:
        counts[(r["location"], r["attention"] or "-", r["role"], r["param"])] += 1
    sec.table("Roles", ["location", "attention", "role", "param", "tensors"],
              [[*k, v] for k, v in sorted(counts.items())])
    sec.plot(
        f"weights_panel_{slug}.png",
        panel_spec(res),
        caption="Top: spectra, stable rank, magnitude distribution. Middle: QK eigenvalue balance, "
        "MLP neuron importance, cross-layer cosine. Bottom: norm scales, position bias "
        "(or power-law α), condition number.",
    )


def _spectra_section(rep: Report, res: dict[str, Any], name: str, slug: str) -> None:
    """Singular-value statistics per role."""
    sec = rep.section(
        f"{name}: spectra per role",
        "Singular values of every matrix from the eigenvalues of its smaller Gram matrix. "
        "Stable rank = Σσ²/σ₁²; PR = (Σσ)²/Σσ²; active = share of σ above 1 % of σ₁; "
        "rank90 = fewest σ holding 90 % of Σσ²; α = power-law exponent of the tail of the "
        "eigenvalue density of WᵀW/m (MLE, xmin by least KS distance); 'KS ok' = share of "
        "fits the KS test does not reject at 5 %. Condition numbers are only reported "
        "where the precision resolves σ_min ('resolved').",
    )
    sec.table(
        "Per role",
        [
            "role",
            "n",
            "shape",
            "stable rank",
            "± std",
            "PR",
            "active",
            "rank90",
            "median log10 cond",
            "resolved",
            "median α",
            "α IQR",
            "KS ok",
        ],
        [
            [
                g["group"],
                g["n"],
                " ".join(g["shapes"]),
                g["stable_rank_mean"],
                g["stable_rank_std"],
                g["participation_ratio_mean"],
                g["active_fraction_mean"],
                g["rank90_mean"],
                g["log10_condition_median"],
                g["condition_resolved"],
                g["alpha_median"],
                f"{g['alpha_iqr'][0]:.2f}-{g['alpha_iqr'][1]:.2f}",
                g["ks_ok_fraction"],
            ]
            for g in res["groups"]
        ],
    )
    sec.metrics(
        {f"{slug}.{g['group']}.stable_rank_mean": g["stable_rank_mean"] for g in res["groups"]}
    )


def _sparsity_section(rep: Report, res: dict[str, Any], name: str, slug: str) -> None:
    """Share of small entries per role."""
    sec = rep.section(
        f"{name}: sparsity",
        "Share of entries with |w| below each threshold, per role (vectors: norms and biases "
        "included) and over all parameters.",
    )
    thr = res["thresholds"]
    sec.table("Share of |w| < t", ["role", "entries", *[f"< {t:g}" for t in thr]],
              [[k, v["total"], *v["fractions"]] for k, v in res["sparsity"].items()])


def _qk_section(rep: Report, res: dict[str, Any], name: str, slug: str) -> None:
    """QK similarity forms per layer and head."""
    qk = res["qk"]
    sec = rep.section(
        f"{name}: QK geometry per layer and head",
        "For every head, M = W_Q[h]ᵀ W_K[g(h)] (grouped-query heads share their key head). "
        + qk.get("note", ""),
    )
    sec.table(
        "Per layer (mean over heads)",
        [
            "location",
            "attention",
            "layer",
            "heads",
            "kv heads",
            "stable rank",
            "PR",
            "symmetry dev",
            "pos mass",
            "min",
            "max",
            "pos count share",
        ],
        [
            [
                r["location"],
                r["attention"],
                r["layer"],
                r["heads"],
                r["kv_heads"],
                r["stable_rank_mean"],
                r["participation_ratio_mean"],
                r["symmetry_deviation_mean"],
                r["pos_mass_mean"],
                r["pos_mass_min"],
                r["pos_mass_max"],
                r["pos_fraction_mean"],
            ]
            for r in qk["layers"]
        ],
    )
    by_att: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for h in qk["heads"]:
        by_att[f"{h['location']}.{h['attention']}"][h["layer"]][h["head"]] = h["pos_mass"]
    for i, (att, layers) in enumerate(sorted(by_att.items())):
        ls = sorted(layers)
        nh = max(max(v) for v in layers.values()) + 1
        sec.plot(f"weights_qk_{slug}_{i}.png", {
            "kind": "heatmap", "title": f"{name} {att}: positive eigenvalue mass per head",
            "matrix": [[layers[l_].get(h) for h in range(nh)] for l_ in ls],
            "xticklabels": [f"h{h}" for h in range(nh)], "yticklabels": [f"L{l_}" for l_ in ls],
            "xlabel": "head", "ylabel": "layer", "cmap": "RdBu_r", "vmin": 0.0, "vmax": 1.0,
            "annotate": False})


def _mlp_section(rep: Report, res: dict[str, Any], name: str, slug: str) -> None:
    """MLP neuron importance."""
    mlp = res["mlp"]
    sec = rep.section(
        f"{name}: MLP neurons",
        "Importance of hidden neuron i = ‖row i of W_up‖ · ‖column i of W_down‖ "
        "(· ‖row i of W_gate‖ for gated MLPs). Dead: below 1 % of the layer mean; weak: "
        "below 10 %.",
    )
    sec.table(
        "Per layer",
        ["location", "layer", "d_ff", "gated", "dead", "weak", "importance CV", "max / mean"],
        [
            [
                r["location"],
                r["layer"],
                r["d_ff"],
                r["gated"],
                r["dead"],
                r["weak"],
                r["importance_cv"],
                r["max_over_mean"],
            ]
            for r in mlp["layers"]
        ],
    )
    sec.metrics({f"{slug}.mlp_dead": mlp["dead"], f"{slug}.mlp_weak": mlp["weak"],
                 f"{slug}.mlp_neurons": mlp["total_neurons"]})


def _cross_layer_section(rep: Report, res: dict[str, Any], name: str, slug: str) -> None:
    """Cosine between layers of one role."""
    sec = rep.section(
        f"{name}: cross-layer similarity",
        "Cosine similarity between the flattened matrices of the same role in different "
        "layers (0: unrelated; random matrices of this size give |cos| ~ 1/sqrt(entries)).",
    )
    sec.table(
        "Per role",
        [
            "role",
            "layers",
            "adjacent mean",
            "adjacent min",
            "adjacent max",
            "off-diagonal mean",
            "max |off-diagonal|",
        ],
        [
            [
                k,
                len(v["labels"]),
                v["adjacent_mean"],
                v["adjacent_min"],
                v["adjacent_max"],
                v["offdiag_mean"],
                v["offdiag_abs_max"],
            ]
            for k, v in sorted(res["cross_layer"].items())
        ],
    )


def _norms_section(rep: Report, res: dict[str, Any], name: str, slug: str) -> None:
    """Learned norm scales and shifts."""
    sec = rep.section(
        f"{name}: norm layers", "Learned scales (weights) and shifts (biases) of every norm layer."
    )
    sec.table(
        "Norm vectors",
        ["name", "param", "layer", "mean", "std", "min", "max", "> 1.5", "< 0.5", "0.8-1.2"],
        [
            [
                r["name"],
                r["param"],
                _fmt_layer(r["layer"]),
                r["mean"],
                r["std"],
                r["min"],
                r["max"],
                r["frac_above_1_5"],
                r["frac_below_0_5"],
                r["frac_near_one"],
            ]
            for r in res["norms"]
        ],
    )


def _position_section(rep: Report, res: dict[str, Any], name: str, slug: str) -> None:
    """Relative position bias (models that have one)."""
    if res["position_bias"]:
        sec = rep.section(
            f"{name}: relative position bias",
            "Per head, buckets ordered by distance on each side. Monotonicity: share of "
            "steps to a farther bucket where the bias does not rise; distance corr: "
            "Spearman correlation of bias with distance (negative = prefers near tokens); "
            "kind: where the largest bias sits (3 nearest buckets: local, 3 farthest: global).",
        )
        rows = []
        for pb in res["position_bias"]:
            for h in pb["heads"]:
                rows.append([pb["name"], h["head"], h["min"], h["max"], h["monotonicity"],
                             h["distance_corr"], h.get("kind", "-"), h.get("peak_side", "-"),
                             h.get("peak_distance", float("nan"))])
        sec.table(
            "Per head",
            [
                "tensor",
                "head",
                "min",
                "max",
                "monotonicity",
                "distance corr",
                "kind",
                "peak side",
                "peak distance",
            ],
            rows,
        )


def _matrices_section(rep: Report, res: dict[str, Any], name: str, slug: str) -> None:
    """One row per analysed matrix."""
    sec = rep.section(
        f"{name}: every matrix", "One row per analysed matrix (fused tensors are split)."
    )
    sec.table(
        "Matrices",
        [
            "key",
            "layer",
            "shape",
            "stable rank",
            "PR",
            "active",
            "rank90",
            "cond",
            "α",
            "xmin",
            "KS",
            "tail n",
            "KS ok",
        ],
        [
            [
                r["key"],
                _fmt_layer(r["layer"]),
                "x".join(map(str, r["shape"])),
                r["stable_rank"],
                r["participation_ratio"],
                r["active_fraction"],
                r["rank90"],
                r["condition"],
                r["alpha"],
                r["xmin"],
                r["ks"],
                r["n_tail"],
                r["ks_ok"],
            ]
            for r in res["matrices"]
        ],
    )


def add_comparison(rep: Report, a: dict[str, Any], b: dict[str, Any]) -> None:
    sec = rep.section(
        "Side by side",
        f"{a['model']} and {b['model']} per role (roles named by location, attention kind "
        "and role, so the same label means the same job in both).",
    )
    ga = {g["group"]: g for g in a["groups"]}
    gb = {g["group"]: g for g in b["groups"]}
    roles = sorted(set(ga) | set(gb))
    nan = float("nan")

    def val(d: dict[str, Any], g: str, k: str) -> float:
        return d[g][k] if g in d else nan

    sec.table("Per role", ["role", f"SR {a['model']}", f"SR {b['model']}", f"PR {a['model']}",
                           f"PR {b['model']}", f"α {a['model']}", f"α {b['model']}"],
              [[g, val(ga, g, "stable_rank_mean"), val(gb, g, "stable_rank_mean"),
                val(ga, g, "participation_ratio_mean"), val(gb, g, "participation_ratio_mean"),
                val(ga, g, "alpha_median"), val(gb, g, "alpha_median")] for g in roles])
    # role-only labels (drop location) so encoder and decoder models line up
    def by_role(res: dict[str, Any], key: str) -> dict[str, float]:
        acc: dict[str, list[float]] = defaultdict(list)
        for r in res["matrices"]:
            v = r[key]
            if v is not None and math.isfinite(v):
                acc[r["role"]].append(v)
        return {k: float(np.median(v)) for k, v in acc.items()}

    for key, title in [
        ("stable_rank", "Median stable rank per role"),
        ("alpha", "Median power-law α per role"),
        ("active_fraction", "Median active fraction per role"),
    ]:
        ra, rb = by_role(a, key), by_role(b, key)
        cats = sorted(set(ra) | set(rb))
        sec.plot(f"weights_vs_{key}.png", {
            "kind": "bar", "title": title, "ylabel": key, "categories": cats,
            "series": [{"label": a["model"], "values": [ra.get(c, nan) for c in cats]},
                       {"label": b["model"], "values": [rb.get(c, nan) for c in cats]}]})
    sa, sb = a["sparsity"]["all"]["fractions"], b["sparsity"]["all"]["fractions"]
    sec.table("Sparsity, all parameters", ["threshold", a["model"], b["model"]],
              [[f"< {t:g}", x, y] for t, x, y in zip(a["thresholds"], sa, sb, strict=True)])
    sec.table(
        "Other",
        ["measure", a["model"], b["model"]],
        [
            [
                "MLP dead / weak / neurons",
                f"{a['mlp']['dead']} / {a['mlp']['weak']} / {a['mlp']['total_neurons']}",
                f"{b['mlp']['dead']} / {b['mlp']['weak']} / {b['mlp']['total_neurons']}",
            ],
            ["tied embeddings", a["tied_embeddings"].get("tied"), b["tied_embeddings"].get("tied")],
            ["matrices", a["n_matrices"], b["n_matrices"]],
        ],
    )


def summary_rows(res: dict[str, Any]) -> list[list[Any]]:
    sr = {g["group"]: g["stable_rank_mean"] for g in res["groups"]}
    rows = [
        [f"{res['model']}: matrices", str(res["n_matrices"])],
        [f"{res['model']}: MLP dead / weak",
         f"{res['mlp']['dead']} / {res['mlp']['weak']} of {res['mlp']['total_neurons']}"],
    ]
    q = [v for k, v in sr.items() if k.endswith(".q")]
    if q:
        rows.append([f"{res['model']}: mean stable rank of Q", f"{np.mean(q):.2f}"])
    rows.append([f"{res['model']}: unclassified tensors", str(len(res["unclassified"]))])
    return rows
