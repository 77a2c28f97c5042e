"""Token-vocabulary Procrustes: normalising token strings, shared rows, held-out scores."""

from __future__ import annotations

import numpy as np
import pytest

from hyperlens.align.vocab import (
    align_vocabularies,
    detect_convention,
    normalize_token,
    shared_vocabulary,
)
from hyperlens.errors import InputError, ShapeError

WORDS = [f"w{i}x" for i in range(400)]


def test_normalize_token_across_conventions() -> None:
    assert normalize_token("Ġdog", "bpe") == "dog"
    assert normalize_token("ing", "bpe") == "##ing"
    assert normalize_token("▁Dog", "sentencepiece") == "dog"
    assert normalize_token("▁Dog", "sentencepiece", lowercase=False) == "Dog"
    assert normalize_token("##ing", "wordpiece") == "##ing"
    assert normalize_token("dog", "words") == "dog"
    for special in ("[CLS]", "<|im_end|>", "<row 5>", "Ġ", "##", "Ġ!!", ""):
        assert normalize_token(special, "bpe") is None


def test_shared_vocabulary_lines_up_rows() -> None:
    va = ["<s>"] + ["Ġ" + w for w in WORDS] + ["ing", "Ġthe", "ĠThe"]
    vb = ["[CLS]", "##ing"] + [f"##s{i}" for i in range(20)] + WORDS[::-1] + ["the"]
    assert detect_convention(va) == "bpe" and detect_convention(vb) == "wordpiece"
    ra, rb, keys = shared_vocabulary(va, vb)
    assert len(keys) == len(WORDS) + 2  # the words, "##ing" and "the"
    for i, j, k in zip(ra, rb, keys, strict=True):
        assert normalize_token(va[i], "bpe") == k == normalize_token(vb[j], "wordpiece")
    # "Ġthe" (lower id) wins over "ĠThe"
    assert va[ra[keys.index("the")]] == "Ġthe"
    _, _, words_only = shared_vocabulary(va, vb, whole_words_only=True)
    assert "##ing" not in words_only


@pytest.mark.parametrize("seed", [0, 1])
def test_a_rotated_vocabulary_is_recovered(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d_a, d_b = 24, 16
    latent = rng.standard_normal((len(WORDS), d_b)) * np.linspace(2, 0.5, d_b)
    q, _ = np.linalg.qr(rng.standard_normal((d_b, d_b)))
    emb_b = latent @ q
    # A is wider: the latent plus small extra directions, in its own basis
    emb_a = np.hstack([latent, 0.05 * rng.standard_normal((len(WORDS), d_a - d_b))])
    emb_a = emb_a @ np.linalg.qr(rng.standard_normal((d_a, d_a)))[0]
    va = ["Ġ" + w for w in WORDS]
    res = align_vocabularies(emb_a, va, emb_b, WORDS, test_fraction=0.25, k=5, seed=seed)
    assert res.n_shared == len(WORDS) and res.n_test == 100 and res.dim == d_b
    assert res.cosine_mean > 0.98 and res.residual < 0.2
    assert res.top1_retrieval > 0.95 and res.knn_overlap > 0.8
    assert res.null["cosine_mean"] < 0.3 and res.null["top1_retrieval"] < 0.1
    assert res.cosines.shape == (100,) and len(res.test_keys) == 100


def test_bad_input() -> None:
    emb = np.zeros((3, 4))
    with pytest.raises(ShapeError, match="vocab_a"):
        align_vocabularies(emb, ["a", "b"], emb, ["a", "b", "c"])
    with pytest.raises(InputError, match="share only"):
        align_vocabularies(emb, ["a", "b", "c"], emb, ["d", "e", "f"])
    with pytest.raises(InputError, match="test_fraction"):
        align_vocabularies(emb, ["a", "b", "c"], emb, ["a", "b", "c"], test_fraction=1.5)
