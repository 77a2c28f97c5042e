"""Synset matching, the subtree split and the vectorised Wu-Palmer matrix against NLTK."""

from __future__ import annotations

import numpy as np
import pytest

from hyperlens.errors import DataError


@pytest.fixture(scope="module")
def wn():
    from hyperlens.data import wordnet

    try:
        return wordnet()
    except DataError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))


def test_wup_matrix_equals_nltk(wn):
    from hyperlens.data.synsets import wup_matrix

    rng = np.random.default_rng(3)
    nouns = list(wn.all_synsets("n"))
    syn = [nouns[i] for i in rng.choice(len(nouns), 120, replace=False)]
    syn += [wn.synset("dog.n.01"), wn.synset("canine.n.02"), wn.synset("entity.n.01")]
    W = wup_matrix(syn)
    ref = np.array([[a.wup_similarity(b) for b in syn] for a in syn])
    np.testing.assert_allclose(W, ref, rtol=0, atol=1e-12)


def test_subtree_split_is_disjoint_by_subtree(wn):
    from hyperlens.data.synsets import MatchedSynset, subtree_split

    nouns = list(wn.all_synsets("n"))[::40][:600]
    matched = [MatchedSynset(s.lemma_names()[0], s, i) for i, s in enumerate(nouns)]
    sp = subtree_split(matched, test_fraction=0.25, depth=4, seed=0)
    s = sp.summary()
    assert s["shared_subtrees"] == 0 and s["n_train"] + s["n_test"] == len(matched)
    assert 0.1 < s["n_test"] / len(matched) < 0.45
    train_roots = {sp.groups[m.name] for m in sp.train}
    assert all(sp.groups[m.name] not in train_roots for m in sp.test)
