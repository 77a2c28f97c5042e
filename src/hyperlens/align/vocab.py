"""Procrustes between two models' token-embedding matrices over their shared vocabulary.

Token strings differ by tokenizer convention: byte-level BPE marks a leading space with
``Ġ``, SentencePiece with ``▁``, WordPiece marks continuations with ``##`` instead, and
static word vectors have whole words. :func:`normalize_token` maps all of them to one
form (word-initial pieces as the bare word, continuation pieces as ``##piece``), so the
same string means the same thing on both sides. Rows are fitted on a random part of the
shared vocabulary and scored on the held-out rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ShapeError
from ..utils import as_float_matrix
from .procrustes import ProcrustesAligner

__all__ = ["detect_convention", "normalize_token", "shared_vocabulary", "VocabAlignment",
           "align_vocabularies"]

_SPECIAL = ("<", "[")


def detect_convention(vocab: Sequence[str]) -> str:
    """``"bpe"`` (``Ġ``), ``"sentencepiece"`` (``▁``), ``"wordpiece"`` (``##``) or ``"words"``."""
    sample = list(vocab)[:: max(1, len(vocab) // 5000)]
    counts = {
        "bpe": sum(t.startswith("Ġ") for t in sample),
        "sentencepiece": sum(t.startswith("▁") for t in sample),
        "wordpiece": sum(t.startswith("##") for t in sample),
    }
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] >= 0.02 * len(sample) else "words"


def normalize_token(token: str, convention: str, lowercase: bool = True) -> str | None:
    """One spelling for a token across conventions; ``None`` for special or empty tokens.

    >>> normalize_token("Ġdog", "bpe"), normalize_token("ing", "bpe")
    ('dog', '##ing')
    >>> normalize_token("▁Dog", "sentencepiece"), normalize_token("##ing", "wordpiece")
    ('dog', '##ing')
    """
    if not token or (token[0] in _SPECIAL and token[-1] in ">]") or token.startswith("<row "):
        return None
    if convention == "bpe":
        word = token[1:] if token.startswith("Ġ") else "##" + token
    elif convention == "sentencepiece":
        word = token[1:] if token.startswith("▁") else "##" + token
    else:
        word = token
    if word in ("", "##") or not any(ch.isalnum() for ch in word):
        return None
    return word.lower() if lowercase else word


def shared_vocabulary(
    vocab_a: Sequence[str], vocab_b: Sequence[str], *, lowercase: bool = True,
    whole_words_only: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Row indices of the tokens both vocabularies spell the same way (after normalising).

    When several rows normalise to one key (``"The"`` and ``"the"`` with ``lowercase``), the
    lowest row id wins (tokenizers give frequent tokens low ids).

    Returns ``(rows_a, rows_b, keys)``, aligned.
    """
    conv_a, conv_b = detect_convention(vocab_a), detect_convention(vocab_b)

    def table(vocab: Sequence[str], conv: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for i, tok in enumerate(vocab):
            key = normalize_token(tok, conv, lowercase)
            if key is None or (whole_words_only and key.startswith("##")):
                continue
            out.setdefault(key, i)
        return out

    ta, tb = table(vocab_a, conv_a), table(vocab_b, conv_b)
    keys = sorted(set(ta) & set(tb), key=lambda k: ta[k])
    return (np.array([ta[k] for k in keys], dtype=np.int64),
            np.array([tb[k] for k in keys], dtype=np.int64), keys)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _knn(x: torch.Tensor, k: int) -> torch.Tensor:
    sims = _unit(x) @ _unit(x).T
    sims.fill_diagonal_(-2.0)
    return sims.topk(k, dim=1).indices


@dataclass
class VocabAlignment:
    """Held-out quality of a token-embedding Procrustes map (A mapped into B's space)."""

    n_shared: int
    n_fit: int
    n_test: int
    dim: int
    residual: float
    cosine_mean: float
    cosine_median: float
    cosine_percentiles: dict[str, float]
    top1_retrieval: float
    knn_overlap: float
    relational_corr: float  # rotation-invariant: compares the two geometries, not the map
    null: dict[str, float]
    cosines: np.ndarray = field(repr=False)
    test_keys: list[str] = field(repr=False)
    conventions: tuple[str, str] = ("", "")

    def metrics(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in {"cosines", "test_keys"}}


def _scores(za: torch.Tensor, zb: torch.Tensor, k: int) -> dict[str, float]:
    """Residual, cosines, retrieval, kNN overlap and relational correlation (za ~ zb)."""
    cos = (_unit(za) * _unit(zb)).sum(1)
    sims = _unit(za) @ _unit(zb).T  # [m, m]: mapped A token i against every B token
    top1 = float((sims.argmax(1) == torch.arange(za.shape[0])).float().mean())
    # k nearest B tokens of mapped A token i (itself excluded) against those of B token i;
    # unlike within-space neighbourhoods this depends on the map, not only on the geometry
    cross = sims.clone()
    cross.fill_diagonal_(-2.0)
    ka, kb = cross.topk(k, dim=1).indices, _knn(zb, k)
    same = (ka[:, :, None] == kb[:, None, :]).any(2).float().mean(1)
    tri = torch.triu_indices(za.shape[0], za.shape[0], 1)
    ra = (_unit(za) @ _unit(za).T)[tri[0], tri[1]]
    rb = (_unit(zb) @ _unit(zb).T)[tri[0], tri[1]]
    rel = float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])
    return {"residual": float((za - zb).norm() / zb.norm().clamp_min(1e-12)),
            "cosine_mean": float(cos.mean()), "cosine_median": float(cos.median()),
            "top1_retrieval": top1, "knn_overlap": float(same.mean()), "relational_corr": rel,
            "_cos": cos}  # type: ignore[dict-item]


def align_vocabularies(
    emb_a: Any, vocab_a: Sequence[str], emb_b: Any, vocab_b: Sequence[str], *,
    test_fraction: float = 0.2, max_test: int = 3000, k: int = 10, seed: int = 0,
    lowercase: bool = True, whole_words_only: bool = False, scaling: bool = True,
    n_components: int | None = None,
) -> VocabAlignment:
    """Fit Procrustes from A's token embeddings to B's on the shared vocabulary; score held out.

    The null model fits the same Procrustes on randomly re-paired rows: what any
    orthogonal map achieves by chance. Held-out scores are computed on at most
    ``max_test`` tokens (the neighbour and relational scores are quadratic in it).

    Shapes:
        emb_a ``[V_a, d_a]`` with ``len(vocab_a) == V_a``; emb_b ``[V_b, d_b]``.
    """
    ea = as_float_matrix(emb_a, "emb_a", dtype=torch.float32)
    eb = as_float_matrix(emb_b, "emb_b", dtype=torch.float32)
    for e, v, name in ((ea, vocab_a, "a"), (eb, vocab_b, "b")):
        if e.shape[0] != len(v):
            raise ShapeError(
                f"emb_{name} has {e.shape[0]} rows but vocab_{name} has {len(v)} entries; pass "
                "the vocabulary in row order of the embedding matrix."
            )
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction={test_fraction!r} must be in (0, 1).")
    rows_a, rows_b, keys = shared_vocabulary(vocab_a, vocab_b, lowercase=lowercase,
                                             whole_words_only=whole_words_only)
    n = len(keys)
    if n < 20:
        raise InputError(
            f"the two vocabularies share only {n} normalised tokens; at least 20 are needed. "
            "Check that both models tokenise the same language (or pass lowercase=True)."
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = min(max_test, max(2, int(round(test_fraction * n))))
    test, fit = perm[:n_test], perm[n_test:]
    xa = ea[torch.as_tensor(rows_a)]
    xb = eb[torch.as_tensor(rows_b)]
    al = ProcrustesAligner(n_components=n_components, scaling=scaling)
    al.fit(xa[fit], xb[fit])
    za = torch.as_tensor(al.transform_teacher(xa[test].numpy()))
    zb = torch.as_tensor(al.transform_student(xb[test].numpy()))
    k = min(k, n_test - 1)
    sc = _scores(za, zb, k)
    shuffled = fit[rng.permutation(fit.size)]
    null_al = ProcrustesAligner(n_components=n_components, scaling=scaling)
    null_al.fit(xa[fit], xb[shuffled])
    nz = _scores(torch.as_tensor(null_al.transform_teacher(xa[test].numpy())),
                 torch.as_tensor(null_al.transform_student(xb[test].numpy())), k)
    cos = torch.as_tensor(sc.pop("_cos")).numpy()
    nz.pop("_cos")
    pct = {str(p): float(np.percentile(cos, p)) for p in (1, 5, 25, 50, 75, 95, 99)}
    return VocabAlignment(
        n_shared=n, n_fit=int(fit.size), n_test=int(n_test), dim=al.dim_,
        residual=sc["residual"], cosine_mean=sc["cosine_mean"], cosine_median=sc["cosine_median"],
        cosine_percentiles=pct, top1_retrieval=sc["top1_retrieval"], knn_overlap=sc["knn_overlap"],
        relational_corr=sc["relational_corr"], null=nz, cosines=cos,
        test_keys=[keys[i] for i in test],
        conventions=(detect_convention(vocab_a), detect_convention(vocab_b)),
    )
