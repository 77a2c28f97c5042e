"""The header report's paired comparisons: every code arm minus each control that ran."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hyperlens.inject.header_verdict import PAIRS, paired_rows


def _run():
    rng = np.random.default_rng(0)
    n = 400
    truth = rng.random((3, n)) < 0.8  # the code arm is right on 80 % of texts
    worse = truth & (rng.random((3, n)) < 0.75)  # the shuffled control loses a quarter
    same = truth.copy()
    same[:, :4] = ~same[:, :4]  # the baseline differs on 4 texts of 400 only
    correct = {"hdc": {s: truth[s] for s in range(3)},
               "shuffled": {s: worse[s] for s in range(3)},
               "baseline": {s: same[s] for s in range(3)},
               "prompt": {0: worse[0]}}  # one seed only
    p = SimpleNamespace(seeds=(0, 1, 2), n_boot=400, base_seed=0)
    return SimpleNamespace(p=p, correct=correct)


def test_each_control_that_ran_is_compared_on_the_seeds_both_have():
    rows = {r["control"]: r for r in paired_rows(_run()) if r["arm"] == "hdc"}
    assert set(rows) == {"shuffled", "baseline", "prompt"} <= set(PAIRS["hdc"]) | {"prompt"}
    sh = rows["shuffled"]
    assert sh["seeds"] == 3 and sh["texts"] == 400 and sh["says"] == "above"
    assert sh["difference"]["value"] == pytest.approx(0.2, abs=0.03)
    base = rows["baseline"]
    assert base["difference"]["lo"] <= 0 <= base["difference"]["hi"]
    assert base["says"].startswith("no difference of") and 0 < base["detectable"] < 0.05
    assert rows["prompt"]["seeds"] == 1
    # fewer seeds, wider interval: the detectable difference grows
    assert rows["prompt"]["detectable"] > sh["detectable"]


def _verdict_run(margin: float):
    rng = np.random.default_rng(1)
    n = 600
    base = rng.random((3, n)) < 0.75
    hdc = base.copy()
    hdc[:, :150] = True  # about 6 points above the baseline in every seed
    fusion = base.copy()
    fusion[:, 100:130] = ~fusion[:, 100:130]  # another head on the same texts
    worse = base & (rng.random((3, n)) < 0.9)
    correct = {name: {s: arr[s] for s in range(3)} for name, arr in (
        ("hdc", hdc), ("baseline", base), ("fusion", fusion), ("shuffled", worse),
        ("prompt", worse))}
    p = SimpleNamespace(seeds=(0, 1, 2), n_boot=400, base_seed=0, margin=margin)
    return SimpleNamespace(p=p, correct=correct)


def test_the_verdict_states_the_configured_rule_and_its_power():
    from hyperlens.inject.header_verdict import planned_power, verdict

    gain = float(np.mean([_verdict_run(0.02).correct["hdc"][s].mean()
                          - _verdict_run(0.02).correct["baseline"][s].mean() for s in range(3)]))
    assert 0.04 < gain < 0.09
    helps = verdict(_verdict_run(0.02))
    assert helps.startswith("Rule (--margin 0.02)") and "HELPS" in helps
    strict = verdict(_verdict_run(0.2))  # the same answers under a 20-point rule
    assert strict.startswith("Rule (--margin 0.2)") and "does NOT help" in strict
    assert "not >= 20 points above the baseline" in strict
    plan = planned_power(_verdict_run(0.02))
    assert plan is not None and plan["texts"] == 600 and plan["seeds"] == 3
    assert 0 < plan["detectable"] < 0.05  # 30 discordant texts of 600
    assert f"could detect {plan['detectable']:.3f}" in helps
    assert "against the baseline" in helps and "against late fusion" in helps
    run = _verdict_run(0.02)
    del run.correct["fusion"]
    assert planned_power(run) is None and "planned" not in verdict(run)
