"""The linear metric-map ceiling of the modulate experiment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperlens.errors import DataError, InputError


@pytest.fixture(scope="module")
def nouns():
    from hyperlens.data import wordnet_reader

    try:
        wn = wordnet_reader()
    except DataError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))
    return list(wn.all_synsets("n"))[::41][:400]


def _hidden_structure(synsets, seed=0):
    """Embeddings whose cosines hide path similarity: its top eigenvectors, drowned in
    per-coordinate scales and a large shared offset that a linear map can undo."""
    from hyperlens.data.wordnet import similarity_matrix

    S = similarity_matrix(synsets, "path")
    vals, vecs = np.linalg.eigh(0.5 * (S + S.T))
    top = vecs[:, -24:] * np.sqrt(np.maximum(vals[-24:], 0))
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(len(synsets), 8))
    x = np.concatenate([top, noise], axis=1) + 5.0  # the offset flattens every cosine
    return torch.from_numpy(x).float()


def test_the_map_starts_as_the_identity_and_learns_what_cosine_misses(nouns):
    from hyperlens.inject.modulate_ceiling import fit_metric_map

    x = _hidden_structure(nouns)
    mm = fit_metric_map(x, nouns, dim=16, steps=150, eval_every=15, patience=4,
                        pairs_per_step=1024, seed=0)
    step0 = mm.history[0][1]
    best = max(r for _, r in mm.history)
    assert mm.best_step > 0 and best > step0 + 0.05
    fresh = fit_metric_map(x, nouns, dim=16, steps=0, seed=0)  # no training: identity
    assert fresh.best_step == 0 and torch.allclose(fresh.transform(x), x)


def test_ceiling_rows_score_both_splits(nouns):
    from hyperlens.inject.modulate_ceiling import ceiling_rows

    x = _hidden_structure(nouns)
    rows = ceiling_rows(nouns[:180], nouns[180:240], x[:180], x[180:240], n_boot=20, seed=0,
                        max_random_test=40, steps=60)
    assert [r["split"] for r in rows] == ["held-out subtrees",
                                          "random, within training subtrees"]
    assert rows[1]["scored_on"] == 40 and rows[1]["fitted_on"] == 135
    for r in rows:
        assert r["lift_lo"] <= r["lift"] <= r["lift_hi"]
        assert r["mapped"] == pytest.approx(r["plain"] + r["lift"], abs=1e-9)


def test_bad_input_is_refused():
    from hyperlens.inject.modulate_ceiling import fit_metric_map

    with pytest.raises(InputError, match="n_synsets=3"):
        fit_metric_map(torch.zeros(4, 2), [object()] * 3)
    with pytest.raises(InputError, match="at least 20"):
        fit_metric_map(torch.zeros(5, 2), [object()] * 5)


def test_the_held_out_ceiling_validates_on_whole_subtrees(nouns):
    from hyperlens.data.synsets import _subtree_roots
    from hyperlens.inject.modulate_ceiling import fit_metric_map, subtree_slice

    items = nouns[:240]
    val = subtree_slice(items, fraction=0.2, seed=3)
    assert 0.1 * len(items) <= len(val) <= 0.35 * len(items)
    assert np.array_equal(val, subtree_slice(items, fraction=0.2, seed=3))  # seeded
    # no validation synset shares a subtree root (any path, depth 4) with a fitted one
    held = set(val.tolist())
    roots = [set(_subtree_roots(s, 4, "all")) for s in items]
    val_roots = set().union(*(roots[i] for i in held))
    fit_roots = set().union(*(r for i, r in enumerate(roots) if i not in held))
    assert not val_roots & fit_roots
    x = _hidden_structure(items)
    mm = fit_metric_map(x, items, dim=8, steps=30, eval_every=10, val_index=val, seed=0)
    assert mm.history[0][0] == 0 and len(mm.history) >= 2
    with pytest.raises(InputError, match="val_index"):
        fit_metric_map(x, items, val_index=[0])
