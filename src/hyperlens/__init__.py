"""hyperlens: frozen neural networks as measurable geometry and portable hyperdimensional codes.

Subpackages (imported on first use, so ``import hyperlens`` stays fast):

- :mod:`hyperlens.models`: offline model zoo, embedding, activation capture, weight roles
- :mod:`hyperlens.data`: labelled text datasets, splits, WordNet
- :mod:`hyperlens.functional`: pure tensor functions (HDC, sketching, geometry)
- :mod:`hyperlens.hdc`: ternary encoders, packed codes and search
- :mod:`hyperlens.align`: aligners between models' spaces and transfer evaluation
- :mod:`hyperlens.train`: the one training loop (seeded, frozen-model guard, resumable)
- :mod:`hyperlens.probes`: geometry, weight, relational and multi-head batteries
- :mod:`hyperlens.inject`: adapters written into a frozen model (semantic header,
  residual and field modulators, low-rank), with PEFT's contract
- :mod:`hyperlens.hft`: the HyperField student (teacher capture, features, n-gram
  baselines, training, generation)
- :mod:`hyperlens.config`: the command contract (configs, run context, generated options)
- :mod:`hyperlens.experiments`: one module per command: a config and ``run(config, ctx)``
- :mod:`hyperlens.run`: executors (local or Ray), the cell ledger, shard workers
- :mod:`hyperlens.report`: report folders (results.json, plots, index.html)
- :mod:`hyperlens.utils`, :mod:`hyperlens.errors`: shared helpers and the error hierarchy
- :mod:`hyperlens.quiet`: third-party progress bars and warnings off unless ``--verbose``
- :mod:`hyperlens.cli`: the ``hyperlens`` command line
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from . import errors
from .errors import *  # noqa: F403  (the error classes are the package's own API)

__version__ = "0.1.0"

_KNOWN_SUBMODULES = ("models", "data", "functional", "hdc", "align", "train", "probes",
                     "inject", "hft", "config", "experiments", "run", "report", "utils",
                     "errors", "quiet", "cli")
# Only the pieces this installation has (a checkout may lack an optional one), so that
# ``from hyperlens import *`` never names a module that is not there.
_HERE = Path(__file__).resolve().parent
_SUBMODULES = {n for n in _KNOWN_SUBMODULES
               if (_HERE / n / "__init__.py").is_file() or (_HERE / f"{n}.py").is_file()}


__all__ = ["__version__", *errors.__all__, *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hyperlens' has no attribute {name!r}")
