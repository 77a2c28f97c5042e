"""How the modulate experiment's trained runs read in a report: the task gate, the pooled
lift against the controls with two-level intervals, and the linear-map ceiling.

``m`` is the experiment's per-model record (its set-up ``s``, the trained ``runs``, their
held-out ``task`` scores, ``reps`` and relational ``table`` / ``raw`` replicates) and
``config`` the command's options; ``hyperlens modulate`` lays its sections out with these.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..report import Report, Section
from ..run import pinned_threads
from . import modulate_train as mt

__all__ = ["LAST", "ceiling_section", "fmt_ci", "pooled_table", "same_start", "task_gate"]

#: suffix of a condition read at the decoder prompt's last token (beside mean pooling)
LAST = "@last"


def fmt_ci(v: float, lo: float, hi: float) -> str:
    """``+0.0123 [+0.0010, +0.0234]``."""
    return f"{v:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def same_start(m: Any, config: Any, kind: str, geo: str
                ) -> dict[Any, dict[str, Any]]:
    """The runs of ``kind`` with geometry ``geo`` at the default starting alpha and the
    chosen alpha learning rate (``m.alpha_lr``), by seed; for an adapter control (``geo``
    in :data:`~.modulate_train.ADAPTER_CONTROLS`) its runs whatever ``kind``, the
    deterministic ``meandiff`` paired with every replicate seed."""
    if geo in mt.ADAPTER_CONTROLS:
        rs = {r["seed"]: r for r in m.runs if r["kind"] == geo}
        if geo == "meandiff" and rs:
            only = next(iter(rs.values()))
            return {sd: only for sd in config.seeds}
        return rs
    a0 = config.alpha if kind == "lerp" else config.field_alpha
    alr = getattr(m, "alpha_lr", {}).get(kind)
    return {r["seed"]: r for r in m.runs
            if r["kind"] == kind and r["geometry"] == geo and r["alpha0"] == a0
            and (alr is None or r.get("alpha_lr") == alr)}


def _conditions(config: Any) -> list[tuple[str, str]]:
    """(modulator, condition) pairs of the gate: every modulator with WordNet and each
    geometry control, then each adapter control once (modulator ``"-"``)."""
    geo = [g for g in config.controls if g not in mt.ADAPTER_CONTROLS]
    return ([(k, g) for k in config.modulators for g in ["wordnet", *geo]]
            + [("-", g) for g in config.controls if g in mt.ADAPTER_CONTROLS])


def task_gate(rep: Report, config: Any, m: Any, seed: int
               ) -> dict[tuple[str, str], bool]:
    """The gate: does a modulator learn its own task on held-out synsets? Top-1 minus the
    plain model, per-synset differences pooled over seeds with a two-level interval; a
    (modulator, geometry) passes when the interval's lower bound is above 0."""
    from ..functional.stats import two_level_bootstrap

    plain = m.task["plain"]
    out: dict[tuple[str, str], bool] = {}
    rows = []
    for kind, geo in _conditions(config):
        rs = same_start(m, config, kind, geo)
        if not rs:
            continue
        rs = {r["key"]: r for r in rs.values()}  # meandiff: its one run counted once
        row = [kind, geo, len(rs)]
        for metric in ("top1", "top10"):
            diff = np.stack([m.task[r["key"]][metric] - plain[metric] for r in rs.values()])
            e = two_level_bootstrap(diff, n_boot=config.n_boot, seed=seed)
            row += [round(float(np.mean([m.task[r["key"]][metric].mean()
                                         for r in rs.values()])), 4),
                    fmt_ci(e.value, e.lo, e.hi)]
            if metric == "top1":
                out[(kind, geo)] = bool(e.lo > 0)
        rows.append(row + ["pass" if out[(kind, geo)] else "fail"])
    for geo in mt.ADAPTER_CONTROLS:  # the same runs stand beside every modulator
        if ("-", geo) in out:
            out |= {(k, geo): out[("-", geo)] for k in config.modulators}
    label = "next-token lemma accuracy" if m.s.causal else "reverse-dictionary recall"
    base = [round(float(plain["top1"].mean()), 4), round(float(plain["top10"].mean()), 4)]
    rep.section(
        f"{m.s.name}: task gate ({label} on held-out synsets)",
        f"Does each trained modulator do its own task better than the plain model (top-1 "
        f"{base[0]}, top-10 {base[1]})? Differences are per held-out synset, pooled over "
        "replicate seeds with a two-level bootstrap (seeds x synsets, 95 %). The relational "
        "lift below is read only for modulators that pass (top-1 interval above 0).",
    ).table("Task gate",
            ["modulator", "geometry", "seeds", "top-1", "top-1 - plain [CI]", "top-10",
             "top-10 - plain [CI]", "gate"], rows)
    rep.data[f"{m.s.name}:task_gate"] = {f"{k}/{g}": v for (k, g), v in out.items()}
    return out


def pooled_table(sec: Section, config: Any, m: Any, seed: int,
                  gate: dict[tuple[str, str], bool], suffix: str = "") -> list[list[Any]]:
    """Seeds pooled: mean lift and WordNet minus each control, with two-level intervals
    (replicate seeds x held-out synsets) and the smallest difference each could detect;
    ``suffix=LAST`` scores the decoder's last-token states instead of mean pooling."""
    from ..functional.stats import detectable_difference, two_level_from_replicates

    summary: list[list[Any]] = []
    rows = []
    path, raw = m.table["path"], m.raw["path"]
    plain = raw["plain" + suffix][:, 0]
    for kind in config.modulators:
        wn = same_start(m, config, kind, "wordnet")
        for geo in ["wordnet", *config.controls]:  # adapter controls: against each modulator
            rs = same_start(m, config, kind, geo)
            if not rs:
                continue
            est = two_level_from_replicates(
                np.stack([raw[r["key"] + suffix][:, 0] - plain for r in rs.values()]),
                seed=seed)
            plain_p = path["plain" + suffix]["pearson"]
            rel = 100 * est.value / abs(plain_p) if plain_p else float("nan")
            vs: str = ""
            mdd: float | str = ""
            both = sorted(set(rs) & set(wn)) if geo != "wordnet" else []
            if both:
                d = two_level_from_replicates(np.stack(
                    [raw[wn[sd]["key"] + suffix][:, 0] - raw[rs[sd]["key"] + suffix][:, 0]
                     for sd in both]),
                    seed=seed)
                vs = fmt_ci(d.value, d.lo, d.hi)
                mdd = round(detectable_difference(d.std), 4)
            acc = [float(m.task[r["key"]]["top1"].mean()) for r in rs.values()]
            passed = gate.get((kind, geo), False)
            rows.append([kind, geo, len(rs), "pass" if passed else "fail",
                         fmt_ci(est.value, est.lo, est.hi), round((est.hi - est.lo) / 2, 4),
                         f"{rel:+.1f} %", vs, mdd, round(float(np.mean(acc)), 4)])
            if geo == "wordnet" and not suffix:
                read = "" if passed else " (task gate failed: not read as an effect)"
                summary.append([f"{m.s.name} {kind}: path-Pearson lift (held-out)",
                                f"{est.value:+.4f} ({rel:+.1f} %){read}"])
    where = ("" if not suffix else
             f"Read at the prompt's last token, as hyperlens relational reads a decoder "
             f"(the plain model's Pearson there: {path['plain' + suffix]['pearson']:.4f}). ")
    sec.table(
        "Lift pooled over seeds (path similarity, Pearson): WordNet against the controls"
        + (" (last token)" if suffix else ""),
        ["modulator", "geometry", "seeds", "task gate", "mean lift [CI]", "half-width",
         "relative to plain", "WordNet - control [CI]", "detectable", "task top-1"],
        rows,
        note=where + "Intervals: two-level bootstrap (replicate seeds drawn with replacement over "
             "shared resamples of the held-out synsets), 95 %. 'detectable': the smallest "
             "true WordNet - control difference the comparison finds with probability 0.8 "
             "(2.8 bootstrap standard errors).",
    )
    return summary


def ceiling_section(rep: Report, config: Any, m: Any, seed: int, *, threads: int
                    ) -> list[list[Any]]:
    """A linear metric map on the plain model's embeddings, fitted on the training synsets
    (:mod:`hyperlens.inject.modulate_ceiling`): on the held-out subtrees and on a random
    split within the training subtrees."""
    from .modulate_ceiling import ceiling_rows

    s, name = m.s, m.s.name
    with rep.timer(f"{name}:ceiling"), pinned_threads(threads):
        plain_train = mt.evaluate(s, None, s.train)
        readings = [("mean", "reps")] + ([("last token", "reps_last")]
                                         if "reps_last" in plain_train else [])
        rows, out = [], {}
        for label, key in readings:
            test_key = "plain" if key == "reps" else "plain" + LAST
            res = ceiling_rows(s.train, s.test, plain_train[key], m.reps[test_key],
                               n_boot=config.n_boot, seed=seed, max_random_test=config.test)
            out[label] = res
            rows += [[label, r["split"], r["fitted_on"], r["scored_on"], round(r["plain"], 4),
                      round(r["mapped"], 4), fmt_ci(r["lift"], r["lift_lo"], r["lift_hi"]),
                      r["kept_step"]] for r in res]
    rep.data[f"{name}:ceiling"] = out
    rep.section(
        f"{name}: ceiling (a linear metric map on the plain embeddings)",
        "Could any linear reading of the plain model's definition embeddings lift the "
        "held-out correlation? A map x -> x + (x V) U^T (rank 64, identity at the start) is "
        "fitted to make cosines correlate with path similarity over pairs of training "
        "synsets, stopping when a validation slice of them stops improving (kept step 0: "
        "never better than the plain reading); that slice is held back the way the test "
        "is, whole training subtrees for the held-out row and synsets at random for the "
        "row within the training subtrees. Scored on the held-out subtrees it bounds "
        "what a modulator fed the same geometry can carry across the split; scored on a "
        "random split within the training subtrees it shows whether the map finds "
        "anything at all. Lift: mapped minus plain on the same bootstrap draws of synsets "
        "(95 %).",
    ).table("Ceiling", ["reading", "split", "fitted on", "scored on", "plain Pearson",
                        "mapped Pearson", "lift [CI]", "kept step"], rows)
    held = out["mean"][0]
    verdict = ("lifts" if held["lift_lo"] > 0 else
               "does not lift" if held["lift_hi"] >= 0 else "lowers")
    return [[f"{name}: linear-map ceiling on held-out subtrees (path Pearson)",
             f"{held['lift']:+.4f} [{held['lift_lo']:+.4f}, {held['lift_hi']:+.4f}]: "
             f"{verdict} the held-out correlation"]]
