"""The modulate experiment's controls without geometry: a trained low-rank adapter and a
mean-difference steering vector.

Both act where the modulators act (``resid_pre`` of the same blocks) and are judged on the
same held-out synsets, so "WordNet geometry helps" can be told from "any intervention
trained on the task helps":

- ``lowrank`` (:class:`~hyperlens.inject.resid.LowRankAdapter`, rank = the geometry's
  dimension): the same objective, the same optimiser and early stopping, and no geometry
  (an intervention on the residual stream learned from the task alone, in the spirit of
  ReFT). Built by :func:`~hyperlens.inject.modulate_train.build_adapter`.
- ``meandiff`` (:class:`~hyperlens.inject.resid.SteerAdapter`): one vector per modulated
  block, the mean residual entering that block at the anchors' lemmas minus its mean over
  every token of the anchors' prompts (contrastive activation addition: a difference of
  means, not trained). It is added at every position, scaled by the multiplier of
  :data:`MEANDIFF_SCALES` with the lowest task loss on the validation slice (the slice early
  stopping watches; the held-out synsets are never read). Nothing in it is random, so it is
  computed once and paired with every replicate seed of the treatment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..models.hooks import capture
from .base import make_adapter

if TYPE_CHECKING:
    from .modulate_train import Setup

__all__ = ["MEANDIFF_SCALES", "meandiff_vectors", "fit_meandiff", "steer_adapter"]

#: multipliers of the mean-difference vector tried on the validation slice (the vector
#: compares different texts, so it is long: the grid reaches well below 1)
MEANDIFF_SCALES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def _lemma_texts(s: Setup) -> list[str]:
    """What each anchor's lemma is read in: its prompt followed by the lemma (decoder: the
    lemma's token is the last one) or the lemma alone (encoder)."""
    from .modulate_train import _text

    if s.causal:
        return [_text(m, True) + " " + m.word for m in s.train]
    return [m.word for m in s.train]


@torch.no_grad()
def _mean_resid(s: Setup, texts: list[str], where: str, batch_size: int = 32) -> torch.Tensor:
    """Mean residual entering each modulated block, ``[n_layers_chosen, d]`` float32 (CPU):
    over every real token of ``texts`` (``where="all"``), at each text's last real token
    (``"last"``), or over each text's tokens first and then over texts (``"text"``)."""
    from .modulate_train import _batches, _mod, _tok

    h = s.handle
    points = [f"blocks.{b}.resid_pre" for b in s.layers]
    total = torch.zeros(len(points), h.hidden_size, dtype=torch.float64)
    count = 0.0
    with capture(_mod(h), points) as acts:
        for r in _batches(len(texts), batch_size):
            b = _tok(h, texts[r.start : r.stop])
            acts.run(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            mask = b["attention_mask"].to(torch.float64)  # [B, T]
            for j, p in enumerate(points):
                a = acts[p].to(torch.float64)  # [B, T, d]
                if where == "last":
                    last = mask.sum(1).long() - 1
                    total[j] += a[torch.arange(a.shape[0]), last].sum(0).cpu()
                elif where == "text":
                    per = (a * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
                    total[j] += per.sum(0).cpu()
                else:
                    total[j] += (a * mask[..., None]).sum((0, 1)).cpu()
            count += float(mask.sum()) if where == "all" else float(mask.shape[0])
    return (total / max(count, 1.0)).float()


def meandiff_vectors(s: Setup) -> torch.Tensor:
    """``[n_layers_chosen, d]``: per modulated block, the mean residual at the anchors'
    lemmas (decoder: the lemma's token after its own prompt; encoder: the lemma read alone,
    mean over its tokens) minus the mean over every token of the anchors' prompts."""
    from .modulate_train import _text

    target = _mean_resid(s, _lemma_texts(s), "last" if s.causal else "text")
    base = _mean_resid(s, [_text(m, s.causal) for m in s.train], "all")
    return target - base


def steer_adapter(s: Setup, vectors: torch.Tensor) -> Any:
    """A ``steer`` adapter adding ``vectors[j]`` at ``resid_pre`` of block ``s.layers[j]``."""
    ad: Any = make_adapter("steer", d_model=s.handle.hidden_size, layers=tuple(s.layers),
                           site="resid_pre")
    with torch.no_grad():
        ad.vectors.copy_(vectors)
    return ad.to(s.handle.device)


@torch.no_grad()
def fit_meandiff(s: Setup, scales: tuple[float, ...] = MEANDIFF_SCALES,
                 batch_size: int = 32) -> tuple[Any, list[list[float]]]:
    """The mean-difference adapter at the multiplier of ``scales`` with the lowest task loss
    on the validation slice (``s.val``; without one, multiplier 1). Returns ``(adapter,
    [[multiplier, validation loss], ...])``, the curve starting at multiplier 0 (the plain
    model, for reference)."""
    from .modulate_train import validation_loss

    v = meandiff_vectors(s)
    if not s.val:
        return steer_adapter(s, v), []
    curve = [[float(c), validation_loss(s, steer_adapter(s, c * v), batch_size)]
             for c in (0.0, *scales)]
    best = min(curve[1:], key=lambda p: p[1])[0]  # multiplier 0 (the plain model): reference
    return steer_adapter(s, best * v), curve
