"""``hyperlens relational``: does a model's geometry mirror WordNet's?

For one model (or two: ``--models X Y``): the model's single-token WordNet lemmas, each with its
most frequent sense (:mod:`hyperlens.probes.wordnet_entries`); a seeded, POS-stratified pool
of them; three representations of every entry (the lemma's static vector, the model's
encoding of the definition, and the TF-IDF of the definition, the text-only baseline); and
the battery of :mod:`hyperlens.probes.relational` on all parts of speech, on nouns only and
per part of speech, plus a stability study that redraws the synsets ``--n-redraws`` times.
Each analysis and each redraw is a cell (:mod:`hyperlens.probes.relational_cells`) computed
by the context's executor (in this process, or as Ray tasks with ``--executor ray``) and
kept in ``OUT/cells.jsonl``: a rerun with the same ``--out`` computes only the missing ones.
:func:`tour_section` adds a small version to ``hyperlens tour``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import Command, Config, RunContext, at_least, option, start_report
from ..config.shared import check_side_by_side
from ..errors import ConfigError, InputError
from ..report import Report
from ..run import Cell, Executor, Ledger, LocalExecutor, Task, run_cells
from ..utils import derive_seed, stable_hash

__all__ = ["RelationalConfig", "run", "COMMANDS", "tour_section"]

_POS_LABEL = {"n": "nouns", "v": "verbs", "a": "adjectives", "r": "adverbs"}


@dataclass(frozen=True, kw_only=True)
class RelationalConfig(Config):
    """Options of ``hyperlens relational`` (checked before any model is loaded)."""

    CONTEXT = frozenset({"seed", "device", "executor"})
    RANDOM = "the entry pool, the analysed synsets, permutations, resamples and redraws"

    models: tuple[str, ...] = option(help="one model, or two shown side by side (zoo name, "
                                     "Hugging Face id or local folder)", aliases=("--model",),
                                     metavar="MODEL")
    pos: str = option("all", help="parts of speech of the entries: all | n | v | a | r | 'n,v'")
    sense: Literal["rank", "file"] = option("rank", help="rank: most frequent sense "
                                            "(synsets(w)[0]); file: the seed's file order")
    measures: tuple[Literal["path", "wup", "lch"], ...] = option(
        ("path", "wup"), help="WordNet similarities")
    max_entries: int = option(2000, help="entries encoded per model, a POS-stratified seeded "
                              "draw", check=at_least(20))
    n_main: int = option(1500, help="synsets in the main analysis, drawn from the pool",
                         check=at_least(20))
    n_redraws: int = option(50, help="stability redraws of the synsets (0 skips the study)",
                            check=at_least(0), aliases=("--seeds",))
    n_sample: int = option(800, help="synsets per stability redraw", check=at_least(20))
    n_permutations: int = option(199, help="Mantel / label permutations", check=at_least(9),
                                 aliases=("--permutations",))
    n_boot: int = option(300, help="bootstrap resamples of synsets", check=at_least(20),
                         aliases=("--bootstrap",))
    n_simplices: int = option(1000, help="pentachora for the volume CV", check=at_least(10))
    decoder_read: Literal["last", "mean"] = option(
        "last", help="decoders: read the definition prompt at its last token, or average every "
                     "token but the first")
    simulate_root: bool = option(True, help="NLTK's simulate_root (--no-simulate-root: pairs "
                                 "without a common ancestor are dropped)")
    batch_size: int = option(32, help="definitions per forward pass", check=at_least(1))
    cache: bool = option(True, help="cache definition encodings (--no-cache: encode afresh)")
    per_pos: bool = option(True, help="run the per-POS analyses (--no-per-pos skips them)")
    fresh: bool = option(False, help="ignore finished cells in OUT/cells.jsonl and recompute "
                                     "everything")

    def check(self) -> None:
        from ..probes.wordnet_entries import parse_pos

        try:
            parse_pos(self.pos)
        except InputError as exc:
            raise ConfigError(f"--pos: {exc}") from None
        if self.n_redraws == 1:
            raise ConfigError("--n-redraws must be 0 (no stability study) or >= 2 for an "
                              "interval, got 1.")
        check_side_by_side(self.models)
        if self.n_main > self.max_entries:
            raise ConfigError(f"--n-main {self.n_main} is larger than the pool of --max-entries "
                              f"{self.max_entries}; raise --max-entries or lower --n-main.")
        if self.n_redraws >= 2 and self.n_sample >= self.n_main:
            raise ConfigError(f"--n-sample {self.n_sample} must be below --n-main "
                              f"{self.n_main}: every redraw would take the same synsets and "
                              "the intervals would have zero width.")


def _precheck_model(name: str) -> None:
    """Refuse a local model folder without tokenizer files before loading its weights."""
    from ..models import known_models

    p = Path(name).expanduser()
    if name in known_models() or not p.is_dir():
        return
    tok_files = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                 "tokenizer.model", "spiece.model")
    if not any((p / f).exists() for f in tok_files):
        raise InputError(
            f"model folder {str(p)!r} has no tokenizer files ({', '.join(tok_files)}), so its "
            "lemmas cannot be matched to single tokens; save the tokenizer beside the weights "
            "(tokenizer.save_pretrained(folder))."
        )


# --------------------------------------------------------------------------- one model
def _key(model: str, part: str, group: str, redraw: int | None = None) -> dict[str, Any]:
    key: dict[str, Any] = {"model": model, "part": part, "group": group}
    if redraw is not None:
        key["redraw"] = redraw
    return key


def cell_fingerprint(cfg: RelationalConfig, device: Any, seed: int) -> str:
    """Hash of what changes a cell's numbers: the options (not which models, groups or how
    many redraws run, nor caching), the seed and the kind of device that encodes."""
    import torch

    d = {k: v for k, v in cfg.to_dict().items()
         if k not in ("models", "n_redraws", "per_pos", "cache", "fresh")}
    return stable_hash(d, seed, torch.device(device).type, length=12)


def _groups(coarse: np.ndarray, cfg: RelationalConfig, seed: int
            ) -> list[tuple[str, np.ndarray]]:
    """The analysed sets of synsets (pool rows): all POS, nouns, then each other POS."""
    from ..probes.relational import draw_rows

    groups = [("all POS", draw_rows(coarse, cfg.n_main, derive_seed(seed, "rows", "all")))]
    nouns = np.flatnonzero(coarse == "n")
    if nouns.size >= 20 and len(set(coarse.tolist())) > 1:
        sub = draw_rows(np.zeros(nouns.size), cfg.n_main, derive_seed(seed, "rows", "n"))
        groups.append(("nouns", nouns[sub]))
    if cfg.per_pos:
        for p in ("v", "a", "r"):
            rows = np.flatnonzero(coarse == p)
            if rows.size >= 30:
                pick = draw_rows(np.zeros(rows.size), cfg.n_main, derive_seed(seed, "rows", p))
                groups.append((_POS_LABEL[p], rows[pick]))
    return groups


def _cells(name: str, cfg: RelationalConfig, seed: int, groups: list[tuple[str, np.ndarray]],
           shared: Any) -> list[Cell]:
    """One cell per analysed set, one per stability redraw of the first two sets."""
    from ..probes.relational_cells import analysis_cell, redraw_cell

    cells = [Cell(_key(name, "analysis", label), Task(analysis_cell, {
        "pool": shared, "rows": rows.tolist(), "measures": list(cfg.measures),
        "n_perm": cfg.n_permutations, "n_boot": cfg.n_boot, "seed": seed,
        "simulate_root": cfg.simulate_root, "n_simplices": cfg.n_simplices}))
        for label, rows in groups]
    if cfg.n_redraws >= 2:
        cells += [Cell(_key(name, "redraw", label, s), Task(redraw_cell, {
            "pool": shared, "rows": rows.tolist(), "redraw": s, "n_sample": cfg.n_sample,
            "seed": seed})) for label, rows in groups[:2] for s in range(cfg.n_redraws)]
    return cells


def _model_result(name: str, cfg: RelationalConfig, rep: Report, device: Any, seed: int, *,
                  executor: Executor | None = None, ledger: Ledger | None = None,
                  show_progress: bool | None = None) -> dict[str, Any]:
    """Load and encode one model's pool here, then compute its cells with ``executor``
    (default: in this process) into ``ledger`` (default: kept in memory only)."""
    from .. import models as hmodels
    from ..data.wordnet_similarity import similarity_matrix, wordnet_graph
    from ..probes.relational import draw_rows, stability_summary
    from ..probes.relational_cells import pool_inputs
    from ..probes.wordnet_entries import (
        build_entries,
        encode_entries,
        parse_pos,
        tfidf_definitions,
    )

    g = wordnet_graph()
    with rep.timer(f"load:{name}"):
        handle = hmodels.load(name, device=device)
    with rep.timer(f"entries:{name}"):
        entries = build_entries(handle, pos=parse_pos(cfg.pos), sense=cfg.sense)
        n_all = len(entries)
        pool_rows = draw_rows(g.pos[entries.synsets], cfg.max_entries, seed)
        pool = entries.subset(pool_rows)
    with rep.timer(f"encode:{name}"):
        enc = encode_entries(handle, pool, decoder_read=cfg.decoder_read,
                             batch_size=cfg.batch_size, cache=cfg.cache)
        reps_all: dict[str, Any] = {"contextual": enc["contextual"], "static": enc["static"],
                                    "tfidf": tfidf_definitions(pool)}
    kind = handle.kind
    del handle
    with rep.timer(f"similarity:{name}"):
        sims = {m: similarity_matrix(pool.synsets, m, simulate_root=cfg.simulate_root)
                for m in cfg.measures}
    pos = g.pos[pool.synsets]
    coarse = np.where(pos == "s", "a", pos)
    out: dict[str, Any] = {"model": name, "kind": kind, "n_entries": n_all,
                           "n_candidates": entries.n_candidates, "pool": len(pool),
                           "pool_pos": {p: int((coarse == p).sum()) for p in _POS_LABEL},
                           "examples": [[pool.lemmas[i], g.names[pool.synsets[i]], pool.forms[i]]
                                        for i in range(0, len(pool), max(1, len(pool) // 8))][:8],
                           "analyses": {}, "stability": {}}
    groups = _groups(coarse, cfg, seed)
    executor = executor or LocalExecutor()
    ledger = ledger if ledger is not None else Ledger(None, cell_fingerprint(cfg, device, seed))
    shared = executor.share(pool_inputs(reps_all, pool.synsets, sims))
    cells = _cells(name, cfg, seed, groups, shared)
    with rep.timer(f"cells:{name}"):
        run_cells(cells, ledger, executor, desc=f"relational {name}", show_progress=show_progress)
    for label, _ in groups:
        out["analyses"][label] = ledger.get(_key(name, "analysis", label))
    if cfg.n_redraws >= 2:
        for label, rows in groups[:2]:
            redraws = [ledger.get(_key(name, "redraw", label, s)) for s in range(cfg.n_redraws)]
            out["stability"][label] = stability_summary(
                [r for r in redraws if r is not None], n_sample=cfg.n_sample, pool=len(rows))
    return out


# --------------------------------------------------------------------------- report
def _ci(e: dict[str, Any] | None, fmt: str = ".3f") -> str:
    if not e:
        return "n/a"
    return f"{e['value']:{fmt}} [{e['lo']:{fmt}}, {e['hi']:{fmt}}]"


_REP_LABEL = {"contextual": "contextual (definition)", "static": "static (lemma vector)",
              "tfidf": "TF-IDF of the definition"}


def _correlation_rows(res: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for label, a in res["analyses"].items():
        for m in a["measures"]:
            for rname in ("contextual", "static", "tfidf"):
                r = a["reps"][rname][m]
                vs = a["vs_baseline"].get(rname, {})
                rows.append([label, a["n"], m, _REP_LABEL[rname], _ci(r["pearson"]),
                             _ci(r["spearman"]), r["mantel_p_spearman"],
                             _ci(vs.get(f"{m}.spearman")) if vs else "(baseline)"])
    return rows


def _panel(res: dict[str, Any]) -> dict[str, Any]:
    an = res["analyses"]
    labels = list(an)
    subs: list[dict[str, Any]] = []
    for m in an[labels[0]]["measures"]:
        series = []
        for rname in ("contextual", "static", "tfidf"):
            vals = [an[lb]["reps"][rname][m]["spearman"] for lb in labels]
            series.append({"label": _REP_LABEL[rname], "values": [v["value"] for v in vals],
                           "lo": [v["lo"] for v in vals], "hi": [v["hi"] for v in vals]})
        subs.append({"kind": "bar", "title": f"Spearman(cosine, {m}) [95% CI]",
                     "ylabel": "Spearman", "categories": labels, "series": series})
    main = an[labels[0]]
    band_series, chain_series = [], []
    for rname in ("contextual", "static", "tfidf"):
        r = main["reps"][rname]
        if "bands" in r:
            bs = [b for b in r["bands"] if b["mean"] is not None]
            band_series.append({"label": _REP_LABEL[rname], "x": [b["band"][1] for b in bs],
                                "y": [b["mean"]["value"] for b in bs],
                                "lo": [b["mean"]["lo"] for b in bs],
                                "hi": [b["mean"]["hi"] for b in bs]})
        hops = [h for h in r["chain_decay"]["hops"] if h["mean"] is not None]
        chain_series.append({"label": _REP_LABEL[rname], "x": [h["hop"] for h in hops],
                             "y": [h["mean"]["value"] for h in hops],
                             "lo": [h["mean"]["lo"] for h in hops],
                             "hi": [h["mean"]["hi"] for h in hops]})
    gm = main["reps"]["contextual"]["mean_cosine"]["value"]
    if band_series:
        subs.append({"kind": "line", "title": f"Mean cosine by path band ({labels[0]})",
                     "xlabel": "band upper edge (path similarity)", "ylabel": "mean cosine",
                     "series": band_series,
                     "hlines": [{"y": gm, "label": f"contextual global mean {gm:.3f}"}]})
    subs.append({"kind": "line", "title": f"Cosine to ancestors by hop ({labels[0]})",
                 "xlabel": "hypernym hops", "ylabel": "mean cosine", "series": chain_series,
                 "hlines": [{"y": gm, "label": "contextual global mean"}]})
    lex = [[an[lb]["reps"][r]["lexnames"] for r in ("contextual", "static", "tfidf")]
           for lb in labels]
    subs.append({"kind": "bar", "title": "Lexname gap (within - between cosine)", "ylabel": "gap",
                 "categories": labels,
                 "series": [{"label": _REP_LABEL[r], "values": [
                     (lx[k].get("gap") if lx[k].get("available") else 0.0) for lx in lex]}
                     for k, r in enumerate(("contextual", "static", "tfidf"))]})
    rows = (len(subs) + 2) // 3
    return {"kind": "panel", "title": f"{res['model']} x WordNet", "rows": rows, "cols": 3,
            "subplots": subs}


def _add_model_sections(rep: Report, res: dict[str, Any], prefix: str, compact: bool) -> None:
    an = res["analyses"]
    first = next(iter(an.values()))
    sr = first["simulate_root"]
    sec = rep.section(
        f"WordNet relational alignment: {res['model']}",
        f"{res['model']} ({res['kind']}) reads {res['n_entries']} WordNet lemmas as one token "
        f"({res['n_candidates']} single-token lemmas before keeping one sense per synset and "
        f"definitions of 11+ characters); a POS-stratified pool of {res['pool']} was encoded "
        f"({', '.join(f'{v} {_POS_LABEL[k]}' for k, v in res['pool_pos'].items())}). "
        "Correlations are over all pairs of distinct synsets; intervals are percentile "
        "bootstraps over synsets (pairs of two copies of one synset left out); the Mantel "
        "p-value permutes synset labels; 'vs TF-IDF' is the paired bootstrap difference of "
        "Spearman correlations. With simulate_root, "
        f"{sr['share_pairs']:.1%} of all-POS pairs and {(sr['share_high_pairs'] or 0):.1%} of "
        "the high-similarity pairs (path >= 0.25) get their path similarity only through "
        "NLTK's fake root (every adjective or adverb pair scores 1/3): the all-POS correlation "
        "partly encodes part of speech, hence the noun-only and per-POS rows.")
    sec.plot(f"{prefix}_panel.png", _panel(res),
             caption="Spearman correlations with 95% bootstrap intervals per POS set; mean cosine "
                     "by path band and by hypernym hop against the global mean; lexname gap.")
    sec.table("Correlation of cosine with WordNet similarity",
              ["synsets", "n", "measure", "representation", "Pearson [95% CI]",
               "Spearman [95% CI]", "Mantel p", "Spearman vs TF-IDF [95% CI]"],
              _correlation_rows(res))
    sec.metrics({f"{res['model']}.{lb}.{r}.{m}.spearman": a["reps"][r][m]["spearman"]["value"]
                 for lb, a in an.items() for r in ("contextual", "static", "tfidf")
                 for m in a["measures"]})
    if compact:
        return
    main_label = next(iter(an))
    main = an[main_label]
    band_rows = []
    for rname in ("contextual", "static", "tfidf"):
        r = main["reps"][rname]
        for b in r.get("bands", []):
            band_rows.append([_REP_LABEL[rname], f"({b['band'][0]}, {b['band'][1]}]", b["n_pairs"],
                              _ci(b["mean"]), b["lift"], r["mean_cosine"]["value"]])
    sec.table(f"Mean cosine per path band ({main_label})",
              ["representation", "path band", "pairs", "mean cosine [95% CI]",
               "lift over global mean", "global mean"], band_rows)
    chain_rows = []
    for rname in ("contextual", "static", "tfidf"):
        cd = main["reps"][rname]["chain_decay"]
        for h in cd["hops"]:
            chain_rows.append([_REP_LABEL[rname], h["hop"], h["n_pairs"], _ci(h["mean"]),
                               h["lift"]])
        if cd["decay"]:
            chain_rows.append([_REP_LABEL[rname], f"decay 1 -> {cd['decay']['to_hop']}", "",
                               _ci(cd["decay"]["value"]), ""])
    sec.table(f"Hypernym-chain cosine by hop ({main_label})",
              ["representation", "hop", "pairs", "mean cosine [95% CI]", "lift over global mean"],
              chain_rows)
    lex_rows, pent_rows = [], []
    for lb, a in an.items():
        for rname in ("contextual", "static", "tfidf"):
            lx = a["reps"][rname]["lexnames"]
            if lx.get("available"):
                lex_rows.append([lb, _REP_LABEL[rname], lx["gap"],
                                 f"[{lx['null_ci'][0]:.4f}, {lx['null_ci'][1]:.4f}]", lx["p"]])
            pe = a["reps"][rname].get("pentachoron")
            if pe and pe.get("available"):
                pent_rows.append([lb, _REP_LABEL[rname], _ci(pe["cv"]), _ci(pe["null_cv"]),
                                  _ci(pe["ratio"])])
    sec.table("Lexname clustering against a label-permutation null",
              ["synsets", "representation", "gap (within - between)", "null 95%", "p"], lex_rows)
    sec.table("Pentachoron volume CV against a Gaussian null (same mean and covariance)",
              ["synsets", "representation", "CV [95% CI]", "Gaussian null CV", "ratio"], pent_rows)
    sr_rows = [[lb, a["n"], a["simulate_root"]["share_pairs"],
                a["simulate_root"]["share_high_pairs"],
                a["simulate_root"]["share_high_pairs_with_non_noun"]] for lb, a in an.items()]
    sec.table("Pairs whose path similarity comes through NLTK's fake root",
              ["synsets", "n", "share of pairs", "share of pairs with path >= 0.25",
               "high pairs with a non-noun"], sr_rows)
    if res["stability"]:
        st_rows = []
        for lb, st in res["stability"].items():
            for key, est in st["estimates"].items():
                st_rows.append([lb, key, _ci(est, ".4f"), est["std"], est["n"]])
        sec.table(f"Stability over {next(iter(res['stability'].values()))['n_seeds']} redraws "
                  "of the synsets (mean [95% t-interval over seeds])",
                  ["synsets", "measure", "mean [95% CI]", "std over seeds", "seeds"], st_rows)
    sec.table("Example entries", ["lemma", "synset", "form tokenised"], res["examples"])


def _safe(name: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
    return out.lstrip("._-") or "model"


def run(config: RelationalConfig, ctx: RunContext | None = None) -> Report:
    """Run the relational battery for each of ``config.models`` and write the report."""
    from ..data.wordnet_similarity import wordnet_graph
    from ..models import check_available

    ctx = ctx or RunContext()
    dev = ctx.torch_device
    for name in config.models:  # every model is found before any work
        _precheck_model(name)
        check_available(name)
    rep = start_report("relational", config, ctx,
                       description="WordNet relational alignment of "
                                   + " and ".join(config.models))
    with rep.timer("wordnet_graph"):
        g = wordnet_graph()  # DataError with installation steps before any model loads
    rep.data["wordnet"] = g.source
    results = []
    ledger = Ledger(Path(rep.out_dir) / "cells.jsonl", cell_fingerprint(config, dev, ctx.seed),
                    fresh=config.fresh)
    with ctx.make_executor() as executor:
        rep.data["executor"] = executor.describe()
        for name in config.models:
            res = _model_result(name, config, rep, dev, ctx.seed, executor=executor,
                                ledger=ledger, show_progress=None if ctx.progress else False)
            results.append(res)
            _add_model_sections(rep, res, f"relational_{_safe(name)}", compact=False)
            rep.data.setdefault("relational", {})[name] = res
            rep.save(final=False)
    ledger.report_into(rep)
    if len(results) > 1:
        rows = []
        for res in results:
            for label, a in res["analyses"].items():
                for m in a["measures"]:
                    c, t = a["reps"]["contextual"][m], a["reps"]["tfidf"][m]
                    rows.append([res["model"], label, m, _ci(c["spearman"]),
                                 _ci(a["reps"]["static"][m]["spearman"]), _ci(t["spearman"])])
        rep.section("Side by side", "Each model on its own single-token entries (the entry sets "
                    "differ between tokenizers), same sizes and seeds.").table(
            "Spearman correlations", ["model", "synsets", "measure", "contextual", "static",
                                      "TF-IDF"], rows)
    summary = []
    for res in results:
        a = next(iter(res["analyses"].values()))
        m = a["measures"][0]
        summary.append([f"{res['model']}: Spearman({m}) contextual / static / TF-IDF",
                        " / ".join(f"{a['reps'][r][m]['spearman']['value']:.3f}"
                                   for r in ("contextual", "static", "tfidf"))])
        if "nouns" in res["analyses"]:
            b = res["analyses"]["nouns"]
            summary.append([f"{res['model']}: nouns only, same",
                            " / ".join(f"{b['reps'][r][m]['spearman']['value']:.3f}"
                                       for r in ("contextual", "static", "tfidf"))])
    rep.summary(summary)
    rep.save()
    return rep


#: The tour's small version: MiniLM, 600 entries, fewer resamples and redraws.
TOUR_SETTINGS = {"max_entries": 600, "n_main": 500, "n_redraws": 8, "n_sample": 300,
                 "n_permutations": 49, "n_boot": 100, "n_simplices": 500, "per_pos": False}


def tour_section(report: Report, *, seed: int = 0, device: str = "cpu",
                 models: tuple[str, ...] = ("minilm",)) -> None:
    """Add a compact WordNet section for the first of ``models`` to ``report``."""
    name = models[0] if models else "minilm"
    cfg = RelationalConfig(models=(name,), **TOUR_SETTINGS)  # type: ignore[arg-type]
    res = _model_result(name, cfg, report, device, seed)
    _add_model_sections(report, res, f"tour_relational_{_safe(name)}", compact=True)
    report.data["relational"] = {name: res}


COMMANDS = (
    Command("relational", "WordNet relational alignment: cosine vs path / Wu-Palmer similarity, "
            "with nulls (--models X [Y])", RelationalConfig, run, description=__doc__ or ""),
)
