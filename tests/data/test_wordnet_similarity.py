"""Bulk WordNet similarity against NLTK's own per-pair methods (the oracle)."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from hyperlens.errors import InputError, ShapeError

wsim = importlib.import_module("hyperlens.data.wordnet_similarity")


@pytest.fixture(scope="module")
def wn(graph):
    from hyperlens.data import wordnet_reader

    return wordnet_reader()


def _nltk(wn, names_a, names_b, measure: str, simulate_root: bool) -> np.ndarray:
    from nltk.corpus.reader.wordnet import WordNetError

    cache: dict[str, object] = {}

    def syn(n: str):
        if n not in cache:
            cache[n] = wn.synset(n)
        return cache[n]

    out = np.empty(len(names_a))
    for k, (x, y) in enumerate(zip(names_a, names_b, strict=True)):
        try:
            v = getattr(syn(x), measure + "_similarity")(syn(y), simulate_root=simulate_root)
        except WordNetError:  # lch across parts of speech
            v = None
        out[k] = np.nan if v is None else v
    return out


_GROUPS = {"noun": ("n",), "verb": ("v",), "adj": ("a", "s"), "adv": ("r",), "mixed": None}


def _pairs(graph, group, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    posset = _GROUPS[group]
    pool = np.arange(len(graph)) if posset is None else np.flatnonzero(np.isin(graph.pos, posset))
    a, b = rng.choice(pool, n), rng.choice(pool, n)
    a[: n // 50] = b[: n // 50]  # some identical pairs
    return a, b


def _check(graph, wn, group, measure, simulate_root, n, seed) -> None:
    a, b = _pairs(graph, group, n, seed)
    na, nb = [graph.names[i] for i in a], [graph.names[i] for i in b]
    ours = wsim.pair_similarity(na, nb, measure, simulate_root=simulate_root)
    ref = _nltk(wn, na, nb, measure, simulate_root)
    assert ours.dtype == np.float64
    bad = np.flatnonzero(~((ours == ref) | (np.isnan(ours) & np.isnan(ref))))
    assert bad.size == 0, [(na[k], nb[k], ours[k], ref[k]) for k in bad[:5]]


@pytest.mark.parametrize("simulate_root", [True, False])
@pytest.mark.parametrize("measure", ["path", "wup"])
@pytest.mark.parametrize("group", list(_GROUPS))
def test_equals_nltk_on_random_pairs(graph, wn, group, measure, simulate_root) -> None:
    _check(graph, wn, group, measure, simulate_root, 400, seed=7)


@pytest.mark.parametrize("simulate_root", [True, False])
@pytest.mark.parametrize("group", ["verb", "adj", "adv", "mixed"])
def test_lch_equals_nltk(graph, wn, group, simulate_root) -> None:
    # Nouns are in the slow test: NLTK's first noun lch call walks every noun for its depth.
    _check(graph, wn, group, "lch", simulate_root, 300, seed=11)


def test_nltk_quirks_are_reproduced(graph, wn) -> None:
    # Wu-Palmer of a synset with itself is below 1 when a deeper parent wins on min_depth,
    # and Wu-Palmer is not symmetric; both are NLTK's values.
    for x, y in [("person.n.01", "person.n.01"), ("bowing.n.02", "playing.n.01"),
                 ("playing.n.01", "bowing.n.02"), ("good.a.01", "bad.a.01"),
                 ("quickly.r.01", "good.a.01"), ("run.v.01", "dog.n.01"),
                 ("walk.v.01", "move.v.01"), ("walk.v.01", "travel.v.01")]:
        for measure in ("path", "wup", "lch"):
            for sr in (True, False):
                ours = wsim.pair_similarity([x], [y], measure, simulate_root=sr)[0]
                ref = _nltk(wn, [x], [y], measure, sr)[0]
                assert (math.isnan(ours) and math.isnan(ref)) or ours == ref, (x, y, measure, sr)
    person = wsim.pair_similarity(["person.n.01"], ["person.n.01"], "wup")[0]
    assert person < 1.0
    ab = wsim.pair_similarity(["bowing.n.02", "playing.n.01"], ["playing.n.01", "bowing.n.02"],
                              "wup")
    assert ab[0] != ab[1]
    # simulate_root: every adjective / adverb pair is path 1/3 and Wu-Palmer 1/2.
    adj = wsim.pair_similarity(["good.a.01", "fast.r.01"], ["bad.a.01", "quickly.r.01"], "path")
    assert np.allclose(adj, 1 / 3)
    assert wsim.pair_similarity(["good.a.01"], ["bad.a.01"], "wup")[0] == 0.5
    no_root = wsim.pair_similarity(["good.a.01"], ["bad.a.01"], "path", simulate_root=False)
    assert np.isnan(no_root[0])
    assert wsim.pair_similarity(["dog.n.01"], ["cat.n.01"])[0] == 0.2


@pytest.mark.parametrize("measure", ["path", "wup", "lch"])
def test_matrix_equals_pairs(graph, measure) -> None:
    rng = np.random.default_rng(3)
    ids = rng.choice(len(graph), 60, replace=False)
    names = [graph.names[i] for i in ids]
    for sr in (True, False):
        M = wsim.similarity_matrix(names, measure, simulate_root=sr)
        assert M.shape == (60, 60)
        ii, jj = np.meshgrid(np.arange(60), np.arange(60), indexing="ij")
        P = wsim.pair_similarity([names[i] for i in ii.ravel()], [names[j] for j in jj.ravel()],
                                 measure, simulate_root=sr).reshape(60, 60)
        assert np.array_equal(M, P, equal_nan=True)


@pytest.mark.skipif(wsim.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("measure", ["path", "wup", "lch"])
def test_compiled_pairs_equal_the_sparse_row_products(graph, measure, monkeypatch) -> None:
    """The merge kernel against the row-wise sparse products (the path without numba) on
    random pairs of every part of speech, pairs where one synset is an ancestor of the
    other (Wu-Palmer's tie rule), and identical pairs."""
    rng = np.random.default_rng(21)
    n = len(graph)
    anc = graph.ancestors.tocoo()
    k = rng.integers(0, anc.nnz, 3000)
    a = np.concatenate([rng.integers(0, n, 20_000), anc.row[k], anc.col[k], np.arange(0, n, 97)])
    b = np.concatenate([rng.integers(0, n, 20_000), anc.col[k], anc.row[k], np.arange(0, n, 97)])
    for group in ("n", "v"):
        pool = np.flatnonzero(graph.pos == group)
        a = np.concatenate([a, rng.choice(pool, 5000)])
        b = np.concatenate([b, rng.choice(pool, 5000)])
    for sr in (True, False):
        fast = graph.similarity(a, b, measure, sr)
        with monkeypatch.context() as m:
            m.setattr(wsim, "numba", None)
            slow = graph.similarity(a, b, measure, sr)
        assert fast.dtype == slow.dtype == np.float64
        bad = np.flatnonzero(~((fast == slow) | (np.isnan(fast) & np.isnan(slow))))
        assert bad.size == 0, [(graph.names[a[i]], graph.names[b[i]], fast[i], slow[i])
                               for i in bad[:5]]
        assert np.isfinite(fast).mean() > 0.4
        assert np.isnan(fast).any() == (not sr or measure == "lch")  # no path without root


def test_names_ids_and_synsets_mix(graph, wn) -> None:
    names = ["dog.n.01", "cat.n.01", "run.v.01", "good.a.01"]
    ids = graph.ids(names)
    assert ids.tolist() == [graph.index[x] for x in names]
    mixed = [names[0], int(ids[1]), wn.synset(names[2]), np.int64(ids[3])]
    assert graph.ids(mixed).tolist() == ids.tolist()
    assert graph.ids(tuple(names)).tolist() == ids.tolist()
    assert graph.ids(np.array(names)).tolist() == ids.tolist()
    assert graph.ids(["move.v.01"]).tolist() == graph.ids(["travel.v.01"]).tolist()
    with pytest.raises(InputError, match="'dgo.n.01'"):
        graph.ids(["dog.n.01", "dgo.n.01"])


def test_accepts_synsets_and_ids(graph, wn) -> None:
    a = wsim.pair_similarity([wn.synset("dog.n.01")], [wn.synset("cat.n.01")])
    ids = graph.ids(["dog.n.01", "cat.n.01"])
    b = graph.similarity(ids[:1], ids[1:], "path")
    assert a[0] == b[0] == 0.2


def test_graph_arrays_match_nltk(graph, wn) -> None:
    rng = np.random.default_rng(5)
    for i in rng.choice(len(graph), 200, replace=False).tolist():
        s = wn.synset(graph.names[i])
        assert s.pos() == graph.pos[i]
        assert graph.min_depth[i] == s.min_depth() and graph.max_depth[i] == s.max_depth()
        assert s.definition() == graph.definitions[i]
        assert tuple(lm.name() for lm in s.lemmas()) == graph.lemmas[i]
        assert s.lexname() == wsim._lexnames()[graph.lexname[i]][1]
    bank = [graph.names[j] for j in graph.synsets_of("bank")]
    assert bank[:2] == ["bank.n.01", "depository_financial_institution.n.01"]
    dog_v = [graph.names[j] for j in graph.synsets_of("dog", "v")]
    assert dog_v == [s.name() for s in wn.synsets("dog", "v")]


def test_bad_input(graph) -> None:
    with pytest.raises(InputError, match="not WordNet 3.0 synset names"):
        wsim.pair_similarity(["dog.n.01"], ["dgo.n.01"])
    with pytest.raises(ShapeError, match="same length"):
        wsim.pair_similarity(["dog.n.01", "cat.n.01"], ["dog.n.01"])
    with pytest.raises(InputError, match="measure must be one of"):
        wsim.pair_similarity(["dog.n.01"], ["cat.n.01"], "jcn")
    with pytest.raises(InputError, match="one string"):
        wsim.similarity_matrix("dog.n.01")
    assert wsim.pair_similarity([], []).shape == (0,)


@pytest.mark.slow
@pytest.mark.parametrize("simulate_root", [True, False])
@pytest.mark.parametrize("measure", ["path", "wup", "lch"])
@pytest.mark.parametrize("group", list(_GROUPS))
def test_equals_nltk_full_size(graph, wn, group, measure, simulate_root) -> None:
    """20,000 random pairs per measure, part of speech and simulate_root setting."""
    _check(graph, wn, group, measure, simulate_root, 20_000, seed=2026)
