"""``hyperlens modulate``: steer a frozen model's residual stream with WordNet geometry.

For each model (default MiniLM and SmolLM2) and modulator (``lerp``, ``field``): WordNet
nouns are matched to the tokenizer and split by hypernym subtree; the WordNet geometry is
fitted on training anchors only; the modulator is trained on the model's task (SmolLM2:
definition -> lemma as next token; MiniLM: contrastive reverse dictionary) with the
frozen model unchanged, for several seeds, with the WordNet geometry and with each
control geometry (random, shuffled rows, PCA of the model's own static embeddings).
Everything is scored on held-out synsets: the relational correlation of definition
embeddings with Wu-Palmer and path similarity (lift over the plain model and over every
control, bootstrap intervals over synsets, t-intervals over seeds), task accuracy,
coherence (perplexity on held-out text for the causal model, embedding preservation for
the encoder), greedy generations side by side, an alpha sweep through 0.29154 and its
neighbours, and the per-layer alpha curves of training from several starting alphas.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..functional import kernels
from ..report import Report

__all__ = ["COMMAND", "HELP", "add_arguments", "main", "run_modulate", "SWEEP", "SEED_PROMPTS"]

COMMAND = "modulate"
HELP = (
    "steer a frozen model's residual stream with WordNet geometry (lerp / field), against controls"
)

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
_DEFAULT_STEPS = {"minilm": 60, "smollm2": 20}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models", nargs="+", default=["minilm", "smollm2"], help="models (minilm smollm2)"
    )
    p.add_argument("--modulators", nargs="+", default=["lerp", "field"], help="lerp and/or field")
    p.add_argument(
        "--seeds", type=int, default=3, help="training seeds with the WordNet geometry (3)"
    )
    p.add_argument(
        "--control-seeds", type=int, default=1, help="training seeds per control geometry (1)"
    )
    p.add_argument(
        "--controls", nargs="*", default=["random", "shuffled", "pca"], help="control geometries"
    )
    p.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=None,
        help="blocks to modulate (default: all of a <=12-block model, else every third)",
    )
    p.add_argument(
        "--anchors", type=int, default=800, help="training synsets (WordNet anchors) (800)"
    )
    p.add_argument("--test", type=int, default=200, help="held-out synsets scored (200)")
    p.add_argument(
        "--steps", type=int, default=None, help="training steps (default: minilm 60, smollm2 20)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3, help="learning rate of P and the experts")
    p.add_argument(
        "--alpha-lr",
        type=float,
        default=0.3,
        help="Adam learning rate of alpha's logit, no weight decay (0.3: enough to cross "
        "(0, 1) in about 20 steps)",
    )
    p.add_argument("--alpha", type=float, default=0.1, help="starting alpha of lerp (0.1)")
    p.add_argument("--field-alpha", type=float, default=0.01, help="starting alpha of field (0.01)")
    p.add_argument(
        "--alpha-starts",
        type=float,
        nargs="*",
        default=[0.01, 0.5],
        help="further lerp starting alphas (seed 0) for the alpha curves",
    )
    p.add_argument(
        "--field-alpha-starts",
        type=float,
        nargs="*",
        default=[0.2],
        help="further field starting alphas (seed 0), at most alpha_max = 0.35",
    )
    p.add_argument("--sweep", type=float, nargs="*", default=list(SWEEP), help="alpha sweep values")
    p.add_argument(
        "--n-boot", type=int, default=100, help="bootstrap resamples over held-out synsets"
    )
    p.add_argument("--n-coherence", type=int, default=100, help="held-out texts per set (100)")
    p.add_argument("--data-dir", default=None, help="folder with SST-2 (default: the usual places)")
    p.add_argument(
        "--dtype",
        choices=["auto", "bfloat16", "float32"],
        default="auto",
        help="precision of the frozen model, plain and modulated alike (auto: bfloat16 where "
        "the CPU has native bf16 (AVX-512 BF16 / AMX), about 2x faster there, else float32; "
        "the adapters keep float32 parameters)",
    )


def _validate(
    models: list[str],
    modulators: list[str],
    layers: list[int] | None,
    alphas: list[float],
    field_alphas: list[float],
    sweep: list[float],
    seeds: int,
    controls: list[str],
) -> None:
    from ..inject.geometry import CONTROLS

    bad = [m for m in modulators if m not in {"lerp", "field"}]
    if bad or not modulators:
        raise InputError(f"--modulators must be lerp and/or field, got {modulators!r}.")
    for m in models:
        if m.lower() in _STATIC:
            raise InputError(
                f"model {m!r} is a static word-vector model; modulate needs a transformer."
            )
        if layers is not None and m.lower() in _KNOWN_LAYERS:
            n = _KNOWN_LAYERS[m.lower()]
            out = [b for b in layers if not 0 <= b < n]
            if out:
                raise InputError(
                    f"--layers {out} out of range for {m} ({n} blocks: use 0..{n - 1})."
                )
    for a in [*alphas, *sweep]:
        if not 0.0 <= a <= 1.0:
            raise InputError(f"alpha values must be in [0, 1], got {a!r}.")
    for fa in field_alphas:
        if not 0.0 <= fa <= 0.35:
            raise InputError(
                f"--field-alpha / --field-alpha-starts must be in [0, alpha_max = 0.35], got "
                f"{fa!r}."
            )
    if seeds < 1:
        raise InputError(f"--seeds must be >= 1, got {seeds}.")
    badc = [c for c in controls if c not in CONTROLS]
    if badc:
        raise InputError(f"--controls must be among {CONTROLS}, got {badc}.")


def _coherence_texts(test: list[Any], n: int, data_dir: str | None) -> dict[str, list[str]]:
    from ..data import load as load_data

    out: dict[str, list[str]] = {}
    try:
        ds = load_data("sst2", split="dev", data_dir=data_dir)
        out["sst2"] = list(ds.texts[:n])
    except Exception:  # noqa: BLE001 - optional data: fall back to the offline default
        ds = load_data("rotten-tomatoes")
        out["rotten-tomatoes"] = list(ds.texts[:n])
    ex = [e for m in test for e in m.examples][:n]
    if ex:
        out["wordnet-examples"] = ex
    return out


def _drift(history: list[dict[str, float]], layers: list[int]) -> float:
    """Largest change of any block's alpha over the last quarter of training: near 0 when
    alpha has settled, large when the run ended while alpha was still moving."""
    if len(history) < 2:
        return float("nan")
    q = history[max(0, (3 * len(history)) // 4 - 1)]
    return max(abs(history[-1][f"alpha.{b}"] - q[f"alpha.{b}"]) for b in layers)


def _fmt(v: float, lo: float, hi: float) -> str:
    return f"{v:+.4f} [{lo:+.4f}, {hi:+.4f}]"



def frozen_dtype(choice: str | None) -> str | None:
    """The frozen model's precision: ``auto`` is bfloat16 only where the CPU computes bf16
    natively (without it a bf16 matmul is several times slower than float32)."""
    if choice in (None, ""):
        return None
    if choice == "auto":
        return "bfloat16" if kernels.features().bf16 else "float32"
    return choice


def run_modulate(*, out: Path, seed: int = 0, device: str = "cpu", **opt: Any) -> Path:
    """Run the experiment (options as in :func:`add_arguments`) and write the report."""
    import torch

    from ..data import wordnet
    from ..functional.stats import paired_bootstrap
    from ..models import load
    from . import modulate_core as mc

    models = list(opt["models"])
    kinds = list(opt["modulators"])
    _validate(
        models,
        kinds,
        opt.get("layers"),
        [opt["alpha"], *opt["alpha_starts"]],
        [opt["field_alpha"], *opt.get("field_alpha_starts", [])],
        list(opt["sweep"]),
        int(opt["seeds"]),
        list(opt["controls"]),
    )
    rep = Report(
        "modulate",
        {k: v for k, v in opt.items()} | {"seed": seed, "dtype": frozen_dtype(opt.get("dtype"))},
        out_dir=out,
        seed=seed,
        device=device,
        description="Residual and field modulators with WordNet geometry, on held-out synsets.",
    )
    wn = wordnet()
    summary: list[list[Any]] = []
    for name in models:
        with rep.timer(f"{name}:load+prepare"):
            h = load(name, device="cpu", dtype=frozen_dtype(opt.get("dtype")))
            if h.module is None:
                raise InputError(f"model {name!r} has no transformer to modulate.")
            s = mc.prepare(
                name,
                h,
                wn,
                n_anchors=opt["anchors"],
                n_test=opt["test"],
                layers=opt.get("layers"),
                split_seed=seed,
            )
        steps = int(opt["steps"] or _DEFAULT_STEPS.get(name, 60))
        with rep.timer(f"{name}:targets+plain"):
            sims = mc.similarity_targets(s.test)
            ev = mc.evaluate(s, None, s.test)
            reps: dict[str, torch.Tensor] = {"plain": ev["reps"]}
            task: dict[str, dict[str, np.ndarray]] = {"plain": ev}
        runs: list[dict[str, Any]] = []
        plan = []
        for kind in kinds:
            a0 = opt["alpha"] if kind == "lerp" else opt["field_alpha"]
            plan += [(kind, "wordnet", a0, sd) for sd in range(seed, seed + int(opt["seeds"]))]
            plan += [
                (kind, c, a0, sd)
                for c in opt["controls"]
                for sd in range(seed, seed + int(opt["control_seeds"]))
            ]
            starts = opt["alpha_starts"] if kind == "lerp" else opt.get("field_alpha_starts", [])
            plan += [(kind, "wordnet", a, seed) for a in starts if a != a0]
        adapters: dict[str, Any] = {}
        for kind, geo, a0, sd in plan:
            key = f"{kind}/{geo}/a0={a0:g}/seed={sd}"
            ad = mc.build_adapter(s, kind, geo, a0, sd)
            with rep.timer(f"{name}:train:{kind}"):
                hist = mc.train_adapter(
                    s,
                    ad,
                    steps=steps,
                    batch_size=opt["batch_size"],
                    seed=sd,
                    lr=opt["lr"],
                    alpha_lr=opt["alpha_lr"],
                )
            with rep.timer(f"{name}:eval"):
                ev = mc.evaluate(s, ad, s.test)
                reps[key], task[key] = ev["reps"], ev
            runs.append(
                {
                    "key": key,
                    "kind": kind,
                    "geometry": geo,
                    "alpha0": a0,
                    "seed": sd,
                    "final_alpha": ad.alphas().detach().reshape(len(s.layers), -1).mean(1).tolist(),
                    "loss_first": hist.train_loss[0],
                    "loss_last": float(np.mean(hist.train_loss[-5:])),
                    "steps_per_s": steps / hist.seconds,
                    "seconds": hist.seconds,
                    "history": hist.train_metrics,
                    "alpha_drift": _drift(hist.train_metrics, s.layers),
                    "train_loss": hist.train_loss,
                }
            )
            adapters[key] = ad
        with rep.timer(f"{name}:relational"):
            table, raw, probe = mc.relational_table(
                reps, s.test, base="plain", n_boot=opt["n_boot"], seed=seed, similarities=sims
            )
        rep.data[f"{name}:relational_probe"] = {
            k: {m: probe["reps"][k][m] for m in ("path", "wup")}
            | {"chain_decay": probe["reps"][k]["chain_decay"], "bands": probe["reps"][k]["bands"]}
            for k in reps
        }
        _report_model(rep, s, name, steps, kinds, runs, table, raw, task, opt, summary)
        main_keys = {
            k: next(r["key"] for r in runs if r["kind"] == k and r["geometry"] == "wordnet")
            for k in kinds
        }
        _coherence(rep, s, name, adapters, main_keys, opt, paired_bootstrap, mc, summary)
        for kind in kinds:
            _sweep(
                rep, s, name, kind, adapters[main_keys[kind]], sims, reps["plain"], opt, mc, seed
            )
        rep.data[f"{name}:runs"] = [
            {k: v for k, v in r.items() if k not in {"history"}} for r in runs
        ]
    rep.summary(summary)
    return rep.save()


def _report_model(
    rep: Report,
    s: Any,
    name: str,
    steps: int,
    kinds: list[str],
    runs: list[dict[str, Any]],
    table: dict[str, Any],
    raw: dict[str, Any],
    task: dict[str, dict[str, np.ndarray]],
    opt: dict[str, Any],
    summary: list[list[Any]],
) -> None:
    from ..functional.stats import paired_bootstrap, t_interval
    from . import modulate_core as mc

    sp = s.split_summary
    sec = rep.section(
        f"{name}: relational alignment on held-out synsets",
        f"{sp['n_train'] + sp['n_test']:,} WordNet nouns match single tokens; split by "
        "hypernym subtree "
        f"(depth {sp['subtree_depth']}: {sp['n_train_subtrees']} training and "
        f"{sp['n_test_subtrees']} held-out "
        f"subtrees, {sp['shared_subtrees']} shared). {len(s.train)} training anchors fit the "
        "geometry; "
        f"{len(s.test)} held-out synsets are scored. Modulated blocks: {s.layers}. {steps} "
        "training steps "
        "per run. Lift = modulated minus plain model on the same bootstrap draw of held-out "
        "synsets "
        "(95 % percentile interval); 'vs WordNet' columns compare each control with the "
        "WordNet run of the "
        "same seed.",
    )
    for meas in ("wup", "path"):
        rows = []
        for r in [
            {"key": "plain", "kind": "-", "geometry": "plain", "seed": "-", "alpha0": "-"}
        ] + runs:
            t = table[meas][r["key"]]
            rows.append(
                [
                    r["kind"],
                    r["geometry"],
                    r["alpha0"],
                    r["seed"],
                    round(t["pearson"], 4),
                    _fmt(t["lift_pearson"], t["lift_pearson_lo"], t["lift_pearson_hi"]),
                    round(t["spearman"], 4),
                    _fmt(t["lift_spearman"], t["lift_spearman_lo"], t["lift_spearman_hi"]),
                    round(t["mantel_p_pearson"], 4),
                ]
            )
        sec.table(
            f"{meas}: Pearson / Spearman of definition-embedding cosines",
            [
                "modulator",
                "geometry",
                "alpha0",
                "seed",
                "Pearson",
                "lift (CI)",
                "Spearman",
                "lift (CI)",
                "Mantel p",
            ],
            rows,
        )
    # seeds pooled: mean lift over seeds with a t interval; WordNet minus each control (same seed)
    rows = []
    for kind in kinds:
        for geo in ["wordnet", *opt["controls"]]:
            rs = [
                r
                for r in runs
                if r["kind"] == kind
                and r["geometry"] == geo
                and r["alpha0"] == (opt["alpha"] if kind == "lerp" else opt["field_alpha"])
            ]
            if not rs:
                continue
            lifts = [table["path"][r["key"]]["lift_pearson"] for r in rs]
            plain_p = table["path"]["plain"]["pearson"]
            est = t_interval(lifts)
            rel = 100 * est.value / abs(plain_p) if plain_p else float("nan")
            vs = ""
            if geo != "wordnet":
                w = next(
                    (
                        r
                        for r in runs
                        if r["kind"] == kind
                        and r["geometry"] == "wordnet"
                        and r["seed"] == rs[0]["seed"]
                    ),
                    None,
                )
                if w is not None:
                    d = mc.paired_diff(raw["path"][w["key"]][:, 0], raw["path"][rs[0]["key"]][:, 0])
                    vs = _fmt(*d)
            acc = [float(task[r["key"]]["top1"].mean()) for r in rs]
            rows.append(
                [
                    kind,
                    geo,
                    len(rs),
                    f"{est.value:+.4f} [{est.lo:+.4f}, {est.hi:+.4f}]",
                    f"{rel:+.1f} %",
                    vs,
                    round(float(np.mean(acc)), 4),
                ]
            )
            if geo == "wordnet":
                summary.append(
                    [
                        f"{name} {kind}: path-Pearson lift (held-out)",
                        f"{est.value:+.4f} ({rel:+.1f} %)",
                    ]
                )
    sec.table(
        "Lift pooled over seeds (path similarity, Pearson): WordNet against the controls",
        [
            "modulator",
            "geometry",
            "seeds",
            "mean lift [t CI]",
            "relative to plain",
            "WordNet - control [CI]",
            "task top-1",
        ],
        rows,
    )
    # task accuracy
    rows = []
    base = task["plain"]
    for r in [
        {"key": "plain", "kind": "-", "geometry": "plain", "seed": "-", "alpha0": "-"}
    ] + runs:
        sc = task[r["key"]]
        dt = (
            paired_bootstrap(sc["top1"], base["top1"], n_boot=1000, seed=0)
            if r["key"] != "plain"
            else None
        )
        rows.append(
            [
                r["kind"],
                r["geometry"],
                r["alpha0"],
                r["seed"],
                round(float(sc["top1"].mean()), 4),
                round(float(sc["top10"].mean()), 4),
                "" if dt is None else f"{dt.value:+.4f} [{dt.lo:+.4f}, {dt.hi:+.4f}]",
            ]
        )
    label = "next-token lemma accuracy" if s.causal else "reverse-dictionary recall"
    sec2 = rep.section(
        f"{name}: task on held-out synsets ({label})",
        "Top-1 / top-10 on held-out synsets; the difference to the plain model is a paired "
        "bootstrap over synsets." + ("" if s.causal else " Candidates: all held-out lemmas."),
    )
    sec2.table(
        "Task",
        ["modulator", "geometry", "alpha0", "seed", "top-1", "top-10", "top-1 - plain [CI]"],
        rows,
    )
    # training: loss, steps/s, alpha curves
    sec3 = rep.section(
        f"{name}: training and alpha",
        "alpha per modulated block during training (lerp: "
        "sigmoid(theta); field: mean over experts of alpha_max * sigmoid(theta)).",
    )
    sec3.table(
        "Runs",
        [
            "run",
            "loss (first)",
            "loss (last 5)",
            "steps/s",
            "final alpha per block",
            "max |alpha change| over the last quarter of steps",
        ],
        [
            [
                r["key"],
                round(r["loss_first"], 4),
                round(r["loss_last"], 4),
                round(r["steps_per_s"], 3),
                ", ".join(f"{a:.3f}" for a in r["final_alpha"]),
                round(r["alpha_drift"], 4),
            ]
            for r in runs
        ],
    )
    for kind in kinds:
        rs = [
            r
            for r in runs
            if r["kind"] == kind and r["geometry"] == "wordnet" and r["seed"] == runs[0]["seed"]
        ]
        series = []
        for r in rs:
            for blk in s.layers:
                series.append(
                    {
                        "label": f"a0={r['alpha0']:g} block {blk}",
                        "x": list(range(1, len(r["history"]) + 1)),
                        "y": [m[f"alpha.{blk}"] for m in r["history"]],
                    }
                )
        sec3.plot(
            f"{name}_{kind}_alpha.png",
            {
                "kind": "line",
                "title": f"{name} {kind}: alpha during training",
                "xlabel": "step",
                "ylabel": "alpha",
                "series": series,
                "hlines": [{"y": 0.29154, "label": "0.29154"}],
            },
        )
        finals = [r for r in runs if r["kind"] == kind and r["geometry"] == "wordnet"]
        sec3.plot(
            f"{name}_{kind}_alpha_depth.png",
            {
                "kind": "line",
                "title": f"{name} {kind}: final alpha by depth",
                "xlabel": "block",
                "ylabel": "alpha",
                "series": [
                    {"label": r["key"], "x": s.layers, "y": r["final_alpha"]} for r in finals
                ],
                "hlines": [{"y": 0.29154, "label": "0.29154"}],
            },
        )
    sps = [r["steps_per_s"] for r in runs]
    summary.append([f"{name}: training steps/s (batch {opt['batch_size']})", f"{np.mean(sps):.3f}"])


def _coherence(
    rep: Report,
    s: Any,
    name: str,
    adapters: dict[str, Any],
    main_keys: dict[str, str],
    opt: dict[str, Any],
    paired_bootstrap: Any,
    mc: Any,
    summary: list[list[Any]],
) -> None:
    texts = _coherence_texts(s.test, opt["n_coherence"], opt.get("data_dir"))
    h = s.handle
    sec = rep.section(
        f"{name}: coherence on held-out text",
        (
            "Perplexity of held-out text with and without the trained modulator (seed 0); "
            "the change "
            "in mean token NLL is a paired bootstrap over texts."
            if s.causal
            else "Cosine between plain and modulated sentence embeddings of held-out text "
            "(1 = unchanged)."
        ),
    )
    rows = []
    for kind, key in main_keys.items():
        ad = adapters[key]
        for tname, tx in texts.items():
            with rep.timer(f"{name}:coherence"):
                if s.causal:
                    a, b = mc.nll_per_text(h, tx, ad), mc.nll_per_text(h, tx, None)
                    d = paired_bootstrap(a, b, n_boot=1000, seed=0)
                    rows.append(
                        [
                            kind,
                            tname,
                            len(tx),
                            round(float(np.exp(b.mean())), 3),
                            round(float(np.exp(a.mean())), 3),
                            f"{d.value:+.4f} [{d.lo:+.4f}, {d.hi:+.4f}]",
                        ]
                    )
                    summary.append(
                        [
                            f"{name} {kind}: perplexity on {tname}",
                            f"{np.exp(b.mean()):.2f} -> {np.exp(a.mean()):.2f}",
                        ]
                    )
                else:
                    import torch

                    x0, x1 = mc.encode(h, tx), mc.encode(h, tx, ad)
                    c = torch.nn.functional.cosine_similarity(x0, x1, dim=-1).numpy()
                    rows.append(
                        [
                            kind,
                            tname,
                            len(tx),
                            round(float(c.mean()), 4),
                            round(float(c.min()), 4),
                            "",
                        ]
                    )
    cols = (
        ["modulator", "texts", "n", "plain ppl", "modulated ppl", "delta NLL [CI]"]
        if s.causal
        else ["modulator", "texts", "n", "mean cosine", "min cosine", ""]
    )
    sec.table("Coherence", cols, rows)
    if s.causal:
        gen_rows = []
        with rep.timer(f"{name}:generate"):
            for kind, key in main_keys.items():
                for p in SEED_PROMPTS:
                    plain, mod = mc.generate_pair(h, p, adapters[key])
                    gen_rows.append(
                        [kind, p, plain.strip(), mod.strip(), "same" if plain == mod else "differs"]
                    )
        rep.section(
            f"{name}: greedy generations",
            "24 new tokens, greedy, plain model vs trained modulator (WordNet geometry, seed 0).",
        ).table("Generations", ["modulator", "prompt", "plain", "modulated", ""], gen_rows)


def _sweep(
    rep: Report,
    s: Any,
    name: str,
    kind: str,
    ad: Any,
    sims: dict[str, np.ndarray],
    plain: Any,
    opt: dict[str, Any],
    mc: Any,
    seed: int,
) -> None:
    import torch

    amax = 1.0 if kind == "lerp" else float(ad.config.alpha_max)
    values = [float(a) for a in opt["sweep"] if float(a) <= amax]
    if not values:
        return
    trained = ad.theta.detach().clone()
    reps = {"plain": plain}
    acc = {}
    with rep.timer(f"{name}:sweep"):
        for a in values:
            ad.set_alpha(a)
            ev = mc.evaluate(s, ad, s.test)
            reps[f"{a:g}"] = ev["reps"]
            acc[f"{a:g}"] = float(ev["top1"].mean())
        with torch.no_grad():
            ad.theta.copy_(trained)
        table, raw, _ = mc.relational_table(
            reps, s.test, base="plain", n_boot=opt["n_boot"], seed=seed, similarities=sims
        )
    opt = opt | {"sweep": values}
    keys = [f"{a:g}" for a in opt["sweep"]]
    series = []
    for meas in ("path", "wup"):
        t = table[meas]
        series.append(
            {
                "label": f"{meas} Pearson",
                "x": list(opt["sweep"]),
                "y": [t[k]["pearson"] for k in keys],
                "lo": [t[k]["pearson_lo"] for k in keys],
                "hi": [t[k]["pearson_hi"] for k in keys],
            }
        )
    sec = rep.section(
        f"{name}: alpha sweep ({kind}, trained seed-0 modulator, every block at one alpha)",
        "Pearson of held-out definition-embedding cosines with WordNet similarity at fixed alphas, "
        "95 % bootstrap intervals over held-out synsets. 'bump at 0.29154' is the value "
        "there minus "
        "the mean of its two neighbours, on the same draws: a special constant would stand out "
        "from that local null.",
    )
    sec.plot(
        f"{name}_{kind}_sweep.png",
        {
            "kind": "line",
            "title": f"{name} {kind}: relational correlation vs alpha",
            "xlabel": "alpha",
            "ylabel": "Pearson",
            "series": series,
            "hlines": [{"y": table["path"]["plain"]["pearson"], "label": "plain (path)"}],
        },
    )
    sec.table(
        "Sweep",
        [
            "alpha",
            "path Pearson [CI]",
            "path lift over plain [CI]",
            "wup Pearson [CI]",
            "task top-1",
        ],
        [
            [
                k,
                f"{table['path'][k]['pearson']:.4f} [{table['path'][k]['pearson_lo']:.4f}, "
                f"{table['path'][k]['pearson_hi']:.4f}]",
                _fmt(
                    table["path"][k]["lift_pearson"],
                    table["path"][k]["lift_pearson_lo"],
                    table["path"][k]["lift_pearson_hi"],
                ),
                f"{table['wup'][k]['pearson']:.4f} [{table['wup'][k]['pearson_lo']:.4f}, "
                f"{table['wup'][k]['pearson_hi']:.4f}]",
                round(acc[k], 4),
            ]
            for k in keys
        ],
    )
    rep.data[f"{name}:{kind}:sweep"] = {
        "alphas": values,
        "table": {m: {k: table[m][k] for k in ["plain", *keys]} for m in ("path", "wup")},
        "top1": acc,
    }
    if "0.29154" in keys:
        i = keys.index("0.29154")
        if 0 < i < len(keys) - 1:
            rows = []
            for meas in ("path", "wup"):
                r = raw[meas]
                nb = 0.5 * (r[keys[i - 1]][:, 0] + r[keys[i + 1]][:, 0])
                d = mc.paired_diff(r[keys[i]][:, 0], nb)
                rows.append([meas, keys[i - 1], keys[i + 1], _fmt(*d)])
            sec.table(
                "Is 0.29154 special?",
                [
                    "measure",
                    "left neighbour",
                    "right neighbour",
                    "bump = value - mean(neighbours) [CI]",
                ],
                rows,
            )


def main(args: argparse.Namespace) -> Path:
    out = (
        args.out
        if args.out is not None
        else Path("runs") / f"modulate-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    opt = {
        k: getattr(args, k)
        for k in (
            "models",
            "modulators",
            "seeds",
            "control_seeds",
            "controls",
            "layers",
            "anchors",
            "test",
            "steps",
            "batch_size",
            "lr",
            "alpha_lr",
            "alpha",
            "field_alpha",
            "alpha_starts",
            "field_alpha_starts",
            "sweep",
            "n_boot",
            "n_coherence",
            "data_dir",
            "dtype",
        )
    }
    return run_modulate(out=Path(out), seed=int(args.seed), device=str(args.device), **opt)


def tour_section(report: Report, *, seed: int = 0, device: str = "cpu") -> None:
    """A compact modulate section for the tour: MiniLM, lerp, WordNet against shuffled rows.

    400 training anchors, 150 held-out synsets, 40 steps per geometry, one seed; the lift in
    path-similarity Pearson on held-out synsets with a bootstrap interval, and the task
    recall. Well under a minute on a quiet 2-core machine.
    """
    from ..data import wordnet
    from ..models import load
    from . import modulate_core as mc

    h = load("minilm", device="cpu")
    s = mc.prepare("minilm", h, wordnet(), n_anchors=400, n_test=150, layers=None, split_seed=seed)
    sims = mc.similarity_targets(s.test)
    ev = mc.evaluate(s, None, s.test)
    reps = {"plain": ev["reps"]}
    acc = {"plain": float(ev["top1"].mean())}
    alphas = {}
    for geo in ("wordnet", "shuffled"):
        ad = mc.build_adapter(s, "lerp", geo, 0.1, seed)
        mc.train_adapter(s, ad, steps=40, batch_size=16, seed=seed, lr=3e-3, alpha_lr=0.3)
        ev = mc.evaluate(s, ad, s.test)
        reps[geo], acc[geo] = ev["reps"], float(ev["top1"].mean())
        alphas[geo] = ", ".join(f"{a:.2f}" for a in ad.alphas().tolist())
    table, raw, _ = mc.relational_table(
        reps, s.test, base="plain", n_boot=100, seed=seed, similarities=sims, n_perm=99
    )
    t = table["path"]
    d = mc.paired_diff(raw["path"]["wordnet"][:, 0], raw["path"]["shuffled"][:, 0])
    sec = report.section(
        "Residual modulator (lerp) on held-out WordNet synsets",
        "MiniLM with a trained lerp modulator on every block (contrastive reverse "
        "dictionary, 40 steps), "
        "WordNet geometry from 400 training synsets against the same vectors on shuffled tokens; "
        f"Pearson of {len(s.test)} held-out definition embeddings' cosines with WordNet path "
        "similarity "
        "(95 % bootstrap over synsets). `hyperlens modulate` runs the full experiment.",
    )
    sec.table(
        "Held-out relational correlation",
        ["geometry", "Pearson", "lift over plain [CI]", "recall@1", "final alpha per block"],
        [["plain", round(t["plain"]["pearson"], 4), "", round(acc["plain"], 4), ""]]
        + [
            [
                g,
                round(t[g]["pearson"], 4),
                _fmt(t[g]["lift_pearson"], t[g]["lift_pearson_lo"], t[g]["lift_pearson_hi"]),
                round(acc[g], 4),
                alphas[g],
            ]
            for g in ("wordnet", "shuffled")
        ],
    )
    sec.metrics({"wordnet_minus_shuffled": {"value": d[0], "lo": d[1], "hi": d[2]}})
