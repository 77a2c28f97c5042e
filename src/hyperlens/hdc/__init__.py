"""Estimators and containers over :mod:`hyperlens.functional`.

- :class:`TernaryEncoder`: embeddings -> ternary hypervectors (scikit-learn style).
- :class:`PackedCodes`: two-bit or base-3 packed codes with save/load.
- :func:`similarity`, :func:`search`: exact dot / cosine / Hamming and streaming top-k
  search over packed codes (module :mod:`.retrieval`).
- :class:`StreamingPCA`: exact PCA / whitening fitted batch by batch.
"""

from __future__ import annotations

from .encoder import TernaryEncoder
from .packed import PackedCodes
from .pca import StreamingPCA
from .retrieval import SearchResult, search, similarity

__all__ = ["TernaryEncoder", "PackedCodes", "SearchResult", "search", "similarity", "StreamingPCA"]
