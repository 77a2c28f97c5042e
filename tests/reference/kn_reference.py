"""Naive interpolated modified Kneser-Ney, one probability at a time, from Chen & Goodman."""

from __future__ import annotations

from collections import Counter, defaultdict


def kn_prob(seqs, order, vocab, start, hist, w):
    pad = [start] * (order - 1)
    streams = [pad + list(s) for s in seqs]
    top = Counter()
    for s in streams:
        for i in range(order - 1, len(s)):
            top[tuple(s[i - order + 1:i + 1])] += 1
    counts = {order: top}
    for n in range(order - 1, 0, -1):
        cont = Counter()
        for g in counts[n + 1]:
            cont[g[1:]] += 1
        counts[n] = cont

    def discounts(c):
        cc = Counter(c.values())
        n1, n2, n3, n4 = (max(cc.get(k, 0), 1) for k in (1, 2, 3, 4))
        y = n1 / (n1 + 2 * n2)
        D = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
        return tuple(d if 0 < d <= k + 1 else y for k, d in enumerate(D))

    def d_of(c, D):
        return 0 if c == 0 else D[min(c, 3) - 1]

    def p(n, h):
        c = counts[n]
        D = discounts(c)
        by_ctx = defaultdict(dict)
        for g, v in c.items():
            by_ctx[g[:-1]][g[-1]] = v
        ctx = tuple(h[len(h) - (n - 1):]) if n > 1 else ()
        lower = (1.0 / vocab) if n == 1 else p(n - 1, h)
        kids = by_ctx.get(ctx)
        if not kids:
            return lower
        tot = sum(kids.values())
        gamma = sum(d_of(v, D) for v in kids.values()) / tot
        return max(kids.get(w, 0) - d_of(kids.get(w, 0), D), 0) / tot + gamma * lower

    return p(order, list(hist))
