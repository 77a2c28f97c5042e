import numpy as np
import pytest
from reference.kn_reference import kn_prob

from hyperlens.errors import InputError
from hyperlens.hft.ngram import KneserNey


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_matches_naive_modified_kneser_ney(order):
    rng = np.random.default_rng(order)
    V = 12
    seqs = [rng.integers(1, V, size=rng.integers(2, 12)) for _ in range(60)]
    kn = KneserNey(order, V, start_token=0).fit(seqs)
    hist = rng.integers(0, V, size=(6, order - 1))
    hist[0] = 0  # the all-start history of a text's first token
    P = kn.distribution(hist).numpy()
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
    for b in range(len(hist)):
        for w in range(V):
            ref = kn_prob(seqs, order, V, 0, hist[b], w)
            assert P[b, w] == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_histories_pad_with_start_and_bad_ids_raise():
    ctx = np.array([[5, 4, -1, -1]])
    h = KneserNey.histories(ctx, 4, start=0)
    assert h.tolist() == [[0, 4, 5]]
    with pytest.raises(InputError):
        KneserNey(3, 5, 0).fit([np.array([1, 7])])


def test_small_corpus_never_gives_zero_probability():
    rng = np.random.default_rng(7)
    V = 50
    # few texts with many repeated n-grams: count-of-count estimates leave (0, k]
    seqs = [np.tile(rng.integers(1, V, size=3), 5) for _ in range(4)]
    kn = KneserNey(5, V, start_token=0).fit(seqs)
    P = kn.distribution(rng.integers(0, V, size=(20, 4))).numpy()
    assert P.min() > 0
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
