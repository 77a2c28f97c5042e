"""Sentence embeddings from any model in the zoo, fast on CPU.

What makes it fast (see ``benchmarks/bench_embed.py`` for the measured effect):

- all texts are tokenised in one call, then **sorted by token length** and cut into
  batches, so a batch pads to within a few tokens of its longest text (the order is
  restored at the end);
- the **bare backbone** runs (no language-model head: SmolLM2's 49k-wide vocabulary
  projection would cost about a fifth of the forward pass), under
  ``torch.inference_mode`` with PyTorch's scaled-dot-product attention kernels;
- when an **earlier layer** is requested the forward pass **stops** right after that
  layer (a hook raises a stop signal), so ``layer=6`` on the 30-layer SmolLM2 runs 6
  blocks, not 30;
- :func:`embed_layers` collects every hidden state in **one** forward pass.

Static models (GloVe, WordLlama, spaCy vectors) average the vectors of their words or
tokens; words without a vector are skipped and counted (a warning, plus
:func:`last_oov`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError
from ..utils import (
    resolve_device,
)
from .forward import (
    _cached,
    _embed_transformer,
    _store,
)
from .handle import ModelHandle

if TYPE_CHECKING:
    from ..run import Executor

__all__ = ["embed", "embed_layers", "last_oov", "OOVReport", "validate_texts", "POOLINGS"]

POOLINGS = ("mean", "cls", "last", "mean_after_first")


@dataclass
class OOVReport:
    """Out-of-vocabulary counts of the last static-model :func:`embed` call.

    ``empty_texts`` lists the indices of texts with no known word (their vector is zero).
    """

    model: str
    n_words: int
    n_oov: int
    empty_texts: list[int]

    @property
    def rate(self) -> float:
        return self.n_oov / self.n_words if self.n_words else 0.0


_LAST_OOV: OOVReport | None = None
_LOADED: dict[tuple[str, str], ModelHandle] = {}


def last_oov() -> OOVReport | None:
    """The out-of-vocabulary report of the most recent static-model embedding, if any."""
    return _LAST_OOV


# --------------------------------------------------------------------------- validation
def validate_texts(texts: Any, name: str = "texts") -> list[str]:
    """Check that ``texts`` is a non-empty sequence of strings and return it as a list."""
    if isinstance(texts, str):
        raise InputError(
            f"{name} must be a list of strings, got a single str ({texts[:40]!r}...); wrap it: "
            "[text]."
        )
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    if not isinstance(texts, Sequence):
        try:
            texts = list(texts)
        except TypeError as exc:
            raise InputError(
                f"{name} must be a list of strings, got {type(texts).__name__}."
            ) from exc
    if len(texts) == 0:
        raise InputError(f"{name} is empty; pass at least one string.")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        i = bad[0]
        raise InputError(
            f"{name} must contain only strings; item {i} is {type(texts[i]).__name__} {texts[i]!r} "
            f"({len(bad)} non-string item(s) in all). Convert or drop them (e.g. [str(t) for t in "
            f"{name}])."
        )
    return list(texts)


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")


def _as_handle(model: ModelHandle | str, device: str | torch.device | None) -> ModelHandle:
    if isinstance(model, ModelHandle):
        if device is not None:
            dev = resolve_device(device)
            if model.module is not None and dev != model.device:
                model.module.to(dev)
                model.device = dev
        return model
    if isinstance(model, str):
        from .zoo import load

        key = (model, str(device))
        if key not in _LOADED:  # a name loads once per process, then is reused
            _LOADED[key] = load(model, device=device if device is not None else "auto")
        return _LOADED[key]
    if isinstance(model, torch.nn.Module):
        raise InputError(
            "model is a bare nn.Module; wrap it with hyperlens.models.from_module(module, "
            "tokenizer) "
            "so embedding knows its tokenizer."
        )
    raise InputError(f"model must be a ModelHandle or a model name, got {type(model).__name__}.")


# --------------------------------------------------------------------------- public API
def embed(
    texts: Sequence[str],
    model: ModelHandle | str,
    pooling: str = "mean",
    layer: int = -1,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    cache: bool = False,
    progress: bool | None = None,
    max_length: int | None = None,
    executor: Executor | None = None,
    shard_size: int = 2048,
) -> np.ndarray:
    """Embed ``texts`` with ``model`` and pool each text into one vector.

    Args:
        texts: the sentences (non-empty list of strings).
        model: a :class:`ModelHandle` or a name for :func:`hyperlens.models.load`.
        pooling: ``"mean"`` over real tokens, ``"cls"`` (first token), ``"last"``
            (last real token, the usual choice for decoders) or ``"mean_after_first"``
            (mean without the first token, a decoder's attention sink). Ignored by static
            models.
        layer: hidden-state index as in Hugging Face's ``hidden_states``: 0 is the
            embedding output, ``L`` (or -1) the final output. The forward pass stops
            after the requested layer.
        batch_size: texts per forward pass (after sorting by length).
        device: move the model there first (default: where it is).
        cache: reuse / store the result under ``cache_dir("embeddings")``, keyed by the
            model's identity, the texts, pooling, layer and max_length.
        progress: show a progress bar (default: on for 256 texts or more when the
            terminal allows it).
        max_length: truncate texts to this many tokens (default: the model's limit).
        executor: a :class:`hyperlens.run.RayExecutor` splits the corpus into shards of
            about ``shard_size`` texts, embedded by Ray actors that load the model once
            each (:mod:`hyperlens.models.embed_shards`); the result is bit-identical to a
            local pass and lands in the same cache entry. ``None`` or a local executor:
            one pass in this process.
        shard_size: texts per shard (a whole number of batches) for a sharded pass.

    Returns:
        float32 array.

    Shapes:
        returns: [N, d]
    """
    texts = validate_texts(texts)
    _check_pooling(pooling)
    h = _as_handle(model, device)
    if h.kind == "static":
        return _cached(h, texts, ("static",), cache, lambda: _embed_static(h, texts))
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool):
        raise InputError(f"layer must be an int, got {type(layer).__name__} {layer!r}.")
    L = h.num_layers
    if not -(L + 1) <= layer <= L:
        raise InputError(
            f"layer must be in -{L + 1}..{L} for model {h.name!r} ({L} layers; 0 = embedding "
            f"output, {L} or -1 = final output), got {layer}."
        )
    lidx = int(layer) % (L + 1)
    key = ("layer", lidx, pooling, max_length, h.max_length)
    if executor is not None and _sharded(executor):
        from .embed_shards import embed_sharded

        return embed_sharded(h, texts, key, pooling, [lidx], batch_size, max_length, executor,
                             shard_size=shard_size, cache=cache, show=progress)[0]
    return _cached(
        h, texts, key, cache,
        lambda: _embed_transformer(h, texts, pooling, [lidx], batch_size, progress, max_length)[0],
    )


def embed_layers(
    texts: Sequence[str],
    model: ModelHandle | str,
    pooling: str = "mean",
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    cache: bool = False,
    progress: bool | None = None,
    max_length: int | None = None,
    executor: Executor | None = None,
    shard_size: int = 2048,
) -> np.ndarray:
    """Pooled embeddings at several layers from ONE forward pass per batch.

    ``layers`` are hidden-state indices (default: all, ``0..L``); the pass stops after
    the deepest one requested. Used for per-layer linear probes. ``executor`` and
    ``shard_size`` shard the corpus over Ray actors as in :func:`embed`.

    Shapes:
        returns: [len(layers), N, d] (``[L + 1, N, d]`` by default)
    """
    texts = validate_texts(texts)
    _check_pooling(pooling)
    h = _as_handle(model, device)
    if h.kind == "static":
        raise InputError(
            f"model {h.name!r} is static (word vectors) and has no layers; use embed() instead."
        )
    L = h.num_layers
    if layers is None:
        lids = list(range(L + 1))
    else:
        if isinstance(layers, (int, np.integer)):
            layers = [int(layers)]
        lids = []
        for li in layers:
            if (
                not isinstance(li, (int, np.integer))
                or isinstance(li, bool)
                or not -(L + 1) <= li <= L
            ):
                raise InputError(
                    f"layers must hold ints in -{L + 1}..{L} for model {h.name!r}, got {li!r} in "
                    f"{list(layers)!r}."
                )
            lids.append(int(li) % (L + 1))
        if not lids:
            raise InputError("layers is empty; pass None for every layer or a list of indices.")
    key = ("layers", tuple(lids), pooling, max_length, h.max_length)
    if executor is not None and _sharded(executor):
        from .embed_shards import embed_sharded

        out = embed_sharded(h, texts, key, pooling, lids, batch_size, max_length, executor,
                            shard_size=shard_size, cache=cache, show=progress)
    else:
        out = _cached(
            h, texts, key, cache,
            lambda: _embed_transformer(h, texts, pooling, lids, batch_size, progress, max_length),
        )
    if cache:
        # Each layer is also what embed(..., layer=l, cache=True) would return: store it under
        # that key too, so a later single-layer request on the same texts costs nothing.
        for pos, lidx in enumerate(lids):
            _store(h, texts, ("layer", lidx, pooling, max_length, h.max_length), out[pos])
    return out


def _sharded(executor: Executor | None) -> bool:
    """Whether ``executor`` asks for a sharded pass (a Ray executor; local runs in-process)."""
    return executor is not None and getattr(executor, "name", "local") != "local"


def _embed_static(h: ModelHandle, texts: list[str]) -> np.ndarray:
    """Average the vectors of each text's words (or subword tokens).

    Words without a vector are skipped and counted; texts with no known word get a zero
    vector. Emits a warning with the counts and records them for :func:`last_oov`.
    """
    global _LAST_OOV
    sv = h.static
    if sv is None:
        raise InputError(f"model {h.name!r} is marked static but has no vector table.")
    n = len(texts)
    if sv.ids_from_tokenizer:
        rows_per_text = sv.tokenize(texts)
        n_words = sum(len(r) for r in rows_per_text)
        n_oov = 0
    else:
        rows_per_text = []
        n_words = n_oov = 0
        index = sv.index
        for t in texts:
            words = sv.tokenize(t.lower() if sv.lowercase else t)
            rows = []
            for w in words:
                r = index.get(w)
                if r is None and not sv.lowercase:
                    r = index.get(w.lower())
                if r is None:
                    n_oov += 1
                else:
                    rows.append(r)
            n_words += len(words)
            rows_per_text.append(rows)
    counts = np.fromiter((len(r) for r in rows_per_text), dtype=np.int64, count=n)
    flat = np.fromiter(
        (r for rows in rows_per_text for r in rows), dtype=np.int64, count=int(counts.sum())
    )
    seg = np.repeat(np.arange(n), counts)
    vec = sv.vectors.float().cpu()
    sums = torch.zeros((n, vec.shape[1]), dtype=torch.float32)
    if flat.size:
        sums.index_add_(0, torch.from_numpy(seg), vec[torch.from_numpy(flat)])
    denom = torch.from_numpy(np.maximum(counts, 1)).to(torch.float32).unsqueeze(1)
    out = (sums / denom).numpy()
    empty = np.flatnonzero(counts == 0).tolist()
    _LAST_OOV = OOVReport(h.name, int(n_words), int(n_oov), empty)
    if n_oov or empty:
        warnings.warn(
            f"{h.name}: {n_oov} of {n_words} words ({_LAST_OOV.rate:.1%}) have no vector and were "
            f"skipped; {len(empty)} text(s) had no known word and embed to zeros "
            "(hyperlens.models.last_oov() has the details).",
            stacklevel=3,
        )
    return out
