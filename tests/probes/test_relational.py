"""The relational probe: the weighted bootstrap against explicit resamples, nulls, entries."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from hyperlens.errors import ConfigError, InputError

rel = importlib.import_module("hyperlens.probes.relational")
ent = importlib.import_module("hyperlens.probes.wordnet_entries")
wsim = importlib.import_module("hyperlens.data.wordnet_similarity")


@pytest.fixture(scope="module")
def nouns(graph):
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(np.flatnonzero(graph.pos == "n"), 120, replace=False))


def _aligned(graph, ids, noise: float, seed: int = 0) -> np.ndarray:
    """Rows whose cosines follow path similarity (a spectral embedding of it) plus noise."""
    S = wsim.similarity_matrix(ids, "path")
    vals, vecs = np.linalg.eigh(S)
    X = vecs[:, -20:] * np.sqrt(np.maximum(vals[-20:], 0))
    return X + noise * np.random.default_rng(seed).standard_normal(X.shape)


def test_weighted_bootstrap_equals_explicit_resample(graph, nouns) -> None:
    ids = nouns[:40]
    X = _aligned(graph, ids, 0.5)
    C = rel.cosine_matrix(X)
    S = wsim.similarity_matrix(ids, "path")
    ps = rel._PairSet(S)
    W = rel._weights(ids.size, 3, seed=1)
    q = rel._Quad(W)
    A = np.where(ps.valid, C - C[ps.valid].mean(), 0.0)
    got = rel._corr_from_sums(*rel._stat_sums(q, ps.V, ps.S, A, "path", "x", "all"))
    rng = np.random.default_rng(1)
    draws = rng.integers(0, ids.size, size=(3, ids.size))
    for b in range(3):
        d = draws[b]
        i, j = np.triu_indices(d.size, 1)
        keep = d[i] != d[j]  # pairs of two copies of one synset share their tokens: left out
        a, c = d[i[keep]], d[j[keep]]
        want = np.corrcoef(C[a, c], S[a, c])[0, 1]
        assert got[b] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_alignment_detects_structure_and_its_absence(graph, nouns) -> None:
    X = _aligned(graph, nouns, 0.05)
    noise = np.random.default_rng(3).standard_normal((nouns.size, 20))
    r = rel.relational_alignment(X, nouns, n_perm=99, n_boot=100, seed=0, baseline=noise,
                                 mantel_max=120, n_simplices=200)
    sp = r["path"]["spearman"]
    assert sp["lo"] <= sp["value"] <= sp["hi"]
    assert sp["value"] > 0.3 and r["path"]["mantel_p_spearman"] <= 0.02
    base = r["baseline"]["path"]["spearman"]
    assert abs(base["value"]) < 0.1 and r["baseline"]["path"]["mantel_p_pearson"] > 0.01
    diff = r["vs_baseline"]["path.spearman"]
    assert diff["lo"] > 0 and diff["method"] == "paired bootstrap over synsets"
    assert [b["band"] for b in r["bands"]] == [list(b) for b in rel.PATH_BANDS]
    assert r["simulate_root"]["share_pairs"] == 0.0  # nouns share entity.n.01
    assert r["pentachoron"]["available"]


def test_simulate_root_share_counts_non_noun_pairs(graph) -> None:
    ids = graph.ids(["dog.n.01", "cat.n.01", "good.a.01", "bad.a.01", "quickly.r.01"])
    share = rel.simulate_root_share(ids, graph=graph)
    # 10 pairs: dog-cat has a real path; every pair with an adjective or adverb uses the root.
    assert share["share_pairs"] == pytest.approx(0.9)
    assert share["share_high_pairs"] == pytest.approx(1.0)  # only root pairs reach path 1/3


def test_lexname_clustering_against_permutations() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    centres = rng.standard_normal((4, 16)) * 3
    X = centres[labels] + rng.standard_normal((120, 16))
    planted = rel.lexname_clustering(rel.cosine_matrix(X), labels, n_perm=99, seed=0)
    assert planted["p"] <= 0.02 and planted["gap"] > planted["null_ci"][1]
    shuffled = rel.lexname_clustering(rel.cosine_matrix(X), rng.permutation(labels), n_perm=99)
    lo, hi = shuffled["null_ci"]
    assert lo <= shuffled["gap"] <= hi or shuffled["p"] > 0.01


def test_chain_decay_finds_ancestor_pairs(graph) -> None:
    ids = graph.ids(["dog.n.01", "canine.n.02", "carnivore.n.01", "placental.n.01",
                     "mammal.n.01", "cat.n.01", "feline.n.01", "tree.n.01"])
    X = np.random.default_rng(0).standard_normal((ids.size, 8))
    cd = rel.chain_decay(rel.cosine_matrix(X), ids, graph=graph, max_hops=4, n_boot=50)
    by_hop = {h["hop"]: h["n_pairs"] for h in cd["hops"]}
    # dog->canine, canine->carnivore, carnivore->placental, placental->mammal, cat->feline,
    # feline->carnivore: six one-hop pairs.
    assert by_hop[1] == 6 and by_hop[2] >= 3


def test_draw_rows_stratifies_and_stability_redraws(graph, nouns) -> None:
    pos = np.array(["n"] * 60 + ["v"] * 30 + ["a"] * 10)
    rows = rel.draw_rows(pos, 50, seed=0)
    assert rows.size == 50 and np.unique(rows).size == 50
    assert [(pos[rows] == p).sum() for p in ("n", "v", "a")] == [30, 15, 5]
    X = _aligned(graph, nouns, 0.3)
    sims = {"path": wsim.similarity_matrix(nouns, "path")}
    st = rel.stability({"x": X}, nouns, similarities=sims, n_seeds=4, n_sample=60, seed=0,
                       n_simplices=50)
    est = st["estimates"]["x.path.spearman"]
    assert est["n"] == 4 and est["method"] == "t over seeds" and est["lo"] < est["value"]
    assert len(set(st["per_seed"]["x.path.spearman"])) == 4  # each seed drew other synsets


def test_bad_input(graph, nouns) -> None:
    X = np.zeros((nouns.size, 4))
    with pytest.raises(InputError, match="repeated synsets"):
        rel.relational_alignment(np.ones((4, 3)), [nouns[0]] * 4)
    with pytest.raises(Exception, match="rows"):
        rel.relational_alignment(X[:10], nouns)
    with pytest.raises(InputError, match="not a WordNet part of speech"):
        ent.parse_pos("noun,xyz")
    assert ent.parse_pos("adj") == ("a", "s") and ent.parse_pos("all")[0] == "n"
    from hyperlens.experiments.relational import RelationalConfig

    with pytest.raises(ConfigError, match="--pos"):
        RelationalConfig(models=("minilm",), pos="q")
    with pytest.raises(ConfigError, match="--measures"):
        RelationalConfig(models=("minilm",), measures=("jcn",))


def test_entries_need_a_tokenizer(tiny_bert) -> None:
    from hyperlens.models import from_module

    handle = from_module(tiny_bert, None, name="tiny")
    with pytest.raises(InputError, match="no tokenizer"):
        ent.build_entries(handle)


@pytest.mark.integration
def test_entries_senses_and_forms(graph) -> None:
    from hyperlens import models

    try:
        glove = models.load("glove-50d", device="cpu")
    except Exception as exc:  # noqa: BLE001 - the model package may be absent
        pytest.skip(f"glove-50d unavailable: {exc}")
    rank = ent.build_entries(glove, pos="n")
    file = ent.build_entries(glove, pos="n", sense="file")
    by_lemma = dict(zip(rank.lemmas, rank.names(graph), strict=True))
    by_lemma_file = dict(zip(file.lemmas, file.names(graph), strict=True))
    assert by_lemma["bank"] == "bank.n.01" and by_lemma_file["bank"] == "bank.n.10"
    assert set(graph.pos[rank.synsets]) == {"n"}
    assert len(set(rank.synsets.tolist())) == len(rank)
    enc = ent.encode_entries(glove, rank.subset(np.arange(50)), cache=False)
    assert enc["static"].shape == enc["contextual"].shape == (50, 50)
    row = glove.static.index["bank"] if "bank" in rank.lemmas[:50] else None
    if row is not None:
        np.testing.assert_array_equal(enc["static"][rank.lemmas.index("bank")],
                                      glove.static.vectors[row].numpy())
