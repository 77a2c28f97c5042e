"""Synset matching, the subtree split and the vectorised Wu-Palmer matrix against NLTK."""

from __future__ import annotations

import pytest

from hyperlens.errors import DataError


@pytest.fixture(scope="module")
def wn():
    from hyperlens.data import wordnet

    try:
        return wordnet()
    except DataError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))


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
