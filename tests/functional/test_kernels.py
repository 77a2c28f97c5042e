"""Every implementation of every multi-path kernel gives the same bits, and forcing works."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from reference import hdc_reference as ref

from hyperlens.errors import ConfigError, InputError
from hyperlens.functional import hdc as F, kernels as K, packing as P
from hyperlens.hdc import PackedCodes, search, similarity

numba_only = pytest.mark.skipif(not K.numba_available(), reason="numba is not installed")


def _codes(n: int, d: int, seed: int, sparsity: float = 0.6) -> torch.Tensor:
    return F.random_hypervectors(n, d, "ternary", seed=seed, sparsity=sparsity)


# ----------------------------------------------------------------------------- choice
def test_profiles_choose_by_capability() -> None:
    avx2, vnni, amx = K.PROFILES["avx2"], K.PROFILES["avx512_vnni"], K.PROFILES["amx"]
    assert K.rule("gemm", avx2, d=10_000) == "fp32"  # oneDNN int8 is slow without VNNI
    assert K.rule("gemm", K.PROFILES["avx512"], d=10_000) == "fp32"
    assert K.rule("gemm", vnni, d=10_000) == "int8"
    assert K.rule("gemm", amx, d=10_000) in ("amx_int8", "int8")  # bf16 inexact at d > 256
    assert K.rule("gemm", amx, d=200) == "bf16"
    assert K.rule("gemm", vnni, d=200) == "int8"
    assert K.rule("gemm", avx2, d=1 << 24) == "int8"  # float32 no longer exact
    assert K.rule("gemm", vnni, d=100, work=1000) == "fp32"  # tiny: set-up cost dominates


def test_force_kernels_context_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(K.ENV, raising=False)
    with K.force_kernels("avx2"):
        assert K.kernel_for("gemm", d=10_000) == "fp32"
        assert K.features().profile == "avx2"
        with K.force_kernels(gemm="int8"):
            assert K.kernel_for("gemm", d=10_000) == "int8"
        assert K.kernel_for("gemm", d=10_000) == "fp32"
    with K.force_kernels("amx"):
        assert K.kernel_for("gemm", d=10_000) in ("amx_int8", "int8")
    monkeypatch.setenv(K.ENV, "avx2,select=topk")
    assert K.forced() == ("avx2", {"select": "topk"})
    assert K.kernel_for("gemm", d=10_000) == "fp32"
    assert K.kernel_for("select") == "topk"
    with K.force_kernels(select="introselect"):  # the context wins over the environment
        assert K.kernel_for("select") == "introselect"
    monkeypatch.setenv(K.ENV, "gemm=bf16")
    assert K.kernel_for("gemm", d=256) == "bf16"
    assert K.kernel_for("gemm", d=257) != "bf16"  # never an inexact choice
    # CUDA keeps its own paths whatever is forced
    assert K.kernel_for("gemm", device="cuda", d=10_000) == "int8"
    assert K.kernel_for("select", device="cuda") == "topk"


@pytest.mark.parametrize(
    ("spec", "word"), [("avx3", "profile"), ("gemm=int4", "gemm"), ("sort=fast", "op")]
)
def test_bad_forcing_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, spec: str, word: str
) -> None:
    monkeypatch.setenv(K.ENV, spec)
    with pytest.raises(ConfigError, match=word):
        K.kernel_for("gemm")
    monkeypatch.delenv(K.ENV)
    with pytest.raises(ConfigError, match="profile"):
        with K.force_kernels("sse9"):
            pass
    with pytest.raises(InputError, match="op"):
        K.kernel_for("fft")


def test_probe_is_cached_per_machine(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path))
    monkeypatch.delenv(K.ENV, raising=False)
    K._PROBED.clear()
    out = K.probe(repeats=1)
    assert out["gemm"] in ("int8", "fp32")
    path = tmp_path / "kernels" / f"{K.machine_key()}.json"
    assert json.loads(path.read_text())["gemm"] == out["gemm"]
    K._PROBED.clear()
    path.write_text(json.dumps({"gemm": "fp32"}))
    if K.rule("gemm", d=10_000) in ("int8", "fp32"):
        assert K.kernel_for("gemm", d=10_000) == "fp32"  # read back, not re-measured
    monkeypatch.setenv(K.PROBE_ENV, "0")
    assert K.kernel_for("gemm", d=10_000) == K.rule("gemm", d=10_000)
    K._PROBED.clear()


def test_emulation_env_and_cpu_info() -> None:
    env = K.emulation_env("avx2")
    assert env[K.ENV] == "avx2" and env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    info = K.cpu_info()
    assert info["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(info["kernels"]) == set(K.OPS)


# ----------------------------------------------------------------------------- same bits
@pytest.mark.parametrize("d", [200, 1000])
def test_every_gemm_gives_the_same_bits(d: int) -> None:
    a = _codes(40, d, 1)
    b = _codes(300, d, 2)
    expected = torch.from_numpy(ref.dot_naive(a.numpy(), b.numpy()).astype(np.int32))
    impls = ["int8", "amx_int8", "fp32", "fp64"] + (["bf16"] if d <= K.BF16_EXACT_DIM else [])
    impls = [i for i in impls if i != "amx_int8" or K.amx_int8_available()]
    for impl in impls:
        with K.force_kernels(gemm=impl):
            assert K.kernel_for("gemm", d=d, work=40 * 300 * d) == impl
            got = F.int_matmul(a, b)
        assert got.dtype == torch.int32
        assert torch.equal(got, expected), impl


@pytest.mark.skipif(not K.amx_int8_available(), reason="no oneDNN packed int8 matmul")
def test_packed_int8_gemm_on_many_rows() -> None:
    a = _codes(3100, 96, 7)  # enough rows that the packed path runs
    b = _codes(20, 96, 8)
    expected = torch.from_numpy(ref.dot_naive(a.numpy(), b.numpy()).astype(np.int32))
    with K.force_kernels(gemm="amx_int8"):
        assert torch.equal(F.int_matmul(a, b), expected)
        assert torch.equal(F.int_matmul(b, a), expected.t())
        res = search(b, PackedCodes.from_dense(a), k=5, metric="cosine", block_size=1024)
    with K.force_kernels(gemm="fp32"):
        res32 = search(b, PackedCodes.from_dense(a), k=5, metric="cosine", block_size=1024)
    assert torch.equal(res.indices, res32.indices) and torch.equal(res.scores, res32.scores)


def test_bf16_is_exact_at_its_limit() -> None:
    # all-ones codes reach |dot| = d = 256, the largest integer run bf16 holds exactly
    a = torch.ones(3, 256, dtype=torch.int8)
    b = torch.cat([torch.ones(2, 256, dtype=torch.int8), -torch.ones(2, 256, dtype=torch.int8)])
    with K.force_kernels(gemm="bf16"):
        got = F.int_matmul(a, b)
    assert torch.equal(got, torch.tensor([[256, 256, -256, -256]] * 3, dtype=torch.int32))


@pytest.mark.parametrize("metric", ["cosine", "dot", "hamming"])
def test_search_and_similarity_same_bits_on_every_path(metric: str) -> None:
    d = 700
    codes = PackedCodes.from_dense(_codes(500, d, 3))
    queries = _codes(37, d, 4)
    results = {}
    for profile in ("avx2", "avx512_vnni", "amx"):
        with K.force_kernels(profile):
            res = search(queries, codes, k=7, metric=metric, block_size=128, query_block_size=16)
            sim = similarity(queries, codes, metric=metric, block_size=128)
        results[profile] = (res, sim)
    base_res, base_sim = results["avx2"]
    for res, sim in results.values():
        assert torch.equal(res.indices, base_res.indices)
        assert torch.equal(res.scores, base_res.scores)
        assert torch.equal(sim, base_sim)
    dense = {"cosine": F.cosine, "dot": F.dot, "hamming": F.hamming}[metric](
        queries, codes.to_dense()
    )
    assert torch.equal(base_sim, dense)


def test_every_popcount_gives_the_same_bits() -> None:
    codes = _codes(64, 1003, 5)
    packed = P.pack_twobit(codes)
    expected = (codes != 0).sum(1, dtype=torch.int32)
    for impl in K.OPS["popcount"]:
        with K.force_kernels(popcount=impl):
            assert torch.equal(P.packed_nonzeros(packed, 1003), expected), impl


def _select_inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 2000, generator=g)
    rows = [
        x,
        x.double(),
        torch.sort(x.abs(), dim=1).values * torch.sign(torch.randn(300, 2000, generator=g)),
        torch.randint(-3, 4, (50, 1000), generator=g).float(),  # heavy ties
        torch.randn(7, 9, generator=g),  # rows shorter than the sample
        torch.cat([torch.zeros(3, 500), torch.full((3, 500), 2.0)], 1),
        torch.randn(5, 3000, generator=g) * torch.logspace(-20, 20, 3000),
    ]
    return rows


@pytest.mark.parametrize("sparsity", [0.05, 0.7, 0.99])
def test_every_selection_gives_the_same_codes(sparsity: float) -> None:
    impls = [i for i in K.OPS["select"] if i != "sampled" or K.numba_available()]
    for x in _select_inputs():
        outs = {}
        for impl in impls:
            with K.force_kernels(select=impl):
                outs[impl] = (
                    F.ternarize(x, sparsity=sparsity),
                    F.ternary_thresholds(x, sparsity=sparsity),
                )
        codes0, thr0 = outs["topk"]
        for impl, (codes, thr) in outs.items():
            assert torch.equal(codes, codes0), (impl, tuple(x.shape))
            assert torch.equal(thr, thr0), (impl, tuple(x.shape))
        if x.shape[1] <= 1000:
            expected = ref.ternarize_sorted(x.numpy(), sparsity)
            assert np.array_equal(codes0.numpy(), expected)


@numba_only
def test_sampled_selection_equals_the_seed_loop() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 384, generator=g) @ F.random_projection(384, 4000, seed=1)
    with K.force_kernels(select="sampled"):
        got = F.ternarize(x, sparsity=0.7)
    assert torch.equal(got, ref.ternarize_quantile_loop(x, 0.7))
    assert int((got == 0).sum(1)[0]) == F.quantile_zero_count(4000, 0.7)


def _bracket_breakers(d: int, gen: torch.Generator) -> torch.Tensor:
    """Rows whose strided sample misleads the first bracket, or that need many counts."""
    base = torch.randn(8, d, generator=gen)
    pos = torch.arange(d)
    rows = [
        base[0] * (pos % 9 == 0) * 1e6 + base[1] * 1e-6,  # the strided sample sees only giants
        base[2] * (pos % 9 != 0),  # the strided sample sees only zeros
        torch.sort(base[3].abs()).values,  # sorted magnitudes
        torch.where(pos < d // 2, base[4] * 1e-30, base[4] * 1e30),  # two far-apart clusters
        torch.full((d,), 0.5).where(pos % 3 > 0, base[5]),  # a tie at the threshold
        base[6] * torch.logspace(-30, 30, d),  # every exponent
        (base[7] * 1024).round() / 1024,  # a coarse grid of values
        torch.nextafter(torch.ones(d), torch.zeros(d)).where(pos % 2 == 0, torch.ones(d)),
    ]
    return torch.stack(rows)


@pytest.mark.parametrize("sparsity", [0.01, 0.3, 0.7, 0.999])
def test_ternarize_equals_the_sorted_reference_on_every_path(sparsity: float) -> None:
    """Projection-shaped rows (d = 10,000) and rows built against the sampled bracket give
    the codes of the full-sort reference, bit for bit, on every selection (the default
    included), in float32 and float64."""
    gen = torch.Generator().manual_seed(11)
    proj = torch.randn(12, 96, generator=gen) @ F.random_projection(96, 10_000, seed=4)
    for x in (proj, _bracket_breakers(10_000, gen), _bracket_breakers(1500, gen)):
        for xd in (x, x.double()):
            expected = ref.ternarize_sorted(xd.numpy(), sparsity)
            impls = [None, *(i for i in K.OPS["select"] if i != "sampled" or K.numba_available())]
            for impl in impls:
                with K.force_kernels(**({} if impl is None else {"select": impl})):
                    got = F.ternarize(xd, sparsity=sparsity)
                assert np.array_equal(got.numpy(), expected), (impl, xd.dtype, tuple(x.shape))


def test_every_selection_rejects_nan_and_inf_rows_by_name() -> None:
    """The compiled path notes NaN / Inf in the pass that writes the codes; the message is
    the one of the separate check (count, first row, shape), on every path."""
    x = torch.randn(40, 3000, generator=torch.Generator().manual_seed(8))
    x[29, 7], x[5, 2999] = float("inf"), float("nan")
    huge = torch.full((2, 3000), 3.0e38) * torch.sign(torch.randn(2, 3000))
    for impl in [i for i in K.OPS["select"] if i != "sampled" or K.numba_available()]:
        with K.force_kernels(select=impl):
            with pytest.raises(InputError, match=r"NaN or Inf in 2 row\(s\) \(first: row 5"):
                F.ternarize(x, sparsity=0.7)
            with pytest.raises(InputError, match="row 5"):
                F.ternary_thresholds(x, sparsity=0.7)
            assert F.ternarize(huge, sparsity=0.7).abs().sum() == 0  # finite; ties at 3e38


@numba_only
def test_sampled_selection_with_unchecked_nan_rows_stays_in_bounds() -> None:
    x = torch.randn(4, 3000, generator=torch.Generator().manual_seed(2))
    x[1, ::2] = float("nan")  # more NaNs than magnitudes below the threshold
    x[2, 5] = float("nan")
    with K.force_kernels(select="sampled"):
        thr = F.ternary_thresholds(x, sparsity=0.7, check_finite=False)
        codes = F.ternarize(x, sparsity=0.7, check_finite=False)
    assert thr[1] == float("inf") and not bool(codes[1].any())  # too few numbers: all zero
    for i in (0, 3):
        assert thr[i] == torch.sort(x[i].abs()).values[F.quantile_zero_count(3000, 0.7) - 1]
    finite = x[2][~torch.isnan(x[2])].abs()  # NaN sorts above every magnitude
    assert thr[2] == torch.sort(finite).values[F.quantile_zero_count(3000, 0.7) - 1]


@numba_only
def test_sampled_selection_is_served_from_numbas_disk_cache() -> None:
    """A second process loads the compiled selection from numba's cache instead of
    compiling it again (a kernel that closes over other compiled functions would miss the
    cache in every process: the closure's pickled dispatchers carry a fresh id)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import numpy as np\n"
        "from hyperlens.functional import compiled as C\n"
        "C.kth_smallest_abs_rows(np.ones((3, 40), np.float32), 7, codes=True)\n"
        "s = C._select_rows.stats\n"
        "print(sum(s.cache_hits.values()), sum(s.cache_misses.values()))\n"
    )
    src = str(Path(F.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    counts = []
    for _ in range(2):  # the first process may compile and store; the second must load
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=600)
        counts.append(tuple(int(v) for v in run.stdout.split()))
    assert sum(counts[0]) == 1
    assert counts[1] == (1, 0), counts


@pytest.mark.parametrize("d", [8, 1003, 4096])
def test_every_unpack_gives_the_same_values(d: int) -> None:
    codes = _codes(33, d, 6)
    packed = P.pack_twobit(codes)
    for impl in [i for i in K.OPS["unpack"] if i != "compiled" or K.numba_available()]:
        with K.force_kernels(unpack=impl):
            got8 = P.unpack_twobit(packed, d)
            got32 = P.unpack_twobit(packed, d, dtype=torch.float32)
        assert got8.dtype == torch.int8 and torch.equal(got8, codes), impl
        assert got32.dtype == torch.float32 and torch.equal(got32, codes.float()), impl
    # both plane bits set (never written by pack_twobit) reads as 0 on every path
    bad = packed.clone()
    bad[:, : packed.shape[1] // 2] |= bad[:, packed.shape[1] // 2 :]
    outs = []
    for impl in [i for i in K.OPS["unpack"] if i != "compiled" or K.numba_available()]:
        with K.force_kernels(unpack=impl):
            outs.append(P.unpack_twobit(bad, d))
    assert all(torch.equal(o, outs[0]) for o in outs)
