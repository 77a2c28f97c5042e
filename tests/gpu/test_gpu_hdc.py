"""HDC on the device: the integer GEMM, packing, packed similarity and search, ternary
thresholds and the encoder, each against the CPU.

Integer results are exact on every device, so they must be equal bit for bit. Float32
projections round differently on the GPU, so an entry lying within rounding of its row's
threshold may ternarise differently: at most :data:`FLIPS` of the codes' entries.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from gpu_support import assert_on

from hyperlens.functional import hdc as F, packing as P
from hyperlens.hdc import PackedCodes, TernaryEncoder, search, similarity

pytestmark = pytest.mark.cuda

#: share of code entries allowed to differ between devices after a float32 projection
FLIPS = 1e-3


def _codes(n: int, d: int, seed: int) -> torch.Tensor:
    return F.random_hypervectors(n, d, "ternary", seed=seed)


def test_int_matmul_is_exact_and_uses_the_integer_kernel(device, monkeypatch):
    calls = []
    real = torch._int_mm

    def spy(a, b):
        calls.append(a.device.type)
        return real(a, b)

    monkeypatch.setattr(torch, "_int_mm", spy)
    for n, d, m in ((3, 13, 5), (40, 1000, 77), (300, 4096, 129)):
        a, b = _codes(n, d, seed=n), _codes(m, d, seed=m + 1)
        ref = (a.double() @ b.double().T).round().to(torch.int32)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no float64 fallback
            got = F.int_matmul(a.to(device), b.to(device))
        assert got.device.type == device.type and got.dtype == torch.int32
        assert torch.equal(got.cpu(), ref)
    if device.type == "cuda":
        assert calls and set(calls) == {"cuda"}, "the CUDA int8 GEMM did not run"


@pytest.mark.parametrize("scheme", ["twobit", "base3"])
def test_pack_and_unpack_give_the_cpu_bits(scheme, device):
    x = _codes(65, 1001, seed=3)
    packed = P.pack(x, scheme)
    got = P.pack(x.to(device), scheme)
    assert got.device.type == device.type
    assert torch.equal(got.cpu(), packed)
    back = P.unpack(got, 1001, scheme)
    assert back.device.type == device.type and torch.equal(back.cpu(), x)
    assert torch.equal(P.packed_nonzeros(got, 1001, scheme).cpu(),
                       P.packed_nonzeros(packed, 1001, scheme))


@pytest.mark.parametrize("metric", ["dot", "cosine", "hamming"])
def test_packed_similarity_and_search_equal_the_cpu(metric, device):
    codes = PackedCodes.from_dense(_codes(3000, 2048, seed=5))
    queries = _codes(37, 2048, seed=6)
    ref_sim = similarity(queries, codes, metric, block_size=1024)
    ref = search(queries, codes, k=10, metric=metric, block_size=1024, query_block_size=16)
    dcodes = codes.to(device)
    assert dcodes.device.type == device.type
    sim = similarity(queries.to(device), dcodes, metric, block_size=1024)
    got = search(queries.to(device), dcodes, k=10, metric=metric, block_size=1024,
                 query_block_size=16)
    assert_on(device, sim, got.scores, got.indices)
    assert torch.equal(got.indices.cpu(), ref.indices)
    # dot and hamming are integer counts: equal bit for bit; cosine divides the integer dot
    # product by the two norms, whose last bit may round differently on the two devices
    exact = {"rtol": 0.0, "atol": 0.0} if metric != "cosine" else {"rtol": 1e-6, "atol": 0.0}
    torch.testing.assert_close(sim.cpu(), ref_sim, **exact)
    torch.testing.assert_close(got.scores.cpu(), ref.scores, **exact)


def test_quantile_thresholds_are_the_cpu_order_statistics(device):
    x = torch.randn(50, 4097, generator=torch.Generator().manual_seed(7))
    for sparsity in (0.5, 0.7, 0.9):
        t = F.ternary_thresholds(x, "quantile", sparsity)
        got = F.ternary_thresholds(x.to(device), "quantile", sparsity)
        assert got.device.type == device.type
        assert torch.equal(got.cpu(), t)
        assert torch.equal(F.ternarize(x.to(device), "quantile", sparsity).cpu(),
                           F.ternarize(x, "quantile", sparsity))


@pytest.mark.parametrize("output", ["dense", "twobit"])
def test_encoder_on_the_device_matches_the_cpu(output, device):
    X = np.random.default_rng(8).normal(size=(500, 96)).astype(np.float32)
    kw = {"dim": 4096, "center": True, "scale": True, "output": output, "batch_size": 128,
          "seed": 3}
    cpu = TernaryEncoder(**kw).fit(X)
    dev = TernaryEncoder(**kw, device=str(device)).fit(X)
    assert_on(device, dev.weight_, dev.bias_)
    assert torch.equal(dev.projection_.cpu(), cpu.projection_)  # drawn on the CPU, moved
    torch.testing.assert_close(dev.project(X).cpu(), cpu.project(X), rtol=1e-4, atol=1e-4)
    got, ref = dev.transform(X), cpu.transform(X)
    if output == "twobit":
        assert got.device.type == device.type
        got, ref = got.to_dense(), ref.to_dense()
    assert got.device.type == device.type
    flips = float((got.cpu() != ref).double().mean())
    assert flips <= FLIPS, f"{flips:.2e} of the code entries differ from the CPU's"
