"""Tests of hyperlens.functional.hdc against the naive oracles in tests/reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference import hdc_reference as ref

from hyperlens.errors import HyperlensError, InputError, ShapeError
from hyperlens.functional import hdc as F, packing as P


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- projection
@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "sparse"])
def test_random_projection_seeded_and_scaled(kind: str) -> None:
    a = F.random_projection(64, 2048, kind, seed=3)
    b = F.random_projection(64, 2048, kind, seed=3)
    c = F.random_projection(64, 2048, kind, seed=4)
    assert a.shape == (64, 2048) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # JL scaling: every column-sum of squares per input row is ~1, so E||xR||^2 = ||x||^2.
    row_sq = (a.double() ** 2).sum(dim=1)
    assert float((row_sq - 1).abs().max()) < 0.25
    x = torch.randn(200, 64, generator=_gen(0), dtype=torch.float64)
    ratio = ((x @ a.double()).pow(2).sum(1) / x.pow(2).sum(1)).mean()
    assert abs(float(ratio) - 1.0) < 0.05


def test_random_projection_kinds_values() -> None:
    r = F.random_projection(16, 100, "rademacher", seed=0)
    assert set(torch.unique(r * 10).tolist()) == {-1.0, 1.0}
    s = F.random_projection(400, 100, "sparse", seed=0)  # density 1/20
    vals = torch.unique(s)
    assert len(vals) == 3
    assert abs(float((s != 0).double().mean()) - 0.05) < 0.01


def test_random_projection_generator_and_device_independent_bits() -> None:
    g1, g2 = _gen(11), _gen(11)
    assert torch.equal(
        F.random_projection(8, 32, generator=g1), F.random_projection(8, 32, generator=g2)
    )
    if torch.cuda.is_available():
        assert torch.equal(
            F.random_projection(8, 32, seed=5, device="cuda").cpu(),
            F.random_projection(8, 32, seed=5),
        )


@pytest.mark.parametrize(
    "kwargs,word",
    [
        ({"d_in": 0, "d_out": 4}, "d_in"),
        ({"d_in": 4, "d_out": -1}, "d_out"),
        ({"d_in": 4, "d_out": 4, "kind": "cauchy"}, "kind"),
        ({"d_in": 4, "d_out": 4, "kind": "sparse", "density": 1.5}, "density"),
        ({"d_in": 4, "d_out": 4, "seed": 1.5}, "seed"),
    ],
)
def test_random_projection_bad_input(kwargs: dict, word: str) -> None:
    with pytest.raises(HyperlensError, match=word):
        F.random_projection(**kwargs)


# --------------------------------------------------------------------------- ternarize
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("d", [1, 2, 7, 100, 1000])
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.7, 0.95])
def test_ternarize_quantile_matches_sorted_reference(seed: int, d: int, sparsity: float) -> None:
    x = torch.randn(6, d, generator=_gen(seed))
    got = F.ternarize(x, "quantile", sparsity=sparsity)
    want = ref.ternarize_sorted(x.numpy(), sparsity)
    assert got.dtype == torch.int8
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("seed", range(3))
def test_ternarize_quantile_equals_seed_loop(seed: int) -> None:
    """Same codes as the per-row torch.quantile loop, and exactly 7,000 zeros of 10,000."""
    x = torch.randn(8, 10_000, generator=_gen(seed))
    got = F.ternarize(x, sparsity=0.7)
    assert torch.equal(got, ref.ternarize_quantile_loop(x, 0.7))
    assert ((got == 0).sum(1) == 7000).all()
    assert F.quantile_zero_count(10_000, 0.7) == 7000


def test_ternarize_ties_and_degenerate_rows() -> None:
    x = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],  # all zero -> all zero
            [2.0, -2.0, 2.0, -2.0],  # all magnitudes tie -> all zero
            [1.0, -1.0, 3.0, -0.5],  # k = floor(0.5*3)+1 = 2: t = 1.0, ties at 1.0 zeroed
            [-0.0, 0.0, 5.0, -5.0],
        ]
    )
    got = F.ternarize(x, "quantile", sparsity=0.5)
    want = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, -1]], dtype=torch.int8)
    assert torch.equal(got, want)
    # tau_std: constant row has std 0 -> threshold 0 -> the non-zero entries survive only if |x| > 0
    assert torch.equal(
        F.ternarize(torch.zeros(2, 5), "tau_std"), torch.zeros(2, 5, dtype=torch.int8)
    )
    assert torch.equal(
        F.ternarize(torch.full((1, 4), 3.0), "tau_std", tau=0.3), torch.ones(1, 4, dtype=torch.int8)
    )


def test_ternarize_tau_std_and_fixed() -> None:
    x = torch.randn(20, 333, generator=_gen(1))
    np.testing.assert_array_equal(
        F.ternarize(x, "tau_std", tau=0.3).numpy(), ref.ternarize_tau_std(x.numpy(), 0.3)
    )
    fixed = F.ternarize(x, "fixed", tau=0.5)
    want = torch.where(x > 0.5, 1, torch.where(x < -0.5, -1, 0)).to(torch.int8)
    assert torch.equal(fixed, want)


def test_ternarize_batched_shapes_and_float64() -> None:
    x = torch.randn(2, 3, 50, generator=_gen(2), dtype=torch.float64)
    got = F.ternarize(x, sparsity=0.6)
    assert got.shape == (2, 3, 50)
    assert torch.equal(got.reshape(6, 50), F.ternarize(x.reshape(6, 50), sparsity=0.6))
    assert torch.equal(F.ternarize(x[0, 0], sparsity=0.6), got[0, 0])


@pytest.mark.parametrize(
    "x,kwargs,word",
    [
        (torch.tensor([[1.0, float("nan")], [1.0, 2.0]]), {}, "row 0"),
        (torch.tensor([[1.0, 2.0], [float("inf"), 2.0]]), {}, "row 1"),
        (torch.ones(2, 3), {"sparsity": 0.0}, "sparsity"),
        (torch.ones(2, 3), {"sparsity": 1.0}, "sparsity"),
        (torch.ones(2, 3), {"sparsity": -0.2}, "sparsity"),
        (torch.ones(2, 3), {"threshold": "median"}, "threshold"),
        (torch.ones(2, 3), {"threshold": "tau_std", "tau": -1.0}, "tau"),
        (torch.ones(2, 0), {}, "shape"),
        (torch.ones(2, 3, dtype=torch.bool), {}, "dtype"),
    ],
)
def test_ternarize_bad_input(x: torch.Tensor, kwargs: dict, word: str) -> None:
    with pytest.raises(HyperlensError, match=word):
        F.ternarize(x, **kwargs)


def test_ternarize_accepts_tensors_that_require_grad_and_strided_views() -> None:
    x = torch.randn(40, 30, generator=_gen(4))
    want = F.ternarize(x, sparsity=0.6)
    assert torch.equal(F.ternarize(x.clone().requires_grad_(True), sparsity=0.6), want)
    assert torch.equal(F.ternarize(x.T.contiguous().T, sparsity=0.6), want)
    assert torch.equal(F.ternarize(x.T, sparsity=0.6), F.ternarize(x.T.contiguous(), sparsity=0.6))


def test_ternarize_huge_finite_values_are_not_rejected() -> None:
    x = torch.tensor([[1.0, 3.0e38, 3.1e38, 3.2e38, -3.3e38]])
    assert not torch.isfinite(x.abs().sum())  # the row sum overflows; the values are finite
    want = torch.tensor([[0, 0, 0, 1, -1]], dtype=torch.int8)
    assert torch.equal(F.ternarize(x, sparsity=0.5), want)


# --------------------------------------------------------------------------- algebra
def _codes(n: int, d: int, seed: int, kind: str = "ternary") -> torch.Tensor:
    return F.random_hypervectors(n, d, kind, seed=seed, sparsity=0.6)


def test_random_hypervectors() -> None:
    b = F.random_hypervectors(50, 1000, "bipolar", seed=0)
    assert set(torch.unique(b).tolist()) == {-1, 1}
    t = F.random_hypervectors(50, 1000, "ternary", seed=0, sparsity=0.7)
    assert abs(float((t == 0).double().mean()) - 0.7) < 0.02
    assert torch.equal(t, F.random_hypervectors(50, 1000, "ternary", seed=0, sparsity=0.7))


@pytest.mark.parametrize("kind", ["bipolar", "ternary"])
def test_dot_cosine_hamming_match_reference(kind: str) -> None:
    a = _codes(9, 131, 0, kind)
    b = _codes(13, 131, 1, kind)
    a[0] = 0  # a zero code: cosine 0 by definition
    an, bn = a.numpy(), b.numpy()
    np.testing.assert_array_equal(F.dot(a, b).numpy(), ref.dot_naive(an, bn))
    np.testing.assert_array_equal(F.hamming(a, b).numpy(), ref.hamming_naive(an, bn))
    torch.testing.assert_close(
        F.cosine(a, b), torch.from_numpy(ref.cosine_naive(an, bn)).float(), rtol=1e-6, atol=1e-7
    )
    assert F.dot(a, b).dtype == torch.int32 and F.hamming(a, b).dtype == torch.int32
    assert int(F.dot(a[1], b[2])) == int(ref.dot_naive(an[1:2], bn[2:3])[0, 0])
    assert F.dot(a[1], b[2]).shape == ()


def test_bipolar_hamming_identity_and_self_similarity() -> None:
    a = _codes(5, 256, 3, "bipolar")
    b = _codes(7, 256, 4, "bipolar")
    assert torch.equal(F.hamming(a, b), (256 - F.dot(a, b)) // 2)
    torch.testing.assert_close(F.cosine(a, a).diagonal(), torch.ones(5))
    assert torch.equal(F.hamming(a, a).diagonal(), torch.zeros(5, dtype=torch.int32))


def test_bind_is_self_inverse_and_dissimilar() -> None:
    a = _codes(1, 10_000, 0, "bipolar")
    b = _codes(1, 10_000, 1, "bipolar")
    ab = F.bind(a, b)
    assert torch.equal(F.bind(ab, b), a)
    assert abs(float(F.cosine(ab, a))) < 0.05
    t = _codes(4, 64, 2)
    assert torch.equal(F.bind(t, t[0]), t * t[0])


@pytest.mark.parametrize("tie", ["first", "positive", "negative", "zero"])
@pytest.mark.parametrize("n", [1, 2, 4, 5])
def test_bundle_majority_matches_reference(tie: str, n: int) -> None:
    x = _codes(n, 200, n, "bipolar")
    np.testing.assert_array_equal(
        F.bundle(x, tie=tie).numpy(), ref.bundle_naive(x.numpy(), "majority", tie)
    )
    t = _codes(n, 200, n + 10)
    np.testing.assert_array_equal(
        F.bundle(t, tie=tie).numpy(), ref.bundle_naive(t.numpy(), "majority", tie)
    )


@pytest.mark.parametrize("threshold", [0, 1, 2])
def test_bundle_sum_matches_reference_and_keeps_members_close(threshold: int) -> None:
    x = _codes(5, 300, 7)
    np.testing.assert_array_equal(
        F.bundle(x, kind="sum", threshold=threshold).numpy(),
        ref.bundle_naive(x.numpy(), "sum", threshold=threshold),
    )
    big = _codes(5, 10_000, 8, "bipolar")
    other = _codes(1, 10_000, 9, "bipolar")
    s = F.bundle(big)
    assert float(F.cosine(big, s).min()) > 0.25
    assert abs(float(F.cosine(other, s))) < 0.05
    # bundling along another dim
    stacked = big.reshape(1, 5, 10_000)
    assert torch.equal(F.bundle(stacked, dim=1)[0], s)


def test_permute_roundtrip_and_decorrelates() -> None:
    a = _codes(3, 1000, 1, "bipolar")
    p = F.permute(a, 3)
    assert torch.equal(p[:, 3:], a[:, :-3])
    assert torch.equal(F.permute(p, -3), a)
    assert float(F.cosine(a, p).diagonal().abs().max()) < 0.15


@pytest.mark.parametrize(
    "call,word",
    [
        (
            lambda: F.dot(torch.ones(2, 3, dtype=torch.int8), torch.ones(2, 4, dtype=torch.int8)),
            "same d",
        ),
        (
            lambda: F.cosine(
                torch.full((2, 3), 2, dtype=torch.int8), torch.ones(2, 3, dtype=torch.int8)
            ),
            "-1, 0 and \\+1",
        ),
        (lambda: F.hamming(torch.tensor([[0.5, 1.0]]), torch.ones(1, 2)), "-1, 0 and \\+1"),
        (
            lambda: F.bind(torch.ones(2, 3, dtype=torch.int8), torch.ones(2, 4, dtype=torch.int8)),
            "last",
        ),
        (lambda: F.bundle(torch.ones(2, 3, dtype=torch.int8), tie="random"), "tie"),
        (
            lambda: F.bundle(torch.ones(2, 3, dtype=torch.int8), kind="sum", threshold=-1),
            "threshold",
        ),
        (lambda: F.bundle(torch.ones(3, dtype=torch.int8)), "dim"),
        (lambda: F.bundle(torch.ones(2, 3, dtype=torch.int8), dim=1), "dim"),
        (lambda: F.permute(torch.ones(2, 3, dtype=torch.int8), 1.5), "shifts"),
    ],
)
def test_algebra_bad_input(call, word: str) -> None:
    with pytest.raises(HyperlensError, match=word):
        call()


# --------------------------------------------------------------------------- packing
@pytest.mark.parametrize("d", [1, 5, 7, 8, 9, 64, 1001])
def test_pack_matches_naive_and_round_trips(d: int) -> None:
    codes = _codes(6, d, d)
    codes[0] = 1
    codes[1] = -1
    codes[2] = 0
    two = P.pack_twobit(codes)
    np.testing.assert_array_equal(two.numpy(), ref.pack_twobit_naive(codes.numpy()))
    assert torch.equal(P.unpack_twobit(two, d), codes)
    b3 = P.pack_base3(codes)
    np.testing.assert_array_equal(b3.numpy(), ref.pack_base3_naive(codes.numpy()))
    assert torch.equal(P.unpack_base3(b3, d), codes)
    assert int(b3.max()) <= 242
    for scheme in F.SCHEMES:
        assert torch.equal(P.unpack(P.pack(codes, scheme), d, scheme), codes)
        assert P.pack(codes, scheme).shape == (6, P.packed_width(d, scheme))


def test_pack_all_byte_patterns_round_trip() -> None:
    """Every one of the 3^5 base-3 bytes and every two-bit byte pair appears and survives."""
    digits = torch.arange(243).unsqueeze(1) // torch.tensor([1, 3, 9, 27, 81]) % 3 - 1
    codes = digits.to(torch.int8).reshape(1, -1)  # 1215 trits covering all 243 bytes
    assert torch.equal(P.unpack_base3(P.pack_base3(codes), codes.shape[1]), codes)
    assert sorted(P.pack_base3(codes).flatten().tolist()) == list(range(243))
    assert torch.equal(P.unpack_twobit(P.pack_twobit(codes), codes.shape[1]), codes)


def test_packed_sizes_for_10000_dims() -> None:
    assert P.packed_width(10_000, "twobit") == 2500  # 16x smaller than 40,000 float32 bytes
    assert P.packed_width(10_000, "base3") == 2000  # 20x
    assert P.pack(torch.zeros(3, 4, 10_000, dtype=torch.int8), "base3").shape == (3, 4, 2000)


def test_pack_bad_input() -> None:
    with pytest.raises(ShapeError, match="last dimension"):
        P.unpack_twobit(torch.zeros(2, 3, dtype=torch.uint8), 10)
    with pytest.raises(InputError, match="uint8"):
        P.unpack_base3(torch.zeros(2, 2, dtype=torch.int16), 10)
    with pytest.raises(InputError, match="scheme"):
        P.pack(torch.zeros(2, 3, dtype=torch.int8), "int2")
    with pytest.raises(InputError, match="-1, 0 and \\+1"):
        P.pack_twobit(torch.full((1, 4), 3, dtype=torch.int8))


def test_int_matmul_exact_at_large_d() -> None:
    a = torch.ones(3, 40_000, dtype=torch.int8)
    assert int(F.int_matmul(a, a)[0, 0]) == 40_000
    assert math.isclose(float(F.cosine(a, a)[1, 2]), 1.0)
