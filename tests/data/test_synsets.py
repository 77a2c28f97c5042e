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



class _Reordered:
    """A synset whose hypernym paths come in reverse order (NLTK's order changes between
    processes)."""

    def __init__(self, synset):
        self._s = synset

    def __getattr__(self, name):
        return getattr(self._s, name)

    def hypernym_paths(self):
        return self._s.hypernym_paths()[::-1]


def test_subtree_split_does_not_depend_on_the_order_of_hypernym_paths(wn):
    from hyperlens.data.synsets import MatchedSynset, subtree_split

    nouns = list(wn.all_synsets("n"))[::40][:600]
    assert sum(len(s.hypernym_paths()) > 1 for s in nouns) > 5  # the order matters here
    plain = [MatchedSynset(s.lemma_names()[0], s, i) for i, s in enumerate(nouns)]
    flipped = [MatchedSynset(m.word, _Reordered(m.synset), m.token_id) for m in plain]
    a, b = (subtree_split(x, test_fraction=0.25, depth=4, seed=0) for x in (plain, flipped))
    assert [m.name for m in a.test] == [m.name for m in b.test]
    assert a.groups == b.groups
