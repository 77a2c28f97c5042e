"""A cheaper distillation target: the KL on a per-batch shortlist of the vocabulary.

The full-vocabulary loss multiplies every row's student state and the teacher's final
state by the whole unembedding (``[B, d] x [d, V]``, three times with the backward pass),
which is most of a student's training time at ``V = 49,152``. Here each batch works on

* the shortlist ``S``: the union of the teacher's ``k`` most likely next tokens of every
  row in the batch (precomputed once, :func:`teacher_targets`) and the rows' true tokens;
* the teacher's exact log-probabilities on ``S``, ``t_i - logZ_t``, from its
  full-vocabulary log normaliser (also precomputed once);
* ``m`` negatives drawn from the training unigram ``pi`` outside ``S`` (one draw per batch,
  from the loop's step generator, so a resumed run draws the same), on which student and
  teacher logits are computed too.

The student's normaliser is ``sum_S exp(s_i)`` plus the importance-sampled tail
``(1/m) sum_j exp(s_j) / pi_j`` (the unigram back-off); the tail's share of the KL,
``sum_{i not in S} p_i (log p_i - log q_i)``, is estimated from the negatives with weights
``p_j / (m pi_j)``. So the target is the full-vocabulary KL in expectation (up to the
log of the sampled normaliser, which is biased slightly low): on the shortlist it is exact,
and the gradient on the tail follows the teacher's tail, not only its total mass (a KL over
the shortlist plus one "other" outcome would leave that out). The loss adds ``hard`` times
the cross-entropy of the true token. :func:`target_error` measures the estimate against
the full KL on rows the caller chooses. Evaluation never uses this: held-out perplexity and
KL, and the validation slice of training to a plateau, stay full-vocabulary.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..train import step_generator
from .capture import Unembedding

__all__ = ["teacher_targets", "Shortlist", "shortlist_loss", "target_error"]


@torch.no_grad()
def teacher_targets(final: Any, teacher: Unembedding, k: int, *, batch: int = 1024,
                    show_progress: bool | None = False, cache: Path | None = None
                    ) -> dict[str, torch.Tensor]:
    """The teacher's top-``k`` next tokens ``[n, k]`` (int32) and full-vocabulary log
    normaliser ``[n]`` (float32) of every row of ``final`` (``[n, d]``, any array), in the
    teacher's compute dtype, read in chunks (one pass over the whole vocabulary) on the
    teacher's device; the targets are CPU tensors.

    With ``cache`` (a folder of the capture ``final`` was read from, and ``final`` its
    leading rows: :attr:`~hyperlens.hft.capture.CapturedSplit.cache`) the targets are
    kept there, keyed by ``k``, the row count and the teacher's vocabulary, bias and
    compute dtype, and read back by every later student of the capture instead of
    recomputed (at 1M rows the pass is ~57 TFLOP); written atomically.
    """
    from ..utils import atomic_path

    n = int(final.shape[0])
    if not 1 <= k <= teacher.vocab_size:
        raise InputError(f"shortlist k must be in 1..{teacher.vocab_size}, got {k}.")
    if cache is None:
        return _teacher_targets(final, teacher, k, batch, show_progress)
    dtype = str(teacher.compute_dtype).removeprefix("torch.")
    bias = "bias" if teacher.bias is not None else "nobias"
    folder = Path(cache) / f"teacher-top{k}-{n}-v{teacher.vocab_size}-{bias}-{dtype}"
    if not (folder / "lse.npy").exists():
        out = _teacher_targets(final, teacher, k, batch, show_progress)
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            np.save(tmp / "topk.npy", out["topk"].numpy())
            np.save(tmp / "lse.npy", out["lse"].numpy())
        return out
    got = {key: torch.from_numpy(np.load(folder / f"{key}.npy")) for key in ("topk", "lse")}
    if got["topk"].shape != (n, k) or got["lse"].shape != (n,):
        raise InputError(f"{folder} holds targets of another shape; delete it and run again.")
    return got


def _teacher_targets(final: Any, teacher: Unembedding, k: int, batch: int,
                     show_progress: bool | None) -> dict[str, torch.Tensor]:
    from ..utils import progress, trim_every, trimmed

    n = int(final.shape[0])
    ids = torch.empty(n, k, dtype=torch.int32)
    lse = torch.empty(n, dtype=torch.float32)
    for a in trimmed(progress(range(0, n, batch), total=-(-n // batch), desc="teacher top-k",
                              enabled=show_progress), trim_every(batch)):
        rows = slice(a, min(n, a + batch))
        t = teacher(torch.as_tensor(np.asarray(final[rows])).float().to(teacher.weight.device))
        lse[rows] = torch.logsumexp(t, -1).cpu()  # kept on the CPU, with the capture
        ids[rows] = t.topk(k, dim=-1).indices.int().cpu()
    return {"topk": ids, "lse": lse}


class Shortlist:
    """What a student's shortlist loss needs besides the batch: the frozen unembedding, the
    negatives' proposal (the training unigram, ``log_prior [V]``) and ``m`` negatives."""

    def __init__(self, teacher: Unembedding, log_prior: torch.Tensor, negatives: int) -> None:
        if negatives < 1:
            raise InputError(f"negatives must be >= 1, got {negatives}.")
        self.teacher = teacher
        self.prior = log_prior.detach().float().cpu().softmax(-1)  # [V]
        self.negatives = int(negatives)

    def logits(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``x [B, d] @ W_U[ids]^T (+ b) -> [B, len(ids)]`` float32."""
        return self.teacher.columns(x, ids)

    def draw(self, shortlist: torch.Tensor, gen: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``m`` negatives from the prior outside ``shortlist`` and their log proposal
        probabilities (renormalised outside the shortlist), drawn from ``gen`` (default: the
        running fit's step generator)."""
        pi = self.prior.clone()  # on the CPU, as the loop's generator is
        pi[shortlist.cpu()] = 0.0
        total = float(pi.sum())
        dev = shortlist.device
        if total <= 0:  # the shortlist is the whole vocabulary: nothing is outside
            return torch.empty(0, dtype=torch.long, device=dev), torch.empty(0, device=dev)
        neg = torch.multinomial(pi, self.negatives, replacement=True,
                                generator=step_generator() if gen is None else gen)
        return neg.to(dev), (pi[neg] / total).log().to(dev)


def shortlist_loss(model: Any, y: torch.Tensor, final: torch.Tensor, topk: torch.Tensor,
                   lse: torch.Tensor, target: torch.Tensor, sl: Shortlist, hard: float,
                   gen: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean KL + hard * mean CE, per-row KL, per-row CE)`` on the batch's shortlist (see
    the module text). ``model`` may have ``unigram [V]`` (a trainable logit bias); ``y
    [B, d]`` is its final state; ``final [B, d]`` the teacher's; ``topk [B, k]`` and ``lse
    [B]`` from :func:`teacher_targets`; ``target [B]`` the true next tokens."""
    tgt = target.long()
    S = torch.unique(torch.cat([topk.reshape(-1).long(), tgt]))  # sorted
    neg, log_pi = sl.draw(S, gen)
    bias = getattr(model, "unigram", None)

    def logits(ids: torch.Tensor) -> torch.Tensor:
        return sl.logits(y, ids) if bias is None else sl.logits(y, ids) + bias[ids]

    with torch.no_grad():
        log_p = sl.logits(final.float(), S) - lse[:, None]  # exact teacher log-probs on S
        p = log_p.exp()
    s_S = logits(S)  # [B, M]
    parts = [s_S]
    if len(neg):
        s_N = logits(neg)  # [B, m]
        parts.append((torch.logsumexp(s_N - log_pi, -1) - math.log(len(neg)))[:, None])
    log_z = torch.logsumexp(torch.cat(parts, 1), -1)  # [B]
    log_q = s_S - log_z[:, None]
    kl = (p * (log_p - log_q)).sum(-1)
    if len(neg):  # the tail's share of the KL, importance-sampled from the negatives
        with torch.no_grad():
            t_N = sl.logits(final.float(), neg) - lse[:, None]  # teacher log-probs there
            w = (t_N - log_pi).exp() / len(neg)  # weights p_j / (m pi_j)
        log_q_N = s_N - log_z[:, None]
        # -sum p s + log Z over the vocabulary, estimated: its gradient is q - p on S and
        # the importance-weighted (q_j - p_j) / (m pi_j) on the negatives
        surrogate = -(p * s_S).sum(-1) - (w * s_N).sum(-1) + log_z
        kl_est = kl.detach() + (w * (t_N - log_q_N.detach())).sum(-1)
        kl = surrogate + (kl_est - surrogate).detach()  # the KL estimate's value
    ce = -log_q.gather(1, torch.searchsorted(S, tgt)[:, None]).squeeze(1)
    loss = kl.mean() + hard * ce.mean() if hard else kl.mean()
    return loss, kl.detach(), ce.detach()


@torch.no_grad()
def target_error(model: Any, y: torch.Tensor, final: torch.Tensor, target: torch.Tensor,
                 sl: Shortlist, k: int, *, batch: int = 256, seed: int = 0
                 ) -> dict[str, float]:
    """How exact the shortlist target is on the rows given (in batches of the training
    size): the mean shortlist size; the teacher's mean mass outside it; the mean per-row KL
    under the full vocabulary (``kl_full``), as the loss estimates it (``kl_shortlist``) and
    the mean absolute per-row difference of the two (``sampling_abs_error``); and, for
    comparison, the KL over the shortlist plus one "other" outcome (``kl_grouped``: never
    above ``kl_full``; the difference is what a target of the tail's mass alone would leave
    out)."""
    gen = torch.Generator().manual_seed(seed)
    sizes, outside, short, full, grouped = [], [], [], [], []
    for a in range(0, int(y.shape[0]), batch):
        yb, fb, tb = y[a:a + batch], final[a:a + batch].float(), target[a:a + batch].long()
        t = sl.teacher(fb)
        lse = torch.logsumexp(t, -1)
        topk = t.topk(k, dim=-1).indices
        _, kl_s, _ = shortlist_loss(model, yb, fb, topk, lse, tb, sl, 0.0, gen)
        log_q = F.log_softmax(model.logits(yb), -1)
        log_p = t - lse[:, None]
        full.append((log_p.exp() * (log_p - log_q)).sum(-1))
        short.append(kl_s)
        S = torch.unique(torch.cat([topk.reshape(-1), tb]))
        sizes.append(float(len(S)))
        p_S, q_S = log_p[:, S].exp(), log_q[:, S].exp()
        p_o, q_o = (1.0 - p_S.sum(-1)).clamp_min(1e-30), (1.0 - q_S.sum(-1)).clamp_min(1e-30)
        grouped.append((p_S * (log_p[:, S] - log_q[:, S])).sum(-1) + p_o * (p_o / q_o).log())
        outside.append(1.0 - p_S.sum(-1))
    ks, kf, kg = torch.cat(short), torch.cat(full), torch.cat(grouped)
    return {"shortlist_size": float(np.mean(sizes)),
            "teacher_mass_outside": float(torch.cat(outside).mean()),
            "kl_full": float(kf.mean()), "kl_grouped": float(kg.mean()),
            "kl_shortlist": float(ks.mean()),
            "sampling_abs_error": float((ks - kf).abs().mean())}
