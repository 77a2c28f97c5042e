"""``hyperlens hft scale``: the HyperField students against their anchors as the data grows.

One capture of ``--train-tokens`` training positions (and a fixed held-out set) serves
every point of the curve: each size in ``--sizes`` trains every student and baseline of
``hft train`` on the capture's first texts up to that many positions
(``--train-limit``), in a folder of its own (``OUT/tokens-<N>/``, a full ``hft train``
report, resumable cell by cell), and scores them on the same held-out tokens. This report
puts the sizes together: perplexity against training tokens for every model on one plot
(log axes), the table with the intervals over texts, and the HyperField student's ratio to
KN-5 at each size, naming the crossover if there is one. Run it again to continue a study
killed part-way: a size whose report is complete (with the same options) is read back, and
an unfinished one trains only its missing students.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Command, RunContext, at_least, option, start_report
from ..errors import ConfigError
from ..hft.sections import INPUT_ROW, KN5_ROW, LAYER_ROW, WINDOW_ROW
from ..report import Report
from ..utils import BF16_FLAGS, to_jsonable
from .hft import HftTrainConfig, run_device, run_train

__all__ = ["HftScaleConfig", "run_scale", "COMMANDS"]

_TABLE = "Held-out metrics (seed 0)"
#: rows of each size's "Issue targets" table the curve puts side by side: (its label here,
#: the row's label there); every one a paired ratio of perplexities over held-out texts
_GAP = (("HyperField / KN-5", KN5_ROW),
        ("HyperField / MLP, same features (the layer)", LAYER_ROW),
        ("MLP, same features / window MLP (the input)", INPUT_ROW),
        ("HyperField / window MLP", WINDOW_ROW))


@dataclass(frozen=True, kw_only=True)
class HftScaleConfig(HftTrainConfig):
    """Options of ``hyperlens hft scale``: those of ``hft train`` and the sizes."""

    dataset: str = option("agnews+sst2+rotten-tomatoes", help="the corpus (as for hft train); "
                          "the default joins the three named corpora, since the AG News sample "
                          "alone holds fewer than 1M prediction positions", group="capture")
    heldout_tokens: int = option(50_000, help="tokens the teacher predicts in the held-out "
                                 "texts, the same for every size", check=at_least(1),
                                 group="capture")
    train_tokens: int = option(1_000_000, help="tokens the teacher predicts in the training "
                               "texts of the one capture every size is cut from (at least the "
                               "largest of --sizes)", check=at_least(1), group="capture")
    sizes: tuple[int, ...] = option(
        (32_000, 128_000, 250_000, 1_000_000), help="training positions at each point of the "
        "curve, each the capture's first texts up to that many (at most --train-tokens, "
        "which sets the capture)", check=at_least(1), group="scale", unique=True)

    def check(self) -> None:
        super().check()
        if max(self.sizes) > self.train_tokens:
            raise ConfigError(f"--sizes reach {max(self.sizes):,} training positions but the "
                              f"capture holds --train-tokens {self.train_tokens:,}; pass "
                              f"--train-tokens {max(self.sizes)}.")
        if self.train_limit:
            raise ConfigError("--train-limit is set for each size by hft scale; give the sizes "
                              "with --sizes instead.")


def _train_config(cfg: HftScaleConfig, size: int) -> HftTrainConfig:
    base = {f.name: getattr(cfg, f.name) for f in fields(HftTrainConfig)}
    base["train_limit"] = size if size < cfg.train_tokens else 0
    return HftTrainConfig(**base)


def _point(results: dict[str, Any], sub: Path) -> dict[str, Any]:
    """What the curve takes from one size's ``hft train`` results."""
    data = next(s["metrics"] for s in results["sections"] if s["title"] == "Data")
    tables = {t["title"]: t for s in results["sections"] for t in s["tables"]}
    table = tables[_TABLE]
    targets = tables.get("Issue targets", {"rows": []})
    return {"train_tokens": int(data["train_tokens"]), "fit_tokens": int(data["fit_tokens"]),
            "columns": list(table["columns"]), "rows": [list(r) for r in table["rows"]],
            "ratios": {r[0]: list(r[1:4]) for r in targets["rows"]}, "report": str(sub),
            "precision": _precision(results)}


def _precision(results: dict[str, Any]) -> str:
    """How a size's students trained, as its report records it: the dense students'
    autocast and the vocabulary products' precision (``--precision auto`` resolves both by
    the CPU, so sizes run on different machines may differ)."""
    sc = results.get("data", {}).get("student config", {})
    fast = sc.get("fast_unembed")
    if fast is None:  # unresolved in reports from before: the CPU it ran on decided
        flags = results.get("environment", {}).get("cpu_flags")
        if flags is None:
            return "not recorded (the CPU's bf16 units decided)"
        fast = bool(BF16_FLAGS & set(flags))
    parts = (["dense students in bf16 autocast"] if sc.get("bf16") else []) + (
        ["bf16 vocabulary products"] if fast else [])
    return ", ".join(parts) or "float32"


def _finished(sub: Path, tcfg: HftTrainConfig) -> dict[str, Any] | None:
    """The results of a size already run to the end with these options, else ``None``."""
    try:
        res = json.loads((sub / "results.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    mine = json.loads(json.dumps(to_jsonable(tcfg.to_dict())))
    theirs = {k: v for k, v in res.get("config", {}).items() if k != "context"}
    return res if res.get("complete") and theirs == mine else None


def run_scale(cfg: HftScaleConfig, ctx: RunContext | None = None) -> Report:
    ctx = ctx or RunContext()
    run_device(ctx)  # a device the sizes would refuse is refused before the report folder
    rep = start_report("hft-scale", cfg, ctx, description=__doc__ or "")
    points: dict[int, dict[str, Any]] = {}
    rep.save(final=False)  # the folder is this report's before the sizes write into it
    for size in sorted(cfg.sizes):
        sub = Path(rep.out_dir) / f"tokens-{size}"
        sctx = RunContext(seed=ctx.seed, device=ctx.device, dtype=ctx.dtype,
                          executor=ctx.executor, ray_address=ctx.ray_address, out=sub,
                          progress=ctx.progress, verbose=ctx.verbose)
        tcfg = _train_config(cfg, size)
        done = _finished(sub, tcfg)  # a size run to the end is read back, not run again
        if done is None:
            with rep.timer(f"size {size}"):
                done = run_train(tcfg, sctx).to_dict()
        points[size] = _point(done, sub)
        rep.data["points"] = points
        rep.save(final=False)
    _sections(rep, points)
    rep.save()
    return rep


def _sections(rep: Report, points: dict[int, dict[str, Any]]) -> None:
    sizes = sorted(points)
    cols = points[sizes[0]]["columns"]
    i_ppl, i_lo, i_hi = cols.index("ppl "), cols.index("ppl lo"), cols.index("ppl hi")
    models = [r[0] for r in points[sizes[0]]["rows"] if r[0] != "uniform"]
    ppl: dict[str, dict[int, tuple[float, float, float]]] = {m: {} for m in models}
    for n in sizes:
        for r in points[n]["rows"]:
            if r[0] in ppl:
                ppl[r[0]][n] = (float(r[i_ppl]), float(r[i_lo]), float(r[i_hi]))
    fitted = [points[n]["fit_tokens"] for n in sizes]
    sec = rep.section("Perplexity against training tokens", (
        "Every model at every size, scored on the same held-out tokens (seed-0 students; "
        "95 % bootstrap intervals over held-out texts). 'fitted' counts the positions the "
        "models fit: the first 90 % of each size's training texts (the rest is the "
        "validation slice). Each size's full report is in OUT/tokens-<N>/. Training "
        "precision by size: " + "; ".join(f"{points[n]['train_tokens']:,}: "
                                           f"{points[n].get('precision', 'not recorded')}"
                                           for n in sizes)
        + (" (not the same at every size)." if len({points[n].get("precision")
                                                    for n in sizes}) > 1 else ".")))
    sec.table("Held-out perplexity by training size",
              ["model"] + [f"{points[n]['train_tokens']:,} (fitted {f:,})"
                           for n, f in zip(sizes, fitted, strict=True)],
              [[m] + [f"{v[0]:.1f} [{v[1]:.1f}, {v[2]:.1f}]" if (v := ppl[m].get(n)) else ""
                      for n in sizes] for m in models])
    sec.plot("scaling.png", {
        "kind": "line", "title": "Held-out perplexity against training tokens",
        "xlabel": "training positions fitted", "ylabel": "perplexity", "xscale": "log",
        "yscale": "log",
        "series": [{"label": m, "x": [points[n]["fit_tokens"] for n in sizes if n in ppl[m]],
                    "y": [ppl[m][n][0] for n in sizes if n in ppl[m]]} for m in models]})
    hf, kn = "A: HyperField", "KN-5"
    if hf in ppl and kn in ppl:
        ratio = {n: ppl[hf][n][0] / ppl[kn][n][0] for n in sizes
                 if n in ppl[hf] and n in ppl[kn]}
        ci = {n: points[n].get("ratios", {}).get(_GAP[0][1]) for n in ratio}
        below = [n for n in sizes if ratio.get(n, np.inf) <= 1.0]
        first = points[below[0]]["train_tokens"] if below else 0
        text = ("HyperField / KN-5 perplexity at each size: "
                + ", ".join(f"{points[n]['train_tokens']:,}: {r:.3f}"
                            + (f" [{c[1]:.3f}, {c[2]:.3f}]" if c else "")
                            for (n, r), c in zip(ratio.items(), ci.values(), strict=True))
                + " (paired 95 % intervals over held-out texts). "
                + (f"The student is at or below KN-5 from {first:,} training positions."
                   if below else "The student stays above KN-5 at every size measured."))
        rep.section("Crossover with KN-5", text).metrics(
            {f"hf_over_kn5_{n}": r for n, r in ratio.items()})
    _gap_section(rep, points, sizes)
    rep.summary([[m, " / ".join(f"{ppl[m][n][0]:.0f}" for n in sizes if n in ppl[m])]
                 for m in models])


def _gap_section(rep: Report, points: dict[int, dict[str, Any]], sizes: list[int]) -> None:
    """Where HyperField's gap to the n-grams comes from, size by size: the layer (HyperField
    against the same-size MLP on the same features) and the input (that MLP against the
    same-size MLP on the last token embeddings alone)."""
    rows = []
    for label, key in _GAP:
        cells = [points[n].get("ratios", {}).get(key) for n in sizes]
        if any(cells):
            rows.append([label] + [f"{c[0]:.3f} [{c[1]:.3f}, {c[2]:.3f}]" if c else ""
                                   for c in cells])
    if not rows:
        return
    rep.section("The layer or the input", (
        "Perplexity ratios at each size with paired 95 % bootstrap intervals over held-out "
        "texts (from each size's targets table); above 1, the first model is worse. "
        "HyperField against the MLP of the same size on the same features isolates the "
        "layer; that MLP against the window MLP of the same size (the last token embeddings, "
        "unsketched, alone) isolates the input, since both are dense students.")).table(
        "Ratios by training size",
        ["comparison"] + [f"{points[n]['train_tokens']:,}" for n in sizes], rows)


COMMANDS = (
    Command("hft scale", "train every student at several data sizes on one capture and draw "
            "perplexity against training tokens", HftScaleConfig, run_scale,
            description=__doc__ or ""),
)
