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
