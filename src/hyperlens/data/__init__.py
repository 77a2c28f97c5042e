"""Labelled text data and WordNet.

* :func:`load` -- ``"sst2"``, ``"agnews"``, ``"rotten-tomatoes"`` (the offline default),
  local csv / tsv / jsonl / json / parquet files, saved or hub Hugging Face datasets.
* :class:`TextDataset` -- texts, int64 labels, label names, provenance; ``split``,
  ``subsample``, ``select``, class counts and the majority-class rate.
* :func:`wordnet_reader` -- the NLTK WordNet reader; :func:`install_wordnet` installs the
  Debian WordNet files where NLTK finds them; :func:`pair_similarity` /
  :func:`similarity_matrix` give NLTK's path, Wu-Palmer and Leacock-Chodorow values in bulk.
"""

from __future__ import annotations

from .files import LABEL_COLUMNS, TEXT_COLUMNS
from .sources import (
    DATA_DIR_ENV,
    NAMED_DATASETS,
    add_data_arguments,
    list_datasets,
    load,
    load_from_args,
    resolve_data_dir,
    rotten_tomatoes_path,
)
from .text import Provenance, Splits, TextDataset, encode_labels
from .wordnet import (
    install_wordnet,
    pair_similarity,
    similarity_matrix,
    wordnet_graph,
    wordnet_reader,
)

__all__ = [
    "load",
    "wordnet_reader",
    "install_wordnet",
    "pair_similarity",
    "similarity_matrix",
    "wordnet_graph",
    "TextDataset",
    "Splits",
    "Provenance",
    "encode_labels",
    "list_datasets",
    "resolve_data_dir",
    "rotten_tomatoes_path",
    "add_data_arguments",
    "load_from_args",
    "NAMED_DATASETS",
    "DATA_DIR_ENV",
    "TEXT_COLUMNS",
    "LABEL_COLUMNS",
]
