"""WordNet's hypernym graph as sparse arrays, and NLTK's similarities computed exactly in bulk.

:func:`pair_similarity` and :func:`similarity_matrix` return the values of NLTK's
``path_similarity``, ``wup_similarity`` and ``lch_similarity`` (NLTK 3.10, WordNet 3.0),
with and without ``simulate_root``, for many pairs at once; :class:`WordNetGraph` holds the
arrays they work on and is built once per WordNet installation, then read from the cache
(``<cache>/wordnet``) in well under a second instead of NLTK's ~20 s corpus load.

Why our own code: NLTK computes one pair at a time in Python (about 0.2 ms per path pair,
0.3 ms per Wu-Palmer pair); no library computes WordNet similarities in bulk. The
measures are reproduced with NLTK's conventions, which are not the textbook ones:

* ancestors follow hypernyms **and** instance hypernyms; the distance between two synsets
  is ``min over common ancestors x of d(a, x) + d(b, x)`` with ``d`` the shortest upward
  hop count (NLTK's ``shortest_path_distance``);
* ``simulate_root`` adds a fake root only when a synset of the pair is not a noun (nouns
  share ``entity.n.01``); the fake root sits one hop above the *farthest* ancestor of each
  synset (``max d(a, x) + 1``, not ``max_depth + 1``), so every adjective / adverb pair
  gets path 1/3 and Wu-Palmer 1/2;
* Wu-Palmer picks the subsumer among common ancestors (plus the fake root) with the largest
  ``min_depth``, ties broken by synset name, the first synset of the pair winning when it
  is among them; its depth is ``max_depth + 1`` (the fake root: 1); the two lengths are
  ``shortest_path_distance`` to the subsumer plus that depth. ``wup(a, a)`` can be below 1
  and ``wup(a, b)`` can differ from ``wup(b, a)``: both are NLTK's values;
* Leacock-Chodorow uses the maximum ``max_depth`` of the first synset's part of speech
  (``all_synsets(pos)``; adjectives include satellites), plus one for every part of speech
  but nouns even when ``simulate_root=False``; pairs of different parts of speech (also
  ``a`` vs ``s``) make NLTK raise, and give NaN here.

Where NLTK returns ``None`` (no connecting path) or raises, the result is NaN.

How it is fast and exact: the shortest upward distances from every synset to each of its
ancestors form a sparse matrix ``A`` (built by a breadth-first frontier of sparse products
with the parent matrix). Entry ``(s, x)`` is stored as ``2**(-8 d(s, x))``. For a pair
``(a, b)`` the row product ``sum_x A[a, x] A[b, x]`` is a sum of at most 255 powers of two
whose largest is ``2**(-8 D)``, ``D`` the wanted distance; the sum therefore lies in
``[2**(-8 D), 2**(-8 D + 8))`` and its binary exponent (``np.frexp``, an integer) gives
``D`` exactly. Rounding cannot move the sum across that octave block (positive terms, 53-bit
mantissa), so there is no tolerance anywhere: the values equal NLTK's bit for bit. One
sparse product gives a whole similarity matrix.

Lists of pairs take a compiled kernel (numba, :mod:`hyperlens.data.wordnet_kernels`): each synset's
ancestors are one sorted row of ``index << 8 | distance`` words, and a pair's distance is
a merge of two such rows (about 10 words per noun, 3.5 per verb); the Wu-Palmer subsumer
and the two lengths to it come from merges too. Rows are fetched a block of pairs at a
time so that their cache misses overlap, and a mask of the roots above each synset skips
pairs that share none (most verb pairs). No per-pair Python, no sparse temporaries; about
0.13 us per noun pair and 0.04 us per verb pair (path, one thread). Without numba the
row-wise sparse products above give the same values.

Shapes:
    pair_similarity: a, b [n] -> [n]; similarity_matrix: synsets [n] -> [n, n]
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]

from ..errors import DataError, InputError, ShapeError
from .wordnet_kernels import (
    _BELOW_ROOT,
    _ECC,
    _MAX_D,
    _MIN_D,
    _NEEDS_ROOT,
    _POS,
    _ROOTS,
    _pair_values,
    numba,
)

__all__ = [
    "WordNetGraph",
    "wordnet_graph",
    "pair_similarity",
    "similarity_matrix",
    "MEASURES",
    "POS_TAGS",
]

#: Similarity measures computed exactly (NLTK's names without ``_similarity``).
MEASURES: tuple[str, ...] = ("path", "wup", "lch")
#: WordNet's part-of-speech tags: noun, verb, adjective, adjective satellite, adverb.
POS_TAGS: tuple[str, ...] = ("n", "v", "a", "s", "r")

_CACHE_VERSION = 1
_SHIFT = 8  # bits per hop in the exponent encoding; rows must have < 2**_SHIFT ancestors
_ROOT_NAME = "*ROOT*"  # NLTK's fake root synset name (sorts before every real name)
_LOCK = threading.Lock()
_GRAPHS: dict[str, WordNetGraph] = {}


# --------------------------------------------------------------------------- string packing
def _pack(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one utf-8 byte array and int64 offsets (``len + 1``)."""
    enc = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(enc) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in enc], out=offsets[1:])
    return np.frombuffer(b"".join(enc), dtype=np.uint8).copy(), offsets


def _unpack(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = blob.tobytes()
    return [raw[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]


# --------------------------------------------------------------------------- the graph
@dataclass
class WordNetGraph:
    """WordNet's synsets and hypernym graph as arrays, in ``all_synsets()`` file order.

    Attributes:
        names: synset names (``"dog.n.01"``) ``[n]``.
        pos: part-of-speech tags ``[n]`` (``n v a s r``; ``s`` = adjective satellite).
        lexname: lexicographer file number ``[n]`` (see :data:`hyperlens.data.wordnet.LEXNAMES`).
        definitions: glosses ``[n]``.
        lemmas: each synset's lemma names in WordNet's order (``_`` for spaces).
        parents: CSR ``[n, n]``, 1 where column is a hypernym or instance hypernym of row.
        ancestors: CSR ``[n, n]`` int16, ``d + 1`` for every ancestor at shortest upward
            distance ``d`` (the synset itself included, stored as 1).
        ecc: farthest ancestor's distance ``[n]`` (where NLTK puts its fake root, minus 1).
        min_depth, max_depth: NLTK's ``min_depth()`` / ``max_depth()`` ``[n]``.
        name_rank: position of each name in sorted order ``[n]`` (NLTK sorts synsets by name).
        lch_depth: NLTK's taxonomy depth per part of speech for Leacock-Chodorow.
        lemma_index: lemma name -> synset ids in sense-rank order (nouns, verbs, adjectives,
            adverbs, as ``wn.synsets`` lists them, without morphological normalisation).
        source: the WordNet folder and version the arrays were built from.
    """

    names: list[str]
    pos: np.ndarray
    lexname: np.ndarray
    definitions: list[str]
    lemmas: list[tuple[str, ...]]
    parents: sp.csr_matrix
    ancestors: sp.csr_matrix
    ecc: np.ndarray
    min_depth: np.ndarray
    max_depth: np.ndarray
    name_rank: np.ndarray
    lch_depth: dict[str, int]
    lemma_index: dict[str, np.ndarray]
    source: str

    def __post_init__(self) -> None:
        self.index = {n: i for i, n in enumerate(self.names)}
        self.needs_root = self.pos != "n"
        # NLTK sorts subsumer candidates by name; the fake root "*ROOT*" precedes a real name
        # unless that name sorts lower (names starting with "'", "!", ...).
        self.below_root = np.array([n < _ROOT_NAME for n in self.names], dtype=bool)
        w = self.ancestors.copy().astype(np.float64)
        w.data = np.ldexp(1.0, -_SHIFT * (self.ancestors.data.astype(np.int64) - 1))
        self._weights = w.tocsr()
        self._weights.sort_indices()
        self._anc_keys: np.ndarray | None = None  # built on first use
        self._by_rank = np.argsort(self.name_rank)
        self._pos_code = np.searchsorted(np.array(sorted(POS_TAGS)), self.pos)
        lch = {p: self.lch_depth[p] for p in POS_TAGS}
        self._lch_by_code = np.array([lch[p] for p in sorted(POS_TAGS)], dtype=np.float64)
        self._kernel_arrays: tuple[np.ndarray, ...] | None = None  # built on first use

    def __len__(self) -> int:
        return len(self.names)

    # ------------------------------------------------------------------ lookups
    def ids(self, synsets: Any, name: str = "synsets") -> np.ndarray:
        """Synset ids ``[n]`` (int64) of names, NLTK ``Synset`` objects or ids."""
        if isinstance(synsets, (str, bytes)):
            raise InputError(f"{name} must be a sequence of synset names, got one string "
                             f"{synsets!r}; wrap it in a list.")
        if isinstance(synsets, np.ndarray) and synsets.dtype.kind in "iu":
            out = synsets.astype(np.int64, copy=False).ravel()
            if out.size and (out.min() < 0 or out.max() >= len(self)):
                raise InputError(f"{name} holds synset ids outside 0..{len(self) - 1}.")
            return out
        items = synsets if isinstance(synsets, list) else list(synsets)
        if items and set(map(type, items)) == {str}:  # names: one look-up pass in C
            got = list(map(self.index.get, items))
            if None not in got:
                return np.array(got, dtype=np.int64)
        out = np.empty(len(items), dtype=np.int64)
        missing = []
        for i, s in enumerate(items):
            key = s.name() if hasattr(s, "name") and callable(s.name) else s
            if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
                if not 0 <= int(key) < len(self):
                    missing.append(repr(key))
                    continue
                out[i] = int(key)
                continue
            j = self._lookup(key) if isinstance(key, str) else None
            if j is None:
                missing.append(repr(key))
            else:
                out[i] = j
        if missing:
            raise InputError(
                f"{name} has {len(missing)} entries that are not WordNet 3.0 synset names "
                f"(first: {', '.join(missing[:5])}); pass names such as 'dog.n.01' "
                "(nltk Synset.name()) or Synset objects."
            )
        return out

    def _lookup(self, name: str) -> int | None:
        """Id of a synset name; like ``wn.synset`` also ``lemma.pos.nn`` for any lemma
        (``"move.v.01"`` is ``travel.v.01``)."""
        j = self.index.get(name)
        if j is not None:
            return j
        parts = name.rsplit(".", 2)
        if len(parts) != 3 or parts[1] not in POS_TAGS or not parts[2].isdigit():
            return None
        ids = self.synsets_of(parts[0], parts[1])  # 'a' counts satellites too, as NLTK does
        k = int(parts[2]) - 1
        return int(ids[k]) if 0 <= k < ids.size else None

    def synsets_of(self, lemma: str, pos: str | None = None) -> np.ndarray:
        """Synset ids of ``lemma`` in sense-rank order (optionally of one POS; ``a`` keeps
        satellites, as NLTK does)."""
        ids = self.lemma_index.get(lemma.lower().replace(" ", "_"), np.empty(0, dtype=np.int64))
        if pos is None:
            return ids
        p = self.pos[ids]
        keep = (p == pos) | ((pos == "a") & (p == "s"))
        return ids[keep]

    # ------------------------------------------------------------------ distances
    def _row_sums(self, a: np.ndarray, b: np.ndarray, chunk: int = 200_000) -> np.ndarray:
        """``sum_x W[a, x] W[b, x]`` for each pair (float64 [n])."""
        out = np.empty(a.size, dtype=np.float64)
        W = self._weights
        for s in range(0, a.size, chunk):
            wa, wb = W[a[s : s + chunk]], W[b[s : s + chunk]]
            out[s : s + chunk] = np.asarray(wa.multiply(wb).sum(axis=1)).ravel()
        return out

    @staticmethod
    def _decode(sums: np.ndarray) -> np.ndarray:
        """Shortest distance (int64) from the encoded sums; -1 where there is no common ancestor."""
        _, e = np.frexp(sums)
        f = e.astype(np.int64) - 1  # floor(log2(sum)) in [-8 D, -8 D + 7]
        d = (-f + _SHIFT - 1) // _SHIFT
        return np.where(sums > 0, d, -1)

    def distance(self, a: np.ndarray, b: np.ndarray, root: np.ndarray | bool = False) -> np.ndarray:
        """NLTK's ``shortest_path_distance`` for pairs of ids; -1 for ``None``.

        ``root`` (bool or bool ``[n]``) adds the fake root for those pairs.
        """
        d = self._decode(self._row_sums(a, b))
        root = np.broadcast_to(np.asarray(root, dtype=bool), d.shape)
        if root.any():
            via_root = self.ecc[a].astype(np.int64) + self.ecc[b] + 2
            d = np.where(root & ((d < 0) | (via_root < d)), via_root, d)
        return d

    def distance_matrix(self, ids: np.ndarray, root: bool | np.ndarray = False) -> np.ndarray:
        """All-pairs distances of ``ids`` (int64 ``[n, n]``, -1 for none); ``root`` as in
        :meth:`distance` (a bool ``[n, n]`` mask, or one bool for every pair)."""
        Wi = self._weights[ids]
        cols = np.unique(Wi.indices)
        Wi = Wi[:, cols].tocsr()
        prod = (Wi @ Wi.T).toarray()
        d = self._decode(prod)
        root = np.asarray(root, dtype=bool)
        if root.any():
            e = self.ecc[ids].astype(np.int64)
            via = e[:, None] + e[None, :] + 2
            d = np.where(root & ((d < 0) | (via < d)), via, d)
        return d

    def is_ancestor(self, anc: np.ndarray, of: np.ndarray) -> np.ndarray:
        """Whether ``anc[i]`` is an ancestor of (or equal to) ``of[i]`` (bool [n])."""
        if self._anc_keys is None:
            A = self.ancestors
            rows = np.repeat(np.arange(len(self), dtype=np.int64), np.diff(A.indptr))
            self._anc_keys = rows * len(self) + A.indices  # sorted: rows in order, indices sorted
        allkeys = self._anc_keys
        keys = np.asarray(of, dtype=np.int64) * len(self) + np.asarray(anc, dtype=np.int64)
        k = np.minimum(np.searchsorted(allkeys, keys), allkeys.size - 1)
        return allkeys[k] == keys

    def subsumer(self, a: np.ndarray, b: np.ndarray, root: np.ndarray) -> np.ndarray:
        """NLTK's Wu-Palmer subsumer for each pair: an id, ``-2`` for the fake root, ``-1`` none.

        Lowest common hypernyms by ``min_depth`` (``use_min_depth=True``), sorted by name,
        the first synset of the pair taking precedence when it is among them.
        """
        n = len(self)
        score = self.min_depth.astype(np.int64) * n + (n - 1 - self.name_rank)
        out = np.full(a.size, -1, dtype=np.int64)
        best_md = np.full(a.size, -1, dtype=np.int64)
        W = self._weights
        chunk = 200_000
        for s in range(0, a.size, chunk):
            sa, sb = a[s : s + chunk], b[s : s + chunk]
            C = W[sa].multiply(W[sb]).tocsr()
            C.sort_indices()
            has = np.diff(C.indptr) > 0
            if not has.any():
                continue
            vals = score[C.indices]
            starts = C.indptr[:-1][has]
            top = np.maximum.reduceat(vals, starts)
            idx = np.flatnonzero(has) + s
            out[idx] = self._by_rank[(n - 1) - (top % n)]
            best_md[idx] = top // n
        # The first synset wins when it is a common ancestor at the best min_depth.
        self_wins = (best_md >= 0) & (self.min_depth[a] == best_md)
        if self_wins.any():
            cand = np.flatnonzero(self_wins)
            self_wins[cand] = self.is_ancestor(a[cand], b[cand])
        out = np.where(self_wins, a, out)
        # The fake root has min_depth 0 and sorts first, unless a real tie sorts before it.
        tie_after_root = (best_md == 0) & ~self.below_root[np.maximum(out, 0)]
        use_root = root & ~self_wins & ((out < 0) | tie_after_root)
        return np.where(use_root, -2, out)

    def _pair_arrays(self) -> tuple[np.ndarray, ...]:
        """The compiled kernel's arrays: ancestor rows ``(ptr, key)``, ``key = index << 8 |
        distance`` sorted by index; per-synset ``info`` words; name ranks; NLTK's
        Leacock-Chodorow depths by part-of-speech code."""
        if self._kernel_arrays is None:
            A = self.ancestors.sorted_indices()
            kt = np.int32 if len(self) < 1 << 23 else np.int64
            key = (A.indices.astype(kt) << 8) | (A.data.astype(kt) - 1)
            info = np.zeros(len(self), dtype=np.int64)
            for values, shift in ((self.ecc, _ECC), (self.min_depth, _MIN_D),
                                  (self.max_depth, _MAX_D), (self._pos_code, _POS),
                                  (self.needs_root, _NEEDS_ROOT), (self.below_root, _BELOW_ROOT)):
                info |= np.asarray(values).astype(np.int64) << shift
            # bit (root % 32) for every root among the ancestors: disjoint masks, no common
            # ancestor (most verb pairs: the verb graph has hundreds of roots)
            rows = np.repeat(np.arange(len(self)), np.diff(A.indptr))
            top = np.diff(self.parents.indptr)[A.indices] == 0
            np.bitwise_or.at(info, rows[top], np.int64(1) << (_ROOTS + A.indices[top] % 32))
            self._kernel_arrays = (A.indptr.astype(np.int64), key, info,
                                   self.name_rank.astype(np.int64), self._lch_by_code)
        return self._kernel_arrays

    # ------------------------------------------------------------------ similarities
    def similarity(self, a: np.ndarray, b: np.ndarray, measure: str = "path",
                   simulate_root: bool = True) -> np.ndarray:
        """NLTK's similarity for pairs of ids (float64 [n], NaN for None).

        The compiled merge kernel where numba imports, else row-wise sparse products (the
        same values)."""
        _check_measure(measure)
        a = np.ascontiguousarray(a, dtype=np.int64).ravel()
        b = np.ascontiguousarray(b, dtype=np.int64).ravel()
        if numba is not None and a.size:
            out = np.empty(a.size, dtype=np.float64)
            _pair_values(a, b, MEASURES.index(measure), bool(simulate_root),
                         *self._pair_arrays(), out)
            return out
        if measure == "path":
            root = bool(simulate_root) & (self.needs_root[a] | self.needs_root[b])
            d = self.distance(a, b, root)
            return np.where(d >= 0, 1.0 / np.maximum(d + 1.0, 1.0), np.nan)
        if measure == "lch":
            need = self.needs_root[a]
            d = self.distance(a, b, bool(simulate_root) & need)
            dep = self._lch_by_code[self._pos_code[a]]
            ok = (d >= 0) & (self.pos[a] == self.pos[b]) & (dep > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                val = -np.log((d + 1.0) / (2.0 * dep))
            return np.where(ok, val, np.nan)
        # Wu-Palmer
        root = bool(simulate_root) & (self.needs_root[a] | self.needs_root[b])
        c = self.subsumer(a, b, root)
        out = np.full(a.size, np.nan)
        r = c == -2
        if r.any():
            out[r] = 2.0 / (self.ecc[a[r]].astype(np.float64) + self.ecc[b[r]] + 4.0)
        real = c >= 0
        if real.any():
            ar, br, cr = a[real], b[real], c[real]
            depth = self.max_depth[cr].astype(np.float64) + 1.0
            l1 = self.distance(ar, cr)
            l2 = self.distance(br, cr)
            val = 2.0 * depth / (l1 + l2 + 2.0 * depth)
            out[real] = np.where((l1 >= 0) & (l2 >= 0), val, np.nan)
        return out


def _check_measure(measure: str) -> None:
    if measure not in MEASURES:
        raise InputError(f"measure must be one of {MEASURES}, got {measure!r}.")


# --------------------------------------------------------------------------- building
def _wordnet_files() -> tuple[str, list[Any]]:
    """The WordNet files NLTK would read and a fingerprint of them.

    Searches NLTK's folders in NLTK's order (hyperlens' cache folder first, as
    :func:`hyperlens.data.wordnet` registers it) without importing NLTK, which takes seconds;
    raises :class:`DataError` with the installation steps when WordNet is nowhere.
    """
    import sys
    from importlib import metadata

    from .wordnet import REQUIRED_FILES, _default_target

    try:
        nltk_version = metadata.version("nltk")
    except metadata.PackageNotFoundError:
        nltk_version = "absent"
    env = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    homes = [str(Path("~/nltk_data").expanduser())]
    prefixes = [os.path.join(sys.prefix, d)
                for d in ("nltk_data", "share/nltk_data", "lib/nltk_data")]
    system = ["/usr/share/nltk_data", "/usr/local/share/nltk_data", "/usr/lib/nltk_data",
              "/usr/local/lib/nltk_data"]
    for base in [str(_default_target()), *env, *homes, *prefixes, *system]:
        folder = Path(base) / "corpora" / "wordnet"
        archive = Path(base) / "corpora" / "wordnet.zip"
        files = [folder / f for f in REQUIRED_FILES] if folder.is_dir() else []
        if folder.is_dir() and all(f.is_file() for f in files):
            stamp: list[Any] = [str(folder), nltk_version]
            for f in files:
                st = os.stat(f)
                stamp += [f.name, st.st_size, int(st.st_mtime)]
            return str(folder), stamp
        if archive.is_file():
            st = os.stat(archive)
            return str(archive), [str(archive), nltk_version, st.st_size, int(st.st_mtime)]
    from .wordnet import wordnet_reader

    wordnet_reader()  # not in the usual places: NLTK's own search, or its DataError with the steps
    import nltk  # type: ignore[import-untyped]

    root = Path(str(nltk.data.find("corpora/wordnet")))
    return str(root), [str(root), nltk_version]


def _build(wn: Any, source: str) -> WordNetGraph:
    """Read the graph out of NLTK's reader (about 15 s, most of it NLTK parsing the files)."""
    synsets = list(wn.all_synsets())
    n = len(synsets)
    key = {(s._pos if s._pos != "s" else "a", s._offset): i for i, s in enumerate(synsets)}
    names = [s._name for s in synsets]
    pos = np.array([s._pos for s in synsets], dtype="<U1")
    lexnum = {name: num for num, name, _ in _lexnames()}
    lexname = np.array([lexnum.get(s._lexname, -1) for s in synsets], dtype=np.int16)
    rows, cols = [], []
    for i, s in enumerate(synsets):
        for sym in ("@", "@i"):
            for p, off in s._pointers.get(sym, ()):
                rows.append(i)
                cols.append(key[(p if p != "s" else "a", off)])
    P = sp.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    P.sum_duplicates()
    P.data[:] = 1
    A = _ancestor_distances(P)
    ecc = (np.maximum.reduceat(A.data, A.indptr[:-1]) - 1).astype(np.int16)
    is_root = np.diff(P.indptr) == 0
    # min_depth: distance to the nearest root among the ancestors.
    rooted = A.copy()
    rooted.data = np.where(is_root[A.indices], A.data, np.iinfo(np.int16).max).astype(np.int16)
    min_depth = (np.minimum.reduceat(rooted.data, rooted.indptr[:-1]) - 1).astype(np.int16)
    max_depth = _longest_paths(P)
    order = np.argsort(np.array(names, dtype=object), kind="stable")
    name_rank = np.empty(n, dtype=np.int64)
    name_rank[order] = np.arange(n)
    lch_depth: dict[str, int] = {}
    for p in POS_TAGS:
        members = (pos == p) | ((p == "a") & (pos == "s"))  # all_synsets('a') yields satellites
        lch_depth[p] = int(max_depth[members].max()) + (0 if p == "n" else 1)
    lemma_index: dict[str, np.ndarray] = {}
    for lemma, by_pos in wn._lemma_pos_offset_map.items():
        ids = [key[(p, off)] for p in ("n", "v", "a", "r") for off in by_pos.get(p, ())]
        lemma_index[lemma] = np.array(ids, dtype=np.int64)
    return WordNetGraph(
        names=names, pos=pos, lexname=lexname, definitions=[s.definition() for s in synsets],
        lemmas=[tuple(lm._name for lm in s._lemmas) for s in synsets], parents=P, ancestors=A,
        ecc=ecc, min_depth=min_depth, max_depth=max_depth, name_rank=name_rank,
        lch_depth=lch_depth, lemma_index=lemma_index, source=source,
    )


def _lexnames() -> tuple[tuple[int, str, int], ...]:
    from .wordnet import LEXNAMES

    return LEXNAMES


def _ancestor_distances(P: sp.csr_matrix) -> sp.csr_matrix:
    """Shortest upward distances ``d + 1`` to every ancestor (breadth-first sparse frontier).

    Shapes:
        P: [n, n] parent indicator; returns [n, n] int16
    """
    n = P.shape[0]
    eye = sp.identity(n, dtype=np.int32, format="csr")
    dist = eye.copy()
    reached = eye.copy()
    frontier = eye.copy()
    Pi = P.astype(np.int32)
    for k in range(1, 1000):
        nxt = (frontier @ Pi).tocsr()
        nxt.data[:] = 1
        nxt = (nxt - nxt.multiply(reached)).tocsr()  # drop what a shorter path reached
        nxt.eliminate_zeros()
        if nxt.nnz == 0:
            break
        reached = (reached + nxt).tocsr()
        dist = (dist + nxt * (k + 1)).tocsr()
        frontier = nxt
    else:  # pragma: no cover - WordNet 3.0 is acyclic and ~20 deep
        raise DataError("WordNet's hypernym graph did not converge: it has a cycle.")
    dist = dist.astype(np.int16).tocsr()
    dist.sort_indices()
    if int(np.diff(dist.indptr).max()) >= 2**_SHIFT:
        raise DataError(f"a synset has {int(np.diff(dist.indptr).max())} ancestors; the exact "
                        f"encoding supports fewer than {2**_SHIFT}.")
    return dist


def _longest_paths(P: sp.csr_matrix) -> np.ndarray:
    """NLTK's ``max_depth``: the longest hypernym path to a root ([n] int16)."""
    n = P.shape[0]
    md = np.zeros(n, dtype=np.int64)
    has = np.diff(P.indptr) > 0
    starts = P.indptr[:-1][has]
    for _ in range(1000):
        par = np.maximum.reduceat(md[P.indices], starts) + 1 if starts.size else np.zeros(0)
        new = md.copy()
        new[has] = par
        if np.array_equal(new, md):
            return md.astype(np.int16)
        md = new
    raise DataError("WordNet's hypernym graph has a cycle.")  # pragma: no cover


# --------------------------------------------------------------------------- cache
def _save(g: WordNetGraph, path: Path) -> None:
    from ..utils import atomic_write_bytes

    nb, no = _pack(g.names)
    db, do = _pack(g.definitions)
    lb, lo = _pack(["\t".join(x) for x in g.lemmas])
    keys = sorted(g.lemma_index)
    kb, ko = _pack(keys)
    lens = np.array([g.lemma_index[k].size for k in keys], dtype=np.int64)
    flat = np.concatenate([g.lemma_index[k] for k in keys]) if keys else np.zeros(0, np.int64)
    buf = io.BytesIO()
    np.savez(
        buf, names_b=nb, names_o=no, defs_b=db, defs_o=do, lem_b=lb, lem_o=lo, key_b=kb, key_o=ko,
        key_len=lens, key_ids=flat, pos=g.pos, lexname=g.lexname,
        p_indptr=g.parents.indptr, p_indices=g.parents.indices,
        a_indptr=g.ancestors.indptr, a_indices=g.ancestors.indices, a_data=g.ancestors.data,
        ecc=g.ecc, min_depth=g.min_depth, max_depth=g.max_depth, name_rank=g.name_rank,
        lch=np.array([g.lch_depth[p] for p in POS_TAGS], dtype=np.int64),
        source=np.frombuffer(g.source.encode("utf-8"), dtype=np.uint8),
    )
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path) -> WordNetGraph:
    z = np.load(path, allow_pickle=False)
    n = z["pos"].size
    keys = _unpack(z["key_b"], z["key_o"])
    bounds = np.concatenate([[0], np.cumsum(z["key_len"])])
    flat = z["key_ids"]
    P = sp.csr_matrix((np.ones(z["p_indices"].size, dtype=np.int8), z["p_indices"], z["p_indptr"]),
                      shape=(n, n))
    A = sp.csr_matrix((z["a_data"], z["a_indices"], z["a_indptr"]), shape=(n, n))
    return WordNetGraph(
        names=_unpack(z["names_b"], z["names_o"]), pos=z["pos"], lexname=z["lexname"],
        definitions=_unpack(z["defs_b"], z["defs_o"]),
        lemmas=[tuple(x.split("\t")) for x in _unpack(z["lem_b"], z["lem_o"])],
        parents=P, ancestors=A, ecc=z["ecc"], min_depth=z["min_depth"], max_depth=z["max_depth"],
        name_rank=z["name_rank"], lch_depth=dict(zip(POS_TAGS, z["lch"].tolist(), strict=True)),
        lemma_index={k: flat[bounds[i] : bounds[i + 1]] for i, k in enumerate(keys)},
        source=z["source"].tobytes().decode("utf-8"),
    )


def wordnet_graph(*, cache: bool = True) -> WordNetGraph:
    """The :class:`WordNetGraph` of the installed WordNet, built once and cached.

    The first call in a process reads ``<cache>/wordnet/graph-<fingerprint>.npz`` (under a
    second) or, when absent, loads WordNet through NLTK and builds it (about 30 s) and
    stores it. The fingerprint covers the WordNet files, so a different installation gets
    its own graph. Raises :class:`DataError` with installation steps when WordNet is missing.
    """
    from ..utils import cache_dir, stable_hash

    root, stamp = _wordnet_files()
    digest = stable_hash(_CACHE_VERSION, *stamp)
    with _LOCK:
        if digest in _GRAPHS:
            return _GRAPHS[digest]
        path = cache_dir("wordnet") / f"graph-{digest}.npz"
        g = None
        if cache and path.exists():
            try:
                g = _load(path)
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)
        if g is None:
            from .wordnet import wordnet_reader

            wn = wordnet_reader()
            g = _build(wn, f"{root} (WordNet {wn.get_version()})")
            if cache:
                _save(g, path)
        _GRAPHS[digest] = g
        return g


# --------------------------------------------------------------------------- public API
def pair_similarity(a: Sequence[Any] | np.ndarray, b: Sequence[Any] | np.ndarray,
                    measure: str = "path",
                    simulate_root: bool = True) -> np.ndarray:
    """NLTK's ``a[i].<measure>_similarity(b[i], simulate_root=...)`` for every ``i``, exactly.

    Args:
        a, b: equal-length sequences of synset names (``"dog.n.01"``), NLTK ``Synset``
            objects or synset ids of :func:`wordnet_graph`.
        measure: ``"path"``, ``"wup"`` (Wu-Palmer) or ``"lch"`` (Leacock-Chodorow).
        simulate_root: NLTK's flag (default True, as in NLTK): a fake root joins the
            separate verb, adjective and adverb trees.

    Returns:
        float64 array, NaN where NLTK returns ``None`` (no path) or raises (``lch`` across
        parts of speech).

    Shapes:
        a, b: [n]; returns: [n]

    Example:
        >>> pair_similarity(["dog.n.01"], ["cat.n.01"])  # doctest: +SKIP
        array([0.2])
    """
    _check_measure(measure)
    g = wordnet_graph()
    ia, ib = g.ids(a, "a"), g.ids(b, "b")
    if ia.shape != ib.shape:
        raise ShapeError(f"a and b must have the same length, got {ia.size} and {ib.size}.")
    if ia.size == 0:
        return np.zeros(0, dtype=np.float64)
    return g.similarity(ia, ib, measure, simulate_root)


def similarity_matrix(synsets: Sequence[Any] | np.ndarray, measure: str = "path",
                      simulate_root: bool = True) -> np.ndarray:
    """All-pairs NLTK similarity: entry ``[i, j]`` is ``synsets[i].<measure>(synsets[j])``.

    ``path`` and ``lch`` come from one sparse product (3,000 synsets in about a second);
    ``wup`` needs a subsumer per pair: the pairs' kernel over the upper triangle. NaN as
    in :func:`pair_similarity`.

    Shapes:
        synsets: [n]; returns: [n, n] float64
    """
    _check_measure(measure)
    g = wordnet_graph()
    ids = g.ids(synsets)
    n = ids.size
    if n == 0:
        return np.zeros((0, 0), dtype=np.float64)
    nr = g.needs_root[ids]
    if measure == "wup":
        # Wu-Palmer is symmetric unless one synset of the pair is an ancestor of the other
        # (then which one comes first decides a tie): compute the upper triangle, mirror it,
        # and recompute the reverse order only for those pairs.
        iu, ju = np.triu_indices(n, k=1)
        out = np.empty((n, n), dtype=np.float64)
        upper = g.similarity(ids[iu], ids[ju], "wup", simulate_root)
        out[iu, ju] = upper
        out[ju, iu] = upper
        sub = g.ancestors[ids][:, ids].tocoo()  # (i, j): synset j is an ancestor of synset i
        ri, rj = np.minimum(sub.row, sub.col), np.maximum(sub.row, sub.col)
        keep = ri != rj
        ri, rj = ri[keep], rj[keep]
        if ri.size:
            out[rj, ri] = g.similarity(ids[rj], ids[ri], "wup", simulate_root)
        diag = np.arange(n)
        out[diag, diag] = g.similarity(ids, ids, "wup", simulate_root)
        return out
    if measure == "path":
        root = bool(simulate_root) & (nr[:, None] | nr[None, :])
        d = g.distance_matrix(ids, root)
        return np.where(d >= 0, 1.0 / np.maximum(d + 1.0, 1.0), np.nan)
    root = bool(simulate_root) & np.broadcast_to(nr[:, None], (n, n))
    d = g.distance_matrix(ids, root)
    p = g.pos[ids]
    dep = np.array([g.lch_depth[x] for x in p.tolist()], dtype=np.float64)
    ok = (d >= 0) & (p[:, None] == p[None, :]) & (dep[:, None] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = -np.log((d + 1.0) / (2.0 * dep[:, None]))
    return np.where(ok, val, np.nan)
