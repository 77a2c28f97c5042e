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
from ..probes.terrain import TerrainConfig, TerrainSubject, run_terrain
from ..probes.terrain.sections import add_terrain_sections
from ..report import Report

__all__ = ["TerrainRunConfig", "run", "COMMANDS", "tour_section"]


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
