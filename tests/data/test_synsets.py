"""Synset matching, the subtree split and the vectorised Wu-Palmer matrix against NLTK."""

from __future__ import annotations

import pytest

from hyperlens.errors import DataError


@pytest.fixture(scope="module")
def wn():
    from hyperlens.data import wordnet_reader

    try:
        return wordnet_reader()
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


def test_subtree_split_is_leak_free_over_every_hypernym_path(wn):
    """No held-out synset shares an ancestor at the split depth, on any of its hypernym
    paths, with a training synset; the seed's first-path rule does leak on the same data,
    which is what makes the check able to fail."""
    from hyperlens.data.synsets import MatchedSynset, subtree_split

    nouns = list(wn.all_synsets("n"))[::10][:3000]
    matched = [MatchedSynset(s.lemma_names()[0], s, i) for i, s in enumerate(nouns)]

    def ancestors(m):
        return {p[min(4, len(p) - 1)].name() for p in m.synset.hypernym_paths()}

    for seed in (0, 1):
        sp = subtree_split(matched, test_fraction=0.25, depth=4, seed=seed)
        train_anc = set().union(*(ancestors(m) for m in sp.train))
        assert sp.test and not any(ancestors(m) & train_anc for m in sp.test)
        assert sp.summary()["test_sharing_an_ancestor"] == 0
        assert len(sp.train) + len(sp.test) == len(matched)
    seed_rule = subtree_split(matched, test_fraction=0.25, depth=4, seed=0, paths="first")
    assert seed_rule.summary()["test_sharing_an_ancestor"] > 0


def test_subtree_split_refuses_an_unknown_path_rule():
    from hyperlens.data.synsets import subtree_split
    from hyperlens.errors import InputError

    with pytest.raises(InputError, match="paths must be 'all'"):
        subtree_split([object()] * 4, paths="second")  # type: ignore[list-item]


def _fake_tokenizer(kind: str):
    """Three tokenizer families over the words the, dog, cat and the piece "ably"."""
    words = {"the": 1, "dog": 2, "cat": 3, "ably": 4}

    def tokenize(texts):
        out = []
        for t in texts:
            w = t.lstrip(" ")
            spaced = t.startswith(" ")
            if kind == "bytelevel":  # "Ġdog" = 10 + id; the bare form is a word-internal piece
                one = w in words and ((spaced and w != "ably") or (not spaced and w != "cat"))
                out.append([words[w] + (10 if spaced else 0)] if one else [90, 91])
            elif kind == "sentencepiece":  # adds "▁" itself; a leading space is a lone "▁"
                ids = [words[w] + 20] if w in words and w != "ably" else [92, 93]
                out.append(([29871] + ids) if spaced else ids)
            else:  # wordpiece: spaces dropped
                out.append([words[w] + 30] if w in words and w != "ably" else [94, 95])
        return out

    return tokenize


@pytest.mark.parametrize("kind,spaced", [("bytelevel", True), ("sentencepiece", False),
                                         ("wordpiece", False)])
def test_single_token_ids_reads_each_word_in_its_sentence_form(kind, spaced) -> None:
    from hyperlens.data.synsets import single_token_ids, space_marks_word_start

    tok = _fake_tokenizer(kind)
    assert space_marks_word_start(tok) is spaced
    ids, forms = single_token_ids(tok, ["dog", "cat", "ably", "emu"])
    offset = {"bytelevel": 10, "sentencepiece": 20, "wordpiece": 30}[kind]
    assert ids.tolist() == [2 + offset, 3 + offset, -1, -1]  # "ably" is never the word
    assert forms[0] == (" dog" if spaced else "dog")
    # ids beyond the embedding table do not count
    ids, _ = single_token_ids(tok, ["dog", "cat"], vocab_size=3 + offset)
    assert ids.tolist() == [2 + offset, -1]
    # a forced form
    ids, forms = single_token_ids(tok, ["dog"], leading_space=not spaced)
    assert forms == (["dog"] if spaced else [" dog"])


def test_match_synsets_uses_the_one_rule(wn) -> None:
    from hyperlens.data.synsets import match_synsets

    class EncodeOnly:  # a tokenizer with only .encode, byte-level: " dog" one token
        vocab = {" the": 1, " dog": 2, " cat": 3, "ably": 4, "the": 5}

        def encode(self, text, add_special_tokens=False):
            return [self.vocab[text]] if text in self.vocab else [7, 8]

    matched = match_synsets(EncodeOnly(), wn)
    # "ably" is a bare word piece here, never matched; the spaced forms are
    assert [(m.name, m.token_id) for m in matched] == [("cat.n.01", 3), ("dog.n.01", 2)]


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


def test_deal_groups_takes_whole_groups_up_to_the_share_and_skips_giants() -> None:
    from hyperlens.data.synsets import deal_groups

    # one giant group of 60 synsets and 40 singletons
    groups = {f"g{i}": "giant" for i in range(60)} | {f"s{i}": f"s{i}" for i in range(40)}
    for seed in range(100):
        strict = deal_groups(groups, test_fraction=0.1, seed=seed, giant_first=False)
        assert "giant" not in strict and len(strict) == 10  # whole groups, 10 % of 100
        loose = deal_groups(groups, test_fraction=0.1, seed=seed)
        assert loose == strict or loose == {"giant"}  # the giant only when dealt first
    assert any(deal_groups(groups, test_fraction=0.1, seed=s) == {"giant"} for s in range(100))
