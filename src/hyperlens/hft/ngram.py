"""Interpolated modified Kneser–Ney n-gram language model, vectorised over the vocabulary.

Chen and Goodman (1998), interpolated, with three discounts per order::

    P_n(w | h) = max(c_n(hw) - D_n(c_n(hw)), 0) / c_n(h) + gamma_n(h) P_{n-1}(w | h'),
    gamma_n(h) = (D_n1 N_1(h.) + D_n2 N_2(h.) + D_n3+ N_3+(h.)) / c_n(h),

where ``c_N`` are raw counts at the highest order and continuation counts
``N_1+(. h w)`` below it, ``h'`` drops the oldest context token, and the discounts come
from each order's counts of counts (``Y = n1 / (n1 + 2 n2)``, ``D_1 = 1 - 2Y n2/n1``,
``D_2 = 2 - 3Y n3/n2``, ``D_3+ = 3 - 4Y n4/n3``; an estimate outside ``(0, k]``, which
small corpora produce, is replaced by ``Y``). The unigram level interpolates with the
uniform distribution over the vocabulary, so every token has non-zero probability and
each distribution sums to one. Unseen contexts back off with ``gamma = 1``. Texts are
padded on the left with ``order - 1`` start tokens.

Why our own: NLTK's ``KneserNeyInterpolated`` is unmodified KN (one discount) and scores one
word at a time in Python (hours for 10^4 positions x 49k-token distributions); KenLM needs
a compiled binary and cannot return full distributions. Here the whole model is a few
sorted integer arrays and one batch of full next-token distributions ``[B, V]`` is built
with gathers and scatters.

Shapes:
    fit(seqs: list of int arrays); distribution(history [B, order-1]) -> [B, V] float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError, NotFittedError, ShapeError

__all__ = ["KneserNey"]


class _Order:
    """The n-grams of one order, sorted by (context id, last token)."""

    keys: np.ndarray  # [G] int64 = context_gid * V + last token, sorted
    ctx: np.ndarray  # [G] context gid (order n-1)
    last: np.ndarray  # [G]
    count: np.ndarray  # [G] float64: raw (top order) or continuation counts
    # per context gid of order n-1:
    c_start: np.ndarray
    c_end: np.ndarray
    c_total: np.ndarray
    gamma_num: np.ndarray
    discounts: tuple[float, float, float]
    disc_count: np.ndarray  # [G] max(count - D(count), 0)


def _int(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InputError(f"{name} must be an int, got {type(v).__name__} {v!r}.")
    return int(v)


class KneserNey:
    """``KneserNey(order, vocab_size, start_token).fit(seqs)``, then :meth:`distribution`."""

    def __init__(self, order: int, vocab_size: int, start_token: int) -> None:
        order, vocab_size = _int("order", order), _int("vocab_size", vocab_size)
        start_token = _int("start_token", start_token)
        if not 1 <= order <= 8:
            raise InputError(f"order must be in 1..8, got {order}.")
        if vocab_size < 1:
            raise InputError(f"vocab_size must be >= 1 (tokens in the vocabulary), got "
                             f"{vocab_size}.")
        if not 0 <= start_token < vocab_size:
            raise InputError(f"start_token must be a token id in [0, {vocab_size}), got "
                             f"{start_token}.")
        self.order, self.V, self.start = order, vocab_size, start_token
        self.orders: list[_Order] = []

    # ------------------------------------------------------------------ fitting
    def fit(self, seqs: Sequence[np.ndarray]) -> KneserNey:
        """``seqs``: token-id arrays of the training texts (without start padding)."""
        N, V = self.order, self.V
        pad = np.full(N - 1, self.start, np.int64)
        streams = [np.concatenate([pad, np.asarray(s, np.int64)]) for s in seqs if len(s)]
        if not streams:
            raise InputError("KneserNey.fit needs at least one non-empty text.")
        # one row per real token: the N tokens ending at it (offset N-1 is the token)
        wins = np.concatenate([np.lib.stride_tricks.sliding_window_view(s, N) for s in streams])
        if wins.max() >= V or wins.min() < 0:
            raise InputError(f"token ids must lie in [0, {V}), got [{wins.min()}, {wins.max()}].")
        # gid[m][e]: id (in the order-m table) of the m-gram ending at offset e; the order-m
        # table holds every m-gram inside a window, keyed by (prefix gid, last token)
        gid: list[dict[int, np.ndarray]] = [{}, {e: wins[:, e].copy() for e in range(N)}]
        keys_of: list[np.ndarray] = [np.zeros(0, np.int64), np.arange(V, dtype=np.int64)]
        for m in range(2, N + 1):
            ends = list(range(m - 1, N))
            k = {e: gid[m - 1][e - 1] * V + wins[:, e] for e in ends}
            uniq = np.unique(np.concatenate([k[e] for e in ends]))
            keys_of.append(uniq)
            gid.append({e: np.searchsorted(uniq, k[e]) for e in ends})
        self.orders = []
        for n in range(1, N + 1):
            o = _Order()
            o.keys = keys_of[n]
            G = len(o.keys)
            o.ctx = np.zeros(G, np.int64) if n == 1 else o.keys // V
            o.last = o.keys % V if n > 1 else o.keys.copy()
            here = gid[n][N - 1]
            if n == N:
                o.count = np.bincount(here, minlength=G).astype(np.float64)
            else:  # continuation counts: distinct (n+1)-grams ending at a real token
                _, first = np.unique(gid[n + 1][N - 1], return_index=True)
                o.count = np.bincount(here[first], minlength=G).astype(np.float64)
            self._finish(o, n)
            self.orders.append(o)
        return self

    def _finish(self, o: _Order, n: int) -> None:
        c = o.count
        nz = c > 0
        cc = [float(((c > k - 0.5) & (c < k + 0.5)).sum()) for k in (1, 2, 3, 4)]
        n1, n2, n3, n4 = (max(x, 1.0) for x in cc)
        Y = n1 / (n1 + 2 * n2)
        D = (1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3)
        # on small data the estimates of D_2 / D_3+ can leave (0, k]; such a discount would
        # give an unseen token zero probability, so it falls back to Ney's single estimate Y
        D = tuple(d if 0.0 < d <= k + 1 else Y for k, d in enumerate(D))  # type: ignore[assignment]
        o.discounts = D
        n_ctx = int(o.ctx.max()) + 1 if len(o.ctx) else 1
        o.c_start = np.searchsorted(o.ctx, np.arange(n_ctx), side="left")
        o.c_end = np.searchsorted(o.ctx, np.arange(n_ctx), side="right")
        o.c_total = np.bincount(o.ctx, weights=c, minlength=n_ctx)
        d_of = np.where(c >= 3, D[2], np.where(c >= 2, D[1], np.where(c >= 1, D[0], 0.0)))
        o.gamma_num = np.bincount(o.ctx, weights=d_of * nz, minlength=n_ctx)
        o.disc_count = np.maximum(c - d_of, 0.0)

    # ------------------------------------------------------------------ scoring
    def _context_gid(self, hist: np.ndarray, m: int) -> np.ndarray:
        """Gid (order ``m``) of the last ``m`` history tokens, -1 where unseen. ``hist`` is
        ``[B, order-1]`` with the newest token last."""
        V = self.V
        B, H = hist.shape
        g = hist[:, H - m].astype(np.int64)
        ok = np.ones(B, bool)
        for j in range(2, m + 1):
            keys = self.orders[j - 1].keys
            q = g * V + hist[:, H - m + j - 1]
            pos = np.searchsorted(keys, q).clip(max=len(keys) - 1)
            ok &= keys[pos] == q
            g = np.where(ok, pos, 0)
        return np.where(ok, g, -1)

    def distribution(self, hist: np.ndarray) -> torch.Tensor:
        """Full next-token distributions ``[B, V]`` (float64) for histories ``[B, order-1]``
        (newest last; pad missing history with the start token)."""
        if not self.orders:
            raise NotFittedError("KneserNey.distribution needs a fitted model; call "
                                 "fit(training texts) first.")
        hist = np.asarray(hist, np.int64)
        if hist.ndim != 2 or hist.shape[1] != self.order - 1:
            raise ShapeError(f"hist must be [B, {self.order - 1}], got {hist.shape}.")
        if hist.size and (hist.min() < 0 or hist.max() >= self.V):
            raise InputError(f"hist token ids must lie in [0, {self.V}), got "
                             f"[{hist.min()}, {hist.max()}]; pad histories with the start "
                             "token (KneserNey.histories does).")
        B = hist.shape[0]
        o1 = self.orders[0]
        tot = o1.c_total[0]
        g1 = o1.gamma_num[0] / tot
        uni = o1.disc_count / tot + g1 / self.V  # [V]
        P = torch.from_numpy(np.tile(uni, (B, 1)))
        for n in range(2, self.order + 1):
            o = self.orders[n - 1]
            ctx = self._context_gid(hist, n - 1)
            seen = ctx >= 0
            cg = np.where(seen, ctx, 0)
            valid = seen & (cg < len(o.c_total))
            cg = np.where(valid, cg, 0)
            total = np.where(valid, o.c_total[cg], 0.0)
            valid &= total > 0
            gamma = np.where(valid, o.gamma_num[cg] / np.maximum(total, 1e-300), 1.0)
            P.mul_(torch.from_numpy(gamma)[:, None])
            rows = np.nonzero(valid)[0]
            if len(rows):
                starts, ends = o.c_start[cg[rows]], o.c_end[cg[rows]]
                lens = ends - starts
                rr = np.repeat(rows, lens)
                offs = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
                gi = np.repeat(starts, lens) + offs
                vals = o.disc_count[gi] / total[rr]
                P.index_put_((torch.from_numpy(rr), torch.from_numpy(o.last[gi])),
                             torch.from_numpy(vals), accumulate=True)
        return P

    @staticmethod
    def histories(ctx: np.ndarray, order: int, start: int) -> np.ndarray:
        """Histories ``[n, order-1]`` (newest last) from capture windows ``ctx [n, W]``
        (slot 0 newest, -1 padding), padding with ``start``."""
        h = np.asarray(ctx)[:, : order - 1][:, ::-1].astype(np.int64)
        return np.where(h < 0, start, h)
