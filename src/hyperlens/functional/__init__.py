"""Pure tensor functions: hyperdimensional codes (:mod:`.hdc`), sketches, geometry.

Submodules are imported on first use, so ``import hyperlens.functional`` stays cheap and a
missing optional piece never breaks the others.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["hdc", "packing", "hadamard", "sketch", "geometry"]


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
