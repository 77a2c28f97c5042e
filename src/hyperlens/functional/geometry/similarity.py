"""Comparisons of two representations of the same items: CKA and k-NN overlap."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from ...errors import InputError, ShapeError
from ...utils import check_int
from ._base import (
    _chunk_rows,
    _matrix,
)


# ------------------------------------------------------------------ representation similarity
def _paired(X: Any, Y: Any, min_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    Xt = _matrix(X, "X", min_rows=min_rows).to(torch.float64)
    Yt = _matrix(Y, "Y", min_rows=min_rows).to(torch.float64)
    if Xt.shape[0] != Yt.shape[0]:
        raise ShapeError(
            f"X and Y must describe the same items row by row: X has {Xt.shape[0]} rows "
            f"(shape {tuple(Xt.shape)}), Y has {Yt.shape[0]} (shape {tuple(Yt.shape)})."
        )
    if Xt.device != Yt.device:
        Yt = Yt.to(Xt.device)
    return Xt, Yt


def linear_cka(X: Any, Y: Any) -> float:
    """Linear centred kernel alignment (Kornblith et al., 2019) between two representations
    of the same ``n`` items: ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``.

    Invariant to orthogonal maps and isotropic scaling of either side; 1 for identical
    inputs. Computed in float64 from the ``d x d`` cross products, never ``n x n``.

    Shapes:
        X: ``[n, d1]``, Y: ``[n, d2]``.
    """
    Xt, Yt = _paired(X, Y, 2)
    Xc = Xt - Xt.mean(0, keepdim=True)
    Yc = Yt - Yt.mean(0, keepdim=True)
    cross = (Yc.T @ Xc).square().sum()
    nx = (Xc.T @ Xc).square().sum().sqrt()
    ny = (Yc.T @ Yc).square().sum().sqrt()
    den = float(nx * ny)
    return float(cross) / den if den > 0 else 0.0


def _hsic_u_terms(A: torch.Tensor, B: torch.Tensor) -> float:
    """Unbiased HSIC (Song et al., 2012) for linear kernels ``K = A A^T``, ``L = B B^T``
    without forming ``n x n`` matrices. ``K~`` / ``L~`` are the kernels with zero diagonal:

        HSIC_u = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n (n-3)).
    """
    n = A.shape[0]
    ka = (A * A).sum(1)  # diag K  [n]
    lb = (B * B).sum(1)  # diag L  [n]
    tr = (B.T @ A).square().sum() - (ka * lb).sum()  # tr(K~ L~)
    k1 = A @ A.sum(0) - ka  # K~ 1   [n]
    l1 = B @ B.sum(0) - lb  # L~ 1   [n]
    sk, sl = k1.sum(), l1.sum()
    val = tr + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 * l1).sum()
    return float(val) / (n * (n - 3))


def unbiased_cka(X: Any, Y: Any) -> float:
    """CKA from the unbiased HSIC U-statistic (Song et al., 2012; Nguyen et al., 2021) with
    linear kernels: removes the finite-sample bias that pushes linear CKA of unrelated
    high-dimensional representations towards 1. Needs ``n >= 4``. Can be slightly
    negative for unrelated inputs; 1 for identical ones; invariant to orthogonal maps and
    isotropic scaling. O(n d^2), no ``n x n`` kernel.

    Shapes:
        X: ``[n, d1]``, Y: ``[n, d2]`` with ``n >= 4``.
    """
    Xt, Yt = _paired(X, Y, 4)
    hxy = _hsic_u_terms(Xt, Yt)
    hxx = _hsic_u_terms(Xt, Xt)
    hyy = _hsic_u_terms(Yt, Yt)
    den = hxx * hyy
    return hxy / math.sqrt(den) if den > 0 else 0.0


def _knn(X: torch.Tensor, k: int, metric: str) -> torch.Tensor:
    n = X.shape[0]
    if metric == "cosine":
        Z = X / X.norm(dim=1, keepdim=True).clamp_min(1e-300)
        sq = None
    else:
        Z = X - X.mean(0, keepdim=True)
        sq = (Z * Z).sum(1)
    out = torch.empty(n, k, dtype=torch.int64, device=X.device)
    step = _chunk_rows(n * 8 * 2)
    for s in range(0, n, step):
        blk = Z[s : s + step]
        score = blk @ Z.T  # [b, n] larger = nearer
        if sq is not None:
            score = 2 * score - sq[None, :]  # -||a-b||^2 up to a per-row constant
        rows = torch.arange(s, s + blk.shape[0], device=X.device)
        score[torch.arange(blk.shape[0], device=X.device), rows] = -float("inf")
        out[s : s + step] = score.topk(k, dim=1).indices
    return out


def knn_overlap(
    X: Any,
    Y: Any,
    k: int = 10,
    *,
    metric: Literal["cosine", "euclidean"] = "cosine",
    per_point: bool = False,
) -> float | torch.Tensor:
    """Mutual k-nearest-neighbour overlap between two representations of the same items.

    For each item, the fraction of its ``k`` nearest neighbours in ``X`` (itself excluded)
    that are also among its ``k`` nearest neighbours in ``Y``; the mean over items (or the
    per-item values with ``per_point=True``). 1 when the neighbourhoods agree; about
    ``k / (n - 1)`` for unrelated representations.

    Shapes:
        X: ``[n, d1]``, Y: ``[n, d2]`` with ``n >= k + 1`` -> float or ``[n]`` float64.
    """
    k = check_int(k, "k", minimum=1)
    if metric not in ("cosine", "euclidean"):
        raise InputError(f"metric must be 'cosine' or 'euclidean', got {metric!r}.")
    Xt, Yt = _paired(X, Y, k + 1)
    nx = _knn(Xt, k, metric)
    ny = _knn(Yt, k, metric)
    hit = (nx[:, :, None] == ny[:, None, :]).any(dim=2).to(torch.float64)  # [n, k]
    per = hit.mean(dim=1)
    return per if per_point else float(per.mean())
