"""Compiled kernels (numba): row selection, two-bit unpacking, bootstrap CVs, simplex Grams.

Selection: the k-th smallest ``|x|`` of every row, and ternary codes.

This is the ``"sampled"`` implementation of the ``"select"`` kernel
(:mod:`hyperlens.functional.kernels`). Exact selection over all magnitudes
(``np.partition``, ``torch.topk``) reorders every row several times, and elementwise
torch passes over a ``[n, d]`` matrix each stream it through memory again. Here each row
is handled once while it sits in cache:

1. a bracket ``(lo, hi]`` for the k-th magnitude from the order statistics of a fixed
   sample of ``S`` positions of the row (binomial ranks, +-5 standard deviations);
2. one exact pass counts ``|x| <= lo`` and collects the magnitudes inside the bracket;
3. if the k-th value is inside (``c_lo < k <= c_lo + m``), it is the ``(k - c_lo)``-th
   smallest collected value (a small ``np.partition``); otherwise (a miss, for rows whose
   magnitudes are not spread like the sample, e.g. sorted rows) the whole row is selected
   exactly. Either way the threshold is exact, so codes equal those of every other path;
4. optionally the codes ``sign(x) * (|x| > t)`` are written in the same visit.

numba is the compiler (a well-kept JIT; torch offers no per-row compiled loop on the CPU).
Functions compile on first use and are cached on disk by numba.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "SAMPLE",
    "bootstrap_cv",
    "edge_volumes",
    "kth_smallest_abs_rows",
    "unpack_twobit_rows",
]

SAMPLE = 512  # sampled positions per row
_Z = 5.0  # bracket half-width in binomial standard deviations
_ROWS_PER_TASK = 16
_BLOCK = 64  # positions tested at once before collecting bracket members

_KERNEL: Any = None


def _compile() -> Any:
    import numba

    @numba.njit(cache=True, nogil=True)
    def quickselect(a, m, r):  # pragma: no cover - jit
        """The r-th smallest (0-based) of a[:m], reordering a[:m] in place."""
        lo, hi = 0, m - 1
        while lo < hi:
            mid = (lo + hi) // 2
            # median of three as the pivot
            x0, x1, x2 = a[lo], a[mid], a[hi]
            if x0 > x1:
                x0, x1 = x1, x0
            if x1 > x2:
                x1 = max(x2, x0)
            pivot = x1
            i, j = lo, hi
            while i <= j:
                while a[i] < pivot:
                    i += 1
                while a[j] > pivot:
                    j -= 1
                if i <= j:
                    a[i], a[j] = a[j], a[i]
                    i += 1
                    j -= 1
            if r <= j:
                hi = j
            elif r >= i:
                lo = i
            else:
                return a[r]
        return a[r]

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def count_le(row, t):  # pragma: no cover - jit
        """#(|row| <= t); float32 counting is exact below 2**24 and vectorises."""
        c = np.float32(0.0)
        for j in range(row.shape[0]):
            c += np.float32(1.0) if abs(row[j]) <= t else np.float32(0.0)
        return int(c)

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def any_between(row, j0, j1, lo, hi):  # pragma: no cover - jit
        """Whether some lo < |row[j]| <= hi for j in [j0, j1) (a vectorised test)."""
        h = np.float32(0.0)
        for j in range(j0, j1):
            v = abs(row[j])
            h += np.float32(1.0) if (v > lo) & (v <= hi) else np.float32(0.0)
        return h > 0

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(x, k, cuts, thr, out, write_codes):  # pragma: no cover - jit
        n, d = x.shape
        nc = cuts.shape[1]
        n_tasks = (n + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK
        for task in numba.prange(n_tasks):
            buf = np.empty(d, dtype=x.dtype)
            r0 = task * _ROWS_PER_TASK
            r1 = min(n, r0 + _ROWS_PER_TASK)
            for i in range(r0, r1):
                row = x[i]
                # binary search over the sampled cuts with exact counts: afterwards
                # count(|x| <= cuts[lo]) = c_lo < k <= count(|x| <= cuts[hi]), where
                # lo = -1 stands for -inf and hi = nc for +inf
                lo, hi, c_lo = -1, nc, 0
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    cnt = count_le(row, cuts[i, mid])
                    if cnt >= k:
                        hi = mid
                    else:
                        lo, c_lo = mid, cnt
                t_lo = cuts[i, lo] if lo >= 0 else -1.0
                t_hi = cuts[i, hi] if hi < nc else np.inf
                m = 0
                for j0 in range(0, d, _BLOCK):
                    j1 = min(d, j0 + _BLOCK)
                    if any_between(row, j0, j1, t_lo, t_hi):
                        for j in range(j0, j1):
                            v = abs(row[j])
                            if (v > t_lo) & (v <= t_hi):
                                buf[m] = v
                                m += 1
                t = quickselect(buf, m, k - c_lo - 1)
                thr[i] = t
                if write_codes:
                    o = out[i]
                    for j in range(d):
                        v = row[j]
                        o[j] = np.int8(int(v > t) - int(v < -t))

    return kernel


def _kernel() -> Any:
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _compile()
    return _KERNEL


_POS_CACHE: dict[int, np.ndarray] = {}


def _sample_positions(d: int) -> np.ndarray:
    pos = _POS_CACHE.get(d)
    if pos is None:
        s = min(SAMPLE, d)
        pos = np.sort(np.random.default_rng(0x5A3).choice(d, size=s, replace=False)).astype(
            np.int64
        )
        _POS_CACHE[d] = pos
    return pos


def _sort_rows(a: np.ndarray) -> None:
    """In-place row sort (NumPy's vectorised sort), two row halves in parallel threads."""
    import torch

    workers = max(1, min(torch.get_num_threads(), a.shape[0] // 256))
    if workers == 1:
        a.sort(axis=1)
        return
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, a.shape[0], workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: a[bounds[i] : bounds[i + 1]].sort(axis=1), range(workers)))


def _cuts(x: np.ndarray, k: int) -> np.ndarray:
    """Per-row thresholds bracketing the k-th magnitude: order statistics of a sample.

    Shapes:
        x: ``[n, d]`` -> ``[n, _CUTS]`` ascending per row
    """
    d = x.shape[1]
    pos = _sample_positions(d)
    s = pos.shape[0]
    samp = np.abs(np.take(x, pos, axis=1))
    _sort_rows(samp)
    p = (k - 0.5) / d
    half = _Z * math.sqrt(max(s * p * (1.0 - p), 1.0))
    r_lo = max(0, math.floor(s * p - half))
    r_hi = min(s - 1, math.ceil(s * p + half))
    return np.ascontiguousarray(samp[:, r_lo : r_hi + 1])


def kth_smallest_abs_rows(
    x: np.ndarray, k: int, *, codes: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``k``-th smallest ``|x|`` of every row (1-based) and, with ``codes``, the codes.

    Exact for finite input; ``x`` is read, never modified.

    Shapes:
        x: ``[n, d]`` float32/float64 C-contiguous -> (``[n]`` same dtype,
        ``[n, d]`` int8 or None)
    """
    n, d = x.shape
    thr = np.empty(n, dtype=x.dtype)
    out = np.empty((n, d) if codes else (0, 0), dtype=np.int8)
    if n:
        _kernel()(x, int(k), _cuts(x, k), thr, out, bool(codes))
    return thr, (out if codes else None)


# --------------------------------------------------------------------------- unpacking
_UNPACK: dict[str, Any] = {}


def _unpack_kernel(kind: str) -> Any:
    fn = _UNPACK.get(kind)
    if fn is not None:
        return fn
    import numba

    if kind == "int8":

        @numba.njit(parallel=True, cache=True, nogil=True)
        def unpack_i8(packed, nb, lut, out64):  # pragma: no cover - jit
            # out64[i, b]: the 8 trits of byte b as int8 lanes, from a 256-entry table of
            # 0/1 lanes: p + 255 q per lane (no carries: p and q are disjoint bit sets)
            for i in numba.prange(packed.shape[0]):
                for b in range(nb):
                    p = packed[i, b]
                    q = packed[i, nb + b]
                    out64[i, b] = lut[p & ~q] + np.int64(255) * lut[q & ~p]

        fn = unpack_i8
    else:

        @numba.njit(parallel=True, cache=True, nogil=True)
        def unpack_f(packed, nb, d, lut, out):  # pragma: no cover - jit
            # lut[v, j] = bit j of v as a float; a trit is pos bit - neg bit
            full = d // 8
            for i in numba.prange(packed.shape[0]):
                row = out[i]
                for b in range(full):  # whole bytes: a fixed 8-lane subtraction
                    p = packed[i, b]
                    q = packed[i, nb + b]
                    base = b * 8
                    for j in range(8):
                        row[base + j] = lut[p, j] - lut[q, j]
                for b in range(full, nb):  # the padded last byte
                    p = packed[i, b]
                    q = packed[i, nb + b]
                    base = b * 8
                    for j in range(d - base):
                        row[base + j] = lut[p, j] - lut[q, j]

        fn = unpack_f
    _UNPACK[kind] = fn
    return fn


_LANE_LUT: dict[str, np.ndarray] = {}


def _lane_lut(kind: str) -> np.ndarray:
    lut = _LANE_LUT.get(kind)
    if lut is None:
        bits = (np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1  # [256, 8]
        if kind == "int8":
            lut = np.ascontiguousarray(bits.astype(np.int8)).view(np.int64).reshape(256)
        else:
            lut = np.ascontiguousarray(bits.astype(kind))
        _LANE_LUT[kind] = lut
    return lut


def unpack_twobit_rows(packed: np.ndarray, d: int, dtype: str = "int8") -> np.ndarray:
    """Two-bit packed codes to dense codes in one compiled pass (``dtype`` int8/float32).

    Same bits as :func:`hyperlens.functional.hdc.unpack_twobit`: a trit is the positive
    plane's bit minus the negative plane's bit.

    Shapes:
        packed: ``[n, 2 * ceil(d / 8)]`` uint8 C-contiguous -> ``[n, d]``
    """
    n = packed.shape[0]
    nb = packed.shape[1] // 2
    if dtype == "int8":
        out64 = np.empty((n, nb), dtype=np.int64)
        if n:
            _unpack_kernel("int8")(packed, nb, _lane_lut("int8"), out64)
        out = out64.view(np.int8).reshape(n, nb * 8)
        return out if nb * 8 == d else out[:, :d]
    out = np.empty((n, d), dtype=dtype)
    if n:
        _unpack_kernel("float")(packed, nb, d, _lane_lut(dtype), out)
    return out


# --------------------------------------------------------------------------- bootstrap
_BOOT: Any = None


def _boot_kernel() -> Any:
    global _BOOT
    if _BOOT is not None:
        return _BOOT
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True)
    def boot_cv(u, center, seed, out):  # pragma: no cover - jit
        # replicate b draws m indices from its own splitmix64 stream (seed, b), so the
        # result does not depend on the number of threads
        m = u.shape[0]
        scale = m * 2.0**-53
        golden = np.uint64(0x9E3779B97F4A7C15)
        c1 = np.uint64(0xBF58476D1CE4E5B9)
        c2 = np.uint64(0x94D049BB133111EB)
        for b in numba.prange(out.shape[0]):
            state = np.uint64(seed) ^ (np.uint64(b + 1) * c2)
            s1 = 0.0
            s2 = 0.0
            for _ in range(m):
                state += golden
                z = state
                z = (z ^ (z >> np.uint64(30))) * c1
                z = (z ^ (z >> np.uint64(27))) * c2
                z = z ^ (z >> np.uint64(31))
                j = int(float(z >> np.uint64(11)) * scale)
                w = u[j]
                s1 += w
                s2 += w * w
            mean = s1 / m
            var = max(s2 / m - mean * mean, 0.0)
            out[b] = np.sqrt(var) / (center + mean)

    _BOOT = boot_cv
    return _BOOT


def bootstrap_cv(v: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """CV (population std / mean) of ``n_boot`` resamples with replacement of ``v``.

    Each resample's sums are accumulated while its indices are drawn (a splitmix64 stream
    per replicate), so no ``[n_boot, m]`` index matrix is ever built; values are shifted by
    their mean first, which keeps the one-pass variance accurate to about 1e-13.

    Shapes:
        v: ``[m]`` float64 -> ``[n_boot]`` float64
    """
    v = np.ascontiguousarray(v, dtype=np.float64)
    center = float(v.mean())
    out = np.empty(n_boot, dtype=np.float64)
    _boot_kernel()(v - center, center, np.uint64(seed & 0xFFFFFFFFFFFFFFFF), out)
    return out


# --------------------------------------------------------------------------- simplex Gram
_EDGE: Any = None


def _edge_kernel() -> Any:
    global _EDGE
    if _EDGE is not None:
        return _EDGE
    import numba

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def dot(a, b):  # pragma: no cover - jit
        acc = 0.0
        for t in range(a.shape[0]):
            acc += a[t] * b[t]
        return acc

    @numba.njit(cache=True, nogil=True)
    def det_lu(A, k):  # pragma: no cover - jit
        """det of a k x k matrix by LU with partial pivoting (A is overwritten)."""
        det = 1.0
        for c in range(k):
            p = c
            for r in range(c + 1, k):
                if abs(A[r, c]) > abs(A[p, c]):
                    p = r
            if A[p, c] == 0.0:
                return 0.0
            if p != c:
                for t in range(k):
                    A[c, t], A[p, t] = A[p, t], A[c, t]
                det = -det
            det *= A[c, c]
            for r in range(c + 1, k):
                f = A[r, c] / A[c, c]
                for t in range(c, k):
                    A[r, t] -= f * A[c, t]
        return det

    @numba.njit(parallel=True, cache=True, nogil=True)
    def edge_volumes(X, idx, rtol, inv_fact2, out):  # pragma: no cover - jit
        m, kp1 = idx.shape
        k = kp1 - 1
        d = X.shape[1]
        chunk = 256
        for c in numba.prange((m + chunk - 1) // chunk):
            E = np.empty((k, d), dtype=np.float64)
            G = np.empty((k, k), dtype=np.float64)
            for s in range(c * chunk, min(m, (c + 1) * chunk)):
                x0 = X[idx[s, 0]]
                for i in range(k):
                    xi = X[idx[s, i + 1]]
                    for t in range(d):
                        E[i, t] = xi[t] - x0[t]
                bound = 1.0
                for i in range(k):
                    for j in range(i, k):
                        g = dot(E[i], E[j])
                        G[i, j] = g
                        G[j, i] = g
                    bound *= G[i, i]
                det = det_lu(G, k)
                # flat to round-off (Hadamard: det <= prod diag) -> exactly 0
                if det <= rtol * bound:
                    out[s] = 0.0
                else:
                    out[s] = np.sqrt(det * inv_fact2)

    _EDGE = edge_volumes
    return _EDGE


def edge_volumes(X: np.ndarray, idx: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """Volumes of simplices from their edge Gram matrices, one compiled pass per simplex.

    Each simplex reads its ``k + 1`` rows in place (no gathered copy, no pair list), forms
    the edges ``x_i - x_0`` in float64, their Gram ``G`` and ``det G`` by LU with partial
    pivoting; ``V = sqrt(det G) / k!``, and exactly 0 when ``det G <= rtol * prod(diag G)``
    (the rule of :func:`hyperlens.functional.geometry.cayley_menger_volume`).

    Shapes:
        X: ``[n, d]`` float64 C-contiguous; idx: ``[m, k+1]`` int64 -> ``[m]`` float64
    """
    m, kp1 = idx.shape
    k = kp1 - 1
    out = np.empty(m, dtype=np.float64)
    if m:
        inv = 1.0 / float(math.factorial(k)) ** 2
        _edge_kernel()(X, np.ascontiguousarray(idx, dtype=np.int64), float(rtol), inv, out)
    return out
