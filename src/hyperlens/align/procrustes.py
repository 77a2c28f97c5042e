"""Orthogonal Procrustes alignment (with PCA to a common width when the widths differ)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from .base import Aligner, center_stats, register_aligner, top_components

__all__ = ["ProcrustesAligner", "IdentityAligner"]


@register_aligner("procrustes")
@dataclass(eq=False, repr=False)
class ProcrustesAligner(Aligner):
    """Rotate the teacher's anchors onto the student's: ``min_R ||X R - Y||_F``, ``R`` orthogonal.

    Both sides are centred on their anchor means and rescaled to unit RMS norm, so the
    rotation (and the optional scale) compares shapes, not units. When the widths differ,
    or ``n_components`` is given, each side is first reduced by PCA on its own anchors to
    ``k = n_components`` (default ``min(d_t, d_s, n - 1)``: centred anchors have rank at
    most ``n - 1``). The shared space is the student's (PCA) coordinates.

    Args:
        n_components: width of the shared space; ``None`` keeps every dimension when the
            widths agree and ``min(d_t, d_s, n - 1)`` otherwise.
        scaling: also fit the least-squares scale ``s`` in ``s X R ~ Y``.

    Shapes:
        fit: teacher ``[n, d_t]``, student ``[n, d_s]``; transforms give ``[N, k]``.
    """

    n_components: int | None = None
    scaling: bool = False

    def _state_names(self) -> list[str]:
        return ["mean_t_", "mean_s_", "basis_t_", "basis_s_", "rotation_", "scale_t_", "scale_s_"]

    def _extra_state(self) -> dict[str, float]:
        return {"scale_": self.scale_, "residual_": self.residual_}

    def _fit(self, teacher: torch.Tensor, student: torch.Tensor) -> None:
        n, d_t = teacher.shape
        d_s = student.shape[1]
        self.mean_t_, xc = center_stats(teacher)
        self.mean_s_, yc = center_stats(student)
        k = self.n_components
        if k is not None:
            limit = min(d_t, d_s, n - 1)
            if not isinstance(k, int) or k < 1 or k > limit:
                raise InputError(
                    f"n_components={k!r} must be an int in [1, {limit}] = [1, min(d_t={d_t}, "
                    f"d_s={d_s}, n_anchors - 1={n - 1})]; use fewer components or more anchors."
                )
        if k is None and d_t == d_s:
            self.basis_t_ = torch.eye(d_t, dtype=teacher.dtype)
            self.basis_s_ = torch.eye(d_s, dtype=student.dtype)
        else:
            k = k or min(d_t, d_s, n - 1)
            self.basis_t_ = top_components(xc, k)
            self.basis_s_ = top_components(yc, k)
        xp = xc @ self.basis_t_  # [n, k]
        yp = yc @ self.basis_s_  # [n, k]
        self.scale_t_ = xp.pow(2).sum(1).mean().sqrt().clamp_min(1e-12).reshape(1)
        self.scale_s_ = yp.pow(2).sum(1).mean().sqrt().clamp_min(1e-12).reshape(1)
        xp = xp / self.scale_t_
        yp = yp / self.scale_s_
        u, sv, vh = torch.linalg.svd(xp.T @ yp)  # [k, k]
        self.rotation_ = u @ vh
        self.scale_ = float(sv.sum() / xp.pow(2).sum()) if self.scaling else 1.0
        resid = self.scale_ * xp @ self.rotation_ - yp
        # relative residual ||sXR - Y||_F / ||Y||_F on the anchors
        self.residual_ = float(resid.norm() / yp.norm().clamp_min(1e-12))
        self.dim_ = int(self.rotation_.shape[1])

    def _transform(self, x: torch.Tensor, side: str) -> torch.Tensor:
        if side == "teacher":
            z = (x - self.mean_t_) @ self.basis_t_ / self.scale_t_
            return self.scale_ * (z @ self.rotation_)
        return (x - self.mean_s_) @ self.basis_s_ / self.scale_s_


@register_aligner("none")
@dataclass(eq=False, repr=False)
class IdentityAligner(Aligner):
    """No alignment: both sides keep their raw coordinates (the narrower one zero-padded).

    The control for every other aligner: a teacher classifier applied to student vectors
    in their own, unrelated coordinates.

    Shapes:
        transforms give ``[N, max(d_t, d_s)]``.
    """

    def _min_anchors(self) -> int:
        return 1

    def _fit(self, teacher: torch.Tensor, student: torch.Tensor) -> None:
        self.dim_ = max(teacher.shape[1], student.shape[1])

    def _transform(self, x: torch.Tensor, side: str) -> torch.Tensor:
        pad = self.dim_ - x.shape[1]
        return torch.nn.functional.pad(x, (0, pad)) if pad else x.clone()
