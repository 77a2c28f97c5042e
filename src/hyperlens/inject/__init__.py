"""Adapters that change what a frozen model computes.

- :mod:`hyperlens.inject.header`: the semantic header, codes of a text as pseudo-tokens
  spliced into a causal LM's input embeddings (prefix or before the answer cue).
"""

from __future__ import annotations

from .header import (
    HeaderConfig,
    SemanticHeader,
    attach,
    load_header,
    save_header,
    splice,
)

__all__ = ["HeaderConfig", "SemanticHeader", "attach", "load_header", "save_header", "splice"]
