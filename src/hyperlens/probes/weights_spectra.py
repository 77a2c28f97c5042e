"""Pure tensor functions behind the weight battery: spectra, power-law tails, QK geometry.

Everything is batched over a leading dimension so one call handles every layer of a role.
Singular values themselves come from :func:`hyperlens.probes.weights.spectra_of` (the
eigenvalues of the smaller Gram matrix); the functions here turn them, or small per-head
factors, into metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..functional.geometry import spectrum_participation_ratio

__all__ = [
    "spectral_metrics",
    "power_law_fit",
    "sparsity_counts",
    "qk_head_geometry",
    "t5_bucket_distances",
    "relative_bias_profiles",
]


def power_law_fit(eig: torch.Tensor, *, min_tail: int = 10,
                  max_candidates: int = 64) -> dict[str, torch.Tensor]:
    """Maximum-likelihood power-law fit of each spectrum's upper tail, xmin by least KS distance.

    For every candidate ``xmin`` (each eigenvalue with at least ``min_tail`` values at or
    above it) the continuous MLE ``α = 1 + n / Σ ln(λ_i / xmin)`` is computed and the
    Kolmogorov-Smirnov distance ``D`` between the tail's empirical CDF and the fitted one;
    the ``xmin`` with the smallest ``D`` wins (Clauset, Shalizi and Newman 2009). All
    candidates of all spectra are evaluated at once. Fit quality is reported as ``D`` and as
    ``ks_ok``: ``D`` below the 5 % critical value ``1.36 / sqrt(n_tail)`` of the KS test (a
    simple, documented stand-in for the bootstrap p-value, which would need hundreds of refits).

    Args:
        eig: ``[B, N]`` non-negative eigenvalues (any order).
        min_tail: fewest points a tail may have.
        max_candidates: at most this many ``xmin`` candidates, evenly spaced in rank.

    Returns:
        dict of ``[B]`` tensors: ``alpha``, ``xmin``, ``ks``, ``n_tail``, ``ks_ok`` (NaN /
        False where a spectrum has fewer than ``min_tail`` positive values).

    Shapes:
        eig ``[B, N]`` -> every output ``[B]``.
    """
    lam = eig.double().sort(dim=-1).values  # ascending [B, N]
    bsz, n = lam.shape
    out_alpha = torch.full((bsz,), float("nan"), dtype=torch.float64, device=lam.device)
    out = {"alpha": out_alpha, "xmin": out_alpha.clone(), "ks": out_alpha.clone(),
           "n_tail": torch.zeros(bsz, dtype=torch.long, device=lam.device),
           "ks_ok": torch.zeros(bsz, dtype=torch.bool, device=lam.device)}
    if n < min_tail:
        return out
    scale = lam[:, -1:].clamp_min(1e-300)
    lam = lam / scale  # scale-free: alpha and D do not depend on units
    tiny = 1e-12
    logl = torch.log(lam.clamp_min(tiny))
    # suffix sums of log λ: S[j] = Σ_{i≥j} ln λ_i
    suffix = logl.flip(-1).cumsum(-1).flip(-1)
    idx = torch.arange(n, device=lam.device)
    n_tail = (n - idx).double()  # [N]
    j_max = n - min_tail + 1  # candidates j < j_max
    denom = suffix - n_tail * logl  # Σ ln(λ_i / λ_j)
    alpha = 1.0 + n_tail / denom.clamp_min(1e-300)  # [B, N]
    valid = (lam > tiny) & (idx < j_max) & (denom > 0)
    # Candidate xmin positions: every admissible index, thinned evenly to at most
    # ``max_candidates`` so the KS scan stays O(B · candidates · N).
    n_c = min(j_max, max_candidates)
    cand = torch.linspace(0, j_max - 1, n_c, device=lam.device).round().long().unique()  # [C]
    alpha_c = alpha[:, cand]  # [B, C]
    valid_c = valid[:, cand]
    ks = torch.full((bsz, cand.numel()), float("inf"), dtype=torch.float64, device=lam.device)
    tri = idx[None, :] >= cand[:, None]  # [C, N]: tail membership
    k = (idx[None, :] - cand[:, None]).double()  # position inside the tail
    nt_c = n_tail[cand][:, None]
    rows = max(1, int(4_000_000 // max(cand.numel() * n, 1)))
    for b0 in range(0, bsz, rows):
        lb = lam[b0:b0 + rows]  # [b, N]
        ab = alpha_c[b0:b0 + rows]  # [b, C]
        ratio = (lb[:, None, :] / lb[:, cand][:, :, None].clamp_min(tiny)).clamp_min(1.0)
        cdf = 1.0 - ratio.pow((1.0 - ab)[:, :, None])  # [b, C, N]
        d = torch.maximum((cdf - (k + 1.0) / nt_c).abs(), (cdf - k / nt_c).abs())
        d = torch.where(tri, d, torch.zeros((), dtype=d.dtype, device=d.device))
        ks[b0:b0 + rows] = d.amax(-1)
    ks = torch.where(valid_c, ks, torch.full_like(ks, float("inf")))
    best_c = ks.argmin(-1)  # [B]
    rowsel = torch.arange(bsz, device=lam.device)
    ok_any = torch.isfinite(ks[rowsel, best_c])
    best = cand[best_c]
    nt = (n - best)
    out["alpha"] = torch.where(ok_any, alpha[rowsel, best], out["alpha"])
    out["xmin"] = torch.where(ok_any, lam[rowsel, best] * scale[:, 0], out["xmin"])
    out["ks"] = torch.where(ok_any, ks[rowsel, best_c], out["ks"])
    out["n_tail"] = torch.where(ok_any, nt, out["n_tail"])
    out["ks_ok"] = ok_any & (out["ks"] < 1.36 / nt.double().clamp_min(1).sqrt())
    return out


def spectral_metrics(s: torch.Tensor, shape: Sequence[int]) -> dict[str, torch.Tensor]:
    """Rank and conditioning summaries of singular values.

    Args:
        s: ``[B, r]`` singular values, descending.
        shape: the matrices' ``(m, n)``; the eigenvalues of ``WᵀW / m`` (the empirical
            spectral density WeightWatcher fits) enter the power-law fit.

    Returns:
        dict of ``[B]`` tensors: ``stable_rank`` (Σσ²/σ₁²), ``participation_ratio``
        ((Σσ)²/Σσ², in [1, r]), ``active_fraction`` (share of σ > 1 % of σ₁), ``rank90``
        (fewest σ holding 90 % of Σσ², the energy), ``condition`` (σ₁/σ_r, inf when σ_r = 0),
        ``spectral_norm``, ``frobenius_norm`` and the :func:`power_law_fit` outputs
        (``alpha``, ``xmin``, ``ks``, ``n_tail``, ``ks_ok``).

    Shapes:
        s ``[B, r]`` -> every output ``[B]``.
    """
    s = s.double()
    r = s.shape[-1]
    s1 = s[:, 0]
    s2 = s.pow(2)
    fro2 = s2.sum(-1)
    safe1 = s1.clamp_min(1e-300)
    out: dict[str, torch.Tensor] = {}
    out["stable_rank"] = torch.where(s1 > 0, fro2 / safe1.pow(2), torch.zeros_like(s1))
    out["participation_ratio"] = spectrum_participation_ratio(s)
    out["active_fraction"] = (s > 0.01 * s1[:, None]).double().sum(-1) / r
    energy = s2.cumsum(-1) / fro2.clamp_min(1e-300)[:, None]
    out["rank90"] = (energy < 0.9 - 1e-12).sum(-1) + 1
    smin = s[:, -1]
    out["condition"] = torch.where(smin > 0, s1 / smin.clamp_min(1e-300),
                                   torch.full_like(s1, float("inf")))
    out["spectral_norm"] = s1
    out["frobenius_norm"] = fro2.sqrt()
    m = max(int(shape[0]), int(shape[1]))
    out.update(power_law_fit(s2 / m))
    return out


def sparsity_counts(w: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """How many entries of ``w`` have ``|w| < t`` for each threshold ``t`` (ascending).

    Shapes:
        w any shape, thresholds ``[K]`` -> ``[K]`` int64 counts.
    """
    a = w.detach().abs().reshape(-1)
    idx = torch.searchsorted(thresholds.to(a.dtype), a, right=True)  # thresholds ≤ |w|
    counts = torch.bincount(idx, minlength=thresholds.numel() + 1)
    return counts.cumsum(0)[: thresholds.numel()]


def qk_head_geometry(
    a: torch.Tensor, b: torch.Tensor, *, rtol: float = 1e-8
) -> dict[str, torch.Tensor]:
    """Geometry of per-head bilinear forms ``M = Aᵀ B`` (the head's query-key similarity).

    A head scores query ``x`` against key ``y`` as ``(A x)·(B y) = xᵀ (Aᵀ B) y`` with
    ``A = W_Q[head]``, ``B = W_K[kv head]``. ``M`` is ``d × d`` but has rank at most
    ``2·d_head``, so everything is computed from the ``2·d_head`` square Gram matrix
    ``G = [A; B][A; B]ᵀ`` and its Cholesky factor ``L``: the non-zero eigenvalues of the
    symmetric part are those of ``½ Lᵀ J L`` (``J`` swaps the A and B blocks), the squared
    singular values those of ``L_aᵀ (B Bᵀ) L_a``, and ``‖M‖²``, ``tr(M²)`` are traces of
    blocks of ``G``. Heads where ``[A; B]`` is rank deficient (Cholesky fails) take an exact
    QR route instead.

    Args:
        a: ``[B, d_head, d]`` query weights per head.
        b: ``[B, d_head, d]`` key weights per (query) head; grouped-query callers repeat the
            shared key head for each query head in its group.
        rtol: eigenvalues with ``|λ| ≤ rtol·max|λ|`` count as zero.

    Returns:
        dict of ``[B]`` tensors: ``stable_rank`` and ``participation_ratio`` of the singular
        values of ``M``; ``symmetry_deviation`` ``‖M − Mᵀ‖_F / ‖M‖_F`` (0 symmetric, √2
        antisymmetric); from the eigenvalues of the symmetric part ``(M + Mᵀ)/2``: ``n_pos``,
        ``n_neg``, ``pos_fraction`` (n_pos / (n_pos + n_neg)) and ``pos_mass``
        (Σλ⁺ / Σ|λ|); ``top_eig`` and ``bottom_eig``.

    Shapes:
        a, b ``[B, d_head, d]`` -> every output ``[B]``.
    """
    bsz, dh, d = a.shape
    x = torch.cat([a, b], dim=1)  # [B, 2dh, d]
    xd = x.double()
    g = xd @ xd.mT  # [B, 2dh, 2dh] Gram of the rows of A and B, float64 (trace differences)
    del xd
    # Cholesky route: nonzero eig((Aᵀ B + Bᵀ A)/2) = eig(½ Lᵀ J L) with G = L Lᵀ and
    # J = [[0, I], [I, 0]]; σ(Aᵀ B)² = eig(L_aᵀ G_b L_a) with L_a the leading block of L.
    lower, info = torch.linalg.cholesky_ex(g)
    ok = info == 0
    jl = torch.cat([lower[:, dh:], lower[:, :dh]], dim=1)  # J L
    sym_small = 0.5 * (lower.mT @ jl)
    sym_small = 0.5 * (sym_small + sym_small.mT)
    la = lower[:, :dh, :dh]
    gb = g[:, dh:, dh:]
    s2 = torch.linalg.eigvalsh(la.mT @ gb @ la)
    if not bool(ok.all()):  # rank-deficient [A; B]: exact QR route for those heads
        bad = ~ok
        q, _ = torch.linalg.qr(x[bad].mT)  # [b, d, r]
        ap = (a[bad] @ q).double()
        bp = (b[bad] @ q).double()
        m = ap.mT @ bp  # [b, r, r]; M = Q m Qᵀ
        r = m.shape[-1]
        pad = 2 * dh - r
        ev_bad = torch.linalg.eigvalsh(0.5 * (m + m.mT))
        s2_bad = (
            torch.linalg.eigvalsh(m.mT @ m)[:, -dh:] if r >= dh else torch.linalg.eigvalsh(m.mT @ m)
        )
        if pad > 0:
            ev_bad = (
                torch.cat([ev_bad, ev_bad.new_zeros(ev_bad.shape[0], pad)], dim=1).sort(-1).values
            )
        if s2_bad.shape[-1] < dh:
            s2_bad = torch.cat(
                [s2_bad.new_zeros(s2_bad.shape[0], dh - s2_bad.shape[-1]), s2_bad], dim=1
            )
        sym_small = sym_small.clone()
        sym_small[bad] = torch.diag_embed(ev_bad)
        s2 = s2.clone()
        s2[bad] = s2_bad
    s = s2.clamp_min(0).sqrt().flip(-1)  # [B, dh] singular values of M
    fro2 = s.pow(2).sum(-1)
    out: dict[str, torch.Tensor] = {}
    out["stable_rank"] = torch.where(s[:, 0] > 0, fro2 / s[:, 0].clamp_min(1e-300).pow(2),
                                     torch.zeros_like(fro2))
    out["participation_ratio"] = spectrum_participation_ratio(s)
    c = g[:, :dh, dh:]  # A Bᵀ
    tr_m2 = (c * c.mT).sum((-2, -1))  # tr(C²) = tr(M²)
    fro2_g = (g[:, :dh, :dh] * gb).sum((-2, -1))  # ‖M‖² = tr(A Aᵀ B Bᵀ), same precision as tr(M²)
    out["symmetry_deviation"] = ((2.0 * (fro2_g - tr_m2)).clamp_min(0).sqrt()
                                 / fro2_g.sqrt().clamp_min(1e-300))
    ev = torch.linalg.eigvalsh(sym_small)  # [B, 2dh]
    tol = rtol * ev.abs().amax(-1, keepdim=True)
    pos = ev > tol
    neg = ev < -tol
    out["n_pos"] = pos.sum(-1)
    out["n_neg"] = neg.sum(-1)
    out["pos_fraction"] = (
        out["n_pos"].double() / (out["n_pos"] + out["n_neg"]).clamp_min(1).double()
    )
    absum = ev.abs().sum(-1)
    out["pos_mass"] = ev.clamp_min(0).sum(-1) / absum.clamp_min(1e-300)
    out["top_eig"] = ev[:, -1]
    out["bottom_eig"] = ev[:, 0]
    return out


def t5_bucket_distances(
    num_buckets: int, max_distance: int, bidirectional: bool
) -> list[dict[str, Any]]:
    """Which relative positions fall into each T5 relative-attention bucket.

    Re-derives T5's bucketing (exact buckets for small distances, log-spaced up to
    ``max_distance``) for relative positions ``key − query`` in ``[-4·max_distance,
    4·max_distance]`` and returns, per bucket, its side (``"left"``: keys at or before the
    query, ``"right"``: after) and the smallest, mean and largest distance it covers.
    """
    rel = np.arange(-4 * max_distance, 4 * max_distance + 1)
    nb = num_buckets
    bucket = np.zeros_like(rel)
    if bidirectional:
        nb //= 2
        bucket += (rel > 0).astype(rel.dtype) * nb
        dist = np.abs(rel)
    else:
        dist = -np.minimum(rel, 0)
    max_exact = nb // 2
    with np.errstate(divide="ignore"):
        large = max_exact + (
            np.log(np.maximum(dist, 1) / max_exact)
            / math.log(max_distance / max_exact)
            * (nb - max_exact)
        ).astype(np.int64)
    large = np.minimum(large, nb - 1)
    bucket = bucket + np.where(dist < max_exact, dist, large)
    side = np.where(rel > 0, "right", "left")
    if not bidirectional:
        keep = rel <= 0
        rel, dist, bucket, side = rel[keep], dist[keep], bucket[keep], side[keep]
    out = []
    for bi in range(num_buckets):
        sel = bucket == bi
        if not sel.any():
            out.append({"bucket": bi, "side": "unused", "min": float("nan"), "mean": float("nan"),
                        "max": float("nan")})
            continue
        d = dist[sel]
        out.append({"bucket": bi, "side": str(side[sel][0]), "min": float(d.min()),
                    "mean": float(d.mean()), "max": float(d.max())})
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(y) == 0 or np.ptp(x) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def relative_bias_profiles(
    bias: np.ndarray, buckets: list[dict[str, float]]
) -> list[dict[str, object]]:
    """Per-head shape of a relative position bias table.

    For each head and each side (left/right), the bias is ordered by the buckets' mean
    distance. ``monotonicity`` is the share of steps to a farther bucket where the bias does
    not rise (1: strictly prefers near tokens); ``distance_corr`` is the Spearman correlation
    of bias with distance (negative: local head); ``kind`` is ``local`` when the head's
    largest bias sits in one of the three nearest buckets of its side, ``global`` in one of the
    three farthest, else ``mixed``.

    Shapes:
        bias ``[num_buckets, num_heads]``.
    """
    out: list[dict[str, object]] = []
    sides = sorted({b["side"] for b in buckets if b["side"] != "unused"})
    for h in range(bias.shape[1]):
        row: dict[str, object] = {
            "head": h,
            "min": float(bias[:, h].min()),
            "max": float(bias[:, h].max()),
        }
        peak = int(np.argmax(bias[:, h]))
        for side in sides:
            idx = [int(b["bucket"]) for b in buckets if b["side"] == side]
            idx.sort(key=lambda i: buckets[i]["mean"])
            vals = bias[idx, h]
            dist = np.array([buckets[i]["mean"] for i in idx])
            steps = np.diff(vals)
            row[f"{side}_monotonicity"] = float((steps <= 0).mean()) if len(steps) else float("nan")
            row[f"{side}_distance_corr"] = _spearman(dist, vals)
            if peak in idx:
                pos = idx.index(peak)
                row["peak_side"] = side
                row["peak_distance"] = buckets[peak]["mean"]
                row["kind"] = "local" if pos < 3 else ("global" if pos >= len(idx) - 3 else "mixed")
        row["monotonicity"] = float(np.nanmean([row[f"{s}_monotonicity"] for s in sides]))
        row["distance_corr"] = float(np.nanmean([row[f"{s}_distance_corr"] for s in sides]))
        out.append(row)
    return out
