"""Accuracy intervals of the header arms and the rule that says whether the header helps.

Per arm: accuracy and the difference to the baseline with two-level intervals (replicate
seeds x evaluation texts), and against the baseline per seed a paired bootstrap and
McNemar's test (the rule reads those). With the text present the header *helps* when, in
every seed, it is at least ``margin`` (the config's, 2 points by default) above the baseline
with the paired 95 % interval above 0, and it beats the shuffled-code and prompt-tuning
controls (:func:`rule_text` states it in the report, above the numbers). The test's power is
planned from stage A, before any header trains (:func:`planned_power`), and measured on the
comparisons themselves; the verdict prints both.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..functional.stats import (
    Estimate,
    detectable_difference,
    mcnemar,
    paired_bootstrap,
    two_level_bootstrap,
    two_level_ratio,
)
from .header_arms import HeaderRun

__all__ = ["summarise", "beats", "verdict", "rule_text", "planned_power", "Paired", "paired",
           "CEILING_OF",
           "efficiency_rows", "withheld_verdict", "MEMO_ARMS", "memorisation_rows", "PAIRS",
           "paired_rows"]

#: the arms whose training and held-out curves the memorisation check puts side by side
MEMO_ARMS = ("hdc", "float", "shuffled", "random")

#: with the text withheld: the information ceiling each arm is measured against (the code it
#: reads, fed to a logistic regression without any LM)
CEILING_OF = {"hdc": "hdc-logistic", "float": "minilm", "shuffled": "hdc-logistic",
              "random": "hdc-logistic", "prompt": "hdc-logistic", "lm-static": "hdc-logistic",
              "lm-hdc": "hdc-logistic", "hdc-prefix": "hdc-logistic", "fulltext": "hdc-logistic",
              "fulltext-zs": "hdc-logistic"}


#: each arm that carries the text's code, and the controls it is compared with text by text
PAIRS: dict[str, tuple[str, ...]] = {
    arm: ("baseline", "notext", "shuffled", "random", "prompt", "hdc-ablate", "float",
          "fusion", "hdc-logistic") for arm in ("hdc", "hdc-recon", "hdc-frozen")}
PAIRS["hdc-prefix"] = PAIRS["hdc"] + ("hdc",)  # the seed's form against the cached header
PAIRS["lm-hdc"] = ("lm-static", "lm-hdc-ablate", "zeroshot-cal", "notext")


class Paired(NamedTuple):
    """One arm minus one control, text by text on the replicate seeds both have."""

    difference: Estimate  # two-level interval (seeds x texts)
    detectable: float  # smallest difference at 80 % power, two-sided 95 % (NaN: no spread)
    seeds: int
    texts: int


def paired(run: HeaderRun, arm: str, ctrl: str) -> Paired | None:
    """``arm`` minus ``ctrl`` (:class:`Paired`); ``None`` when they share no seed or are one
    arm. The bootstrap draws come from the run's ``base_seed``."""
    seeds = _common(run, arm, ctrl)
    if arm == ctrl or not seeds:
        return None
    a, b = _grid(run, arm, seeds), _grid(run, ctrl, seeds)
    assert a is not None and b is not None
    d = two_level_bootstrap(a - b, n_boot=run.p.n_boot, seed=run.p.base_seed)
    mdd = detectable_difference(d.std) if d.std == d.std else float("nan")
    return Paired(d, mdd, len(seeds), int(a.shape[1]))


def paired_rows(run: HeaderRun) -> list[dict[str, Any]]:
    """Every code-carrying arm against each of its controls (:data:`PAIRS`) that ran: the
    difference in accuracy, text by text on the seeds both have, with a two-level interval
    (seeds x texts), the smallest difference that comparison could detect (80 % power at
    95 %, from the interval's standard error) and what it says: above, below, or no
    difference as large as that."""
    out: list[dict[str, Any]] = []
    for arm, controls in PAIRS.items():
        for ctrl in controls:
            pr = paired(run, arm, ctrl)
            if pr is None:
                continue
            d, mdd = pr.difference, pr.detectable
            says = ("above" if d.lo > 0 else "below" if d.hi < 0
                    else f"no difference of {mdd:.3f} or more")
            out.append({"arm": arm, "control": ctrl, "seeds": pr.seeds, "texts": pr.texts,
                        "difference": d.as_dict(), "detectable": mdd, "says": says})
    return out


def summarise(run: HeaderRun) -> dict[str, Any]:
    """``{arm: {"per_seed", "acc", "vs_baseline", "vs_baseline_seeds", "mcnemar_p"}}`` for
    every arm that ran.

    ``acc`` and ``vs_baseline`` (the arm minus the baseline, paired per text) are two-level
    bootstraps over replicate seeds and evaluation texts, so every arm's interval is of one
    kind (an arm that runs once has the same answers under every seed: its interval is the
    bootstrap over texts); the draws come from the run's ``base_seed``. The rule's per-seed
    paired bootstraps (``vs_baseline_seeds``) and McNemar p-values stay beside them.
    """
    p = run.p
    seeds = p.seeds
    table: dict[str, Any] = {}
    for arm, per in run.correct.items():
        accs = [float(per[s].mean()) for s in seeds if s in per]
        grid = _grid(run, arm)
        if not accs or grid is None:
            continue
        rec: dict[str, Any] = {"per_seed": accs}
        rec["acc"] = two_level_bootstrap(grid, n_boot=p.n_boot, seed=p.base_seed).as_dict()
        vs = paired(run, arm, "baseline")
        if vs is not None:
            both = _common(run, arm, "baseline")
            rec["vs_baseline"] = vs.difference.as_dict()
            bper = run.correct["baseline"]
            rec["vs_baseline_seeds"] = [
                paired_bootstrap(per[s].astype(float), bper[s].astype(float),
                                 n_boot=p.n_boot, seed=s).as_dict() for s in both]
            rec["mcnemar_p"] = [float(mcnemar(per[s], bper[s])[1]) for s in both]
        table[arm] = rec
    return table


def beats(run: HeaderRun, a: str, b: str, margin: float = 0.0) -> tuple[bool, list[Any]]:
    """In every seed: mean(a) - mean(b) >= margin and the paired 95 % interval above 0."""
    ca, cb = run.correct.get(a, {}), run.correct.get(b, {})
    res = []
    ok = bool(ca) and bool(cb)
    for s in run.p.seeds:
        if s not in ca or s not in cb:
            ok = False
            continue
        d = paired_bootstrap(ca[s].astype(float), cb[s].astype(float), n_boot=run.p.n_boot,
                             seed=s)
        res.append(d)
        ok = ok and d.value >= margin and d.lo > 0
    return ok, res


def rule_text(margin: float) -> str:
    """The text-present rule, in a sentence, with the config's ``margin``."""
    return (f"Rule (--margin {margin:g}): the header helps when, in every seed, it is at least "
            f"{100 * margin:g} points above the baseline head with the paired 95 % interval "
            "above 0, and beats the shuffled-code and prompt-tuning controls with their "
            "intervals above 0.")


def planned_power(run: HeaderRun) -> dict[str, Any] | None:
    """The power of the paired test at this evaluation size, planned from stage A before any
    header trains: the smallest difference (80 % power, two-sided 95 %) that the two-level
    interval of late fusion minus the baseline head could detect, two heads on the same
    texts, as a header arm against the baseline will be. ``None`` without both arms."""
    pr = paired(run, "fusion", "baseline")
    if pr is None:
        return None
    return {"detectable": pr.detectable, "texts": pr.texts, "seeds": pr.seeds,
            "from": "late fusion minus the baseline head (stage A)"}


def _power_text(run: HeaderRun, ok_base: bool, ok_fusion: bool) -> str:
    """What the comparisons could detect, planned and measured, and what that says."""
    plan = planned_power(run)
    parts = []
    if plan is not None:
        parts.append(f"Power: planned from stage A before any header trained ({plan['from']}, "
                     f"{plan['texts']} texts x {plan['seeds']} seeds), the paired test could "
                     f"detect {plan['detectable']:.3f} (80 %, two-sided 95 %)")
    measured = []
    for ctrl, name in (("baseline", "the baseline"), ("fusion", "late fusion")):
        pr = paired(run, "hdc", ctrl)
        if pr is None:
            continue
        d, mdd = pr.difference, pr.detectable
        ok = ok_base if ctrl == "baseline" else ok_fusion
        measured.append(f"against {name} {d.value:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}], "
                        f"detectable {mdd:.3f}" + ("" if ok or d.lo > 0 else
                                                   f": a gain of {mdd:.3f} or more would have "
                                                   "shown and did not"))
    if measured:
        parts.append(("; measured, the HDC header " if parts else "Power: the HDC header ")
                     + "; ".join(measured))
    return "".join(parts) + "." if parts else ""


def verdict(run: HeaderRun) -> str:
    """The rule applied to the run, in sentences: the rule, what holds and what fails, and
    the power of the comparisons."""
    if "hdc" not in run.correct or "baseline" not in run.correct:
        return "not decided: the HDC header arm or the baseline did not run."
    ok_base, d_base = beats(run, "hdc", "baseline", margin=run.p.margin)
    ok_shuf, _ = beats(run, "hdc", "shuffled")
    ok_prompt, _ = beats(run, "hdc", "prompt")
    ok_fusion, _ = beats(run, "hdc", "fusion")
    mean_d = float(np.mean([d.value for d in d_base])) if d_base else float("nan")
    parts = [rule_text(run.p.margin), f"HDC header vs baseline: {mean_d:+.3f} mean over seeds "
             f"(per-seed paired 95 % CIs: "
             + ", ".join(f"[{d.lo:+.3f}, {d.hi:+.3f}]" for d in d_base) + ")."]
    if ok_base and ok_shuf and ok_prompt:
        parts.append(f"The header HELPS by the rule (>= {100 * run.p.margin:g} points over the "
                     "baseline with the paired CI above 0 in every seed, and it beats the "
                     "shuffled-code and prompt-tuning controls).")
    else:
        why = []
        if not ok_base:
            why.append(f"it is not >= {100 * run.p.margin:g} points above the baseline with "
                       "the CI above 0 in every seed")
        for arm, name, ok in (("shuffled", "the shuffled-code control", ok_shuf),
                              ("prompt", "input-independent prompt tuning", ok_prompt)):
            if arm not in run.correct:
                why.append(f"{name} did not run, so the header cannot be shown to beat it")
            elif not ok:
                why.append(f"it does not beat {name} in every seed")
        parts.append("The header does NOT help by the rule: " + "; ".join(why) + ".")
    frozen = paired(run, "hdc-frozen", "baseline")
    if frozen is not None:  # the cleaner test: the head is the baseline's, only the header
        d = frozen.difference
        parts.append(f"With the baseline head frozen (only the header trains) the HDC header "
                     f"changes accuracy by {d.value:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}] "
                     "(two-level 95 % interval, seeds x texts; detectable "
                     f"{frozen.detectable:.3f}).")
    if "fusion" in run.correct and not ok_fusion:
        fus_up, _ = beats(run, "fusion", "baseline")
        if fus_up:
            parts.append("It does not beat late fusion either: MiniLM's features help (late "
                         "fusion beats the baseline), but the header route adds nothing.")
        else:
            parts.append("It does not beat late fusion, which itself is not above the "
                         "baseline in every seed.")
    power = _power_text(run, ok_base, ok_fusion)
    return " ".join(parts + ([power] if power else []))


def _grid(run: HeaderRun, arm: str, seeds: list[int] | None = None) -> np.ndarray | None:
    """``[n_seeds, n_eval]`` correctness of ``arm`` over the replicate seeds it has answers
    for (of ``seeds``, default the run's; an arm that runs once is filed under every seed)."""
    per = run.correct.get(arm, {})
    rows = [per[s] for s in (run.p.seeds if seeds is None else seeds) if s in per]
    return np.stack(rows).astype(float) if rows else None


def _common(run: HeaderRun, *arms: str) -> list[int]:
    """The replicate seeds every one of ``arms`` has answers for."""
    return [s for s in run.p.seeds if all(s in run.correct.get(a, {}) for a in arms)]


def efficiency_rows(run: HeaderRun) -> dict[str, dict[str, Any]]:
    """With the text withheld: per arm, accuracy and channel efficiency
    ``(arm - no text) / (ceiling - no text)`` (the ceiling: :data:`CEILING_OF`), both with
    two-level intervals (replicate seeds x evaluation texts, the same draws for both means
    of the ratio)."""
    p = run.p
    out: dict[str, dict[str, Any]] = {}
    for arm, ceil_arm in CEILING_OF.items():
        seeds = _common(run, arm, ceil_arm, "notext")
        if not seeds:
            continue
        a, c, floor = (_grid(run, x, seeds) for x in (arm, ceil_arm, "notext"))
        assert a is not None and c is not None and floor is not None
        rec: dict[str, Any] = {"ceiling": ceil_arm,
                               "acc": two_level_bootstrap(a, n_boot=p.n_boot,
                                                          seed=p.base_seed).as_dict(),
                               "gain": two_level_bootstrap(a - floor, n_boot=p.n_boot,
                                                           seed=p.base_seed).as_dict()}
        if float((c - floor).mean()) > 0:
            rec["efficiency"] = two_level_ratio(a - floor, c - floor, n_boot=p.n_boot,
                                                seed=p.base_seed).as_dict()
        out[arm] = rec
    return out


def withheld_verdict(run: HeaderRun, rows: dict[str, dict[str, Any]]) -> str:
    """The text-withheld targets in sentences: the HDC header carries at least 0.8 of
    what its code carries (channel efficiency), shuffled and random codes at most 0.1, and
    HDC at most 2 points below the float header (the seed: ternary codes lose little)."""
    def eff(arm: str) -> float | None:
        e = rows.get(arm, {}).get("efficiency")
        return None if e is None else float(e["value"])

    h, sh, rd = eff("hdc"), eff("shuffled"), eff("random")
    if h is None:
        return ("not decided: the HDC header, the floor (no text) or the code's ceiling did "
                "not run, or the ceiling is not above the floor.")
    parts = [f"HDC header channel efficiency {h:.2f} "
             f"[{rows['hdc']['efficiency']['lo']:.2f}, {rows['hdc']['efficiency']['hi']:.2f}] "
             f"(target >= 0.8): {'met' if h >= 0.8 else 'missed'}."]
    ctrl = [(n, v) for n, v in (("shuffled", sh), ("random", rd)) if v is not None]
    if ctrl:
        ok = all(v <= 0.1 for _, v in ctrl)
        parts.append("Controls " + ", ".join(f"{n} {v:.2f}" for n, v in ctrl)
                     + f" (target <= 0.1): {'met' if ok else 'missed'}.")
    if "float" in rows:
        d = rows["hdc"]["acc"]["value"] - rows["float"]["acc"]["value"]
        parts.append(f"HDC minus float header: {d:+.3f} (target: at most 0.02 below): "
                     f"{'met' if d >= -0.02 else 'missed'}.")
    return " ".join(parts)


def memorisation_rows(curves: dict[str, dict[str, dict[str, Any]]]) -> list[list[Any]]:
    """Per arm of :data:`MEMO_ARMS` with training accuracy in its curves: the mean over seeds
    of training and held-out accuracy (and their gap) at the kept evaluation and at the
    last one."""
    rows: list[list[Any]] = []
    for arm in MEMO_ARMS:
        kept, last = [], []
        for c in curves.get(arm, {}).values():
            ev = [e for e in c.get("evals", []) if "train_acc" in e]
            if not ev:
                continue
            k = next((e for e in ev if e["step"] == c.get("best_step")), ev[-1])
            kept.append((k["train_acc"], k["val_acc"]))
            last.append((ev[-1]["train_acc"], ev[-1]["val_acc"]))
        if not kept:
            continue
        km, lm = np.mean(kept, axis=0), np.mean(last, axis=0)
        rows.append([arm, len(kept), *(round(float(v), 4) for v in
                                       (km[0], km[1], km[0] - km[1], lm[0], lm[1],
                                        lm[0] - lm[1]))])
    return rows
