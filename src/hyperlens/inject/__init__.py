"""Adapters for frozen models: small trainable modules hooked into a model's sites.

>>> from hyperlens.inject import make_adapter, attach, available_adapters
>>> ad = make_adapter("lowrank", d_model=576, layers=(8,), rank=8)   # doctest: +SKIP
>>> with attach(model, ad):                                          # doctest: +SKIP
...     logits = model.module(**batch).logits

Registered adapters: ``steer`` (a learned vector per layer) and ``lowrank``
(``h + B(A h)``); add your own with :func:`register_adapter`. Train one with
:func:`hyperlens.train.fit` (``frozen=model``); store it with :func:`save_adapter`.
"""

from __future__ import annotations

from .base import (
    FORMAT,
    Adapter,
    AdapterConfig,
    adapter_class,
    attach,
    available_adapters,
    load_adapter,
    make_adapter,
    model_identity,
    register_adapter,
    save_adapter,
)
from .resid import RESID_SITES, LowRankAdapter, LowRankConfig, SteerAdapter, SteerConfig

__all__ = [
    "FORMAT",
    "Adapter",
    "AdapterConfig",
    "adapter_class",
    "attach",
    "available_adapters",
    "load_adapter",
    "make_adapter",
    "model_identity",
    "register_adapter",
    "save_adapter",
    "RESID_SITES",
    "SteerAdapter",
    "SteerConfig",
    "LowRankAdapter",
    "LowRankConfig",
]
