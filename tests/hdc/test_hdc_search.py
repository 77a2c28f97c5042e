"""Packed similarity and top-k search equal the dense functions exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import hdc_reference as ref

from hyperlens.errors import HyperlensError
from hyperlens.functional import hdc as F
from hyperlens.hdc import PackedCodes, search, similarity


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    codes = F.random_hypervectors(300, 517, "ternary", seed=0, sparsity=0.7)
    # duplicates and zero codes force ties and the zero-norm rule
    codes[10] = codes[200]
    codes[20] = 0
    queries = torch.cat([codes[:5], F.random_hypervectors(6, 517, "ternary", seed=1, sparsity=0.5)])
    return queries, codes


@pytest.mark.parametrize("scheme", ["twobit", "base3"])
@pytest.mark.parametrize("metric", ["dot", "cosine", "hamming"])
def test_packed_similarity_equals_dense(data, scheme: str, metric: str) -> None:
    queries, codes = data
    packed = PackedCodes.from_dense(codes, scheme)
    got = similarity(queries, packed, metric, block_size=64)
    want = getattr(F, metric)(queries, codes)
    assert got.dtype == want.dtype
    assert torch.equal(got, want)  # bit-for-bit
    naive = {"dot": ref.dot_naive, "cosine": ref.cosine_naive, "hamming": ref.hamming_naive}[metric]
    np.testing.assert_allclose(
        got.numpy(), naive(queries.numpy(), codes.numpy()), rtol=1e-6, atol=1e-7
    )
    # packed queries give the same answer
    assert torch.equal(similarity(PackedCodes.from_dense(queries, scheme), packed, metric), want)


@pytest.mark.parametrize("scheme", ["twobit", "base3"])
@pytest.mark.parametrize("metric", ["dot", "cosine", "hamming"])
@pytest.mark.parametrize("k", [1, 7, 300])
def test_search_equals_naive_ranking(data, scheme: str, metric: str, k: int) -> None:
    queries, codes = data
    packed = PackedCodes.from_dense(codes, scheme)
    res = search(queries, packed, k=k, metric=metric, block_size=37, query_block_size=4)
    dense = getattr(F, metric)(queries, codes).numpy()
    want_val, want_idx = ref.topk_naive(dense, k, largest=(metric != "hamming"))
    np.testing.assert_array_equal(res.indices.numpy(), want_idx)
    np.testing.assert_array_equal(res.scores.numpy(), want_val)
    assert res.indices.dtype == torch.int64 and res.scores.shape == (len(queries), k)


def test_search_finds_itself_and_duplicates_rank_by_index(data) -> None:
    queries, codes = data
    res = search(
        codes[[200, 3]], PackedCodes.from_dense(codes), k=2, metric="cosine", block_size=50
    )
    assert res.indices[0].tolist() == [10, 200]  # identical codes: lower index first
    assert res.indices[1, 0] == 3
    assert float(res.scores[0, 0]) == 1.0


def test_search_k_larger_than_n_and_default_blocks(data) -> None:
    queries, codes = data
    res = search(queries, PackedCodes.from_dense(codes[:4]), k=10, metric="dot")
    assert res.indices.shape == (len(queries), 4)
    assert sorted(res.indices[0].tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "kwargs,word",
    [
        ({"k": 0}, "k must"),
        ({"metric": "euclid"}, "metric"),
        ({"block_size": 0}, "block_size"),
        ({"query_block_size": -2}, "query_block_size"),
    ],
)
def test_search_bad_arguments(data, kwargs: dict, word: str) -> None:
    queries, codes = data
    with pytest.raises(HyperlensError, match=word):
        search(queries, PackedCodes.from_dense(codes), **kwargs)


def test_mismatched_dimensions_and_types(data) -> None:
    queries, codes = data
    packed = PackedCodes.from_dense(codes)
    with pytest.raises(HyperlensError, match="queries must be"):
        search(queries[:, :100], packed)
    with pytest.raises(HyperlensError, match="PackedCodes"):
        similarity(queries, codes)
    with pytest.raises(HyperlensError, match="-1, 0 and"):
        similarity(queries * 3, packed)


@pytest.mark.parametrize("metric", ["dot", "cosine", "hamming"])
def test_search_with_massive_ties_keeps_index_order(metric: str) -> None:
    """All codes identical: every score ties, so the answer is the k lowest indices."""
    code = F.random_hypervectors(1, 256, "ternary", seed=5)
    codes = code.repeat(120, 1)
    codes[7] = -code[0]  # one clearly worse code
    res = search(code, PackedCodes.from_dense(codes), k=30, metric=metric, block_size=50)
    want = [i for i in range(120) if i != 7][:30]
    assert res.indices[0].tolist() == want
