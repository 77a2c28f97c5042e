"""Contrastive alignment: two small MLP heads trained so paired anchors land together."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from ..train import TrainConfig, fit_module, step_generator
from .base import Aligner, center_stats, register_aligner, top_components

__all__ = ["ContrastiveAligner", "ProjectionHead", "margin_loss", "info_nce_loss"]


class ProjectionHead(nn.Module):
    """``Linear -> GELU -> Dropout -> Linear``, output on the unit sphere.

    Shapes: ``[N, d_in]`` -> ``[N, d_out]``.
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.net(x), dim=1)


def margin_loss(
    t: torch.Tensor, s: torch.Tensor, perm: torch.Tensor, margin: float
) -> torch.Tensor:
    """``mean(1 - cos(t_i, s_i)) + mean(relu(cos(t_i, s_perm(i)) - margin))``.

    Pulls paired rows together and pushes a shuffled partner below ``margin`` cosine.
    Shapes: ``t, s [n, k]`` (unit rows), ``perm [n]``.
    """
    pos = (t * s).sum(1)
    neg = (t * s[perm]).sum(1)
    return (1 - pos).mean() + torch.relu(neg - margin).mean()


def info_nce_loss(t: torch.Tensor, s: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: each row must pick its own partner among all rows of the batch.

    Shapes: ``t, s [n, k]`` (unit rows).
    """
    logits = t @ s.T / temperature  # [n, n]
    target = torch.arange(t.shape[0], device=t.device)
    return 0.5 * (
        nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)
    )


class _HeadPair(nn.Module):
    """The two heads trained together (teacher side ``t``, student side ``s``)."""

    def __init__(self, t: ProjectionHead, s: ProjectionHead) -> None:
        super().__init__()
        self.t, self.s = t, s


@register_aligner("contrastive")
@dataclass(eq=False, repr=False)
class ContrastiveAligner(Aligner):
    """Two MLP heads, one per model, trained so that the same text lands at the same point.

    Each side is first reduced to its top ``pca_dim`` principal components on the anchors
    (at most ``n - 1``) and standardised; this keeps training fast on a CPU (a few
    seconds for 500 anchors) and removes directions the anchors cannot constrain. Each
    head maps to
    ``shared_dim`` coordinates on the unit sphere. ``loss="margin"`` is a cosine pull on
    pairs plus a hinge on shuffled pairs (``margin``); ``loss="infonce"`` is the symmetric
    InfoNCE over the batch (``temperature``). Training is full batch by default (anchors
    are few), with AdamW through :func:`hyperlens.train.fit_module`, on ``device``;
    everything random (initialisation, batch order, dropout, margin negatives) comes from
    ``seed``.

    Shapes:
        fit: teacher ``[n, d_t]``, student ``[n, d_s]``; transforms give ``[N, shared_dim]``.
    """

    shared_dim: int = 128
    hidden_dim: int = 256
    pca_dim: int | None = 128
    loss: str = "infonce"
    margin: float = 0.2
    temperature: float = 0.05
    epochs: int = 60
    batch_size: int | None = None
    lr: float = 2e-3
    weight_decay: float = 1e-2
    dropout: float = 0.1
    seed: int = 0
    device: str = "cpu"

    def _validate_params(self) -> None:
        if self.loss not in {"margin", "infonce"}:
            raise InputError(f"loss={self.loss!r} must be 'margin' or 'infonce'.")
        for name in ("shared_dim", "hidden_dim", "epochs"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{name}={v!r} must be a positive int.")
        if self.pca_dim is not None and (not isinstance(self.pca_dim, int) or self.pca_dim < 1):
            raise InputError(f"pca_dim={self.pca_dim!r} must be a positive int or None.")
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or self.batch_size < 2
        ):
            raise InputError(
                f"batch_size={self.batch_size!r} must be an int >= 2 or None (full batch)."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout={self.dropout!r} must be in [0, 1).")
        if self.temperature <= 0 or self.lr <= 0:
            raise InputError("temperature and lr must be > 0.")

    def _heads(self) -> tuple[ProjectionHead, ProjectionHead]:
        self._validate_params()
        return (
            ProjectionHead(self.basis_t_.shape[1], self.hidden_dim, self.shared_dim, self.dropout),
            ProjectionHead(self.basis_s_.shape[1], self.hidden_dim, self.shared_dim, self.dropout),
        )

    def _state_names(self) -> list[str]:
        return ["mean_t_", "mean_s_", "basis_t_", "basis_s_", "std_t_", "std_s_",
                *self._head_keys()]

    def _head_keys(self) -> list[str]:
        return [f"head_{side}_{k.replace('.', '_')}_" for side in ("t", "s") for k in
                ("net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias")]

    def _extra_state(self) -> dict[str, object]:
        return {"loss_history_": self.loss_history_}

    def _set_extra_state(self, extra: dict[str, object]) -> None:
        super()._set_extra_state(extra)
        ht, hs = self._heads()
        for side, head in (("t", ht), ("s", hs)):
            state = {
                k: getattr(self, f"head_{side}_{k.replace('.', '_')}_") for k in head.state_dict()
            }
            head.load_state_dict(state)
            head.eval()
        self.head_t_, self.head_s_ = ht, hs

    def _fit(self, teacher: torch.Tensor, student: torch.Tensor) -> None:
        from ..utils import resolve_device

        self._validate_params()
        dev = resolve_device(self.device)
        n = teacher.shape[0]
        xs_: list[torch.Tensor] = []
        for side, x in (("t", teacher), ("s", student)):
            mean, xc = center_stats(x)
            k = min(x.shape[1], n - 1, self.pca_dim or x.shape[1])
            basis = (
                top_components(xc, k) if k < x.shape[1] else torch.eye(x.shape[1], dtype=x.dtype)
            )
            z = (xc @ basis).float()
            std = z.std(0).clamp_min(1e-6)
            setattr(self, f"mean_{side}_", mean.float())
            setattr(self, f"basis_{side}_", basis.float())
            setattr(self, f"std_{side}_", std)
            xs_.append((z / std).to(dev))
        xt, xs = xs_
        bs = None if self.batch_size is None else min(self.batch_size, n)
        train_cfg = TrainConfig(
            optimizer="adamw", lr=self.lr, weight_decay=self.weight_decay, epochs=self.epochs,
            batch_size=bs, drop_last=True, seed=self.seed, progress=False,
        )

        def build() -> _HeadPair:
            return _HeadPair(*self._heads()).to(dev)  # initialised under self.seed

        def loss_fn(pair: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            assert isinstance(pair, _HeadPair)
            zt, zs = pair.t(batch[0]), pair.s(batch[1])
            if self.loss == "infonce":
                return info_nce_loss(zt, zs, self.temperature)
            # a derangement-free shuffle: roll a random permutation by one
            perm = torch.randperm(zt.shape[0], generator=step_generator()).to(dev)
            partner = torch.empty_like(perm)
            partner[perm] = perm.roll(1)
            return margin_loss(zt, zs, partner, self.margin)

        pair, hist = fit_module(build, loss_fn, (xt, xs), train_cfg)
        assert isinstance(pair, _HeadPair)
        head_t, head_s = pair.t, pair.s
        history = hist.epoch_loss("sum")
        head_t.eval().cpu()
        head_s.eval().cpu()
        self.head_t_, self.head_s_ = head_t, head_s
        for side_name, head in (("t", head_t), ("s", head_s)):
            for key, v in head.state_dict().items():
                setattr(self, f"head_{side_name}_{key.replace('.', '_')}_", v.detach().clone())
        self.loss_history_ = history
        self.dim_ = self.shared_dim

    def _transform(self, x: torch.Tensor, side: str) -> torch.Tensor:
        c = "t" if side == "teacher" else "s"
        head = getattr(self, f"head_{c}_")
        mean, basis, std = (getattr(self, f"{k}_{c}_") for k in ("mean", "basis", "std"))
        with torch.no_grad():
            z = head((x.float() - mean) @ basis / std)
        return z.double()

