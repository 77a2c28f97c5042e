"""Does a model's geometry mirror WordNet's? Relational alignment with nulls and intervals.

:func:`relational_alignment` scores an embedding matrix ``X`` (one row per synset) against
WordNet; :func:`align_representations` does the same for several matrices of the same
synsets at once (a model's static and contextual vectors and the TF-IDF baseline) with
*paired* intervals for their differences. Every measure has a null and an interval:

* **Pearson and Spearman** of the pair cosine against each WordNet similarity over all
  pairs ``i < j`` of distinct synsets; a **Mantel** permutation p-value (synset labels
  permuted against the embedding rows, two-sided, add-one) and a **bootstrap over
  synsets**: synsets are resampled with replacement and the statistic recomputed over the
  pairs of the resample, leaving out pairs of two copies of one synset (they share their
  tokens). A resample gives pair ``{i, j}`` the weight ``w_i w_j`` (``w`` the multinomial
  counts), so every replicate is computed exactly from a few matrix products, with no
  pair list. Spearman's replicates use the ranks of the full pair set (re-ranking each
  resample would cost a sort per replicate; the interval is that of the rank correlation
  at fixed ranks);
* **band means**: mean cosine of the pairs in each path-similarity band beside the mean
  over all pairs (a model whose vectors share one direction has high cosines everywhere;
  the lift over the global mean is what says something), with bootstrap intervals;
* **hypernym-chain decay**: mean cosine between a synset and its ancestors at 1, 2, ...
  hops (shortest upward distance), against the global mean;
* **lexname clustering**: within- minus between-lexicographer-file mean cosine against a
  label-permutation null;
* **pentachoron CV** of the rows against a Gaussian with the same mean and covariance
  (:func:`hyperlens.functional.geometry.simplex_volume_cv`);
* the **simulate_root share**: the share of pairs (and of high-similarity pairs) whose
  path similarity exists or changes only through NLTK's fake root.

:func:`stability` redraws the synsets ``n_seeds`` times and reports t-intervals over seeds
(:func:`hyperlens.functional.stats.t_interval`).

Shapes:
    X: [n, d] dense or scipy sparse (TF-IDF); synsets: [n]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..data.wordnet_similarity import WordNetGraph, similarity_matrix, wordnet_graph
from ..errors import InputError, ShapeError
from ..functional import stats
from ..utils import derive_seed

__all__ = [
    "PATH_BANDS",
    "cosine_matrix",
    "relational_alignment",
    "align_representations",
    "chain_decay",
    "lexname_clustering",
    "simulate_root_share",
    "stability",
    "stability_redraw",
    "stability_summary",
    "draw_rows",
]

#: Path-similarity bands of the seed notebook: (low, high], highest first.
PATH_BANDS: tuple[tuple[float, float], ...] = (
    (0.9, 1.0), (0.5, 0.9), (0.25, 0.5), (0.1, 0.25), (0.05, 0.1), (0.0, 0.05))
_BOOT_CHUNK = 100  # bootstrap weight vectors per matrix product


# --------------------------------------------------------------------------- helpers
def cosine_matrix(X: Any) -> np.ndarray:
    """All-pairs cosine (float64 ``[n, n]``, zero diagonal) of dense or sparse rows; zero rows
    get cosine 0 with everything."""
    import scipy.sparse as sp  # type: ignore[import-untyped]

    if sp.issparse(X):
        Xc = sp.csr_matrix(X, dtype=np.float64)
        norms = np.sqrt(np.asarray(Xc.multiply(Xc).sum(axis=1)).ravel())
        inv = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-300), 0.0)
        U = sp.diags(inv) @ Xc
        C = np.asarray((U @ U.T).todense(), dtype=np.float64)
    else:
        A = np.asarray(X, dtype=np.float64)
        if A.ndim != 2:
            raise ShapeError(f"X must be a matrix [n, d], got shape {A.shape}.")
        if not np.isfinite(A).all():
            raise InputError("X holds NaN or Inf; clean the embeddings first.")
        norms = np.linalg.norm(A, axis=1)
        U = A / np.where(norms > 0, norms, 1.0)[:, None]
        C = U @ U.T
    np.fill_diagonal(C, 0.0)
    return C


def _upper_mirror(S: np.ndarray) -> np.ndarray:
    """``S`` with its lower triangle replaced by the upper one (pair {i, j} read as i < j)."""
    out = np.triu(S, 1)
    return out + out.T


def _ranks_sym(M: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Average ranks of the valid upper-triangle entries, mirrored; 0 elsewhere."""
    from scipy.stats import rankdata

    n = M.shape[0]
    iu, ju = np.triu_indices(n, 1)
    ok = valid[iu, ju]
    R = np.zeros_like(M, dtype=np.float64)
    r = rankdata(M[iu[ok], ju[ok]])
    R[iu[ok], ju[ok]] = r
    return R + R.T


def _weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Multinomial resample counts ``[n_boot, n]`` (synsets drawn with replacement)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    W = np.zeros((n_boot, n), dtype=np.float64)
    rows = np.repeat(np.arange(n_boot), n)
    np.add.at(W, (rows, idx.ravel()), 1.0)
    return W


class _Quad:
    """``q(M)[b] = sum_{i<j} w_bi w_bj M_ij`` for symmetric zero-diagonal ``M``, cached."""

    def __init__(self, W: np.ndarray) -> None:
        self.W = W
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, M: np.ndarray, key: str) -> np.ndarray:
        k = key
        if k not in self._cache:
            out = np.empty(self.W.shape[0])
            for s in range(0, self.W.shape[0], _BOOT_CHUNK):
                Wc = self.W[s : s + _BOOT_CHUNK]
                out[s : s + _BOOT_CHUNK] = 0.5 * np.einsum("bn,bn->b", Wc @ M, Wc)
            self._cache[k] = out
        return self._cache[k]


def _corr_from_sums(N: Any, sa: Any, sb: Any, saa: Any, sbb: Any, sab: Any) -> Any:
    cov = sab / N - (sa / N) * (sb / N)
    va = saa / N - (sa / N) ** 2
    vb = sbb / N - (sb / N) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt(va * vb)


class _PairSet:
    """One similarity matrix over ``n`` synsets: validity mask, centred values, ranks."""

    def __init__(self, S: np.ndarray) -> None:
        S = _upper_mirror(S)
        n = S.shape[0]
        valid = np.isfinite(S)
        np.fill_diagonal(valid, False)
        self.V = valid.astype(np.float64)
        self.n_pairs = int(valid.sum() // 2)
        iu, ju = np.triu_indices(n, 1)
        vals = S[iu, ju][valid[iu, ju]]
        self.mean = float(vals.mean()) if vals.size else 0.0
        self.S = np.where(valid, S - self.mean, 0.0)
        self.raw = np.where(valid, S, np.nan)
        R = _ranks_sym(np.where(valid, S, 0.0), valid)
        self.rmean = (self.n_pairs + 1) / 2.0
        self.R = np.where(valid, R - self.rmean, 0.0)
        self.valid = valid
        self.all_valid = bool(valid.sum() == n * (n - 1))


def _stat_sums(q: _Quad, V: np.ndarray, S: np.ndarray, A: np.ndarray, skey: str,
               akey: str, vkey: str) -> tuple[Any, ...]:
    """Weighted sums for the correlation of ``A`` with ``S`` (both centred and masked by ``V``).

    Every matrix is cached under an explicit key (``skey`` for the similarity side, ``akey``
    for the representation side), never by object identity."""
    return (q(V, "valid." + vkey), q(A, akey + ".a"), q(S, skey + ".s"), q(A * A, akey + ".aa"),
            q(S * S, skey + ".ss"), q(A * S, akey + skey + ".as"))


# --------------------------------------------------------------------------- alignment
def align_representations(
    reps: Mapping[str, Any],
    synsets: Sequence[Any] | np.ndarray,
    *,
    measures: Sequence[str] = ("path", "wup"),
    n_perm: int = 199,
    n_boot: int = 300,
    seed: int = 0,
    simulate_root: bool = True,
    baseline: str | None = None,
    similarities: Mapping[str, np.ndarray] | None = None,
    mantel_max: int = 600,
    n_simplices: int = 1000,
    pentachoron: Sequence[str] | None = None,
    max_hops: int = 6,
    graph: WordNetGraph | None = None,
    keep_replicates: bool = False,
) -> dict[str, Any]:
    """Relational alignment of several representations of the same synsets.

    Args:
        reps: name -> ``[n, d]`` matrix (dense or sparse), rows aligned with ``synsets``.
        synsets: synset names, ``Synset`` objects or graph ids ``[n]``.
        measures: WordNet similarities to correlate with (``path``, ``wup``, ``lch``).
        n_perm: Mantel and label permutations; n_boot: bootstrap resamples of synsets.
        baseline: a key of ``reps`` (the TF-IDF baseline): each other representation gets
            its correlation difference with a paired bootstrap interval (same resamples).
        similarities: precomputed ``similarity_matrix`` results per measure (``[n, n]``).
        mantel_max: the Mantel test runs on a seeded subset of at most this many synsets.
        pentachoron: representations whose pentachoron CV is measured (default: dense ones).
        keep_replicates: also return the bootstrap replicates of every correlation under
            ``"replicates"`` (``{name: {"path.pearson": [n_boot], ...}}``, one shared set of
            resamples for all representations), so a caller can form paired differences
            between any two of them.

    Returns:
        ``{"n", "measures", "reps": {name: {...}}, "vs_baseline": {...}, "simulate_root": {...}}``
        with every interval as an :class:`~hyperlens.functional.stats.Estimate` dict.
    """
    g = graph or wordnet_graph()
    ids = g.ids(synsets)
    n = ids.size
    if n < 4:
        raise InputError(f"synsets must hold at least 4 synsets for pair statistics, got {n}.")
    _check_reps(reps, ids, baseline)
    ss = np.random.SeedSequence(int(seed)).generate_state(4).tolist()
    sims = {m: (similarities[m] if similarities and m in similarities
                else similarity_matrix(ids, m, simulate_root=simulate_root)) for m in measures}
    pairsets = {m: _PairSet(S) for m, S in sims.items()}
    W = _weights(n, n_boot, ss[0])
    q = _Quad(W)
    offdiag = np.ones((n, n))
    np.fill_diagonal(offdiag, 0.0)
    cos = {name: cosine_matrix(X) for name, X in reps.items()}
    out: dict[str, Any] = {"n": n, "measures": list(measures), "simulate_root_flag": simulate_root,
                           "reps": {}, "vs_baseline": {}}
    reps_boot: dict[str, dict[str, np.ndarray]] = {}
    mantel_rows = np.sort(np.random.default_rng(ss[1]).choice(n, min(n, mantel_max), replace=False))
    mantel = {m: _mantel(cos, ps, mantel_rows, n_perm, ss[2]) for m, ps in pairsets.items()}
    for name, C in cos.items():
        res: dict[str, Any] = {}
        boots: dict[str, np.ndarray] = {}
        iu, ju = np.triu_indices(n, 1)
        global_mean = float(C[iu, ju].mean())
        gm = stats.from_replicates(global_mean, q(C, name + ".c") / q(offdiag, "offdiag"))
        res["mean_cosine"] = gm.as_dict()
        shared: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for m, ps in pairsets.items():
            # Measures without missing pairs share the centred cosines and their ranks.
            mkey = "all" if ps.all_valid else m
            if mkey not in shared:
                A = np.where(ps.valid, C - (C[ps.valid].mean() if ps.n_pairs else 0.0), 0.0)
                RA = np.where(ps.valid, _ranks_sym(C, ps.valid) - ps.rmean, 0.0)
                shared[mkey] = (A, RA)
            A, RA = shared[mkey]
            point_p = _corr_from_sums(*[float(v) for v in (
                ps.V.sum() / 2, A.sum() / 2, ps.S.sum() / 2, (A * A).sum() / 2,
                (ps.S * ps.S).sum() / 2, (A * ps.S).sum() / 2)])
            point_s = _corr_from_sums(*[float(v) for v in (
                ps.V.sum() / 2, RA.sum() / 2, ps.R.sum() / 2, (RA * RA).sum() / 2,
                (ps.R * ps.R).sum() / 2, (RA * ps.R).sum() / 2)])
            vkey = "all" if ps.all_valid else m
            bp = _corr_from_sums(*_stat_sums(q, ps.V, ps.S, A, m, f"{name}.{vkey}.p", vkey))
            bs = _corr_from_sums(*_stat_sums(q, ps.V, ps.R, RA, m + ".rank", f"{name}.{vkey}.s",
                                             vkey))
            boots[f"{m}.pearson"], boots[f"{m}.spearman"] = bp, bs
            p_perm = mantel[m][name]
            res[m] = {
                "pearson": stats.from_replicates(point_p, bp).as_dict(),
                "spearman": stats.from_replicates(point_s, bs).as_dict(),
                "mantel_p_pearson": p_perm[0], "mantel_p_spearman": p_perm[1],
                "mantel_n": int(mantel_rows.size), "n_pairs": ps.n_pairs,
            }
            if m == "path":
                res["bands"] = _bands(C, ps, q, name, global_mean)
        res["chain_decay"] = chain_decay(C, ids, graph=g, max_hops=max_hops, seed=ss[3])
        # The permutation null runs on the Mantel subset (it needs a product per permutation).
        res["lexnames"] = lexname_clustering(C[np.ix_(mantel_rows, mantel_rows)],
                                             g.lexname[ids[mantel_rows]], n_perm=n_perm,
                                             seed=ss[3])
        dense = not _is_sparse(reps[name])
        if (pentachoron is None and dense) or (pentachoron is not None and name in pentachoron):
            res["pentachoron"] = _pentachoron(reps[name], n_simplices, ss[3])
        out["reps"][name] = res
        reps_boot[name] = boots
    if baseline is not None:
        out["vs_baseline"] = _vs_baseline(out["reps"], reps_boot, baseline)
    out["baseline"] = baseline
    if keep_replicates:
        out["replicates"] = reps_boot
    out["simulate_root"] = simulate_root_share(
        ids, graph=g, path=sims.get("path") if simulate_root else None)
    out["pos_counts"] = {p: int((g.pos[ids] == p).sum()) for p in ("n", "v", "a", "s", "r")}
    return out


def _check_reps(reps: Mapping[str, Any], ids: np.ndarray, baseline: str | None) -> None:
    n = ids.size
    if len(set(ids.tolist())) != n:
        raise InputError("synsets holds repeated synsets; keep each synset once (pairs of one "
                         "synset with itself would share their tokens).")
    for name, X in reps.items():
        if X.shape[0] != n:
            raise ShapeError(f"reps[{name!r}] has {X.shape[0]} rows but synsets has {n}.")
    if baseline is not None and baseline not in reps:
        raise InputError(f"baseline={baseline!r} is not one of reps {list(reps)}.")


def _vs_baseline(res: dict[str, Any], boot: dict[str, dict[str, np.ndarray]],
                 baseline: str) -> dict[str, Any]:
    """Each representation's correlations minus the baseline's, paired over the same resamples."""
    out: dict[str, Any] = {}
    for name in res:
        if name == baseline:
            continue
        diff: dict[str, Any] = {}
        for key, vals in boot[name].items():
            m, stat = key.split(".")
            point = res[name][m][stat]["value"] - res[baseline][m][stat]["value"]
            diff[key] = stats.from_replicates(point, vals - boot[baseline][key],
                                              method="paired bootstrap over synsets").as_dict()
        out[name] = diff
    return out


def _is_sparse(X: Any) -> bool:
    import scipy.sparse as sp

    return bool(sp.issparse(X))


def relational_alignment(X: Any, synsets: Sequence[Any] | np.ndarray, *,
                         measures: Sequence[str] = ("path", "wup"), n_perm: int = 199,
                         n_boot: int = 300, seed: int = 0, simulate_root: bool = True,
                         baseline: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Score one embedding matrix against WordNet (see the module docstring).

    ``baseline`` (optional) is a second matrix of the same synsets (the TF-IDF of their
    definitions); the result then has paired differences under ``"vs_baseline"``.
    Returns the representation's result dict (correlations with Mantel p and bootstrap CI
    per measure, ``bands``, ``chain_decay``, ``lexnames``, ``pentachoron``, ``mean_cosine``)
    plus ``n``, ``simulate_root`` and ``vs_baseline``.

    Example:
        >>> r = relational_alignment(X, ["dog.n.01", ...], n_boot=200)  # doctest: +SKIP
        >>> r["path"]["spearman"]["value"], r["path"]["mantel_p_spearman"]  # doctest: +SKIP
    """
    reps = {"X": X} if baseline is None else {"X": X, "baseline": baseline}
    res = align_representations(reps, synsets, measures=measures, n_perm=n_perm, n_boot=n_boot,
                                seed=seed, simulate_root=simulate_root,
                                baseline=None if baseline is None else "baseline", **kwargs)
    out = dict(res["reps"]["X"])
    out.update({"n": res["n"], "simulate_root": res["simulate_root"],
                "vs_baseline": res["vs_baseline"].get("X", {}), "pos_counts": res["pos_counts"]})
    if baseline is not None:
        out["baseline"] = res["reps"]["baseline"]
    return out


def _mantel(cos: Mapping[str, np.ndarray], ps: _PairSet, rows: np.ndarray, n_perm: int,
            seed: int) -> dict[str, tuple[float, float]]:
    """Two-sided Mantel p-values (Pearson, Spearman) of every representation, on the synset
    subset ``rows``; the same permutations serve every representation."""
    rng = np.random.default_rng(seed)
    ix = np.ix_(rows, rows)
    m = rows.size
    V = ps.valid[ix]
    Vf = V.astype(np.float64)
    S = np.where(V, ps.raw[ix], 0.0)
    R = _ranks_sym(S, V)
    full = ~np.eye(m, dtype=bool)
    sides = {name: (C[ix], _ranks_sym(C[ix], full)) for name, C in cos.items()}

    def corr(Sm: np.ndarray, Vm: np.ndarray, Am: np.ndarray) -> float:
        AV = Am * Vm
        return float(_corr_from_sums(Vm.sum(), AV.sum(), (Sm * Vm).sum(), (AV * Am).sum(),
                                     (Sm * Sm * Vm).sum(), (AV * Sm).sum()))

    obs = {name: (corr(S, Vf, Cs), corr(R, Vf, RC)) for name, (Cs, RC) in sides.items()}
    nulls = {name: np.empty((n_perm, 2)) for name in sides}
    if bool(V[full].all()):
        # Every pair has a similarity: permuting the labels keeps the similarities' mean and
        # spread, so only the cross term changes; correlations are centred dot products.
        def centred(M: np.ndarray) -> np.ndarray:
            c = np.where(full, M - M[full].mean(), 0.0)
            norm = np.sqrt((c * c).sum())
            return c / norm if norm > 0 else c  # a constant similarity: no correlation

        Sc, Rc = centred(S), centred(R)
        flat = {name: (centred(Cs).ravel(), centred(RC).ravel())
                for name, (Cs, RC) in sides.items()}
        for k in range(n_perm):
            p = rng.permutation(m)
            pix = np.ix_(p, p)
            Sp, Rp = Sc[pix].ravel(), Rc[pix].ravel()
            for name, (a, r) in flat.items():
                # einsum, not BLAS: a threaded dot of this size only adds contention
                nulls[name][k, 0] = float(np.einsum("i,i->", a, Sp))
                nulls[name][k, 1] = float(np.einsum("i,i->", r, Rp))
    else:
        for k in range(n_perm):
            p = rng.permutation(m)
            pix = np.ix_(p, p)
            Vp, Sp, Rp = Vf[pix], S[pix], R[pix]
            for name, (Cs, RC) in sides.items():
                nulls[name][k, 0] = corr(Sp, Vp, Cs)
                nulls[name][k, 1] = corr(Rp, Vp, RC)
    out: dict[str, tuple[float, float]] = {}
    for name, (op, osp) in obs.items():
        if not (np.isfinite(op) and np.isfinite(osp)):
            out[name] = (float("nan"), float("nan"))
            continue
        out[name] = (stats.permutation_pvalue(op, nulls[name][:, 0], "two-sided"),
                     stats.permutation_pvalue(osp, nulls[name][:, 1], "two-sided"))
    return out


def _bands(C: np.ndarray, ps: _PairSet, q: _Quad, name: str, global_mean: float) -> list[dict]:
    rows = []
    S = ps.raw
    for lo, hi in PATH_BANDS:
        mask = ps.valid & (S > lo) & (S <= hi)
        cnt = int(mask.sum() // 2)
        if cnt == 0:
            rows.append({"band": [lo, hi], "n_pairs": 0, "mean": None, "lift": None})
            continue
        Mf = mask.astype(np.float64)
        point = float(C[mask].mean())
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = q(C * Mf, f"{name}.band{lo}") / q(Mf, f"band{lo}")
        est = stats.from_replicates(point, reps)
        rows.append({"band": [lo, hi], "n_pairs": cnt, "mean": est.as_dict(),
                     "lift": point - global_mean})
    return rows


def _pentachoron(X: Any, n_simplices: int, seed: int) -> dict[str, Any]:
    from ..functional.geometry import simplex_volume_cv

    try:
        r = simplex_volume_cv(np.asarray(X, dtype=np.float32), k=4, n_samples=n_simplices,
                              seed=seed, null="gaussian", n_boot=300)
    except InputError as exc:
        return {"available": False, "note": str(exc)}
    d = r.as_dict()
    d["available"] = True
    return d


# --------------------------------------------------------------------------- structure
def _mean_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``mean(a) - mean(b)`` per resample: ``[B, n_a]``, ``[B, n_b]`` -> ``[B]``."""
    return a.mean(-1) - b.mean(-1)


def chain_decay(C: np.ndarray, ids: np.ndarray, *, graph: WordNetGraph | None = None,
                max_hops: int = 6, n_boot: int = 300, seed: int = 0) -> dict[str, Any]:
    """Mean cosine between each synset and its ancestors among ``ids``, by hop distance.

    Hops are NLTK's shortest upward distances (hypernyms and instance hypernyms). Each hop
    has a bootstrap interval over its (synset, ancestor) pairs and its lift over the mean
    cosine of all pairs; ``decay`` is hop 1 minus the deepest hop with at least 10 pairs.
    """
    g = graph or wordnet_graph()
    sub = g.ancestors[ids][:, ids].tocoo()
    hop = sub.data.astype(np.int64) - 1
    keep = (hop >= 1) & (hop <= max_hops)
    i, j, hop = sub.row[keep], sub.col[keep], hop[keep]
    n = ids.size
    iu, ju = np.triu_indices(n, 1)
    global_mean = float(C[iu, ju].mean())
    rows = []
    vals_by_hop: dict[int, np.ndarray] = {}
    for h in range(1, max_hops + 1):
        sel = hop == h
        v = C[i[sel], j[sel]]
        if v.size >= 2:
            est = stats.bootstrap_ci(v, n_boot=n_boot, seed=derive_seed(seed, "hop", h))
            rows.append({"hop": h, "n_pairs": int(v.size), "mean": est.as_dict(),
                         "lift": est.value - global_mean})
            vals_by_hop[h] = v
        else:
            rows.append({"hop": h, "n_pairs": int(v.size), "mean": None, "lift": None})
    deep = [h for h, v in vals_by_hop.items() if v.size >= 10 and h > 1]
    decay = None
    if 1 in vals_by_hop and deep:
        a, b = vals_by_hop[1], vals_by_hop[max(deep)]
        est = stats.bootstrap_ci((a, b), _mean_difference, n_boot=n_boot, seed=seed,
                                 vectorized=True, paired=False)
        decay = {"from_hop": 1, "to_hop": int(max(deep)), "value": est.as_dict()}
    return {"global_mean": global_mean, "hops": rows, "decay": decay,
            "n_pairs": int(i.size)}


def lexname_clustering(C: np.ndarray, labels: np.ndarray, *, n_perm: int = 199,
                       seed: int = 0, top: int = 10) -> dict[str, Any]:
    """Within- minus between-lexname mean cosine against a label-permutation null.

    Shapes:
        C: [n, n] cosine with zero diagonal; labels: [n] lexicographer file numbers
    """
    labels = np.asarray(labels)
    uniq, lab = np.unique(labels, return_inverse=True)
    n, k = lab.size, uniq.size
    if k < 2:
        return {"available": False, "note": "fewer than two lexicographer files among the synsets"}
    C32 = C.astype(np.float32)
    total = float(C32.sum(dtype=np.float64))
    n_all = n * (n - 1)

    def gap(lb: np.ndarray) -> float:
        G = np.zeros((n, k), dtype=np.float32)
        G[np.arange(n), lb] = 1.0
        within = float(((C32 @ G) * G).sum(dtype=np.float64))
        counts = np.bincount(lb, minlength=k).astype(np.float64)
        n_w = float((counts * (counts - 1)).sum())
        if n_w == 0 or n_w == n_all:
            return float("nan")
        return within / n_w - (total - within) / (n_all - n_w)

    obs = gap(lab)
    rng = np.random.default_rng(seed)
    null = np.array([gap(rng.permutation(lab)) for _ in range(n_perm)])
    per = []
    counts = np.bincount(lab, minlength=k)
    iu, ju = np.triu_indices(n, 1)
    gmean = float(C[iu, ju].mean())
    for c in np.argsort(-counts)[:top].tolist():
        members = np.flatnonzero(lab == c)
        if members.size < 2:
            continue
        sub = C[np.ix_(members, members)]
        within = float(sub.sum() / (members.size * (members.size - 1)))
        per.append({"lexname": int(uniq[c]), "n": int(members.size), "within_mean": within,
                    "lift": within - gmean})
    return {"available": True, "gap": obs, "null_mean": float(np.nanmean(null)),
            "null_ci": [float(np.nanquantile(null, 0.025)), float(np.nanquantile(null, 0.975))],
            "p": stats.permutation_pvalue(obs, null, "greater") if np.isfinite(obs) else None,
            "n_perm": n_perm, "n_lexnames": int(k), "per_lexname": per}


def simulate_root_share(ids: np.ndarray, *, graph: WordNetGraph | None = None,
                        path: np.ndarray | None = None, high: float = 0.25) -> dict[str, Any]:
    """Share of pairs whose path similarity exists or differs only through the fake root.

    ``path`` is the simulate_root=True path matrix when already computed.
    """
    g = graph or wordnet_graph()
    P1 = path if path is not None else similarity_matrix(ids, "path", simulate_root=True)
    P0 = similarity_matrix(ids, "path", simulate_root=False)
    n = ids.size
    iu, ju = np.triu_indices(n, 1)
    a, b = P1[iu, ju], P0[iu, ju]
    via_root = ~(a == b)  # NaN without the root, or a shorter path through it
    hi = a >= high
    nonnoun = (g.pos[ids][iu] != "n") | (g.pos[ids][ju] != "n")
    return {"share_pairs": float(via_root.mean()),
            "share_high_pairs": float(via_root[hi].mean()) if hi.any() else None,
            "high_threshold": high, "n_high_pairs": int(hi.sum()),
            "share_pairs_with_non_noun": float(nonnoun.mean()),
            "share_high_pairs_with_non_noun": float(nonnoun[hi].mean()) if hi.any() else None}


# --------------------------------------------------------------------------- stability
def draw_rows(pos: np.ndarray, n: int, seed: int, *, stratify: bool = True) -> np.ndarray:
    """``n`` distinct rows, stratified by part of speech when ``stratify`` (sorted)."""
    pos = np.asarray(pos)
    total = pos.size
    rng = np.random.default_rng(seed)
    if n >= total:
        return np.arange(total)
    if not stratify:
        return np.sort(rng.choice(total, n, replace=False))
    groups = [np.flatnonzero(pos == p) for p in np.unique(pos)]
    quota = np.array([len(gr) for gr in groups], dtype=np.float64) * n / total
    take = np.floor(quota).astype(int)
    for k in np.argsort(-(quota - take))[: n - take.sum()]:
        take[k] += 1
    parts = [rng.choice(gr, t, replace=False) for gr, t in zip(groups, take, strict=True) if t]
    return np.sort(np.concatenate(parts))


def stability_redraw(reps: Mapping[str, np.ndarray], synsets: np.ndarray, *,
                     similarities: Mapping[str, np.ndarray], redraw: int, n_sample: int = 1000,
                     stratify: bool = True, seed: int = 0, n_simplices: int = 300,
                     graph: WordNetGraph | None = None) -> dict[str, float]:
    """The fast measures of one redraw of :func:`stability` (number ``redraw``).

    Redraw ``redraw`` draws its ``n_sample`` synsets from the stream
    ``derive_seed(seed, "redraw", redraw)``, so each redraw is a pure function of its
    arguments and redraws can run in any order or process. Returns ``{measure: value}``
    (NaN where a measure is undefined on the draw), always with the same keys.
    """
    from scipy.stats import rankdata

    from ..functional.geometry import simplex_volume_cv

    g = graph or wordnet_graph()
    ids = g.ids(synsets)
    pos = g.pos[ids]
    out: dict[str, float] = {}

    def add(key: str, v: float | None) -> None:
        out[key] = float("nan") if v is None else float(v)

    s = redraw
    rows = draw_rows(pos, n_sample, derive_seed(seed, "redraw", s), stratify=stratify)
    m = rows.size
    iu, ju = np.triu_indices(m, 1)
    sub_ids = ids[rows]
    sims = {k: S[np.ix_(rows, rows)][iu, ju] for k, S in similarities.items()}
    sranks = {k: rankdata(v[np.isfinite(v)]) for k, v in sims.items()}
    anc = g.ancestors[sub_ids][:, sub_ids].tocoo()
    hop = anc.data.astype(np.int64) - 1
    lab = np.unique(g.lexname[sub_ids], return_inverse=True)[1]
    for name, X in reps.items():
        Xr = X[rows]
        C = cosine_matrix(Xr)
        c = C[iu, ju]
        for k, v in sims.items():
            ok = np.isfinite(v)
            add(f"{name}.{k}.pearson", np.corrcoef(c[ok], v[ok])[0, 1])
            add(f"{name}.{k}.spearman", np.corrcoef(rankdata(c[ok]), sranks[k])[0, 1])
        if "path" in sims:
            v = sims["path"]
            hi, lo = v >= 0.25, v < 0.1
            add(f"{name}.band_high", c[hi].mean() if hi.any() else None)
            add(f"{name}.band_low", c[lo].mean() if lo.any() else None)
            both = hi.any() and lo.any()
            add(f"{name}.band_gap", c[hi].mean() - c[lo].mean() if both else None)
        add(f"{name}.mean_cosine", c.mean())
        for h in (1, 3, 5):
            sel = hop == h
            add(f"{name}.hop{h}", C[anc.row[sel], anc.col[sel]].mean() if sel.any() else None)
        counts = np.bincount(lab)
        G = np.zeros((m, counts.size))
        G[np.arange(m), lab] = 1.0
        within = float(((C @ G) * G).sum())
        n_w = float((counts * (counts - 1)).sum())
        n_all = m * (m - 1)
        add(f"{name}.lexname_gap", within / n_w - (C.sum() - within) / (n_all - n_w)
            if 0 < n_w < n_all else None)
        if not _is_sparse(X):
            try:
                cv = simplex_volume_cv(np.asarray(Xr, dtype=np.float32), k=4,
                                       n_samples=n_simplices, seed=s, n_boot=2)
                add(f"{name}.pentachoron_cv", cv.cv.value)
            except InputError:
                add(f"{name}.pentachoron_cv", None)
    return out


def stability_summary(redraws: Sequence[Mapping[str, float]], *, n_sample: int, pool: int,
                      stratify: bool = True) -> dict[str, Any]:
    """:func:`stability`'s report from its redraws (in redraw order): t-intervals over them."""
    per_seed: dict[str, list[float]] = {}
    for r in redraws:
        for k, v in r.items():
            per_seed.setdefault(k, []).append(float(v))
    summary = {k: stats.t_interval(v).as_dict() for k, v in per_seed.items()}
    return {"n_seeds": len(redraws), "n_sample": int(min(n_sample, pool)), "pool": int(pool),
            "stratified": stratify, "estimates": summary, "per_seed": per_seed}


def stability(reps: Mapping[str, np.ndarray], synsets: np.ndarray, *,
              similarities: Mapping[str, np.ndarray], n_seeds: int = 50, n_sample: int = 1000,
              stratify: bool = True, seed: int = 0, n_simplices: int = 300,
              graph: WordNetGraph | None = None) -> dict[str, Any]:
    """Fast measures over ``n_seeds`` independent redraws of ``n_sample`` synsets.

    Per seed: Pearson and Spearman per measure, high (path >= 0.25) and low (< 0.1) band
    means and their gap, hypernym-chain cosine at hops 1, 3 and 5, the lexname gap and the
    pentachoron CV; reported as t-intervals over seeds. ``similarities`` are the pool's
    ``[N, N]`` matrices per measure (rows aligned with ``synsets``), indexed per draw.
    Each redraw is :func:`stability_redraw`; :func:`stability_summary` pools them.
    """
    g = graph or wordnet_graph()
    redraws = [stability_redraw(reps, synsets, similarities=similarities, redraw=s,
                                n_sample=n_sample, stratify=stratify, seed=seed,
                                n_simplices=n_simplices, graph=g) for s in range(n_seeds)]
    return stability_summary(redraws, n_sample=n_sample, pool=len(g.ids(synsets)),
                             stratify=stratify)
