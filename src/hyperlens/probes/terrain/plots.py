"""The 3 x 3 plot panel of one terrain result."""

from __future__ import annotations

from typing import Any


# --------------------------------------------------------------------------- plots
def _line(
    title: str, xlabel: str, ylabel: str, series: list[dict[str, Any]], **kw: Any
) -> dict[str, Any]:
    return {
        "kind": "line",
        "title": title,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "series": series,
        **kw,
    }


def _wrap(text: str, width: int = 44) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width))


def _category_plots(cat: dict[str, Any], vocab_mean: float) -> list[dict[str, Any]]:
    """Within-category cosine against its permutation null (a note when unavailable)."""
    out: list[dict[str, Any]] = []
    if cat.get("available"):
        pc = cat["per_category"]
        out.append(
            {
                "kind": "bar",
                "title": f"Within-category cosine (gap {cat['gap']:.3f}, p={cat['p_gap']:.3g})",
                "ylabel": "mean cosine",
                "categories": [r["category"] for r in pc],
                "series": [
                    {"label": "within", "values": [r["within_mean"] for r in pc]},
                    {
                        "label": "permutation null",
                        "values": [r["null_mean"] for r in pc],
                        "lo": [r["null_ci"][0] for r in pc],
                        "hi": [r["null_ci"][1] for r in pc],
                    },
                ],
                "hlines": [{"y": vocab_mean, "label": "vocabulary mean"}],
            }
        )
    else:
        out.append(
            {
                "kind": "text",
                "title": "Semantic categories",
                "text": _wrap(cat.get("note", "not available")),
            }
        )
    return out


def _depth_plots(result: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Row 3, first two: norms and cosines by layer (distances, centroids for static models)."""
    out: list[dict[str, Any]] = []
    lay, cat = result["layers"], result["categories"]
    if lay.get("available"):
        rows = lay["layers"]
        x = [r["layer"] for r in rows]
        out.append(
            _line(
                "Hidden-state norm by layer",
                "layer",
                "token norm",
                [
                    {
                        "label": "mean",
                        "x": x,
                        "y": [r["norm_mean"] for r in rows],
                        "lo": [r["norm_ci"][0] for r in rows],
                        "hi": [r["norm_ci"][1] for r in rows],
                    },
                    {"label": "median", "x": x, "y": [r["norm_median"] for r in rows]},
                ],
                yscale="log",
            )
        )
        out.append(
            _line(
                "Cosine and PR/d by layer",
                "layer",
                "value",
                [
                    {"label": "cos (all tokens)", "x": x, "y": [r["cos_all"] for r in rows]},
                    {
                        "label": "cos (within sentence)",
                        "x": x,
                        "y": [r["cos_within"] for r in rows],
                        "lo": [r["cos_within_ci"][0] for r in rows],
                        "hi": [r["cos_within_ci"][1] for r in rows],
                    },
                    {"label": "PR/d tokens", "x": x, "y": [r["pr_over_d"] for r in rows]},
                    {"label": "PR/d sentences", "x": x, "y": [r["pooled_pr_over_d"] for r in rows]},
                ],
            )
        )
    else:
        d = result["distances"]
        out.append(
            {
                "kind": "hist",
                "title": f"Euclidean distances (CV {d['cv']:.3f})",
                "xlabel": "distance",
                "series": [{"label": name, **d["histogram"]}],
            }
        )
        if cat.get("available"):
            out.append(
                {
                    "kind": "heatmap",
                    "title": "Category centroid cosine",
                    "matrix": cat["centroid_cosine"],
                    "xticklabels": cat["categories"],
                    "yticklabels": cat["categories"],
                    "cmap": "viridis",
                }
            )
        else:
            out.append(
                {"kind": "text", "title": "Layers", "text": _wrap(lay.get("note", "no layers"))}
            )
    return out


def _position_plots(
    result: dict[str, Any], man: dict[str, Any], num: dict[str, Any]
) -> list[dict[str, Any]]:
    """Row 3, last: the position structure (number words or a note when there is none)."""
    out: list[dict[str, Any]] = []
    pos = result["positions"]
    if pos["type"] == "absolute":
        out.append(
            _line(
                f"Position cosine vs offset (rho={pos['spearman_offset_cosine']:.2f})",
                "offset |i-j|",
                "mean cosine",
                [
                    {
                        "label": pos["module"],
                        "x": list(range(1, len(pos["cosine_by_offset"]) + 1)),
                        "y": pos["cosine_by_offset"],
                    }
                ],
            )
        )
    elif pos["type"] == "relative":
        out.append({"kind": "heatmap", "title": "Relative attention bias (heads x buckets)",
                     "matrix": pos["bias"], "xlabel": "bucket", "ylabel": "head",
                     "xticklabels": [str(i) for i in range(pos["buckets"])],
                     "yticklabels": [str(i) for i in range(pos["heads"])], "cmap": "RdBu_r"})
    elif pos["type"] == "rotary":
        out.append(
            _line(
                f"RoPE (analytic, theta={pos['theta']:.0f})",
                "offset",
                "mean cos(offset*theta_k)",
                [
                    {
                        "label": "formula, not weights",
                        "x": pos["offsets"],
                        "y": pos["analytic_similarity"],
                    }
                ],
            )
        )
    elif num.get("available") and man is not num:
        out.append(
            {
                "kind": "heatmap",
                "title": f"Number-word cosine (|i-j| r={num['corr_offset_cosine']:.2f})",
                "matrix": num["cosine"],
                "xticklabels": num["tokens"],
                "yticklabels": num["tokens"],
                "cmap": "viridis",
            }
        )
    else:
        out.append({"kind": "text", "title": "Positions", "text": _wrap(pos.get("note", "none"))})
    return out


def terrain_panel(result: dict[str, Any]) -> dict[str, Any]:
    """The 3 x 3 plot panel spec of one terrain result (every number comes from ``result``).

    Row 1: norm histogram, cosine histogram, eigenspectrum against the column-shuffled null.
    Row 2: pentachoron volumes against the Gaussian null, digit cosine heatmap, category
    lifts with their null intervals. Row 3: layer norm, layer cosine and PR / d, position
    structure; static models show distances, category centroids and number words there.
    """
    name = result["model"]
    subs: list[dict[str, Any]] = []
    n = result["norms"]
    subs.append({"kind": "hist", "title": "Token embedding norms", "xlabel": "L2 norm",
                 "series": [{"label": name, **n["histogram"]}],
                 "vlines": [{"x": n["mean"], "label": f"mean {n['mean']:.3g}"}]})
    c = result["cosine"]
    subs.append({"kind": "hist", "title": "Pairwise cosine (sampled)", "xlabel": "cosine",
                 "series": [{"label": name, **c["histogram"]}],
                 "vlines": [{"x": c["mean"], "label": f"mean {c['mean']:.3f}"},
                            {"x": c["isotropic_std"], "label": "1/sqrt(d)"}]})
    s = result["spectrum"]
    k = min(len(s["eigenvalues"]), 256)
    subs.append(
        _line(
            f"Eigenspectrum (PR/d {s['pr_over_d']:.3f})",
            "component",
            "variance",
            [
                {"label": "embeddings", "x": list(range(1, k + 1)), "y": s["eigenvalues"][:k]},
                {
                    "label": "column-shuffled null",
                    "x": list(range(1, k + 1)),
                    "y": s["null_eigenvalues"][:k],
                },
            ],
            yscale="log",
        )
    )
    p = result["pentachoron"]
    subs.append(
        {
            "kind": "hist",
            "title": f"Pentachoron volume (CV {p['embeddings']['cv']:.3f} vs "
                     f"{p['gaussian']['cv']:.3f})",
            "xlabel": "volume",
            "series": [
                {"label": "embeddings", **p["histogram_embeddings"]},
                {"label": "Gaussian null", **p["histogram_gaussian"]},
            ],
        }
    )
    dig = result["numbers"]["digits"]
    num = result["numbers"]["number_words"]
    man = dig if dig.get("available") else num
    if man.get("available"):
        subs.append(
            {
                "kind": "heatmap",
                "title": f"{'Digit' if man is dig else 'Number word'} cosine (|i-j| "
                         f"r={man['corr_offset_cosine']:.2f})",
                "matrix": man["cosine"],
                "xticklabels": man["tokens"],
                "yticklabels": man["tokens"],
                "cmap": "viridis",
            }
        )
    else:
        subs.append(
            {
                "kind": "text",
                "title": "Number tokens",
                "text": _wrap(dig.get("note", "not available")),
            }
        )
    subs += _category_plots(result["categories"], c["mean"])
    subs += _depth_plots(result, name)
    subs += _position_plots(result, man, num)
    return {
        "kind": "panel",
        "title": f"Embedding terrain: {name} (vocab {result['vocab_size']}, d {result['dim']})",
        "rows": 3,
        "cols": 3,
        "subplots": subs,
    }
