"""The header report's memorisation check: training against held-out accuracy per arm."""

from __future__ import annotations

import pytest

from hyperlens.inject.header_verdict import MEMO_ARMS, memorisation_rows


def _curve(pairs, best_step):
    return {"evals": [{"step": 10 * (i + 1), "train_acc": t, "val_acc": v}
                      for i, (t, v) in enumerate(pairs)], "best_step": best_step}


def test_rows_take_the_kept_and_the_last_evaluation_averaged_over_seeds():
    curves = {
        "hdc": {"0": _curve([(0.6, 0.6), (0.8, 0.7), (0.9, 0.65)], 20),
                "1": _curve([(0.5, 0.5), (0.7, 0.6)], 20)},
        "random": {"0": _curve([(0.6, 0.5), (1.0, 0.5)], 10)},
        "prompt": {"0": _curve([(0.9, 0.9)], 10)},  # not a code arm: left out
        "shuffled": {"0": {"evals": [{"step": 10, "val_acc": 0.5}], "best_step": 10}},
    }
    rows = {r[0]: r for r in memorisation_rows(curves)}
    assert set(rows) == {"hdc", "random"} and set(rows) <= set(MEMO_ARMS)
    hdc = rows["hdc"]
    assert hdc[1] == 2
    assert hdc[2:5] == pytest.approx([0.75, 0.65, 0.10])  # kept: (0.8, 0.7) and (0.7, 0.6)
    assert hdc[5:8] == pytest.approx([0.8, 0.625, 0.175])  # last: (0.9, 0.65) and (0.7, 0.6)
    assert rows["random"][2:5] == pytest.approx([0.6, 0.5, 0.1])
    assert rows["random"][7] == pytest.approx(0.5)
