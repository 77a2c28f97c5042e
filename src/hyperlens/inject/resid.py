"""Adapters on the residual stream: a learned steering vector and a low-rank update.

Both act on ``[batch, pos, d_model]`` sites of chosen blocks (``resid_pre``, ``resid_post``,
``attn.out`` or ``mlp.out``) and start as the identity, so attaching an untrained one leaves
the model's outputs unchanged.

- ``steer`` (:class:`SteerAdapter`): ``h + v_l`` with one learned vector per chosen layer,
  initialised to zero (activation addition / steering vectors, learned instead of taken
  from a contrast of means).
- ``lowrank`` (:class:`LowRankAdapter`): ``h + alpha * B_l (A_l h)`` with ``A_l [rank, d]``
  drawn from a seeded Gaussian and ``B_l [d, rank]`` zero (LoRA's initialisation applied to
  activations rather than weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..models.arch import resolve_backbone
from ..models.handle import ModelHandle
from ..models.hooks import InterventionFn, SiteContext
from .base import Adapter, AdapterConfig, _as_act, check_layers, check_positive, register_adapter

__all__ = ["SteerConfig", "SteerAdapter", "LowRankConfig", "LowRankAdapter", "RESID_SITES"]

#: Block sites with a ``[batch, pos, d_model]`` view that these adapters may rewrite.
RESID_SITES = ("resid_pre", "resid_post", "attn.out", "mlp.out")


def _check_site(site: str) -> None:
    if site not in RESID_SITES:
        raise ConfigError(f"site={site!r} is invalid: expected one of {RESID_SITES}.")


def _small(model: ModelHandle | nn.Module) -> tuple[int, tuple[int, ...]]:
    module = model.module if isinstance(model, ModelHandle) else model
    assert isinstance(module, nn.Module)
    bb = resolve_backbone(module)
    layers = tuple(sorted({0, bb.num_layers - 1}))
    return bb.d_model, layers


@dataclass
class SteerConfig(AdapterConfig):
    """``d_model``: width of the residual stream; ``layers``: block indices; ``site``: one of
    :data:`RESID_SITES`; ``positions``: ``"all"`` or ``"last"`` (only the last position of
    each forward, i.e. the newest token under ``generate()``)."""

    d_model: int = 0
    layers: tuple[int, ...] = (0,)
    site: str = "resid_post"
    positions: str = "all"

    def validate(self) -> None:
        check_positive(self.d_model, "d_model")
        self.layers = check_layers(self.layers)
        _check_site(self.site)
        if self.positions not in ("all", "last"):
            raise ConfigError(f"positions={self.positions!r} is invalid: expected 'all' or 'last'.")


@register_adapter("steer")
class SteerAdapter(Adapter):
    """One learned vector per chosen layer added to the residual stream (zero at init).

    Shapes:
        vectors: [len(layers), d_model]; each site ``[batch, pos, d_model]``.
    """

    config_class = SteerConfig
    config: SteerConfig

    def __init__(self, config: SteerConfig) -> None:
        super().__init__(config)
        self.vectors = nn.Parameter(torch.zeros(len(config.layers), config.d_model))

    def interventions(self, model: ModelHandle | nn.Module) -> dict[str, InterventionFn]:
        cfg = self.config
        fns: dict[str, InterventionFn] = {}
        for j, layer in enumerate(cfg.layers):

            def add(act: torch.Tensor, ctx: SiteContext, j: int = j) -> torch.Tensor:
                v = _as_act(self.vectors[j], act)  # [d_model]
                if cfg.positions == "all":
                    return act + v
                mask = torch.zeros(act.shape[1], 1, dtype=act.dtype, device=act.device)
                mask[-1] = 1
                return act + mask * v

            fns[f"blocks.{layer}.{cfg.site}"] = add
        return fns

    @classmethod
    def example_config(cls, model: ModelHandle | nn.Module) -> SteerConfig:
        d, layers = _small(model)
        return SteerConfig(d_model=d, layers=layers)


@dataclass
class LowRankConfig(AdapterConfig):
    """``d_model``, ``layers``, ``site`` as for ``steer``; ``rank`` of the update; ``alpha``
    its scale; ``seed`` draws ``A``."""

    d_model: int = 0
    layers: tuple[int, ...] = (0,)
    site: str = "resid_post"
    rank: int = 4
    alpha: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        check_positive(self.d_model, "d_model")
        self.layers = check_layers(self.layers)
        _check_site(self.site)
        check_positive(self.rank, "rank")
        if self.rank > self.d_model:
            raise ConfigError(f"rank={self.rank} exceeds d_model={self.d_model}.")
        if not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ConfigError(f"alpha={self.alpha!r} is invalid: expected a positive number.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed={self.seed!r} is invalid: expected an int.")


@register_adapter("lowrank")
class LowRankAdapter(Adapter):
    """``h + alpha * B (A h)`` at each chosen layer; ``B`` starts at zero.

    Shapes:
        A: [len(layers), rank, d_model] (``N(0, 1/d_model)``); B: [len(layers), d_model, rank].
    """

    config_class = LowRankConfig
    config: LowRankConfig

    def __init__(self, config: LowRankConfig) -> None:
        super().__init__(config)
        n, r, d = len(config.layers), config.rank, config.d_model
        gen = torch.Generator().manual_seed(config.seed)
        self.A = nn.Parameter(torch.randn(n, r, d, generator=gen) / d**0.5)
        self.B = nn.Parameter(torch.zeros(n, d, r))

    def interventions(self, model: ModelHandle | nn.Module) -> dict[str, InterventionFn]:
        cfg = self.config
        fns: dict[str, InterventionFn] = {}
        for j, layer in enumerate(cfg.layers):

            def update(act: torch.Tensor, ctx: SiteContext, j: int = j) -> torch.Tensor:
                a, b = _as_act(self.A[j], act), _as_act(self.B[j], act)
                return act + cfg.alpha * ((act @ a.T) @ b.T)  # [batch, pos, d_model]

            fns[f"blocks.{layer}.{cfg.site}"] = update
        return fns

    @classmethod
    def example_config(cls, model: ModelHandle | nn.Module) -> LowRankConfig:
        d, layers = _small(model)
        return LowRankConfig(d_model=d, layers=layers, rank=min(4, d))
