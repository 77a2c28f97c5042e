"""Adapters that act on a frozen model through intervention sites.

- :mod:`hyperlens.inject.modulator`: the ``lerp`` and ``field`` residual modulators.
- :mod:`hyperlens.inject.geometry`: WordNet token geometry and its controls.
"""

from __future__ import annotations

from ._pending import attach, available_adapters, load_adapter, make_adapter, save_adapter
from .geometry import TokenGeometry, make_control, procrustes_projection, wordnet_geometry
from .modulator import FieldConfig, FieldModulator, LerpConfig, LerpModulator

__all__ = [
    "FieldConfig",
    "FieldModulator",
    "LerpConfig",
    "LerpModulator",
    "TokenGeometry",
    "attach",
    "available_adapters",
    "load_adapter",
    "make_adapter",
    "make_control",
    "procrustes_projection",
    "save_adapter",
    "wordnet_geometry",
]
