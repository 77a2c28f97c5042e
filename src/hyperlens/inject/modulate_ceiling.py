"""The ceiling of the modulate experiment: how much WordNet structure a linear map can add.

A modulator feeds a frozen model a geometry fitted on the training synsets and is scored
on held-out ones. Before asking whether it lifts the held-out relational correlation, ask
whether *any* linear reading of the plain model's definition embeddings can:
:func:`fit_metric_map` learns a map ``x -> x + (x V) U^T`` (identity plus a rank-``k``
correction) so that the cosines of the mapped embeddings correlate with WordNet path
similarity over pairs of training synsets (a linear metric-learning
map, the plainest model that sees the same supervision as the modulators), stopping when
the correlation on a validation slice of the training synsets stops improving. The
validation slice is drawn the way its test is: whole subtrees of the training side for
the ceiling on the held-out subtrees (so the map kept is the one that carries across
subtrees, and a map that only fits the subtrees it saw is stopped at the plain reading),
synsets at random for the split within the training subtrees. Scored on the held-out
subtrees, it is the ceiling: if it cannot lift the held-out correlation, a modulator fed
the same geometry has nothing to carry across the split. Scored on a random split
*within* the training subtrees it separates "does not generalise to new subtrees" from
"finds nothing".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.wordnet import similarity_matrix
from ..errors import InputError
from ..utils import derive_seed

__all__ = ["MetricMap", "ceiling_rows", "fit_metric_map", "random_split", "subtree_slice"]


@dataclass
class MetricMap:
    """A fitted map ``transform(x) = x + (x V) U^T`` (identity plus a rank-``k``
    correction, so an untrained map reads the plain embeddings exactly); ``history`` the
    validation Pearson per measurement (step 0: the plain embeddings), ``best_step`` the
    step kept (0 when training never beat the plain reading)."""

    U: torch.Tensor  # [d, k]
    V: torch.Tensor  # [d, k]
    history: list[tuple[int, float]]
    best_step: int

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return x + (x @ self.V) @ self.U.T


def _pair_pearson(z: torch.Tensor, t: torch.Tensor, i: torch.Tensor, j: torch.Tensor
                  ) -> torch.Tensor:
    """Pearson over pairs ``(i, j)`` of the cosines of rows of ``z`` with targets ``t``."""
    zn = torch.nn.functional.normalize(z, dim=1)
    pred = (zn[i] * zn[j]).sum(1)
    pc, tc = pred - pred.mean(), t - t.mean()
    return (pc * tc).sum() / (pc.norm() * tc.norm()).clamp_min(1e-12)


def _all_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    i, j = torch.triu_indices(n, n, offset=1)
    return i, j


def fit_metric_map(
    x: torch.Tensor,
    synsets: Sequence[Any],
    *,
    dim: int = 64,
    val_fraction: float = 0.15,
    steps: int = 600,
    pairs_per_step: int = 4096,
    lr: float = 1e-2,
    eval_every: int = 25,
    patience: int = 4,
    seed: int = 0,
    val_index: Sequence[int] | np.ndarray | None = None,
) -> MetricMap:
    """Fit ``W`` so that the cosines of ``x W`` correlate with path similarity.

    ``x`` ``[n, d]`` the plain model's embeddings of the training synsets (rows aligned
    with ``synsets``). A random ``val_fraction`` of them is held back; every step draws
    ``pairs_per_step`` pairs of the others and ascends their Pearson correlation (Adam);
    every ``eval_every`` steps the Pearson over all pairs of the validation synsets is
    measured, training stops after ``patience`` measurements without improvement and the
    best map is kept. The map is ``x + (x V) U^T`` with ``U`` zero at the start, so step 0
    is the plain embeddings' own cosine. ``val_index``: the rows held back for validation
    (for example :func:`subtree_slice`) instead of a random ``val_fraction``.
    """
    n = len(synsets)
    if x.ndim != 2 or x.shape[0] != n:
        raise InputError(f"x must be [n_synsets={n}, d], got {tuple(x.shape)}.")
    if n < 20:
        raise InputError(f"fit_metric_map needs at least 20 synsets, got {n}.")
    gen = torch.Generator().manual_seed(derive_seed(seed, "metric-map"))
    S = torch.from_numpy(similarity_matrix([getattr(m, "synset", m) for m in synsets], "path")
                         ).float()
    x = x.float()
    perm = torch.randperm(n, generator=gen)
    if val_index is None:
        n_val = max(10, int(round(val_fraction * n)))
        val, fit = perm[:n_val], perm[n_val:]
    else:
        held = np.zeros(n, dtype=bool)
        held[np.asarray(val_index, dtype=np.int64)] = True
        if not 2 <= held.sum() <= n - 2:
            raise InputError(f"val_index must hold back between 2 and n - 2 = {n - 2} of the "
                             f"{n} synsets, got {int(held.sum())}.")
        val, fit = torch.from_numpy(np.flatnonzero(held)), torch.from_numpy(np.flatnonzero(~held))
    d, k = x.shape[1], min(dim, x.shape[1])
    # V reads unit-scale coordinates of x; U starts at 0, so step 0 is the identity
    V = torch.nn.Parameter(torch.randn(d, k, generator=gen) / (x.norm(dim=1).mean() + 1e-6))
    U = torch.nn.Parameter(torch.zeros(d, k))
    opt = torch.optim.Adam([U, V], lr=lr)
    vi, vj = _all_pairs(len(val))
    t_val = S[val][:, val][vi, vj]

    def mapped(rows: torch.Tensor) -> torch.Tensor:
        return x[rows] + (x[rows] @ V) @ U.T

    def score() -> float:
        with torch.no_grad():
            return float(_pair_pearson(mapped(val), t_val, vi, vj))

    # the pairs' gathers accumulate gradients with repeated indices: the deterministic
    # kernels make a rerun (or the same run under another executor) give the same bits
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train_map(S, fit, U, V, mapped, score, opt, steps=steps,
                          pairs_per_step=pairs_per_step, eval_every=eval_every,
                          patience=patience, gen=gen)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _train_map(S: torch.Tensor, fit: torch.Tensor, U: torch.nn.Parameter,
               V: torch.nn.Parameter, mapped: Any, score: Any, opt: torch.optim.Optimizer,
               *, steps: int, pairs_per_step: int,
               eval_every: int, patience: int, gen: torch.Generator) -> MetricMap:
    best, kept, best_step, stale = score(), (U.detach().clone(), V.detach().clone()), 0, 0
    history = [(0, best)]
    for step in range(1, steps + 1):
        a = fit[torch.randint(0, len(fit), (pairs_per_step,), generator=gen)]
        b = fit[torch.randint(0, len(fit), (pairs_per_step,), generator=gen)]
        keep = a != b
        a, b = a[keep], b[keep]
        rows, inv = torch.unique(torch.cat([a, b]), return_inverse=True)
        z = mapped(rows)
        loss = -_pair_pearson(z, S[a, b], inv[: len(a)], inv[len(a):])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every == 0:
            r = score()
            history.append((step, r))
            if r > best:
                best, kept, best_step, stale = r, (U.detach().clone(), V.detach().clone()), step, 0
            else:
                stale += 1
                if stale >= patience:
                    break
    return MetricMap(kept[0], kept[1], history, best_step)


def random_split(n: int, *, test_fraction: float = 0.25, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of a split at random (not by subtree)."""
    rng = np.random.default_rng(derive_seed(seed, "random-split"))
    order = rng.permutation(n)
    cut = int(round(test_fraction * n))
    return np.sort(order[cut:]), np.sort(order[:cut])


def subtree_slice(items: Sequence[Any], *, fraction: float = 0.15, seed: int = 0
                  ) -> np.ndarray:
    """Indices of a validation slice of ``items`` made of whole hypernym subtrees (the
    rule of :func:`~hyperlens.data.synsets.subtree_split`, every path, depth 4), about
    ``fraction`` of them: validation that mimics a split by subtree. ``items``: matched
    synsets or NLTK synsets."""
    from types import SimpleNamespace

    from ..data.synsets import deal_groups, subtree_groups

    rows: list[Any] = [m if hasattr(m, "synset") else SimpleNamespace(name=m.name(), synset=m)
                       for m in items]
    groups = subtree_groups(rows)  # the subtree of each, as subtree_split forms them
    taken = deal_groups(groups, test_fraction=fraction, seed=derive_seed(seed, "val-subtrees"),
                        giant_first=False)
    held = [i for i, m in enumerate(rows) if groups[m.name] in taken]
    return np.sort(np.asarray(held, dtype=np.int64))


def ceiling_rows(
    train: Sequence[Any],
    test: Sequence[Any],
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    *,
    n_boot: int,
    seed: int,
    max_random_test: int = 200,
    steps: int = 600,
) -> list[dict[str, Any]]:
    """The ceiling on both splits, as rows for the report.

    ``held-out subtrees``: the map fitted on the training synsets (``x_train``, the plain
    model's embeddings of ``train``) with whole training subtrees as its validation slice
    (:func:`subtree_slice`), scored on ``test``. ``random, within training
    subtrees``: fitted on a random 75 % of ``train``, scored on at most
    ``max_random_test`` of the rest. Each row: the plain and mapped Pearson with path
    similarity, the lift with its bootstrap interval over synsets, the step kept and the
    validation curve. ``steps``: the most training steps of each map.
    """
    from .modulate_train import relational_table

    a, b = random_split(len(train), seed=seed)
    rng = np.random.default_rng(derive_seed(seed, "random-split-test"))
    b = np.sort(rng.choice(b, min(len(b), max_random_test), replace=False))
    by_subtree: np.ndarray | None = subtree_slice(train, seed=seed)
    if by_subtree is not None and len(by_subtree) < 10:  # too few subtrees: at random
        by_subtree = None
    cases = [("held-out subtrees", list(train), x_train, list(test), x_test, by_subtree),
             ("random, within training subtrees", [train[i] for i in a],
              x_train[torch.as_tensor(a)], [train[i] for i in b], x_train[torch.as_tensor(b)],
              None)]
    rows = []
    for name, fit_items, x_fit, score_items, x_score, val in cases:
        mm = fit_metric_map(x_fit, fit_items, seed=seed, steps=steps, val_index=val)
        with torch.no_grad():
            mapped = mm.transform(x_score)
        table, _, _ = relational_table({"plain": x_score.float(), "mapped": mapped},
                                       score_items, base="plain", n_boot=n_boot, seed=seed,
                                       n_perm=99)
        t = table["path"]
        rows.append({"split": name, "fitted_on": len(fit_items), "scored_on": len(score_items),
                     "plain": t["plain"]["pearson"], "mapped": t["mapped"]["pearson"],
                     "lift": t["mapped"]["lift_pearson"],
                     "lift_lo": t["mapped"]["lift_pearson_lo"],
                     "lift_hi": t["mapped"]["lift_pearson_hi"],
                     "kept_step": mm.best_step, "validation": mm.history,
                     "validated_on": "random" if val is None else "subtrees"})
    return rows
