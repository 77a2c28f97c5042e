"""Compiled kernels (numba): row selection, two-bit unpacking, bootstrap CVs, simplex Grams.

Selection: the k-th smallest ``|x|`` of every row, and ternary codes.

This is the ``"sampled"`` implementation of the ``"select"`` kernel
(:mod:`hyperlens.functional.kernels`). Exact selection over all magnitudes
(``np.partition``, ``torch.topk``) reorders every row several times, and elementwise
torch passes over a ``[n, d]`` matrix each stream it through memory again. Here each row
is handled once while it sits in cache:

1. cuts for the k-th magnitude: the order statistics of a fixed sample of ``S``
   positions of the row (binomial ranks, +-5 standard deviations), gathered, and sorted
   by NumPy's vectorised sort, row blocks in parallel threads;
2. a binary search over the cuts with exact, vectorised counts of ``|x| <= cut`` (about
   7 passes over the row while it sits in L1) finds adjacent cuts ``lo < hi`` with
   ``count(lo) = c_lo < k <= count(hi)`` (no cut below or above stands for -1 / +inf, so
   rows unlike their sample, e.g. sorted rows, are still exact);
3. one branch-free pass collects the few magnitudes in ``(lo, hi]``; the threshold is the
   ``(k - c_lo)``-th smallest of them (a small quickselect). It is exact, so codes equal
   those of every other path;
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
    "binomial_draws",
    "bootstrap_cv",
    "edge_volumes",
    "kth_smallest_abs_rows",
    "unpack_twobit_rows",
]

SAMPLE = 512  # sampled positions per row
_Z = 5.0  # bracket half-width in binomial standard deviations
_ROWS_PER_TASK = 16

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

    @numba.njit(cache=True, nogil=True)
    def collect(row, lo, hi, buf):  # pragma: no cover - jit
        """Write the magnitudes in (lo, hi] to buf[:m], branch-free; returns m."""
        m = 0
        for j in range(row.shape[0]):
            v = abs(row[j])
            buf[m] = v
            m += (v > lo) & (v <= hi)
        return m

    @numba.njit(cache=True, nogil=True)
    def write_codes_row(row, t, o):  # pragma: no cover - jit
        for j in range(row.shape[0]):
            v = row[j]
            o[j] = np.int8(v > t) - np.int8(v < -t)

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(x, k, cuts, ends, thr, out, write_codes):  # pragma: no cover - jit
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
                # the bracket's ends in the row's dtype (ends = [-1, +inf]: no cut)
                t_lo = cuts[i, lo] if lo >= 0 else ends[0]
                t_hi = cuts[i, hi] if hi < nc else ends[1]
                m = collect(row, t_lo, t_hi, buf)
                t = quickselect(buf, m, k - c_lo - 1)
                thr[i] = t
                if write_codes:
                    write_codes_row(row, t, out[i])

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


def _sorted_samples(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``sort(|x[:, pos]|)`` per row (NumPy's vectorised sort), row blocks in parallel threads.

    Shapes:
        x: ``[n, d]``; pos: ``[s]`` -> ``[n, s]``
    """
    import torch

    samp = np.empty((x.shape[0], pos.shape[0]), dtype=x.dtype)

    def one(lo: int, hi: int) -> None:
        block = samp[lo:hi]
        np.take(x[lo:hi], pos, axis=1, out=block)
        np.abs(block, out=block)
        block.sort(axis=1)

    workers = max(1, min(torch.get_num_threads(), x.shape[0] // 256))
    if workers == 1:
        one(0, x.shape[0])
        return samp
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, x.shape[0], workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: one(int(bounds[i]), int(bounds[i + 1])), range(workers)))
    return samp


def _cuts(x: np.ndarray, k: int) -> np.ndarray:
    """Per-row thresholds bracketing the k-th magnitude: order statistics of a sample.

    Shapes:
        x: ``[n, d]`` -> ``[n, c]`` ascending per row
    """
    d = x.shape[1]
    pos = _sample_positions(d)
    s = pos.shape[0]
    samp = _sorted_samples(x, pos)
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
        ends = np.array([-1.0, np.inf], dtype=x.dtype)
        _kernel()(x, int(k), _cuts(x, k), ends, thr, out, bool(codes))
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

    Same bits as :func:`hyperlens.functional.packing.unpack_twobit`: a trit is the positive
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
_BINOMIAL_DRAWS: Any = None
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
BOOT_SEGMENT = 4096  # values per segment: 32 KB of float64, resident in L1 while drawn from


def _draw_kernels() -> tuple[Any, Any, Any]:
    """The bootstrap's random draws: ``mix`` (a 64-bit bijection), exact ``binomial`` by
    inversion, and ``fill_words`` (a buffer of counter-based words)."""
    import numba

    golden = _GOLDEN
    c1 = _MIX1
    c2 = _MIX2

    @numba.njit(cache=True, nogil=True, inline="always")
    def mix(z):  # pragma: no cover - jit
        """splitmix64's finaliser: a bijection of 64-bit words with full avalanche."""
        z = (z ^ (z >> np.uint64(30))) * c1
        z = (z ^ (z >> np.uint64(27))) * c2
        return z ^ (z >> np.uint64(31))

    @numba.njit(cache=True, nogil=True)
    def binomial(n, p, u):  # pragma: no cover - jit
        """Binomial(n, p) by inversion of the uniform ``u``, searching out from the mode.

        The support is visited mode, mode+1, mode-1, mode+2, ... and the first value whose
        running probability reaches ``u`` is returned: an exact inversion (up to float64
        rounding of the pmf) in about 1.6 standard deviations of steps.
        """
        if n <= 0 or p <= 0.0:
            return 0
        if p >= 1.0:
            return n
        q = 1.0 - p
        mode = min(n, int((n + 1) * p))
        logpm = (math.lgamma(n + 1.0) - math.lgamma(mode + 1.0) - math.lgamma(n - mode + 1.0)
                 + mode * math.log(p) + (n - mode) * math.log1p(-p))
        pm = math.exp(logpm)
        acc = pm
        if u <= acc:
            return mode
        r = p / q
        lo, hi, plo, phi = mode, mode, pm, pm
        while True:
            if hi < n:
                phi *= (n - hi) / (hi + 1.0) * r
                hi += 1
                acc += phi
                if u <= acc:
                    return hi
            if lo > 0:
                plo *= lo / ((n - lo + 1.0) * r)
                lo -= 1
                acc += plo
                if u <= acc:
                    return lo
            if (hi >= n or phi < 1e-300) and (lo <= 0 or plo < 1e-300):
                return mode  # u beyond the float64 sum of the pmf (about 1e-15 of mass)

    @numba.njit(cache=True, nogil=True)
    def fill_words(W, key, first, n):  # pragma: no cover - jit
        # counter-based words, each 16-bit field cut to 12 bits (vectorises: no dependence
        # between words)
        keep = np.uint64(0x0FFF0FFF0FFF0FFF)
        for h in range(n):
            W[h] = mix(key + np.uint64(first + h + 1) * golden) & keep

    return mix, binomial, fill_words


def _boot_kernel() -> Any:
    global _BOOT
    if _BOOT is not None:
        return _BOOT
    import numba

    golden = _GOLDEN
    c2 = _MIX2
    mix, binomial, fill_words = _draw_kernels()

    @numba.njit(cache=True, nogil=True, fastmath={"contract"})
    def full_segment(u, off, cnt, key, W):  # pragma: no cover - jit
        """Sums of ``cnt`` uniform draws from ``u[off : off + 4096]``.

        Each 64-bit word gives 4 draws (12 bits of each 16-bit field: exactly uniform).
        Words are made a buffer at a time, then read back as 16-bit fields; the scalar
        read-and-add loop keeps 8 running sums so the additions overlap.
        """
        p = u[off : off + BOOT_SEGMENT]
        fields = W.view(np.uint16)
        s1 = s2 = s3 = s4 = 0.0
        q1 = q2 = q3 = q4 = 0.0
        done = 0
        word = 0
        while done < cnt:
            take = min(4 * W.shape[0], cnt - done)
            nw = (take + 3) // 4
            fill_words(W, key, word, nw)
            for h in range(take // 4):
                a = p[fields[4 * h]]
                b = p[fields[4 * h + 1]]
                c = p[fields[4 * h + 2]]
                d = p[fields[4 * h + 3]]
                s1 += a
                s2 += b
                s3 += c
                s4 += d
                q1 += a * a
                q2 += b * b
                q3 += c * c
                q4 += d * d
            for r in range(4 * (take // 4), take):
                a = p[fields[r]]
                s1 += a
                q1 += a * a
            done += take
            word += nw
        return (s1 + s2) + (s3 + s4), (q1 + q2) + (q3 + q4)

    @numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"})
    def part_segment(u, off, size, cnt, key):  # pragma: no cover - jit
        """Sums of ``cnt`` uniform draws from ``u[off : off + size]`` (any ``size``)."""
        mm = np.uint64(size)
        low = np.uint64(0xFFFFFFFF)
        s1 = 0.0
        s2 = 0.0
        for h in range(cnt):
            z = mix(key + np.uint64(h + 1) * golden)
            # floor(z * size / 2**64) from 32-bit halves (size < 2**32)
            j = ((z >> np.uint64(32)) * mm + (((z & low) * mm) >> np.uint64(32))) >> np.uint64(32)
            a = u[off + j]
            s1 += a
            s2 += a * a
        return s1, s2

    @numba.njit(parallel=True, cache=True, nogil=True)
    def boot_cv(u, center, seed, out):  # pragma: no cover - jit
        # A resample of m values with replacement, drawn as: how many of the m draws fall
        # in each segment of 4,096 values (a multinomial, as conditional binomials), then
        # that many uniform draws inside the segment. The same law as m uniform indices,
        # but every draw reads a segment that sits in L1. Replicate b, segment s use their
        # own counter-based streams, so results do not depend on the number of threads.
        m = u.shape[0]
        nseg = (m + BOOT_SEGMENT - 1) // BOOT_SEGMENT
        sd = np.uint64(seed)
        for b in numba.prange(out.shape[0]):
            W = np.empty(1024, dtype=np.uint64)
            kb = mix(sd ^ mix(np.uint64(b + 1) * c2))
            rem = m
            s1 = 0.0
            s2 = 0.0
            for s in range(nseg):
                off = s * BOOT_SEGMENT
                size = min(BOOT_SEGMENT, m - off)
                if s == nseg - 1:
                    cnt = rem
                else:
                    z = mix(kb ^ mix(np.uint64(2 * s + 1) * golden))
                    cnt = binomial(rem, size / (m - off), float(z >> np.uint64(11)) * 2.0**-53)
                rem -= cnt
                key = mix(kb ^ mix(np.uint64(2 * s + 2) * golden))
                if size == BOOT_SEGMENT:
                    a1, a2 = full_segment(u, off, cnt, key, W)
                else:
                    a1, a2 = part_segment(u, off, size, cnt, key)
                s1 += a1
                s2 += a2
            mean = s1 / m
            var = max(s2 / m - mean * mean, 0.0)
            out[b] = np.sqrt(var) / (center + mean)

    @numba.njit(cache=True, nogil=True)
    def binomial_many(n, p, seeds, out):  # pragma: no cover - jit
        for i in range(seeds.shape[0]):
            z = mix(seeds[i])
            out[i] = binomial(n, p, float(z >> np.uint64(11)) * 2.0**-53)

    global _BINOMIAL_DRAWS
    _BINOMIAL_DRAWS = binomial_many
    _BOOT = boot_cv
    return _BOOT


def bootstrap_cv(v: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """CV (population std / mean) of ``n_boot`` resamples with replacement of ``v``.

    Each resample is drawn segment by segment: the number of its ``m`` draws that land in
    each block of 4,096 values (a multinomial, drawn as conditional binomials by exact
    inversion), then that many uniform draws inside the block (12 bits of a splitmix64
    word each, so exactly uniform). This is the law of ``m`` independent uniform indices;
    only the order of the draws differs, and the sums do not depend on it. Every draw reads
    a block that sits in L1, and the sums are accumulated as the draws are made (no
    ``[n_boot, m]`` index matrix). Values are shifted by their mean first, which keeps the
    one-pass variance accurate to about 1e-13.

    Shapes:
        v: ``[m]`` float64 -> ``[n_boot]`` float64
    """
    v = np.ascontiguousarray(v, dtype=np.float64)
    center = float(v.mean())
    out = np.empty(n_boot, dtype=np.float64)
    _boot_kernel()(v - center, center, np.uint64(seed & 0xFFFFFFFFFFFFFFFF), out)
    return out


def binomial_draws(n: int, p: float, seeds: np.ndarray) -> np.ndarray:
    """Binomial(n, p) draws by the bootstrap's inversion, one per 64-bit seed (for tests).

    Shapes:
        seeds: ``[r]`` uint64 -> ``[r]`` int64
    """
    _boot_kernel()
    fn = _BINOMIAL_DRAWS
    out = np.empty(len(seeds), dtype=np.int64)
    fn(int(n), float(p), np.ascontiguousarray(seeds, dtype=np.uint64), out)
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

    @numba.njit(cache=True, nogil=True)
    def finish(G, k, bound, rtol, inv_fact2):  # pragma: no cover - jit
        det = det_lu(G, k)
        # flat to round-off (Hadamard: det <= prod diag) -> exactly 0
        if det <= rtol * bound:
            return 0.0
        return np.sqrt(det * inv_fact2)

    @numba.njit(parallel=True, cache=True, nogil=True)
    def edge_volumes(X, idx, rtol, inv_fact2, out):  # pragma: no cover - jit
        # any k: edges in float64 into a buffer, then their inner products
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
                        E[i, t] = np.float64(xi[t]) - np.float64(x0[t])
                bound = 1.0
                for i in range(k):
                    for j in range(i, k):
                        g = dot(E[i], E[j])
                        G[i, j] = g
                        G[j, i] = g
                    bound *= G[i, i]
                out[s] = finish(G, k, bound, rtol, inv_fact2)

    @numba.njit(parallel=True, cache=True, nogil=True,
                fastmath={"reassoc", "contract", "nsz"})
    def pentachoron_volumes(X, idx, rtol, inv_fact2, out, touched):  # pragma: no cover - jit
        # k = 4: the 4 edges and their 10 inner products in one pass over the coordinates,
        # edges formed in float64 from the rows in place (exact for float32 rows)
        m = idx.shape[0]
        d = X.shape[1]
        chunk = 512
        for c in numba.prange((m + chunk - 1) // chunk):
            G = np.empty((4, 4), dtype=np.float64)
            seen = 0.0
            for s in range(c * chunk, min(m, (c + 1) * chunk)):
                if s + 1 < m:
                    # read every 128th value of the next simplex's rows: their fetch from
                    # L3 starts while this simplex is computed (about 15 % faster)
                    for v in range(5):
                        nxt = X[idx[s + 1, v]]
                        for t in range(0, d, 128):
                            seen += nxt[t]
                x0 = X[idx[s, 0]]
                x1 = X[idx[s, 1]]
                x2 = X[idx[s, 2]]
                x3 = X[idx[s, 3]]
                x4 = X[idx[s, 4]]
                g00 = g01 = g02 = g03 = g11 = g12 = g13 = g22 = g23 = g33 = 0.0
                for t in range(d):
                    o = np.float64(x0[t])
                    e0 = np.float64(x1[t]) - o
                    e1 = np.float64(x2[t]) - o
                    e2 = np.float64(x3[t]) - o
                    e3 = np.float64(x4[t]) - o
                    g00 += e0 * e0
                    g01 += e0 * e1
                    g02 += e0 * e2
                    g03 += e0 * e3
                    g11 += e1 * e1
                    g12 += e1 * e2
                    g13 += e1 * e3
                    g22 += e2 * e2
                    g23 += e2 * e3
                    g33 += e3 * e3
                G[0, 0], G[0, 1], G[0, 2], G[0, 3] = g00, g01, g02, g03
                G[1, 0], G[1, 1], G[1, 2], G[1, 3] = g01, g11, g12, g13
                G[2, 0], G[2, 1], G[2, 2], G[2, 3] = g02, g12, g22, g23
                G[3, 0], G[3, 1], G[3, 2], G[3, 3] = g03, g13, g23, g33
                out[s] = finish(G, 4, g00 * g11 * g22 * g33, rtol, inv_fact2)
            touched[c] = seen  # keeps the early reads

    _EDGE = (edge_volumes, pentachoron_volumes)
    return _EDGE


def edge_volumes(X: np.ndarray, idx: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """Volumes of simplices from their edge Gram matrices, one compiled pass per simplex.

    Each simplex reads its ``k + 1`` rows in place (no gathered copy, no pair list), forms
    the edges ``x_i - x_0`` in float64 (exactly, for float32 rows: no centring needed),
    their Gram ``G`` and ``det G`` by LU with partial pivoting; ``V = sqrt(det G) / k!``,
    and exactly 0 when ``det G <= rtol * prod(diag G)`` (the rule of
    :func:`hyperlens.functional.geometry.cayley_menger_volume`). Pentachora (``k = 4``)
    take one pass over the coordinates for all 10 edge products; simplices run in
    parallel.

    Shapes:
        X: ``[n, d]`` float32/float64 C-contiguous; idx: ``[m, k+1]`` int64 -> ``[m]`` float64
    """
    m, kp1 = idx.shape
    k = kp1 - 1
    out = np.empty(m, dtype=np.float64)
    if m:
        inv = 1.0 / float(math.factorial(k)) ** 2
        generic, penta = _edge_kernel()
        rows = np.ascontiguousarray(X)
        ix = np.ascontiguousarray(idx, dtype=np.int64)
        if k == 4:
            penta(rows, ix, float(rtol), inv, out, np.empty((m + 511) // 512))
        else:
            generic(rows, ix, float(rtol), inv, out)
    return out
