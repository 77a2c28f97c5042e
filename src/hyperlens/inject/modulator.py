"""Residual-stream modulators that steer a frozen transformer with a token geometry.

Two adapters, registered as ``lerp`` and ``field``, act on the sites
``blocks.{i}.resid_pre`` of any Hugging Face transformer (BERT, Llama, GPT-2, ...), so they
work with ``generate()`` and the KV cache (each call sees only its new tokens' ids). Both
are the identity at alpha = 0 (outputs bit-equal to the plain model) and both leave
tokens without a geometry vector (``mask`` False) untouched.

``lerp`` (:class:`LerpModulator`) for each chosen layer ``l`` with ``a_l = sigmoid(theta_l)``::

    h <- h + a_l m[t] (r P g[t] - P P^T h)        # the subspace component moves to the target

``g[t]`` the token's geometry vector (``[k]``, unit length), ``P`` a learned
``[d_model, k]`` projection (initialised by Procrustes) and ``r`` the target's length:
by default (``target_norm="subspace"``) the norm of the token's own residual component in
the subspace, ``||P P^T h||``, so the update turns that component towards the geometry
and keeps its size; the seed's form (``"residual"``) uses ``r_l``, the measured mean norm
of the whole residual entering layer ``l`` (:meth:`LerpModulator.calibrate`), a target
about ``sqrt(d_model / k)`` times longer than the component it replaces. ``theta`` is
the logit of alpha; with an Adam learning rate of 0.3 (the
experiment's default) it can cross (0, 1) in about 20 steps. The update is computed in
float32 and added to the residual in the model's own dtype (a bfloat16 model keeps float32
adapters).

``field`` (:class:`FieldModulator`): multiplicative gates from Cayley-Menger "k-simplex"
experts (k = 1, 2, 4). In an active subspace of the residual (``U_l``, ``[d_model,
n_active]``) each expert deforms a regular k-simplex by a linear map of the normalised
active coordinates and the token's geometry vector, measures it (squared edge lengths
and squared volume from :func:`hyperlens.functional.geometry.cayley_menger_volume`), and
emits a gate ``g_k`` in (0, 1) per active coordinate and a validity ``v_k`` in (0, 1)::

    z = h U_l;   gate = prod_k (1 + a_lk v_k m[t] (g_k - 1));   h <- h + U_l (z * gate - z)

with ``a_lk = alpha_max * sigmoid(theta_lk)`` (a smooth clamp). The validity output
scales each expert's strength per token (an expert whose simplex is degenerate does not
gate). The complement of ``U_l`` (the null space) passes through unchanged: either the
tail dimensions (``null_space="tail"``, as in the original notebook) or the directions
the block's query projection reads least (``null_space="query"``: the bottom right
singular vectors of ``W_q`` of block ``l``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, InputError, ShapeError
from ..functional.geometry import cayley_menger_volume
from ..models.arch import resolve_backbone
from ..models.handle import ModelHandle
from .base import Adapter, AdapterConfig, register_adapter

__all__ = [
    "FieldConfig",
    "FieldModulator",
    "KSimplexExpert",
    "LerpConfig",
    "LerpModulator",
    "regular_simplex",
]

SiteFn = Callable[[torch.Tensor, Any], torch.Tensor]


def _logit(a: float) -> float:
    if a <= 0.0:
        return -math.inf
    if a >= 1.0:
        return math.inf
    return math.log(a / (1.0 - a))


def _compute_dtype(act: torch.Tensor) -> torch.dtype:
    """float32 for a bfloat16 / float16 residual (the adapters keep float32 parameters),
    else the residual's own dtype."""
    return torch.promote_types(act.dtype, torch.float32)


def _module(model: Any) -> nn.Module:
    mod = model.module if isinstance(model, ModelHandle) else model
    if not isinstance(mod, nn.Module):
        raise InputError(
            f"model must be a ModelHandle or an nn.Module, got {type(model).__name__}."
        )
    return mod


def _per_layer(alpha: float | Sequence[float], n: int) -> list[float]:
    """``alpha`` as one float per chosen layer (a single value stands for every layer)."""
    if isinstance(alpha, (list, tuple)):
        return [float(a) for a in alpha]
    return [float(alpha)] * n  # type: ignore[arg-type]


@dataclass
class _GeometryConfig(AdapterConfig):
    """The fields both geometry adapters share: ``d_model``, ``vocab_size``, ``n_layers`` of
    the model; ``layers`` to modulate; ``dim`` of the geometry; ``alpha`` the starting value
    (one or one per layer); ``init_geometry`` ("none" or "random"), its ``geometry_seed``,
    and ``zero_init`` for the learned map."""

    d_model: int = 0
    vocab_size: int = 0
    n_layers: int = 0
    layers: list[int] = field(default_factory=list)
    dim: int = 64
    alpha: float | list[float] = 0.01
    init_geometry: str = "none"
    geometry_seed: int = 0
    zero_init: bool = False

    def validate(self) -> None:
        for name in ("d_model", "vocab_size", "n_layers", "dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive int, got {v!r}.")
        layers = list(self.layers)
        if not layers:
            raise ConfigError("layers must name at least one block index, e.g. layers=[0, 1, 2].")
        bad = [b for b in layers if not isinstance(b, int) or not 0 <= b < self.n_layers]
        if bad:
            raise ConfigError(
                f"layers {bad} are out of range for a model with n_layers={self.n_layers}; "
                f"use indices in 0..{self.n_layers - 1}."
            )
        if len(set(layers)) != len(layers):
            raise ConfigError(f"layers must not repeat, got {layers}.")
        alphas = self.alpha if isinstance(self.alpha, (list, tuple)) else [self.alpha]
        if isinstance(self.alpha, (list, tuple)) and len(alphas) != len(layers):
            raise ConfigError(
                f"alpha has {len(alphas)} values but there are {len(layers)} layers; give one per "
                "layer."
            )
        if self.init_geometry not in {"none", "random"}:
            raise ConfigError(
                f"init_geometry must be 'none' or 'random', got {self.init_geometry!r}."
            )
        for a in alphas:
            if not isinstance(a, (int, float)) or not 0.0 <= float(a) <= 1.0:
                raise ConfigError(
                    f"alpha must be in [0, 1], got {a!r}; it is a mixing weight (0 = no change)."
                )


class _GeometryAdapter(Adapter):
    """Shared parts: the geometry buffers, the model check and the per-layer site functions."""

    config: Any
    geometry: torch.Tensor
    token_mask: torch.Tensor
    #: further fields of :meth:`example_config` (a subclass's own)
    example_fields: dict[str, Any] = {}

    def __init__(self, config: _GeometryConfig) -> None:
        super().__init__(config)
        self._init_geometry(config)

    def _init_geometry(self, cfg: _GeometryConfig) -> None:
        vec, mask = torch.zeros(cfg.vocab_size, cfg.dim), torch.zeros(cfg.vocab_size)
        if cfg.init_geometry == "random":  # unit Gaussian rows on every token (a control)
            gen = torch.Generator().manual_seed(cfg.geometry_seed)
            vec = torch.randn(cfg.vocab_size, cfg.dim, generator=gen)
            vec, mask = vec / vec.norm(dim=1, keepdim=True), torch.ones(cfg.vocab_size)
        self.register_buffer("geometry", vec)
        self.register_buffer("token_mask", mask)

    def set_geometry(self, vectors: torch.Tensor, mask: torch.Tensor) -> None:
        """Install a :class:`~hyperlens.inject.geometry.TokenGeometry`'s ``vectors`` / ``mask``."""
        if tuple(vectors.shape) != tuple(self.geometry.shape):
            raise ShapeError(
                f"geometry has shape {tuple(vectors.shape)} but the adapter expects "
                f"{tuple(self.geometry.shape)} = [vocab_size, dim]; build it for this model's "
                "tokenizer."
            )
        with torch.no_grad():
            self.geometry.copy_(vectors.to(self.geometry))
            self.token_mask.copy_(mask.to(self.token_mask))

    def check_model(self, model: Any) -> tuple[int, int]:
        """``(d_model, n_layers)``; raises :class:`InputError` unless the adapter fits ``model``
        (vocabulary of the geometry, width, depth)."""
        d, n_layers = super().check_model(model)
        mod = _module(model)
        vocab = int(mod.get_input_embeddings().weight.shape[0])  # type: ignore[operator]
        cfg = self.config
        if vocab != cfg.vocab_size:
            raise InputError(
                f"the geometry covers a vocabulary of {cfg.vocab_size} tokens but the model's "
                f"embedding has {vocab} rows; build the geometry with this model's tokenizer."
            )
        if n_layers != cfg.n_layers:
            raise InputError(
                f"adapter n_layers={cfg.n_layers} but the model has {n_layers} blocks."
            )
        return d, n_layers

    @classmethod
    def example_config(cls, model: Any) -> Any:
        """A small config for ``model``: two blocks, random geometry on every token, and a
        zero-initialised learned map (identity at initialisation, trainable)."""
        mod = _module(model)
        bb = resolve_backbone(mod)
        vocab = int(mod.get_input_embeddings().weight.shape[0])  # type: ignore[operator]
        layers = sorted({0, bb.num_layers - 1})
        return cls.config_class(  # type: ignore[call-arg]
            d_model=bb.d_model,
            vocab_size=vocab,
            n_layers=bb.num_layers,
            layers=layers,
            dim=8,
            alpha=0.3,
            init_geometry="random",
            zero_init=True,
            **cls.example_fields,
        )

    def _lookup(
        self, ids: torch.Tensor | None, act: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        if ids is None or tuple(ids.shape) != tuple(act.shape[:2]):
            return None  # inputs_embeds or prefix tokens: no ids to read a geometry from
        ct = _compute_dtype(act)
        return self.geometry[ids].to(ct), self.token_mask[ids].to(ct)

    def interventions(self, model: Any) -> dict[str, SiteFn]:
        self.check_model(model)
        out: dict[str, SiteFn] = {}
        for j, layer in enumerate(self.config.layers):

            def fn(act: torch.Tensor, ctx: Any, j: int = j) -> torch.Tensor:
                return self.modulate(act, getattr(ctx, "input_ids", None), j)

            out[f"blocks.{layer}.resid_pre"] = fn
        return out

    def modulate(self, act: torch.Tensor, ids: torch.Tensor | None, j: int) -> torch.Tensor:
        raise NotImplementedError

    def alphas(self) -> torch.Tensor:
        raise NotImplementedError

    def set_alpha(self, alpha: float | Sequence[float]) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- LERP
@dataclass
class LerpConfig(_GeometryConfig):
    """``lerp`` adapter: ``d_model``, ``vocab_size``, ``n_layers`` of the model; ``layers`` to
    modulate; ``dim`` of the geometry; ``alpha`` the starting value (one or one per layer);
    ``target_norm`` the length of the target: ``"subspace"`` (the token's own residual
    component in the projected subspace, so lerp turns that component towards the geometry
    without inflating it) or ``"residual"`` (the seed's: the mean norm of the whole residual,
    about ``sqrt(d_model / dim)`` times the component it replaces)."""

    target_norm: str = "subspace"

    def validate(self) -> None:
        super().validate()
        if self.target_norm not in {"subspace", "residual"}:
            raise ConfigError(f"target_norm must be 'subspace' or 'residual' (the seed's), got "
                              f"{self.target_norm!r}.")
        if self.zero_init and self.target_norm == "subspace":
            raise ConfigError(
                "zero_init with target_norm='subspace' leaves lerp where it cannot train (a zero "
                "projection gives the subspace target no length and no gradient); use "
                "target_norm='residual' or zero_init=False.")


#: how many times the median coordinate's root mean square makes a coordinate "massive"
MASSIVE_FACTOR = 10.0


@register_adapter("lerp")
class LerpModulator(_GeometryAdapter):
    """LERP of the residual towards the projected token geometry (module docstring)."""

    config_class = LerpConfig
    #: the zero-initialised projection of the example config trains only with this target
    example_fields = {"target_norm": "residual"}
    resid_norm: torch.Tensor
    dims: torch.Tensor

    def __init__(self, config: LerpConfig) -> None:
        super().__init__(config)
        if config.zero_init:
            proj = torch.zeros(config.d_model, config.dim)
        else:  # orthonormal columns (Procrustes replaces them in the experiment)
            gen = torch.Generator().manual_seed(config.geometry_seed)
            proj, _ = torch.linalg.qr(torch.randn(config.d_model, config.dim, generator=gen))
        self.proj = nn.Parameter(proj)
        n = len(config.layers)
        self.theta = nn.Parameter(torch.tensor([_logit(a) for a in _per_layer(config.alpha, n)]))
        self.register_buffer("resid_norm", torch.ones(n))
        # the residual coordinates the subspace may use (1) or must leave alone (0): the
        # experiment zeroes a model's massive-activation dimensions (:meth:`restrict`)
        self.register_buffer("dims", torch.ones(config.d_model))

    def restrict(self, keep: torch.Tensor) -> None:
        """Let the projection use only the residual coordinates where ``keep`` (``[d_model]``
        bool) is true, during training too: the others (a decoder's massive-activation
        dimensions, which attention reads as a sink) pass through unchanged."""
        if keep.shape != self.dims.shape:
            raise ShapeError(f"restrict: keep has shape {tuple(keep.shape)}, expected "
                             f"{tuple(self.dims.shape)}.")
        if not bool(keep.any()):
            raise InputError("restrict: keep leaves no residual coordinate to modulate.")
        with torch.no_grad():
            self.dims.copy_(keep.to(self.dims))

    def alphas(self) -> torch.Tensor:
        """``[n_chosen_layers]`` current alpha per chosen layer."""
        return torch.sigmoid(self.theta)

    def set_alpha(self, alpha: float | Sequence[float]) -> None:
        vals = _per_layer(alpha, self.theta.numel())
        if len(vals) != self.theta.numel() or any(not 0.0 <= float(v) <= 1.0 for v in vals):
            raise InputError(
                f"alpha must be in [0, 1] (one value or one per layer), got {alpha!r}."
            )
        with torch.no_grad():
            self.theta.copy_(torch.tensor([_logit(float(v)) for v in vals]))

    def modulate(self, act: torch.Tensor, ids: torch.Tensor | None, j: int) -> torch.Tensor:
        looked = self._lookup(ids, act)
        if looked is None:
            return act
        g, m = looked  # [B, P, k], [B, P]
        # the update is computed in float32 (a bfloat16 model keeps float32 adapters)
        ct = g.dtype
        P = self.proj.to(ct) * self.dims.to(ct)[:, None]  # [d, k], only the allowed coordinates
        inside = act.to(ct) @ P  # [B, P, k] the residual's coordinates in the subspace
        if self.config.target_norm == "subspace":
            scale = (inside @ P.T).norm(dim=-1, keepdim=True)  # [B, P, 1]
        else:
            scale = self.resid_norm[j].to(ct)
        target = scale * (g @ P.T)  # [B, P, d]
        w = (torch.sigmoid(self.theta[j]).to(ct) * m)[..., None]
        return act + (w * (target - inside @ P.T)).to(act.dtype)

    @torch.no_grad()
    def _resid_stats(self, model: Any, batches: Sequence[dict[str, torch.Tensor]],
                     skip_first: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Over the real tokens of ``batches`` (and past the first with ``skip_first``): the
        mean residual norm entering each chosen layer ``[n_chosen]`` and the mean square of
        each residual coordinate there ``[n_chosen, d_model]``."""
        from ..models.hooks import capture

        self.check_model(model)
        mod = _module(model)
        points = [f"blocks.{b}.resid_pre" for b in self.config.layers]
        sums = torch.zeros(len(points), dtype=torch.float64)
        squares = torch.zeros(len(points), self.config.d_model, dtype=torch.float64)
        count = 0.0
        # the backbone alone (no language-model head), stopped after the deepest chosen block
        with capture(mod, points, stop_early=True) as acts:
            for b in batches:
                acts.run(**b)
                keep = b.get("attention_mask", torch.ones_like(b["input_ids"])).bool().clone()
                if skip_first:
                    keep[:, 0] = False
                for j, p in enumerate(points):
                    a = acts[p]  # on the model's device; the sums stay on the CPU
                    k = keep.to(a.device)
                    sums[j] += a.norm(dim=-1)[k].double().sum().cpu()
                    squares[j] += a[k].double().pow(2).sum(0).cpu()
                count += float(keep.sum())
        if count == 0:
            raise InputError("calibrate needs at least one non-padding token.")
        return sums / count, squares / count

    @torch.no_grad()
    def calibrate(self, model: Any, batches: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Measure the mean residual norm entering each chosen layer over ``batches``
        (tokenizer outputs; padding excluded) and store it in ``resid_norm``."""
        norms, _ = self._resid_stats(model, batches)
        self.resid_norm.copy_(norms.to(self.resid_norm))
        return self.resid_norm.clone()

    @torch.no_grad()
    def massive_dims(self, model: Any, batches: Sequence[dict[str, torch.Tensor]], *,
                     factor: float = MASSIVE_FACTOR, skip_first: bool = False) -> torch.Tensor:
        """``[d_model]`` bool: the residual coordinates whose root mean square, at any chosen
        layer, is more than ``factor`` times the median coordinate's there (the "massive
        activations" of many LMs: a few coordinates hundreds of times larger than the rest,
        which attention uses as a sink). With ``skip_first`` the first token, where a
        decoder's largest values sit, is left out of the measurement."""
        if not factor > 1:
            raise InputError(f"factor must be above 1, got {factor!r}.")
        _, sq = self._resid_stats(model, batches, skip_first=skip_first)
        rms = sq.sqrt()
        return (rms > factor * rms.median(dim=1, keepdim=True).values).any(0)


# --------------------------------------------------------------------------- field
def regular_simplex(k: int, edim: int) -> torch.Tensor:
    """Vertices ``[k+1, edim]`` of a regular k-simplex with unit edges, centred at 0."""
    if edim < k:
        raise InputError(f"expert_edim={edim} must be >= k={k} to hold a k-simplex.")
    e = torch.eye(k + 1, dtype=torch.float64) - 1.0 / (k + 1)  # centred standard simplex in R^{k+1}
    q, _ = torch.linalg.qr(e.T)  # orthonormal basis of the centred subspace (first k columns)
    v = e @ q[:, :k]  # [k+1, k]
    v = v / (v[0] - v[1]).norm()
    out = torch.zeros(k + 1, edim, dtype=torch.float64)
    out[:, :k] = v
    return out.float()


class KSimplexExpert(nn.Module):
    """One Cayley-Menger expert: ``[..., in_dim]`` -> gate ``[..., n_out]``, validity ``[...]``.

    Features: the ``C(k+1, 2)`` squared edge lengths and the squared volume of the deformed
    simplex ``template + deform_scale * A x``, layer-normalised.
    """

    template: torch.Tensor
    pi: torch.Tensor
    pj: torch.Tensor

    def __init__(
        self,
        k: int,
        in_dim: int,
        n_out: int,
        edim: int = 8,
        deform_scale: float = 0.05,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        self.k = k
        self.deform_scale = deform_scale
        self.register_buffer("template", regular_simplex(k, edim))
        pairs = list(combinations(range(k + 1), 2))
        self.register_buffer("pi", torch.tensor([p[0] for p in pairs]))
        self.register_buffer("pj", torch.tensor([p[1] for p in pairs]))
        n_feat = len(pairs) + 1
        self.to_deform = nn.Linear(in_dim, (k + 1) * edim)
        self.norm = nn.LayerNorm(n_feat)
        self.gate = nn.Linear(n_feat, n_out)
        if zero_init:  # gates exactly 1 (identity) until trained
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        self.validity = nn.Linear(n_feat, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``gate`` ``[..., n_out]``, ``validity`` ``[...]`` and squared volume ``[...]``."""
        t = self.template
        verts = t + self.deform_scale * self.to_deform(x).unflatten(
            -1, tuple(t.shape)
        )  # [..., k+1, e]
        d2 = (verts[..., self.pi, :] - verts[..., self.pj, :]).pow(2).sum(-1)  # [..., pairs]
        vol2 = cayley_menger_volume(verts).pow(2).to(x.dtype)  # [...]
        feat = self.norm(torch.cat([d2, vol2[..., None]], dim=-1))
        gate = 2.0 * torch.sigmoid(self.gate(feat))  # in (0, 2): 1 passes, < 1 damps, > 1 boosts
        return gate, torch.sigmoid(self.validity(feat)).squeeze(-1), vol2


@dataclass
class FieldConfig(_GeometryConfig):
    """``field`` adapter (module docstring). ``alpha`` is the starting strength as a share of
    ``alpha_max`` clamp: the effective alpha is ``alpha_max * sigmoid(theta)``."""

    alpha_max: float = 0.35
    expert_ks: list[int] = field(default_factory=lambda: [1, 2, 4])
    expert_edim: int = 8
    deform_scale: float = 0.05
    null_fraction: float = 0.25
    null_space: str = "tail"

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.alpha_max <= 1.0:
            raise ConfigError(f"alpha_max must be in (0, 1], got {self.alpha_max!r}.")
        if any(a > self.alpha_max for a in _per_layer(self.alpha, 1)):
            raise ConfigError(
                f"alpha={self.alpha!r} exceeds alpha_max={self.alpha_max}; start at or below it."
            )
        if not 0.0 <= self.null_fraction < 1.0:
            raise ConfigError(f"null_fraction must be in [0, 1), got {self.null_fraction!r}.")
        if self.null_space not in {"tail", "query"}:
            raise ConfigError(f"null_space must be 'tail' or 'query', got {self.null_space!r}.")
        if not self.expert_ks or any(not isinstance(k, int) or k < 1 for k in self.expert_ks):
            raise ConfigError(f"expert_ks must be positive ints, got {self.expert_ks!r}.")
        if self.expert_edim < max(self.expert_ks):
            raise ConfigError(
                f"expert_edim={self.expert_edim} must be >= max(expert_ks)={max(self.expert_ks)}."
            )


@register_adapter("field")
class FieldModulator(_GeometryAdapter):
    """Multi-expert Cayley-Menger gates on an active subspace (module docstring)."""

    config_class = FieldConfig
    basis: torch.Tensor

    def __init__(self, config: FieldConfig) -> None:
        super().__init__(config)
        n = len(config.layers)
        d = config.d_model
        self.n_active = d - int(d * config.null_fraction)
        basis = torch.eye(d)[:, : self.n_active]  # tail null space by default
        self.register_buffer("basis", basis[None].repeat(n, 1, 1))  # [n, d, n_active]
        self.in_norm = nn.LayerNorm(self.n_active, elementwise_affine=False)
        self.experts = nn.ModuleList(
            KSimplexExpert(
                k,
                self.n_active + config.dim,
                self.n_active,
                config.expert_edim,
                config.deform_scale,
                config.zero_init,
            )
            for k in config.expert_ks
        )
        a = _per_layer(config.alpha, n)
        th = [[_logit(x / config.alpha_max)] * len(config.expert_ks) for x in a]
        self.theta = nn.Parameter(torch.tensor(th))  # [n, n_experts]

    def alphas(self) -> torch.Tensor:
        """``[n_chosen_layers, n_experts]`` effective alphas (``alpha_max * sigmoid(theta)``)."""
        return self.config.alpha_max * torch.sigmoid(self.theta)

    def set_alpha(self, alpha: float | Sequence[float]) -> None:
        n = self.theta.shape[0]
        vals = _per_layer(alpha, n)
        amax = self.config.alpha_max
        if len(vals) != n or any(not 0.0 <= float(v) <= amax for v in vals):
            raise InputError(
                f"alpha must be in [0, alpha_max={amax}] (one value or one per layer), got "
                f"{alpha!r}."
            )
        with torch.no_grad():
            self.theta.copy_(
                torch.tensor([[_logit(float(v) / amax)] * self.theta.shape[1] for v in vals])
            )

    @torch.no_grad()
    def set_null_space(self, model: Any) -> None:
        """Use the ``query`` null space: per chosen block, keep the top ``n_active`` right
        singular directions of its query projection active and pass the rest through."""
        if self.config.null_space != "query":
            return
        self.check_model(model)
        bb = resolve_backbone(_module(model))
        for j, layer in enumerate(self.config.layers):
            parts = bb.attention(layer)
            if parts.q is not None:
                W = parts.q.weight.detach().double()  # type: ignore[operator]  # [d_q, d_model]
            elif parts.qkv is not None:  # GPT-2 Conv1D: weight [d_model, 3 d_model]
                W = parts.qkv.weight.detach().double()[:, : self.config.d_model].T  # type: ignore[operator]
            else:
                raise InputError(
                    f"block {layer} has no query projection to take a null space from."
                )
            _, _, vh = torch.linalg.svd(W, full_matrices=True)
            self.basis[j].copy_(vh[: self.n_active].T.to(self.basis))

    def modulate(self, act: torch.Tensor, ids: torch.Tensor | None, j: int) -> torch.Tensor:
        looked = self._lookup(ids, act)
        if looked is None:
            return act
        g, m = looked
        sel = m > 0
        if not bool(sel.any()):
            return act
        # only tokens with a geometry are gated (the rest pass unchanged): compute them alone
        # experts and gates in float32 (a bfloat16 model keeps float32 adapters)
        U = self.basis[j]  # [d, n_active]
        h = act[sel]  # [N, d]
        z = h.to(g.dtype) @ U.to(g.dtype)  # [N, n_active]
        x = torch.cat([self.in_norm(z), g[sel]], dim=-1)
        gate = torch.ones_like(z)
        a = self.alphas()[j].to(g.dtype)
        for e, expert in enumerate(self.experts):
            gk, vk, _ = expert(x)
            gate = gate * (1.0 + (a[e] * vk)[..., None] * (gk - 1.0))
        out = act.clone()
        out[sel] = h + ((z * gate - z) @ U.to(g.dtype).T).to(act.dtype)
        return out
