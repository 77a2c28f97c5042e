"""``hyperlens tour``: the main job on the offline default.

Embeds a labelled text set with every requested model (MiniLM and SmolLM2 on
rotten-tomatoes by default), summarises the geometry of each model's sentence space
(norms, cosine distribution, participation ratio), fits a linear probe on every layer,
and then adds the sections other capabilities contribute (embedding terrain, transfer).
"""

from __future__ import annotations

import importlib
import inspect
import time
from dataclasses import dataclass
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
                                     "names, Hugging Face ids or paths)")
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
    wanted = _sections(None if config.sections is None else list(config.sections))
    dev = ctx.torch_device
    seed = ctx.seed
    models, pooling, batch_size = list(config.models), config.pooling, config.batch_size
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
        rep.summary(
            [
                [
                    f"{r['model']}: best layer / accuracy",
                    f"{r['best_layer']} / {r['best_accuracy']:.3f}",
                ]
                for r in geo_rows
            ]
        )
        del layers

    _core_sections(rep, ds, pooling, train_idx, test_idx, y, geo_rows, probe_rows, probe_series)
    rep.save(final=False)

    _extra_sections(rep, wanted, models, seed, str(dev))
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


def _extra_sections(rep: Report, wanted: list[str], models: list[str], seed: int,
                    device: str) -> None:
    """The short sections of the other commands, saving the report after each."""
    for name, module in EXTRA_SECTIONS:
        if name not in wanted:
            continue
        mod = importlib.import_module(module)
        with rep.timer(f"section:{name}"):
            kwargs: dict[str, Any] = {"seed": seed, "device": device}
            if "models" in inspect.signature(mod.tour_section).parameters:
                kwargs["models"] = tuple(models)
            mod.tour_section(rep, **kwargs)
        rep.save(final=False)


COMMANDS = (Command("tour", HELP, TourConfig, run, description=DESCRIPTION),)
