"""Held-out metrics for any next-token predictor, with bootstrap intervals over texts.

Per held-out row (prediction position): the negative log-likelihood of the true next token,
``KL(teacher || model)`` over the full vocabulary, top-1 agreement with the teacher's
argmax, top-1 and top-5 accuracy. Summaries resample *texts* (rows of one text stay
together): perplexity is ``exp(sum nll / sum tokens)`` per resample.

Shapes:
    score(logprob_fn, ...) with ``logprob_fn(rows: slice) -> [B, V]`` log-probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ..functional.stats import Estimate, bootstrap_ci
from ..utils import trim_every, trimmed
from .capture import CapturedSplit, Unembedding

__all__ = ["score", "score_many", "last_batch", "summarise", "per_text", "subset", "METRICS",
           "MIXTURE", "mix_fn", "count_baselines", "kn_fn", "state_fn", "student_fn", "seed_means"]

METRICS = ("ppl", "kl", "agree", "top1", "top5")


@torch.no_grad()
def score(logprob_fn: Callable[[slice], torch.Tensor], sp: CapturedSplit, teacher: Unembedding,
          *, batch: int = 128) -> dict[str, np.ndarray]:
    """Per-row metrics of the predictor over every row of ``sp``, in float64, ``batch`` rows
    at a time (see :func:`score_many`)."""
    return score_many({"": logprob_fn}, sp, teacher, batch=batch)[""]


@torch.no_grad()
def score_many(logprob_fns: Mapping[str, Callable[[slice], torch.Tensor]], sp: CapturedSplit,
               teacher: Unembedding, *, batch: int = 128) -> dict[str, dict[str, np.ndarray]]:
    """:func:`score` of several predictors in one pass over the rows: the teacher's
    vocabulary-wide log-probabilities of each batch (its largest cost) are formed once for
    all of them, so each added predictor costs its own arithmetic only. The figures are
    those of scoring each alone, bit for bit. Each vocabulary-wide float64 block of 128 rows
    is 50 MB; the products are formed in place, so a batch holds about four of them."""
    n = len(sp)
    out = {name: {k: np.empty(n, np.float64) for k in ("nll", "kl", "agree", "top1", "top5")}
           for name in logprob_fns}
    for a in trimmed(range(0, n, batch), trim_every(batch)):
        rows = slice(a, min(n, a + batch))
        logp = torch.log_softmax(teacher(sp.tensor("final", rows).float()).double(), -1)
        best = logp.argmax(1)
        p = logp.exp()
        tgt = sp.tensor("target", rows).long()
        for name, fn in logprob_fns.items():
            o = out[name]
            logq = fn(rows).to(torch.float64, copy=True)  # ours to overwrite below
            o["nll"][rows] = (-logq.gather(1, tgt[:, None]).squeeze(1)).numpy()
            top5 = logq.topk(5, dim=1).indices
            o["agree"][rows] = (top5[:, 0] == best).double().numpy()
            o["top1"][rows] = (top5[:, 0] == tgt).double().numpy()
            o["top5"][rows] = (top5 == tgt[:, None]).any(1).double().numpy()
            gap = torch.sub(logp, logq, out=logq)  # logq is not read again
            o["kl"][rows] = gap.mul_(p).sum(-1).clamp_min(0).numpy()
    return out


def last_batch(fn: Callable[[slice], torch.Tensor]) -> Callable[[slice], torch.Tensor]:
    """``fn`` that keeps its last batch: a predictor read twice per batch by
    :func:`score_many` (alone and inside a mixture) is computed once."""
    last: dict[tuple[int, int], torch.Tensor] = {}

    def cached(rows: slice) -> torch.Tensor:
        key = (rows.start, rows.stop)
        if key not in last:
            last.clear()
            last[key] = fn(rows)
        return last[key]

    return cached


def per_text(values: np.ndarray, text: np.ndarray, weights: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``values`` and row counts per text (texts in sorted order); with ``weights``
    the weighted sums and summed weights (rows of weight 0 are ignored, even if NaN)."""
    _, inv = np.unique(text, return_inverse=True)
    if weights is None:
        return np.bincount(inv, weights=values), np.bincount(inv).astype(np.float64)
    w = np.asarray(weights, np.float64)
    v = np.where(w > 0, values, 0.0) * w
    return np.bincount(inv, weights=v), np.bincount(inv, weights=w)


def summarise(rows: dict[str, np.ndarray], text: np.ndarray, *, n_boot: int = 1000,
              seed: int = 0, weights: np.ndarray | None = None) -> dict[str, Estimate]:
    """Point estimates with percentile-bootstrap 95 % intervals over held-out texts
    (``weights``: per-row inverse inclusion probabilities of a subsampled predictor)."""
    res: dict[str, Estimate] = {}
    sums, cnt = per_text(rows["nll"], text, weights)

    def ppl(s: Any, c: Any) -> Any:
        return np.exp(s.sum(-1) / c.sum(-1))

    res["ppl"] = bootstrap_ci((sums, cnt), ppl, n_boot=n_boot, seed=seed, vectorized=True)
    for key in ("kl", "agree", "top1", "top5"):
        s, c = per_text(rows[key], text, weights)

        def ratio(s: Any, c: Any) -> Any:
            return s.sum(-1) / c.sum(-1)

        res[key] = bootstrap_ci((s, c), ratio, n_boot=n_boot, seed=seed, vectorized=True)
    return res


def logprobs_from_final(teacher: Unembedding, sp: CapturedSplit, key: str = "final"
                        ) -> Callable[[slice], torch.Tensor]:
    def fn(rows: slice) -> torch.Tensor:
        return torch.log_softmax(teacher(sp.tensor(key, rows).float()), -1)

    return fn


def subset(sp: CapturedSplit, rows: np.ndarray) -> CapturedSplit:
    """The rows ``rows`` of a split, materialised (for predictors scored on a subsample)."""
    return CapturedSplit({k: np.asarray(v[rows]) for k, v in sp.arrays.items()}, sp.n_texts)


# --------------------------------------------------------------------------- predictors
def student_fn(model: Any, X: torch.Tensor, T: torch.Tensor) -> Any:
    """Row-slice -> the student's log-probabilities on the CPU (its rows go to its device)."""
    dev = next(model.parameters()).device

    def fn(r: slice) -> torch.Tensor:
        y, _ = model(X[r].to(dev).float(), T[r].to(dev).float())
        return torch.log_softmax(model.logits(y), -1).cpu()
    return fn


MIXTURE = "A: HyperField + KN-5, p = (p_HF + p_KN) / 2"


def mix_fn(fa: Any, fb: Any) -> Any:
    """Log-probabilities of the equal-weight linear mixture of two predictors (the weight
    is fixed, not fitted, so nothing is chosen on the held-out rows)."""
    def fn(r: slice) -> torch.Tensor:
        return torch.logaddexp(fa(r).float(), fb(r).float()) - float(np.log(2.0))

    return fn


def count_baselines(lu: torch.Tensor, tr: Any, he: Any, start: int,
                     orders: tuple[int, ...]) -> dict[str, Any]:
    """Row-slice -> log-probability functions of the unigram ``lu`` and the Kneser-Ney
    N-grams, fitted on the training split's texts and read on the held-out histories."""
    from .ngram import KneserNey

    V = int(lu.numel())
    tg = np.asarray(tr["target"])
    fns: dict[str, Any] = {"unigram": lambda r: lu[None].expand(r.stop - r.start, -1)}
    seqs = np.split(tg, np.flatnonzero(np.diff(np.asarray(tr["text"]))) + 1)
    for N in orders:
        kn = KneserNey(N, V, start).fit(seqs)
        fns[f"KN-{N}"] = kn_fn(kn, KneserNey.histories(he["ctx"], N, start))
    return fns


def kn_fn(kn: Any, H: np.ndarray) -> Any:
    def fn(r: slice) -> torch.Tensor:
        return kn.distribution(H[r]).log().float()

    return fn


def state_fn(to_logits: Any, he: Any) -> Any:
    def fn(r: slice) -> torch.Tensor:
        return torch.log_softmax(to_logits(he.tensor("state", r).float()), -1)

    return fn


def seed_means(r: dict[str, np.ndarray]) -> dict[str, float]:
    return {"ppl": float(np.exp(r["nll"].mean())), "kl": float(r["kl"].mean()),
            "agree": float(r["agree"].mean())}
