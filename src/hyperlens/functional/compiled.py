"""Compiled kernels (numba): row selection, two-bit unpacking, bootstrap CVs, simplex Grams.

Selection: the k-th smallest ``|x|`` of every row, and ternary codes.

This is the ``"sampled"`` implementation of the ``"select"`` kernel
(:mod:`hyperlens.functional.kernels`). Exact selection over all magnitudes
(``np.partition``, ``torch.topk``) reorders every row several times, and elementwise
torch passes over a ``[n, d]`` matrix each stream it through memory again. Here each row
is read from memory once and handled while it sits in cache, by one compiled pass per
block of rows (blocks in parallel threads):

1. a strided sample of about 1,024 magnitudes is counted into a histogram by the top 12
   bits of their IEEE bit patterns (for magnitudes, bit-pattern order is value order);
   the bins around the sample's rank of ``k`` (+-4 binomial standard deviations) give a
   first bracket ``lo < t <= hi``;
2. vectorised, exact counts of ``|x| <= cut`` (two cuts per pass over the row) narrow the
   bracket to ``count(lo) = c_lo < k <= count(hi)`` with at most 16 magnitudes inside:
   the cuts are interpolated between the bracket's ends in bit-pattern space (usually two
   or three passes), with a three-way split whenever an interpolation gains too little,
   so no row, whatever its values, takes more than a few dozen passes; a bracket the
   sample missed is widened, never trusted;
3. the few magnitudes in ``(lo, hi]`` are collected (only 64-value chunks that hold one
   are visited, branch-free) and the threshold is the ``(k - c_lo)``-th smallest of them
   (a small quickselect); a bracket one bit pattern wide is the threshold itself (ties);
4. optionally the codes ``sign(x) * (|x| > t)`` are written in the same visit, which also
   notes rows holding NaN or Inf (the caller's finiteness check, without a pass of its
   own).

The result is exact, so codes equal those of every other path. numba is the compiler (a
well-kept JIT; torch offers no per-row compiled loop on the CPU). The selection kernel is
defined at module level, so numba's disk cache serves it to every later process (a kernel
that closes over other compiled functions is compiled again in each process: the
closure's pickled dispatchers carry a fresh id). The other kernels compile on first use.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:  # callers use this module only where kernels.numba_available() says numba imports
    import numba
except ImportError:  # pragma: no cover - numba is a dependency
    numba = None  # type: ignore[assignment]

__all__ = [
    "SAMPLE",
    "binomial_draws",
    "bootstrap_cv",
    "edge_volumes",
    "kth_smallest_abs_rows",
    "unpack_twobit_rows",
]

SAMPLE = 1024  # about this many strided magnitudes per row give the first bracket
_HIST_BITS = 12  # sample histogram bins: the top 12 bits of |x|'s bit pattern (sign cleared)
_FEW = 16  # magnitudes left in the bracket when they are collected
_CHUNK = 64  # values per chunk tested at once while collecting
_COUNT_BLOCK = 1 << 22  # float32 counts are exact below 2**24: rows are counted in blocks
_ROWS_PER_TASK = 16


def _jit(**options: Any) -> Any:
    """numba's ``njit(cache=True, nogil=True, **options)``; without numba, no decorator."""
    if numba is None:  # pragma: no cover - the functions are then never called
        return lambda fn: fn
    return numba.njit(cache=True, nogil=True, **options)


# --------------------------------------------------------------------------- selection
@_jit()
def _quickselect(a, m, r):  # pragma: no cover - jit
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


@_jit(fastmath={"reassoc"})
def _count_le(row, t1, t2):  # pragma: no cover - jit
    """``#(|row| <= t1)`` and ``#(|row| <= t2)`` in one vectorised pass (NaN counts in
    neither); float32 counts, exact below 2**24, summed per block of 2**22 values."""
    n1 = 0
    n2 = 0
    for s in range(0, row.shape[0], _COUNT_BLOCK):
        blk = row[s : s + _COUNT_BLOCK]
        c1 = np.float32(0.0)
        c2 = np.float32(0.0)
        for j in range(blk.shape[0]):
            a = abs(blk[j])
            c1 += np.float32(1.0) if a <= t1 else np.float32(0.0)
            c2 += np.float32(1.0) if a <= t2 else np.float32(0.0)
        n1 += int(c1)
        n2 += int(c2)
    return n1, n2


@_jit()
def _as_value(key, scratch_k, scratch_f):  # pragma: no cover - jit
    """The magnitude whose bit pattern is ``key`` (-1 for key -1: below every magnitude)."""
    if key < 0:
        scratch_f[0] = -1.0
    else:
        scratch_k[0] = key
    return scratch_f[0]


@_jit()
def _collect(row, lo, hi, buf):  # pragma: no cover - jit
    """The magnitudes in (lo, hi] into buf (one slot more than there are); only chunks that
    hold one are visited, without a branch per value (rows differ: branches mispredict)."""
    m = 0
    for s in range(0, row.shape[0], _CHUNK):
        blk = row[s : s + _CHUNK]
        hit = False
        for j in range(blk.shape[0]):  # vectorised test of the whole chunk
            a = abs(blk[j])
            hit |= (a > lo) & (a <= hi)
        if hit:
            for j in range(blk.shape[0]):  # branch-free: every value written, hits kept
                a = abs(blk[j])
                buf[m] = a
                m += (a > lo) & (a <= hi)
    return m


@_jit()
def _first_bracket(keys, k, shift, absmask, inf_key, hist):  # pragma: no cover - jit
    """Bit-pattern bracket ``(lo, hi]`` of the k-th magnitude from a strided sample."""
    d = keys.shape[0]
    step = max(1, d // SAMPLE)
    hist[:] = 0
    ns = 0
    b0 = hist.shape[0]
    for j in range(0, d, step):
        b = (keys[j] & absmask) >> shift
        hist[b] += 1
        b0 = min(b0, b)
        ns += 1
    p = (k - 0.5) / d
    half = 4.0 * math.sqrt(max(ns * p * (1.0 - p), 1.0))
    r_lo = int(ns * p - half)  # sample values to leave below lo
    r_hi = int(ns * p + half) + 1  # sample values to have at or below hi
    lo = -1
    hi = inf_key
    c = 0
    b = b0
    if r_lo > 0:
        while c + hist[b] <= r_lo:
            c += hist[b]
            b += 1
        lo = (b << shift) - 1
    if r_hi < ns:
        while b < hist.shape[0] - 1 and c + hist[b] < r_hi:
            c += hist[b]
            b += 1
        hi = min(((b + 1) << shift) - 1, inf_key)
    lo = min(max(lo, -1), inf_key - 1)  # NaN patterns (unchecked input) sort above inf
    return lo, max(min(hi, inf_key), lo + 1)


@_jit()
def _select_row(  # pragma: no cover - jit
    row, keys, k, shift, absmask, inf_key, hist, buf, scratch_k, scratch_f
):
    """The k-th smallest |row| (1-based); +inf when NaNs leave fewer than k magnitudes."""
    lo, hi = _first_bracket(keys, k, shift, absmask, inf_key, hist)
    c_lo, c_hi = _count_le(row, _as_value(lo, scratch_k, scratch_f),
                           _as_value(hi, scratch_k, scratch_f))
    if c_lo >= k:  # the sample missed low: lo is an upper end
        hi, c_hi, lo, c_lo = lo, c_lo, -1, 0
    elif c_hi < k:  # missed high: hi is a lower end
        lo, c_lo, hi = hi, c_hi, inf_key
        v_inf = _as_value(hi, scratch_k, scratch_f)
        c_hi = _count_le(row, v_inf, v_inf)[0]
        if c_hi < k:
            return _as_value(inf_key, scratch_k, scratch_f)
    split = False
    while c_hi - c_lo > _FEW and hi - lo > 1:
        span = hi - lo
        n_in = c_hi - c_lo
        if split:  # three equal parts of the bit-pattern range
            t1 = lo + max(1, span // 3)
            t2 = lo + max(1, (2 * span) // 3)
        else:  # either side of the interpolated bit pattern of the k-th magnitude
            g = lo + span * ((k - c_lo - 0.5) / n_in)
            w = span * (0.25 * _FEW / n_in)
            t1 = int(g - w)
            t2 = int(g + w)
        t1 = min(max(t1, lo + 1), hi - 1)
        t2 = min(max(t2, t1), hi - 1)
        n1, n2 = _count_le(row, _as_value(t1, scratch_k, scratch_f),
                           _as_value(t2, scratch_k, scratch_f))
        if n1 >= k:
            hi, c_hi = t1, n1
        elif n2 >= k:
            lo, c_lo, hi, c_hi = t1, n1, t2, n2
        else:
            lo, c_lo = t2, n2
        split = 4 * (c_hi - c_lo) > n_in  # less than a 4x gain: split evenly next time
    v_hi = _as_value(hi, scratch_k, scratch_f)
    if hi - lo <= 1:  # one bit pattern: the threshold itself
        return v_hi
    m = _collect(row, _as_value(lo, scratch_k, scratch_f), v_hi, buf)
    return _quickselect(buf, m, k - c_lo - 1)


@_jit(parallel=True)
def _select_rows(  # pragma: no cover - jit
    x, keys, k, shift, absmask, inf_key, thr, out, finite, write_codes, scratch, scratch_k
):
    n, d = x.shape
    n_tasks = (n + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK
    for task in numba.prange(n_tasks):
        hist = np.empty(1 << _HIST_BITS, dtype=np.int32)
        buf = np.empty(_FEW + 1, dtype=x.dtype)
        sk = scratch_k[task]
        sf = scratch[task]
        v_inf = _as_value(inf_key, sk, sf)
        for i in range(task * _ROWS_PER_TASK, min(n, (task + 1) * _ROWS_PER_TASK)):
            row = x[i]
            t = _select_row(row, keys[i], k, shift, absmask, inf_key, hist, buf, sk, sf)
            thr[i] = t
            if write_codes:
                o = out[i]
                bad = False
                for j in range(d):
                    v = row[j]
                    o[j] = np.int8(v > t) - np.int8(v < -t)
                    bad |= not abs(v) < v_inf  # NaN or Inf, found in the same visit
                finite[i] = not bad


_KEY_TYPES = {np.dtype(np.float32): (np.int32, 31), np.dtype(np.float64): (np.int64, 63)}


def kth_smallest_abs_rows(
    x: np.ndarray, k: int, *, codes: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The ``k``-th smallest ``|x|`` of every row (1-based) and, with ``codes``, the codes
    and whether each row is finite (checked in the same visit of the row).

    Exact for finite input; ``x`` is read, never modified. NaN counts as larger than
    every magnitude; a row with fewer than ``k`` numbers gets the threshold ``+inf``.

    Shapes:
        x: ``[n, d]`` float32/float64 C-contiguous -> (``[n]`` same dtype,
        ``[n, d]`` int8 or None, ``[n]`` bool or None)
    """
    n, d = x.shape
    thr = np.empty(n, dtype=x.dtype)
    out = np.empty((n, d) if codes else (0, 0), dtype=np.int8)
    finite = np.ones(n if codes else 0, dtype=np.bool_)
    if n:
        key_type, bits = _KEY_TYPES[x.dtype]
        inf_key = int(np.array(np.inf, dtype=x.dtype).view(key_type))
        scratch = np.zeros(((n + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK, 1), dtype=x.dtype)
        _select_rows(x, x.view(key_type), int(k), bits - _HIST_BITS, (1 << bits) - 1, inf_key,
                     thr, out, finite, bool(codes), scratch, scratch.view(key_type))
    return thr, (out if codes else None), (finite if codes else None)


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
