"""hyperlens: frozen neural networks as measurable geometry and portable hyperdimensional codes.

Subpackages (imported on first use, so ``import hyperlens`` stays fast):

- :mod:`hyperlens.models`: offline model zoo, embedding, activation capture, weight roles
- :mod:`hyperlens.data`: labelled text datasets, splits, WordNet
- :mod:`hyperlens.functional`: pure tensor functions (HDC, sketching, geometry)
- :mod:`hyperlens.hdc`: ternary encoders, packed codes and search
- :mod:`hyperlens.align`: aligners between models' spaces and transfer evaluation
- :mod:`hyperlens.train`: the one training loop (seeded, frozen-model guard, resumable)
- :mod:`hyperlens.probes`: geometry and weight batteries
- :mod:`hyperlens.experiments`: end-to-end pipelines run by the CLI
- :mod:`hyperlens.report`: report folders (results.json, plots, index.html)
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    ConfigError,
    DataError,
    DependencyError,
    DeviceError,
    HyperlensError,
    InputError,
    ModelNotFoundError,
    ReportError,
    ShapeError,
)

__version__ = "0.1.0"

_SUBMODULES = {"models", "data", "functional", "hdc", "align", "train", "probes", "inject", "hft",
               "experiments", "report", "utils", "errors", "cli"}

__all__ = [
    "__version__",
    "HyperlensError",
    "InputError",
    "ShapeError",
    "ModelNotFoundError",
    "DataError",
    "DeviceError",
    "DependencyError",
    "ConfigError",
    "ReportError",
    *sorted(_SUBMODULES),
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hyperlens' has no attribute {name!r}")
