"""Measurements on chosen tokens: lookup, digit manifold, semantic categories, special tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ...errors import InputError
from ...utils import derive_seed, make_generator
from ._common import (
    _pearson_rows,
    _sample_rows,
    _unit_rows,
)
from .config import (
    TerrainSubject,
)


# --------------------------------------------------------------------------- token lookup
def _is_blank(tok: Any, token_id: int) -> bool:
    """Whether ``token_id`` decodes to whitespace only (a bare word-boundary piece)."""
    try:
        return tok.decode([int(token_id)]).strip() == ""
    except Exception:  # noqa: BLE001 - a tokenizer that cannot decode one id: not blank
        return False


def find_token_ids(words: Sequence[str], subject: TerrainSubject, *,
                   prefer_space: bool = True) -> dict[str, int]:
    """Map each word to one token id where it is a single token; others are left out.

    With a tokenizer, the word with a leading space (how it appears mid-sentence in
    byte-pair vocabularies) is tried first, then the bare word (``prefer_space=False``
    swaps the order); a lone leading word-boundary piece (SentencePiece ``"▁"``) is
    ignored; for word-level vocabularies
    (static models, or no tokenizer) the word is looked up in ``vocab`` (case-insensitively
    when the exact form is missing).
    """
    found: dict[str, int] = {}
    tok = subject.tokenizer
    if tok is not None:
        for w in words:
            forms = [" " + w, w] if prefer_space else [w, " " + w]
            if w[:1].isupper():  # proper nouns: also the lower-case forms
                forms += [" " + w.lower(), w.lower()]
            for form in forms:
                try:
                    ids = tok.encode(form, add_special_tokens=False)
                except Exception:  # noqa: BLE001 - some tokenizers reject odd strings
                    continue
                if len(ids) == 2 and _is_blank(tok, ids[0]):
                    ids = ids[1:]  # SentencePiece may emit a lone word-boundary piece first
                if len(ids) == 1 and 0 <= ids[0] < subject.embeddings.shape[0]:
                    found[w] = int(ids[0])
                    break
        return found
    if subject.vocab is not None:
        if "_vocab_index" not in subject.extra:  # built once per subject (GloVe has 400k words)
            index: dict[str, int] = {}
            lower: dict[str, int] = {}
            for i, t in enumerate(subject.vocab[: subject.embeddings.shape[0]]):
                index.setdefault(t, i)
                lower.setdefault(t.lower(), i)
            subject.extra["_vocab_index"] = (index, lower)
        index, lower = subject.extra["_vocab_index"]
        for w in words:
            if w in index:
                found[w] = index[w]
            elif w.lower() in lower:
                found[w] = lower[w.lower()]
    return found


# --------------------------------------------------------------------------- digit manifold
def digit_manifold(E: torch.Tensor, ids: Sequence[int], *, n_permutations: int = 2000,
                   seed: int = 0) -> dict[str, Any]:
    """Is the cosine of number tokens ``i, j`` a decreasing function of ``|i - j|``?

    Statistics over the pairs ``i < j``: Pearson correlation of ``|i - j|`` with the cosine
    (negative when nearby numbers are more alike) and the adjacency gap (mean cosine of
    ``|i - j| = 1`` pairs minus the rest). The null permutes which token stands for which
    number (``n_permutations`` seeded draws); p-values are one-sided, ``(1 + #null at least
    as extreme) / (1 + n)``.

    Shapes:
        E: ``[vocab, d]``; ``ids``: ``[m]`` token ids in numeric order, ``m >= 4``.
    """
    m = len(ids)
    if m < 4:
        raise InputError(f"ids must hold at least 4 number tokens in order, got {m}.")
    U = _unit_rows(E[torch.as_tensor(list(ids))].double())
    C = U @ U.T
    iu = torch.triu_indices(m, m, offset=1)
    off = (iu[1] - iu[0]).double()
    adj = off == 1

    def stats(Cb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = Cb[:, iu[0], iu[1]]
        corr = _pearson_rows(off, v)
        gap = v[:, adj].mean(1) - v[:, ~adj].mean(1)
        return corr, gap

    corr, gap = stats(C[None])
    gen = make_generator(derive_seed(seed, "digits"))
    perm = torch.argsort(torch.rand(n_permutations, m, generator=gen), dim=1)
    Cp = C[perm[:, :, None], perm[:, None, :]]
    ncorr, ngap = stats(Cp)
    c0, g0 = float(corr[0]), float(gap[0])
    by_offset = [float(C[iu[0], iu[1]][off == k].mean()) for k in range(1, m)]
    return {
        "n": m,
        "cosine": C.tolist(),
        "corr_offset_cosine": c0,
        "p_corr": (1 + int((ncorr <= c0).sum())) / (1 + n_permutations),
        "null_corr_ci": torch.quantile(
            ncorr, torch.tensor([0.025, 0.975], dtype=torch.float64)
        ).tolist(),
        "adjacency_gap": g0,
        "p_gap": (1 + int((ngap >= g0).sum())) / (1 + n_permutations),
        "null_gap_ci": torch.quantile(
            ngap, torch.tensor([0.025, 0.975], dtype=torch.float64)
        ).tolist(),
        "mean_cosine_by_offset": by_offset,
    }


# --------------------------------------------------------------------------- categories
def category_clustering(E: torch.Tensor, groups: Mapping[str, Sequence[int]], *,
                        n_permutations: int = 2000, seed: int = 0,
                        reference_mean: float | None = None) -> dict[str, Any]:
    """Within- versus between-category cosine of word tokens, with a permutation null.

    ``gap`` is the mean cosine over same-category pairs minus the mean over
    different-category pairs. The null shuffles the category labels over the same tokens
    (category sizes kept), ``n_permutations`` seeded draws, all evaluated in one batched
    contraction. Per category: mean within cosine, its lift over ``reference_mean`` (the
    vocabulary-wide mean cosine, when given) and a permutation p-value.

    Shapes:
        E: ``[vocab, d]``; each group: token ids (groups with fewer than 3 are dropped).
    """
    groups = {k: list(v) for k, v in groups.items() if len(v) >= 3}
    if len(groups) < 2:
        raise InputError(
            f"groups must hold at least 2 categories with 3+ tokens each, got {len(groups)}; "
            "the vocabulary may lack the built-in words."
        )
    names = list(groups)
    ids = torch.as_tensor([i for k in names for i in groups[k]])
    labels = torch.as_tensor([c for c, k in enumerate(names) for _ in groups[k]])
    n, C_ = ids.numel(), len(names)
    U = _unit_rows(E[ids].double())
    S = U @ U.T
    S0 = S - torch.diag(torch.diagonal(S))
    sizes = torch.bincount(labels, minlength=C_).double()
    within_pairs = float((sizes * (sizes - 1)).sum())
    total_pairs = n * (n - 1)
    total_sum = float(S0.sum())

    def within_sums(lab: torch.Tensor) -> torch.Tensor:  # lab [B, n] -> [B, C]
        M = torch.nn.functional.one_hot(lab, C_).double()  # [B, n, C]
        return torch.einsum("bnc,bnc->bc", M, torch.einsum("nm,bmc->bnc", S0, M))

    def gaps(ws: torch.Tensor) -> torch.Tensor:
        w = ws.sum(-1)
        return w / within_pairs - (total_sum - w) / (total_pairs - within_pairs)

    ws0 = within_sums(labels[None])
    gap0 = float(gaps(ws0)[0])
    gen = make_generator(derive_seed(seed, "categories"))
    perm = torch.argsort(torch.rand(n_permutations, n, generator=gen), dim=1)
    wsn = within_sums(labels[perm])
    ngap = gaps(wsn)
    per_pairs = (sizes * (sizes - 1)).clamp_min(1.0)
    intra0 = ws0[0] / per_pairs
    intran = wsn / per_pairs
    per_cat = []
    for c, k in enumerate(names):
        per_cat.append(
            {
                "category": k,
                "n": int(sizes[c]),
                "within_mean": float(intra0[c]),
                "lift": float(intra0[c]) - reference_mean if reference_mean is not None else None,
                "null_mean": float(intran[:, c].mean()),
                "null_ci": torch.quantile(
                    intran[:, c], torch.tensor([0.025, 0.975], dtype=torch.float64)
                ).tolist(),
                "p": (1 + int((intran[:, c] >= intra0[c]).sum())) / (1 + n_permutations),
            }
        )
    cent = _unit_rows(torch.stack([U[labels == c].mean(0) for c in range(C_)]))
    # nearest-neighbour purity: share of tokens whose most similar other token shares its category
    nn_idx = (S - 2.0 * torch.eye(n, dtype=S.dtype)).argmax(dim=1)
    purity = float((labels[nn_idx] == labels).double().mean())
    chance = float((sizes * (sizes - 1)).sum() / (n * (n - 1)))
    return {
        "n_tokens": n,
        "categories": names,
        "within_mean": float(ws0.sum() / within_pairs),
        "between_mean": (total_sum - float(ws0.sum())) / (total_pairs - within_pairs),
        "gap": gap0,
        "null_gap_ci": torch.quantile(
            ngap, torch.tensor([0.025, 0.975], dtype=torch.float64)
        ).tolist(),
        "null_gap_mean": float(ngap.mean()),
        "p_gap": (1 + int((ngap >= gap0).sum())) / (1 + n_permutations),
        "z_gap": (gap0 - float(ngap.mean())) / max(float(ngap.std()), 1e-300),
        "nn_purity": purity,
        "nn_purity_chance": chance,
        "per_category": per_cat,
        "centroid_cosine": (cent @ cent.T).tolist(),
    }


# --------------------------------------------------------------------------- special tokens
def special_token_statistics(E: torch.Tensor, tokenizer: Any, *, norms: torch.Tensor | None = None,
                             sample: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Norm, norm percentile and mean cosine to ordinary tokens of each special token.

    Shapes:
        E: ``[vocab, d]``; ``norms``: ``[vocab]`` (recomputed when absent).
    """
    if tokenizer is None:
        return {"available": False, "note": "no tokenizer, so no special tokens to inspect"}
    ids = getattr(tokenizer, "all_special_ids", None) or []
    toks = getattr(tokenizer, "all_special_tokens", None) or [None] * len(ids)
    pairs = [
        (int(i), t)
        for i, t in zip(ids, toks, strict=False)
        if i is not None and 0 <= int(i) < E.shape[0]
    ]
    seen: dict[int, str | None] = {}
    for i, t in pairs:
        seen.setdefault(i, t)
    if not seen:
        return {
            "available": False,
            "note": "the tokenizer declares no special tokens inside the embedding matrix",
        }
    if norms is None:
        norms = E.double().norm(dim=1)
    sid = torch.as_tensor(list(seen))
    gen = make_generator(derive_seed(seed, "special"))
    mask = torch.ones(E.shape[0], dtype=torch.bool)
    mask[sid] = False
    pool = torch.nonzero(mask).flatten()
    ref = pool[_sample_rows(pool.numel(), sample, gen)]
    Us = _unit_rows(E[sid].double())
    Ur = _unit_rows(E[ref].double())
    to_ref = Us @ Ur.T
    sorted_norms = norms.sort().values
    rows = []
    for j, (i, t) in enumerate(seen.items()):
        rank = int(torch.searchsorted(sorted_norms, norms[i]))
        rows.append({
            "token": t, "id": i, "norm": float(norms[i]),
            "norm_percentile": 100.0 * rank / max(len(sorted_norms), 1),
            "mean_cos_to_tokens": float(to_ref[j].mean()),
            "max_cos_to_tokens": float(to_ref[j].max()),
        })
    return {"available": True, "tokens": rows, "pairwise_cosine": (Us @ Us.T).tolist()}
