"""WordNet noun synsets matched to a tokenizer, split by whole hypernym subtrees.

:func:`match_synsets` pairs single-token words of a tokenizer with the most frequent noun
sense of that word (one synset per token, one token per synset). :func:`subtree_split`
assigns every matched synset to the hypernym subtree it belongs to (its ancestor at a
fixed depth on its first hypernym path) and deals out whole subtrees to ``train`` and
``test``, so no held-out synset shares that ancestor with a training synset.
WordNet similarities come from :func:`hyperlens.data.similarity_matrix`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "MatchedSynset",
    "SynsetSplit",
    "match_synsets",
    "subtree_split",
]


@dataclass(frozen=True)
class MatchedSynset:
    """One noun synset whose lemma ``word`` is the single token ``token_id``."""

    word: str
    synset: Any  # nltk Synset
    token_id: int

    @property
    def name(self) -> str:
        return str(self.synset.name())

    @property
    def definition(self) -> str:
        return str(self.synset.definition())

    @property
    def examples(self) -> list[str]:
        return [str(e) for e in self.synset.examples()]


@dataclass
class SynsetSplit:
    """Disjoint ``train`` / ``test`` lists of :class:`MatchedSynset` and the subtree of each."""

    train: list[MatchedSynset]
    test: list[MatchedSynset]
    depth: int
    groups: dict[str, str] = field(default_factory=dict)  # synset name -> subtree root name

    def summary(self) -> dict[str, Any]:
        tr = {self.groups[m.name] for m in self.train}
        te = {self.groups[m.name] for m in self.test}
        return {
            "n_train": len(self.train),
            "n_test": len(self.test),
            "subtree_depth": self.depth,
            "n_train_subtrees": len(tr),
            "n_test_subtrees": len(te),
            "shared_subtrees": len(tr & te),
        }


def _single_token(tokenizer: Any, word: str) -> int | None:
    """The id of ``word`` as one token (with a leading space where the tokenizer marks it)."""
    for text in (" " + word, word):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) == 1:
            return int(ids[0])
    return None


def match_synsets(
    tokenizer: Any, wn: Any, *, min_length: int = 3, min_definition: int = 10
) -> list[MatchedSynset]:
    """Noun synsets whose word is a single token of ``tokenizer``, sorted by synset name.

    A word (lower-case, alphabetic, ``>= min_length`` letters) is matched to its first
    (most frequent) noun sense, and only when the word is a lemma of that sense. Each
    token and each synset is used once; definitions shorter than ``min_definition``
    characters are skipped.
    """
    if not hasattr(tokenizer, "encode"):
        raise InputError(
            f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}."
        )
    words = sorted(
        {
            lem.name()
            for s in wn.all_synsets("n")
            for lem in s.lemmas()
            if lem.name().isalpha() and lem.name().islower() and len(lem.name()) >= min_length
        }
    )
    out: list[MatchedSynset] = []
    seen_tok: set[int] = set()
    seen_syn: set[str] = set()
    for w in words:
        senses = wn.synsets(w, pos="n")
        if not senses:
            continue
        s = senses[0]
        if w not in s.lemma_names() or s.name() in seen_syn or len(s.definition()) < min_definition:
            continue
        tid = _single_token(tokenizer, w)
        if tid is None or tid in seen_tok:
            continue
        seen_tok.add(tid)
        seen_syn.add(s.name())
        out.append(MatchedSynset(w, s, tid))
    out.sort(key=lambda m: m.name)
    return out


def subtree_split(
    matched: Sequence[MatchedSynset], *, test_fraction: float = 0.25, depth: int = 4, seed: int = 0
) -> SynsetSplit:
    """Split by hypernym subtree: every synset goes with its ancestor at ``depth``.

    The ancestor is read from the synset's first hypernym path in name order (NLTK lists a
    synset's paths in an order that changes between processes; synsets shallower than
    ``depth`` are their own subtree). Subtrees are shuffled with ``seed`` and dealt to the
    test side until it holds ``test_fraction`` of the synsets. Synsets with several
    hypernym paths can still have an ancestor on the other side through a second path;
    :meth:`SynsetSplit.summary` counts shared subtree roots, which is 0 by construction.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction!r}; e.g. 0.25.")
    if len(matched) < 4:
        raise InputError(f"subtree_split needs at least 4 matched synsets, got {len(matched)}.")
    groups: dict[str, str] = {}
    members: dict[str, list[MatchedSynset]] = {}
    for m in matched:
        path = min(m.synset.hypernym_paths(), key=lambda p: [s.name() for s in p])
        root = path[min(depth, len(path) - 1)].name()
        groups[m.name] = root
        members.setdefault(root, []).append(m)
    roots = sorted(members)
    rng = np.random.default_rng(seed)
    order = [roots[i] for i in rng.permutation(len(roots))]
    target = test_fraction * len(matched)
    test_roots: set[str] = set()
    n_test = 0
    for r in order:
        if n_test >= target:
            break
        if n_test + len(members[r]) > 1.5 * target and n_test > 0:
            continue  # a giant subtree would overshoot; try smaller ones
        test_roots.add(r)
        n_test += len(members[r])
    train = [m for m in matched if groups[m.name] not in test_roots]
    test = [m for m in matched if groups[m.name] in test_roots]
    if not train or not test:
        raise InputError(
            f"subtree_split at depth={depth} put every synset on one side ({len(train)} train, "
            f"{len(test)} test); use a larger depth so there are more subtrees."
        )
    return SynsetSplit(train, test, depth, groups)
