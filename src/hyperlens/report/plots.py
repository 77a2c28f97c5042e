"""Render plot *specs* (plain JSON dictionaries) to PNG files with matplotlib.

A report never stores a figure without its numbers: experiments put a spec into
``results.json`` and this module draws it. ``hyperlens report DIR`` re-renders every
plot from the JSON alone. Supported kinds (keys in ``docs/architecture.md``):
``line``, ``bar``, ``heatmap``, ``hist``, ``scatter`` and ``panel`` (a grid of the others).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReportError
from ..utils import atomic_path

__all__ = ["render", "render_to_axes", "histogram", "PLOT_KINDS"]

Spec = dict[str, Any]


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def histogram(values: Sequence[float] | np.ndarray, bins: int | Sequence[float] = 50,
              range: tuple[float, float] | None = None) -> dict[str, list[float]]:
    """Pre-bin ``values`` for a ``hist`` series: ``{"edges": [...], "counts": [...]}``."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    counts, edges = np.histogram(arr, bins=bins, range=range)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _vals(seq: Any) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in seq], dtype=np.float64)


def _common(ax: Any, spec: Spec) -> None:
    if spec.get("title"):
        ax.set_title(spec["title"], fontsize=10)
    if spec.get("xlabel"):
        ax.set_xlabel(spec["xlabel"])
    if spec.get("ylabel"):
        ax.set_ylabel(spec["ylabel"])
    if spec.get("xscale"):
        ax.set_xscale(spec["xscale"])
    if spec.get("yscale"):
        ax.set_yscale(spec["yscale"])
    for i, h in enumerate(spec.get("hlines", []) or []):
        ax.axhline(
            h["y"], color=h.get("color", f"C{7 + i % 3}"), ls="--", lw=1, label=h.get("label")
        )
    for i, v in enumerate(spec.get("vlines", []) or []):
        ax.axvline(
            v["x"], color=v.get("color", f"C{7 + i % 3}"), ls="--", lw=1, label=v.get("label")
        )
    if spec.get("ylim"):
        ax.set_ylim(*spec["ylim"])
    if spec.get("xlim"):
        ax.set_xlim(*spec["xlim"])


def _legend(ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if any(lbl and not lbl.startswith("_") for lbl in labels):
        ax.legend(fontsize=8, framealpha=0.8)


#: line styles of series 1-10, 11-20, ...: the colour cycle has ten colours
_STYLES = ("-", "--", ":", "-.")


def _line(ax: Any, spec: Spec) -> None:
    for i, s in enumerate(spec.get("series", [])):
        x, y = _vals(s["x"]), _vals(s["y"])
        color = s.get("color", f"C{i}")
        yerr = _vals(s["yerr"]) if s.get("yerr") is not None else None
        if yerr is not None:
            ax.errorbar(x, y, yerr=yerr, marker=s.get("marker", "o"), ms=4, capsize=3,
                        color=color, label=s.get("label"))
        else:
            ax.plot(x, y, marker=s.get("marker", "o" if len(x) <= 40 else None), ms=4,
                    color=color, label=s.get("label"), ls=s.get("ls", _STYLES[i // 10 % 4]))
        if s.get("lo") is not None and s.get("hi") is not None:
            ax.fill_between(x, _vals(s["lo"]), _vals(s["hi"]), color=color, alpha=0.2, lw=0)
    _common(ax, spec)
    ax.grid(alpha=0.3)
    _legend(ax)


def _bar(ax: Any, spec: Spec) -> None:
    cats = [str(c) for c in spec.get("categories", [])]
    series = spec.get("series", [])
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(cats))
    for i, s in enumerate(series):
        vals = _vals(s["values"])
        err = None
        if s.get("lo") is not None and s.get("hi") is not None:
            err = np.vstack([vals - _vals(s["lo"]), _vals(s["hi"]) - vals])
        elif s.get("yerr") is not None:
            err = _vals(s["yerr"])
        ax.bar(x + (i - (n - 1) / 2) * width, vals, width, yerr=err, capsize=3,
               color=s.get("color", f"C{i}"), label=s.get("label"))
    ax.set_xticks(x)
    rot = 30 if max((len(c) for c in cats), default=0) * len(cats) > 60 else 0
    ax.set_xticklabels(cats, rotation=rot, ha="right" if rot else "center", fontsize=8)
    _common(ax, spec)
    ax.grid(alpha=0.3, axis="y")
    _legend(ax)


def _heatmap(ax: Any, spec: Spec) -> None:
    m = np.array(
        [[np.nan if v is None else v for v in row] for row in spec["matrix"]], dtype=np.float64
    )
    im = ax.imshow(
        m,
        cmap=spec.get("cmap", "viridis"),
        vmin=spec.get("vmin"),
        vmax=spec.get("vmax"),
        aspect="auto",
        interpolation="nearest",
    )
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    xt, yt = spec.get("xticklabels"), spec.get("yticklabels")
    if xt is not None and len(xt) <= 40:
        ax.set_xticks(range(len(xt)))
        ax.set_xticklabels([str(t) for t in xt], rotation=45 if len(xt) > 6 else 0,
                           ha="right" if len(xt) > 6 else "center", fontsize=8)
    if yt is not None and len(yt) <= 40:
        ax.set_yticks(range(len(yt)))
        ax.set_yticklabels([str(t) for t in yt], fontsize=8)
    if spec.get("annotate", m.size <= 100):
        fmt = spec.get("fmt", ".2f")
        finite = m[np.isfinite(m)]
        mid = (finite.max() + finite.min()) / 2 if finite.size else 0.0
        for (r, c), v in np.ndenumerate(m):
            if math.isfinite(v):
                ax.text(c, r, format(v, fmt), ha="center", va="center", fontsize=7,
                        color="white" if v < mid else "black")
    _common(ax, spec)


def _hist(ax: Any, spec: Spec) -> None:
    for i, s in enumerate(spec.get("series", [])):
        edges, counts = _vals(s["edges"]), _vals(s["counts"])
        if s.get("density", spec.get("density", True)):
            widths = np.diff(edges)
            total = counts.sum()
            counts = counts / (total * widths) if total > 0 else counts
        ax.stairs(
            counts,
            edges,
            fill=True,
            alpha=0.45,
            color=s.get("color", f"C{i}"),
            label=s.get("label"),
        )
    _common(ax, spec)
    ax.grid(alpha=0.3)
    _legend(ax)


def _scatter(ax: Any, spec: Spec) -> None:
    for i, s in enumerate(spec.get("series", [])):
        ax.scatter(_vals(s["x"]), _vals(s["y"]), s=s.get("size", 10), alpha=s.get("alpha", 0.7),
                   color=s.get("color", f"C{i}"), label=s.get("label"))
        for x, y, t in zip(s.get("x", []), s.get("y", []), s.get("text", []) or [], strict=False):
            ax.annotate(str(t), (x, y), fontsize=7)
    if spec.get("diagonal"):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls=":")
    _common(ax, spec)
    ax.grid(alpha=0.3)
    _legend(ax)


def _text(ax: Any, spec: Spec) -> None:
    ax.axis("off")
    ax.text(0.02, 0.98, spec.get("text", ""), va="top", ha="left", fontsize=9, family="monospace",
            transform=ax.transAxes, wrap=True)
    if spec.get("title"):
        ax.set_title(spec["title"], fontsize=10)


PLOT_KINDS: dict[str, Callable[[Any, Spec], None]] = {
    "line": _line,
    "bar": _bar,
    "heatmap": _heatmap,
    "hist": _hist,
    "scatter": _scatter,
    "text": _text,
}


def render_to_axes(ax: Any, spec: Spec) -> None:
    """Draw one non-panel ``spec`` on a matplotlib Axes."""
    kind = spec.get("kind")
    if kind not in PLOT_KINDS:
        raise ReportError(
            f"plot spec kind={kind!r} is unknown; expected one of {sorted(PLOT_KINDS)} or 'panel'."
        )
    PLOT_KINDS[kind](ax, spec)


def render(spec: Spec, path: str | Path, *, dpi: int = 110) -> Path:
    """Draw ``spec`` and write a PNG to ``path`` atomically; returns the path."""
    plt = _mpl()
    if spec.get("kind") == "panel":
        rows, cols = int(spec.get("rows", 3)), int(spec.get("cols", 3))
        subplots = spec.get("subplots", [])
        if len(subplots) > rows * cols:
            raise ReportError(
                f"panel spec has {len(subplots)} subplots but rows*cols = {rows * cols}; "
                "raise rows/cols or drop subplots."
            )
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), squeeze=False)
        for ax, sub in zip(axes.ravel(), subplots, strict=False):
            render_to_axes(ax, sub)
        for ax in axes.ravel()[len(subplots):]:
            ax.axis("off")
        if spec.get("title"):
            fig.suptitle(spec["title"], fontsize=13)
    else:
        size = spec.get("figsize", (7.0, 4.6))
        fig, ax = plt.subplots(figsize=tuple(size))
        render_to_axes(ax, spec)
    fig.tight_layout()
    target = Path(path)
    try:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return target
