"""Estimators and containers over :mod:`hyperlens.functional.hdc`.

- :class:`TernaryEncoder`: embeddings -> ternary hypervectors (scikit-learn style).
- :class:`PackedCodes`: two-bit or base-3 packed codes with save/load.
- :func:`similarity`, :func:`search`: exact dot / cosine / Hamming and streaming top-k
  search over packed codes.
"""

from __future__ import annotations

from .encoder import TernaryEncoder
from .packed import PackedCodes
from .search import SearchResult, search, similarity

__all__ = ["TernaryEncoder", "PackedCodes", "SearchResult", "search", "similarity"]
