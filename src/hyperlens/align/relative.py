"""Relative representations: describe every vector by its cosines to the anchors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Aligner, register_aligner

__all__ = ["RelativeAligner"]


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


@register_aligner("relative")
@dataclass(eq=False, repr=False)
class RelativeAligner(Aligner):
    """Shared space = cosine similarity to each anchor (Moschella et al., 2023).

    Anchor ``j`` is the same text on both sides, so coordinate ``j`` means "how close to
    anchor text ``j``" for either model; no map is learned. ``center=True`` subtracts each
    side's anchor mean first (cosines of uncentred transformer embeddings are all close to
    1 and carry little contrast).

    Shapes:
        fit: teacher ``[n, d_t]``, student ``[n, d_s]``; transforms give ``[N, n]``.
    """

    center: bool = True

    def _state_names(self) -> list[str]:
        return ["mean_t_", "mean_s_", "anchors_t_", "anchors_s_"]

    def _fit(self, teacher: torch.Tensor, student: torch.Tensor) -> None:
        z = torch.zeros
        self.mean_t_ = teacher.mean(0) if self.center else z(teacher.shape[1], dtype=teacher.dtype)
        self.mean_s_ = student.mean(0) if self.center else z(student.shape[1], dtype=student.dtype)
        self.anchors_t_ = _unit_rows(teacher - self.mean_t_)
        self.anchors_s_ = _unit_rows(student - self.mean_s_)
        self.dim_ = int(teacher.shape[0])

    def _transform(self, x: torch.Tensor, side: str) -> torch.Tensor:
        if side == "teacher":
            return _unit_rows(x - self.mean_t_) @ self.anchors_t_.T
        return _unit_rows(x - self.mean_s_) @ self.anchors_s_.T
