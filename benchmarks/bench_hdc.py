"""Side-by-side speed and size comparisons for hyperlens' HDC kernels; writes JSON.

Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_hdc.py                 # this CPU's kernels
    PYTHONPATH=src python benchmarks/bench_hdc.py --kernels avx2  # as an AVX2 CPU
    PYTHONPATH=src python benchmarks/bench_hdc.py --quick         # small sizes, smoke test

``--kernels PROFILE`` restarts the process with ``ATEN_CPU_CAPABILITY``,
``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS`` and ``NUMBA_CPU_NAME`` capped to that
CPU's instruction set and ``HYPERLENS_KERNELS`` forcing its kernel choices, and writes
``results/bench_hdc_PROFILE.json``: the fallback paths measured on a bigger CPU.

Sections (contenders interleaved round by round, best of ``--repeats`` rounds):

1. Ternarise 2,000 x 10,000 by per-row quantile: the original notebook's per-row
   ``torch.quantile`` loop, ``torch.quantile(dim=1)``, ``hyperlens.functional.hdc.ternarize``
   and the projection matmul 2,000 x 384 x 10,000 that produces its input; then, as a
   user meets them, plain calls in fresh processes: the first call of ``ternarize`` in a
   process (numba's one-time import and set-up, the kernel loaded from numba's disk
   cache, the run) and the calls after it, against the seed loop's own first and later
   calls, plus the first call once numba is already set up (by any compiled kernel).
2. Storage of 10,000-d codes: float32, int8, two-bit and base-3 bytes per code.
3. Search, 500 ternary queries against 8,192 packed 10,000-d codes, cosine top-10: packed
   ``search`` against a float32 index (unit-normalised dense codes, one matmul + topk),
   plus each GEMM implementation (int8, float32, bf16) and popcount on one block.
4. If ``benchmarks/bench_sketch.py`` exists and defines ``run() -> dict``, its results are
   included under ``"sketch"``.

Every JSON records the CPU model, torch's capability, the features and the kernels chosen.
Figures depend on the machine and its load; the JSON records the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperlens.functional import hdc as F, kernels as K, packing as P
from hyperlens.hdc import PackedCodes, search
from hyperlens.utils import atomic_write_json

HERE = Path(__file__).resolve().parent


CPU_SECONDS: dict[str, float] = {}


def best_of(fn: Callable[[], Any], repeats: int, name: str | None = None) -> float:
    """Minimum wall time of ``repeats`` calls after one warm-up call.

    With ``name``, the minimum process CPU time (all threads) is kept in ``CPU_SECONDS``:
    on a shared, loaded machine it is steadier than wall time.
    """
    fn()
    best = cpu = float("inf")
    for _ in range(repeats):
        start, cstart = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - cstart)
    if name is not None:
        CPU_SECONDS[name] = cpu
    return best


def seed_style_ternarize(x: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The original per-row loop: one ``torch.quantile`` call per row (the baseline)."""
    out = torch.zeros_like(x)
    for i in range(len(x)):
        v = x[i]
        t = torch.quantile(torch.abs(v), sparsity)
        out[i] = torch.where(
            v > t, torch.ones_like(v), torch.where(v < -t, -torch.ones_like(v), torch.zeros_like(v))
        )
    return out


def quantile_dim1_ternarize(x: torch.Tensor, sparsity: float) -> torch.Tensor:
    t = torch.quantile(x.abs(), sparsity, dim=1, keepdim=True)
    return (x > t).to(torch.int8) - (x < -t).to(torch.int8)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Best wall time of each contender over ``repeats`` rounds, contenders interleaved.

    One warm-up call each first; each round runs every contender once, so a burst of load
    from other processes hits all of them alike. Process CPU time (all threads) of the
    best round per contender goes to ``CPU_SECONDS``.
    """
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, cstart = time.perf_counter(), time.process_time()
            fn()
            wall = time.perf_counter() - start
            if wall < best[name]:
                best[name] = wall
                CPU_SECONDS[name] = time.process_time() - cstart
    return best


_PLAIN_CALLS = """
import json, sys, time
sys.path.insert(0, {here!r})
import torch
from hyperlens.functional import hdc as F
from bench_hdc import seed_style_ternarize
g = torch.Generator().manual_seed(0)
emb = torch.randn({n}, {d_in}, generator=g)
x = emb @ F.random_projection({d_in}, {d}, seed=0)
numba_before = "numba" in sys.modules
ready_s = None
if {numba_ready}:  # numba imported and set up by another compiled function
    t = time.perf_counter()
    import numba
    numba.njit(lambda v: v + 1)(1)
    ready_s = time.perf_counter() - t
fn = {call}
calls = []
for _ in range({calls}):
    t = time.perf_counter()
    fn()
    calls.append(time.perf_counter() - t)
print(json.dumps({{"calls_s": calls, "numba_imported_before": numba_before,
                  "numba_set_up_s": ready_s}}))
"""


def plain_calls(call: str, n: int, d_in: int, d: int, calls: int,
                numba_ready: bool = False) -> dict[str, Any]:
    """Wall time of each of ``calls`` calls of ``call`` in a fresh process (no warm-up)."""
    import json
    import subprocess

    code = _PLAIN_CALLS.format(here=str(HERE), n=n, d_in=d_in, d=d, call=call, calls=calls,
                               numba_ready=numba_ready)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ))
    return json.loads(run.stdout.strip().splitlines()[-1])


def bench_plain_calls(n: int, d_in: int, d: int, sparsity: float) -> dict[str, Any]:
    """First and later calls in fresh processes: ours, ours once numba is set up, the seed's."""
    ours = plain_calls(f"lambda: F.ternarize(x, sparsity={sparsity})", n, d_in, d, 4)
    ready = plain_calls(f"lambda: F.ternarize(x, sparsity={sparsity})", n, d_in, d, 1,
                        numba_ready=True)
    seed = plain_calls(f"lambda: seed_style_ternarize(x, {sparsity})", n, d_in, d, 2)
    later = float(np.median(ours["calls_s"][1:]))
    first = ours["calls_s"][0]
    first_ready = ready["calls_s"][0]
    seed_first, seed_later = seed["calls_s"][0], float(np.median(seed["calls_s"][1:]))
    return {
        "note": "fresh processes; calls timed one by one, no warm-up; the first call of "
                "ternarize includes importing numba, numba's one-time set-up and loading "
                "the kernel from numba's disk cache (compiled once per machine and CPU)",
        "ternarize_calls_s": ours["calls_s"],
        "numba_imported_before_first_call": ours["numba_imported_before"],
        "numba_set_up_s": ready["numba_set_up_s"],
        "ternarize_first_call_with_numba_set_up_s": first_ready,
        "seed_loop_calls_s": seed["calls_s"],
        "speedup_first_call": seed_first / first,
        "speedup_first_call_with_numba_set_up": seed_first / first_ready,
        "speedup_later_calls": seed_later / later,
    }


def bench_ternarize(n: int, d_in: int, d: int, sparsity: float, repeats: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(n, d_in, generator=g)
    proj = F.random_projection(d_in, d, seed=0)
    x = emb @ proj
    t = interleaved(
        {
            "seed_loop_torch_quantile": lambda: seed_style_ternarize(x, sparsity),
            "torch_quantile_dim1": lambda: quantile_dim1_ternarize(x, sparsity),
            "hyperlens_ternarize": lambda: F.ternarize(x, sparsity=sparsity),
            "projection_matmul": lambda: emb @ proj,
        },
        repeats,
    )
    cpu = {key: CPU_SECONDS[key] for key in t}
    ours = F.ternarize(x, sparsity=sparsity)
    same_as_loop = bool(torch.equal(ours, seed_style_ternarize(x, sparsity).to(torch.int8)))
    same_as_dim1 = bool(torch.equal(ours, quantile_dim1_ternarize(x, sparsity)))
    speedup = t["seed_loop_torch_quantile"] / t["hyperlens_ternarize"]
    ratio = t["hyperlens_ternarize"] / t["projection_matmul"]
    plain = bench_plain_calls(n, d_in, d, sparsity)
    return {
        "shape": [n, d],
        "projection_shape": [n, d_in, d],
        "sparsity": sparsity,
        "select_kernel": K.kernel_for("select"),
        "seconds": t,
        "cpu_seconds_all_threads": cpu,
        "cpu_time_ratios": {
            "speedup_vs_seed_loop": cpu["seed_loop_torch_quantile"] / cpu["hyperlens_ternarize"],
            "ratio_to_matmul": cpu["hyperlens_ternarize"] / cpu["projection_matmul"],
        },
        "speedup_vs_seed_loop": speedup,
        "speedup_vs_quantile_dim1": t["torch_quantile_dim1"] / t["hyperlens_ternarize"],
        "ratio_to_matmul": ratio,
        "plain_calls": plain,
        "targets": {
            "speedup_vs_seed_loop>=40": speedup >= 40,
            "plain_later_calls_speedup>=40": plain["speedup_later_calls"] >= 40,
            "plain_first_call_with_numba_set_up_speedup>=40":
                plain["speedup_first_call_with_numba_set_up"] >= 40,
            "plain_first_call_speedup>=40": plain["speedup_first_call"] >= 40,
            "ratio_to_matmul<=1.5": ratio <= 1.5,
        },
        "identical_codes_to_seed_loop": same_as_loop,
        "identical_codes_to_quantile_dim1": same_as_dim1,
        "zeros_per_row": int((ours[0] == 0).sum()),
    }


def bench_storage(d: int) -> dict[str, Any]:
    f32 = 4 * d
    out = {"dim": d, "bytes_per_code": {"float32": f32, "int8": d}}
    for scheme in F.SCHEMES:
        out["bytes_per_code"][scheme] = P.packed_width(d, scheme)
    out["compression_vs_float32"] = {k: f32 / v for k, v in out["bytes_per_code"].items()}
    return out


def _make_codes(n: int, d: int, sparsity: float, block: int = 8192) -> PackedCodes:
    packed = PackedCodes.empty(n, d, "twobit")
    for i, start in enumerate(range(0, n, block)):
        stop = min(n, start + block)
        codes = F.random_hypervectors(stop - start, d, "ternary", seed=1000 + i, sparsity=sparsity)
        packed.data[start:stop] = P.pack_twobit(codes, check_values=False)
    return packed


def _popcount_dot(qp: np.ndarray, qn: np.ndarray, cp: np.ndarray, cn: np.ndarray) -> np.ndarray:
    """Dot products from bit planes: popc(P&P') + popc(N&N') - popc(P&N') - popc(N&P')."""
    pp = np.bitwise_count(qp[:, None, :] & cp[None]).sum(-1, dtype=np.int32)
    nn = np.bitwise_count(qn[:, None, :] & cn[None]).sum(-1, dtype=np.int32)
    pn = np.bitwise_count(qp[:, None, :] & cn[None]).sum(-1, dtype=np.int32)
    np_ = np.bitwise_count(qn[:, None, :] & cp[None]).sum(-1, dtype=np.int32)
    return pp + nn - pn - np_


def _planes64(codes: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    d = codes.shape[1]
    pad = (-d) % 64
    c = torch.nn.functional.pad(codes, (0, pad)).numpy()
    pos = np.packbits(c > 0, axis=1, bitorder="little").view(np.uint64)
    neg = np.packbits(c < 0, axis=1, bitorder="little").view(np.uint64)
    return pos, neg


def bench_search(
    n_queries: int, n_codes: int, d: int, sparsity: float, block_size: int, k: int, repeats: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    codes = _make_codes(n_codes, d, sparsity)
    queries = F.random_hypervectors(n_queries, d, "ternary", seed=7, sparsity=sparsity)
    build_s = time.perf_counter() - t0

    # the float32 index: unit-normalised codes, held dense (16x the packed bytes); the
    # timed part is what a query costs: normalise the queries, one matmul, top-k
    keys32 = codes.to_dense().to(torch.float32)
    keys32 /= keys32.norm(dim=1, keepdim=True).clamp_min(1e-30)
    q32 = queries.to(torch.float32)

    def float32_search() -> tuple[torch.Tensor, torch.Tensor]:
        qn = q32 / q32.norm(dim=1, keepdim=True).clamp_min(1e-30)
        return torch.topk(qn @ keys32.T, k, dim=1)

    def packed_search() -> Any:
        return search(queries, codes, k=k, metric="cosine", block_size=block_size)

    t = interleaved({"packed_search_cosine_topk": packed_search,
                     "float32_matmul_topk": float32_search}, repeats)
    cpu = {key: CPU_SECONDS[key] for key in t}
    res = packed_search()
    f_scores, f_idx = float32_search()
    top_close = float((res.scores[:, 0] - f_scores[:, 0]).abs().max())
    keys32 = q32 = torch.empty(0)
    # correctness: the packed ranking equals a brute-force dense cosine ranking
    m = min(n_codes, 4096)
    sub = search(queries[:50], codes[:m], k=k, metric="cosine", block_size=block_size)
    dense_cos = F.cosine(queries[:50], codes.unpack(0, m))
    order = torch.sort(dense_cos, dim=1, descending=True, stable=True).indices[:, :k]
    ranking_ok = bool(torch.equal(sub.indices, order))

    # one block with each GEMM implementation (what the kernel choice is between)
    blk = codes.unpack(0, min(block_size, n_codes))
    nb = blk.shape[0]
    gemms = {}
    for impl in ("int8", "fp32", "bf16"):
        qa, ba = F.gemm_operand(queries, impl), F.gemm_operand(blk, impl)
        gemms[impl] = (lambda qa=qa, ba=ba, impl=impl: F.gemm_prepared(qa, ba, impl))
    tb = interleaved(gemms, max(2, repeats))
    exact = F.int_matmul(queries, blk)
    bf16_err = float((gemms["bf16"]().float() - exact.float()).abs().max())
    pc_q, pc_c = min(n_queries, 64), min(nb, 512)
    qp, qn_ = _planes64(queries[:pc_q])
    cp, cn = _planes64(blk[:pc_c])
    t_pop = best_of(lambda: _popcount_dot(qp, qn_, cp, cn), 1)
    pop_ok = bool(
        np.array_equal(_popcount_dot(qp, qn_, cp, cn), F.dot(queries[:pc_q], blk[:pc_c]).numpy())
    )
    per_pair = {f"{impl}_gemm": tb[impl] / (n_queries * nb) for impl in tb}
    per_pair["popcount_numpy_uint64"] = t_pop / (pc_q * pc_c)
    float_bytes = n_codes * d * 4
    ratio = t["packed_search_cosine_topk"] / t["float32_matmul_topk"]
    return {
        "n_queries": n_queries,
        "n_codes": n_codes,
        "dim": d,
        "k": k,
        "sparsity": sparsity,
        "block_size": block_size,
        "gemm_kernel": K.kernel_for("gemm", d=d, work=n_queries * block_size * d),
        "build_codes_seconds": build_s,
        "seconds": t,
        "cpu_seconds_all_threads": cpu,
        "packed_time_over_float32": ratio,
        "speedup_vs_float32_matmul_topk": 1.0 / ratio,
        "cpu_time_speedup_vs_float32": cpu["float32_matmul_topk"]
        / cpu["packed_search_cosine_topk"],
        "memory_bytes": {
            "packed_twobit_codes": codes.nbytes,
            "float32_codes": float_bytes,
            "ratio": float_bytes / codes.nbytes,
        },
        "targets": {
            "packed_at_most_1.25x_float32": ratio <= 1.25,
            "packed_2.5x_faster_with_vnni": (1.0 / ratio) >= 2.5,
            "codes_at_least_16x_smaller": float_bytes / codes.nbytes >= 16,
        },
        "checks": {
            "packed_ranking_equals_dense_on_slice": ranking_ok,
            "top1_cosine_max_abs_diff_vs_float32": top_close,
            "popcount_equals_int8": pop_ok,
            "bf16_max_abs_error": bf16_err,
            "top1_score_mean": float(res.scores[:, 0].mean()),
        },
        "one_block": {
            "shape": [n_queries, nb, d],
            "gemm_seconds": tb,
            "seconds_per_query_code_pair": per_pair,
            "note": (
                "bf16 products round the output to 8 mantissa bits (inexact above 256), so "
                "search never uses them at this d; popcount timed on a 64 x 512 tile with "
                "NumPy's bitwise_count (torch has no popcount)."
            ),
        },
    }


def run_sketch_benchmarks(quick: bool = False) -> dict[str, Any] | None:
    """Results of ``benchmarks/bench_sketch.py:run()`` when that file exists, else None.

    ``quick`` is passed on when ``run`` accepts it.
    """
    path = HERE / "bench_sketch.py"
    if not path.is_file():
        return None
    try:
        spec = importlib.util.spec_from_file_location("hyperlens_bench_sketch", path)
        if spec is None or spec.loader is None:
            return {"status": "error", "error": f"cannot import {path}"}
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        runner = getattr(module, "run", None)
        if runner is None:
            return {"status": "skipped", "note": "bench_sketch.py has no run() function"}
        import inspect

        if "quick" in inspect.signature(runner).parameters:
            return runner(quick=quick)
        return runner()
    except Exception as exc:  # a failing neighbour must not lose our results
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-codes", type=int, default=8192)
    ap.add_argument("--n-queries", type=int, default=500)
    ap.add_argument(
        "--kernels",
        choices=("native", *K.PROFILES),
        default="native",
        help="run as that CPU: the process restarts with torch/oneDNN/MKL/numba capped to "
        "the profile's instruction set and hyperlens forced to its kernel choices",
    )
    ap.add_argument("--dim", type=int, default=10_000)
    ap.add_argument("--block-size", type=int, default=4096)
    ap.add_argument("--no-sketch", action="store_true", help="skip benchmarks/bench_sketch.py")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.kernels != "native" and os.environ.get(K.ENV) != args.kernels:
        env = {**os.environ, **K.emulation_env(args.kernels)}
        raw = sys.argv[1:] if argv is None else argv
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *raw], env)
    if args.out is None:
        name = "bench_hdc.json" if args.kernels == "native" else f"bench_hdc_{args.kernels}.json"
        args.out = HERE / "results" / name
    if args.quick:
        args.n_codes, args.n_queries, args.repeats = 2048, 100, 1
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "benchmark": "hdc",
        "quick": args.quick,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "kernels_profile": args.kernels,
        "cpu": K.cpu_info(),
        "loadavg_before": load_before,
        "note": "contenders interleaved in each round, best of --repeats rounds",
    }
    n_tern = 500 if args.quick else 2000
    print("ternarize ...", file=sys.stderr)
    results["ternarize"] = bench_ternarize(n_tern, 384, args.dim, 0.7, args.repeats)
    results["storage"] = bench_storage(args.dim)
    print("search ...", file=sys.stderr)
    results["search"] = bench_search(
        args.n_queries,
        args.n_codes,
        args.dim,
        0.7,
        block_size=args.block_size,
        k=10,
        repeats=args.repeats,
    )
    if not args.no_sketch:
        print("sketch ...", file=sys.stderr)
        sketch = run_sketch_benchmarks(quick=args.quick)
        results["sketch"] = (
            sketch
            if sketch is not None
            else {"status": "skipped", "note": "benchmarks/bench_sketch.py not present"}
        )
    results["loadavg_after"] = os.getloadavg()
    atomic_write_json(args.out, results)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
