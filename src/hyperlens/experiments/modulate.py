"""``hyperlens modulate``: steer a frozen model's residual stream with WordNet geometry.

For each model (default MiniLM and SmolLM2) and modulator (``lerp``, ``field``): WordNet
nouns are matched to the tokenizer and split by hypernym subtree; the WordNet geometry is
fitted on training anchors only; the modulator is trained on the model's task (SmolLM2:
definition -> lemma as next token; MiniLM: contrastive reverse dictionary) with the
frozen model unchanged, once per replicate seed, with the WordNet geometry and with each
control geometry (random, shuffled rows, PCA of the model's own static embeddings).
Everything is scored on held-out synsets: the relational correlation of definition
embeddings with Wu-Palmer and path similarity (lift over the plain model and over every
control, bootstrap intervals over synsets, t-intervals over seeds), task accuracy,
coherence (perplexity on held-out text for the causal model, embedding preservation for
the encoder), greedy generations side by side, an alpha sweep through 0.29154 and its
neighbours, and the per-layer alpha curves of training from several starting alphas.

Each trained run is a cell (:mod:`hyperlens.inject.modulate_cells`) computed by the
context's executor (in this process, or as Ray tasks with ``--executor ray``; a worker loads
the model and prepares the split once): its metrics are kept in ``OUT/cells.jsonl``, its
adapter and held-out embeddings under ``OUT/adapters/``, so a rerun with the same ``--out``
trains only the missing runs, and the later steps load the adapters they need from there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import (
    Check,
    Command,
    Config,
    RunContext,
    above,
    at_least,
    between,
    option,
    start_report,
)
from ..errors import ConfigError
from ..inject import modulate_cells as mc, modulate_train as mt
from ..inject.modulate_sections import (
    LAST,
    ceiling_section,
    fmt_ci as _fmt,
    pooled_table,
    task_gate,
)
from ..inject.modulator import MASSIVE_FACTOR
from ..report import Report, Section
from ..run import Executor, Ledger, LocalExecutor, pinned_threads, run_cells
from ..utils import stable_hash

__all__ = ["ModulateConfig", "run", "COMMANDS", "SWEEP", "SEED_PROMPTS", "tour_section"]

#: alpha sweep: the notebook's constant 0.29154 and its neighbours on both sides
SWEEP = (0.0, 0.05, 0.1, 0.2, 0.25, 0.27, 0.28, 0.29154, 0.30, 0.31, 0.35, 0.5)
#: the notebook's prompts (its T5 task prefixes dropped)
SEED_PROMPTS = (
    "The cat is a small domesticated carnivorous mammal with soft fur.",
    "The geometric structure of language is a universal attractor.",
    "A triangle is a polygon with three edges and three vertices.",
    "Seven is a prime number that comes after six and before eight.",
    "A dog is a domesticated descendant of the wolf, characterized by loyalty and trainability.",
)
_STATIC = {"glove-50d", "wordllama", "spacy-md"}
_KNOWN_LAYERS = {"minilm": 6, "smollm2": 30}
_DEFAULT_STEPS = {"minilm": 1000, "smollm2": 400}
#: the field modulator's clamp: its alphas live in (0, alpha_max]
FIELD_ALPHA_MAX = 0.35
_FIELD_ALPHA = Check(lambda v: 0.0 < v <= FIELD_ALPHA_MAX,
                     f"> 0 and <= {FIELD_ALPHA_MAX} (the field modulator's alpha_max)",
                     (0.0, FIELD_ALPHA_MAX + 0.05))
#: a starting alpha of 0 or 1 puts its logit at -inf / +inf, where it cannot train
_START_ALPHA = between(0, 1, closed=False)


@dataclass(frozen=True, kw_only=True)
class ModulateConfig(Config):
    """Options of ``hyperlens modulate``."""

    CONTEXT = frozenset({"seed", "device", "dtype", "executor"})
    RANDOM = ("the subtree split, the training anchors and held-out synsets, the random and "
              "shuffled control geometries and the bootstrap resamples (each trained run is "
              "seeded by its replicate seed)")

    models: tuple[str, ...] = option(
        ("minilm", "smollm2"), help="transformers to modulate (zoo name, HF id or path)",
        metavar="MODEL", unique=True)
    modulators: tuple[Literal["lerp", "field"], ...] = option(
        ("lerp", "field"), help="residual modulators to train", unique=True)
    seeds: tuple[int, ...] = option(
        (0, 1, 2), help="replicate seeds: each modulator is trained with the WordNet geometry "
                        "once per seed", check=at_least(0), unique=True)
    control_seeds: tuple[int, ...] = option(
        (0, 1, 2), help="replicate seeds of the runs with each control geometry", check=at_least(0),
        unique=True)
    controls: tuple[Literal["random", "shuffled", "pca", "lowrank", "meandiff"], ...] = option(
        ("random", "shuffled", "pca", "lowrank", "meandiff"),
        help="controls: geometries given to the same modulators (random, shuffled rows, PCA "
             "of the model's static embeddings) and interventions without geometry at the "
             "same blocks (lowrank: a trained low-rank adapter with the same objective; "
             "meandiff: a mean-difference steering vector, its multiplier chosen on the "
             "validation slice); none: WordNet only", min_items=0, unique=True)
    layers: tuple[int, ...] | None = option(
        None, help="blocks to modulate (none: every block of a model with at most 12, "
                   "else every third)", check=at_least(0))
    anchors: int = option(
        3000, help="training synsets (WordNet anchors) that fit the 64-d geometry; more than "
                  "the split offers are clamped with a warning", check=at_least(65))
    test: int = option(200, help="held-out synsets scored; more than the split offers are "
                                 "clamped with a warning", check=at_least(4))
    steps: int | None = option(
        None, help="most training steps per run (a cap: with a validation slice a run stops "
                   "on a plateau; none: minilm 1000, smollm2 400, other models 400)",
        check=at_least(1))
    val_synsets: int = option(
        128, help="training-side synsets (not anchors) whose task loss early stopping "
                  "watches (0: no validation, a fixed budget of --steps)", check=at_least(0))
    eval_every: int = option(20, help="steps between validation measurements",
                             check=at_least(1))
    patience: int = option(3, help="validation measurements without improvement before a "
                                   "run stops", check=at_least(1))
    batch_size: int = option(16, help="training batch size (the encoder's in-batch "
                                      "contrastive loss needs two)", check=at_least(2))
    lr: float = option(3e-3, help="learning rate of the projection and the experts",
                       check=above(0))
    alpha_lr: tuple[float, ...] = option(
        (0.03, 0.1, 0.3), help="Adam learning rates of alpha's logit (no weight decay) tried "
                               "on each modulator's first WordNet run; the one with the "
                               "lowest validation loss trains every run of that modulator, "
                               "WordNet and controls alike (one value: used as given)",
        check=above(0), unique=True)
    lowrank_lr: tuple[float, ...] = option(
        (3e-4, 1e-3, 3e-3), help="learning rates of the lowrank control tried on the "
                                  "validation slice (first control seed); the best trains "
                                  "every lowrank run (one value: used as given)",
        check=above(0), unique=True)
    alpha: float = option(0.1, help="starting alpha of lerp", check=_START_ALPHA)
    field_alpha: float = option(0.2, help="starting alpha of field (the seed's: 0.01)",
                                check=_FIELD_ALPHA)
    lerp_target: Literal["subspace", "residual"] = option(
        "subspace", help="length of lerp's target: the token's own residual component in the "
                         "subspace (subspace) or the whole residual's mean norm (residual, the "
                         "seed's, about sqrt(d_model/64) times longer)")
    lerp_subspace: Literal["no-massive", "all"] = option(
        "no-massive", help="where lerp's projection may live: every residual coordinate "
                           "except those with massive activations, fitted on definitions "
                           "pooled past a decoder's first token (no-massive), or every "
                           "coordinate of plainly mean-pooled definitions (all, the earlier "
                           "form, where a decoder's sink can hold most of the subspace)")
    field_gates: Literal["zero", "random"] = option(
        "zero", help="field's gate layers start at zero, so every gate starts at 1 and "
                     "training moves it (zero), or at random (random, the seed's)")
    alpha_starts: tuple[float, ...] = option(
        (0.01, 0.5), help="further lerp starting alphas (first replicate seed) for the alpha "
                          "curves", check=_START_ALPHA, min_items=0)
    field_alpha_starts: tuple[float, ...] = option(
        (0.01,), help="further field starting alphas (first replicate seed) for the alpha "
                     "curves", check=_FIELD_ALPHA, min_items=0)
    sweep: tuple[float, ...] = option(
        SWEEP, help="fixed alphas of the sweep (field: those up to its alpha_max)",
        check=between(0, 1), min_items=0)
    n_boot: int = option(1000, help="bootstrap resamples of the relational scores over held-out "
                         "synsets (the task and perplexity differences use 1000)",
                         check=at_least(1))
    n_coherence: int = option(100, help="held-out texts per coherence set", check=at_least(1))
    split_paths: Literal["all", "first"] = option(
        "all", help="hypernym paths whose ancestor at depth 4 defines a held-out subtree: all "
                    "(leak-free: synsets sharing any such ancestor stay together) or first "
                    "(the seed's rule; a second parent can reach across the split)")
    ceiling: bool = option(True, help="fit the linear metric-map ceiling on the plain "
                                      "embeddings (held-out subtrees and a random split)")
    data_dir: Path | None = option(None, help="folder with SST-2 (default: the usual places)")
    fresh: bool = option(False, help="ignore finished runs in OUT/cells.jsonl and train "
                                     "everything again")

    def check(self) -> None:
        searched = (("--alpha-lr", self.alpha_lr), ("--lowrank-lr", self.lowrank_lr
                                                   if "lowrank" in self.controls else ()))
        for opt, rates in searched:
            if len(rates) > 1 and self.val_synsets == 0:
                raise ConfigError(f"{opt}: choosing among several rates needs the validation "
                                  "slice; give one rate or --val-synsets above 0.")
        for m in self.models:
            if m.lower() in _STATIC:
                raise ConfigError(f"--models: {m!r} is a static word-vector model; modulate "
                                  "needs a transformer (e.g. minilm, smollm2).")
            if self.layers is not None and m.lower() in _KNOWN_LAYERS:
                mc.check_layers(self.layers, m, _KNOWN_LAYERS[m.lower()])


def cell_fingerprint(config: ModulateConfig, ctx: RunContext) -> str:
    """Hash of what changes a trained run's numbers besides its own key (model, modulator,
    geometry, starting alpha, seed): the sizes, the training options, the run's seed, the
    kind of device and the precision."""
    keep = ("layers", "anchors", "test", "steps", "batch_size", "lr",
            "split_paths", "lerp_target", "field_gates", "val_synsets", "eval_every",
            "patience")
    d = {k: v for k, v in config.to_dict().items() if k in keep}
    return stable_hash(d, ctx.seed, ctx.torch_device.type, ctx.resolve_dtype(), length=12)


@dataclass
class _Model:
    """One model's runs and scores, shared by the report's sections."""

    s: mt.Setup
    steps: int
    sims: dict[str, np.ndarray]
    out: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    specs: dict[str, mt.RunSpec] = field(default_factory=dict)
    reps: dict[str, Any] = field(default_factory=dict)
    task: dict[str, dict[str, Any]] = field(default_factory=dict)
    table: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    alpha_lr: dict[str, float] = field(default_factory=dict)  # chosen per modulator

    def main_keys(self, kinds: tuple[str, ...]) -> dict[str, str]:
        """The first WordNet run of each modulator (first replicate seed, default alpha)."""
        return {k: next(r["key"] for r in self.runs if r["kind"] == k
                        and r["geometry"] == "wordnet") for k in kinds}

    def adapter(self, key: str) -> Any:
        """The trained adapter of run ``key``, loaded from ``OUT/adapters``."""
        return mc.load_trained(self.s, self.out, self.specs[key])


def run(config: ModulateConfig, ctx: RunContext | None = None) -> Report:
    """Train and score the modulators of every model; write the report folder."""
    from ..data import wordnet_reader

    ctx = ctx or RunContext()
    rep = start_report(
        "modulate", config, ctx,
        description="Residual and field modulators with WordNet geometry, on held-out synsets.")
    wordnet_reader()  # the installation steps before any model loads
    ledger = Ledger(Path(rep.out_dir) / "cells.jsonl", cell_fingerprint(config, ctx),
                    fresh=config.fresh)
    summary: list[list[Any]] = []
    with ctx.make_executor() as executor:
        rep.data["executor"] = executor.describe()
        for name in config.models:
            spec, s = _load_setup(rep, config, ctx, name)
            try:
                m = _train_runs(rep, config, s, spec, Path(rep.out_dir), ledger, executor,
                                show_progress=None if ctx.progress else False)
                summary += _score_model(rep, config, m, ctx.seed)
            finally:
                mc.release(spec)
    ledger.report_into(rep)
    rep.summary(summary)
    rep.save()
    return rep


def _score_model(rep: Report, config: ModulateConfig, m: _Model, seed: int) -> list[list[Any]]:
    """Every section of one model's trained runs; returns its summary rows."""
    name = m.s.name
    with rep.timer(f"{name}:relational"):
        m.table, m.raw, probe = mt.relational_table(
            m.reps, m.s.test, base="plain", n_boot=config.n_boot, seed=seed,
            similarities=m.sims)
    rep.data[f"{name}:relational_probe"] = {
        k: {meas: probe["reps"][k][meas] for meas in ("path", "wup")}
        | {"chain_decay": probe["reps"][k]["chain_decay"], "bands": probe["reps"][k]["bands"]}
        for k in m.reps
    }
    rep.data[f"{name}:split"] = m.s.split_summary
    rep.data[f"{name}:token_coverage"] = m.s.coverage
    gate = task_gate(rep, config, m, seed)
    sec = _relational_section(rep, m)
    summary = pooled_table(sec, config, m, seed, gate)
    if "plain" + LAST in m.reps:
        pooled_table(sec, config, m, seed, gate, suffix=LAST)
    if config.ceiling:
        summary += ceiling_section(rep, config, m, seed, threads=_threads())
    _task_section(rep, m, seed)
    _training_section(rep, config, m)
    summary += _coherence_section(rep, config, m, seed)
    for kind in config.modulators:
        _sweep_section(rep, config, m, kind, seed)
    rep.data[f"{name}:runs"] = [{k: v for k, v in r.items() if k != "history"} for r in m.runs]
    return summary


def _load_setup(rep: Report, config: ModulateConfig, ctx: RunContext,
                name: str) -> tuple[mc.SetupSpec, mt.Setup]:
    """Load ``name`` on the context's device and precision and prepare its runs; the set-up
    is registered for the cells that run in this process."""
    spec = mc.SetupSpec(
        model=name, device=str(ctx.torch_device), dtype=ctx.resolve_dtype(),
        anchors=config.anchors, test=config.test, layers=config.layers, split_seed=ctx.seed,
        control_seeds=tuple((c, ctx.seed_for("control", c)) for c in config.controls
                            if c in mt.GEOMETRY_CONTROLS),
        split_paths=config.split_paths, lerp_target=config.lerp_target,
        field_gates=config.field_gates, val=config.val_synsets,
        lerp_subspace=config.lerp_subspace)
    with rep.timer(f"{name}:load+prepare"):
        s = mc.prepare_setup(spec, _threads())
    mc.register(spec, s)
    used = {"anchors": len(s.train), "test": len(s.test)}
    for key, asked in (("anchors", config.anchors), ("test", config.test)):
        if used[key] < asked:
            print(f"hyperlens modulate: warning: --{key} {asked} asks for more synsets than "
                  f"{name}'s split offers; using {used[key]:,}.", file=sys.stderr)
    rep.data[f"{name}:synsets"] = {k: {"asked": getattr(config, k), "used": v}
                                   for k, v in used.items()}
    rep.data[f"{name}:lerp subspace"] = _subspace_facts(config, s)
    return spec, s


def _subspace_text(f: dict[str, Any]) -> str:
    if f.get("mode") != "no-massive":
        return "lerp's projection may use every residual coordinate."
    dims = f.get("massive_dims", [])
    listed = ": " + ", ".join(map(str, dims)) if dims else ""
    return (f"lerp's projection leaves out the {len(dims)} of {f.get('d_model')} residual "
            "coordinates with massive activations (root mean square over "
            f"{MASSIVE_FACTOR:g} times the median coordinate's at a modulated block{listed}), "
            "which pass through unchanged.")


def _subspace_facts(config: ModulateConfig, s: mt.Setup) -> dict[str, Any]:
    """Where lerp's projection lives: the option and the coordinates left out."""
    out = [] if s.lerp_dims is None else [int(i) for i in (~s.lerp_dims).nonzero().flatten()]
    return {"mode": config.lerp_subspace, "massive_dims": out,
            "d_model": int(s.handle.hidden_size)}


def _threads() -> int:
    """The thread count of every set-up and trained run (this process's)."""
    import torch

    return max(1, torch.get_num_threads())


def _train_runs(rep: Report, config: ModulateConfig, s: mt.Setup, spec: mc.SetupSpec,
                out: Path, ledger: Ledger, executor: Executor,
                show_progress: bool | None = False) -> _Model:
    """The plain model's scores, then every planned run trained and scored as a cell of
    ``ledger`` (those already there are read back: metrics from the ledger, embeddings from
    ``out/adapters``)."""
    name = s.name
    steps = int(config.steps or _DEFAULT_STEPS.get(name, 100))
    with rep.timer(f"{name}:targets+plain"), pinned_threads(_threads()):
        m = _Model(s, steps, mt.similarity_targets(s.test), out)
        ev = mt.evaluate(s, None, s.test)
        m.reps["plain"], m.task["plain"] = ev["reps"], ev
        if "reps_last" in ev:
            m.reps["plain" + LAST] = ev["reps_last"]
    a0 = {"lerp": config.alpha, "field": config.field_alpha}
    kw: dict[str, Any] = {"steps": steps, "batch_size": config.batch_size, "lr": config.lr,
                          "out": out, "threads": _threads(), "eval_every": config.eval_every,
                          "patience": config.patience}
    chosen: dict[str, float] = {k: config.alpha_lr[0] for k in config.modulators}
    chosen["lowrank"] = config.lowrank_lr[0]
    trial: list[mt.RunSpec] = []
    if len(config.alpha_lr) > 1 and s.val:
        trial = _lerp_in(spec, mt.plan_alpha_lr(config.modulators, seed=config.seeds[0],
                                                alpha0=a0, grid=config.alpha_lr))
    if len(config.lowrank_lr) > 1 and s.val and "lowrank" in config.controls:
        trial += mt.plan_lowrank_lr(seed=config.control_seeds[0], grid=config.lowrank_lr)
    if trial:
        with rep.timer(f"{name}:alpha_lr"):
            run_cells(mc.run_cells_for(spec, trial, **kw), ledger, executor,
                      desc=f"modulate {name} alpha lr", show_progress=show_progress)
        chosen |= _choose_rates(rep, config, name, spec, trial, ledger)
    plan = _lerp_in(spec, mt.plan_runs(
        config.modulators, seeds=config.seeds, controls=config.controls,
        control_seeds=config.control_seeds, alpha0=a0,
        alpha_starts={"lerp": config.alpha_starts, "field": config.field_alpha_starts},
        alpha_lr=chosen, lowrank_lr=chosen["lowrank"]))
    plan += [r for r in trial if r not in plan]  # rates not chosen: reported beside it
    m.alpha_lr = chosen
    cells = mc.run_cells_for(spec, plan, **kw)
    with rep.timer(f"{name}:train"):
        run_cells(cells, ledger, executor, desc=f"modulate {name}", show_progress=show_progress)
    rep.timings.update(mc.pop_timings())  # the runs trained in this process, one by one
    for run in plan:
        result = ledger.get(mc.cell_key(spec, run))
        assert result is not None  # run_cells recorded every cell
        row, ev = mc.run_record(s, out, run, result)
        m.specs[run.key] = run
        m.runs.append(row)
        m.reps[run.key], m.task[run.key] = ev["reps"], ev
        if "reps_last" in ev:
            m.reps[run.key + LAST] = ev["reps_last"]
    return m


def _lerp_in(spec: mc.SetupSpec, runs: list[mt.RunSpec]) -> list[mt.RunSpec]:
    """``runs`` with lerp's runs in the set-up's subspace (it names their cells)."""
    return [replace(r, subspace=spec.lerp_subspace) if r.kind == "lerp" else r for r in runs]


_PLAIN_ROW = {"key": "plain", "kind": "-", "geometry": "plain", "control": "plain", "seed": "-",
              "alpha0": "-", "alpha_lr": "-"}


def _choose_rates(rep: Report, config: ModulateConfig, name: str, spec: mc.SetupSpec,
                  trial: list[mt.RunSpec], ledger: Ledger) -> dict[str, float]:
    """Per modulator, the alpha learning rate of ``trial`` whose run reached the lowest
    validation loss, and for ``lowrank`` its learning rate (the earlier rate of the grid on
    a tie); recorded in the report."""
    chosen: dict[str, float] = {}
    table: dict[str, Any] = {}
    for kind in [*config.modulators, "lowrank"]:
        rate = (lambda r: r.lr) if kind == "lowrank" else (lambda r: r.alpha_lr)
        done = [(rate(r), ledger.get(mc.cell_key(spec, r))) for r in trial if r.kind == kind]
        if not done:
            continue
        chosen[kind], best = mc.best_rate(done)
        table[kind] = {"grid": [g for g, _ in done], "best_val_loss": best,
                       "chosen": chosen[kind]}
    rep.data[f"{name}:alpha_lr"] = table
    return chosen


def _relational_section(rep: Report, m: _Model) -> Section:
    s = m.s
    sp = s.split_summary
    paths = ("every hypernym path" if sp.get("subtree_paths", "all") == "all"
             else "the first hypernym path only")
    sec = rep.section(
        f"{s.name}: relational alignment on held-out synsets",
        f"{sp['n_train'] + sp['n_test']:,} WordNet nouns match single tokens; split by "
        f"hypernym subtree (depth {sp['subtree_depth']}, ancestors on "
        f"{paths}: "
        f"{sp['n_train_subtrees']} training and {sp['n_test_subtrees']} held-out groups, "
        f"{sp['shared_subtrees']} shared; {sp.get('test_sharing_an_ancestor', 0)} held-out "
        "synsets share an ancestor at that depth with a training synset on some path). "
        f"Of the {s.coverage.get('tokens', 0):,} tokens of the held-out prompts, "
        f"{100 * s.coverage.get('anchor', 0.0):.1f} % carry a WordNet anchor vector, "
        f"{100 * s.coverage.get('knn_mix', 0.0):.1f} % a kNN mix of anchor vectors and "
        f"{100 * s.coverage.get('none', 0.0):.1f} % none (left untouched). "
        f"{len(s.train)} training anchors fit the geometry; {len(s.test)} held-out synsets "
        f"are scored. Modulated blocks: {s.layers}. At most {m.steps} training steps per run "
        "(see the training section for where each stopped). Lift = "
        "modulated minus plain model on the same bootstrap draw of held-out synsets (95 % "
        "percentile interval); 'vs WordNet' columns compare each control with the WordNet "
        "run of the same seed.",
    )
    for meas in ("wup", "path"):
        rows = []
        for r in [_PLAIN_ROW, *m.runs]:
            t = m.table[meas][r["key"]]
            rows.append([
                r["kind"], r["control"], r["alpha0"], r["seed"], round(t["pearson"], 4),
                _fmt(t["lift_pearson"], t["lift_pearson_lo"], t["lift_pearson_hi"]),
                round(t["spearman"], 4),
                _fmt(t["lift_spearman"], t["lift_spearman_lo"], t["lift_spearman_hi"]),
                round(t["mantel_p_pearson"], 4),
            ])
        sec.table(
            f"{meas}: Pearson / Spearman of definition-embedding cosines",
            ["modulator", "geometry", "alpha0", "seed", "Pearson", "lift (CI)", "Spearman",
             "lift (CI)", "Mantel p"],
            rows,
        )
    return sec


def _task_section(rep: Report, m: _Model, seed: int) -> None:
    from ..functional.stats import paired_bootstrap

    s = m.s
    rows = []
    base = m.task["plain"]
    for r in [_PLAIN_ROW, *m.runs]:
        sc = m.task[r["key"]]
        dt = (paired_bootstrap(sc["top1"], base["top1"], n_boot=1000, seed=seed)
              if r["key"] != "plain" else None)
        rows.append([
            r["kind"], r["control"], r["alpha0"], r["seed"], round(float(sc["top1"].mean()), 4),
            round(float(sc["top10"].mean()), 4),
            "" if dt is None else _fmt(dt.value, dt.lo, dt.hi),
        ])
    label = "next-token lemma accuracy" if s.causal else "reverse-dictionary recall"
    rep.section(
        f"{s.name}: task on held-out synsets ({label})",
        "Top-1 / top-10 on held-out synsets; the difference to the plain model is a paired "
        "bootstrap over synsets." + ("" if s.causal else " Candidates: all held-out lemmas."),
    ).table(
        "Task",
        ["modulator", "geometry", "alpha0", "seed", "top-1", "top-10", "top-1 - plain [CI]"],
        rows,
    )


def _training_section(rep: Report, config: ModulateConfig, m: _Model) -> None:
    """Training loss and the alpha curves (training time is under the report's timings)."""
    s, name = m.s, m.s.name
    sec = rep.section(
        f"{name}: training and alpha",
        "alpha per modulated block during training (lerp: sigmoid(theta); field: mean over "
        "experts of alpha_max * sigmoid(theta)). Training time per run is under the report's "
        f"timings ('{name}:train:<run>' for the runs trained in this process, "
        f"'{name}:train' for all of them). " + _subspace_text(rep.data.get(
            f"{name}:lerp subspace", {})),
    )
    def stop(r: dict[str, Any]) -> str:
        if r["kind"] == "meandiff":
            return "not trained"
        if not r.get("val_curve"):
            return "fixed budget"
        return "plateau" if r.get("stopped_early") else "step cap"

    sec.table(
        "Runs",
        ["run", "steps", "stopped at", "kept step", "loss (first)", "loss (last 5)",
         "best validation loss", "final alpha per block",
         "max |alpha change| over the last quarter of steps"],
        [[r["key"], r.get("steps_trained", len(r["history"])), stop(r), r.get("kept_step"),
          _round(r.get("loss_first")), _round(r.get("loss_last")),
          round(min(v for _, v in r["val_curve"]), 4) if r.get("val_curve") else None,
          ", ".join(f"{a:.3f}" for a in r["final_alpha"]) or "-", _round(r.get("alpha_drift"))]
         for r in m.runs],
        note=f"Early stopping watches the task loss on {len(s.val)} training-side synsets "
             f"that are not anchors, every {config.eval_every} steps, with patience "
             f"{config.patience}; 'plateau' runs stopped there, 'step cap' runs were still "
             "improving when the cap ended them; the kept step's adapter is the one scored."
             if s.val else "",
    )
    curves = [{"label": r["key"], "x": [p[0] for p in r["val_curve"]],
               "y": [p[1] for p in r["val_curve"]]}
              for r in m.runs if r.get("val_curve") and r["seed"] == config.seeds[0]]
    if curves:
        sec.plot(f"{name}_validation.png", {
            "kind": "line", "title": f"{name}: validation task loss (seed {config.seeds[0]})",
            "xlabel": "step", "ylabel": "task loss", "series": curves})
    trained = [r for r in m.runs if r["kind"] != "meandiff"]
    n_plateau = sum(stop(r) == "plateau" for r in trained)
    rep.data[f"{name}:plateau"] = {"runs": len(trained), "plateau": n_plateau}
    _choice_tables(sec, m)
    first = config.seeds[0]
    for kind in config.modulators:
        rs = [r for r in m.runs
              if r["kind"] == kind and r["geometry"] == "wordnet" and r["seed"] == first]
        series = [
            {"label": f"a0={r['alpha0']:g} alpha lr={r['alpha_lr']:g} block {blk}",
             "x": list(range(1, len(r["history"]) + 1)),
             "y": [h[f"alpha.{blk}"] for h in r["history"]]}
            for r in rs for blk in s.layers
        ]
        sec.plot(f"{name}_{kind}_alpha.png", {
            "kind": "line", "title": f"{name} {kind}: alpha during training",
            "xlabel": "step", "ylabel": "alpha", "series": series,
            "hlines": [{"y": 0.29154, "label": "0.29154"}],
        })
        finals = [r for r in m.runs if r["kind"] == kind and r["geometry"] == "wordnet"]
        sec.plot(f"{name}_{kind}_alpha_depth.png", {
            "kind": "line", "title": f"{name} {kind}: final alpha by depth",
            "xlabel": "block", "ylabel": "alpha",
            "series": [{"label": r["key"], "x": s.layers, "y": r["final_alpha"]}
                       for r in finals],
            "hlines": [{"y": 0.29154, "label": "0.29154"}],
        })


def _round(v: Any, nd: int = 4) -> Any:
    """``v`` rounded, or ``None`` when missing or not a number (NaN: nothing to show)."""
    return round(float(v), nd) if isinstance(v, (int, float)) and v == v else None


def _choice_tables(sec: Section, m: _Model) -> None:
    """What the validation slice chose: alpha's learning rate per modulator and the
    mean-difference multiplier."""
    rows = []
    for r in m.runs:
        if r["kind"] in mt.NO_ALPHA or not r.get("val_curve"):
            continue
        same = [q for q in m.runs if q["kind"] == r["kind"] and q["geometry"] == "wordnet"
                and q["seed"] == r["seed"] and q["alpha0"] == r["alpha0"]]
        if len({q["alpha_lr"] for q in same}) < 2 or r["geometry"] != "wordnet":
            continue
        rows.append([r["kind"], r["alpha_lr"], round(min(v for _, v in r["val_curve"]), 4),
                     r.get("steps_trained"), "chosen" if m.alpha_lr.get(r["kind"]) ==
                     r["alpha_lr"] else ""])
    if rows:
        sec.table("Alpha learning rate chosen on the validation slice",
                  ["modulator", "alpha lr", "best validation loss", "steps", ""], rows,
                  note="Each modulator's first WordNet run (first replicate seed, default "
                       "starting alpha) at each rate; the chosen rate trains every run of "
                       "that modulator, WordNet and geometry controls alike.")
    low = [r for r in m.runs if r["kind"] == "lowrank" and r.get("val_curve")]
    if len({r["lr"] for r in low if r["seed"] == low[0]["seed"]} if low else ()) > 1:
        sec.table("Learning rate of the lowrank control chosen on the validation slice",
                  ["lr", "best validation loss", "steps", ""],
                  [[r["lr"], round(min(v for _, v in r["val_curve"]), 4),
                    r.get("steps_trained"), "chosen" if m.alpha_lr.get("lowrank") == r["lr"]
                    else ""] for r in low if r["seed"] == low[0]["seed"]])
    md = [r for r in m.runs if r["kind"] == "meandiff" and r.get("scale_curve")]
    for r in md:
        sec.table("Mean-difference multiplier chosen on the validation slice",
                  ["multiplier", "validation loss", ""],
                  [[c, round(v, 4), "chosen" if c == r["scale"] else
                    "plain model (reference)" if c == 0 else ""]
                   for c, v in r["scale_curve"]])


def _coherence_texts(test: list[Any], n: int, data_dir: Path | None) -> dict[str, list[str]]:
    from ..data import load as load_data

    out: dict[str, list[str]] = {}
    try:
        ds = load_data("sst2", split="dev", data_dir=None if data_dir is None else str(data_dir))
        out["sst2"] = list(ds.texts[:n])
    except Exception:  # noqa: BLE001 - optional data: fall back to the offline default
        ds = load_data("rotten-tomatoes")
        out["rotten-tomatoes"] = list(ds.texts[:n])
    ex = [e for m in test for e in m.examples][:n]
    if ex:
        out["wordnet-examples"] = ex
    return out


def _coherence_section(rep: Report, config: ModulateConfig, m: _Model,
                       seed: int) -> list[list[Any]]:
    """Held-out text with and without each modulator's first WordNet run."""
    import torch

    from ..functional.stats import paired_bootstrap

    s, name = m.s, m.s.name
    texts = _coherence_texts(s.test, config.n_coherence, config.data_dir)
    h = s.handle
    first = config.seeds[0]
    summary: list[list[Any]] = []
    rows = []
    keys = m.main_keys(config.modulators)
    ads = {kind: m.adapter(key) for kind, key in keys.items()}
    for kind, ad in ads.items():
        for tname, tx in texts.items():
            with rep.timer(f"{name}:coherence"):
                if s.causal:
                    a, b = mt.nll_per_text(h, tx, ad), mt.nll_per_text(h, tx, None)
                    d = paired_bootstrap(a, b, n_boot=1000, seed=seed)
                    rows.append([kind, tname, len(tx), round(float(np.exp(b.mean())), 3),
                                 round(float(np.exp(a.mean())), 3), _fmt(d.value, d.lo, d.hi)])
                    summary.append([f"{name} {kind}: perplexity on {tname}",
                                    f"{np.exp(b.mean()):.2f} -> {np.exp(a.mean()):.2f}"])
                else:
                    x0, x1 = mt.encode(h, tx), mt.encode(h, tx, ad)
                    c = torch.nn.functional.cosine_similarity(x0, x1, dim=-1).numpy()
                    rows.append([kind, tname, len(tx), round(float(c.mean()), 4),
                                 round(float(c.min()), 4), ""])
    sec = rep.section(
        f"{name}: coherence on held-out text",
        (f"Perplexity of held-out text with and without the trained modulator (seed {first}); "
         "the change in mean token NLL is a paired bootstrap over texts."
         if s.causal else
         "Cosine between plain and modulated sentence embeddings of held-out text "
         "(1 = unchanged)."),
    )
    cols = (["modulator", "texts", "n", "plain ppl", "modulated ppl", "delta NLL [CI]"]
            if s.causal else ["modulator", "texts", "n", "mean cosine", "min cosine", ""])
    sec.table("Coherence", cols, rows)
    if s.causal:
        gen_rows = []
        with rep.timer(f"{name}:generate"):
            for kind, ad in ads.items():
                for p in SEED_PROMPTS:
                    plain, mod = mt.generate_pair(h, p, ad)
                    gen_rows.append([kind, p, plain.strip(), mod.strip(),
                                     "same" if plain == mod else "differs"])
        rep.section(
            f"{name}: greedy generations",
            "24 new tokens, greedy, plain model vs trained modulator (WordNet geometry, "
            f"seed {first}).",
        ).table("Generations", ["modulator", "prompt", "plain", "modulated", ""], gen_rows)
    return summary


def _sweep_section(rep: Report, config: ModulateConfig, m: _Model, kind: str,
                   seed: int) -> None:
    """Every block of the first WordNet run at each fixed alpha of ``--sweep``."""
    s, name = m.s, m.s.name
    ad = m.adapter(m.main_keys((kind,))[kind])
    amax = 1.0 if kind == "lerp" else float(ad.config.alpha_max)
    values = [float(a) for a in config.sweep if float(a) <= amax]
    if not values:
        return
    with rep.timer(f"{name}:sweep"):
        evs = mt.evaluate_at_alphas(s, ad, values)
        reps = {"plain": m.reps["plain"]} | {k: ev["reps"] for k, ev in evs.items()}
        table, raw, _ = mt.relational_table(reps, s.test, base="plain", n_boot=config.n_boot,
                                            seed=seed, similarities=m.sims)
    acc = {k: float(ev["top1"].mean()) for k, ev in evs.items()}
    keys = list(evs)
    sec = rep.section(
        f"{name}: alpha sweep ({kind}, trained seed-{config.seeds[0]} modulator, every block "
        "at one alpha)",
        "Pearson of held-out definition-embedding cosines with WordNet similarity at fixed "
        "alphas, 95 % bootstrap intervals over held-out synsets. 'bump at 0.29154' is the "
        "value there minus the mean of its two neighbours, on the same draws: a special "
        "constant would stand out from that local null.",
    )
    sec.plot(f"{name}_{kind}_sweep.png", {
        "kind": "line", "title": f"{name} {kind}: relational correlation vs alpha",
        "xlabel": "alpha", "ylabel": "Pearson",
        "series": [{"label": f"{meas} Pearson", "x": values,
                    "y": [table[meas][k]["pearson"] for k in keys],
                    "lo": [table[meas][k]["pearson_lo"] for k in keys],
                    "hi": [table[meas][k]["pearson_hi"] for k in keys]}
                   for meas in ("path", "wup")],
        "hlines": [{"y": table["path"]["plain"]["pearson"], "label": "plain (path)"}],
    })

    def ci(meas: str, k: str) -> str:
        t = table[meas][k]
        return f"{t['pearson']:.4f} [{t['pearson_lo']:.4f}, {t['pearson_hi']:.4f}]"

    sec.table(
        "Sweep",
        ["alpha", "path Pearson [CI]", "path lift over plain [CI]", "wup Pearson [CI]",
         "task top-1"],
        [[k, ci("path", k), _fmt(table["path"][k]["lift_pearson"],
                                 table["path"][k]["lift_pearson_lo"],
                                 table["path"][k]["lift_pearson_hi"]),
          ci("wup", k), round(acc[k], 4)] for k in keys],
    )
    rep.data[f"{name}:{kind}:sweep"] = {
        "alphas": values,
        "table": {meas: {k: table[meas][k] for k in ["plain", *keys]} for meas in ("path", "wup")},
        "top1": acc,
    }
    if "0.29154" in keys and 0 < keys.index("0.29154") < len(keys) - 1:
        i = keys.index("0.29154")
        rows = []
        for meas in ("path", "wup"):
            r = raw[meas]
            nb = 0.5 * (r[keys[i - 1]][:, 0] + r[keys[i + 1]][:, 0])
            rows.append([meas, keys[i - 1], keys[i + 1],
                         _fmt(*mt.paired_diff(r[keys[i]][:, 0], nb))])
        sec.table("Is 0.29154 special?",
                  ["measure", "left neighbour", "right neighbour",
                   "bump = value - mean(neighbours) [CI]"], rows)


def tour_section(report: Report, *, seed: int = 0, device: str = "cpu") -> None:
    """A compact modulate section for the tour: MiniLM, lerp, WordNet against shuffled rows.

    400 training anchors, 150 held-out synsets, 40 steps per geometry, one replicate (the
    tour's seed), float32; the lift in path-similarity Pearson on held-out synsets with a
    bootstrap interval, and the task recall. Well under a minute on a quiet 2-core machine.
    """
    import tempfile

    config = ModulateConfig(models=("minilm",), modulators=("lerp",), seeds=(seed,),
                            controls=("shuffled",), control_seeds=(seed,), anchors=400,
                            test=150, steps=40, alpha_starts=(), n_boot=100, alpha_lr=(0.3,),
                            val_synsets=0, ceiling=False)  # the tour's budget: 40 steps
    ctx = RunContext(seed=seed, device=device, dtype="float32")
    spec, s = _load_setup(report, config, ctx, "minilm")
    with tempfile.TemporaryDirectory(prefix="hyperlens-modulate-") as tmp:
        try:
            m = _train_runs(report, config, s, spec, Path(tmp),
                            Ledger(None, cell_fingerprint(config, ctx)), LocalExecutor())
        finally:
            mc.release(spec)
    table, raw, _ = mt.relational_table(m.reps, s.test, base="plain", n_boot=config.n_boot,
                                        seed=ctx.seed, similarities=m.sims, n_perm=99)
    key = {r["geometry"]: r["key"] for r in m.runs}
    t = table["path"]
    acc = {g: float(m.task[k]["top1"].mean()) for g, k in key.items()}
    alphas = {r["geometry"]: ", ".join(f"{a:.2f}" for a in r["final_alpha"]) for r in m.runs}
    d = mt.paired_diff(raw["path"][key["wordnet"]][:, 0], raw["path"][key["shuffled"]][:, 0])
    sec = report.section(
        "Residual modulator (lerp) on held-out WordNet synsets",
        "MiniLM with a trained lerp modulator on every block (contrastive reverse "
        "dictionary, 40 steps), WordNet geometry from 400 training synsets against the same "
        f"vectors on shuffled tokens; Pearson of {len(s.test)} held-out definition "
        "embeddings' cosines with WordNet path similarity (95 % bootstrap over synsets). "
        "`hyperlens modulate` runs the full experiment.",
    )
    sec.table(
        "Held-out relational correlation",
        ["geometry", "Pearson", "lift over plain [CI]", "recall@1", "final alpha per block"],
        [["plain", round(t["plain"]["pearson"], 4), "",
          round(float(m.task["plain"]["top1"].mean()), 4), ""]]
        + [[g, round(t[key[g]]["pearson"], 4),
            _fmt(t[key[g]]["lift_pearson"], t[key[g]]["lift_pearson_lo"],
                 t[key[g]]["lift_pearson_hi"]), round(acc[g], 4), alphas[g]]
           for g in ("wordnet", "shuffled")],
    )
    sec.metrics({"wordnet_minus_shuffled": {"value": d[0], "lo": d[1], "hi": d[2]}})


COMMANDS = (
    Command("modulate", "steer a frozen model's residual stream with WordNet geometry (lerp / "
            "field), against controls", ModulateConfig, run, description=__doc__ or ""),
)
