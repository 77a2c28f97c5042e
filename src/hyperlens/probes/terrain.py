"""The embedding terrain battery: the geometry of a model's token embeddings and hidden states.

One call, :func:`run_terrain`, measures for one model:

* **norms** of the token embedding rows (percentiles, zero rows, extreme tokens);
* **cosines** between token embeddings: mean and standard deviation over *all* pairs
  (exact, from the Gram matrix of unit rows), percentiles and a histogram from a seeded
  sample, the same after centring, and the isotropic reference ``1 / sqrt(d)``;
* **eigenspectrum** of the embedding covariance: participation ratio (PR), PR / d with a
  bootstrap interval, dimensions for 80/90/95/99 % of the variance, entropy effective rank
  (of the singular values, as in :mod:`hyperlens.functional.geometry`) and stable
  rank, against the *column-shuffled* null (same per-dimension variances, no correlation);
* **pentachoron volumes** (Cayley-Menger, k = 4): the coefficient of variation of the
  volumes of random 5-token simplices against a Gaussian with the same mean and
  covariance and an isotropic Gaussian with the same total variance, each with a bootstrap
  interval; the published 0.20-0.23 band and PR / d 0.53-0.56 band are checked, not assumed;
* **digit manifold**: correlation of ``|i - j|`` with the cosine of digit tokens ``i, j`` and
  the adjacency gap (adjacent minus non-adjacent mean cosine), each against a label
  permutation null; the same for the number words "zero" ... "nine";
* **semantic categories** from :mod:`hyperlens.probes.wordlists`: within- minus
  between-category cosine against a label permutation null, per-category lifts and the
  centroid cosine matrix;
* **special tokens**: norms, norm percentile, mean cosine to ordinary tokens, pairwise cosines;
* **Euclidean distances** between sampled tokens (mean, CV, percentiles, histogram);
* **layer evolution** over a text set: per layer, token norm, pairwise token cosine (all
  tokens and within a sentence), PR of token states and of mean-pooled sentence vectors;
* **position structure**: learned absolute position vectors (cosine against offset), T5
  relative attention buckets (bias against offset per head), or rotary embeddings (no
  learned position vectors; the analytic similarity against offset is shown as such).

Static models (word vectors) have no layers and no positions; the result says so.

Sampled statistics are seeded: the same ``seed`` gives the same numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import InputError, ShapeError
from ..functional import geometry as G
from ..utils import as_float_matrix, make_generator
from . import wordlists

__all__ = [
    "TerrainConfig",
    "TerrainSubject",
    "norm_statistics",
    "cosine_statistics",
    "distance_statistics",
    "spectrum_statistics",
    "pentachoron_statistics",
    "digit_manifold",
    "category_clustering",
    "special_token_statistics",
    "layer_evolution",
    "position_structure",
    "find_token_ids",
    "run_terrain",
    "terrain_panel",
]

_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


# --------------------------------------------------------------------------- configuration
@dataclass
class TerrainConfig:
    """Sample sizes and bands of the terrain battery.

    The defaults keep a full run on a 49k x 576 vocabulary within about a minute on two
    CPU cores; every sampled statistic is seeded by ``seed``.
    """

    cosine_sample: int = 3000
    distance_sample: int = 2000
    n_simplices: int = 2000
    n_permutations: int = 2000
    n_bootstrap: int = 1000
    spectrum_blocks: int = 64
    spectrum_bootstrap: int = 100
    max_positions: int = 128
    max_length: int = 64
    batch_size: int = 16
    histogram_bins: int = 60
    seed: int = 0
    cv_band: tuple[float, float] = (0.20, 0.23)
    pr_band: tuple[float, float] = (0.53, 0.56)

    def __post_init__(self) -> None:
        for name in ("cosine_sample", "distance_sample", "n_simplices"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 10:
                raise InputError(f"TerrainConfig.{name} must be an int >= 10, got {value!r}; raise it.")
        for name in ("n_permutations", "n_bootstrap", "spectrum_bootstrap", "spectrum_blocks",
                     "max_positions", "max_length", "batch_size", "histogram_bins"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise InputError(f"TerrainConfig.{name} must be an int >= 2, got {value!r}.")
        for name in ("cv_band", "pr_band"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise InputError(f"TerrainConfig.{name} must be (low, high) with low < high, got {(lo, hi)!r}.")


@dataclass
class TerrainSubject:
    """What the battery needs to know about one model.

    ``embeddings`` is the input token embedding matrix ``[vocab, d]``. ``vocab`` lists the
    token strings (for word-level lookup when there is no tokenizer). ``module`` is the
    ``nn.Module`` (``None`` for static models); ``tokenizer`` a Hugging Face tokenizer or
    ``None``.
    """

    name: str
    kind: str
    embeddings: torch.Tensor
    vocab: list[str] | None = None
    tokenizer: Any | None = None
    module: nn.Module | None = None
    num_layers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_handle(cls, handle: Any) -> TerrainSubject:
        """Build a subject from a :class:`hyperlens.models.ModelHandle`."""
        emb = handle.token_embeddings()
        try:
            vocab = list(handle.vocab())
        except Exception:  # noqa: BLE001 - a vocabulary is optional for the battery
            vocab = None
        return cls(
            name=str(handle.name),
            kind=str(handle.kind),
            embeddings=torch.as_tensor(emb).detach().float().cpu(),
            vocab=vocab,
            tokenizer=getattr(handle, "tokenizer", None),
            module=getattr(handle, "module", None),
            num_layers=int(getattr(handle, "num_layers", 0) or 0),
        )


# --------------------------------------------------------------------------- small helpers
def _sample_rows(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """``min(k, n)`` distinct row indices, sorted, drawn with ``gen``."""
    if k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:k].sort().values


def _unit_rows(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def _percentiles(values: torch.Tensor) -> dict[str, float]:
    q = torch.tensor([p / 100.0 for p in _PERCENTILES], dtype=torch.float64)
    v = values.detach().double().flatten()
    if v.numel() > 16_000_000:  # torch.quantile has an input size limit
        v = v[:: math.ceil(v.numel() / 16_000_000)]
    vals = torch.quantile(v, q)
    return {f"p{p}": float(x) for p, x in zip(_PERCENTILES, vals, strict=True)}


def _histogram(values: torch.Tensor, bins: int) -> dict[str, list[float]]:
    """Pre-binned histogram ``{"edges", "counts"}`` (the report's hist spec)."""
    v = values.detach().double().flatten()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + 1e-9
    counts = torch.histc(v, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _bootstrap_mean_ci(values: torch.Tensor, n_boot: int, gen: torch.Generator,
                       stat: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` (default mean) over the last axis.

    ``stat`` maps a ``[B, n]`` batch of resamples to ``[B]``; all resamples are drawn at once.
    """
    v = values.detach().double().flatten()
    n = v.numel()
    if n < 2:
        return (float("nan"), float("nan"))
    idx = torch.randint(0, n, (n_boot, n), generator=gen)
    res = v[idx]
    s = res.mean(dim=1) if stat is None else stat(res)
    a = (1.0 - level) / 2.0
    q = torch.quantile(s, torch.tensor([a, 1.0 - a], dtype=torch.float64))
    return (float(q[0]), float(q[1]))


def _pearson_rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of ``x [n]`` with each row of ``y [B, n]`` -> ``[B]``."""
    xc = x - x.mean()
    yc = y - y.mean(dim=-1, keepdim=True)
    return (yc @ xc) / (yc.norm(dim=-1) * xc.norm()).clamp_min(1e-300)


# --------------------------------------------------------------------------- embedding statistics
def norm_statistics(E: torch.Tensor, vocab: Sequence[str] | None = None) -> dict[str, Any]:
    """Row norms of ``E``: mean, std, min/max (with token), percentiles, zero rows.

    Shapes:
        E: ``[vocab, d]``.
    """
    E = as_float_matrix(E, "E")
    norms = E.double().norm(dim=1)
    imin, imax = int(norms.argmin()), int(norms.argmax())

    def tok(i: int) -> str | None:
        return vocab[i] if vocab is not None and i < len(vocab) else None

    return {
        "mean": float(norms.mean()),
        "std": float(norms.std(unbiased=False)),
        "cv": float(norms.std(unbiased=False) / norms.mean().clamp_min(1e-300)),
        "min": float(norms[imin]), "argmin": imin, "argmin_token": tok(imin),
        "max": float(norms[imax]), "argmax": imax, "argmax_token": tok(imax),
        "zero_rows": int((norms < 1e-6).sum()),
        "percentiles": _percentiles(norms),
        "per_dim_mean_abs": float(E.double().mean(dim=0).abs().mean()),
        "per_dim_std_mean": float(E.double().std(dim=0).mean()),
        "_norms": norms,
    }


def _exact_pair_cosine_moments(U: torch.Tensor) -> tuple[float, float]:
    """Mean and std of ``u_i . u_j`` over all ordered pairs ``i != j`` of unit rows ``U``.

    Uses ``sum_{i != j} c_ij = ||sum u||^2 - n`` and
    ``sum_{i != j} c_ij^2 = ||U^T U||_F^2 - n`` (``= ||U U^T||_F^2``, whichever Gram matrix
    is smaller): O(n d min(n, d)) instead of materialising every pair. The Gram product
    runs in float32 for large inputs (relative error ~1e-6 on these sums), the rest in float64.

    Shapes:
        U: ``[n, d]`` unit rows, ``n >= 2``.
    """
    n, d = U.shape
    s = U.double().sum(dim=0)
    Uc = U.float() if n * d > 1_000_000 else U.double()
    G = (Uc.T @ Uc) if d <= n else (Uc @ Uc.T)
    G = G.double()
    pairs = n * (n - 1)
    mean = (float(s @ s) - n) / pairs
    second = (float((G * G).sum()) - n) / pairs
    return mean, math.sqrt(max(second - mean * mean, 0.0))


def _pr_of_rows(X: torch.Tensor) -> float:
    """Participation ratio of the covariance of ``X`` as ``tr(C)^2 / ||C||_F^2``.

    No eigendecomposition: ``||C||_F`` is taken from the smaller Gram matrix
    (``Xc^T Xc`` or ``Xc Xc^T``), so a few tokens in a wide model cost ``n x n``.

    Shapes:
        X: ``[n, d]``.
    """
    Xc = X.double() - X.double().mean(dim=0)
    n, d = Xc.shape
    G = (Xc.T @ Xc) if d <= n else (Xc @ Xc.T)
    tr = float(torch.diagonal(G).sum())
    fro2 = float((G * G).sum())
    return tr * tr / fro2 if fro2 > 0 else 0.0


def cosine_statistics(E: torch.Tensor, *, sample: int = 3000, seed: int = 0,
                      bins: int = 60) -> dict[str, Any]:
    """Cosine similarity between token embeddings.

    Mean and std are exact over all pairs of non-zero rows; percentiles and the histogram
    come from all pairs among ``sample`` seeded rows. ``centered_*`` repeat the exact
    moments after subtracting the mean embedding (removes a shared offset direction).
    ``isotropic_std`` is ``1 / sqrt(d)``, the spread for random directions.

    Shapes:
        E: ``[vocab, d]``.
    """
    E = as_float_matrix(E, "E")
    nz = E.norm(dim=1) > 1e-6
    X = E[nz]
    if X.shape[0] < 3:
        raise InputError(f"E needs at least 3 non-zero rows for cosine statistics, got {X.shape[0]}.")
    d = X.shape[1]
    mean, std = _exact_pair_cosine_moments(_unit_rows(X))
    c_mean, c_std = _exact_pair_cosine_moments(_unit_rows(X - X.mean(dim=0)))
    gen = make_generator(seed)
    idx = _sample_rows(X.shape[0], sample, gen)
    flat = G.pair_values(X[idx], metric="cosine", max_exact_pairs=len(idx) ** 2)  # every pair i < j
    return {
        "mean": mean, "std": std, "centered_mean": c_mean, "centered_std": c_std,
        "isotropic_std": 1.0 / math.sqrt(d),
        "sample_rows": int(idx.numel()), "sample_pairs": int(flat.numel()),
        "sample_min": float(flat.min()), "sample_max": float(flat.max()),
        "percentiles": _percentiles(flat),
        "histogram": _histogram(flat, bins),
    }


def distance_statistics(E: torch.Tensor, *, sample: int = 2000, seed: int = 0,
                        bins: int = 60) -> dict[str, Any]:
    """Euclidean distances between ``sample`` seeded token embeddings.

    ``cv`` (std / mean) measures distance concentration: it shrinks towards 0 as points
    behave like high-dimensional noise. ``mean_over_sqrt_d`` makes models comparable.

    Shapes:
        E: ``[vocab, d]``.
    """
    E = as_float_matrix(E, "E", min_rows=2)
    gen = make_generator(seed + 1)
    idx = _sample_rows(E.shape[0], sample, gen)
    flat = G.pair_values(E[idx], metric="euclidean", max_exact_pairs=len(idx) ** 2)  # every pair i < j
    mean = float(flat.mean())
    return {
        "mean": mean, "std": float(flat.std()), "cv": float(flat.std() / max(mean, 1e-300)),
        "mean_over_sqrt_d": mean / math.sqrt(E.shape[1]),
        "min": float(flat.min()), "max": float(flat.max()),
        "sample_rows": int(idx.numel()), "percentiles": _percentiles(flat),
        "histogram": _histogram(flat, bins),
    }


def _pr(eig: torch.Tensor) -> torch.Tensor:
    """Participation ratio ``(sum l)^2 / sum l^2`` along the last axis."""
    return eig.sum(-1) ** 2 / (eig * eig).sum(-1).clamp_min(1e-300)


def spectrum_statistics(E: torch.Tensor, *, seed: int = 0, blocks: int = 64,
                        n_bootstrap: int = 100) -> dict[str, Any]:
    """Eigenspectrum of the covariance of ``E`` with a bootstrap interval for PR / d.

    Point values come from :func:`hyperlens.functional.geometry.eigenspectrum`. The
    interval is a block bootstrap: rows are split at random (seeded) into ``blocks`` groups
    whose centred sums and ``d x d`` second moments are computed in one pass; a resample
    draws groups with replacement and needs only ``PR = tr(C)^2 / ||C||_F^2`` of the
    recombined covariance, no eigendecomposition and no new pass over the rows. For
    i.i.d. rows this approximates the row bootstrap; the generic row bootstrap would cost
    ``n_bootstrap`` passes over a 49k x 576 matrix. The null is the column-shuffled matrix
    (each dimension permuted on its own): its covariance is the diagonal of the real one,
    so its PR is exact, ``(sum var)^2 / sum var^2``.

    Shapes:
        E: ``[vocab, d]``.
    """
    E = as_float_matrix(E, "E", min_rows=2)
    n, d = E.shape
    spec = G.eigenspectrum(E)
    eig = spec.eigenvalues.double().cpu()
    total = spec.total_variance
    pr = spec.participation_ratio
    dims = {f"{int(round(f * 100))}": v for f, v in spec.dims_for().items()}
    X = E.double()
    mu = X.mean(dim=0)
    gen = make_generator(seed + 2)
    nb = max(2, min(blocks, n // 2))
    # rows in a seeded random order, cut into nb contiguous groups
    # (centred in float64 first, so the float32 products lose nothing that matters here)
    parts = torch.tensor_split((X[torch.randperm(n, generator=gen)] - mu).float(), nb)
    counts = torch.tensor([float(q.shape[0]) for q in parts], dtype=torch.float64)
    sums = torch.stack([q.double().sum(0) for q in parts])  # [nb, d]
    outer = torch.stack([(q.T @ q).double() for q in parts])  # [nb, d, d]
    var = torch.diagonal(outer.sum(0)) / n
    draws = torch.randint(0, nb, (n_bootstrap, nb), generator=gen)
    wc = torch.zeros(n_bootstrap, nb, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(n_bootstrap, nb, dtype=torch.float64))
    boot_pr = torch.empty(n_bootstrap, dtype=torch.float64)
    for start in range(0, n_bootstrap, 16):  # 16 covariances at a time bounds memory
        w = wc[start:start + 16]
        m = w @ counts
        s1 = (w @ sums) / m[:, None]
        covs = torch.einsum("bk,kij->bij", w, outer) / m[:, None, None] - s1[:, :, None] * s1[:, None, :]
        tr = torch.diagonal(covs, dim1=1, dim2=2).sum(-1)
        boot_pr[start:start + 16] = tr * tr / (covs * covs).sum((1, 2)).clamp_min(1e-300)
    # Resampling duplicates rows, which spreads the eigenvalues and biases every resampled
    # PR downwards, so percentile bounds can miss the point estimate; a normal interval
    # around it with the bootstrap standard error is reported instead, and the bias kept.
    se = float((boot_pr / d).std())
    lo, hi = pr / d - 1.959964 * se, pr / d + 1.959964 * se
    null_pr = float(_pr(var))
    return {
        "n": n, "d": d, "total_variance": total,
        "top_eigenvalue_fraction": float(eig[0]) / max(total, 1e-300),
        "participation_ratio": pr, "pr_over_d": pr / d, "pr_over_d_ci": [lo, hi],
        "pr_over_d_bootstrap_bias": float((boot_pr / d).mean()) - pr / d,
        "null_participation_ratio": null_pr, "null_pr_over_d": null_pr / d,
        "dims_for_variance": dims, "effective_rank": spec.effective_rank,
        "stable_rank": total / max(float(eig[0]), 1e-300),
        "eigenvalues": eig.tolist(),
        "null_eigenvalues": (var * n / max(n - 1, 1)).sort(descending=True).values.tolist(),
        "mean_norm_of_mean": float(mu.norm()),
    }


def _cv_rows(v: torch.Tensor) -> torch.Tensor:
    """CV (population std / mean) along the last axis."""
    return v.std(dim=-1, unbiased=False) / v.mean(dim=-1).clamp_min(1e-300)


def pentachoron_statistics(E: torch.Tensor, *, n_simplices: int = 2000, seed: int = 0,
                           n_bootstrap: int = 1000, bins: int = 60,
                           band: tuple[float, float] = (0.20, 0.23)) -> dict[str, Any]:
    """Coefficient of variation of 4-simplex (pentachoron) volumes against two nulls.

    Token simplices are 5 distinct rows drawn at random (seeded); volumes and CV intervals
    come from :mod:`hyperlens.functional.geometry`. Nulls (``null_points``): ``gaussian``
    has the embeddings' mean and covariance; ``isotropic`` the same mean and total
    variance spread evenly over ``d``. Each null cloud holds ``5 * n_simplices`` points cut
    into disjoint pentachora. The CV of a Gaussian simplex shrinks roughly like
    ``sqrt(2 / d)``, so a CV says as much about ``d`` as about the embeddings;
    ``ratio_to_gaussian`` (with an interval from resampling both sides) tells whether the
    embeddings differ from their own covariance.

    Shapes:
        E: ``[vocab, d]``.
    """
    E = as_float_matrix(E, "E")
    n, d = E.shape
    if n < 5:
        raise ShapeError(f"E needs at least 5 rows to form pentachora, got shape {tuple(E.shape)}.")
    seeds = [seed * 7919 + s for s in (11, 12, 13, 14, 15, 16, 17)]
    idx = G.sample_simplices(n, 4, n_simplices, seed=seeds[0])
    vols = {"embeddings": G.simplex_volumes(E, idx)}
    for j, null in enumerate(("gaussian", "isotropic")):
        pts = G.null_points(E, null, n=5 * n_simplices, seed=seeds[1 + j])
        vols[null] = G.cayley_menger_volume(pts.view(n_simplices, 5, d))
    out: dict[str, Any] = {"n_simplices": n_simplices}
    for j, (name, v) in enumerate(vols.items()):
        valid = v[v > 0]
        est = G.cv_ci(valid, n_boot=n_bootstrap, seed=seeds[3 + j]) if valid.numel() > 1 else None
        out[name] = {
            "cv": est.value if est else float("nan"), "cv_ci": [est.lo, est.hi] if est else [None, None],
            "mean_volume": float(valid.mean()) if valid.numel() else 0.0,
            "degenerate": int((v <= 0).sum()),
        }
    # ratio to the Gaussian null, resampling both volume sets
    gen = make_generator(seeds[6])
    ve, vg = vols["embeddings"][vols["embeddings"] > 0], vols["gaussian"][vols["gaussian"] > 0]
    ie = torch.randint(0, ve.numel(), (n_bootstrap, ve.numel()), generator=gen)
    ig = torch.randint(0, vg.numel(), (n_bootstrap, vg.numel()), generator=gen)
    ratio_boot = _cv_rows(ve[ie]) / _cv_rows(vg[ig])
    q = torch.quantile(ratio_boot, torch.tensor([0.025, 0.975], dtype=torch.float64))
    out["ratio_to_gaussian"] = out["embeddings"]["cv"] / out["gaussian"]["cv"]
    out["ratio_to_gaussian_ci"] = q.tolist()
    out["volume_ratio_to_isotropic"] = out["embeddings"]["mean_volume"] / max(out["isotropic"]["mean_volume"], 1e-300)
    lo, hi = out["embeddings"]["cv_ci"]
    out["band"] = list(band)
    out["ci_overlaps_band"] = bool(lo <= band[1] and hi >= band[0])
    out["in_band"] = bool(band[0] <= out["embeddings"]["cv"] <= band[1])
    out["gaussian_in_band"] = bool(band[0] <= out["gaussian"]["cv"] <= band[1])
    vol, vol_g = vols["embeddings"], vols["gaussian"]
    top = float(torch.quantile(torch.cat([vol, vol_g]), 0.995))
    out["histogram_embeddings"] = _histogram(vol[vol <= top], bins)  # top 0.5 % left out of the plot
    out["histogram_gaussian"] = _histogram(vol_g[vol_g <= top], bins)
    return out


# --------------------------------------------------------------------------- token lookup
def _is_blank(tok: Any, token_id: int) -> bool:
    """Whether ``token_id`` decodes to whitespace only (a bare word-boundary piece)."""
    try:
        return tok.decode([int(token_id)]).strip() == ""
    except Exception:  # noqa: BLE001 - a tokenizer that cannot decode one id: not blank
        return False


def find_token_ids(words: Sequence[str], subject: TerrainSubject, *,
                   prefer_space: bool = True) -> dict[str, int]:
    """Map each word to one token id where it is a single token; others are left out.

    With a tokenizer, the word with a leading space (how it appears mid-sentence in
    byte-pair vocabularies) is tried first, then the bare word (``prefer_space=False``
    swaps the order); a lone leading word-boundary piece (SentencePiece ``"▁"``) is
    ignored; for word-level vocabularies
    (static models, or no tokenizer) the word is looked up in ``vocab`` (case-insensitively
    when the exact form is missing).
    """
    found: dict[str, int] = {}
    tok = subject.tokenizer
    if tok is not None:
        for w in words:
            forms = [" " + w, w] if prefer_space else [w, " " + w]
            if w[:1].isupper():  # proper nouns: also the lower-case forms
                forms += [" " + w.lower(), w.lower()]
            for form in forms:
                try:
                    ids = tok.encode(form, add_special_tokens=False)
                except Exception:  # noqa: BLE001 - some tokenizers reject odd strings
                    continue
                if len(ids) == 2 and _is_blank(tok, ids[0]):
                    ids = ids[1:]  # SentencePiece may emit a lone word-boundary piece first
                if len(ids) == 1 and 0 <= ids[0] < subject.embeddings.shape[0]:
                    found[w] = int(ids[0])
                    break
        return found
    if subject.vocab is not None:
        if "_vocab_index" not in subject.extra:  # built once per subject (GloVe has 400k words)
            index: dict[str, int] = {}
            lower: dict[str, int] = {}
            for i, t in enumerate(subject.vocab[: subject.embeddings.shape[0]]):
                index.setdefault(t, i)
                lower.setdefault(t.lower(), i)
            subject.extra["_vocab_index"] = (index, lower)
        index, lower = subject.extra["_vocab_index"]
        for w in words:
            if w in index:
                found[w] = index[w]
            elif w.lower() in lower:
                found[w] = lower[w.lower()]
    return found


# --------------------------------------------------------------------------- digit manifold
def digit_manifold(E: torch.Tensor, ids: Sequence[int], *, n_permutations: int = 2000,
                   seed: int = 0) -> dict[str, Any]:
    """Is the cosine of number tokens ``i, j`` a decreasing function of ``|i - j|``?

    Statistics over the pairs ``i < j``: Pearson correlation of ``|i - j|`` with the cosine
    (negative when nearby numbers are more alike) and the adjacency gap (mean cosine of
    ``|i - j| = 1`` pairs minus the rest). The null permutes which token stands for which
    number (``n_permutations`` seeded draws); p-values are one-sided, ``(1 + #null at least
    as extreme) / (1 + n)``.

    Shapes:
        E: ``[vocab, d]``; ``ids``: ``[m]`` token ids in numeric order, ``m >= 4``.
    """
    m = len(ids)
    if m < 4:
        raise InputError(f"ids must hold at least 4 number tokens in order, got {m}.")
    U = _unit_rows(E[torch.as_tensor(list(ids))].double())
    C = U @ U.T
    iu = torch.triu_indices(m, m, offset=1)
    off = (iu[1] - iu[0]).double()
    adj = off == 1

    def stats(Cb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = Cb[:, iu[0], iu[1]]
        corr = _pearson_rows(off, v)
        gap = v[:, adj].mean(1) - v[:, ~adj].mean(1)
        return corr, gap

    corr, gap = stats(C[None])
    gen = make_generator(seed + 4)
    perm = torch.argsort(torch.rand(n_permutations, m, generator=gen), dim=1)
    Cp = C[perm[:, :, None], perm[:, None, :]]
    ncorr, ngap = stats(Cp)
    c0, g0 = float(corr[0]), float(gap[0])
    by_offset = [float(C[iu[0], iu[1]][off == k].mean()) for k in range(1, m)]
    return {
        "n": m, "cosine": C.tolist(), "corr_offset_cosine": c0,
        "p_corr": (1 + int((ncorr <= c0).sum())) / (1 + n_permutations),
        "null_corr_ci": torch.quantile(ncorr, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist(),
        "adjacency_gap": g0,
        "p_gap": (1 + int((ngap >= g0).sum())) / (1 + n_permutations),
        "null_gap_ci": torch.quantile(ngap, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist(),
        "mean_cosine_by_offset": by_offset,
    }


# --------------------------------------------------------------------------- categories
def category_clustering(E: torch.Tensor, groups: dict[str, Sequence[int]], *,
                        n_permutations: int = 2000, seed: int = 0,
                        reference_mean: float | None = None) -> dict[str, Any]:
    """Within- versus between-category cosine of word tokens, with a permutation null.

    ``gap`` is the mean cosine over same-category pairs minus the mean over
    different-category pairs. The null shuffles the category labels over the same tokens
    (category sizes kept), ``n_permutations`` seeded draws, all evaluated in one batched
    contraction. Per category: mean within cosine, its lift over ``reference_mean`` (the
    vocabulary-wide mean cosine, when given) and a permutation p-value.

    Shapes:
        E: ``[vocab, d]``; each group: token ids (groups with fewer than 3 are dropped).
    """
    groups = {k: list(v) for k, v in groups.items() if len(v) >= 3}
    if len(groups) < 2:
        raise InputError(
            f"groups must hold at least 2 categories with 3+ tokens each, got {len(groups)}; "
            "the vocabulary may lack the built-in words."
        )
    names = list(groups)
    ids = torch.as_tensor([i for k in names for i in groups[k]])
    labels = torch.as_tensor([c for c, k in enumerate(names) for _ in groups[k]])
    n, C_ = ids.numel(), len(names)
    U = _unit_rows(E[ids].double())
    S = U @ U.T
    S0 = S - torch.diag(torch.diagonal(S))
    sizes = torch.bincount(labels, minlength=C_).double()
    within_pairs = float((sizes * (sizes - 1)).sum())
    total_pairs = n * (n - 1)
    total_sum = float(S0.sum())

    def within_sums(lab: torch.Tensor) -> torch.Tensor:  # lab [B, n] -> [B, C]
        M = torch.nn.functional.one_hot(lab, C_).double()  # [B, n, C]
        return torch.einsum("bnc,bnc->bc", M, torch.einsum("nm,bmc->bnc", S0, M))

    def gaps(ws: torch.Tensor) -> torch.Tensor:
        w = ws.sum(-1)
        return w / within_pairs - (total_sum - w) / (total_pairs - within_pairs)

    ws0 = within_sums(labels[None])
    gap0 = float(gaps(ws0)[0])
    gen = make_generator(seed + 5)
    perm = torch.argsort(torch.rand(n_permutations, n, generator=gen), dim=1)
    wsn = within_sums(labels[perm])
    ngap = gaps(wsn)
    per_pairs = (sizes * (sizes - 1)).clamp_min(1.0)
    intra0 = ws0[0] / per_pairs
    intran = wsn / per_pairs
    per_cat = []
    for c, k in enumerate(names):
        per_cat.append({
            "category": k, "n": int(sizes[c]), "within_mean": float(intra0[c]),
            "lift": float(intra0[c]) - reference_mean if reference_mean is not None else None,
            "null_mean": float(intran[:, c].mean()),
            "null_ci": torch.quantile(intran[:, c], torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist(),
            "p": (1 + int((intran[:, c] >= intra0[c]).sum())) / (1 + n_permutations),
        })
    cent = _unit_rows(torch.stack([U[labels == c].mean(0) for c in range(C_)]))
    # nearest-neighbour purity: share of tokens whose most similar other token shares its category
    nn_idx = (S - 2.0 * torch.eye(n, dtype=S.dtype)).argmax(dim=1)
    purity = float((labels[nn_idx] == labels).double().mean())
    chance = float((sizes * (sizes - 1)).sum() / (n * (n - 1)))
    return {
        "n_tokens": n, "categories": names,
        "within_mean": float(ws0.sum() / within_pairs),
        "between_mean": (total_sum - float(ws0.sum())) / (total_pairs - within_pairs),
        "gap": gap0, "null_gap_ci": torch.quantile(ngap, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist(),
        "null_gap_mean": float(ngap.mean()),
        "p_gap": (1 + int((ngap >= gap0).sum())) / (1 + n_permutations),
        "z_gap": (gap0 - float(ngap.mean())) / max(float(ngap.std()), 1e-300),
        "nn_purity": purity, "nn_purity_chance": chance,
        "per_category": per_cat, "centroid_cosine": (cent @ cent.T).tolist(),
    }


# --------------------------------------------------------------------------- special tokens
def special_token_statistics(E: torch.Tensor, tokenizer: Any, *, norms: torch.Tensor | None = None,
                             sample: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Norm, norm percentile and mean cosine to ordinary tokens of each special token.

    Shapes:
        E: ``[vocab, d]``; ``norms``: ``[vocab]`` (recomputed when absent).
    """
    if tokenizer is None:
        return {"available": False, "note": "no tokenizer, so no special tokens to inspect"}
    ids = getattr(tokenizer, "all_special_ids", None) or []
    toks = getattr(tokenizer, "all_special_tokens", None) or [None] * len(ids)
    pairs = [(int(i), t) for i, t in zip(ids, toks, strict=False) if i is not None and 0 <= int(i) < E.shape[0]]
    seen: dict[int, str | None] = {}
    for i, t in pairs:
        seen.setdefault(i, t)
    if not seen:
        return {"available": False, "note": "the tokenizer declares no special tokens inside the embedding matrix"}
    if norms is None:
        norms = E.double().norm(dim=1)
    sid = torch.as_tensor(list(seen))
    gen = make_generator(seed + 6)
    mask = torch.ones(E.shape[0], dtype=torch.bool)
    mask[sid] = False
    pool = torch.nonzero(mask).flatten()
    ref = pool[_sample_rows(pool.numel(), sample, gen)]
    Us = _unit_rows(E[sid].double())
    Ur = _unit_rows(E[ref].double())
    to_ref = Us @ Ur.T
    sorted_norms = norms.sort().values
    rows = []
    for j, (i, t) in enumerate(seen.items()):
        rank = int(torch.searchsorted(sorted_norms, norms[i]))
        rows.append({
            "token": t, "id": i, "norm": float(norms[i]),
            "norm_percentile": 100.0 * rank / max(len(sorted_norms), 1),
            "mean_cos_to_tokens": float(to_ref[j].mean()),
            "max_cos_to_tokens": float(to_ref[j].max()),
        })
    return {"available": True, "tokens": rows, "pairwise_cosine": (Us @ Us.T).tolist()}


# --------------------------------------------------------------------------- layers
def _encode_texts(subject: TerrainSubject, texts: Sequence[str] | None, *, max_length: int,
                  seed: int, n_random: int = 32) -> tuple[list[list[int]], set[int], str]:
    tok = subject.tokenizer
    vocab_size = subject.embeddings.shape[0]
    if tok is not None and texts:
        seqs = [list(tok.encode(t, add_special_tokens=True))[:max_length] for t in texts]
        special = {int(i) for i in (getattr(tok, "all_special_ids", None) or [])}
        return [s for s in seqs if s], special, "texts"
    gen = make_generator(seed + 7)
    lengths = torch.randint(8, max(9, min(max_length, 24)), (n_random,), generator=gen)
    seqs = [torch.randint(0, vocab_size, (int(L),), generator=gen).tolist() for L in lengths]
    return seqs, set(), "random token ids (no tokenizer)"


def _hidden_states(module: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """All hidden states ``(L+1) x [B, T, d]`` of the encoder (encoder-decoder) or the model."""
    cfg = getattr(module, "config", None)
    target = module
    if cfg is not None and getattr(cfg, "is_encoder_decoder", False) and hasattr(module, "get_encoder"):
        target = module.get_encoder()
    out = target(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hs = getattr(out, "hidden_states", None)
    if hs is None:
        hs = getattr(out, "encoder_hidden_states", None)
    if hs is None:
        raise InputError(f"module {type(module).__name__} returned no hidden states; it cannot be probed layer by layer.")
    return tuple(hs)


def layer_evolution(subject: TerrainSubject, texts: Sequence[str] | None = None, *,
                    max_length: int = 64, batch_size: int = 16, seed: int = 0,
                    n_bootstrap: int = 1000, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Per-layer geometry of the hidden states over ``texts`` (one forward pass per batch).

    For every hidden state (embedding output = layer 0, then each block): mean token norm
    with a bootstrap interval over sentences, mean pairwise cosine over all real tokens
    (exact, across sentences), mean within-sentence pairwise cosine with an interval, PR / d
    of the token states and PR / d of mean-pooled sentence vectors. Special tokens (CLS,
    SEP, BOS, ...) and padding are left out of every statistic; without a tokenizer, seeded
    random token sequences stand in for text.

    Token-level states are needed here, so the forward pass is run directly on
    ``subject.module`` rather than through pooled embedding helpers.
    """
    if subject.module is None or subject.kind == "static":
        return {"available": False, "note": f"{subject.name} is a static embedding model: it has no layers"}
    seqs, special, source = _encode_texts(subject, texts, max_length=max_length, seed=seed)
    if not seqs:
        raise InputError("texts produced no tokens; pass non-empty sentences.")
    module = subject.module
    # inputs go where the weights are; ``device`` only matters for modules without parameters
    params = list(module.parameters())
    dev = params[0].device if params else torch.device(device)
    per_layer_tokens: list[list[torch.Tensor]] = []
    sent_norm: list[list[float]] = []
    sent_cos: list[list[float]] = []
    pooled: list[list[torch.Tensor]] = []
    with torch.inference_mode():
        for start in range(0, len(seqs), batch_size):
            chunk = seqs[start:start + batch_size]
            T = max(len(s) for s in chunk)
            ids = torch.zeros(len(chunk), T, dtype=torch.long)
            mask = torch.zeros(len(chunk), T, dtype=torch.long)
            keep = torch.zeros(len(chunk), T, dtype=torch.bool)
            for b, s in enumerate(chunk):
                ids[b, : len(s)] = torch.as_tensor(s)
                mask[b, : len(s)] = 1
                keep[b, : len(s)] = torch.as_tensor([t not in special for t in s])
            hs = _hidden_states(module, ids.to(dev), mask.to(dev))
            if not per_layer_tokens:
                per_layer_tokens = [[] for _ in hs]
                sent_norm = [[] for _ in hs]
                sent_cos = [[] for _ in hs]
                pooled = [[] for _ in hs]
            for li, h in enumerate(hs):
                h = h.detach().double().cpu()  # [B, T, d]
                for b in range(h.shape[0]):
                    x = h[b][keep[b]]
                    if x.shape[0] == 0:
                        continue
                    per_layer_tokens[li].append(x)
                    sent_norm[li].append(float(x.norm(dim=1).mean()))
                    if x.shape[0] > 1:
                        sent_cos[li].append(_exact_pair_cosine_moments(_unit_rows(x))[0])
                    pooled[li].append(x.mean(0))
    gen = make_generator(seed + 8)
    rows = []
    for li in range(len(per_layer_tokens)):
        X = torch.cat(per_layer_tokens[li])
        d = X.shape[1]
        P = torch.stack(pooled[li])
        norms = torch.tensor(sent_norm[li], dtype=torch.float64)
        coss = torch.tensor(sent_cos[li], dtype=torch.float64)
        rows.append({
            "layer": li, "tokens": int(X.shape[0]),
            "norm_mean": float(X.norm(dim=1).mean()), "norm_std": float(X.norm(dim=1).std()),
            "norm_median": float(X.norm(dim=1).median()),
            # a few "massive activation" tokens (often the first position) can dominate the mean
            "norm_max_over_median": float(X.norm(dim=1).max() / X.norm(dim=1).median().clamp_min(1e-300)),
            "norm_ci": list(_bootstrap_mean_ci(norms, n_bootstrap, gen)),
            "cos_all": _exact_pair_cosine_moments(_unit_rows(X))[0],
            "cos_within": float(coss.mean()) if coss.numel() else float("nan"),
            "cos_within_ci": list(_bootstrap_mean_ci(coss, n_bootstrap, gen)),
            "pr_over_d": _pr_of_rows(X) / d,
            "pooled_pr_over_d": _pr_of_rows(P) / d,
        })
    return {"available": True, "source": source, "n_sequences": len(seqs), "layers": rows}


# --------------------------------------------------------------------------- positions
_ABS_NAMES = ("position_embeddings", "wpe", "embed_positions")


def _rope_thetas(cfg: Any) -> dict[str, float]:
    """RoPE base per attention kind: ``{"default": theta}``, or one per layer type when the
    config gives several (Gemma 3: ``full_attention`` and ``sliding_attention``)."""
    params = getattr(cfg, "rope_parameters", None)
    if isinstance(params, dict):
        if "rope_theta" in params:
            return {"default": float(params["rope_theta"])}
        per = {k: float(v["rope_theta"]) for k, v in params.items()
               if isinstance(v, dict) and v.get("rope_theta") is not None}
        if per:
            return per
    theta = getattr(cfg, "rope_theta", None)
    return {"default": float(theta)} if theta is not None else {}


def _rope_theta(cfg: Any) -> float | None:
    """The RoPE base of the global (full) attention layers, or the only one."""
    thetas = _rope_thetas(cfg)
    if not thetas:
        return None
    return thetas.get("default", thetas.get("full_attention", next(iter(thetas.values()))))


def position_structure(module: nn.Module | None, *, kind: str = "", max_positions: int = 128) -> dict[str, Any]:
    """Position structure of a model: learned absolute, T5 relative buckets, rotary, or none.

    * learned absolute (BERT, GPT-2, OPT): cosine of position vectors against the offset
      ``|i - j|`` over the first ``max_positions`` positions, Spearman correlation, norms, PR;
    * T5 relative attention: the bias of every head against the signed offset (through the
      model's own bucket function) and the heads x buckets table;
    * rotary (Llama, Qwen, SmolLM): no position parameters exist; the analytic mean
      ``cos(offset * theta_k)`` over the rotary frequencies is given and labelled as such.
    """
    if module is None or kind == "static":
        return {"type": "none", "note": "static embedding model: no positions"}
    cfg = getattr(module, "config", None)
    # T5-style relative attention bias
    for name, mod in module.named_modules():
        bias = getattr(mod, "relative_attention_bias", None)
        if isinstance(bias, nn.Embedding) and getattr(mod, "has_relative_attention_bias", True):
            W = bias.weight.detach().double().cpu()  # [buckets, heads]
            buckets, heads = W.shape
            bidirectional = bool(getattr(mod, "is_decoder", False) is False)
            max_distance = int(getattr(mod, "relative_attention_max_distance", 128))
            span = min(max_positions, max_distance)
            offsets = torch.arange(-span, span + 1)
            fn = getattr(type(mod), "_relative_position_bucket", None)
            if fn is None:
                return {"type": "relative", "module": name, "note": "bucket function not found",
                        "bias": W.T.tolist()}
            b = fn(offsets, bidirectional=bidirectional, num_buckets=buckets, max_distance=max_distance)
            curve = W[b]  # [offsets, heads]
            near = curve[(offsets.abs() <= 1)].mean(0)
            far = curve[(offsets.abs() >= span // 2)].mean(0)
            return {
                "type": "relative", "module": name, "buckets": buckets, "heads": heads,
                "bidirectional": bidirectional, "max_distance": max_distance,
                "bias": W.T.tolist(), "offsets": offsets.tolist(),
                "bias_by_offset_mean": curve.mean(1).tolist(),
                "head_std": W.std(0).tolist(),
                "local_heads": int((near > far).sum()),
                "note": "T5 relative attention: a learned scalar bias per head and offset bucket",
            }
    # learned absolute positions
    for name, mod in module.named_modules():
        if isinstance(mod, nn.Embedding) and name.split(".")[-1] in _ABS_NAMES:
            offset = int(getattr(mod, "offset", 0) or 0)
            W = mod.weight.detach().double().cpu()[offset:]
            n = min(max_positions, W.shape[0])
            P = W[:n]
            U = _unit_rows(P)
            C = U @ U.T
            iu = torch.triu_indices(n, n, offset=1)
            off = (iu[1] - iu[0])
            vals = C[iu[0], iu[1]]
            sums = torch.zeros(n, dtype=torch.float64).index_add_(0, off, vals)
            cnt = torch.bincount(off, minlength=n).double().clamp_min(1.0)
            by_off = (sums / cnt)[1:]
            from scipy.stats import spearmanr

            rho = float(spearmanr(off.numpy(), vals.numpy()).statistic)
            show = min(n, 64)
            return {
                "type": "absolute", "module": name, "positions_total": int(W.shape[0]),
                "positions_used": n, "offset_rows_skipped": offset,
                "cosine_by_offset": by_off.tolist(), "spearman_offset_cosine": rho,
                "norms": P.norm(dim=1).tolist(), "pr_over_d": _pr_of_rows(P) / P.shape[1],
                "cosine_matrix": C[:show, :show].tolist(),
                "note": "learned absolute position vectors",
            }
    theta = _rope_theta(cfg) if cfg is not None else None
    if theta is not None:
        hidden = int(getattr(cfg, "hidden_size", 0) or 0)
        heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
        head_dim = int(getattr(cfg, "head_dim", 0) or (hidden // heads))
        partial = float(getattr(cfg, "partial_rotary_factor", 1.0) or 1.0)
        rot = int(head_dim * partial) // 2 * 2
        freqs = theta ** (-torch.arange(0, rot, 2, dtype=torch.float64) / rot)
        offsets = torch.arange(0, max_positions)
        curve = torch.cos(offsets[:, None].double() * freqs[None, :]).mean(1)
        by_type: dict[str, Any] = {}
        thetas = _rope_thetas(cfg)
        if len(thetas) > 1:  # e.g. Gemma 3: local (sliding-window) and global layers
            for kind, th in thetas.items():
                f_k = th ** (-torch.arange(0, rot, 2, dtype=torch.float64) / rot)
                c_k = torch.cos(offsets[:, None].double() * f_k[None, :]).mean(1)
                by_type[kind] = {"theta": th, "analytic_similarity": c_k.tolist()}
        return {
            "type": "rotary", "theta": theta, "head_dim": head_dim, "rotary_dims": rot,
            "by_layer_type": by_type, "sliding_window": getattr(cfg, "sliding_window", None),
            "offsets": offsets.tolist(), "analytic_similarity": curve.tolist(),
            "note": ("rotary position embedding (RoPE): no learned position vectors; the curve is "
                     "the analytic mean cos(offset * theta_k) over the rotary frequencies, a "
                     "property of the formula, not a measurement of the weights"),
        }
    return {"type": "none", "note": "no position parameters or rotary configuration found"}


# --------------------------------------------------------------------------- the battery
def run_terrain(subject: TerrainSubject, config: TerrainConfig | None = None, *,
                texts: Sequence[str] | None = None, device: str | torch.device = "cpu",
                categories: dict[str, Sequence[str]] | None = None,
                layers: bool = True) -> dict[str, Any]:
    """Run every terrain measurement on ``subject`` and return a JSON-ready dict.

    ``texts`` feed the layer statistics (default: the built-in sentences); ``categories``
    replace the built-in semantic categories; ``layers=False`` skips the forward passes.
    Sections that do not apply (no digits in the vocabulary, a static model) carry
    ``"available": False`` and a ``note`` instead of failing.
    """
    cfg = config or TerrainConfig()
    E = as_float_matrix(subject.embeddings, "embeddings", min_rows=5)
    seed = cfg.seed
    timings: dict[str, float] = {}
    out: dict[str, Any] = {
        "model": subject.name, "kind": subject.kind, "vocab_size": int(E.shape[0]),
        "dim": int(E.shape[1]), "num_layers": subject.num_layers, "config": asdict(cfg),
    }

    cpu: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        res = fn()
        timings[name] = time.perf_counter() - t0
        cpu[name] = time.process_time() - c0  # CPU seconds of all threads: robust to a busy machine
        return res

    norms = timed("norms", lambda: norm_statistics(E, subject.vocab))
    norm_values = norms.pop("_norms")
    norms["histogram"] = _histogram(norm_values, cfg.histogram_bins)
    out["norms"] = norms
    out["cosine"] = timed("cosine", lambda: cosine_statistics(E, sample=cfg.cosine_sample, seed=seed,
                                                              bins=cfg.histogram_bins))
    out["distances"] = timed("distances", lambda: distance_statistics(
        E, sample=cfg.distance_sample, seed=seed, bins=cfg.histogram_bins))
    spec = timed("spectrum", lambda: spectrum_statistics(E, seed=seed, blocks=cfg.spectrum_blocks,
                                                         n_bootstrap=cfg.spectrum_bootstrap))
    lo, hi = spec["pr_over_d_ci"]
    spec["pr_band"] = list(cfg.pr_band)
    spec["pr_in_band"] = bool(cfg.pr_band[0] <= spec["pr_over_d"] <= cfg.pr_band[1])
    spec["pr_ci_overlaps_band"] = bool(lo <= cfg.pr_band[1] and hi >= cfg.pr_band[0])
    out["spectrum"] = spec
    out["pentachoron"] = timed("pentachoron", lambda: pentachoron_statistics(
        E, n_simplices=cfg.n_simplices, seed=seed, n_bootstrap=cfg.n_bootstrap,
        bins=cfg.histogram_bins, band=cfg.cv_band))

    def numbers() -> dict[str, Any]:
        res: dict[str, Any] = {}
        for key, words, space in (("digits", wordlists.DIGITS, False), ("number_words", wordlists.NUMBER_WORDS, True)):
            ids = find_token_ids(words, subject, prefer_space=space)
            if len(ids) == len(words):
                res[key] = {"available": True, "tokens": list(words),
                            **digit_manifold(E, [ids[w] for w in words],
                                             n_permutations=cfg.n_permutations, seed=seed)}
            else:
                missing = [w for w in words if w not in ids]
                res[key] = {"available": False,
                            "note": f"not every item is a single token in this vocabulary (missing: {missing})"}
        return res

    out["numbers"] = timed("numbers", numbers)

    def cats() -> dict[str, Any]:
        cat_words = categories if categories is not None else wordlists.SEMANTIC_CATEGORIES
        groups: dict[str, list[int]] = {}
        used: dict[str, list[str]] = {}
        seen_ids: set[int] = set()
        for cname, words in cat_words.items():
            ids = find_token_ids(list(words), subject)
            keep = [(w, i) for w, i in ids.items() if i not in seen_ids]
            seen_ids.update(i for _, i in keep)
            groups[cname] = [i for _, i in keep]
            used[cname] = [w for w, _ in keep]
        try:
            res = category_clustering(E, groups, n_permutations=cfg.n_permutations, seed=seed,
                                      reference_mean=out["cosine"]["mean"])
        except InputError as exc:
            return {"available": False, "note": str(exc)}
        res["available"] = True
        res["words"] = {k: v for k, v in used.items() if len(v) >= 3}
        return res

    out["categories"] = timed("categories", cats)
    out["special_tokens"] = timed("special_tokens", lambda: special_token_statistics(
        E, subject.tokenizer, norms=norm_values, seed=seed))
    if layers:
        out["layers"] = timed("layers", lambda: layer_evolution(
            subject, list(texts) if texts is not None else list(wordlists.TERRAIN_SENTENCES),
            max_length=cfg.max_length, batch_size=cfg.batch_size, seed=seed,
            n_bootstrap=cfg.n_bootstrap, device=device))
    else:
        out["layers"] = {"available": False, "note": "layer statistics were not requested"}
    out["positions"] = timed("positions", lambda: position_structure(
        subject.module, kind=subject.kind, max_positions=cfg.max_positions))
    out["timings"] = timings
    out["cpu_seconds"] = cpu
    return out


# --------------------------------------------------------------------------- plots
def _line(title: str, xlabel: str, ylabel: str, series: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"kind": "line", "title": title, "xlabel": xlabel, "ylabel": ylabel, "series": series, **kw}


def _wrap(text: str, width: int = 44) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width))


def terrain_panel(result: dict[str, Any]) -> dict[str, Any]:
    """The 3 x 3 plot panel spec of one terrain result (every number comes from ``result``).

    Row 1: norm histogram, cosine histogram, eigenspectrum against the column-shuffled null.
    Row 2: pentachoron volumes against the Gaussian null, digit cosine heatmap, category
    lifts with their null intervals. Row 3: layer norm, layer cosine and PR / d, position
    structure; static models show distances, category centroids and number words there.
    """
    name = result["model"]
    subs: list[dict[str, Any]] = []
    n = result["norms"]
    subs.append({"kind": "hist", "title": "Token embedding norms", "xlabel": "L2 norm",
                 "series": [{"label": name, **n["histogram"]}],
                 "vlines": [{"x": n["mean"], "label": f"mean {n['mean']:.3g}"}]})
    c = result["cosine"]
    subs.append({"kind": "hist", "title": "Pairwise cosine (sampled)", "xlabel": "cosine",
                 "series": [{"label": name, **c["histogram"]}],
                 "vlines": [{"x": c["mean"], "label": f"mean {c['mean']:.3f}"},
                            {"x": c["isotropic_std"], "label": "1/sqrt(d)"}]})
    s = result["spectrum"]
    k = min(len(s["eigenvalues"]), 256)
    subs.append(_line(f"Eigenspectrum (PR/d {s['pr_over_d']:.3f})", "component", "variance",
                      [{"label": "embeddings", "x": list(range(1, k + 1)), "y": s["eigenvalues"][:k]},
                       {"label": "column-shuffled null", "x": list(range(1, k + 1)),
                        "y": s["null_eigenvalues"][:k]}], yscale="log"))
    p = result["pentachoron"]
    subs.append({"kind": "hist",
                 "title": f"Pentachoron volume (CV {p['embeddings']['cv']:.3f} vs {p['gaussian']['cv']:.3f})",
                 "xlabel": "volume",
                 "series": [{"label": "embeddings", **p["histogram_embeddings"]},
                            {"label": "Gaussian null", **p["histogram_gaussian"]}]})
    dig = result["numbers"]["digits"]
    num = result["numbers"]["number_words"]
    man = dig if dig.get("available") else num
    if man.get("available"):
        subs.append({"kind": "heatmap",
                     "title": f"{'Digit' if man is dig else 'Number word'} cosine (|i-j| r={man['corr_offset_cosine']:.2f})",
                     "matrix": man["cosine"], "xticklabels": man["tokens"], "yticklabels": man["tokens"],
                     "cmap": "viridis"})
    else:
        subs.append({"kind": "text", "title": "Number tokens", "text": _wrap(dig.get("note", "not available"))})
    cat = result["categories"]
    if cat.get("available"):
        pc = cat["per_category"]
        subs.append({"kind": "bar", "title": f"Within-category cosine (gap {cat['gap']:.3f}, p={cat['p_gap']:.3g})",
                     "ylabel": "mean cosine", "categories": [r["category"] for r in pc],
                     "series": [{"label": "within", "values": [r["within_mean"] for r in pc]},
                                {"label": "permutation null", "values": [r["null_mean"] for r in pc],
                                 "lo": [r["null_ci"][0] for r in pc], "hi": [r["null_ci"][1] for r in pc]}],
                     "hlines": [{"y": c["mean"], "label": "vocabulary mean"}]})
    else:
        subs.append({"kind": "text", "title": "Semantic categories", "text": _wrap(cat.get("note", "not available"))})
    lay = result["layers"]
    if lay.get("available"):
        rows = lay["layers"]
        x = [r["layer"] for r in rows]
        subs.append(_line("Hidden-state norm by layer", "layer", "token norm",
                          [{"label": "mean", "x": x, "y": [r["norm_mean"] for r in rows],
                            "lo": [r["norm_ci"][0] for r in rows], "hi": [r["norm_ci"][1] for r in rows]},
                           {"label": "median", "x": x, "y": [r["norm_median"] for r in rows]}],
                          yscale="log"))
        subs.append(_line("Cosine and PR/d by layer", "layer", "value",
                          [{"label": "cos (all tokens)", "x": x, "y": [r["cos_all"] for r in rows]},
                           {"label": "cos (within sentence)", "x": x, "y": [r["cos_within"] for r in rows],
                            "lo": [r["cos_within_ci"][0] for r in rows], "hi": [r["cos_within_ci"][1] for r in rows]},
                           {"label": "PR/d tokens", "x": x, "y": [r["pr_over_d"] for r in rows]},
                           {"label": "PR/d sentences", "x": x, "y": [r["pooled_pr_over_d"] for r in rows]}]))
    else:
        d = result["distances"]
        subs.append({"kind": "hist", "title": f"Euclidean distances (CV {d['cv']:.3f})", "xlabel": "distance",
                     "series": [{"label": name, **d["histogram"]}]})
        if cat.get("available"):
            subs.append({"kind": "heatmap", "title": "Category centroid cosine", "matrix": cat["centroid_cosine"],
                         "xticklabels": cat["categories"], "yticklabels": cat["categories"], "cmap": "viridis"})
        else:
            subs.append({"kind": "text", "title": "Layers", "text": _wrap(lay.get("note", "no layers"))})
    pos = result["positions"]
    if pos["type"] == "absolute":
        subs.append(_line(f"Position cosine vs offset (rho={pos['spearman_offset_cosine']:.2f})", "offset |i-j|",
                          "mean cosine", [{"label": pos["module"], "x": list(range(1, len(pos["cosine_by_offset"]) + 1)),
                                           "y": pos["cosine_by_offset"]}]))
    elif pos["type"] == "relative":
        subs.append({"kind": "heatmap", "title": "Relative attention bias (heads x buckets)",
                     "matrix": pos["bias"], "xlabel": "bucket", "ylabel": "head",
                     "xticklabels": [str(i) for i in range(pos["buckets"])],
                     "yticklabels": [str(i) for i in range(pos["heads"])], "cmap": "RdBu_r"})
    elif pos["type"] == "rotary":
        subs.append(_line(f"RoPE (analytic, theta={pos['theta']:.0f})", "offset", "mean cos(offset*theta_k)",
                          [{"label": "formula, not weights", "x": pos["offsets"], "y": pos["analytic_similarity"]}]))
    elif num.get("available") and man is not num:
        subs.append({"kind": "heatmap", "title": f"Number-word cosine (|i-j| r={num['corr_offset_cosine']:.2f})",
                     "matrix": num["cosine"], "xticklabels": num["tokens"], "yticklabels": num["tokens"],
                     "cmap": "viridis"})
    else:
        subs.append({"kind": "text", "title": "Positions", "text": _wrap(pos.get("note", "none"))})
    return {"kind": "panel", "title": f"Embedding terrain: {name} (vocab {result['vocab_size']}, d {result['dim']})",
            "rows": 3, "cols": 3, "subplots": subs}
