"""WordNet entries for a model: single-token lemmas, one sense each, and their encodings.

An *entry* is a WordNet lemma that the model reads as one token (one vector for static
models), the synset chosen for it, and that synset's definition. :func:`build_entries`
finds them; :func:`encode_entries` gives two matrices per model:

* **static**: the lemma's own vector (a transformer's input token embedding row, a word
  vector for GloVe / spaCy, the token vector for WordLlama);
* **contextual**: the definition read by the model: encoders mean-pool the definition;
  decoders read the prompt ``Definition: <gloss>\\nWord:`` at its last token (the position
  that predicts the word), or, with ``decoder_read="mean"``, average every token but the
  first (the first position is an attention sink whose state is nearly input-independent);
  static models average the definition's word vectors.

:func:`tfidf_definitions` is the text-only baseline every model is compared with.

Lemma matching follows :func:`hyperlens.data.synsets.single_token_ids`: a lemma is
tokenised in the form it has inside a sentence, with a leading space (``" dog"``) for
byte-level vocabularies (GPT-2, SmolLM2), bare for tokenizers that add the word-start
marker themselves (SentencePiece: WordLlama) or drop spaces (WordPiece encoders).
Senses: ``"rank"`` (default) takes the lemma's most frequent sense, ``synsets(w)[0]`` in
NLTK's order (nouns, verbs, adjectives, adverbs, each by sense rank), within the chosen
parts of speech; ``"file"`` reproduces the seed notebook, which took the first synset in
``all_synsets()`` file order (adjectives first, so *bank* became ``bank.n.10``, a flight
manoeuvre, and *dog* an adjective-file sense when one existed). Each synset is kept once
(two lemmas of one synset would have the same definition).

Shapes:
    encode_entries: -> static [n, d], contextual [n, d]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.synsets import hf_tokenize, single_token_ids
from ..data.wordnet_similarity import POS_TAGS, WordNetGraph, wordnet_graph
from ..errors import InputError

__all__ = [
    "Entries",
    "POS_GROUPS",
    "parse_pos",
    "build_entries",
    "definition_texts",
    "encode_entries",
    "tfidf_definitions",
    "DECODER_TEMPLATE",
]

#: Named part-of-speech selections (``a`` includes adjective satellites ``s``).
POS_GROUPS: dict[str, tuple[str, ...]] = {
    "all": ("n", "v", "a", "s", "r"), "n": ("n",), "noun": ("n",), "nouns": ("n",),
    "v": ("v",), "verb": ("v",), "a": ("a", "s"), "adj": ("a", "s"), "s": ("s",),
    "r": ("r",), "adv": ("r",),
}
#: The decoder prompt; its last token is where the model would say the word.
DECODER_TEMPLATE = "Definition: {definition}\nWord:"
_SENSES = ("rank", "file")


def parse_pos(pos: str | Sequence[str]) -> tuple[str, ...]:
    """POS tags from ``"all"``, ``"n"``, ``"noun"``, ``"n,v"`` or a list of those."""
    items = pos.split(",") if isinstance(pos, str) else list(pos)
    out: list[str] = []
    for item in items:
        key = str(item).strip().lower()
        if key not in POS_GROUPS:
            raise InputError(
                f"pos={item!r} is not a WordNet part of speech; use one of "
                f"{sorted(POS_GROUPS)} (or a comma-separated list such as 'n,v')."
            )
        out += [p for p in POS_GROUPS[key] if p not in out]
    if not out:
        raise InputError("pos is empty; pass 'all' or e.g. 'n'.")
    return tuple(p for p in POS_TAGS if p in out)


@dataclass
class Entries:
    """Single-token WordNet entries of one model (row-aligned arrays).

    Attributes:
        lemmas: the lemma strings (spaces for ``_``) ``[n]``.
        synsets: synset ids in :func:`~hyperlens.data.wordnet_similarity.wordnet_graph` ``[n]``.
        token_ids: the lemma's row in the model's embedding table ``[n]``.
        forms: the exact string that was tokenised (``" dog"`` for decoders).
        model: the model's name; sense: ``"rank"`` or ``"file"``; pos: the POS tags kept.
        n_candidates: single-token lemmas found before the sense and definition filters.
    """

    lemmas: list[str]
    synsets: np.ndarray
    token_ids: np.ndarray
    forms: list[str]
    model: str
    sense: str
    pos: tuple[str, ...]
    n_candidates: int

    def __len__(self) -> int:
        return len(self.lemmas)

    def names(self, graph: WordNetGraph | None = None) -> list[str]:
        g = graph or wordnet_graph()
        return [g.names[i] for i in self.synsets.tolist()]

    def definitions(self, graph: WordNetGraph | None = None) -> list[str]:
        g = graph or wordnet_graph()
        return [g.definitions[i] for i in self.synsets.tolist()]

    def subset(self, rows: np.ndarray) -> Entries:
        rows = np.asarray(rows, dtype=np.int64)
        return Entries([self.lemmas[i] for i in rows.tolist()], self.synsets[rows],
                       self.token_ids[rows], [self.forms[i] for i in rows.tolist()], self.model,
                       self.sense, self.pos, self.n_candidates)


def _candidate_lemmas(g: WordNetGraph) -> list[str]:
    """Single-word lemma keys, sorted (multi-word lemmas cannot be one token)."""
    return sorted(k for k in g.lemma_index if "_" not in k and k.isprintable() and k.strip())


def check_lemma_matching(handle: Any) -> None:
    """Raise before heavy work when ``handle`` cannot match lemmas to single tokens."""
    sv = getattr(handle, "static", None)
    if getattr(handle, "kind", None) == "static":
        if sv is None:
            raise InputError(f"model {handle.name!r} is static but has no vector table.")
        return
    if getattr(handle, "tokenizer", None) is None:
        raise InputError(
            f"model {getattr(handle, 'name', handle)!r} has no tokenizer, so its lemmas cannot be "
            "matched to single tokens; load it with hyperlens.models.load(name) or wrap it with "
            "hyperlens.models.from_module(module, tokenizer)."
        )


def _single_token_ids(handle: Any, words: list[str]) -> tuple[np.ndarray, list[str]]:
    """Token id of each word read as one token (-1 otherwise) and the form tokenised.

    Tokenizers follow :func:`hyperlens.data.synsets.single_token_ids`; static tables
    without a tokenizer look the word up in their vocabulary.
    """
    sv = getattr(handle, "static", None)
    if handle.kind == "static" and sv is not None and not sv.ids_from_tokenizer:
        ids = np.full(len(words), -1, dtype=np.int64)
        for i, w in enumerate(words):
            j = sv.index.get(w.lower() if sv.lowercase else w)
            if j is not None:
                ids[i] = j
        return ids, list(words)
    if handle.kind == "static" and sv is not None:
        return single_token_ids(sv.tokenize, words)
    return single_token_ids(hf_tokenize(handle.tokenizer), words,
                            vocab_size=int(handle.token_embeddings().shape[0]))


def build_entries(handle: Any, *, pos: str | Sequence[str] = "all", sense: str = "rank",
                  min_definition_chars: int = 11, graph: WordNetGraph | None = None) -> Entries:
    """The model's single-token WordNet entries (see the module docstring for the rules).

    Args:
        handle: a :class:`hyperlens.models.ModelHandle`.
        pos: parts of speech to keep (``"all"``, ``"n"``, ``"n,v"``, ...).
        sense: ``"rank"`` (most frequent sense) or ``"file"`` (the seed's file order).
        min_definition_chars: drop synsets whose definition is shorter (the seed kept > 10).
    """
    if sense not in _SENSES:
        raise InputError(f"sense must be one of {_SENSES}, got {sense!r}.")
    tags = parse_pos(pos)
    check_lemma_matching(handle)
    g = graph or wordnet_graph()
    words = _candidate_lemmas(g)
    ids, forms = _single_token_ids(handle, words)
    keep = np.flatnonzero(ids >= 0)
    tagset = np.array(tags)
    seen_syn: set[int] = set()
    seen_tok: set[int] = set()
    lem, syn, tok, frm = [], [], [], []
    for i in keep.tolist():
        w = words[i]
        cand = g.lemma_index[w]
        cand = cand[np.isin(g.pos[cand], tagset)]
        if cand.size == 0:
            continue
        s = int(cand[0]) if sense == "rank" else int(cand.min())
        if s in seen_syn or int(ids[i]) in seen_tok:
            continue
        if len(g.definitions[s]) < min_definition_chars:
            continue
        seen_syn.add(s)
        seen_tok.add(int(ids[i]))
        lem.append(w.replace("_", " "))
        syn.append(s)
        tok.append(int(ids[i]))
        frm.append(forms[i])
    if not lem:
        raise InputError(
            f"model {handle.name!r} reads none of WordNet's lemmas with pos={tags} as a single "
            "token; try pos='all', or a model with a word-level vocabulary."
        )
    return Entries(lem, np.array(syn, dtype=np.int64), np.array(tok, dtype=np.int64), frm,
                   str(handle.name), sense, tags, int(keep.size))


def definition_texts(entries: Entries, kind: str, *, decoder_read: str = "last",
                     graph: WordNetGraph | None = None) -> tuple[list[str], str]:
    """The texts to encode and the pooling to use for a model ``kind``.

    Encoders (and encoder-decoders, whose encoder is used): the definition, mean pooling.
    Decoders: :data:`DECODER_TEMPLATE`, read at the last token (``decoder_read="last"``) or
    averaged without the first token (``"mean"``). Static models: the definition, averaged.
    """
    defs = entries.definitions(graph)
    if kind == "decoder":
        if decoder_read not in ("last", "mean"):
            raise InputError(f"decoder_read must be 'last' or 'mean', got {decoder_read!r}.")
        texts = [DECODER_TEMPLATE.format(definition=d) for d in defs]
        return texts, ("last" if decoder_read == "last" else "mean_after_first")
    return defs, "mean"


def encode_entries(handle: Any, entries: Entries, *, decoder_read: str = "last",
                   batch_size: int = 32, cache: bool = True, max_length: int = 96,
                   progress: bool | None = None) -> dict[str, np.ndarray]:
    """``{"static": [n, d], "contextual": [n, d]}`` float32 for ``entries`` (see module doc).

    Definition encodings go through :func:`hyperlens.models.embed` (cached on disk with
    ``cache=True``, keyed by model, texts and pooling).
    """
    from ..models import embed

    texts, pooling = definition_texts(entries, handle.kind, decoder_read=decoder_read)
    if handle.kind == "static":
        vec = handle.static.vectors.float().cpu().numpy()
        static = vec[entries.token_ids]
        contextual = embed(texts, handle, cache=cache)
    else:
        emb = handle.token_embeddings().float().cpu().numpy()
        static = emb[entries.token_ids]
        contextual = embed(texts, handle, pooling=pooling, batch_size=batch_size, cache=cache,
                           max_length=max_length, progress=progress)
    return {"static": np.ascontiguousarray(static, dtype=np.float32),
            "contextual": np.ascontiguousarray(contextual, dtype=np.float32)}


def tfidf_definitions(entries: Entries, *, graph: WordNetGraph | None = None) -> Any:
    """TF-IDF vectors of the definitions (scikit-learn; sublinear tf, English stop words
    removed, unigrams and bigrams): the text-only baseline. A scipy CSR ``[n, vocab]``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(sublinear_tf=True, stop_words="english", ngram_range=(1, 2), min_df=1)
    return vec.fit_transform(entries.definitions(graph))
