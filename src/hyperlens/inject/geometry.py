"""Token geometries for the modulators: WordNet and its controls.

A :class:`TokenGeometry` gives every row of a model's vocabulary a ``k``-dimensional
vector and a mask; masked-out tokens (not a matched WordNet lemma) inject nothing.

- :func:`wordnet_geometry`: the top-``k`` eigenvectors (scaled by the square root of their
  eigenvalues, rows normalised) of the Wu-Palmer matrix of the **training** synsets; every
  other matched token gets the softmax-weighted mean of its ``n_neighbors`` nearest
  training anchors in the model's static embedding space (cosine, temperature 10, as in
  the original pipeline). Held-out synsets never enter the matrix.
- :func:`random_geometry`: Gaussian rows, same mask and norms.
- :func:`shuffled_geometry`: the WordNet rows permuted among the masked tokens.
- :func:`pca_geometry`: the top-``k`` principal directions of the model's own static
  embeddings of the masked tokens (the model's geometry, no WordNet).
- :func:`procrustes_projection`: the initial projection ``P`` (``[d_model, k]``) that
  rotates the anchors' geometry onto the principal subspace of the model's residual
  representations of the same anchors, with :class:`~hyperlens.align.ProcrustesAligner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..align.procrustes import ProcrustesAligner
from ..data.synsets import MatchedSynset
from ..data.wordnet import similarity_matrix
from ..errors import InputError, ShapeError

__all__ = [
    "CONTROLS",
    "TokenGeometry",
    "make_control",
    "pca_geometry",
    "procrustes_projection",
    "random_geometry",
    "shuffled_geometry",
    "wordnet_geometry",
]

CONTROLS = ("random", "shuffled", "pca")


@dataclass
class TokenGeometry:
    """``vectors`` float32 ``[vocab, k]`` (zero rows where ``mask`` is False); ``mask`` bool
    ``[vocab]``."""

    vectors: torch.Tensor
    mask: torch.Tensor
    kind: str
    anchor_ids: torch.Tensor  # token ids whose vectors came from the eigendecomposition

    @property
    def vocab_size(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def summary(self) -> dict[str, float | int | str]:
        return {
            "kind": self.kind,
            "vocab": self.vocab_size,
            "dim": self.dim,
            "n_tokens": int(self.mask.sum()),
            "n_anchors": int(self.anchor_ids.numel()),
        }


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


def _static(token_embeddings: torch.Tensor) -> torch.Tensor:
    return token_embeddings.detach().float().cpu()


def wordnet_geometry(
    token_embeddings: torch.Tensor,
    train: Sequence[MatchedSynset],
    others: Sequence[MatchedSynset],
    *,
    dim: int = 64,
    n_neighbors: int = 10,
    temperature: float = 10.0,
) -> TokenGeometry:
    """WordNet geometry from the training synsets only (see the module docstring).

    Args:
        token_embeddings: the model's input embedding matrix ``[vocab, d]``.
        train: the anchors (their Wu-Palmer matrix is decomposed).
        others: further matched tokens (e.g. held-out synsets) placed by kNN over anchors.
    """
    E = _static(token_embeddings)
    vocab = E.shape[0]
    if len(train) <= dim:
        raise InputError(
            f"wordnet_geometry needs more than dim={dim} training synsets, got {len(train)}."
        )
    for m in list(train) + list(others):
        if not 0 <= m.token_id < vocab:
            raise ShapeError(
                f"token id {m.token_id} of {m.word!r} is outside the model's vocabulary of "
                f"{vocab} rows; "
                "the synsets were matched with another tokenizer."
            )
    S = similarity_matrix([m.synset for m in train], "wup")
    S = 0.5 * (S + S.T)
    evals, evecs = np.linalg.eigh(S)
    top = np.argsort(evals)[::-1][:dim]
    emb = evecs[:, top] * np.sqrt(np.maximum(evals[top], 0.0))[None, :]
    anchors = _unit_rows(torch.from_numpy(emb).float())  # [n_train, dim]
    ids_a = torch.tensor([m.token_id for m in train])
    vectors = torch.zeros(vocab, dim)
    vectors[ids_a] = anchors
    rest = [m.token_id for m in others if m.token_id not in set(ids_a.tolist())]
    if rest:
        ids_r = torch.tensor(rest)
        En = _unit_rows(E)
        cos = En[ids_r] @ En[ids_a].T  # [n_rest, n_train]
        k = min(n_neighbors, len(train))
        val, idx = cos.topk(k, dim=1)
        w = torch.softmax(val * temperature, dim=1)
        vectors[ids_r] = _unit_rows((anchors[idx] * w[..., None]).sum(1))
    mask = torch.zeros(vocab, dtype=torch.bool)
    mask[ids_a] = True
    if rest:
        mask[torch.tensor(rest)] = True
    return TokenGeometry(vectors, mask, "wordnet", ids_a)


def random_geometry(like: TokenGeometry, *, seed: int = 0) -> TokenGeometry:
    """Gaussian unit rows on the same tokens as ``like``."""
    gen = torch.Generator().manual_seed(seed)
    v = _unit_rows(torch.randn(like.vectors.shape, generator=gen)) * like.mask[:, None]
    return TokenGeometry(v, like.mask.clone(), "random", like.anchor_ids.clone())


def shuffled_geometry(like: TokenGeometry, *, seed: int = 0) -> TokenGeometry:
    """``like``'s rows permuted among its masked tokens (same vectors, wrong tokens)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.nonzero(like.mask).squeeze(1)
    v = like.vectors.clone()
    v[ids] = like.vectors[ids[torch.randperm(ids.numel(), generator=gen)]]
    return TokenGeometry(v, like.mask.clone(), "shuffled", like.anchor_ids.clone())


def pca_geometry(token_embeddings: torch.Tensor, like: TokenGeometry) -> TokenGeometry:
    """Top principal directions of the model's static embeddings of ``like``'s tokens."""
    E = _static(token_embeddings)
    ids = torch.nonzero(like.mask).squeeze(1)
    X = E[ids].double()
    X = X - X.mean(0)
    _, _, vh = torch.linalg.svd(X, full_matrices=False)
    z = (X @ vh[: like.dim].T).float()
    v = torch.zeros_like(like.vectors)
    v[ids] = _unit_rows(z)
    return TokenGeometry(v, like.mask.clone(), "pca", like.anchor_ids.clone())


def make_control(
    kind: str, like: TokenGeometry, token_embeddings: torch.Tensor, *, seed: int = 0
) -> TokenGeometry:
    """One of :data:`CONTROLS` (or ``"wordnet"``, which returns ``like``)."""
    if kind == "wordnet":
        return like
    if kind == "random":
        return random_geometry(like, seed=seed)
    if kind == "shuffled":
        return shuffled_geometry(like, seed=seed)
    if kind == "pca":
        return pca_geometry(token_embeddings, like)
    raise InputError(f"geometry must be 'wordnet' or one of {CONTROLS}, got {kind!r}.")


def procrustes_projection(
    geometry: TokenGeometry, token_ids: torch.Tensor, reps: torch.Tensor
) -> torch.Tensor:
    """Initial ``P`` ``[d_model, k]``: rotate ``geometry[token_ids]`` onto ``reps``' principal
    subspace.

    ``reps`` ``[n, d_model]`` are the model's representations of the same items (e.g. the
    residual stream of their definitions). The rotation is fitted by
    :class:`~hyperlens.align.ProcrustesAligner` with ``k`` components; ``P`` maps a
    geometry vector to the residual direction ``basis_s R^T g`` (columns orthonormal up to
    the rotation, so ``||P g|| = ||g||``).
    """
    G = geometry.vectors[token_ids].double()
    R = reps.double()
    if G.shape[0] != R.shape[0]:
        raise ShapeError(
            f"procrustes_projection: {G.shape[0]} geometry rows but {R.shape[0]} reps."
        )
    al = ProcrustesAligner(n_components=geometry.dim)
    al.fit(G, R)
    # teacher side: centred, basis_t, rotation -> student PCA coordinates; back to d_model
    P = al.basis_s_ @ al.rotation_.T @ al.basis_t_.T  # [d_model, k]
    return P.float()
