"""Benchmark: batched Cayley-Menger volumes and the embedding eigenspectrum.

1. Volumes of 100,000 pentachora sampled from a 5,000 x 512 matrix, computed on the same
   simplices three ways:
   * a per-simplex Python loop that builds the bordered Cayley-Menger matrix and calls
     ``np.linalg.det`` (timed on a subset and extrapolated: the JSON says so);
   * a plain batched NumPy version (bordered matrices for all simplices, one batched det);
   * ``hyperlens.functional.geometry.simplex_volumes`` (float64, sparse pair products).
   Reports the speed-ups, the relative agreement and the resulting CV.
2. Eigenspectrum and participation ratio of SmolLM2-135M's token embedding matrix
   (49,152 x 576), plus its pentachoron CV against a Gaussian null.

Usage::

    PYTHONPATH=src python benchmarks/bench_geometry.py [--loop-subset 3000] \
        [--out benchmarks/results]
    PYTHONPATH=src python benchmarks/bench_geometry.py --kernels avx2 --no-spectrum

``--kernels avx2`` restarts the process with torch, oneDNN, MKL and numba capped to AVX2
(:func:`hyperlens.functional.kernels.emulation_env`) and writes
``bench_geometry_avx2.json``: the compiled kernels as an AVX2-only CPU runs them.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hyperlens.functional.geometry import (
    cayley_menger_volume,
    cv_ci,
    eigenspectrum,
    sample_simplices,
    simplex_volume_cv,
    simplex_volumes,
)
from hyperlens.functional.geometry.simplex import _use_gram
from hyperlens.functional.kernels import (
    ENV as KERNELS_ENV,
    PROFILES,
    cpu_info,
    emulation_env,
    numba_available,
)
from hyperlens.utils import atomic_write_json, cache_dir

SMOLLM2 = "smollm2-135m-instruct-f32"


def loop_volume(points: np.ndarray) -> float:
    """One simplex the slow way: bordered Cayley-Menger matrix built in Python, np.linalg.det."""
    m = len(points)
    cm = np.zeros((m + 1, m + 1))
    cm[0, 1:] = 1.0
    cm[1:, 0] = 1.0
    for i in range(m):
        for j in range(i + 1, m):
            d2 = float(np.sum((points[i] - points[j]) ** 2))
            cm[i + 1, j + 1] = d2
            cm[j + 1, i + 1] = d2
    k = m - 1
    vol_sq = (-1) ** (k + 1) * np.linalg.det(cm) / (2**k * math.factorial(k) ** 2)
    return math.sqrt(vol_sq) if vol_sq > 0 else 0.0


def numpy_batched(X: np.ndarray, idx: np.ndarray, chunk: int = 10_000) -> np.ndarray:
    """Plain batched NumPy: squared distances by broadcasting, bordered matrices, batched det."""
    m, kp1 = idx.shape
    k = kp1 - 1
    out = np.empty(m)
    for s in range(0, m, chunk):
        P = X[idx[s : s + chunk]].astype(np.float64)  # [c, k+1, d]
        sq = np.einsum("cid,cid->ci", P, P)
        gram = np.einsum("cid,cjd->cij", P, P)
        d2 = np.maximum(sq[:, :, None] + sq[:, None, :] - 2 * gram, 0.0)
        cm = np.ones((P.shape[0], kp1 + 1, kp1 + 1))
        cm[:, 0, 0] = 0.0
        cm[:, 1:, 1:] = d2
        vol_sq = (-1) ** (k + 1) * np.linalg.det(cm) / (2**k * math.factorial(k) ** 2)
        out[s : s + chunk] = np.sqrt(np.maximum(vol_sq, 0.0))
    return out


def _best_of(fn, repeats: int) -> tuple[float, object]:
    best, res = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t)
    return best, res


def bench_volumes(n: int, d: int, m: int, loop_subset: int, repeats: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    # an anisotropic cloud (power-law spectrum), like embedding matrices
    scales = (np.arange(1, d + 1) ** -0.5).astype(np.float32)
    X = (rng.standard_normal((n, d)).astype(np.float32) * scales) + 0.1
    idx = sample_simplices(n, 4, m, seed=seed)
    idx_np = idx.numpy()
    Xt = torch.from_numpy(X)

    threads = torch.get_num_threads()
    t_ours_default, vols = _best_of(lambda: simplex_volumes(Xt, idx), repeats)
    torch.set_num_threads(1)
    try:
        t_ours_1, _ = _best_of(lambda: simplex_volumes(Xt, idx), repeats)
    finally:
        torch.set_num_threads(threads)
    t_ours = min(t_ours_default, t_ours_1)
    vols_np = vols.numpy()  # type: ignore[union-attr]
    X64c = torch.from_numpy(X).double()
    X64c -= X64c.mean(0)
    t_gather, vols_g = _best_of(lambda: cayley_menger_volume(X64c[idx]), 1)
    t_np, vols_b = _best_of(lambda: numpy_batched(X, idx_np), 1)

    sub = idx_np[:loop_subset]
    t = time.perf_counter()
    vols_loop = np.array([loop_volume(X[r]) for r in sub])
    t_loop_sub = time.perf_counter() - t
    loop_rate = loop_subset / t_loop_sub
    t_loop = m / loop_rate

    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))

    cv = float(vols_np.std() / vols_np.mean())
    return {
        "matrix": [n, d],
        "simplices": m,
        "k": 4,
        "hyperlens_s": t_ours,
        "hyperlens_rate_per_s": m / t_ours,
        "hyperlens_repeats_best_of": repeats,
        f"hyperlens_s_{threads}_threads": t_ours_default,
        "hyperlens_s_1_thread": t_ours_1,
        "gather_bmm_s": t_gather,
        "numpy_batched_s": t_np,
        "loop_s_extrapolated": t_loop,
        "loop_subset": loop_subset,
        "loop_subset_s": t_loop_sub,
        "loop_rate_per_s": loop_rate,
        "loop_note": f"loop timed on the first {loop_subset} of the same simplices and "
                     f"extrapolated to {m}",
        "speedup_vs_loop": t_loop / t_ours,
        "speedup_vs_numpy_batched": t_np / t_ours,
        "numpy_batched_vs_loop": t_loop / t_np,
        "max_rel_diff_vs_loop": rel(vols_np[:loop_subset], vols_loop),
        "max_rel_diff_vs_numpy_batched": rel(vols_np, vols_b),
        "max_rel_diff_vs_gather_kernel": rel(vols_np, vols_g.numpy()),  # type: ignore[union-attr]
        "cv": cv,
    }


def bench_cv_end_to_end(n: int, d: int, m: int, loop_subset: int, repeats: int, seed: int) -> dict:
    """``simplex_volume_cv`` end to end against the seed's loop (volumes one by one, then CV).

    The cloud is an isotropic Gaussian ``n x d``. Rounds alternate the contenders (ours,
    then the loop on its first ``loop_subset`` simplices, extrapolated to ``m``); best of
    ``repeats`` rounds each. Ours also computes an interval that the loop does not: by
    default (``ci="auto"``) the delta-method interval at this many simplices, timed too with
    the 1,000-resample bootstrap forced (``ci="bootstrap"``), and both intervals are
    recorded side by side.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    Xt = torch.from_numpy(X)
    idx = sample_simplices(n, 4, m, seed=seed).numpy()
    sub = idx[:loop_subset]

    def loop() -> float:
        vols = np.array([loop_volume(X[r]) for r in sub])
        return float(vols.std() / vols.mean())

    best = {"hyperlens_default": float("inf"), "hyperlens_bootstrap_1000": float("inf"),
            "loop_subset": float("inf"), "part_sample_simplices": float("inf"),
            "part_volumes": float("inf"), "part_bootstrap_1000": float("inf")}
    res = simplex_volume_cv(Xt, k=4, n_samples=m, seed=seed)  # warm-up (compiles once)
    all_idx = sample_simplices(n, 4, m, seed=seed)
    vols_all = simplex_volumes(Xt, all_idx)
    for _ in range(repeats):
        # where the time goes: the three parts of simplex_volume_cv, timed alone
        for name, fn in (("part_sample_simplices", lambda: sample_simplices(n, 4, m, seed=seed)),
                         ("part_volumes", lambda: simplex_volumes(Xt, all_idx)),
                         ("part_bootstrap_1000", lambda: cv_ci(vols_all, seed=seed))):
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
        t = time.perf_counter()
        res = simplex_volume_cv(Xt, k=4, n_samples=m, seed=seed)
        best["hyperlens_default"] = min(best["hyperlens_default"], time.perf_counter() - t)
        t = time.perf_counter()
        boot = simplex_volume_cv(Xt, k=4, n_samples=m, seed=seed, ci="bootstrap")
        best["hyperlens_bootstrap_1000"] = min(best["hyperlens_bootstrap_1000"],
                                               time.perf_counter() - t)
        t = time.perf_counter()
        loop_cv = loop()
        best["loop_subset"] = min(best["loop_subset"], time.perf_counter() - t)
    t_loop = best["loop_subset"] * m / loop_subset
    # volumes exact: ours against the loop on the same simplices
    ours = simplex_volumes(Xt, torch.from_numpy(sub)).numpy()
    vols_loop = np.array([loop_volume(X[r]) for r in sub])
    rel = float(np.max(np.abs(ours - vols_loop) / vols_loop))
    return {
        "matrix": [n, d],
        "simplices": m,
        "seconds": {**best, "loop_extrapolated": t_loop},
        "speedup_vs_loop_default": t_loop / best["hyperlens_default"],
        "speedup_vs_loop_bootstrap_1000": t_loop / best["hyperlens_bootstrap_1000"],
        "volume_path": "gram" if _use_gram(n, m, 5)
        else ("compiled edge grams" if numba_available() else "pair products"),
        "max_rel_diff_vs_loop": rel,
        "cv": res.cv.value,
        "cv_ci": [res.cv.lo, res.cv.hi],
        "cv_ci_method": res.cv.method,
        "cv_ci_bootstrap_1000": [boot.cv.lo, boot.cv.hi],
        "loop_cv_on_subset": loop_cv,
        "targets": {"speedup>=100": t_loop / best["hyperlens_default"] >= 100,
                    "volumes_rel_1e-6": rel <= 1e-6},
        "note": f"loop timed on {loop_subset} simplices and extrapolated to {m}; rounds "
        "interleaved, best of each; part_* time the sampling, the volumes and the "
        "1,000-resample bootstrap alone (simplex_volume_cv also validates X and sums)",
    }


def load_smollm2_embeddings() -> torch.Tensor | None:
    path = cache_dir("models", SMOLLM2, create=False) / "model.safetensors"
    if not path.exists():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        key = next(k for k in f.keys() if "embed_tokens" in k)
        return f.get_tensor(key)


def bench_spectrum(repeats: int, seed: int) -> dict:
    E = load_smollm2_embeddings()
    if E is None:
        return {"skipped": f"{SMOLLM2} not found under {cache_dir('models', create=False)}"}
    E = E.float().contiguous()
    t_spec, spec = _best_of(lambda: eigenspectrum(E), repeats)
    t_pr_only = t_spec  # the participation ratio is a property of the spectrum (no extra pass)
    spec_d = spec.as_dict()  # type: ignore[union-attr]
    # float64 NumPy reference for the spectrum: covariance then eigvalsh (as in the notebook)
    t = time.perf_counter()
    En = E.numpy().astype(np.float64)
    Ec = En - En.mean(0)
    ev_ref = np.linalg.eigvalsh(Ec.T @ Ec / (En.shape[0] - 1))[::-1]
    t_np = time.perf_counter() - t
    ev = spec.eigenvalues.numpy()  # type: ignore[union-attr]
    t = time.perf_counter()
    cv = simplex_volume_cv(E, k=4, n_samples=5000, seed=seed, null="gaussian", n_boot=1000)
    t_cv = time.perf_counter() - t
    return {
        "shape": list(E.shape),
        "eigenspectrum_and_pr_s": t_pr_only,
        "numpy_cov_eigvalsh_s": t_np,
        "max_rel_diff_top100_vs_numpy": float(
            np.max(np.abs(ev[:100] - ev_ref[:100]) / ev_ref[:100])
        ),
        "participation_ratio": spec_d["participation_ratio"],
        "participation_ratio_over_dim": spec_d["participation_ratio_over_dim"],
        "effective_rank": spec_d["effective_rank"],
        "dims_for": spec_d["dims_for"],
        "top_eigenvalue_share": float(ev[0] / ev.sum()),
        "pentachoron_cv": cv.as_dict(),
        "pentachoron_cv_s": t_cv,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--simplices", type=int, default=100_000)
    ap.add_argument("--loop-subset", type=int, default=3000)
    ap.add_argument(
        "--repeats", type=int, default=3, help="best of this many runs for the fast kernels"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument(
        "--kernels",
        choices=("native", *PROFILES),
        default="native",
        help="run as that CPU: the process restarts with torch/oneDNN/MKL/numba capped to "
        "the profile's instruction set; writes bench_geometry_PROFILE.json",
    )
    ap.add_argument("--no-spectrum", action="store_true", help="skip the SmolLM2 section")
    args = ap.parse_args()
    if args.kernels != "native" and os.environ.get(KERNELS_ENV) != args.kernels:
        env = {**os.environ, **emulation_env(args.kernels)}
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]],
                  env)

    info = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "load_average_at_start": list(os.getloadavg()),
        "cpu": cpu_info(),
    }
    res = {
        "environment": info,
        "volumes": bench_volumes(
            args.n, args.d, args.simplices, args.loop_subset, args.repeats, args.seed
        ),
        "cv_end_to_end": bench_cv_end_to_end(
            args.n, args.d, args.simplices, args.loop_subset, args.repeats, args.seed
        ),
        "smollm2_spectrum": {"skipped": "--no-spectrum"} if args.no_spectrum
        else bench_spectrum(args.repeats, args.seed),
    }
    res["environment"]["kernels_profile"] = args.kernels
    res["environment"]["load_average_at_end"] = list(os.getloadavg())
    name = "bench_geometry.json" if args.kernels == "native" else \
        f"bench_geometry_{args.kernels}.json"
    path = atomic_write_json(args.out / name, res)
    v = res["volumes"]
    print(
        f"volumes: hyperlens {v['hyperlens_s']:.3f} s | numpy batched {v['numpy_batched_s']:.2f} s "
        "| "
        f"loop {v['loop_s_extrapolated']:.1f} s (extrapolated from {v['loop_subset']}) -> "
        f"{v['speedup_vs_loop']:.0f}x loop, {v['speedup_vs_numpy_batched']:.1f}x numpy; "
        f"max rel diff {v['max_rel_diff_vs_loop']:.1e} (loop) "
        f"{v['max_rel_diff_vs_numpy_batched']:.1e} (numpy)"
    )
    e = res["cv_end_to_end"]
    print(f"simplex_volume_cv end to end: {e['seconds']['hyperlens_default']:.3f} s "
          f"({e['cv_ci_method']}; bootstrap forced: "
          f"{e['seconds']['hyperlens_bootstrap_1000']:.3f} s) vs loop "
          f"{e['seconds']['loop_extrapolated']:.1f} s -> {e['speedup_vs_loop_default']:.0f}x"
          f" ({e['speedup_vs_loop_bootstrap_1000']:.0f}x); CI {e['cv_ci']} vs bootstrap "
          f"{e['cv_ci_bootstrap_1000']}")
    s = res["smollm2_spectrum"]
    if "skipped" not in s:
        print(
            f"SmolLM2 {s['shape']}: eigenspectrum + PR {s['eigenspectrum_and_pr_s']:.2f} s, "
            f"PR {s['participation_ratio']:.1f} ({s['participation_ratio_over_dim']:.3f} of d), "
            f"CV {s['pentachoron_cv']['cv']['value']:.3f} vs null "
            f"{s['pentachoron_cv']['null_cv']['value']:.3f}"
        )
    else:
        print(s["skipped"])
    print(path)


if __name__ == "__main__":
    main()
