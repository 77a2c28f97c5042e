"""Token-embedding statistics: norms, cosines, distances, spectrum, simplex volumes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ...errors import InputError, ShapeError
from ...functional import geometry as G
from ...functional.stats import bootstrap_ci
from ...utils import as_float_matrix, derive_seed, make_generator
from ._common import (
    _histogram,
    _percentiles,
    _sample_rows,
)


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
        "cv": float(G.coefficient_of_variation(norms)),
        "min": float(norms[imin]), "argmin": imin, "argmin_token": tok(imin),
        "max": float(norms[imax]), "argmax": imax, "argmax_token": tok(imax),
        "zero_rows": int((norms < 1e-6).sum()),
        "percentiles": _percentiles(norms),
        "per_dim_mean_abs": float(E.double().mean(dim=0).abs().mean()),
        "per_dim_std_mean": float(E.double().std(dim=0).mean()),
        "_norms": norms,
    }


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
        raise InputError(
            f"E needs at least 3 non-zero rows for cosine statistics, got {X.shape[0]}."
        )
    d = X.shape[1]
    mean, std = G.cosine_moments(X)
    c_mean, c_std = G.cosine_moments(X - X.mean(dim=0))
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
    gen = make_generator(derive_seed(seed, "distances"))
    idx = _sample_rows(E.shape[0], sample, gen)
    flat = G.pair_values(
        E[idx], metric="euclidean", max_exact_pairs=len(idx) ** 2
    )  # every pair i < j
    mean = float(flat.mean())
    return {
        "mean": mean, "std": float(flat.std()),
        "cv": float(G.coefficient_of_variation(flat, correction=1)),
        "mean_over_sqrt_d": mean / math.sqrt(E.shape[1]),
        "min": float(flat.min()), "max": float(flat.max()),
        "sample_rows": int(idx.numel()), "percentiles": _percentiles(flat),
        "histogram": _histogram(flat, bins),
    }


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
    gen = make_generator(derive_seed(seed, "spectrum"))
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
        covs = (
            torch.einsum("bk,kij->bij", w, outer) / m[:, None, None]
            - s1[:, :, None] * s1[:, None, :]
        )
        tr = torch.diagonal(covs, dim1=1, dim2=2).sum(-1)
        boot_pr[start:start + 16] = tr * tr / (covs * covs).sum((1, 2)).clamp_min(1e-300)
    # Resampling duplicates rows, which spreads the eigenvalues and biases every resampled
    # PR downwards, so percentile bounds can miss the point estimate; a normal interval
    # around it with the bootstrap standard error is reported instead, and the bias kept.
    se = float((boot_pr / d).std())
    lo, hi = pr / d - 1.959964 * se, pr / d + 1.959964 * se
    null_pr = float(G.spectrum_participation_ratio(var))
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


def _cv_ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CV of ``a`` over CV of ``b`` per resample: ``[B, m_a]``, ``[B, m_b]`` -> ``[B]``."""
    return G.coefficient_of_variation(a) / G.coefficient_of_variation(b)


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
    seeds = [derive_seed(seed, "pentachoron", s) for s in range(7)]
    idx = G.sample_simplices(n, 4, n_simplices, seed=seeds[0])
    vols = {"embeddings": G.simplex_volumes(E, idx)}
    nulls: tuple[G.NullModel, G.NullModel] = ("gaussian", "isotropic")
    for j, null in enumerate(nulls):
        pts = G.null_points(E, null, n=5 * n_simplices, seed=seeds[1 + j])
        vols[null] = G.cayley_menger_volume(pts.view(n_simplices, 5, d))
    out: dict[str, Any] = {"n_simplices": n_simplices}
    for j, (name, v) in enumerate(vols.items()):
        valid = v[v > 0]
        est = G.cv_ci(valid, n_boot=n_bootstrap, seed=seeds[3 + j]) if valid.numel() > 1 else None
        out[name] = {
            "cv": est.value if est else float("nan"),
            "cv_ci": [est.lo, est.hi] if est else [None, None],
            "mean_volume": float(valid.mean()) if valid.numel() else 0.0,
            "degenerate": int((v <= 0).sum()),
        }
    # ratio to the Gaussian null, resampling both volume sets
    ve, vg = vols["embeddings"][vols["embeddings"] > 0], vols["gaussian"][vols["gaussian"] > 0]
    ratio = bootstrap_ci((ve, vg), _cv_ratio, n_boot=n_bootstrap, seed=seeds[6],
                         vectorized=True, paired=False)
    out["ratio_to_gaussian"] = out["embeddings"]["cv"] / out["gaussian"]["cv"]
    out["ratio_to_gaussian_ci"] = [ratio.lo, ratio.hi]
    out["volume_ratio_to_isotropic"] = out["embeddings"]["mean_volume"] / max(
        out["isotropic"]["mean_volume"], 1e-300
    )
    lo, hi = out["embeddings"]["cv_ci"]
    out["band"] = list(band)
    out["ci_overlaps_band"] = bool(lo <= band[1] and hi >= band[0])
    out["in_band"] = bool(band[0] <= out["embeddings"]["cv"] <= band[1])
    out["gaussian_in_band"] = bool(band[0] <= out["gaussian"]["cv"] <= band[1])
    vol, vol_g = vols["embeddings"], vols["gaussian"]
    top = float(torch.quantile(torch.cat([vol, vol_g]), 0.995))
    out["histogram_embeddings"] = _histogram(
        vol[vol <= top], bins
    )  # top 0.5 % left out of the plot
    out["histogram_gaussian"] = _histogram(vol_g[vol_g <= top], bins)
    return out
