"""Accuracy intervals of the header arms and the rule that says whether the header helps.

Per arm: accuracy as a mean with a t-interval over replicate seeds (a bootstrap over the
evaluation texts where every seed gives the same accuracy, e.g. an arm that runs once),
and against the baseline per seed a paired bootstrap and McNemar's test. The header
*helps* when, in every seed, it is at least 2 points above the baseline with the paired
95 % interval above 0, and it beats the shuffled-code and prompt-tuning controls.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional.stats import bootstrap_ci, mcnemar, paired_bootstrap, t_interval
from .header_arms import HeaderRun

__all__ = ["summarise", "beats", "verdict"]


def summarise(run: HeaderRun) -> dict[str, Any]:
    """``{arm: {"per_seed", "acc", "vs_baseline", "mcnemar_p"}}`` for every arm that ran.

    The bootstrap over texts draws from the run's ``base_seed``; each paired bootstrap
    against the baseline from its replicate seed.
    """
    p = run.p
    base = run.correct.get("baseline", {})
    seeds = p.seeds
    table: dict[str, Any] = {}
    for arm, per in run.correct.items():
        accs = [float(per[s].mean()) for s in seeds if s in per]
        if not accs:
            continue
        rec: dict[str, Any] = {"per_seed": accs}
        rec["acc"] = (t_interval(accs) if len(set(accs)) > 1 else
                      bootstrap_ci(per[seeds[0]].astype(float), n_boot=p.n_boot,
                                   seed=p.base_seed)).as_dict()
        if base and arm != "baseline":
            both = [s for s in seeds if s in per and s in base]
            diffs = [paired_bootstrap(per[s].astype(float), base[s].astype(float),
                                      n_boot=p.n_boot, seed=s) for s in both]
            rec["vs_baseline"] = [d.as_dict() for d in diffs]
            rec["mcnemar_p"] = [float(mcnemar(per[s], base[s])[1]) for s in both]
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


def verdict(run: HeaderRun) -> str:
    """The rule applied to the run, in sentences (what holds and what fails)."""
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
    if ok_base and ok_shuf and ok_prompt:
        parts.append("The header HELPS by the rule (>= 2 points over the baseline with the "
                     "paired CI above 0 in every seed, and it beats the shuffled-code and "
                     "prompt-tuning controls).")
    else:
        why = []
        if not ok_base:
            why.append("it is not >= 2 points above the baseline with the CI above 0 in every "
                       "seed")
        for arm, name, ok in (("shuffled", "the shuffled-code control", ok_shuf),
                              ("prompt", "input-independent prompt tuning", ok_prompt)):
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
