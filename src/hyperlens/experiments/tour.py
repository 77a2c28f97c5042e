"""``hyperlens tour``: the main job on the offline default.

Embeds a labelled text set with every requested model (MiniLM and SmolLM2 on
rotten-tomatoes by default), summarises the geometry of each model's sentence space
(norms, cosine distribution, participation ratio), fits a linear probe on every layer,
and then adds the sections other capabilities contribute (embedding terrain, transfer).
Every section uses only the models given with ``--models``; one built around another model
is skipped, and the run says which and why. The summary has one headline row per section.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import Command, RunContext, at_least, between, option, start_report
from ..config.shared import DataFileOptions
from ..errors import ConfigError
from ..report import Report
from .probing import linear_probe

__all__ = ["TourConfig", "run", "COMMANDS", "EXTRA_SECTIONS"]

HELP = "the main job: embed, geometry and per-layer probes for MiniLM and SmolLM2 (offline)"
DESCRIPTION = (
    "Embed a labelled text set with each model, summarise the geometry of each model's "
    "sentence space, fit a linear probe on every layer, then run the short sections of the "
    "other commands. Finishes in a few minutes on 2 CPU cores."
)

#: Extra sections other experiments contribute: (name, module with ``tour_section``).
EXTRA_SECTIONS: tuple[tuple[str, str], ...] = (
    ("terrain", "hyperlens.experiments.terrain"),
    ("weights", "hyperlens.experiments.weights"),
    ("transfer", "hyperlens.experiments.transfer"),
    ("relational", "hyperlens.experiments.relational"),
    ("modulate", "hyperlens.experiments.modulate"),
    ("header", "hyperlens.experiments.header"),
    ("hft", "hyperlens.experiments.hft"),
)


@dataclass(frozen=True, kw_only=True)
class TourConfig(DataFileOptions):
    """Options of ``hyperlens tour``."""

    RANDOM = "the drawn texts, the train / test split, probe folds and every section's draws"

    models: tuple[str, ...] = option(("minilm", "smollm2"), help="models to compare (zoo "
                                     "names, Hugging Face ids or paths); the extra sections use "
                                     "only these and skip, saying why, when they need another")
    dataset: str = option("rotten-tomatoes", help="dataset name or file (rotten-tomatoes is "
                          "shipped offline)")
    data_dir: str | None = option(None, help="folder holding sst2/ and agnews/ (optional)")
    n_texts: int = option(2000, help="texts drawn (stratified) from the dataset",
                          check=at_least(1))
    test_fraction: float = option(0.3, help="held-out share for the probes",
                                  check=between(0, 1, closed=False))
    pooling: Literal["mean", "cls", "last"] = option("mean", help="how token states become "
                                                     "one vector per text")
    batch_size: int = option(32, help="texts per forward pass", check=at_least(1))
    sections: tuple[str, ...] | None = option(
        None, help="extra sections to run (default: all of "
                   f"{' '.join(n for n, _ in EXTRA_SECTIONS)}; 'none' skips them)",
        min_items=0)

    def check(self) -> None:
        _sections(None if self.sections is None else list(self.sections))


def _sections(sections: list[str] | None) -> list[str]:
    """The extra sections to run: all by default, none for ``none`` (or an empty list)."""
    names = [n for n, _ in EXTRA_SECTIONS]
    if sections is None:
        return names
    wanted = [s for s in sections if s != "none"]
    if "none" in sections and wanted:
        raise ConfigError(
            f"--sections none cannot be combined with {wanted}; pass one or the other."
        )
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ConfigError(f"--sections {unknown} unknown; choose from {names} or none.")
    return wanted


# ----------------------------------------------------------------------------- section plan
#: Zoo models that some extra sections are built around and cannot swap for another.
_FIXED_MODELS: dict[str, tuple[str, ...]] = {
    "modulate": ("minilm",),   # the lerp modulator is trained on MiniLM's blocks
    "header": ("smollm2", "minilm"),  # SmolLM2's states, MiniLM's probes
    "hft": ("smollm2",),       # SmolLM2 is the teacher that is distilled
}


def _zoo_kinds() -> dict[str, str]:
    """Zoo name -> kind (``encoder``, ``decoder``, ``static``)."""
    from ..models import list_models

    return {r["name"]: r["kind"] for r in list_models()}


def _weights_model(models: list[str], kinds: dict[str, str]) -> str | None:
    """The first of ``models`` whose checkpoint the weight battery can read without loading."""
    for m in models:
        kind = kinds.get(m.strip().lower())
        if (kind is not None and kind != "static") or (kind is None and Path(m).is_dir()):
            return m
    return None


def plan_sections(models: list[str], sections: list[str] | None,
                  kinds: dict[str, str] | None = None) -> dict[str, dict[str, Any] | str]:
    """What each requested extra section runs on, given the tour's ``--models``.

    Returns, in running order, section name -> the model arguments its ``tour_section``
    gets, or the reason (a string) it is skipped. A section only uses models from
    ``models``: terrain takes them all, relational the first, transfer the first two,
    weights the first transformer checkpoint; modulate, header and hft are built around
    the zoo models in :data:`_FIXED_MODELS` and are skipped when those are not listed.
    """
    wanted = _sections(sections)
    kinds = _zoo_kinds() if kinds is None else kinds
    given = {m.strip().lower() for m in models}
    plan: dict[str, dict[str, Any] | str] = {}
    for name in (n for n, _ in EXTRA_SECTIONS if n in wanted):
        missing = [m for m in _FIXED_MODELS.get(name, ()) if m not in given]
        if missing:
            plan[name] = f"needs {' and '.join(missing)} in --models"
        elif name == "terrain":
            plan[name] = {"models": tuple(models)}
        elif name == "relational":
            plan[name] = {"models": tuple(models[:1])}
        elif name == "transfer":
            plan[name] = ({"models": tuple(models[:2])} if len(models) >= 2 else
                          f"needs two models in --models (got {len(models)})")
        elif name == "weights":
            m = _weights_model(models, kinds)
            zoo = ", ".join(k for k, v in kinds.items() if v != "static")
            plan[name] = ({"model": m} if m is not None else
                          f"needs a transformer checkpoint in --models ({zoo} or a model "
                          "folder) to read weights from")
        else:
            plan[name] = {}
    return plan


def skipped_sections(plan: dict[str, dict[str, Any] | str]) -> list[tuple[str, str]]:
    """``(section, reason)`` for every section of ``plan`` that does not run."""
    return [(n, why) for n, why in plan.items() if isinstance(why, str)]


# ----------------------------------------------------------------------------- headlines
# One summary row per report section: (section title, "label: figure"), read back from the
# tables and metrics the section recorded. A section without a reader below gets its first
# named number or the first row of its first table.
Headline = tuple[str, str]


def _num(v: Any) -> str:
    from ..report.html import format_value

    return format_value(v)


def _table(sec: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """The rows of table ``title`` of ``sec`` as column -> value dicts."""
    t = next(t for t in sec["tables"] if t["title"] == title)
    return [dict(zip(t["columns"], r, strict=False)) for r in t["rows"]]


def _mean(values: list[Any]) -> float:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def _h_geometry(sec: dict[str, Any]) -> Headline:
    rows = _table(sec, "Geometry of the last layer")
    return "participation ratio", ", ".join(f"{r['model']} {_num(r['PR'])}" for r in rows)


def _h_probes(sec: dict[str, Any]) -> Headline:
    rows = _table(sec, "Best layer per model")
    return "best layer / held-out accuracy", ", ".join(
        f"{r['model']} {r['best layer']} / {_num(r['accuracy'])}" for r in rows)


def _h_terrain(sec: dict[str, Any]) -> Headline:
    m = sec["metrics"]
    names = [k[: -len(".pentachoron_cv")] for k in m if k.endswith(".pentachoron_cv")]
    return "pentachoron CV (Gaussian null)", ", ".join(
        f"{n} {_num(m[f'{n}.pentachoron_cv'])} ({_num(m[f'{n}.pentachoron_cv_null'])})"
        for n in names)


def _h_weights_overview(sec: dict[str, Any]) -> Headline:
    fields = {r["field"]: r["value"] for r in _table(sec, "Model")}
    return "parameters / matrices analysed", (
        f"{fields['parameters'] / 1e6:.1f} M / {fields['matrices analysed']}")


def _h_spectra(sec: dict[str, Any]) -> Headline:
    rows = sorted(_table(sec, "Per role"), key=lambda r: float(r["stable rank"]))
    lo, hi = rows[0], rows[-1]
    return "stable rank, lowest to highest role", (
        f"{_num(lo['stable rank'])} ({lo['role']}) to {_num(hi['stable rank'])} ({hi['role']})")


def _h_sparsity(sec: dict[str, Any]) -> Headline:
    t = next(t for t in sec["tables"] if t["title"] == "Share of |w| < t")
    row = next(r for r in t["rows"] if r[0] == "all")
    return f"share of all parameters with |w| {t['columns'][2]}", _num(row[2])


def _h_qk(sec: dict[str, Any]) -> Headline:
    rows = _table(sec, "Per layer (mean over heads)")
    return "positive eigenvalue mass of W_Q^T W_K (mean)", _num(_mean([r["pos mass"]
                                                                        for r in rows]))


def _h_mlp(sec: dict[str, Any]) -> Headline:
    m = sec["metrics"]
    key = next(k for k in m if k.endswith(".mlp_dead"))[: -len(".mlp_dead")]
    return "dead / weak MLP neurons", (
        f"{m[f'{key}.mlp_dead']} / {m[f'{key}.mlp_weak']} of {m[f'{key}.mlp_neurons']}")


def _h_cross_layer(sec: dict[str, Any]) -> Headline:
    return "adjacent-layer cosine (mean over roles)", _num(
        _mean([r["adjacent mean"] for r in _table(sec, "Per role")]))


def _h_norms(sec: dict[str, Any]) -> Headline:
    rows = [r for r in _table(sec, "Norm vectors") if r["param"] == "weight"]
    return "mean learned norm scale", _num(_mean([r["mean"] for r in rows]))


def _h_position_bias(sec: dict[str, Any]) -> Headline:
    return "bias-distance correlation (mean over heads)", _num(
        _mean([r["distance corr"] for r in _table(sec, "Per head")]))


def _h_matrices(sec: dict[str, Any]) -> Headline:
    rows = _table(sec, "Matrices")
    ranks = [float(r["stable rank"]) for r in rows]
    return "matrices / median stable rank", f"{len(rows)} / {_num(float(np.median(ranks)))}"


def _h_transfer(sec: dict[str, Any]) -> Headline:
    best: dict[str, dict[str, Any]] = {}
    for r in _table(sec, "Transfer at a glance"):
        if r["pair"] not in best or float(r["acc"]) > float(best[r["pair"]]["acc"]):
            best[r["pair"]] = r
    return "accuracy (efficiency), best aligner", "; ".join(
        f"{p} {_num(r['acc'])} ({_num(r['efficiency'])}, {r['aligner']})"
        for p, r in best.items())


def _h_relational(sec: dict[str, Any]) -> Headline:
    rows = _table(sec, "Correlation of cosine with WordNet similarity")
    r = next(r for r in rows if str(r["representation"]).startswith("contextual"))
    return f"Spearman with {r['measure']} similarity ({r['synsets']})", str(
        r["Spearman [95% CI]"])


def _h_modulate(sec: dict[str, Any]) -> Headline:
    d = sec["metrics"]["wordnet_minus_shuffled"]
    return "Pearson, WordNet minus shuffled geometry [95% CI]", (
        f"{d['value']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]")


def _h_header(sec: dict[str, Any]) -> Headline:
    r = max(_table(sec, "Stage A"), key=lambda r: float(r["accuracy"]))
    return "best arm, accuracy [95% CI]", f"{r['arm']} {r['accuracy']} {r['95 % CI']}"


def _h_hft(sec: dict[str, Any]) -> Headline:
    rows = {r["model"]: r for r in _table(sec, "Held-out")}
    student = next(k for k in rows if "HyperField" in k)
    text = f"{student} {_num(rows[student]['ppl'])}"
    if "teacher" in rows:
        text += f" (teacher {_num(rows['teacher']['ppl'])})"
    return "held-out perplexity", text


#: (title pattern, reader): the first pattern that matches the whole title is used.
_HEADLINES: tuple[tuple[str, Any], ...] = (
    (r"Sentence-space geometry", _h_geometry),
    (r"Linear probes per layer", _h_probes),
    (r"Embedding terrain", _h_terrain),
    (r".+: overview", _h_weights_overview),
    (r".+: spectra per role", _h_spectra),
    (r".+: sparsity", _h_sparsity),
    (r".+: QK geometry per layer and head", _h_qk),
    (r".+: MLP neurons", _h_mlp),
    (r".+: cross-layer similarity", _h_cross_layer),
    (r".+: norm layers", _h_norms),
    (r".+: relative position bias", _h_position_bias),
    (r".+: every matrix", _h_matrices),
    (r"Cross-architecture transfer", _h_transfer),
    (r"WordNet relational alignment: .+", _h_relational),
    (r"Residual modulator .+", _h_modulate),
    (r"Semantic header .+", _h_header),
    (r"HyperField transformer .+", _h_hft),
)


def _fallback_headline(sec: dict[str, Any]) -> Headline:
    for k, v in sec.get("metrics", {}).items():
        if isinstance(v, (int, float, str)):
            return k, _num(v)
    for t in sec.get("tables", []):
        if t["rows"]:
            return t["title"] or "first row", ", ".join(_num(v) for v in t["rows"][0])
    return "figures", "none recorded"


def headline(sec: dict[str, Any]) -> Headline:
    """``(label, figure)``: the one number that sums up a report section (as a dict)."""
    for pattern, read in _HEADLINES:
        if re.fullmatch(pattern, sec["title"]):
            try:
                label, figure = read(sec)
            except (KeyError, StopIteration, ValueError, TypeError, IndexError, ZeroDivisionError):
                break  # a table changed shape: fall back rather than lose the row
            if figure:
                return label, figure
            break
    return _fallback_headline(sec)


def headline_rows(rep: Report, skipped: Sequence[tuple[str, str]] = ()) -> list[list[str]]:
    """The tour's summary: one ``[section, "label: figure"]`` row per section of ``rep``,
    then one ``[section, "skipped: why"]`` row per section that did not run."""
    rows = []
    for sec in rep.sections:
        label, figure = headline(sec.to_dict())
        rows.append([sec.title, f"{label}: {figure}"])
    return rows + [[name, f"skipped: {why}"] for name, why in skipped]


def _geometry_row(name: str, x: np.ndarray, seed: int) -> dict[str, Any]:
    from ..functional.geometry import participation_ratio

    norms = np.linalg.norm(x, axis=1)
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    i = rng.integers(0, n, size=20000)
    j = rng.integers(0, n, size=20000)
    keep = i != j
    unit = x / np.maximum(norms[:, None], 1e-12)
    cos = np.einsum("nd,nd->n", unit[i[keep]], unit[j[keep]])
    pr = float(participation_ratio(x))
    counts, edges = np.histogram(cos, bins=60, range=(-1, 1))
    return {
        "model": name, "dim": int(x.shape[1]), "norm_mean": float(norms.mean()),
        "norm_std": float(norms.std()), "cos_mean": float(cos.mean()), "cos_std": float(cos.std()),
        "participation_ratio": pr, "pr_over_dim": pr / x.shape[1],
        "cos_hist": edges.tolist(),
        "cos_counts": counts.tolist(),
    }


def run(config: TourConfig, ctx: RunContext | None = None) -> Report:
    """Run the tour and write its report folder; returns the saved report."""
    from .. import data as hdata, models as hmodels

    ctx = ctx or RunContext()
    models, pooling, batch_size = list(config.models), config.pooling, config.batch_size
    plan = plan_sections(models, None if config.sections is None else list(config.sections))
    skipped = skipped_sections(plan)
    for name, why in skipped:
        print(f"hyperlens tour: skipping {name}: {why}", file=sys.stderr)
    dev = ctx.torch_device
    seed = ctx.seed
    rep = start_report("tour", config, ctx,
                       description="Each model's sentence space on one labelled text set: "
                                   "geometry, linear decodability layer by layer, and the extra "
                                   "sections below.")
    with rep.timer("load_data"):
        ds = hdata.load(config.dataset, data_dir=config.data_dir, **config.read_options())
        if len(ds) > config.n_texts:
            ds = ds.subsample(config.n_texts, seed=seed)
        splits = ds.split(test=config.test_fraction, seed=seed)
    train_idx, test_idx = splits.rows["train"], splits.rows["test"]
    y = np.asarray(ds.labels)

    probe_series, probe_rows, geo_rows = [], [], []
    for name in models:
        with rep.timer(f"load_model:{name}"):
            handle = hmodels.load(name, device=dev)
        t0 = time.perf_counter()
        with rep.timer(f"embed:{name}"):
            if handle.kind == "static":  # word vectors: one "layer", the averaged vectors
                layers = hmodels.embed(ds.texts, handle, cache=True)[None]
            else:
                layers = hmodels.embed_layers(ds.texts, handle, pooling=pooling,
                                              batch_size=batch_size, cache=True)
        # a throughput is a timing: it lives under the report's timings, not among results
        rep.timings[f"embed_texts_per_s:{name}"] = len(ds) / max(time.perf_counter() - t0, 1e-9)
        with rep.timer(f"probe:{name}"):
            accs = []
            for li in range(layers.shape[0]):
                r = linear_probe(
                    layers[li][train_idx],
                    y[train_idx],
                    layers[li][test_idx],
                    y[test_idx],
                    seed=seed,
                )
                accs.append(r)
                probe_rows.append([name, li, r.accuracy, r.ci_low, r.ci_high, r.balanced_accuracy])
        best = int(np.argmax([r.accuracy for r in accs]))
        x_rel = np.arange(layers.shape[0]) / max(layers.shape[0] - 1, 1)
        probe_series.append({"label": f"{name} ({layers.shape[0] - 1} layers)", "x": x_rel.tolist(),
                             "y": [r.accuracy for r in accs], "lo": [r.ci_low for r in accs],
                             "hi": [r.ci_high for r in accs]})
        with rep.timer(f"geometry:{name}"):
            g = _geometry_row(name, layers[-1], seed)
        g.update({"best_layer": best, "best_accuracy": accs[best].accuracy,
                  "last_layer_accuracy": accs[-1].accuracy,
                  "kind": handle.kind, "num_layers": handle.num_layers})
        geo_rows.append(g)
        del layers

    _core_sections(rep, ds, pooling, train_idx, test_idx, y, geo_rows, probe_rows, probe_series)
    rep.data["skipped_sections"] = dict(skipped)
    rep.summary(headline_rows(rep, skipped))
    rep.save(final=False)

    _extra_sections(rep, plan, skipped, seed, str(dev))
    rep.save()
    return rep


def _core_sections(rep: Report, ds: Any, pooling: str, train_idx: np.ndarray,
                   test_idx: np.ndarray, y: np.ndarray, geo_rows: list[dict[str, Any]],
                   probe_rows: list[list[Any]], probe_series: list[dict[str, Any]]) -> None:
    """The tour's own sections: sentence-space geometry and the per-layer probes."""
    majority = float(np.bincount(y[test_idx]).max() / len(test_idx))
    sec = rep.section(
        "Sentence-space geometry",
        f"{len(ds)} texts from {ds.name} ({', '.join(ds.label_names)}), {pooling} pooling at the "
        "last layer. Participation ratio (PR) = (Σλ)²/Σλ² of the covariance eigenvalues: the "
        "effective number of dimensions the texts occupy. Cosines are over 20,000 random pairs.")
    sec.table(
        "Geometry of the last layer",
        [
            "model",
            "kind",
            "dim",
            "norm mean",
            "norm std",
            "cos mean",
            "cos std",
            "PR",
            "PR / dim",
        ],
        [
            [
                g["model"],
                g["kind"],
                g["dim"],
                g["norm_mean"],
                g["norm_std"],
                g["cos_mean"],
                g["cos_std"],
                g["participation_ratio"],
                g["pr_over_dim"],
            ]
            for g in geo_rows
        ],
    )
    sec.plot(
        "tour_cosines.png",
        {
            "kind": "hist",
            "title": "Cosine similarity of random text pairs (last layer)",
            "xlabel": "cosine",
            "ylabel": "density",
            "series": [
                {"label": g["model"], "edges": g["cos_hist"], "counts": g["cos_counts"]}
                for g in geo_rows
            ],
        },
    )
    sec2 = rep.section(
        "Linear probes per layer",
        "A ridge classifier on standardised features (penalty chosen by leave-one-out CV), "
        f"trained on {len(train_idx)} texts and "
        f"tested on {len(test_idx)} held-out texts, for every layer (0 = embedding output). Bands "
        "are 95 % Wilson intervals; the dashed line is the majority-class rate.",
    )
    sec2.plot("tour_probes.png", {
        "kind": "line", "title": f"Probe accuracy by relative depth ({ds.name})",
        "xlabel": "layer / number of layers", "ylabel": "held-out accuracy", "series": probe_series,
        "hlines": [{"y": majority, "label": f"majority {majority:.3f}"}]})
    sec2.table(
        "Best layer per model",
        ["model", "best layer", "accuracy", "last-layer accuracy"],
        [
            [g["model"], g["best_layer"], g["best_accuracy"], g["last_layer_accuracy"]]
            for g in geo_rows
        ],
    )
    sec2.table(
        "Every layer",
        ["model", "layer", "accuracy", "CI low", "CI high", "balanced accuracy"],
        probe_rows,
    )
    rep.data["geometry"] = geo_rows
    rep.data["majority"] = majority


def _extra_sections(rep: Report, plan: dict[str, dict[str, Any] | str],
                    skipped: list[tuple[str, str]], seed: int, device: str) -> None:
    """The short sections of the other commands, on the models the plan chose, saving the
    report (with its headline rows) after each."""
    for name, module in EXTRA_SECTIONS:
        chosen = plan.get(name)
        if not isinstance(chosen, dict):
            continue
        mod = importlib.import_module(module)
        params = inspect.signature(mod.tour_section).parameters
        with rep.timer(f"section:{name}"):
            kwargs: dict[str, Any] = {"seed": seed, "device": device}
            # transfer takes no model argument: it reads the same first two from the config
            kwargs.update({k: v for k, v in chosen.items() if k in params})
            mod.tour_section(rep, **kwargs)
        rep.summary(headline_rows(rep, skipped))
        rep.save(final=False)


COMMANDS = (Command("tour", HELP, TourConfig, run, description=DESCRIPTION),)
