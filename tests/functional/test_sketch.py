"""Tests for hyperlens.functional.sketch: kernels against naive oracles, theory checks
(Johnson–Lindenstrauss, unbiasedness) across many seeds, determinism and bad input.

Tolerances: float64 kernels are compared with ``atol = rtol = 1e-10``; float32 with
``torch.testing.assert_close`` defaults.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from reference import sketch_reference as ref

from hyperlens.errors import HyperlensError, InputError, ShapeError
from hyperlens.functional import hadamard
from hyperlens.functional.sketch import (
    SRHT,
    BlockSRHT,
    CountSketch,
    GaussianSketch,
    SketchOperator,
    block_srht,
    compose,
    countsketch,
    fwht,
    gaussian_sketch,
    hadamard_matrix,
    next_power_of_two,
    srht,
)

F64 = {"atol": 1e-10, "rtol": 1e-10}
BASE_SEEDS = [0, 1000, 7777]  # every statistical test must pass for each of these ranges

DRAWERS = {
    "countsketch": CountSketch.draw,
    "srht": SRHT.draw,
    "block_srht": BlockSRHT.draw,
    "gaussian": GaussianSketch.draw,
}


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------- fwht
@pytest.mark.parametrize("d", [1, 2, 8, 64, 1024])
@pytest.mark.parametrize("radix", [2, 4, 32])
@pytest.mark.parametrize("normalize", [True, False])
def test_fwht_matches_dense_hadamard(d: int, radix: int, normalize: bool) -> None:
    x = _randn(3, 2, d, seed=d)
    h = torch.from_numpy(scipy.linalg.hadamard(d).astype(np.float64))
    expected = x @ h / (math.sqrt(d) if normalize else 1.0)
    torch.testing.assert_close(fwht(x, normalize=normalize, radix=radix), expected, **F64)


def test_hadamard_matrix_matches_scipy() -> None:
    for n in (1, 2, 16, 128):
        assert torch.equal(
            hadamard_matrix(n, dtype=torch.int64),
            torch.from_numpy(scipy.linalg.hadamard(n)).to(torch.int64),
        )


@pytest.mark.parametrize("d", [2, 256, 4096])
def test_fwht_twice_is_identity(d: int) -> None:
    x = _randn(5, d, seed=1)
    torch.testing.assert_close(fwht(fwht(x)), x, **F64)
    torch.testing.assert_close(fwht(fwht(x, normalize=False), normalize=False), d * x, **F64)


def test_fwht_float32_keeps_dtype_and_norm() -> None:
    x = _randn(4, 512, seed=2, dtype=torch.float32)
    y = fwht(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1))


def test_fwht_padding_rule() -> None:
    x = _randn(3, 100, seed=3)
    padded = torch.nn.functional.pad(x, (0, 28))
    y = fwht(x, pad=True)
    assert y.shape == (3, 128)
    torch.testing.assert_close(y, fwht(padded), **F64)
    torch.testing.assert_close(y, torch.from_numpy(ref.fwht_dense(padded.numpy())), **F64)
    with pytest.raises(InputError, match="pad=True"):
        fwht(x)


def test_fwht_rejects_bad_radix_and_nan() -> None:
    with pytest.raises(InputError, match="radix"):
        fwht(_randn(2, 8), radix=3)
    bad = _randn(2, 8)
    bad[1, 3] = float("nan")
    with pytest.raises(InputError, match="x contains NaN"):
        fwht(bad)


def test_next_power_of_two() -> None:
    assert [next_power_of_two(n) for n in (1, 2, 3, 5, 1024, 1025)] == [1, 2, 4, 8, 1024, 2048]


# --------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("d_in,d_out", [(64, 16), (100, 33), (257, 64)])
def test_countsketch_matches_naive_matrix(d_in: int, d_out: int) -> None:
    op = CountSketch.draw(d_in, d_out, seed=d_in)
    m = ref.countsketch_matrix(op.buckets.numpy(), op.signs.numpy(), d_out)
    x = _randn(7, d_in, seed=1)
    torch.testing.assert_close(op.apply(x), x @ torch.from_numpy(m), **F64)


@pytest.mark.parametrize("d_in,d_out", [(64, 16), (100, 33), (128, 128)])
def test_srht_matches_naive_matrix(d_in: int, d_out: int) -> None:
    op = SRHT.draw(d_in, d_out, seed=d_in)
    m = ref.srht_matrix(op.signs.numpy(), op.rows.numpy(), d_out)
    x = _randn(7, d_in, seed=2)
    torch.testing.assert_close(op.apply(x), x @ torch.from_numpy(m), **F64)


@pytest.mark.parametrize("d_in,d_out,block", [(100, 16, None), (300, 33, None), (300, 16, 64)])
def test_block_srht_matches_naive_matrix(d_in: int, d_out: int, block: int | None) -> None:
    op = BlockSRHT.draw(d_in, d_out, block_size=block, seed=d_in)
    m = ref.block_srht_matrix(op.signs_in.numpy(), op.rows.numpy(), op.signs_out.numpy(), d_in)
    x = _randn(7, d_in, seed=3)
    torch.testing.assert_close(op.apply(x), x @ torch.from_numpy(m), **F64)
    assert 0 <= op.padding < op.block_size


def test_block_srht_pads_less_than_srht() -> None:
    op = BlockSRHT.draw(20_000, 4_096, seed=0)
    assert (op.block_size, op.n_blocks, op.padding) == (4096, 5, 480)
    assert SRHT.draw(20_000, 4_096, seed=0).d_padded - 20_000 == 12_768


def test_gaussian_sketch_matrix_and_sparse_input() -> None:
    op = GaussianSketch.draw(50, 10, seed=4, dtype=torch.float64)
    x = _randn(6, 50, seed=4)
    torch.testing.assert_close(op.apply(x), x @ op.weight, **F64)
    torch.testing.assert_close(op.apply(x.to_sparse()), x @ op.weight, **F64)


@pytest.mark.parametrize("kind", sorted(DRAWERS))
def test_operator_matrix_is_consistent_with_apply(kind: str) -> None:
    op = DRAWERS[kind](90, 20, seed=5)
    x = _randn(4, 3, 90, seed=5)  # leading dims are kept
    y = op.apply(x)
    assert y.shape == (4, 3, 20) and y.dtype == torch.float64
    torch.testing.assert_close(y, x @ op.matrix(), **F64)


@pytest.mark.parametrize("kind", sorted(DRAWERS))
def test_unchecked_apply_gives_the_same_sketch_and_skips_the_checks(kind: str) -> None:
    op = DRAWERS[kind](90, 20, seed=5)
    x = _randn(6, 90, seed=8).float()
    assert torch.equal(op.apply(x, validate=False), op.apply(x))
    bad = x.clone()
    bad[0, 0] = math.nan
    with pytest.raises(InputError, match="NaN"):
        op.apply(bad)
    assert torch.isnan(op.apply(bad, validate=False)[0]).any()  # no check: NaN goes through
    chain = compose(CountSketch.draw(90, 64, seed=1), BlockSRHT.draw(64, 16, seed=2))
    assert torch.equal(chain.apply(x, validate=False), chain.apply(x))
    with pytest.raises(InputError, match="NaN"):  # a chain checks its input once, first
        chain.apply(bad)


def test_chunked_apply_equals_single_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _randn(37, 300, seed=6)
    ops = [SRHT.draw(300, 64, seed=6), BlockSRHT.draw(300, 64, seed=6)]
    full = [op.apply(x) for op in ops]
    monkeypatch.setattr(hadamard, "_CHUNK_ELEMENTS", 3 * 512)  # a few rows per chunk
    for op, y in zip(ops, full, strict=True):
        torch.testing.assert_close(op.apply(x), y, **F64)


# --------------------------------------------------------------------------- sparse input
def _sparse_batch(n: int, d: int, nnz_per_row: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    rows = torch.arange(n).repeat_interleave(nnz_per_row)
    cols = torch.randint(0, d, (n * nnz_per_row,), generator=gen)
    vals = torch.randn(n * nnz_per_row, generator=gen, dtype=torch.float64)
    return torch.sparse_coo_tensor(torch.stack((rows, cols)), vals, (n, d)).coalesce()


def test_countsketch_sparse_coo_csr_and_dense_agree() -> None:
    xs = _sparse_batch(20, 5000, 30, seed=7)
    op = CountSketch.draw(5000, 256, seed=7)
    dense = op.apply(xs.to_dense())
    torch.testing.assert_close(op.apply(xs), dense, **F64)
    torch.testing.assert_close(op.apply(xs.to_sparse_csr()), dense, **F64)
    sparse_out = op.apply(xs, sparse_output=True)
    assert sparse_out.layout == torch.sparse_coo
    torch.testing.assert_close(sparse_out.to_dense(), dense, **F64)
    torch.testing.assert_close(countsketch(xs, 256, seed=7), dense, **F64)


def test_uncoalesced_coo_input_sums_duplicates() -> None:
    idx = torch.tensor([[0, 0, 1, 1], [1, 1, 2, 4]])
    x = torch.sparse_coo_tensor(idx, torch.tensor([1.0, 2.0, 3.0, -1.0], dtype=torch.float64),
                                (2, 5))
    assert not x.is_coalesced()
    for fn in (countsketch, srht, block_srht, gaussian_sketch):
        torch.testing.assert_close(fn(x, 3, seed=1), fn(x.to_dense(), 3, seed=1), **F64)


def test_structured_sketches_accept_sparse_input() -> None:
    xs = _sparse_batch(5, 300, 10, seed=8)
    for fn in (srht, block_srht, gaussian_sketch):
        torch.testing.assert_close(fn(xs, 32, seed=8), fn(xs.to_dense(), 32, seed=8), **F64)


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("kind", sorted(DRAWERS))
def test_same_seed_same_bits_different_seed_different(kind: str) -> None:
    a, b, c = (DRAWERS[kind](300, 40, seed=s) for s in (11, 11, 12))
    for name, t in a._tensors().items():
        assert torch.equal(t, b._tensors()[name])
    assert any(not torch.equal(t, c._tensors()[n]) for n, t in a._tensors().items())
    gen = torch.Generator().manual_seed(11)
    g = DRAWERS[kind](300, 40, generator=gen)
    for name, t in a._tensors().items():
        assert torch.equal(t, g._tensors()[name])


def test_functional_forms_equal_operator_draws() -> None:
    x = _randn(5, 300, seed=9)
    torch.testing.assert_close(countsketch(x, 40, seed=3), CountSketch.draw(300, 40, seed=3)(x))
    torch.testing.assert_close(srht(x, 40, seed=3), SRHT.draw(300, 40, seed=3)(x))
    torch.testing.assert_close(block_srht(x, 40, seed=3), BlockSRHT.draw(300, 40, seed=3)(x))
    g = GaussianSketch.draw(300, 40, seed=3, dtype=torch.float64)
    torch.testing.assert_close(gaussian_sketch(x, 40, seed=3), g(x))


def test_state_dict_round_trip_and_compose() -> None:
    cs = CountSketch.draw(1000, 300, seed=1)
    bs = BlockSRHT.draw(300, 64, seed=2)
    pipe = compose(cs, bs)
    x = _randn(4, 1000, seed=10)
    torch.testing.assert_close(pipe(x), bs(cs(x)), **F64)
    again = type(pipe).from_state_dict(pipe.state_dict())
    assert torch.equal(again(x), pipe(x))
    for op in (cs, bs, SRHT.draw(300, 64, seed=3), GaussianSketch.draw(300, 64, seed=3)):
        assert torch.equal(SketchOperator.from_state_dict(op.state_dict()).apply(x[:, :op.d_in]),
                           op.apply(x[:, :op.d_in]))
    assert torch.equal(pipe.to("cpu")(x), pipe(x))


@pytest.mark.cuda
def test_cuda_draw_has_same_bits_as_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: cross-device bit equality cannot be checked")
    for kind, draw in DRAWERS.items():
        cpu = draw(300, 40, seed=13)
        gpu = draw(300, 40, seed=13, device="cuda")
        for name, t in cpu._tensors().items():
            assert torch.equal(t, gpu._tensors()[name].cpu()), (kind, name)
        x = _randn(6, 300, seed=13, dtype=torch.float32)
        torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- theory
def _test_vectors(d: int, seed: int) -> torch.Tensor:
    """Gaussian, heavy-tailed (Cauchy), spiky (16 equal entries) and 1-sparse vectors."""
    gen = torch.Generator().manual_seed(seed)
    gauss = torch.randn(d, generator=gen, dtype=torch.float64)
    cauchy = torch.distributions.Cauchy(0.0, 1.0).icdf(
        torch.rand(d, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    )
    spiky = torch.zeros(d, dtype=torch.float64)
    spiky[torch.randperm(d, generator=gen)[:16]] = 1.0
    one_hot = torch.zeros(d, dtype=torch.float64)
    one_hot[d // 3] = 1.0
    return torch.stack((gauss, cauchy, spiky, one_hot))  # [4, d]


N_DRAWS = 200
D_OUT = 64
EPS = 0.6
# Every sketch here has Var(||Sx||^2 / ||x||^2) <= 2 / d_out (derived in the module), so by
# Chebyshev P(| ratio - 1 | > eps) <= 2 / (d_out eps^2) = 0.087. A count of failures among
# N_DRAWS independent draws is then stochastically below Binomial(N_DRAWS, delta); we allow its
# 1 - 1e-6 quantile, so a correct sketch fails this test with probability below 1e-6.
DELTA = 2.0 / (D_OUT * EPS**2)
MAX_FAILURES = int(scipy.stats.binom.ppf(1.0 - 1e-6, N_DRAWS, DELTA))


@pytest.mark.parametrize("base_seed", BASE_SEEDS)
@pytest.mark.parametrize("kind,d_in", [
    ("countsketch", 300), ("srht", 256), ("srht", 300), ("block_srht", 300),
    ("block_srht", 256), ("gaussian", 300),
])
def test_johnson_lindenstrauss_norms_across_seeds(kind: str, d_in: int, base_seed: int) -> None:
    x = _test_vectors(d_in, seed=base_seed)
    sq = (x**2).sum(dim=1)
    ratios = torch.stack([
        (DRAWERS[kind](d_in, D_OUT, seed=base_seed + s)(x) ** 2).sum(dim=1) / sq
        for s in range(N_DRAWS)
    ])  # [N_DRAWS, 4]
    failures = ((ratios - 1.0).abs() > EPS).sum(dim=0)
    assert int(failures.max()) <= MAX_FAILURES, (failures.tolist(), MAX_FAILURES)
    # E ratio = 1 exactly; the mean of N_DRAWS ratios has standard error <= sqrt(2 / (d_out N)),
    # and a 5-sigma band fails a correct sketch with probability below 1e-6 (CLT).
    se = math.sqrt(2.0 / (D_OUT * N_DRAWS))
    assert float((ratios.mean(dim=0) - 1.0).abs().max()) <= 5 * se, ratios.mean(dim=0)
    # For the flat Gaussian vector the ratio is close to normal, so the sample variance over
    # N_DRAWS draws has relative standard deviation about sqrt(2 / N_DRAWS) = 0.1: a
    # variance above 1.5x the bound 2 / d_out is a 5-sigma event for a correct sketch.
    assert float(ratios[:, 0].var()) <= 1.5 * 2.0 / D_OUT, float(ratios[:, 0].var())


def test_gaussian_sketch_meets_exponential_jl_bound() -> None:
    # chi^2 tail (Dasgupta & Gupta): P(|ratio - 1| > eps) <= 2 exp(-d_out (eps^2/2 - eps^3/3) / 2).
    eps = 0.5
    delta = 2 * math.exp(-D_OUT * (eps**2 / 2 - eps**3 / 3) / 2)
    x = _test_vectors(256, seed=3)[:1]
    ratios = torch.stack([
        (GaussianSketch.draw(256, D_OUT, seed=s, dtype=torch.float64)(x) ** 2).sum() / (x**2).sum()
        for s in range(N_DRAWS)
    ])
    failures = int(((ratios - 1).abs() > eps).sum())
    assert failures <= int(scipy.stats.binom.ppf(1 - 1e-6, N_DRAWS, delta)), (failures, delta)


def test_one_hot_input_is_exact_for_srht_and_countsketch() -> None:
    x = torch.zeros(1, 1024, dtype=torch.float64)
    x[0, 17] = 3.0
    for draw in (SRHT.draw, CountSketch.draw, BlockSRHT.draw):
        y = draw(1024, 128, seed=0)(x)
        torch.testing.assert_close((y**2).sum(), torch.tensor(9.0, dtype=torch.float64), **F64)


@pytest.mark.parametrize("base_seed", BASE_SEEDS)
def test_countsketch_inner_products_unbiased(base_seed: int) -> None:
    d, d_out, n_draws = 2000, 64, 400
    gen = torch.Generator().manual_seed(base_seed)
    x = torch.randn(d, generator=gen, dtype=torch.float64)
    y = 0.6 * x + torch.randn(d, generator=gen, dtype=torch.float64)  # correlated pair
    true = float(x @ y)
    pair = torch.stack((x, y))
    est = torch.tensor([
        float(torch.prod(CountSketch.draw(d, d_out, seed=base_seed + s)(pair), dim=0).sum())
        for s in range(n_draws)
    ])
    var = ref.countsketch_inner_product_variance(x.numpy(), y.numpy(), d_out)
    # The mean of n_draws i.i.d. estimates has standard error sqrt(var / n); 5 SE fails a
    # correct (unbiased) sketch with probability below 1e-6.
    assert abs(float(est.mean()) - true) <= 5 * math.sqrt(var / n_draws), (float(est.mean()), true)
    # and the spread matches the exact variance formula (sample variance within 30 %)
    assert 0.7 * var <= float(est.var()) <= 1.3 * var, (float(est.var()), var)


@pytest.mark.parametrize("kind", ["srht", "block_srht", "gaussian"])
def test_inner_products_unbiased_for_dense_sketches(kind: str) -> None:
    d, n_draws = 200, 300
    x = _randn(2, d, seed=21)
    x[1] += 0.8 * x[0]
    true = float(x[0] @ x[1])
    est = torch.tensor([
        float(torch.prod(DRAWERS[kind](d, D_OUT, seed=s)(x), dim=0).sum()) for s in range(n_draws)
    ])
    # Var <Sx, Sy> <= (||x||^2 ||y||^2 + <x, y>^2) * 2 / d_out bounds each estimate's spread.
    bound = 2 * (float(x[0] @ x[0]) * float(x[1] @ x[1]) + true**2) / D_OUT
    assert abs(float(est.mean()) - true) <= 5 * math.sqrt(bound / n_draws)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kind", sorted(DRAWERS))
def test_bad_sizes_name_the_argument(kind: str) -> None:
    draw = DRAWERS[kind]
    with pytest.raises(InputError, match="d_out must not exceed d_in"):
        draw(10, 11)
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(InputError, match="d_out"):
            draw(10, bad)
        with pytest.raises(InputError, match="d_in"):
            draw(bad, 1)
    with pytest.raises(InputError, match="seed"):
        draw(10, 4, seed="zero")
    with pytest.raises(InputError, match="generator"):
        draw(10, 4, generator=0)


@pytest.mark.parametrize("kind", sorted(DRAWERS))
def test_bad_input_tensors(kind: str) -> None:
    op = DRAWERS[kind](64, 8, seed=0)
    with pytest.raises(ShapeError, match=r"d_in=64"):
        op(torch.zeros(3, 65))
    x = torch.zeros(3, 64)
    x[2, 5] = float("inf")
    with pytest.raises(InputError, match="x contains NaN or Inf"):
        op(x)
    xs = torch.zeros(3, 64).to_sparse()
    nan_sparse = torch.sparse_coo_tensor(torch.tensor([[0], [1]]), torch.tensor([float("nan")]),
                                         (3, 64))
    assert op(xs).shape == (3, 8)
    with pytest.raises(InputError, match="NaN"):
        op(nan_sparse)
    with pytest.raises(ShapeError, match="2-D"):
        op(torch.zeros(2, 3, 64).to_sparse())
    with pytest.raises(InputError, match="real-valued"):
        op(torch.zeros(3, 64, dtype=torch.complex64))


def test_other_bad_arguments() -> None:
    with pytest.raises(InputError, match="block_size"):
        BlockSRHT.draw(100, 16, block_size=8)
    with pytest.raises(InputError, match="block_size"):
        BlockSRHT.draw(100, 16, block_size=24)
    with pytest.raises(InputError, match="sparse_output"):
        CountSketch.draw(10, 4).apply(torch.zeros(2, 10), sparse_output=True)
    with pytest.raises(InputError, match=r"CountSketch.draw got unknown option\(s\) \['dtype'\]; "
                                         r"besides seed, generator and device it takes nothing"):
        CountSketch.draw(10, 4, dtype=torch.float64)
    with pytest.raises(InputError, match=r"\['block'\]; .* it takes \['block_size'\]"):
        BlockSRHT.draw(100, 16, block=16)
    with pytest.raises(ShapeError, match=r"ops\[0\].d_out=4"):
        compose(CountSketch.draw(10, 4), SRHT.draw(5, 2))
    with pytest.raises(InputError, match="kind"):
        SketchOperator.from_state_dict({"kind": "nope"})
    with pytest.raises(InputError, match="n"):
        hadamard_matrix(12)


def test_errors_are_hyperlens_errors() -> None:
    with pytest.raises(HyperlensError):
        srht(torch.zeros(2, 8), 9)
