"""Adapters for frozen models: small trainable modules hooked into a model's sites.

>>> from hyperlens.inject import make_adapter, attach, available_adapters
>>> ad = make_adapter("lowrank", d_model=576, layers=(8,), rank=8)   # doctest: +SKIP
>>> with attach(model, ad):                                          # doctest: +SKIP
...     logits = model.module(**batch).logits

Registered adapters: ``steer`` (a learned vector per layer), ``lowrank``
(``h + B(A h)``), ``header`` (codes of a text as pseudo-tokens, :mod:`.header`), ``lerp``
and ``field`` (residual modulators steered by a token geometry,
:mod:`hyperlens.inject.modulator`); add your own with :func:`register_adapter`. Train one with
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
from .geometry import TokenGeometry, make_control, procrustes_projection, wordnet_geometry
from .header import HeaderConfig, SemanticHeader
from .modulator import FieldConfig, FieldModulator, LerpConfig, LerpModulator
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
    "LerpConfig",
    "LerpModulator",
    "FieldConfig",
    "FieldModulator",
    "TokenGeometry",
    "wordnet_geometry",
    "make_control",
    "procrustes_projection",
    "HeaderConfig",
    "SemanticHeader",
]
