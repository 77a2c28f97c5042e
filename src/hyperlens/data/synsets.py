"""WordNet noun synsets matched to a tokenizer, split by whole hypernym subtrees.

:func:`single_token_ids` is the one rule that decides whether a tokenizer reads a word
as one token (see its docstring); :func:`match_synsets` pairs single-token words of a
tokenizer with the most frequent noun sense of that word (one synset per token, one token
per synset). :func:`subtree_split` groups matched synsets by their ancestors at a fixed
depth, on every hypernym path, and deals out whole groups to ``train`` and ``test``, so no
held-out synset shares such an ancestor with a training synset.
WordNet similarities come from :func:`hyperlens.data.similarity_matrix`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "MatchedSynset",
    "SynsetSplit",
    "match_synsets",
    "single_token_ids",
    "space_marks_word_start",
    "hf_tokenize",
    "subtree_split",
    "subtree_groups",
    "deal_groups",
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
    paths: str = "all"  # which hypernym paths define a subtree ("all" or the seed's "first")

    def summary(self) -> dict[str, Any]:
        tr = {self.groups[m.name] for m in self.train}
        te = {self.groups[m.name] for m in self.test}
        return {
            "n_train": len(self.train),
            "n_test": len(self.test),
            "subtree_depth": self.depth,
            "subtree_paths": self.paths,
            "n_train_subtrees": len(tr),
            "n_test_subtrees": len(te),
            "shared_subtrees": len(tr & te),
            "test_sharing_an_ancestor": self.leaks(),
        }

    def leaks(self) -> int:
        """Held-out synsets with an ancestor at ``depth``, on any hypernym path, that some
        training synset also has on one of its paths (0 for the leak-free split)."""
        train_roots = {r for m in self.train for r in _subtree_roots(m.synset, self.depth, "all")}
        return sum(any(r in train_roots for r in _subtree_roots(m.synset, self.depth, "all"))
                   for m in self.test)


Tokenize = Callable[[list[str]], Sequence[Sequence[int]]]


def hf_tokenize(tokenizer: Any) -> Tokenize:
    """A batch ``texts -> token ids`` function (no special tokens) for a Hugging Face
    tokenizer; tokenizers without a batch call are read one text at a time via ``encode``."""
    if callable(tokenizer):
        return lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]
    if hasattr(tokenizer, "encode"):
        return lambda texts: [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    raise InputError(
        f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}."
    )


def space_marks_word_start(tokenize: Tokenize) -> bool:
    """Whether the tokenizer marks a word start with the space before it.

    Byte-level BPE (GPT-2, SmolLM2, Llama 3) and SentencePiece without a dummy prefix
    (Gemma) read ``" the"`` as one token that differs from ``"the"``; SentencePiece with
    a dummy prefix (Llama 2, WordLlama) reads ``" the"`` as two tokens (a lone ``"▁"``
    first) because it adds the word-start marker to ``"the"`` itself; WordPiece (BERT)
    drops the space, so both forms give the same token.
    """
    spaced, bare = tokenize([" the", "the"])
    return len(spaced) == 1 and list(spaced) != list(bare)


def single_token_ids(
    tokenize: Tokenize, words: Sequence[str], *, leading_space: bool | None = None,
    vocab_size: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The token id of each word that a tokenizer reads as one token, and the form read.

    The rule (one for the package): a word is read in the form it has inside a sentence,
    after a space, and in that form only. ``leading_space=None`` asks the tokenizer
    (:func:`space_marks_word_start`): the spaced form (``" dog"``) where the space is what
    marks a word start (byte-level BPE), the bare form (``"dog"``) where the tokenizer adds
    the marker itself (SentencePiece with a dummy prefix) or drops spaces (WordPiece). The
    other form is never tried: a byte-level vocabulary's bare ``"ably"`` is the piece that
    ends *probably*, not the word. A match is exactly one id in ``[0, vocab_size)`` (ids of
    added tokens beyond the embedding table do not count).

    Args:
        tokenize: ``texts -> token ids`` per text, without special tokens
            (:func:`hf_tokenize` wraps a Hugging Face tokenizer).
        words: the words to match.
        leading_space: force the spaced (True) or bare (False) form; None asks the
            tokenizer.
        vocab_size: number of embedding rows, when known.

    Returns:
        ``ids [n]`` int64 (-1 where the word is not one token) and the form tokenised.

    Example:
        >>> vocab = {" the": 1, "the": 2, " dog": 5, "ably": 7}
        >>> tok = lambda texts: [[vocab[t]] if t in vocab else [8, 9] for t in texts]
        >>> single_token_ids(tok, ["dog", "ably"])
        (array([ 5, -1]), [' dog', ' ably'])
    """
    if leading_space is None:
        leading_space = space_marks_word_start(tokenize)
    forms = [(" " + w) if leading_space else w for w in words]
    ids = np.full(len(forms), -1, dtype=np.int64)
    for i, e in enumerate(tokenize(forms) if forms else []):
        if len(e) == 1 and int(e[0]) >= 0 and (vocab_size is None or int(e[0]) < vocab_size):
            ids[i] = int(e[0])
    return ids, forms


def match_synsets(
    tokenizer: Any, wn: Any, *, min_length: int = 3, min_definition: int = 10,
    leading_space: bool | None = None,
) -> list[MatchedSynset]:
    """Noun synsets whose word is a single token of ``tokenizer``, sorted by synset name.

    A word (lower-case, alphabetic, ``>= min_length`` letters) is matched to its first
    (most frequent) noun sense, and only when the word is a lemma of that sense. Each
    token and each synset is used once; definitions shorter than ``min_definition``
    characters are skipped. Single tokens follow :func:`single_token_ids`
    (``leading_space=None`` asks the tokenizer which form a word has in a sentence).
    """
    tokenize = hf_tokenize(tokenizer)
    words = sorted(
        {
            lem.name()
            for s in wn.all_synsets("n")
            for lem in s.lemmas()
            if lem.name().isalpha() and lem.name().islower() and len(lem.name()) >= min_length
        }
    )
    candidates = []
    for w in words:
        senses = wn.synsets(w, pos="n")
        if not senses or w not in senses[0].lemma_names():
            continue
        if len(senses[0].definition()) >= min_definition:
            candidates.append((w, senses[0]))
    ids, _ = single_token_ids(tokenize, [w for w, _ in candidates], leading_space=leading_space)
    out: list[MatchedSynset] = []
    seen_tok: set[int] = set()
    seen_syn: set[str] = set()
    for (w, s), tid in zip(candidates, ids.tolist(), strict=True):
        if tid < 0 or tid in seen_tok or s.name() in seen_syn:
            continue
        seen_tok.add(tid)
        seen_syn.add(s.name())
        out.append(MatchedSynset(w, s, tid))
    out.sort(key=lambda m: m.name)
    return out


def _subtree_roots(synset: Any, depth: int, paths: str) -> list[str]:
    """The ancestors at ``depth`` that define a synset's subtree: on every hypernym path
    (``paths="all"``) or on the first path in name order (``"first"``); a synset shallower
    than ``depth`` on a path is its own root there."""
    hp = sorted(synset.hypernym_paths(), key=lambda p: [s.name() for s in p])
    chosen = hp if paths == "all" else hp[:1]
    return sorted({p[min(depth, len(p) - 1)].name() for p in chosen})


def _components(roots_of: dict[str, list[str]]) -> dict[str, str]:
    """Union-find over synsets joined by a shared subtree root: each synset's group is the
    smallest root name of its component (so groups do not depend on input order)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for roots in roots_of.values():
        first = find(roots[0])
        for r in roots[1:]:
            other = find(r)
            if other != first:
                lo, hi = sorted((first, other))
                parent[hi] = lo
                first = lo
    return {name: find(roots[0]) for name, roots in roots_of.items()}


def subtree_split(
    matched: Sequence[MatchedSynset], *, test_fraction: float = 0.25, depth: int = 4,
    seed: int = 0, paths: str = "all",
) -> SynsetSplit:
    """Split by hypernym subtree: every synset goes with its ancestors at ``depth``.

    ``paths="all"`` (leak-free): a synset's subtree roots are its ancestors at ``depth`` on
    *every* hypernym path, and synsets that share any root are kept together (connected
    components; the group is the component's smallest root name), so no held-out synset
    has an ancestor at ``depth``, on any path, that a training synset also has.
    ``paths="first"`` is the seed's rule: the ancestor on the first path only (in name
    order: NLTK lists a synset's paths in an order that changes between processes), which
    lets a synset with two parents reach the other side through its second path. Synsets
    shallower than ``depth`` are their own subtree. Groups are shuffled with ``seed`` and
    dealt to the test side until it holds ``test_fraction`` of the synsets.
    :meth:`SynsetSplit.summary` counts shared groups, 0 by construction.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction!r}; e.g. 0.25.")
    if paths not in ("all", "first"):
        raise InputError(f"paths must be 'all' (leak-free) or 'first' (the seed's rule), "
                         f"got {paths!r}.")
    if len(matched) < 4:
        raise InputError(f"subtree_split needs at least 4 matched synsets, got {len(matched)}.")
    groups = subtree_groups(matched, depth=depth, paths=paths)
    test_roots = deal_groups(groups, test_fraction=test_fraction, seed=seed)
    train = [m for m in matched if groups[m.name] not in test_roots]
    test = [m for m in matched if groups[m.name] in test_roots]
    if not train or not test:
        raise InputError(
            f"subtree_split at depth={depth} put every synset on one side ({len(train)} train, "
            f"{len(test)} test); use a larger depth so there are more subtrees."
        )
    return SynsetSplit(train, test, depth, groups, paths)


def subtree_groups(matched: Sequence[Any], *, depth: int = 4, paths: str = "all"
                   ) -> dict[str, str]:
    """The subtree group of each synset (by name), as :func:`subtree_split` forms them.

    ``matched``: objects with ``name`` and ``synset`` (:class:`MatchedSynset`)."""
    return _components({m.name: _subtree_roots(m.synset, depth, paths) for m in matched})


def deal_groups(groups: dict[str, str], *, test_fraction: float, seed: int = 0,
                giant_first: bool = True) -> set[str]:
    """The groups dealt to one side: shuffled with ``seed`` and taken until they hold
    ``test_fraction`` of the synsets, skipping a group that would overshoot 1.5 times that
    share (``giant_first``: unless nothing has been taken yet)."""
    size: dict[str, int] = {}
    for g in groups.values():
        size[g] = size.get(g, 0) + 1
    roots = sorted(size)
    rng = np.random.default_rng(seed)
    target = test_fraction * len(groups)
    taken: set[str] = set()
    n = 0
    for r in (roots[i] for i in rng.permutation(len(roots))):
        if n >= target:
            break
        if n + size[r] > 1.5 * target and (n > 0 or not giant_first):
            continue  # a giant subtree would overshoot; try smaller ones
        taken.add(r)
        n += size[r]
    return taken
