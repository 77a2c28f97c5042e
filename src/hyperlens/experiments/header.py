"""``hyperlens header``: does a semantic header (codes as pseudo-tokens) help a frozen LM?

Text -> MiniLM -> ternary HDC code -> :class:`~hyperlens.inject.header.SemanticHeader` ->
``k`` pseudo-tokens placed just before the answer cue of a frozen causal LM's prompt
(``...Text: {text}`` + header + ``\\nSentiment:``). One split (a training subset of the
task's train split, with a held-out slice of it for every choice of hyperparameters or
checkpoint; evaluation on all 872 SST-2 dev sentences, or a fixed AG News test subset),
several seeds (each redraws the HDC projection, initialisations and batch order).

Stage A (cached, no gradients through the LM): the original classifier head on the
prompt's last hidden state (the baseline), logistic regression on it, one probe per
layer, MiniLM float -> logistic, HDC -> logistic, late fusion [LM state; MiniLM] -> head,
and the LM's own zero-shot answer (verbaliser logits), raw and calibrated on training data.

Stage B (trained through the frozen LM): HDC header + head; float (MiniLM) header + head;
shuffled HDC (codes permuted across texts); random ternary codes; input-independent prompt
tuning with the same ``k``; on the LM side without a head (the LM answers with the label
word): a static prompt vs an HDC header gated to start exactly at that prompt; and a
test-time ablation (the trained HDC headers, head side and LM side, fed shuffled codes).

Cost: under causal masking the header cannot change any position before it, so each
prefix's keys and values are computed once (:class:`~hyperlens.inject.prefix_cache.PrefixCache`,
kept on disk) and training runs only the pseudo-tokens and the cue; inserting the header at
block ``--insert-layer`` also caches every layer below it. ``--placement prefix`` runs the
seed's full-depth prefix header instead (every position changes, nothing is cached).
Finished (arm, seed) cells are appended to ``OUT/cells.jsonl``; a rerun resumes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..functional.stats import bootstrap_ci, mcnemar, paired_bootstrap, t_interval
from ..report import Report
from .header_core import (
    ARM_TITLES,
    ARMS_B,
    LR_FAMILIES,
    PROMPTS,
    HeaderRun,
    HeaderRunConfig,
    label_names_of,
    set_threads,
    stage_a,
    stage_b,
    verbalizer_words,
)
from .options import nonnegative_int, positive_float, positive_int, unit_fraction

__all__ = ["COMMAND", "HELP", "add_arguments", "main", "validate", "HeaderRunConfig",
           "run_header", "ARMS_B", "PROMPTS", "LR_FAMILIES", "tour_section", "check_inputs",
           "verbalizer_words"]

COMMAND = "header"
HELP = "semantic header: HDC codes as pseudo-tokens for a frozen causal LM, with controls"


# --------------------------------------------------------------------------- summary
def summarise(run: HeaderRun) -> dict[str, Any]:
    cfg = run.cfg
    base = run.correct.get("baseline", {})
    seeds = cfg.seeds
    table: dict[str, Any] = {}
    for arm, per in run.correct.items():
        accs = [float(per[s].mean()) for s in seeds if s in per]
        if not accs:
            continue
        rec: dict[str, Any] = {"per_seed": accs}
        rec["acc"] = (t_interval(accs) if len(set(accs)) > 1 else
                      bootstrap_ci(per[seeds[0]].astype(float), n_boot=cfg.n_boot)).as_dict()
        if base and arm != "baseline":
            diffs = [paired_bootstrap(per[s].astype(float), base[s].astype(float),
                                      n_boot=cfg.n_boot, seed=s) for s in seeds
                     if s in per and s in base]
            mc = [mcnemar(per[s], base[s]) for s in seeds if s in per and s in base]
            rec["vs_baseline"] = [d.as_dict() for d in diffs]
            rec["mcnemar_p"] = [float(p) for _, p in mc]
        table[arm] = rec
    return table


def beats(run: HeaderRun, a: str, b: str, margin: float = 0.0) -> tuple[bool, list[Any]]:
    """In every seed: mean(a) - mean(b) >= margin and the paired 95 % interval above 0."""
    ca, cb = run.correct.get(a, {}), run.correct.get(b, {})
    res = []
    ok = bool(ca) and bool(cb)
    for s in run.cfg.seeds:
        if s not in ca or s not in cb:
            ok = False
            continue
        d = paired_bootstrap(ca[s].astype(float), cb[s].astype(float), n_boot=run.cfg.n_boot,
                             seed=s)
        res.append(d)
        ok = ok and d.value >= margin and d.lo > 0
    return ok, res


def verdict(run: HeaderRun) -> str:
    if "hdc" not in run.correct or "baseline" not in run.correct:
        return "not decided: the HDC header arm or the baseline did not run."
    ok_base, d_base = beats(run, "hdc", "baseline", margin=0.02)
    ok_shuf, _ = beats(run, "hdc", "shuffled")
    ok_prompt, _ = beats(run, "hdc", "prompt")
    ok_fusion, _ = beats(run, "hdc", "fusion")
    mean_d = float(np.mean([d.value for d in d_base])) if d_base else float("nan")
    parts = [f"HDC header vs baseline: {mean_d:+.3f} mean over seeds "
             f"(per-seed paired 95 % CIs: "
             + ", ".join(f"[{d.lo:+.3f}, {d.hi:+.3f}]" for d in d_base) + ")."]
    helps = ok_base and ok_shuf and ok_prompt
    if helps:
        parts.append("The header HELPS by the rule (>= 2 points over the baseline with the "
                     "paired CI above 0 in every seed, and it beats the shuffled-code and "
                     "prompt-tuning controls).")
    else:
        why = []
        if not ok_base:
            why.append("it is not >= 2 points above the baseline with the CI above 0 in every "
                       "seed")
        for arm, name in (("shuffled", "the shuffled-code control"),
                          ("prompt", "input-independent prompt tuning")):
            ok = ok_shuf if arm == "shuffled" else ok_prompt
            if arm not in run.correct:
                why.append(f"{name} did not run, so the header cannot be shown to beat it")
            elif not ok:
                why.append(f"it does not beat {name} in every seed")
        parts.append("The header does NOT help by the rule: " + "; ".join(why) + ".")
    if "fusion" in run.correct and not ok_fusion:
        fus_up, _ = beats(run, "fusion", "baseline")
        if fus_up:
            parts.append("It does not beat late fusion either: MiniLM's features help (late "
                         "fusion beats the baseline), but the header route adds nothing.")
        else:
            parts.append("It does not beat late fusion, which itself is not above the "
                         "baseline in every seed.")
    return " ".join(parts)


def arm_seconds(run: HeaderRun, arm: str) -> float:
    """Mean wall time of an arm's cells over seeds (a test-time ablation shares its arm's)."""
    base = arm.removesuffix("-ablate")
    secs = [rec["result"].get("seconds", float("nan")) for rec in run.store.cells.values()
            if rec["key"].get("arm") == base and rec["key"].get("seed") in run.cfg.seeds]
    return float(np.mean(secs)) if secs else float("nan")


def write_report(run: HeaderRun) -> None:
    cfg, rep = run.cfg, run.rep
    rep.sections.clear()  # rewritten from the cells each time (after every seed, at the end)
    table = summarise(run)
    rep.data["arms"] = table
    rows, cats, vals, los, his = [], [], [], [], []
    order = [a for a in ARM_TITLES if a in table]
    for arm in order:
        rec = table[arm]
        acc = rec["acc"]
        vb = rec.get("vs_baseline", [])
        dmean = np.mean([d["value"] for d in vb]) if vb else float("nan")
        dlo = min((d["lo"] for d in vb), default=float("nan"))
        dhi = max((d["hi"] for d in vb), default=float("nan"))
        pmax = max(rec.get("mcnemar_p", [float("nan")]))
        secs = arm_seconds(run, arm)
        rows.append([ARM_TITLES[arm], f"{acc['value']:.3f} [{acc['lo']:.3f}, {acc['hi']:.3f}]",
                     " ".join(f"{a:.3f}" for a in rec["per_seed"]),
                     "" if not vb else f"{dmean:+.3f} [{dlo:+.3f}, {dhi:+.3f}]",
                     "" if not vb else f"{pmax:.3g}", f"{secs:.0f}"])
        cats.append(arm)
        vals.append(acc["value"])
        los.append(acc["lo"])
        his.append(acc["hi"])
    y = run.split.labels[run.split.rows["eval"]]
    majority = float(np.bincount(y).max() / len(y))
    text = verdict(run)
    rep.data["verdict"] = text
    sec = rep.section(
        "Arms", f"{cfg.model} frozen, {cfg.dataset}: {cfg.n_train} training texts, {cfg.n_val} "
        f"held out for every choice (C, epoch, checkpoint, learning rate), {len(y)} "
        f"evaluation texts; "
        f"k = {cfg.k} pseudo-tokens before the answer cue, entering at block "
        f"{cfg.insert_layer}; {cfg.steps} steps of {cfg.batch_size}; seeds {cfg.seeds}. "
        "Accuracy: mean with a t-interval over seeds (a bootstrap over items for deterministic "
        "arms); Δ vs baseline: mean over seeds of the paired difference with the widest "
        "per-seed paired 95 % bootstrap bounds; McNemar p: the largest over seeds. "
        f"Majority class {majority:.3f}. Verdict: {text}")
    sec.table("Accuracy per arm", ["arm", "accuracy [95 % CI]", "per seed",
                                   "Δ vs baseline [paired CI]", "McNemar p",
                                   "time per seed (s)"], rows)
    sec.plot("arms.png", {"kind": "bar", "title": f"Accuracy per arm ({cfg.dataset})",
                          "ylabel": "evaluation accuracy", "categories": cats,
                          "series": [{"label": "accuracy", "values": vals, "lo": los,
                                      "hi": his}],
                          "hlines": [{"y": majority, "label": "majority class"}]})
    search = rep.data.get("lr_search") or {}
    if search:
        rep.section("Learning-rate search", "Header learning rate of each family of stage B "
                    f"arms, chosen by held-out accuracy ({cfg.n_val} texts of the training "
                    f"split, seed {cfg.seeds[0]}, {cfg.steps} steps); the evaluation texts take "
                    "no part.").table(
            "Held-out accuracy per learning rate",
            ["searched on", "serves", *[f"lr {x:g}" for x in next(iter(search.values()))["grid"]],
             "chosen", "time (s)"],
            [[probe, " ".join(v["arms"]), *[f"{a:.3f}" for a in v["val_acc"]],
              f"{v['chosen']:g}", f"{v['seconds']:.0f}"] for probe, v in search.items()])
    bl = run.store.get({"arm": "best-layer", "seed": cfg.seeds[0]})
    if bl is not None:
        x = list(range(len(bl["val_acc"])))
        rep.section("Per-layer probes", "Logistic probe on the prompt's last-position state of "
                    "each layer (hidden.0 = embeddings).").plot("layers.png", {
                        "kind": "line", "title": "Probe accuracy per layer", "xlabel": "layer",
                        "ylabel": "accuracy", "series": [
                            {"label": "held-out slice", "x": x, "y": bl["val_acc"]},
                            {"label": "evaluation", "x": x, "y": bl["eval_acc"]}]})
    if run.curves:
        series_loss, series_val = [], []
        for arm, per in run.curves.items():
            c = per.get(str(cfg.seeds[0]))
            if not c:
                continue
            series_loss.append({"label": arm, "x": c["steps"], "y": c["train_loss"]})
            series_val.append({"label": arm, "x": [e["step"] for e in c["evals"]],
                               "y": [e["val_acc"] for e in c["evals"]]})
        s = rep.section("Training curves", f"Stage B, seed {cfg.seeds[0]}: training loss per "
                        "step and held-out accuracy at each evaluation.")
        s.plot("train_loss.png", {"kind": "line", "title": "Training loss", "xlabel": "step",
                                  "ylabel": "cross-entropy", "series": series_loss})
        s.plot("val_acc.png", {"kind": "line", "title": "Held-out accuracy", "xlabel": "step",
                               "ylabel": "accuracy", "series": series_val})
        rep.data["curves"] = run.curves
    rep.summary([["verdict", text]] + [[ARM_TITLES[a], f"{table[a]['acc']['value']:.3f}"]
                                        for a in order])


def run_header(cfg: HeaderRunConfig, out: Path, *, seed: int = 0) -> Path:
    """Validate, build the inputs, run the stages, write the report; returns the folder."""
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = set_threads(cfg.threads)
    rep = Report("header", asdict(cfg), out_dir=out, seed=seed, device=cfg.device,
                 description="Semantic header: codes of a text as pseudo-tokens for a frozen "
                             "causal LM, against the controls that say whether it helps.")
    rep.data["threads"] = threads
    run = HeaderRun(cfg, out, rep)  # data and verbaliser checks, before any model loads
    if cfg.placement == "prefix":
        raise ConfigError("--placement prefix (full depth) is available in Python through "
                          "hyperlens.inject.attach; this command trains the cached cue header.")
    run.load_models()
    run.features()
    run.prefix_cache()
    rep.data["split"] = {k: int(len(v)) for k, v in run.split.rows.items()}
    if "A" in cfg.stages:
        with rep.timer("stage A"):
            stage_a(run)
    if "B" in cfg.stages:
        with rep.timer("stage B"):
            def after_seed() -> None:  # a complete report of what has finished so far
                write_report(run)
                run.rep.save()

            stage_b(run, after_seed=after_seed)
    write_report(run)
    return rep.save()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = HeaderRunConfig()
    p.add_argument("--dataset", default=d.dataset, help="sst2 (default) | agnews | a file")
    p.add_argument("--data-dir", default=None, help="folder holding sst2/ and agnews/")
    p.add_argument("--model", default=d.model,
                   help="frozen causal LM: smollm2 (default), gemma3 or an HF id")
    p.add_argument("--encoder", default=d.encoder, help="sentence encoder for the codes")
    p.add_argument("--n-train", type=positive_int, default=d.n_train,
                   help=f"training texts ({d.n_train})")
    p.add_argument("--n-val", type=positive_int, default=d.n_val,
                   help=f"held-out training texts for every choice ({d.n_val})")
    p.add_argument("--n-eval", type=nonnegative_int, default=d.n_eval,
                   help="evaluation texts (0: all 872 SST-2 dev; AG News 1000)")
    p.add_argument("--seeds", nargs="+", type=nonnegative_int, default=d.seeds)
    p.add_argument("--stages", nargs="+", default=d.stages, choices=["A", "B"])
    p.add_argument("--arms", nargs="+", default=d.arms, choices=list(ARMS_B),
                   help="stage B arms")
    p.add_argument("--k", type=positive_int, default=d.k, help=f"pseudo-tokens ({d.k})")
    p.add_argument("--variant", default=d.variant, choices=["mlp", "projector", "gated"],
                   help="header of the head arms (projector)")
    p.add_argument("--placement", default=d.placement, choices=["cue", "prefix"])
    p.add_argument("--insert-layer", type=nonnegative_int, default=d.insert_layer,
                   help="block where the header enters (0 = input embeddings, full depth; "
                        "default: two thirds of the depth)")
    p.add_argument("--hdc-dim", type=positive_int, default=d.hdc_dim)
    p.add_argument("--sparsity", type=unit_fraction, default=d.sparsity)
    p.add_argument("--steps", type=positive_int, default=d.steps,
                   help=f"training steps per arm ({d.steps})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--lr-grid", nargs="*", type=positive_float, default=d.lr_grid,
                   help="header learning rates tried on the held-out slice (default: "
                        f"{' '.join(f'{x:g}' for x in d.lr_grid)}; none: use --lr)")
    p.add_argument("--lr", type=positive_float, default=d.lr,
                   help="header learning rate when --lr-grid is empty (1e-2)")
    p.add_argument("--head-lr", type=positive_float, default=d.head_lr)
    p.add_argument("--eval-every", type=positive_int, default=d.eval_every,
                   help="steps between held-out evaluations (checkpoint choice)")
    p.add_argument("--max-tokens", type=positive_int, default=d.max_tokens,
                   help="text tokens kept")
    p.add_argument("--verbalizer", nargs="+", default=None, help="one answer word per class")
    p.add_argument("--kv-dtype", default=d.kv_dtype, choices=["float16", "bfloat16", "float32"])
    p.add_argument("--threads", default=d.threads, help="torch threads: auto | N")
    p.add_argument("--n-boot", type=positive_int, default=d.n_boot)
    p.add_argument("--fresh", action="store_true", help="ignore finished cells in OUT")


def config_from_args(args: argparse.Namespace) -> HeaderRunConfig:
    fields_ = HeaderRunConfig.__dataclass_fields__
    values = {k: getattr(args, k) for k in fields_ if hasattr(args, k)}
    if values.get("device") == "auto":
        values["device"] = "cpu"
    return HeaderRunConfig(**values)


def check_inputs(cfg: HeaderRunConfig) -> None:
    """Checks that need the dataset's labels or the zoo's record of a model, not the model.

    Raises :class:`ConfigError` / :class:`InputError` for a named model without input
    embeddings (an encoder or static vectors), an insert layer past a named model's last
    block, or labels that are not the verbaliser's.
    """
    from .. import models as hmodels

    cfg.validate()
    rows = {r["name"]: r for r in hmodels.list_models()}
    entry = rows.get(str(cfg.model).strip().lower())
    if entry is not None:
        if entry["kind"] != "decoder":
            decoders = sorted(n for n, r in rows.items() if r["kind"] == "decoder")
            raise InputError(f"--model {cfg.model!r} is a {entry['kind']} model without input "
                             "embeddings a causal LM reads pseudo-tokens through; use a "
                             f"causal LM: {', '.join(decoders)} or an HF id.")
        if cfg.insert_layer is not None and cfg.insert_layer >= entry["layers"]:
            raise ConfigError(f"--insert-layer {cfg.insert_layer} is past the last block of "
                              f"{cfg.model} ({entry['layers']} blocks: 0..{entry['layers'] - 1}).")
    verbalizer_words(cfg, label_names_of(cfg))


def validate(args: argparse.Namespace) -> None:
    """Checks across options, the labels and the model's kind, before any model is loaded."""
    check_inputs(config_from_args(args))


def main(args: argparse.Namespace) -> Path:
    cfg = config_from_args(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out if args.out is not None else Path("runs") / f"header-{stamp}"
    return run_header(cfg, Path(out), seed=int(getattr(args, "seed", 0)))


def tour_section(report: Report, *, seed: int = 0, device: str = "cpu") -> None:
    """Stage A at a glance on the tour's dataset: cached LM states, no training through the LM.

    400 texts (200 train, 100 held out, 100 evaluation) of the tour's dataset
    (rotten-tomatoes by default), one seed. `hyperlens header` runs both stages.
    """
    conf = report.config or {}
    dataset = str(conf.get("dataset", "rotten-tomatoes"))
    if dataset not in PROMPTS:
        dataset = "rotten-tomatoes"
    cfg = HeaderRunConfig(dataset=dataset, data_dir=conf.get("data_dir"), n_train=200,
                          n_val=100, n_eval=100, seeds=[seed], stages=["A"], device=device)
    cfg.validate()
    out = Path(report.out_dir) / "header"
    out.mkdir(parents=True, exist_ok=True)
    sub = Report("header", asdict(cfg), out_dir=out, seed=seed, device=device)
    run = HeaderRun(cfg, out, sub)
    with report.timer("header:stage A"):
        run.load_models()
        run.features()
        run.prefix_cache()
        stage_a(run)
    table = summarise(run)
    rows = [[ARM_TITLES[a], f"{table[a]['acc']['value']:.3f}",
             f"[{table[a]['acc']['lo']:.3f}, {table[a]['acc']['hi']:.3f}]"]
            for a in ARM_TITLES if a in table]
    report.section(
        "Semantic header (stage A)",
        f"The cached arms of `hyperlens header` on {dataset} ({cfg.n_train} training texts, "
        f"{cfg.n_val} held out for every choice, {cfg.n_eval} evaluation texts, one seed, "
        f"{cfg.model}): the classifier head and probes on the prompt's last hidden state, "
        "MiniLM and HDC probes, late fusion and the LM's zero-shot answer (95 % bootstrap "
        "intervals over texts). `hyperlens header` adds the headers trained through the "
        "frozen LM and their controls.").table("Stage A", ["arm", "accuracy", "95 % CI"], rows)
