"""Side-by-side speed of the sketches in hyperlens.functional.sketch.

Three comparisons, all run in this process on the same data:

1. SRHT 16,384 -> 4,096 on 4,096 float32 vectors against the dense Gaussian projection
   (``x @ G``), plus the FWHT alone with the radix-2 butterfly and the default (radix 64)
   stages, at that size and on a few rows (the default at every size).
2. Block SRHT on a size that is not a power of two (20,000 -> 4,096) against SRHT, which
   pads to 32,768, and against the dense Gaussian projection.
3. CountSketch of sparse 65,536-d vectors (COO and CSR input, dense and sparse output),
   reported as vectors/s and non-zeros/s, next to ``torch.sparse.mm`` with the same
   sketch written as a sparse matrix.
4. Streaming PCA (float64 accumulation over batches, randomized top-256 solve) on 4,096-d
   sketched vectors, the last stage of a CountSketch -> block SRHT -> PCA pipeline.

Each timing is the best of ``repeats`` runs (wall clock, ``time.perf_counter``); drawing the
random operators is timed separately. Norm distortion (mean and max of
``| ||Sx||^2 / ||x||^2 - 1 |``) is reported so speed is not bought with accuracy.

Usage: ``python benchmarks/bench_sketch.py [--quick] [--device cpu|cuda]``; writes
``benchmarks/results/bench_sketch.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hyperlens.functional.kernels import cpu_info
from hyperlens.functional.sketch import SRHT, BlockSRHT, CountSketch, GaussianSketch, fwht
from hyperlens.hdc.pca import StreamingPCA
from hyperlens.utils import atomic_write_json, resolve_device

__all__ = ["run"]

RESULTS = Path(__file__).resolve().parent / "results" / "bench_sketch.json"


def _timed(fn: Callable[[], Any], repeats: int, device: torch.device) -> tuple[float, Any]:
    best = math.inf
    out = None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def _distortion(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    ratio = (y.double() ** 2).sum(dim=1) / (x.double() ** 2).sum(dim=1)
    err = (ratio - 1.0).abs()
    return {"mean_abs_norm_error": float(err.mean()), "max_abs_norm_error": float(err.max())}


def _bench_srht(n: int, d_in: int, d_out: int, repeats: int, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d_in, generator=gen).to(device)
    t_draw_g, gauss = _timed(lambda: GaussianSketch.draw(d_in, d_out, seed=1, device=device), 1,
                             device)
    t_draw_s, op = _timed(lambda: SRHT.draw(d_in, d_out, seed=1, device=device), 1, device)
    t_gauss, y_gauss = _timed(lambda g=gauss: g(x), repeats, device)
    t_srht, y_srht = _timed(lambda: op(x), repeats, device)
    t_fwht_default, _ = _timed(lambda: fwht(x), repeats, device)
    t_fwht2, _ = _timed(lambda: fwht(x, radix=2), 1, device)
    single: dict[str, float] = {}
    if device.type == "cpu":  # one thread: less sensitive to other jobs on a shared machine
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            single["gaussian_apply_s"], _ = _timed(lambda g=gauss: g(x), 1, device)
            single["srht_apply_s"], _ = _timed(lambda: op(x), 1, device)
            single["speedup_srht_vs_gaussian"] = (
                single["gaussian_apply_s"] / single["srht_apply_s"]
            )
        finally:
            torch.set_num_threads(threads)
    del gauss
    return {
        "shape": {"n": n, "d_in": d_in, "d_out": d_out, "dtype": "float32"},
        "gaussian_apply_s": t_gauss,
        "gaussian_draw_s": t_draw_g,
        "srht_apply_s": t_srht,
        "srht_draw_s": t_draw_s,
        "fwht_default_radix_s": t_fwht_default,
        "fwht_radix2_s": t_fwht2,
        "speedup_srht_vs_gaussian": t_gauss / t_srht,
        "speedup_default_radix_vs_radix2": t_fwht2 / t_fwht_default,
        "target_speedup": 5.0,
        "target_met": t_gauss / t_srht >= 5.0,
        "single_thread": single,
        "gaussian_distortion": _distortion(x, y_gauss),
        "srht_distortion": _distortion(x, y_srht),
    }


def _bench_fwht_small(device: torch.device, calls: int = 200) -> dict:
    """The FWHT of a few rows (a HyperField student's features at batch 1 and 16): the
    radix-2 butterfly against the default radix-64 stages, per call (best of 3 runs of
    ``calls`` calls), and the largest difference between the two (float rounding)."""
    gen = torch.Generator().manual_seed(2)
    out: dict[str, Any] = {}
    for d in (1024, 4096, 16_384):
        for n in (1, 16):
            x = torch.randn(n, d, generator=gen).to(device)

            def many(radix: int | None, x: torch.Tensor = x) -> torch.Tensor:
                for _ in range(calls):
                    y = fwht(x, radix=radix)
                return y

            t2, y2 = _timed(lambda: many(2), 3, device)
            t64, y64 = _timed(lambda: many(None), 3, device)
            out[f"{n}x{d}"] = {"radix2_ms": 1e3 * t2 / calls, "default_ms": 1e3 * t64 / calls,
                               "speedup_default_vs_radix2": t2 / t64,
                               "max_abs_diff": float((y2 - y64).abs().max())}
    return out


def _bench_block(n: int, d_in: int, d_out: int, repeats: int, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, d_in, generator=gen).to(device)
    block = BlockSRHT.draw(d_in, d_out, seed=2, device=device)
    padded = SRHT.draw(d_in, d_out, seed=2, device=device)
    gauss = GaussianSketch.draw(d_in, d_out, seed=2, device=device)
    t_block, y_block = _timed(lambda: block(x), repeats, device)
    t_srht, y_srht = _timed(lambda: padded(x), repeats, device)
    t_gauss, y_gauss = _timed(lambda g=gauss: g(x), repeats, device)
    del gauss
    return {
        "shape": {"n": n, "d_in": d_in, "d_out": d_out, "dtype": "float32"},
        "block_size": block.block_size,
        "n_blocks": block.n_blocks,
        "block_srht_padding": block.padding,
        "srht_padding": padded.d_padded - d_in,
        "block_srht_apply_s": t_block,
        "srht_padded_apply_s": t_srht,
        "gaussian_apply_s": t_gauss,
        "speedup_block_vs_padded_srht": t_srht / t_block,
        "speedup_block_vs_gaussian": t_gauss / t_block,
        "block_srht_distortion": _distortion(x, y_block),
        "srht_distortion": _distortion(x, y_srht),
        "gaussian_distortion": _distortion(x, y_gauss),
    }


def _bench_countsketch(
    n: int, d_in: int, d_out: int, nnz_per_row: int, n_batches: int, repeats: int,
    device: torch.device,
) -> dict:
    gen = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(n_batches):
        rows = torch.arange(n).repeat_interleave(nnz_per_row)
        cols = torch.randint(0, d_in, (n * nnz_per_row,), generator=gen)
        vals = torch.randn(n * nnz_per_row, generator=gen)
        coo = torch.sparse_coo_tensor(
            torch.stack((rows, cols)), vals, (n, d_in), check_invariants=False
        ).coalesce()
        batches.append(coo.to(device))
    csr = [b.to_sparse_csr() for b in batches]
    nnz = sum(int(b._nnz()) for b in batches)
    vectors = n * n_batches
    op = CountSketch.draw(d_in, d_out, seed=4, device=device)
    # the same sketch as a sparse [d_in, d_out] matrix, for torch.sparse.mm
    s_mat = torch.sparse_coo_tensor(
        torch.stack((torch.arange(d_in, device=device), op.buckets)), op.signs, (d_in, d_out),
        check_invariants=False,
    ).to_sparse_csr()

    def run_all(fn: Callable[[torch.Tensor], torch.Tensor], inputs: list) -> None:
        for b in inputs:
            fn(b)

    t_coo, _ = _timed(lambda: run_all(op.apply, batches), repeats, device)
    t_csr, _ = _timed(lambda: run_all(op.apply, csr), repeats, device)
    t_sparse_out, _ = _timed(
        lambda: run_all(lambda b: op.apply(b, sparse_output=True), batches), repeats, device
    )
    t_spmm, _ = _timed(
        lambda: run_all(lambda b: torch.sparse.mm(b, s_mat).to_dense(), csr), repeats, device
    )
    check = (torch.sparse.mm(csr[0], s_mat).to_dense() - op.apply(batches[0])).abs().max()

    def rate(t: float) -> dict[str, float]:
        return {"seconds": t, "vectors_per_s": vectors / t, "nnz_per_s": nnz / t}

    return {
        "shape": {"vectors": vectors, "batch": n, "d_in": d_in, "d_out": d_out,
                  "nnz_per_row": nnz_per_row, "nnz": nnz, "dtype": "float32"},
        "coo_dense_output": rate(t_coo),
        "csr_dense_output": rate(t_csr),
        "coo_sparse_output": rate(t_sparse_out),
        "torch_sparse_mm_csr": rate(t_spmm),
        "speedup_coo_vs_sparse_mm": t_spmm / t_coo,
        "max_abs_diff_vs_sparse_mm": float(check),
    }


def _bench_pca(n: int, d: int, k: int, n_batches: int, device: torch.device) -> dict:
    """Streaming PCA on sketched data: float64 accumulation, then the top-k solve."""
    gen = torch.Generator().manual_seed(5)
    x = SRHT.draw(4 * d, d, seed=5, device=device)(
        (torch.randn(n, 64, generator=gen) @ torch.randn(64, 4 * d, generator=gen)).to(device)
        + 0.1 * torch.randn(n, 4 * d, generator=gen).to(device)
    )
    pca = StreamingPCA(n_components=k, solver="randomized", seed=0)
    t_acc, _ = _timed(lambda: [pca.partial_fit(b) for b in x.chunk(n_batches)], 1, device)
    t_solve, _ = _timed(lambda: pca.components_, 1, device)
    t_tr, z = _timed(lambda: pca.transform(x), 1, device)
    return {
        "shape": {"n": n, "d": d, "n_components": k, "batches": n_batches,
                  "signal": "rank-64 data plus noise, SRHT 4d -> d"},
        "accumulate_s": t_acc,
        "randomized_solve_s": t_solve,
        "transform_s": t_tr,
        "rows_per_s_accumulate": n / t_acc,
        "explained_variance_ratio_top64": float(pca.explained_variance_ratio_[:64].sum()),
        "output_shape": list(z.shape),
    }


def run(quick: bool = False, device: str = "cpu", repeats: int = 2) -> dict[str, Any]:
    """Run every comparison and return the figures (``quick`` shrinks every size 8x)."""
    dev = resolve_device(device)
    scale = 8 if quick else 1
    torch.manual_seed(0)
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "benchmark": "bench_sketch",
        "quick": quick,
        "device": str(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_info": cpu_info(),
        "repeats": repeats,
        "timing": "best of `repeats` wall-clock runs",
        "load_average_at_start": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
    }
    out["srht_vs_gaussian"] = _bench_srht(4096 // scale, 16_384, 4_096, repeats, dev)
    out["fwht_small"] = _bench_fwht_small(dev)
    out["block_srht_non_power_of_two"] = _bench_block(4096 // scale, 20_000, 4_096, repeats, dev)
    out["countsketch_sparse"] = _bench_countsketch(
        4096 // scale, 65_536, 16_384, 256, 8, repeats, dev
    )
    out["streaming_pca"] = _bench_pca(4096 // scale, 4096, 256, 8, dev)
    out["load_average_at_end"] = list(os.getloadavg())
    out["total_s"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x smaller sizes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(quick=args.quick, device=args.device, repeats=args.repeats)
    atomic_write_json(args.out, result)
    s = result["srht_vs_gaussian"]
    b = result["block_srht_non_power_of_two"]
    c = result["countsketch_sparse"]
    print(f"SRHT {s['srht_apply_s']:.3f} s vs Gaussian {s['gaussian_apply_s']:.3f} s "
          f"-> {s['speedup_srht_vs_gaussian']:.1f}x (target 5x)")
    if s["single_thread"]:
        print(f"  one thread: {s['single_thread']['speedup_srht_vs_gaussian']:.1f}x")
    print(f"FWHT default radix {s['fwht_default_radix_s']:.3f} s vs radix-2 "
          f"{s['fwht_radix2_s']:.3f} s")
    for shape, r in result["fwht_small"].items():
        print(f"FWHT {shape}: default {r['default_ms']:.3f} ms vs radix-2 {r['radix2_ms']:.3f} ms "
              f"-> {r['speedup_default_vs_radix2']:.1f}x")
    print(f"block SRHT {b['block_srht_apply_s']:.3f} s vs padded SRHT "
          f"{b['srht_padded_apply_s']:.3f} s vs Gaussian {b['gaussian_apply_s']:.3f} s")
    print(f"CountSketch COO: {c['coo_dense_output']['vectors_per_s']:.0f} vectors/s, "
          f"{c['coo_dense_output']['nnz_per_s']:.3g} nnz/s")
    pc = result["streaming_pca"]
    print(f"StreamingPCA {pc['shape']['n']} x {pc['shape']['d']}: accumulate "
          f"{pc['accumulate_s']:.2f} s, top-{pc['shape']['n_components']} solve "
          f"{pc['randomized_solve_s']:.2f} s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
