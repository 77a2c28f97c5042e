"""Compiled kernels (numba) for WordNet pair similarities.

Each synset's ancestors are a sorted row of keys (ancestor id and hop count); a pair's
shortest path through a common ancestor is a merge of the two rows, and Wu-Palmer's
subsumer and Leacock-Chodorow's length come from the same merge. :func:`_pair_values`
fetches the rows of a block of pairs together and skips pairs that share no root. The
kernels are defined at module level so numba's disk cache serves them to later processes;
without numba they stay plain functions that nothing calls (the graph then takes row-wise
sparse products). Used by :class:`hyperlens.data.wordnet_similarity.WordNetGraph`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:  # a dependency; without it the pairs take the sparse row products
    import numba
except ImportError:  # pragma: no cover
    numba = None  # type: ignore[assignment]

# The kernel's per-synset ``info`` word: ecc, min_depth and max_depth in 8 bits each (at
# most 254: a row holds fewer than 256 ancestors), the 3-bit part-of-speech code, the
# flags needs_root and below_root, and a 32-bit mask of the roots above, from these offsets.
_ECC, _MIN_D, _MAX_D, _POS, _NEEDS_ROOT, _BELOW_ROOT, _ROOTS = 0, 8, 16, 24, 27, 28, 32
_BLOCK = 64  # pairs whose rows are fetched together
# module-level kernels, so numba's disk cache serves them to later processes; without
# numba they stay plain (never called) functions
_jit: Any = numba.njit(cache=True, nogil=True) if numba is not None else (lambda fn: fn)


@_jit
def _merge_distance(key, i, i_end, j, j_end):  # pragma: no cover - jit
    """NLTK's ``shortest_path_distance`` without a fake root: the least ``d(a, x) + d(b, x)``
    over common ancestors ``x``, a merge of rows ``key[i:i_end]`` and ``key[j:j_end]``;
    -1 when there is none."""
    best = -1
    while i < i_end and j < j_end:
        u, v = key[i], key[j]
        xu, xv = u >> 8, v >> 8
        if xu == xv:
            d = (u & 255) + (v & 255)
            if best < 0 or d < best:
                best = d
        i += xu <= xv
        j += xv <= xu
    return best


@_jit
def _wup_value(ptr, key, info, rank, a, b, i, i_end, j, j_end, root):  # pragma: no cover - jit
    """NLTK's Wu-Palmer for one pair (NaN for None), rows ``key[i:i_end]`` of ``a`` and
    ``key[j:j_end]`` of ``b``; ``root``: the fake root may join."""
    best, best_md, a_common = -1, -1, False
    while i < i_end and j < j_end:  # the lowest common hypernyms by min_depth, then name
        xu, xv = key[i] >> 8, key[j] >> 8
        if xu == xv:
            md = (info[xu] >> _MIN_D) & 255
            if md > best_md or (md == best_md and rank[xu] < rank[best]):
                best, best_md = xu, md
            a_common |= xu == a
        i += xu <= xv
        j += xv <= xu
    # the first synset wins when it is a common hypernym at the best min_depth
    self_wins = a_common and ((info[a] >> _MIN_D) & 255) == best_md
    c = a if self_wins else best
    # the fake root has min_depth 0 and sorts first, unless a real tie sorts before it
    if root and not self_wins and (c < 0 or (best_md == 0 and not (info[c] >> _BELOW_ROOT) & 1)):
        return 2.0 / (((info[a] >> _ECC) & 255) + ((info[b] >> _ECC) & 255) + 4.0)
    if c < 0:
        return np.nan
    depth = ((info[c] >> _MAX_D) & 255) + 1.0
    l1 = _merge_distance(key, ptr[a], ptr[a + 1], ptr[c], ptr[c + 1])
    l2 = _merge_distance(key, ptr[b], ptr[b + 1], ptr[c], ptr[c + 1])
    if l1 < 0 or l2 < 0:
        return np.nan
    return 2.0 * depth / (l1 + l2 + 2.0 * depth)


@_jit
def _pair_value(ptr, key, info, rank, lch_depth, measure, simulate_root, x, y, i, i_end, j,
                j_end):  # pragma: no cover - jit
    """NLTK's ``measure`` (0 path, 1 wup, 2 lch) of synsets ``x``, ``y`` (rows as above)."""
    fx, fy = info[x], info[y]
    need_x, need_y = (fx >> _NEEDS_ROOT) & 1, (fy >> _NEEDS_ROOT) & 1
    if measure == 1:
        if not (fx & fy) >> _ROOTS:
            i_end = i  # no common root: no common hypernym to look for
        return _wup_value(ptr, key, info, rank, x, y, i, i_end, j, j_end,
                          simulate_root and (need_x or need_y))
    # path: a fake root when either synset needs one; lch: when the first does
    d = _merge_distance(key, i, i_end, j, j_end) if (fx & fy) >> _ROOTS else -1
    if simulate_root and (need_x or (measure == 0 and need_y)):
        via = ((fx >> _ECC) & 255) + ((fy >> _ECC) & 255) + 2
        if d < 0 or via < d:
            d = via
    if measure == 0:
        return 1.0 / (d + 1.0) if d >= 0 else np.nan
    px, py = (fx >> _POS) & 7, (fy >> _POS) & 7
    dep = lch_depth[px]
    if d >= 0 and px == py and dep > 0:
        return -math.log((d + 1) / (2.0 * dep))  # NLTK's expression, libm's log
    return np.nan


@_jit
def _pair_values(  # pragma: no cover - jit
    a, b, measure, simulate_root, ptr, key, info, rank, lch_depth, out
):
    """NLTK's ``measure`` for every pair, into ``out``.

    Pairs go in blocks: first every pair's row bounds are read and the rows touched (loads
    that do not wait on each other, so their cache misses overlap), then the merges run on
    rows already in cache; one pair at a time, random rows of the noun graph are a chain of
    cache misses (5x slower). One thread: on a shared machine a second one costs more than
    it gains at these sizes.
    """
    n = a.shape[0]
    bounds = np.empty((_BLOCK, 4), dtype=ptr.dtype)
    seen = 0
    for s in range(0, n, _BLOCK):
        m = min(_BLOCK, n - s)
        for q in range(m):
            x, y = a[s + q], b[s + q]
            bounds[q, 0], bounds[q, 1] = ptr[x], ptr[x + 1]
            bounds[q, 2], bounds[q, 3] = ptr[y], ptr[y + 1]
            seen += info[x] + info[y]
        for q in range(m):
            if (info[a[s + q]] & info[b[s + q]]) >> _ROOTS:  # rows merged below
                seen += key[bounds[q, 0]] + key[bounds[q, 1] - 1]
                seen += key[bounds[q, 2]] + key[bounds[q, 3] - 1]
        for q in range(m):
            out[s + q] = _pair_value(ptr, key, info, rank, lch_depth, measure, simulate_root,
                                     a[s + q], b[s + q], bounds[q, 0], bounds[q, 1],
                                     bounds[q, 2], bounds[q, 3])
    return seen  # keeps the touching loads
