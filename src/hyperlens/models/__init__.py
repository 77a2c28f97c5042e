"""Models: the offline zoo, sentence embeddings and activation capture.

- :func:`load` / :func:`list_models`: named models (``minilm``, ``smollm2``, ``glove-50d``,
  ``wordllama``, ``spacy-md``), Hugging Face ids and local folders, as one
  :class:`ModelHandle`; :func:`from_module` wraps a model you built yourself.
- :func:`embed` / :func:`embed_layers`: pooled float32 sentence vectors, length-sorted
  batches, early exit at the requested layer, optional on-disk cache.
- :func:`capture` / :func:`intervene`: named hook sites (:mod:`.hooks`), read or written.
"""

from __future__ import annotations

from .embedding import OOVReport, embed, embed_layers, last_oov
from .handle import ModelHandle, StaticVectors, from_module
from .hooks import (
    Activations,
    Site,
    SiteContext,
    StopForward,
    capture,
    intervene,
    point_names,
    sites,
)
from .zoo import (
    check_available,
    convert_gemma3,
    convert_smollm2,
    gemma3_folder,
    known_models,
    list_models,
    load,
    smollm2_folder,
)

__all__ = [
    "load",
    "list_models",
    "known_models",
    "check_available",
    "from_module",
    "ModelHandle",
    "StaticVectors",
    "embed",
    "embed_layers",
    "last_oov",
    "OOVReport",
    "capture",
    "Activations",
    "StopForward",
    "point_names",
    "intervene",
    "sites",
    "Site",
    "SiteContext",
    "convert_smollm2",
    "smollm2_folder",
    "convert_gemma3",
    "gemma3_folder",
]
